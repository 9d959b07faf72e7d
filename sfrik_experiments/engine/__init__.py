"""The training engine that sfrik-demo, its budget sweep and sfrik-study share: image data
(data), batch augmentations (augment), backbones (model), objectives (objectives), Lightning
pretraining (pretrain, experiment), frozen-encoder evaluation (evaluate, quality), one run of a
protocol (runs, runner) and its results file (results). It imports the core, never an
application (tests/test_architecture.py)."""
