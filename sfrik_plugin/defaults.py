"""The paper's values, which are the defaults of the plugin's losses (the IN20% setting of the
official code, valeoai/sfrik): one place, so that every default, benchmark and study reads them
from here."""

KERNEL_WEIGHTS: tuple[float, ...] = (1.0, 40.0, 40.0)  # b_1, b_2, b_3 of psi = sum_l b_l P_l(q; .)
SFRIK_SIM_LOSS_WEIGHT = 4000.0
SFRIK_MMD_LOSS_WEIGHT = 1.0
AUH_SIM_LOSS_WEIGHT = 3000.0
AUH_UNIF_LOSS_WEIGHT = 1.0
AUH_T = 2.5
