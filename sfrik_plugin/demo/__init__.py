"""sfrik-demo: self-supervised pretraining of a small ResNet with SFRIK and the baselines (VICReg,
SimCLR, Barlow Twins, AUH) under one protocol, each frozen encoder evaluated by a linear probe and
a weighted kNN, with a randomly initialised encoder as the floor. Run ``sfrik-demo --help``."""
