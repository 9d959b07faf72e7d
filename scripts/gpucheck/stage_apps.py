"""Stages j (sfrik-demo on the GPU) and k (solo-learn's scripts with the plugin)."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

from . import core
from .core import (
    CSVS,
    FAILED,
    FASHION_MNIST_DIR,
    PASSED,
    SKIPPED,
    Context,
    Outcome,
    baselines_note,
    command_line,
    make_image_folder,
    read_csv,
    run_checked,
    tail,
)

# ---------------------------------------------------------------------------------------------
# j. demo


def stage_demo(ctx: Context) -> Outcome:
    demo_out = ctx.work / "demo"
    if ctx.dry:
        folder = make_image_folder(ctx, "demo_images", classes=3, per_class=24, size=12)
        options = {"dataset": "folder", "data_dir": folder, "image_size": 12, "methods": "sfrik"}
        options |= {"epochs": 1, "train_size": 0, "probe_size": 0, "batch_size": 24, "width": 4, "proj_dim": 32}
        options |= {"knn_k": 5, "accelerator": "cpu"}
        data = "dry run: a generated 3-class image folder, sfrik only, on the CPU"
    else:
        if FASHION_MNIST_DIR.is_dir():
            options, data = {"data_dir": FASHION_MNIST_DIR, "no_download": True}, "Fashion-MNIST"
        else:
            folder = make_image_folder(ctx, "demo_images", classes=10, per_class=600, size=32)
            options = {"dataset": "folder", "data_dir": folder}
            data = f"a generated 10-class image folder ({FASHION_MNIST_DIR} absent, no download)"
        options |= {"epochs": 1, "accelerator": "gpu", **demo_methods(ctx)}
    cmd = [ctx.python, "-m", "sfrik_experiments.demo", *command_line({**options, "out": demo_out})]
    run = run_checked(ctx, "demo", cmd, "sfrik-demo")
    if not (demo_out / "results.csv").exists():
        return Outcome(FAILED, "sfrik-demo wrote no results.csv", tail(run.text))
    shutil.copy(demo_out / "results.csv", ctx.out / CSVS["demo"])
    shutil.copytree(demo_out, ctx.logs / "demo", dirs_exist_ok=True)  # the plot and run.json, archived
    rows = read_csv(demo_out / "results.csv")
    labels = [r["method"] + (f" {r['seed']}" if r["method"] == "random" else "") for r in rows]  # the floor's inits
    details = [
        f"  {label:<14} linear {r['linear_top1']:>6} kNN {r['knn_top1']:>6} s/step "
        f"{r['sec_per_step'] or '-':>8.8} peak MiB {r['peak_mem_mb'] or '-':>8.8}"
        for label, r in zip(labels, rows)
    ]
    methods = ", ".join(r["method"] for r in rows if r["method"] != "random")  # the random encoder: always a row
    return Outcome(PASSED, f"one epoch on {data}: {methods}{baselines_note(ctx)}; {CSVS['demo']}", details)


def demo_methods(ctx: Context) -> dict:
    """The demo's --library / --methods for the baselines' libraries this machine has."""
    if ctx.has("lightly"):
        return {}
    if ctx.has("solo"):  # SIGReg and MMCR, among the demo's defaults, are lightly's only
        return {"library": "solo-learn", "methods": ["sfrik", "vicreg", "barlow_twins", "simclr", "auh"]}
    return {"methods": ["sfrik", "auh"]}


# ---------------------------------------------------------------------------------------------
# k. solo-learn


def solo_ready(ctx: Context) -> str | None:
    where = ctx.args.solo_learn_dir
    if not where:
        return "no --solo-learn-dir given"
    checkout = Path(where).resolve()
    if not (checkout / "main_pretrain.py").is_file() or not (checkout / "main_knn.py").is_file():
        return f"{checkout} has no main_pretrain.py / main_knn.py"
    return None


def stage_solo(ctx: Context) -> Outcome:
    checkout = Path(ctx.args.solo_learn_dir).resolve()
    run = core.run_logged(ctx, "solo-import", [ctx.python, "-c", "import solo"], limit=60)
    if not run.ok:
        return Outcome(SKIPPED, f"solo-learn does not import here ({' '.join(tail(run.text, 1)).strip()})")
    start = time.monotonic()
    folder = make_image_folder(ctx, "solo_images", classes=4, per_class=80, size=32)
    ckpt_dir = ctx.work / "solo_ckpt"
    steps = 2 if ctx.dry else 40
    env = {"WANDB_MODE": "disabled", "HYDRA_FULL_ERROR": "1", "SFRIK_REQUIRE_EXTENSION": "1"}
    cmd = [
        ctx.python,
        "main_pretrain.py",
        "--config-name",
        "sfrik_cpu",
        f"data.train_path={folder}",
        f"checkpoint.dir={ckpt_dir}",
        f"+limit_train_batches={steps}",
        f"+default_root_dir={ctx.work / 'solo_runs'}",
        f"accelerator={'cpu' if ctx.dry else 'gpu'}",
    ]
    run = run_checked(ctx, "solo-pretrain", cmd, "main_pretrain.py", env=env, cwd=checkout)
    runs = [p for p in (ckpt_dir / "sfrik").iterdir() if p.is_dir()] if (ckpt_dir / "sfrik").is_dir() else []
    if not runs or not list(runs[0].glob("*.ckpt")):
        return Outcome(FAILED, "main_pretrain.py wrote no checkpoint", tail(run.text))
    note = f"main_pretrain.py: {steps} steps of batch 8 in {time.monotonic() - start:.0f} s"
    if ctx.dry:
        return Outcome(PASSED, f"{note}; main_knn.py not run (dry run: it moves batches to CUDA)")
    data = {"dataset": "custom", "train_data_path": folder, "val_data_path": folder, "data_format": "image_folder"}
    options = {"pretrained_checkpoint_dir": runs[0], **data, "batch_size": 64, "num_workers": 4, "k": 20}
    options |= {"temperature": 0.07, "distance_function": "cosine", "feature_type": "backbone"}
    knn = [ctx.python, "-m", "sfrik_plugin.solo.knn", "--solo-learn-dir", str(checkout)]
    run = run_checked(ctx, "solo-knn", knn + command_line(options, separator="_"), "main_knn.py", env=env, cwd=checkout)
    results = re.findall(r"Result: acc@1=([\d.]+), acc@5=([\d.]+)", run.text)
    return Outcome(
        PASSED,
        f"{note}; main_knn.py on its checkpoint: acc@1 {results[-1][0] if results else '?'} "
        f"(train = val folder: a smoke test, not a result)",
    )
