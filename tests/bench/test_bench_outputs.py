"""sfrik-bench checks --csv and --plot before the suite runs: a path it cannot write, or one that
already holds results (without --overwrite), stops it at start with a message naming the flag."""

from __future__ import annotations

import pytest

from sfrik_experiments.bench import cli

SUITE = ["legendre", "--device", "cpu", "--sizes", "64", "--degrees", "3", "--dim", "8"]


def test_an_unwritable_csv_is_refused_before_the_suite_runs(tmp_path, monkeypatch):
    ran = []
    monkeypatch.setattr(cli.legendre, "run", lambda args: ran.append(args) or 0)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for flag in ("--csv", "--plot"):
        with pytest.raises(SystemExit, match=rf"sfrik-bench: {flag} .*/x': its folder .* is not one this process can"):
            cli.main([*SUITE, flag, str(blocker / "out" / "x")])
    with pytest.raises(SystemExit, match=r"sfrik-bench: --csv .* is a folder; give a file name"):
        cli.main([*SUITE, "--csv", str(tmp_path)])
    assert not ran


def test_an_existing_csv_is_replaced_only_with_overwrite(tmp_path, monkeypatch):
    ran = []
    monkeypatch.setattr(cli.legendre, "run", lambda args: ran.append(args) or 0)
    recorded = tmp_path / "bench.csv"
    recorded.write_text("recorded results\n")
    with pytest.raises(SystemExit, match=r"bench.csv already hold\(s\) results; pass --overwrite"):
        cli.main([*SUITE, "--csv", str(recorded)])
    assert not ran and recorded.read_text() == "recorded results\n"
    assert cli.main([*SUITE, "--csv", str(recorded), "--overwrite"]) == 0 and len(ran) == 1
