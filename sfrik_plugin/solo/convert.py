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
Needs solo-learn (and its hydra-core).
"""

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from sfrik_plugin.solo.checkpoints import (
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


def convert(src, out, arch: str | None = None, method: str = "sfrik", name: str | None = None) -> Path:
    """Writes DIR/<name>.ckpt and DIR/args.json (module docstring); returns the .ckpt path."""
    from omegaconf import OmegaConf

    src, out = Path(src), Path(out)
    backbone_state, projector_state, info = split_official(torch_load(src, "SRC"), f"SRC {str(src)!r}")
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
    given = name is not None
    name = name or src.name.split(".")[0]
    if "=" in name or "/" in name:
        origin = "--name" if given else f"the name taken from {src.name!r} (choose another with --name)"
        raise ValueError(f"{origin}: {name!r} must not contain '=' or '/' (Hydra overrides and paths)")

    cfg = method_config(method, arch, dims, name=name)
    out.mkdir(parents=True, exist_ok=True)
    others = [p.name for p in out.glob("*.ckpt") if p.name != f"{name}.ckpt"]
    if others:
        raise FileExistsError(
            f"--out {str(out)!r} already holds {others}: main_knn.py reads the first .ckpt of a "
            "folder, so give the converted checkpoint a folder of its own"
        )
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
    torch.save(ckpt, path)
    (out / "args.json").write_text(json.dumps(OmegaConf.to_container(cfg, resolve=True), indent=4, default=str))
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
    opts = parser.parse_args(argv)
    try:
        path = convert(opts.src, opts.out, arch=opts.arch, method=opts.method, name=opts.name)
    except (CheckpointFormatError, FileNotFoundError, FileExistsError, ValueError) as err:
        raise SystemExit(f"sfrik-convert: {err}") from None
    print(f"sfrik-convert: wrote {path} and {path.parent / 'args.json'}")


if __name__ == "__main__":
    main(sys.argv[1:])
