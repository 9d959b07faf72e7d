"""Baseline losses from an established implementation, shared by the loss benchmark, the step
benchmark, the demo and the study: solo-learn's loss functions or lightly's (no home-made copies).
Each is a callable loss(z1, z2) on the two views' projections, built with its hyper-parameters.

BASELINES is the registry: adding a baseline is one entry here (its defaults, the hyper-parameter
the study tunes with its ladder, and a builder per library) plus its tests (CONTRIBUTING.md)."""

from __future__ import annotations

import functools
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import metadata

import torch

__all__ = [
    "BASELINES",
    "BASELINES_REGISTRY",
    "Baseline",
    "CostModel",
    "LIBRARIES",
    "available_library",
    "baseline_loss",
    "baseline_losses",
    "describe",
    "require_library",
    "source_library",
]

LIBRARIES = ("solo-learn", "lightly")
SIMCLR_TEMPERATURE = 0.15

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


# -- builders: library's loss with the full hyper-parameter dict --------------------------------
def _solo_vicreg(p: dict[str, float]) -> LossFn:
    from solo.losses import vicreg_loss_func

    return lambda z1, z2: vicreg_loss_func(z1, z2, **p)


def _solo_barlow(p: dict[str, float]) -> LossFn:
    from solo.losses import barlow_loss_func

    return lambda z1, z2: barlow_loss_func(z1, z2, lamb=p["lamb"])


def _solo_simclr(p: dict[str, float]) -> LossFn:
    from solo.losses import simclr_loss_func

    def simclr(z1, z2):
        indexes = torch.arange(z1.shape[0], device=z1.device).repeat(2)  # view pairs share an index
        return simclr_loss_func(torch.cat([z1, z2]), indexes=indexes, temperature=p["temperature"])

    return simclr


def _lightly_vicreg(p: dict[str, float]) -> LossFn:
    from lightly.loss import VICRegLoss

    return VICRegLoss(lambda_param=p["sim_loss_weight"], mu_param=p["var_loss_weight"], nu_param=p["cov_loss_weight"])


def _lightly_barlow(p: dict[str, float]) -> LossFn:
    from lightly.loss import BarlowTwinsLoss

    return BarlowTwinsLoss(lambda_param=p["lamb"])


def _lightly_simclr(p: dict[str, float]) -> LossFn:
    from lightly.loss import NTXentLoss

    return NTXentLoss(temperature=p["temperature"])


def _lightly_sigreg(p: dict[str, float]) -> LossFn:
    """LeJEPA with two global views and no local ones: lambda * SIGReg(both views) + (1 - lambda) *
    the views' distance to their mean, lightly's LeJEPALoss.forward with lightly's own pieces
    (LeJEPALoss itself requires at least one local view)."""
    from lightly.loss.lejepa_loss import SIGReg, lejepa_invariance_loss

    lam = p["lambda_param"]
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"sigreg: lambda_param must be in [0, 1], got {lam}")
    sigreg = SIGReg(num_vectors=int(p["num_vectors"]))

    def lejepa(z1, z2):
        views = torch.stack([z1, z2])
        sigreg.to(z1.device)
        return lam * sigreg(views) + (1.0 - lam) * lejepa_invariance_loss(all_proj=views, global_proj=views)

    return lejepa


def _lightly_mmcr(p: dict[str, float]) -> LossFn:
    """lightly's MMCRLoss on the unit-normalised projections (MMCR's embeddings lie on the sphere;
    lightly leaves the normalisation to the model), the two views as the k = 2 augmentations.

    lightly calls torch.linalg.svd with its default full_matrices=True, so the SVD of the (n, 2, q)
    views also builds an (n, q, q) V that the loss never uses: 17 GB at n = 256, q = 4096. Its
    forward runs here with the thin SVD in its place: the same singular values, hence the same
    loss and gradient (tested against lightly's own call), in O(n q) memory."""
    import lightly.loss.mmcr_loss as mmcr_module
    from lightly.loss import MMCRLoss

    mmcr = MMCRLoss(lmda=p["lmda"])
    thin = functools.partial(torch.linalg.svd, full_matrices=False)

    def loss(z1, z2):
        u1, u2 = (torch.nn.functional.normalize(z, dim=1) for z in (z1, z2))
        full = getattr(mmcr_module, "svd", None)
        if full is not torch.linalg.svd:  # not the call this substitution was written for: lightly's own
            return mmcr(u1.unsqueeze(1), u2.unsqueeze(1))
        mmcr_module.svd = thin
        try:
            return mmcr(u1.unsqueeze(1), u2.unsqueeze(1))
        finally:
            mmcr_module.svd = full

    return loss


@dataclass(frozen=True)
class CostModel:
    """What the loss benchmarks predict before running a cell (to skip what cannot fit or would take
    too long): the matmul FLOPs of one forward over both views, and the peak memory as `matrices`
    live matrices of `matrix_elements(n, q)` elements (beside 8 n q for the inputs and gradients)."""

    forward_flops: Callable[[int, int], float]
    matrix_elements: Callable[[int, int], float]
    matrices: int

    def flops(self, n: int, q: int) -> float:
        """Forward + backward: about 3x the forward's FLOPs."""
        return 3.0 * self.forward_flops(n, q)

    def bytes(self, n: int, q: int, element: int) -> float:
        return float(element * (self.matrices * self.matrix_elements(n, q) + 8 * n * q))


@dataclass(frozen=True)
class Baseline:
    """One baseline: everything any part of the project asks of it.

    title and reference name it in help texts and reports; summary says, in a line, what its loss
    computes (the benchmarks' help); defaults are its paper's unless said; the study tunes `tuned`
    on the ladder (centre, factor); builders give its loss per library that has it; cost is the
    benchmarks' cost model; autocast says whether bf16 autocast changes what it computes (the GPU
    check times it under autocast only then)."""

    title: str
    defaults: Mapping[str, float]
    tuned: str
    ladder: tuple[float, float]  # (centre, factor) of the study's ladder for `tuned`
    builders: Mapping[str, Callable[[dict[str, float]], LossFn]]
    reference: str
    summary: str
    cost: CostModel
    autocast: bool = True

    @property
    def libraries(self) -> tuple[str, ...]:
        return tuple(self.builders)


# lightly's SIGReg defaults: the random directions it projects on and the knots of its test
SIGREG_DIRECTIONS, SIGREG_KNOTS = 1024, 17  # the registry entry's num_vectors default and its cost model read them


BASELINES_REGISTRY: dict[str, Baseline] = {
    "vicreg": Baseline(
        "VICReg",
        {"sim_loss_weight": 25.0, "var_loss_weight": 25.0, "cov_loss_weight": 1.0},
        "sim_loss_weight",
        (10.0, 2.0),
        {"solo-learn": _solo_vicreg, "lightly": _lightly_vicreg},
        "Bardes et al., ICLR 2022",
        "variance, invariance and the q x q covariance of each view: 2 n q^2 FLOPs and q^2 memory",
        # 16 q x q matrices: VICReg's peak on the H200 (2026-12-04: 16.4 GiB at q = 16384)
        CostModel(lambda n, q: 2 * 2 * n * q * q, lambda n, q: q * q, 16),
    ),
    "barlow_twins": Baseline(
        "Barlow Twins",
        {"lamb": 5e-3},
        "lamb",
        (1e-3, 2.0),
        {"solo-learn": _solo_barlow, "lightly": _lightly_barlow},
        "Zbontar et al., ICML 2021",
        "the q x q cross-correlation of the two views: 2 n q^2 FLOPs and q^2 memory",
        CostModel(lambda n, q: 2 * n * q * q, lambda n, q: q * q, 17),  # its H200 peak: 16.9 GiB at q = 16384
    ),
    "simclr": Baseline(
        "SimCLR",
        {"temperature": SIMCLR_TEMPERATURE},  # the SFRIK paper's tuned temperature
        "temperature",
        (0.1, 2.0),
        {"solo-learn": _solo_simclr, "lightly": _lightly_simclr},
        "Chen et al., ICML 2020",
        "InfoNCE over the 2n x 2n similarities of both views: 2 (2n)^2 q FLOPs",
        CostModel(lambda n, q: 2 * (2 * n) ** 2 * q, lambda n, q: (2 * n) ** 2, 8),
    ),
    "sigreg": Baseline(
        "LeJEPA (SIGReg)",
        {"lambda_param": 0.05, "num_vectors": float(SIGREG_DIRECTIONS)},  # lightly's LeJEPALoss defaults
        "lambda_param",
        (0.05, 2.0),
        {"lightly": _lightly_sigreg},
        "Balestriero and LeCun, 2025 (arXiv:2511.08544)",
        f"lightly's SIGReg + LeJEPA invariance: 2 n q M FLOPs to project on M = {SIGREG_DIRECTIONS} random "
        f"directions, then n M x {SIGREG_KNOTS} knots of cos/sin: linear in n and in q",
        CostModel(
            lambda n, q: 2 * 2 * n * q * SIGREG_DIRECTIONS,  # both views on the random directions
            lambda n, q: n * SIGREG_DIRECTIONS * SIGREG_KNOTS,  # the (views, n, directions, knots) phases
            8,
        ),
    ),
    "mmcr": Baseline(
        "MMCR",
        {"lmda": 5e-3},  # lightly's MMCRLoss default
        "lmda",
        (5e-3, 2.0),
        {"lightly": _lightly_mmcr},
        "Yerxa et al., NeurIPS 2023",
        "lightly's MMCRLoss on the normalised views: an SVD of the n x q centroid matrix and one of every "
        "image's 2 x q views",
        CostModel(lambda n, q: 4 * n * n * q, lambda n, q: n * n, 4),  # the centroid's SVD, about a Gram's work
        autocast=False,  # its SVD runs in float32 under autocast: the float32 run's figures again
    ),
}
BASELINES = tuple(BASELINES_REGISTRY)


def describe(names: tuple[str, ...] | list[str] = BASELINES, indent: int = 2, width: int = 100) -> str:
    """The baselines for help texts: each one's name, title, reference and what it computes."""
    column = max(map(len, names), default=0) + indent + 2
    return "\n".join(
        textwrap.fill(
            f"{name:<{column - indent - 2}}  {b.title} ({b.reference}): {b.summary}",
            width,
            initial_indent=" " * indent,
            subsequent_indent=" " * column,
        )
        for name, b in ((name, BASELINES_REGISTRY[name]) for name in names)
    )


_MODULES = {"solo-learn": "solo.losses", "lightly": "lightly.loss"}
_INSTALL = {"solo-learn": "make solo-learn (docs/solo-learn.md)", "lightly": "pip install lightly"}
_DISTRIBUTIONS = {"solo-learn": "solo-learn", "lightly": "lightly"}
_TESTED = {"solo-learn": "make solo-learn (its tested commit 9187ea39c2c3)", "lightly": "pip install lightly==1.6.0"}


def _imports(library: str) -> bool:
    try:
        __import__(_MODULES[library])
    except ImportError:
        return False
    return True


def available_library() -> str | None:
    """solo-learn when it imports, else lightly, else None."""
    return next((library for library in LIBRARIES if _imports(library)), None)


def source_library(name: str, library: str) -> str:
    """The library a baseline comes from in a run that asked for `library`: that one when it has the
    baseline, else the first that does (SIGReg and MMCR are lightly's only)."""
    builders = BASELINES_REGISTRY[name].builders
    return library if library in builders else next(iter(builders))


def require_library(library: str, methods: tuple[str, ...] | list[str] = BASELINES) -> None:
    """Imports every library that `methods`' baselines come from when `library` is asked for, now,
    so that a run that needs one stops at its start rather than after the methods trained before
    the first baseline; RuntimeError naming the fix otherwise."""
    if library not in LIBRARIES:
        raise ValueError(f"library must be one of {LIBRARIES}, got {library!r}")
    needed = dict.fromkeys([library] + [source_library(m, library) for m in methods if m in BASELINES_REGISTRY])
    for lib in needed:
        try:
            __import__(_MODULES[lib])
        except ImportError as error:
            users = [m for m in methods if m in BASELINES_REGISTRY and source_library(m, library) == lib]
            why = "" if lib == library else f" ({', '.join(users)} come only from {lib})"
            raise RuntimeError(
                f"the baselines come from {lib!r}{why}, which does not import here ({error}): {_INSTALL[lib]}"
            ) from None


def baseline_loss(name: str, library: str | None = None, **hyper_parameters: float) -> tuple[str, LossFn]:
    """(library, loss) for one baseline with the given hyper-parameters (the rest at its defaults).
    library: "solo-learn", "lightly", or None for whichever is installed (solo-learn first); a
    baseline that library lacks comes from the one that has it, and the returned source says so."""
    if name not in BASELINES_REGISTRY:
        raise ValueError(f"baseline must be one of {BASELINES}, got {name!r}")
    baseline = BASELINES_REGISTRY[name]
    unknown = set(hyper_parameters) - set(baseline.defaults)
    if unknown:
        raise ValueError(f"{name} takes the hyper-parameters {sorted(baseline.defaults)}, got {sorted(unknown)}")
    if library is None:
        library = available_library()
        if library is None:
            raise RuntimeError(
                f"the {name} baseline comes from solo-learn or lightly, and neither is installed: "
                f"pip install lightly (or the package's [demo] extra)"
            )
    elif library not in LIBRARIES:
        raise ValueError(f"library must be one of {LIBRARIES} or None, got {library!r}")
    source = source_library(name, library)
    params = {**baseline.defaults, **{k: float(v) for k, v in hyper_parameters.items()}}
    try:
        return source, baseline.builders[source](params)
    except ImportError as error:
        raise RuntimeError(import_failure(source, name, error)) from None


def import_failure(source: str, name: str, error: ImportError) -> str:
    """What is really missing when a baseline's builder fails to import: the library itself (the
    command that installs it), or a name inside an installed library (its version, and the name)."""
    top = _MODULES[source].split(".")[0]
    missing_module = isinstance(error, ModuleNotFoundError) and (error.name or "").split(".")[0] == top
    if missing_module and error.name in (top, _MODULES[source]):
        return f"the {name} baseline comes from {source}, which is not installed ({error}): {_INSTALL[source]}"
    try:
        version = metadata.version(_DISTRIBUTIONS[source])
    except metadata.PackageNotFoundError:
        return f"the {name} baseline comes from {source}, which is not installed ({error}): {_INSTALL[source]}"
    return (
        f"the {name} baseline needs a name that {source} {version} does not provide ({error}); "
        f"the plugin is tested with another {source}: {_TESTED[source]}"
    )


def baseline_losses(library: str | None = None) -> dict[str, tuple[str, LossFn]]:
    """name -> (library, loss(z1, z2)) at the defaults, for every baseline some installed library
    provides (empty when neither is installed)."""
    if library is None:
        library = available_library()
        if library is None:
            return {}
    return {name: baseline_loss(name, library) for name in BASELINES if _imports(source_library(name, library))}
