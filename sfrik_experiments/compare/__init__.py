"""sfrik-compare: the methods of one protocol compared inside solo-learn, with its own scripts.

cli: the command (configs, run plan, one process per run, the tables); probe: the wrapper each
run goes through, which measures it. ``python -m sfrik_experiments.compare`` runs cli.main.
"""
