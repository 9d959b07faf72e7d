"""Renamed keyword arguments and moved names keep working for one release, with a
DeprecationWarning naming the new spelling, and give the same results as the new names."""

import pytest
import torch

import sfrik_plugin
from sfrik_plugin import losses

Z1 = torch.randn(24, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
Z2 = torch.randn(24, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
T = torch.linspace(-1, 1, 7, dtype=torch.float64)


@pytest.mark.parametrize(
    "old_call, new_call, old",
    [
        (
            lambda: sfrik_plugin.legendre_series(T, [0.5, 1.0, 2.0], dim=5),
            lambda: sfrik_plugin.legendre_series(T, [0.5, 1.0, 2.0], q=5),
            "dim",
        ),
        (lambda: sfrik_plugin.legendre(T, 3, dim=4), lambda: sfrik_plugin.legendre(T, 3, q=4), "dim"),
        (
            lambda: sfrik_plugin.mmd_uniform(Z1, [1.0, 40.0], impl="tiled", mmd_tile_size=5),
            lambda: sfrik_plugin.mmd_uniform(Z1, [1.0, 40.0], mmd_impl="tiled", mmd_tile_size=5),
            "impl",
        ),
        (
            lambda: sfrik_plugin.mmd_uniform(Z1, [1.0, 40.0], mmd_impl="tiled", tile_size=5),
            lambda: sfrik_plugin.mmd_uniform(Z1, [1.0, 40.0], mmd_impl="tiled", mmd_tile_size=5),
            "tile_size",
        ),
        (
            lambda: sfrik_plugin.mmd_uniform(Z1, [1.0], shard=False),
            lambda: sfrik_plugin.mmd_uniform(Z1, [1.0], shard_mmd=False),
            "shard",
        ),
        (
            lambda: sfrik_plugin.sfrik_loss_func(Z1, Z2, mmd_impl="tiled", tile_size=7),
            lambda: sfrik_plugin.sfrik_loss_func(Z1, Z2, mmd_impl="tiled", mmd_tile_size=7),
            "tile_size",
        ),
        (
            lambda: sfrik_plugin.sfrik_loss_func(Z1, Z2, shard=True),
            lambda: sfrik_plugin.sfrik_loss_func(Z1, Z2, shard_mmd=True),
            "shard",
        ),
        (
            lambda: sfrik_plugin.SFRIKLoss(mmd_impl="tiled", tile_size=4).multicrop_terms([Z1, Z2, Z1], 2).loss,
            lambda: sfrik_plugin.SFRIKLoss(mmd_impl="tiled", mmd_tile_size=4).multicrop_terms([Z1, Z2, Z1], 2).loss,
            "tile_size",
        ),
        (
            lambda: sfrik_plugin.SFRIKLoss(mmd_impl="tiled", tile_size=3)(Z1, Z2),
            lambda: sfrik_plugin.SFRIKLoss(mmd_impl="tiled", mmd_tile_size=3)(Z1, Z2),
            "tile_size",
        ),
    ],
)
def test_old_keyword_warns_and_gives_the_same_result(old_call, new_call, old):
    with pytest.warns(DeprecationWarning, match=rf"argument {old}= is deprecated .* use \w+="):
        got = old_call()
    torch.testing.assert_close(got, new_call(), rtol=0, atol=0)


def test_the_warning_points_at_the_caller():
    with pytest.warns(DeprecationWarning) as record:
        sfrik_plugin.sfrik_loss_func(Z1, Z2, tile_size=8)
    assert [w.filename for w in record] == [__file__]


def test_a_deprecated_function_with_an_old_keyword_points_both_warnings_at_the_caller():
    # two wrappers (the function's, the keyword's) lie between the caller and each warning;
    # each names the caller's line, not the package's
    with pytest.warns(DeprecationWarning) as record:
        sfrik_plugin.sfrik_loss_terms(Z1, Z2, mmd_impl="tiled", tile_size=7)
    assert [w.filename for w in record] == [__file__, __file__]
    first_words = {str(w.message).split(" ")[0] for w in record}
    assert first_words == {"sfrik_plugin.losses.sfrik_loss_terms", "sfrik_loss_terms():"}


def test_old_and_new_name_together_is_an_error():
    with pytest.raises(TypeError, match="got both tile_size= and its new name mmd_tile_size="):
        sfrik_plugin.SFRIKLoss(tile_size=3, mmd_tile_size=4)
    with pytest.raises(TypeError, match="got both dim= and its new name q="):
        sfrik_plugin.legendre_series(T, [1.0], q=3, dim=3)


def test_an_error_on_an_old_keyword_says_how_it_was_passed():
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match="mmd_tile_size must be") as info:
        sfrik_plugin.mmd_uniform(Z1, [1.0], tile_size=0)
    assert "(mmd_tile_size was passed as the deprecated tile_size=)" in info.value.__notes__


@pytest.mark.parametrize("passed", ["mmd_impl", "mmd_tile_size", "shard_mmd", "gram_precision"])
def test_errors_name_the_argument_the_caller_passed(passed):
    bad = {"mmd_impl": "fast", "mmd_tile_size": 0, "shard_mmd": "yes", "gram_precision": "fp8"}[passed]
    for call in (
        lambda: sfrik_plugin.mmd_uniform(Z1, [1.0], **{passed: bad}),
        lambda: sfrik_plugin.SFRIKLoss(**{passed: bad}),
        lambda: sfrik_plugin.sfrik_loss_func(Z1, Z2, **{passed: bad}),
    ):
        with pytest.raises((TypeError, ValueError), match=rf"^{passed} must"):
            call()


KERNEL = sfrik_plugin.GaussianKernel()


@pytest.mark.parametrize(
    "old_call, new_call, replacement",
    [
        (
            lambda: sfrik_plugin.sfrik_loss_terms(Z1, Z2, kernel_weights=[1.0, 4.0]),
            lambda: sfrik_plugin.SFRIKLoss(kernel_weights=[1.0, 4.0]).terms(Z1, Z2),
            "SFRIKLoss(**options).terms(z1, z2)",
        ),
        (
            lambda: sfrik_plugin.sfrik_multicrop_loss_terms([Z1, Z2, Z1], 2, reg_small=True),
            lambda: sfrik_plugin.SFRIKLoss().multicrop_terms([Z1, Z2, Z1], 2, True),
            "SFRIKLoss(**options).multicrop_terms(views, num_large_crops, reg_small)",
        ),
        (
            lambda: sfrik_plugin.sfrik_multicrop_loss_func([Z1, Z2, Z1], 1),
            lambda: sfrik_plugin.SFRIKLoss().multicrop_terms([Z1, Z2, Z1], 1).loss,
            "SFRIKLoss(**options).multicrop_terms(views, num_large_crops, reg_small).loss",
        ),
        (
            lambda: sfrik_plugin.auh_loss_terms(Z1, Z2, t=1.5),
            lambda: sfrik_plugin.AUHLoss(t=1.5).terms(Z1, Z2),
            "AUHLoss(**options).terms(z1, z2)",
        ),
        (
            lambda: sfrik_plugin.kernel_mmd_loss_terms(Z1, Z2, KERNEL, mmd_loss_weight=2.0),
            lambda: sfrik_plugin.KernelMMDLoss(KERNEL, mmd_loss_weight=2.0).terms(Z1, Z2),
            "KernelMMDLoss(kernel, **options).terms(z1, z2)",
        ),
    ],
)
def test_deprecated_loss_functions_warn_and_give_the_same_result(old_call, new_call, replacement):
    # each loss is one class (its terms a method) and one function; the other spellings last a release
    with pytest.warns(DeprecationWarning, match="is deprecated and will be removed in the next release") as record:
        got = old_call()
    assert [w.filename for w in record] == [__file__]  # points at the caller's line
    assert str(record[0].message).endswith(f"use {replacement}")
    torch.testing.assert_close(tuple(got) if isinstance(got, tuple) else got, new_call(), rtol=0, atol=0)


def test_each_loss_is_one_class_and_one_function():
    assert [n for n in losses.__all__ if n.endswith(("_terms", "_func"))] == [
        "sfrik_loss_func",
        "auh_loss_func",
        "kernel_mmd_loss_func",
    ]
    assert not {"sfrik_loss_terms", "auh_loss_terms", "kernel_mmd_loss_terms"} & set(sfrik_plugin.__all__)
    torch.testing.assert_close(
        sfrik_plugin.kernel_mmd_loss_func(Z1, Z2, KERNEL), sfrik_plugin.KernelMMDLoss(KERNEL)(Z1, Z2), rtol=0, atol=0
    )


@pytest.mark.parametrize("name, home", [("mmd_uniform", "regulariser"), ("gather_rows", "distributed")])
def test_names_moved_out_of_losses_still_import_with_a_warning(name, home):
    import importlib

    with pytest.warns(DeprecationWarning, match=rf"sfrik_plugin.losses.{name} moved to sfrik_plugin.{home}.{name}"):
        moved = getattr(losses, name)
    assert moved is getattr(importlib.import_module(f"sfrik_plugin.{home}"), name)
    with pytest.raises(AttributeError):
        losses.no_such_name  # noqa: B018


def test_gather_distributed_has_one_default():
    import inspect

    from sfrik_plugin import defaults

    for fn in (
        sfrik_plugin.mmd_uniform,
        sfrik_plugin.kernel_mmd_uniform,
        sfrik_plugin.SFRIKLoss,
        sfrik_plugin.AUHLoss,
        sfrik_plugin.KernelMMDLoss,
    ):
        assert inspect.signature(fn).parameters["gather_distributed"].default is defaults.GATHER_DISTRIBUTED
    assert defaults.GATHER_DISTRIBUTED is True
