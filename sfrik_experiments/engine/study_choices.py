"""The recorded v2 study's choices at q = 1024: each method's setting as the study chose it by
validation linear top-1 (its tuning rows are docs/records/study/superseded/fashion_mnist_v2.csv;
the demo's and the long study's tests check these against that record). The demo runs each method at its choice; the
long study centres each learning-rate ladder on it. One table, so that the two cannot drift apart."""

from __future__ import annotations

V2_CHOICES: dict[str, dict[str, object]] = {
    "sfrik": {"lr": 0.01, "kernel_weights": (1.0, 40.0, 40.0), "sim_loss_weight": 4000.0},
    "vicreg": {"lr": 0.0025, "sim_loss_weight": 20.0},
    "barlow_twins": {"lr": 0.01, "lamb": 0.001},
    "simclr": {"lr": 0.01, "temperature": 0.025},
    "auh": {"lr": 0.01, "sim_loss_weight": 1500.0},
    "sigreg": {"lr": 0.0025, "lambda_param": 0.00625},
    "mmcr": {"lr": 0.01, "lmda": 0.005},
}
