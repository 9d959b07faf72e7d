"""What SFRIK and AUH share as solo-learn methods: the official code's projector, its config
checks, the forward passes that add the projected features z (as solo's methods do), the stop on
a non-finite loss, random-number states in checkpoints (exact resume), and a learning rate that
follows the global batch however ``devices`` is spelled (processes.py).

Needs solo-learn: imported only where solo is installed.
"""

import difflib
import random
from collections.abc import Sequence
from typing import Any

import numpy as np
import omegaconf
import torch
from solo.methods.base import BaseMethod
from solo.utils.misc import omegaconf_select

from sfrik_plugin.projector import build_projector
from sfrik_plugin.solo import registration
from sfrik_plugin.solo.non_finite import NonFiniteLossError, NonFiniteMonitor
from sfrik_plugin.solo.processes import check_trainer_processes, scale_lr_to_processes

__all__ = ["NonFiniteLossError", "ProjectedMethod"]

# Steps between two host reads of the non-finite record (Lightning's default logging interval).
NON_FINITE_CHECK_INTERVAL = 50


def assert_projector_cfg(cfg: omegaconf.DictConfig, method: str) -> None:
    """method_kwargs.proj_hidden_dim >= 1 and proj_output_dim >= 2 (the sphere S^(q-1) needs q >= 2)."""
    for key, minimum in (("proj_hidden_dim", 1), ("proj_output_dim", 2)):
        path = f"method_kwargs.{key}"
        value = omegaconf.OmegaConf.select(cfg, path, default=None, throw_on_missing=False)
        if value is None:
            raise ValueError(f"{method}: {path} must be set (an integer >= {minimum})")
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"{method}: {path} must be an integer >= {minimum}, got {value!r}")


# BatchNorm (the backbone's, the projector's) cannot train on one image per batch.
MIN_BATCH_SIZE = 2


def assert_batch_size_cfg(cfg: omegaconf.DictConfig, method: str) -> None:
    """optimizer.batch_size (images per process and step) >= 2, refused at start rather than in
    BatchNorm's "Expected more than 1 value per channel" at the first training step."""
    value = omegaconf.OmegaConf.select(cfg, "optimizer.batch_size", default=None, throw_on_missing=False)
    if value is None:
        return  # solo's own checks name a missing batch size
    if isinstance(value, bool) or not isinstance(value, int) or value < MIN_BATCH_SIZE:
        raise ValueError(
            f"{method}: optimizer.batch_size must be an integer >= {MIN_BATCH_SIZE} (images per process and step), "
            f"got {value!r}: BatchNorm in the backbone and the projector needs {MIN_BATCH_SIZE} or more images per "
            f"batch; set optimizer.batch_size={MIN_BATCH_SIZE} or more (the packaged configs use 256 per GPU, 8 on "
            "the CPU)"
        )


def assert_stop_on_non_finite_cfg(cfg: omegaconf.DictConfig, method: str) -> None:
    """method_kwargs.stop_on_non_finite: true (default) or false; method_kwargs.non_finite_check_interval:
    how many steps between two host reads of the non-finite record, an integer >= 1 (default 50)."""
    value = omegaconf_select(cfg, "method_kwargs.stop_on_non_finite", True)
    if not isinstance(value, bool):
        raise ValueError(f"{method}: method_kwargs.stop_on_non_finite must be true or false, got {value!r}")
    cfg.method_kwargs.stop_on_non_finite = value
    interval = omegaconf_select(cfg, "method_kwargs.non_finite_check_interval", NON_FINITE_CHECK_INTERVAL)
    if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
        raise ValueError(f"{method}: method_kwargs.non_finite_check_interval must be an integer >= 1, got {interval!r}")
    cfg.method_kwargs.non_finite_check_interval = interval


# method_kwargs every ProjectedMethod reads (the projector, the non-finite stop).
PROJECTED_METHOD_KWARGS = ("proj_hidden_dim", "proj_output_dim", "stop_on_non_finite", "non_finite_check_interval")


def assert_known_method_kwargs(cfg: omegaconf.DictConfig, method: str, known: Sequence[str]) -> None:
    """Refuses a method_kwargs key the method does not read: a misspelt option (say
    +method_kwargs.kernel_weigths=..., which Hydra's own hint suggests adding) would otherwise
    train with the default and say nothing."""
    given = omegaconf.OmegaConf.select(cfg, "method_kwargs", default=None) or {}
    unknown = sorted(set(given) - set(known))
    if not unknown:
        return
    hints = []
    for key in unknown:
        close = difflib.get_close_matches(key, known, n=1)
        hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    raise ValueError(f"{method}: unknown method_kwargs {', '.join(hints)}; {method} reads {', '.join(sorted(known))}")


def build_loss(method: str, loss_class, **kwargs):
    """loss_class(**kwargs), with the config block named in the errors of its argument checks."""
    try:
        return loss_class(**kwargs)
    except (TypeError, ValueError) as err:
        raise type(err)(f"{method} method_kwargs: {err}") from err


RNG_STATES_KEY = "sfrik_plugin_rng_states"


class ProjectedMethod(BaseMethod):
    """A BaseMethod with the projector above on top of the backbone: z = projector(feats)."""

    # The subclass's own method_kwargs (beside PROJECTED_METHOD_KWARGS); any other key is refused.
    METHOD_KWARGS: tuple[str, ...] = ()

    @classmethod
    def add_and_assert_specific_cfg(cls, cfg: omegaconf.DictConfig) -> omegaconf.DictConfig:
        """BaseMethod's defaults and checks, then the projector's and stop_on_non_finite's
        (errors name the method, cls.__name__).

        Args:
            cfg (omegaconf.DictConfig): DictConfig object.

        Returns:
            omegaconf.DictConfig: same as the argument, used to avoid errors.
        """
        cfg = super().add_and_assert_specific_cfg(cfg)
        assert_batch_size_cfg(cfg, cls.__name__)
        assert_projector_cfg(cfg, cls.__name__)
        assert_stop_on_non_finite_cfg(cfg, cls.__name__)
        assert_known_method_kwargs(cfg, cls.__name__, PROJECTED_METHOD_KWARGS + cls.METHOD_KWARGS)
        return cfg

    def __init__(self, cfg: omegaconf.DictConfig):
        # before BaseMethod reads optimizer.lr and resolves scheduler.min_lr (the cosine end)
        processes = scale_lr_to_processes(cfg, type(self).__name__)
        super().__init__(cfg)
        self.processes_per_node = processes
        self.projector = build_projector(
            self.features_dim, cfg.method_kwargs.proj_hidden_dim, cfg.method_kwargs.proj_output_dim
        )
        self.stop_on_non_finite: bool = omegaconf_select(cfg, "method_kwargs.stop_on_non_finite", True)
        self.non_finite = NonFiniteMonitor(
            type(self).__name__,
            self.stop_on_non_finite,
            omegaconf_select(cfg, "method_kwargs.non_finite_check_interval", NON_FINITE_CHECK_INTERVAL),
        )

    def setup(self, stage: str) -> None:
        """Checks that the Trainer runs the processes the learning rate was scaled for."""
        super().setup(stage)
        if stage == "fit":
            num_nodes = int(omegaconf_select(self.cfg, "num_nodes", 1) or 1)
            check_trainer_processes(self.trainer, self.processes_per_node, num_nodes, type(self).__name__)

    def log_and_check_terms(
        self, batch_idx: int, method: str, regulariser: str, terms: Any, class_loss: torch.Tensor
    ) -> torch.Tensor:
        """Logs the loss terms (train_<method>_loss, train_invariance, train_regulariser) as solo's
        methods log theirs, stops on a non-finite one (check_finite), and returns the step's total:
        the method's loss plus the online classifier's."""
        self.log_dict(
            {
                f"train_{method}_loss": terms.loss.detach(),
                "train_invariance": terms.invariance.detach(),
                "train_regulariser": terms.regulariser.detach(),
            },
            on_epoch=True,
            sync_dist=True,
        )
        self.check_finite(
            batch_idx,
            [
                ("invariance (sim)", terms.invariance),
                (f"regulariser ({regulariser})", terms.regulariser),
                (f"weighted sum ({method} loss)", terms.loss),
                ("online classifier loss", class_loss),
            ],
        )
        return terms.loss + class_loss

    def check_finite(self, batch_idx: int, terms: Sequence[tuple]) -> None:
        """terms: (name, 0-dim tensor) pairs, recorded on the device (non_finite.NonFiniteMonitor):
        a NaN or Inf one raises NonFiniteLossError naming the step and the terms at the next host
        read (every method_kwargs.non_finite_check_interval steps and at the end of an epoch), or
        with method_kwargs.stop_on_non_finite=false warns once and lets training go on. No update is
        made from a non-finite step (on_before_optimizer_step)."""
        self.non_finite.record((self.global_step, self.current_epoch, batch_idx), terms)

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Zeroes the gradients on the device when the loss (or a gradient) went non-finite."""
        super().on_before_optimizer_step(optimizer)
        self.non_finite.mask_gradients(p for group in optimizer.param_groups for p in group["params"])

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Reads the non-finite record at the last batch of an epoch (before checkpoints of it)."""
        super().on_train_batch_end(outputs, batch, batch_idx)
        if getattr(self.trainer, "is_last_batch", False):
            self.non_finite.check()

    def on_train_end(self) -> None:
        """Reads what the last steps recorded (a run stopped by max_steps mid-epoch)."""
        super().on_train_end()
        self.non_finite.check()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Adds the random-number states: Lightning's checkpoints have none, so a run resumed
        from one would draw other shuffles and augmentations than the uninterrupted run."""
        super().on_save_checkpoint(checkpoint)
        checkpoint[RNG_STATES_KEY] = {
            "python": random.getstate(),
            # plain Python values: torch.load's weights_only default (main_linear) refuses arrays
            "numpy": [v.tolist() if isinstance(v, np.ndarray) else v for v in np.random.get_state()],
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keeps the states saved above for on_train_epoch_start."""
        super().on_load_checkpoint(checkpoint)
        self._rng_states_to_restore = checkpoint.get(RNG_STATES_KEY)  # None: an older checkpoint

    def on_train_epoch_start(self) -> None:
        """Restores the states of a loaded checkpoint here rather than on loading: when resuming,
        Lightning (2.x) creates a first data-loader iterator in between, whose base-seed draw the
        uninterrupted run never makes. In every process: solo seeds every rank alike."""
        super().on_train_epoch_start()
        states, self._rng_states_to_restore = getattr(self, "_rng_states_to_restore", None), None
        if states is None:
            return
        random.setstate(states["python"])
        kind, keys, *rest = states["numpy"]
        np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), *rest))
        torch.set_rng_state(states["torch"])
        if (
            states["cuda"] is not None
            and torch.cuda.is_available()
            and len(states["cuda"]) == torch.cuda.device_count()
        ):
            torch.cuda.set_rng_state_all(states["cuda"])

    @property
    def learnable_params(self) -> list[dict]:
        """Adds projector parameters to the parent's learnable parameters.

        Returns:
            List[dict]: list of learnable parameters.
        """

        extra_learnable_params = [{"name": "projector", "params": self.projector.parameters()}]
        return super().learnable_params + extra_learnable_params

    def forward(self, X: torch.Tensor) -> dict[str, Any]:
        """BaseMethod's forward pass plus the projected features z = projector(feats).

        Args:
            X (torch.Tensor): a batch of images in the tensor format.

        Returns:
            Dict[str, Any]: the parent's outputs and "z".
        """
        out = super().forward(X)
        out["z"] = self.projector(out["feats"])
        return out

    def multicrop_forward(self, X: torch.Tensor) -> dict[str, Any]:
        """forward for the small crops (BaseMethod.multicrop_forward plus z)."""
        out = super().multicrop_forward(X)
        out["z"] = self.projector(out["feats"])
        return out


registration.register_pending()  # the import hook may have run while this module was half-imported
