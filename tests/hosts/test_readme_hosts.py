"""The README's "Other hosts" section does what it says: its plain-PyTorch snippet runs and gives
the library's values, its lightly commands name scripts the tests run, its harness lines work."""

from __future__ import annotations

import re
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
SECTION = README[README.index("## Other hosts") : README.index("## Results")]


def code_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", SECTION, flags=re.S)


def test_the_plain_pytorch_snippet_runs():
    (snippet,) = code_blocks("python")
    scope: dict = {}
    exec(snippet, scope)
    from sfrik_plugin import SFRIKLoss, SphereMMD

    assert torch.equal(scope["loss"], SFRIKLoss(gather_distributed=False)(scope["z1"], scope["z2"]))
    assert torch.equal(scope["regulariser"], SphereMMD()(torch.stack([scope["z1"], scope["z2"]])))


def test_the_lightly_commands_name_what_the_tests_run():
    commands = "\n".join(code_blocks("bash"))
    scripts = re.findall(r"python (examples/\S+\.py)", commands)
    assert scripts and all((ROOT / s).is_file() for s in scripts)
    for script in scripts:
        host = Path(script).parent.name  # examples/<host>/<script>
        tested = (ROOT / "tests" / "hosts" / f"test_{host}.py").read_text()
        assert f'"{Path(script).name}"' in tested, f"{script} is not run by tests/hosts/test_{host}.py"
    assert {Path(s).parent.name for s in scripts} == {"lightly", "stable_pretraining"}
    for extra in ("lightly", "stable-pretraining"):
        assert f'pip install --no-build-isolation -e ".[{extra}]"' in commands


def test_the_harness_lines_work():
    lines = re.findall(r"`(from sfrik_plugin\.hosts import lightly_benchmark as sfrik)`", SECTION)
    lines += re.findall(r'`(METHODS\["sfrik"\] = .*?)`', SECTION)
    assert len(lines) == 2
    scope: dict = {"METHODS": {}}
    exec("\n".join(lines), scope)
    from sfrik_plugin.hosts import lightly_benchmark

    assert scope["METHODS"]["sfrik"] == {"model": lightly_benchmark.SFRIK, "transform": lightly_benchmark.transform}


def test_the_lejepa_benchmark_table_is_the_recorded_csv():
    import csv

    text = (ROOT / "BENCHMARKS.md").read_text()
    start = text.index("## LeJEPA with SphereMMD in SIGReg's place")
    end = text.find("\n## ", start + 1)  # the next topic, or the end of the file
    section = text[start : end if end > 0 else None]
    lines = [line for line in section.splitlines() if re.match(r"\| \d+ \|", line)]
    rows = list(csv.DictReader((ROOT / "docs" / "records" / "bench" / "lejepa_cpu.csv").open()))
    by = {(r["n"], r["q"], r["views"], r["method"]): r for r in rows if r["method"].startswith("lejepa_")}
    assert len(lines) == len(by) // 2 == 12
    for line in lines:
        n, q, views, sigreg, sphere, time_ratio, memory_ratio = (c.strip() for c in line.strip("|").split("|"))
        a, b = by[(n, q, views, "lejepa_sigreg")], by[(n, q, views, "lejepa_sphere_mmd")]
        assert sigreg == f"{float(a['ms_median']):.0f} ms / {float(a['peak_extra_mib']):.0f} MiB"
        assert sphere == f"{float(b['ms_median']):.0f} ms / {float(b['peak_extra_mib']):.0f} MiB"
        assert (
            time_ratio == f"{float(b['time_vs_sigreg']):.3f}" and memory_ratio == f"{float(b['memory_vs_sigreg']):.3f}"
        )
