"""Non-finite training inside solo-learn: a NaN or Inf loss term stops SFRIK and AUH with an
error that names the step and the term (method_kwargs.stop_on_non_finite, default true), or,
opted out, warns once and goes on. The record is kept on the device and read by the host every
method_kwargs.non_finite_check_interval steps (IMMEDIATE below reads it every step) and at the end
of an epoch; no update is made from a non-finite step. In a training step, in a Lightning Trainer
(a NaN injected at a known step), and (slow, $SOLO_LEARN_DIR) in solo-learn's main_pretrain.py.

Skipped as a whole where solo-learn is not installed.
"""

import math
import types
import warnings

import pytest
from helpers.solo import require_solo_learn

require_solo_learn()

import torch
from helpers.solo import cpu_cfg, fake_batch, run_script, run_training_step, solo_learn_checkout

from sfrik_plugin.losses import LossTerms
from sfrik_plugin.solo import AUH, SFRIK
from sfrik_plugin.solo.projected import NonFiniteLossError

IMMEDIATE = "++method_kwargs.non_finite_check_interval=1"
METHODS = {
    "sfrik_cpu": (SFRIK, "mmd"),
    "auh_cpu": (AUH, "unif"),
}


def at_step(model, global_step: int, epoch: int):
    """The step counters a Trainer would give (global_step and current_epoch read the trainer)."""
    model._trainer = types.SimpleNamespace(global_step=global_step, current_epoch=epoch)
    return model


def poison(monkeypatch, model, term: str, value: float):
    """Makes the method's loss return `value` in one term (and in the weighted sum)."""
    real = model.criterion.terms

    def spoiled(*args, **kwargs):
        t = real(*args, **kwargs)
        bad = torch.full_like(t.loss, value)
        if term == "invariance":
            return LossTerms(t.loss + bad, t.invariance + bad, t.regulariser)
        return LossTerms(t.loss + bad, t.invariance, t.regulariser + bad)

    monkeypatch.setattr(model.criterion, "terms", spoiled)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_config_key_default_and_check(image_folder, name):
    cls = METHODS[name][0]
    cfg = cls.add_and_assert_specific_cfg(cpu_cfg(name, image_folder, "~method_kwargs.stop_on_non_finite"))
    assert cfg.method_kwargs.stop_on_non_finite is True
    assert cls(cpu_cfg(name, image_folder, "method_kwargs.stop_on_non_finite=false")).stop_on_non_finite is False
    with pytest.raises(ValueError, match=r"method_kwargs.stop_on_non_finite must be true or false, got 'maybe'"):
        cls.add_and_assert_specific_cfg(cpu_cfg(name, image_folder, "method_kwargs.stop_on_non_finite=maybe"))


@pytest.mark.parametrize("name", sorted(METHODS))
@pytest.mark.parametrize(
    "term, value",
    [("invariance", math.nan), ("regulariser", math.inf), ("regulariser", math.nan), ("invariance", -math.inf)],
)
@pytest.mark.slow  # trains a model in-process: seconds (make test-fast leaves it out)
def test_non_finite_term_stops_with_step_and_term(image_folder, monkeypatch, name, term, value):
    cls, reg = METHODS[name]
    model = at_step(cls(cpu_cfg(name, image_folder, IMMEDIATE)), global_step=41, epoch=3)
    poison(monkeypatch, model, term, value)
    with pytest.raises(NonFiniteLossError) as err:
        run_training_step(model, fake_batch())
    message = str(err.value)
    assert isinstance(err.value, FloatingPointError)
    assert f"{cls.__name__}: non-finite loss at global step 41 (epoch 3, batch 0)" in message
    named = "invariance (sim) and weighted sum" if term == "invariance" else f"regulariser ({reg}) and weighted sum"
    assert named in message, message
    other = f"regulariser ({reg}) = " if term == "invariance" else "invariance (sim) = "
    value_of_other = float(message.split(other)[1].split(",")[0])
    assert math.isfinite(value_of_other)  # the finite term is reported with its value
    assert "method_kwargs.stop_on_non_finite=false" in message


@pytest.mark.parametrize("name", sorted(METHODS))
@pytest.mark.slow  # trains a model in-process: seconds (make test-fast leaves it out)
def test_nan_parameters_stop_training(image_folder, name):
    # A genuine NaN (no monkeypatching): a NaN weight in the projector's last layer.
    cls = METHODS[name][0]
    model = at_step(cls(cpu_cfg(name, image_folder, IMMEDIATE)), global_step=0, epoch=0)
    with torch.no_grad():
        model.projector[-1].weight[0, 0] = math.nan
    with pytest.raises(NonFiniteLossError, match=r"global step 0 .*invariance \(sim\) and regulariser"):
        run_training_step(model, fake_batch())


@pytest.mark.parametrize("name", sorted(METHODS))
@pytest.mark.slow  # trains a model in-process: seconds (make test-fast leaves it out)
def test_opt_out_warns_once_and_goes_on(image_folder, monkeypatch, name):
    cls, reg = METHODS[name]
    model = at_step(cls(cpu_cfg(name, image_folder, "method_kwargs.stop_on_non_finite=false", IMMEDIATE)), 5, 0)
    poison(monkeypatch, model, "regulariser", math.nan)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        losses = [run_training_step(model, fake_batch())[0] for _ in range(2)]
    assert all(torch.isnan(loss) for loss in losses)  # what the user asked for
    messages = [
        str(w.message) for w in caught if issubclass(w.category, RuntimeWarning) and "non-finite" in str(w.message)
    ]
    assert len(messages) == 1 and f"regulariser ({reg})" in messages[0] and "global step 5" in messages[0]


def test_finite_steps_pass_through(image_folder):
    model = at_step(SFRIK(cpu_cfg("sfrik_cpu", image_folder)), 0, 0)
    loss, logged = run_training_step(model, fake_batch())
    assert torch.isfinite(loss) and math.isfinite(logged["train_sfrik_loss"])


class NaNFromStep(torch.nn.Module):
    """Identity until the given training step, then NaN: a divergence at a known step."""

    def __init__(self, model, step: int):
        super().__init__()
        self.__dict__["owner"] = model  # not a submodule: the model holds this module
        self.step = step

    def forward(self, x):
        return x * math.nan if self.owner.training and self.owner.global_step >= self.step else x


def fit_with_nan_from_step_2(cfg, batches: int = 4):
    """A real Lightning Trainer on SFRIK whose projector output goes NaN from training step 2."""
    import lightning.pytorch as pl

    model = SFRIK(cfg)
    model.projector.append(NaNFromStep(model, step=2))
    loader = torch.utils.data.DataLoader([fake_batch(n=8) for _ in range(batches)], batch_size=None)
    trainer = pl.Trainer(
        max_epochs=1,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    return model, trainer, loader


@pytest.mark.slow  # trains a model in-process: seconds (make test-fast leaves it out)
def test_trainer_stops_at_the_step_where_the_loss_went_nan(image_folder):
    # Read every step: the error leaves fit() at step 2, before any NaN update.
    model, trainer, loader = fit_with_nan_from_step_2(cpu_cfg("sfrik_cpu", image_folder, IMMEDIATE))
    with pytest.raises(NonFiniteLossError, match=r"global step 2 \(epoch 0, batch 2\): invariance \(sim\)"):
        trainer.fit(model, loader)
    assert trainer.global_step == 2  # two optimizer steps, none with the NaN loss
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.slow  # trains a model in-process: seconds (make test-fast leaves it out)
def test_the_default_interval_reads_once_per_epoch_here_and_makes_no_update_from_the_nan_steps(image_folder):
    # The default interval (50) is longer than this epoch of 5 steps: the host reads the record at
    # the last batch; the error names step 2, and steps 2-4 made no NaN update.
    model, trainer, loader = fit_with_nan_from_step_2(cpu_cfg("sfrik_cpu", image_folder), batches=5)
    assert model.non_finite.interval == 50
    reads = []
    real_check = model.non_finite.check

    def counted():
        reads.append(len(model.non_finite.window))
        real_check()

    model.non_finite.check = counted
    with pytest.raises(NonFiniteLossError, match=r"global step 2 \(epoch 0, batch 2\): invariance \(sim\)"):
        trainer.fit(model, loader)
    assert reads == [5]  # one host read, of the five steps
    assert trainer.global_step == 5
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_the_check_interval_is_checked(image_folder):
    with pytest.raises(ValueError, match=r"non_finite_check_interval must be an integer >= 1, got 0"):
        SFRIK.add_and_assert_specific_cfg(
            cpu_cfg("sfrik_cpu", image_folder, "++method_kwargs.non_finite_check_interval=0")
        )


@pytest.mark.slow
def test_main_pretrain_stops_when_the_regulariser_overflows(tmp_path, image_folder):
    # solo-learn's own script with absurd (finite, accepted) kernel weights: psi(1) = 6e38 on
    # each Gram matrix's diagonal overflows float32, so the regulariser is Inf at the first step
    # whatever the embeddings. (A single weight of 3e38 is no trigger: each view's MMD is 3e38
    # times its mean Gram entry, finite with a finite mean of the two below an entry of 0.57; the
    # dense path before issue 32 overflowed on the way and made it one. An absurd learning rate is
    # no reliable trigger either: batch norm absorbs it.)
    checkout = solo_learn_checkout()
    args = [
        "main_pretrain.py",
        "--config-name",
        "sfrik_cpu",
        f"data.train_path={image_folder}",
        "method_kwargs.kernel_weights=[3e38,3e38]",
        f"+default_root_dir={tmp_path / 'runs'}",
    ]
    proc = run_script(checkout, *args, f"checkpoint.dir={tmp_path / 'a'}", check=False)
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert (
        "NonFiniteLossError: SFRIK: non-finite loss at global step 0 (epoch 0, batch 0): regulariser (mmd) "
        "and weighted sum (sfrik loss) went non-finite"
    ) in proc.stderr, proc.stderr[-4000:]
    assert not list((tmp_path / "a").rglob("*.ckpt"))  # no checkpoint of the failed epoch

    proc = run_script(checkout, *args, f"checkpoint.dir={tmp_path / 'b'}", "method_kwargs.stop_on_non_finite=false")
    assert "training goes on (method_kwargs.stop_on_non_finite=false)" in proc.stderr
