"""sfrik_experiments.compare.probe, the wrapper each of sfrik-compare's runs goes through (needs
lightning): the epoch times without validation, the metrics, and a run cut short."""

import json
import signal

import pytest
from helpers.interrupts import start_paused
from helpers.processes import run_python

PROBED_SCRIPT = """
import sys, time
import torch
from lightning.pytorch import LightningModule, Trainer

class Tiny(LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(4, 2)

    def training_step(self, batch, i):
        return self.layer(batch[0]).sum()

    def validation_step(self, batch, i):
        time.sleep(VAL_SLEEP_S)         # validation inside an epoch: not part of its time
        self.log("val_acc1", 37.5)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

if __name__ == "__main__":
    print("argv", sys.argv[1:])
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(8, 4)), batch_size=4)
    Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
            num_sanity_val_steps=0, enable_model_summary=False).fit(Tiny(), data, data)
"""


@pytest.mark.slow  # importing lightning in a fresh process: ~10 s
def test_probe_reports_epoch_times_without_validation_and_the_metrics(tmp_path):
    pytest.importorskip("lightning", reason="lightning is not installed (it comes with solo-learn)")
    val_sleep_s = 0.5
    (tmp_path / "script.py").write_text(PROBED_SCRIPT.replace("VAL_SLEEP_S", str(val_sleep_s)))
    probe = ["-m", "sfrik_experiments.compare.probe", "--report", "r.json"]
    proc = run_python(*probe, "script.py", "a=1", "--flag", cwd=tmp_path)
    assert "argv ['a=1', '--flag']" in proc.stdout
    report = json.loads((tmp_path / "r.json").read_text())
    assert len(report["epoch_seconds"]) == report["max_epochs"] == 2
    # each epoch validates twice (2 batches x val_sleep_s): subtracted, what is left is tiny
    assert all(0 < s < val_sleep_s for s in report["epoch_seconds"]), report["epoch_seconds"]
    assert report["metrics"]["val_acc1"] == 37.5
    assert report["device"] == "cpu" and report["peak_cuda_mib"] is None and report["checkpoint"] is None
    assert report["peak_rss_mib"] > 50


@pytest.mark.slow
def test_a_probed_run_cut_short_writes_no_report_and_exits_with_the_signal(tmp_path):
    pytest.importorskip("lightning", reason="lightning is not installed (it comes with solo-learn)")
    (tmp_path / "script.py").write_text(PROBED_SCRIPT.replace("VAL_SLEEP_S", "0"))
    child = start_paused(
        "sfrik_experiments.compare.probe", "--report", "r.json", "script.py", workdir=tmp_path / "child", cwd=tmp_path
    )
    assert child.interrupt(signal.SIGINT) == 130, child.output()
    assert "the run was interrupted by SIGINT" in child.output()
    assert not (tmp_path / "r.json").exists()
