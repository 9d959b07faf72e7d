"""sfrik-study: a comparison of SFRIK with the baselines that a reviewer can check.

Every method is tuned by the same rule (learning rate x its main loss hyper-parameter on ladders,
grown until the choice is interior or the cap is reached) on a validation split held out of the
training split, with a seed no final run uses; the chosen settings then run with five seeds on the
test split, re-tuned at each projector width q of the table, with the paper's ablations (the
series' degree L and the kernel), label-free quality measures of each encoder, Holm-corrected
paired tests, and a separate interleaved timing pass. Results are appended run by run, so an
interrupted study resumes where it stopped. The runs themselves are sfrik_experiments.engine's. Run
``sfrik-study --help``."""
