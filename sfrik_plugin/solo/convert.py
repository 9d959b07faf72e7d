"""sfrik-convert: the official SFRIK checkpoints as solo-learn checkpoints.

    sfrik-convert sfrik_32k_in1000_200ep_r50_backbone.pth --out trained_models/sfrik/official-r50
    sfrik-convert last_ckp.pth --out trained_models/sfrik/official-full [--arch resnet50] [--method sfrik]

SRC is either official format (sfrik_plugin/solo/checkpoints.py): the released backbone .pth (a
plain torchvision-style state dict without fc) or the full last_ckp.pth (model/optimizer/epoch,
keys with DDP's ``module.`` prefix, backbone and projector). DIR receives

- ``<name>.ckpt``: ``{"state_dict": {"backbone.*": ..., "projector.*": ...}, "epoch": ...}``, which
  main_linear.py (``pretrained_feature_extractor=``), main_knn.py / main_umap.py
  (``--pretrained_checkpoint_dir DIR``), sfrik-linear, sfrik-semisup and the plugin's methods
  (``METHODS[...].load_from_checkpoint``) read; ``projector.*`` only where the source has one;
- ``args.json``: the method's full solo-learn config (the packaged config of its protocol with
  the backbone and projector widths of the source), as main_pretrain.py writes it.

The architecture comes from the keys (resnet18 or resnet50, solo-learn's ResNets); --arch
overrides it and must then fit the weights. A state dict that is not a ResNet is refused with the
reason, and the weights are loaded strictly into solo-learn's backbone before anything is written.
A solo-learn checkpoint (a .ckpt with ``state_dict``) is refused: the scripts read it as it is.

DIR is checked before any work: it must be (or become) a writable folder, and an existing
``<name>.ckpt`` or ``args.json`` there is replaced only with --overwrite. Both files are written
to temporary files in DIR first, then renamed (os.replace): an interrupted conversion leaves the
previous files or none, never half of one. Needs solo-learn (and its hydra-core).
"""

import argparse
import json
import os
import secrets
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from sfrik_plugin.solo.checkpoints import (
    SOLO_FORMAT,
    CheckpointFormatError,
    build_backbone,
    infer_resnet_arch,
    load_strict,
    projector_dims,
    split_official,
    torch_load,
)

# method -> its packaged IN20% config (IN100%: sfrik_in100 for SFRIK's ResNet-50)
BASE_CONFIGS = {"sfrik": "sfrik_in20", "auh": "auh_in20", "simclr_shared": "simclr_in20"}


def method_config(method: str, arch: str, proj_dims=None, name: str = "converted"):
    """The solo-learn config of ``method`` as main_pretrain.py completes it (parse_cfg and the
    method's add_and_assert_specific_cfg), for ``arch`` and the projector widths."""
    from hydra import compose, initialize
    from omegaconf import OmegaConf
    from solo.args.pretrain import parse_cfg

    from sfrik_plugin.solo.registration import register_methods

    methods = register_methods()
    if method not in BASE_CONFIGS:
        raise ValueError(f"method: {method!r} is not one of {sorted(BASE_CONFIGS)}")
    base = "sfrik_in100" if (method, arch) == ("sfrik", "resnet50") else BASE_CONFIGS[method]
    overrides = [f"backbone.name={arch}", f"name={name}"]
    if proj_dims is not None:
        overrides += [f"method_kwargs.proj_hidden_dim={proj_dims[1]}", f"method_kwargs.proj_output_dim={proj_dims[2]}"]
    with initialize(version_base="1.2", config_path=None):
        cfg = compose(config_name=base, overrides=overrides)
    OmegaConf.set_struct(cfg, False)
    cfg = parse_cfg(cfg)
    cfg = methods[method].add_and_assert_specific_cfg(cfg)
    return cfg


def check_output(out: Path, name: str, overwrite: bool) -> None:
    """Before any work: DIR is a folder or can be made one, it is writable, it holds no other .ckpt
    (main_knn.py reads the first of a folder), and <name>.ckpt and args.json are not there unless
    overwrite."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {str(out)!r} is a file, not a folder")
    if out.is_dir():
        others = sorted(p.name for p in out.glob("*.ckpt") if p.name != f"{name}.ckpt")
        if others:
            raise FileExistsError(
                f"--out {str(out)!r} already holds {others}: main_knn.py reads the first .ckpt of a "
                "folder, so give the converted checkpoint a folder of its own"
            )
        existing = [f for f in (f"{name}.ckpt", "args.json") if (out / f).exists()]
        if existing and not overwrite:
            raise FileExistsError(
                f"--out {str(out)!r} already holds {' and '.join(existing)}: pass --overwrite to replace "
                f"{'them' if len(existing) > 1 else 'it'}, or choose another --out (or --name)"
            )
    folder = out
    while not folder.exists():  # the folder that will hold DIR once it is made
        folder = folder.parent
    if not folder.is_dir():
        raise FileExistsError(f"--out {str(out)!r}: {str(folder)!r} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise PermissionError(
            f"--out {str(out)!r} is not writable: cannot create a file in {str(folder)!r} ({err.strerror or err})"
        ) from None


def _write_atomically(files: dict[Path, Callable[[Path], object]]) -> None:
    """Each write(path) to a temporary file beside path, then every one renamed over its path
    (os.replace): no file is left half written; the temporary files are removed on failure.

    Not utils.files.atomic_path: its temporary file keeps the target's suffix, and a .ckpt left
    behind by a killed process would be what main_knn.py takes as "the first .ckpt" of DIR. These
    end in .tmp, and are created with the usual permissions (open, not mkstemp's 0600)."""
    staged: dict[Path, Path] = {}
    try:
        for path, write in files.items():
            staged[path] = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
            write(staged[path])
        for path, temporary in staged.items():
            os.replace(temporary, path)
    finally:
        for temporary in staged.values():
            temporary.unlink(missing_ok=True)


def convert(
    src, out, arch: str | None = None, method: str = "sfrik", name: str | None = None, overwrite: bool = False
) -> Path:
    """Writes DIR/<name>.ckpt and DIR/args.json (module docstring); returns the .ckpt path."""
    from omegaconf import OmegaConf

    src, out = Path(src), Path(out)
    given = name is not None
    name = name or src.name.split(".")[0]
    if "=" in name or "/" in name:
        origin = "--name" if given else f"the name taken from {src.name!r} (choose another with --name)"
        raise ValueError(f"{origin}: {name!r} must not contain '=' or '/' (Hydra overrides and paths)")
    check_output(out, name, overwrite)
    backbone_state, projector_state, info = split_official(torch_load(src, "SRC"), f"SRC {str(src)!r}")
    if info["format"] == SOLO_FORMAT:
        raise CheckpointFormatError(
            f"SRC {str(src)!r} is already a solo-learn checkpoint ('state_dict' with backbone.* keys): "
            "main_linear.py (pretrained_feature_extractor=), main_knn.py and main_umap.py "
            "(--pretrained_checkpoint_dir), sfrik-linear, sfrik-semisup and sfrik-knn read it as it is. "
            "sfrik-convert converts the official SFRIK checkpoints (the backbone .pth or last_ckp.pth)"
        )
    inferred = infer_resnet_arch(backbone_state, f"the backbone of {str(src)!r}")
    arch = arch or inferred
    backbone = build_backbone(arch)
    load_strict(backbone, backbone_state, f"the backbone of {str(src)!r}", setting="--arch")
    dims = None
    if projector_state is not None:
        dims = projector_dims(projector_state, f"the projector of {str(src)!r}")
        if dims[0] != backbone.inplanes:
            raise CheckpointFormatError(
                f"the projector of {str(src)!r} takes {dims[0]} features, but the {arch} "
                f"backbone gives {backbone.inplanes}"
            )

    cfg = method_config(method, arch, dims, name=name)
    out.mkdir(parents=True, exist_ok=True)
    state = {f"backbone.{k}": v for k, v in backbone_state.items()}
    if projector_state is not None:
        state.update({f"projector.{k}": v for k, v in projector_state.items()})
    import lightning

    ckpt = {
        "state_dict": state,
        "epoch": int(info["epoch"]) if isinstance(info.get("epoch"), int) else 0,
        "global_step": 0,
        "pytorch-lightning_version": lightning.__version__,
        "sfrik_plugin_converted_from": {"path": str(src.resolve()), "format": info["format"], "arch": arch},
    }
    path = out / f"{name}.ckpt"
    args = json.dumps(OmegaConf.to_container(cfg, resolve=True), indent=4, default=str)
    _write_atomically(
        {path: lambda tmp: torch.save(ckpt, tmp), out / "args.json": lambda tmp: tmp.write_text(args)},
    )
    return path


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="sfrik-convert", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("src", help="official checkpoint: the backbone .pth or the full last_ckp.pth")
    parser.add_argument("--out", required=True, help="folder for <name>.ckpt and args.json")
    parser.add_argument(
        "--arch", choices=("resnet18", "resnet50"), default=None, help="backbone (default: inferred from the keys)"
    )
    parser.add_argument(
        "--method", choices=sorted(BASE_CONFIGS), default="sfrik", help="the method args.json names (default sfrik)"
    )
    parser.add_argument("--name", default=None, help="checkpoint name (default: SRC's file name without suffix)")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace <name>.ckpt and args.json where DIR already holds them"
    )
    opts = parser.parse_args(argv)
    try:
        path = convert(opts.src, opts.out, arch=opts.arch, method=opts.method, name=opts.name, overwrite=opts.overwrite)
    except (CheckpointFormatError, FileNotFoundError, FileExistsError, PermissionError, ValueError) as err:
        raise SystemExit(f"sfrik-convert: {err}") from None
    print(f"sfrik-convert: wrote {path} and {path.parent / 'args.json'}")


if __name__ == "__main__":
    main(sys.argv[1:])
