"""sfrik-demo's sizes that cannot train are refused at start (issue 28): the error names the flag
and the fix, before any data is loaded or any model built."""

import pytest

pytest.importorskip("lightning", reason="the demo needs Lightning (the package's [demo] extra)")

from sfrik_experiments.demo import cli as demo
from sfrik_experiments.engine import data as datasets


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["--batch-size", "1"],
            "--batch-size must be at least 2, got 1: BatchNorm in the backbone and the projector needs 2 or more "
            "images per batch",
        ),
        (
            ["--proj-dim", "1"],
            "--proj-dim must be at least 2, got 1: it is the projector's output width q, and the embeddings are "
            "normalised onto the sphere S^(q-1)",
        ),
    ],
)
def test_sizes_that_cannot_train_are_refused_before_any_work(monkeypatch, capsys, argv, message):
    def no_data(*args, **kwargs):
        raise AssertionError("the demo loaded data before refusing its arguments")

    monkeypatch.setattr(datasets, "load", no_data)
    with pytest.raises(SystemExit) as exit_info:
        demo.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "sfrik-demo: error: " + message in err


def test_the_smallest_sizes_that_train_are_accepted():
    setting = demo.resolve_setting(demo.parse_args(["--batch-size", "2", "--proj-dim", "2"]))
    assert setting.batch_size == 2 and setting.proj_dim == 2
