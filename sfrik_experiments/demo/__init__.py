"""sfrik-demo: self-supervised pretraining of a small ResNet with SFRIK and the baselines under one
protocol, each frozen encoder evaluated by a linear probe and a weighted kNN, with a randomly
initialised encoder as the floor (cli), and the sweep that sized its quick setting (budget). The
training itself is sfrik_experiments.engine's. Run ``sfrik-demo --help``."""
