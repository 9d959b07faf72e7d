"""sfrik-compare: the methods of one protocol compared inside solo-learn, with its own scripts.

cli: the command line; configs: which configs (protocols, methods); val_images: which images the
linear top-1 is measured on; runs: the run plan, one process per run; tables: compare.csv and
compare.md; probe: the wrapper each run goes through, which measures it.
``python -m sfrik_experiments.compare`` runs cli.main.
"""
