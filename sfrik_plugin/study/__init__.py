"""sfrik-study: a comparison of SFRIK with the baselines that a reviewer can check.

Every method gets the same tuning grid size (learning rate x its main loss hyper-parameter),
chosen on a validation split held out of the training split; the chosen settings then run with
several seeds on the test split, at several projector widths q, with the paper's ablations (the
series' degree L and the kernel), label-free quality measures of each encoder, and a separate
interleaved timing pass. Results are appended run by run, so an interrupted study resumes where it
stopped. Run ``sfrik-study --help``."""
