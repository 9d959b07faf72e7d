"""The defaults of the plugin's losses and regulariser, in one place: the paper's values (the IN20%
setting of the official code, valeoai/sfrik) and the plugin's computational settings. Every loss
signature, solo-learn method, benchmark and study reads them from here."""

# The paper's values
KERNEL_WEIGHTS: tuple[float, ...] = (1.0, 40.0, 40.0)  # b_1, b_2, b_3 of psi = sum_l b_l P_l(q; .)
SFRIK_SIM_LOSS_WEIGHT = 4000.0
SFRIK_MMD_LOSS_WEIGHT = 1.0
AUH_SIM_LOSS_WEIGHT = 3000.0
AUH_UNIF_LOSS_WEIGHT = 1.0
AUH_T = 2.5
GAUSSIAN_KERNEL_S = 2.5  # the kernel ablation's Gaussian exp(-2 s (1 - u.v)), s = AUH's t
DISTANCE_KERNEL_P = 1.0  # the kernel ablation's distance kernel -||u - v||^p

# How the regulariser is computed (the results do not depend on these beyond rounding)
# The regulariser's batch under torch.distributed: True, the global batch (every process's rows,
# as the official code); False, the local batch. The invariance always uses the local batch.
GATHER_DISTRIBUTED = True
MMD_IMPL = "auto"  # "dense" (n x n Gram matrix), "tiled" (never the n x n matrix) or "auto"
MMD_TILE_SIZE: int | None = None  # rows per tile; None: the device's default (tiled.DEFAULT_TILE_SIZE)
SHARD_MMD = True  # with several processes, each computes its own rows of the MMD
GRAM_PRECISION = "float32"  # the Gram product's precision (sfrik_plugin.precision)
GRAM_PRECISIONS = ("float32", "tf32", "bf16", "fp16")  # its choices
