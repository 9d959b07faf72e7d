"""sfrik-compare's reports and tables: a method's row from its two runs' reports, compare.csv and
compare.md, and what the table says the linear top-1 is measured on."""

import csv
from pathlib import Path

import pytest

from sfrik_experiments.compare import runs, tables, val_images
from sfrik_experiments.compare.runs import RunFailed, Step

HELD_OUT = val_images.ProbeImages("/data/train", "/data/val", None, Path("/solo"))


def fake_reports(tmp_path, val_acc1=61.25, epochs=(2.0, 4.0), images=HELD_OUT):
    pretrain = Step("sfrik", "pretrain", "sfrik_cpu", tmp_path / "sfrik" / "pretrain")
    linear = Step("sfrik", "linear", "linear_cpu", tmp_path / "sfrik" / "linear")
    pre = {
        "epoch_seconds": list(epochs),
        "metrics": {"train_sfrik_loss": 3.0},
        "peak_rss_mib": 1234.5,
        "peak_cuda_mib": None,
        "device": "cpu",
        "checkpoint": "/c/sfrik-cpu-0-ep=1.ckpt",
        "wall_seconds": 9.5,
    }
    lin = {"epoch_seconds": [1.0], "metrics": {"val_acc5": 99.0, **({"val_acc1": val_acc1} if val_acc1 else {})}}
    return pretrain, linear, pre, lin, images


def test_result_row_from_reports(tmp_path):
    row = runs.result_row(*fake_reports(tmp_path))
    assert row == {
        "method": "sfrik",
        "config": "sfrik_cpu",
        "top1": 61.25,
        "top1_measured_on": "/data/val",
        "top1_on_training_images": False,
        "top1_val_path": "/data/val",
        "pretrain_epochs": 2,
        "pretrain_s_per_epoch": 3.0,
        "pretrain_wall_s": 9.5,
        "pretrain_peak_rss_mib": 1234.5,
        "pretrain_peak_cuda_mib": None,
        "device": "cpu",
        "checkpoint": "/c/sfrik-cpu-0-ep=1.ckpt",
    }
    assert runs.result_row(*fake_reports(tmp_path, epochs=()))["pretrain_s_per_epoch"] is None  # resumed, no epoch run
    with pytest.raises(
        RunFailed, match=r"sfrik: the linear probe \(linear_cpu\) logged no val_acc1 .* see .*linear/run.log"
    ):
        runs.result_row(*fake_reports(tmp_path, val_acc1=None))


def test_tables(tmp_path):
    rows = [
        runs.result_row(*fake_reports(tmp_path)),
        {
            **runs.result_row(*fake_reports(tmp_path, val_acc1=7.0)),
            "method": "vicreg",
            "config": "vicreg_cpu",
            "pretrain_peak_cuda_mib": 2048.4,
            "device": "NVIDIA H100 80GB HBM3",
        },
    ]
    csv_path, md_path = tables.write_tables(rows, tmp_path / "out")
    with open(csv_path, newline="") as f:
        read = list(csv.DictReader(f))
    assert [r["method"] for r in read] == ["sfrik", "vicreg"]
    assert float(read[0]["top1"]) == 61.25 and float(read[0]["pretrain_s_per_epoch"]) == 3.0
    assert read[0]["pretrain_peak_cuda_mib"] == "" and float(read[1]["pretrain_peak_cuda_mib"]) == 2048.4
    assert list(read[0]) == tables.COLUMNS
    assert md_path.read_text().splitlines() == [
        "| method | config | linear top-1 (%) | top-1 measured on | time / epoch (s) | epochs | peak RSS (MiB) "
        "| peak GPU memory (MiB) | device |",
        "|---|---|---|---|---|---|---|---|---|",
        "| sfrik | sfrik_cpu | 61.25 | /data/val | 3.00 | 2 | 1234 | - | cpu |",
        "| vicreg | vicreg_cpu | 7.00 | /data/val | 3.00 | 2 | 1234 | 2048 | NVIDIA H100 80GB HBM3 |",
    ]


@pytest.mark.parametrize(
    "train, val, limit, measured_on, on_training, notes",
    [
        ("/data/train", "/data/val", None, "/data/val", False, []),
        # the same folder, however it is spelt (relative paths are relative to the checkout)
        ("/data/train", "/data/train", None, "the training images", True, ["measured on the training images"]),
        ("/solo/images", "images/", None, "the training images", True, ["measured on the training images"]),
        ("/data/train", "/data/val", "2", "/data/val (limit_val_batches=2)", False, ["first batches of data.val_path"]),
        (
            "/data/train",
            "/data/train/",
            "1",
            "the training images (limit_val_batches=1)",
            True,
            ["measured on the training images", "in class order"],
        ),
    ],
)
def test_the_table_says_what_linear_top1_is_measured_on(tmp_path, train, val, limit, measured_on, on_training, notes):
    images = val_images.ProbeImages(train, val, limit, Path("/solo"))
    row = runs.result_row(*fake_reports(tmp_path, images=images))
    assert (row["top1_measured_on"], row["top1_on_training_images"], row["top1_val_path"]) == (
        measured_on,
        on_training,
        val,
    )
    _, md_path = tables.write_tables([row], tmp_path / "out", images.notes())
    text = md_path.read_text()
    assert text.splitlines()[2].startswith(f"| sfrik | sfrik_cpu | 61.25 | {measured_on} |")
    assert len(images.notes()) == len(notes) and all(n in text for n in notes), text
    if on_training:
        assert "a training accuracy, not a held-out one" in text and "data.val_path=<folder>" in text
    with open(tmp_path / "out" / "compare.csv", newline="") as f:
        (read,) = list(csv.DictReader(f))
    assert (read["top1_measured_on"], read["top1_on_training_images"]) == (measured_on, str(on_training))
