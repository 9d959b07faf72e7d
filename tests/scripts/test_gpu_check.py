"""scripts/gpu_check.py: the dry run runs every stage on the CPU at tiny sizes and writes the report
(one line per stage), the CSVs and one log archive, at most 8 files; every stage runs commands (the
script imports only the standard library); --wheels installs wheels where later commands see them;
a time limit interrupts a command, then ends it; the rest of the suite leaves the later stages their
time."""

import ast
import csv
import re
import signal
import sys
import tarfile
import time
from pathlib import Path

import pytest
from helpers.gpu_check import PACKAGE, SCRIPT, gpu_check_module
from helpers.processes import failure, run_python

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 600  # a safety net: the stages have their own limits; ~1 min on 2 quiet cores
STAGES = (
    "wheels",
    "build",
    "cuda-tests",
    "tests",
    "sanitizer",
    "bandwidth",
    "losses",
    "step",
    "tiles",
    "demo",
    "solo-learn",
)
# The command each stage that runs in the dry run starts (the first line of its log: "$ command").
COMMANDS = {
    "build": ("build-load", "programs/load_probe.py"),
    "cuda-tests": ("cuda-tests", "-m pytest"),
    "tests": ("tests", "-m pytest"),
    "bandwidth": ("bandwidth", "-m sfrik_experiments.bench bandwidth"),
    "losses": ("losses-bf16", "-m sfrik_experiments.bench losses"),
    "loss profile": ("loss-profile", "programs/loss_profile.py"),
    "step": ("step", "-m sfrik_experiments.bench step"),
    "tiles": ("tiles", "-m sfrik_experiments.bench tiled --sweep-only"),
    "demo": ("demo", "-m sfrik_experiments.demo"),
}

pytestmark = pytest.mark.skipif(not SCRIPT.is_file(), reason="not run from a checkout")


def run_check(out: Path, *args: object, check: bool = True):
    """The script with args; its report's stage lines: {stage name: (status, summary)}."""
    proc = run_python(SCRIPT, "--out", out, *args, cwd=ROOT, timeout=TIMEOUT_S, check=False)
    report = (out / "report.md").read_text() if (out / "report.md").exists() else ""
    if check:
        assert proc.returncode == 0, failure(proc) + report
    lines = re.findall(r"^- [a-k]\. ([\w-]+): \*\*(\w+)\*\* \([^)]*\): (.*)$", report, flags=re.MULTILINE)
    assert [name for name, _, _ in lines] == list(STAGES), report
    return proc, report, {name: (status, summary) for name, status, summary in lines}


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_dry_run_runs_every_stage_and_writes_at_most_8_files(tmp_path):
    pytest.importorskip("lightning", reason="the demo stage needs Lightning (the package's [demo] extra)")
    out = tmp_path / "out"
    _, report, stages = run_check(out, "--dry-run")
    status = {name: s for name, (s, _) in stages.items()}
    ran = dict.fromkeys(("build", "cuda-tests", "tests", "bandwidth", "losses", "step", "tiles", "demo"), "passed")
    assert status == {**ran, "wheels": "skipped", "sanitizer": "skipped", "solo-learn": "skipped"}, report
    assert "reused the existing build (dry run: not rebuilt)" in report
    assert stages["wheels"][1] == "no --wheels given" and stages["solo-learn"][1] == "no --solo-learn-dir given"
    assert stages["tiles"][1].startswith("best tile ")

    files = sorted(p.name for p in out.iterdir())
    assert all((out / name).is_file() for name in files) and len(files) <= 8, files
    assert set(files) == {"report.md", "logs.tar.gz", "bandwidth.csv", "losses.csv", "step.csv", "tile_sweep.csv"} | {
        "demo_results.csv",
        "gram.csv",
    }
    assert {r["precision"] for r in read_rows(out / "gram.csv")} == {"float32", "bf16"}
    assert re.search(r"q = +\d+: SFRIK [\d.]+ ms = [\d.]+ of its floor \(need <= 1\.0\), SIGReg", report) or (
        "sigreg" not in {r["method"] for r in read_rows(out / "losses.csv") if r["status"] == "ok"}
    ), report
    assert {"sfrik_fallback"} <= {r["method"] for r in read_rows(out / "losses.csv") if r["autocast"] == "none"}
    # the loss's profile (programs/loss_profile.py): its per-q line in the summary, its top ops below
    assert re.search(r"profile: q = 32: [\d.]+ ms a call; ops [\d.]+ ms in \d+ ops a call", stages["losses"][1])
    assert re.search(r"^ +[\d.]+ ms +x *[\d.]+ +(aten|sfrik)::", report, flags=re.MULTILINE), report
    assert "mmcr" not in {r["method"] for r in read_rows(out / "losses.csv") if r["autocast"] == "bf16"}
    assert {r["autocast"] for r in read_rows(out / "losses.csv")} == {"none", "bf16"}
    step = read_rows(out / "step.csv")
    assert step[0]["method"] == "none" and {"sfrik", "vicreg"} <= {r["method"] for r in step}
    assert {r["op"] for r in read_rows(out / "bandwidth.csv")} >= {"forward", "backward", "device copy"}
    assert {int(r["tile"]) for r in read_rows(out / "tile_sweep.csv")} == {64, 128, 256, 600}
    demo = read_rows(out / "demo_results.csv")  # the floor's random-encoder inits, then SFRIK
    assert [(r["method"], r["seed"]) for r in demo] == [
        ("random", "0"),
        ("random", "1"),
        ("random", "2"),
        ("sfrik", "0"),
    ]

    with tarfile.open(out / "logs.tar.gz") as archive:
        texts = [m for m in archive.getmembers() if m.isfile() and m.name.endswith((".log", ".xml"))]
        logs = {Path(m.name).name: archive.extractfile(m).read().decode() for m in texts}
        assert "logs/demo/results.png" in archive.getnames()  # the demo's other outputs
    for stage, (log, words) in COMMANDS.items():
        first = logs[f"{log}.log"].splitlines()[0]
        assert first.startswith("$ ") and words in first, (stage, first)
    assert "<testsuite" in logs["cuda-tests.xml"] and "<testsuite" in logs["tests.xml"]  # pytest's JUnit XML


def test_the_script_imports_only_the_standard_library_and_starts_every_command_in_a_new_process():
    """The script and its package (not the programs it runs in a new interpreter, which import
    torch, numpy and PIL where the machine has them): the standard library only, and one place that
    starts a command, core.run_logged (subprocess.Popen in a session of its own)."""
    files = [SCRIPT, *sorted(PACKAGE.glob("*.py"))]
    assert len(files) >= 7, files
    started = []
    for path in files:
        tree = ast.parse(path.read_text())
        imported = {
            (alias.name if isinstance(node, ast.Import) else node.module).split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, (ast.Import, ast.ImportFrom)) and not getattr(node, "level", 0)
            for alias in node.names
        }
        outside = imported - {"__future__", "gpucheck"} - set(sys.stdlib_module_names)
        assert not outside, (path.name, outside)
        calls = [n.func for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)]
        starts = ("system", "popen", "exec", "spawn", "fork", "posix_spawn")
        started += [
            f"{path.name}: {f.value.id}.{f.attr}"
            for f in calls
            if isinstance(f.value, ast.Name)
            and (f.value.id == "subprocess" or (f.value.id == "os" and f.attr.startswith(starts)))
        ]
    assert started == ["core.py: subprocess.Popen"], started
    module = gpu_check_module()
    assert not any("torch" in vars(m) for m in module._modules)


def test_every_file_of_the_check_is_under_500_lines():
    for path in [SCRIPT, *PACKAGE.rglob("*.py")]:
        assert len(path.read_text().splitlines()) <= 500, path


def _tiny_wheel(tmp_path: Path) -> Path:
    """A wheel of an empty package gpu_check_probe 0.1, built offline from setuptools."""
    pytest.importorskip("setuptools")
    src = tmp_path / "src"
    (src / "gpu_check_probe").mkdir(parents=True)
    (src / "gpu_check_probe" / "__init__.py").write_text("")
    (src / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "gpu_check_probe"\nversion = "0.1"\n'
    )
    wheels = tmp_path / "wheels"
    run_python("-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index", "-w", wheels, src)
    return wheels


@pytest.mark.fresh_interpreter
def test_wheels_are_installed_where_the_later_commands_find_them(tmp_path):
    wheels = _tiny_wheel(tmp_path)
    out = tmp_path / "out"
    _, report, stages = run_check(out, "--dry-run", "--stages", "a", "--wheels", wheels)
    status, summary = stages["wheels"]
    assert status == "passed" and "installed 1 wheels into " in summary, report
    assert summary.endswith("a new interpreter finds gpu_check_probe==0.1"), summary
    assert "dry run: never into the running interpreter" in summary
    assert all(other == ("skipped", "not selected (--stages a)") for other in list(stages.values())[1:])
    assert sorted(p.name for p in out.iterdir()) == ["logs.tar.gz", "report.md"]


@pytest.mark.fresh_interpreter
def test_a_folder_without_wheels_skips_the_stage_and_a_missing_folder_is_refused(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    _, _, stages = run_check(tmp_path / "out", "--dry-run", "--stages", "a", "--wheels", empty)
    assert stages["wheels"] == ("skipped", f"no wheels (*.whl) in {empty}")
    proc = run_python(SCRIPT, "--out", tmp_path / "o2", "--wheels", tmp_path / "absent", check=False)
    assert proc.returncode == 2 and "argument --wheels" in proc.stderr and "is not a folder" in proc.stderr
    proc = run_python(SCRIPT, "--out", tmp_path / "o2", "--stages", "abz", check=False)
    assert proc.returncode == 2 and "argument --stages: unknown stage letters ['z']" in proc.stderr


@pytest.mark.fresh_interpreter
def test_without_a_gpu_every_stage_is_skipped_saying_why(tmp_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is visible here")
    proc, report, stages = run_check(tmp_path / "out", check=False)
    assert proc.returncode == 2, failure(proc)
    assert "no CUDA GPU is visible" in proc.stderr
    assert all(status == "skipped" for status, _ in stages.values())
    assert all("no CUDA GPU is visible" in summary for _, summary in list(stages.values())[1:]), report


def _context(module, tmp_path: Path, **options):
    args = module.parse_args(["--out", str(tmp_path), *[f"--{k.replace('_', '-')}={v}" for k, v in options.items()]])
    logs = tmp_path / "logs"
    logs.mkdir(exist_ok=True)
    return module.Context(args=args, out=tmp_path, work=tmp_path, logs=logs, dry=False)


@pytest.fixture(params=[signal.default_int_handler, signal.SIG_IGN], ids=["handled", "ignored"])
def inherited_sigint(request):
    """SIGINT as this process hands it to its children: handled, or ignored as in a script started
    in the background (`cmd &`, nohup). Set either way, whatever the test run itself inherited."""
    previous = signal.signal(signal.SIGINT, request.param)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.fresh_interpreter
def test_a_command_past_its_limit_gets_sigint_then_is_ended(tmp_path, monkeypatch, inherited_sigint):
    module = gpu_check_module()
    monkeypatch.setattr(module.core, "INTERRUPT_GRACE_S", 2)
    ctx = _context(module, tmp_path)
    ctx.deadline = time.monotonic() + 60
    polite = (
        "import time\ntry:\n    time.sleep(60)\nexcept KeyboardInterrupt:\n    print('interrupted, report written')"
    )
    start = time.monotonic()
    # 6 s, and -S (no site-packages scan at start-up): time for the interpreter to reach its try
    # block on a busy machine
    run = module.run_logged(ctx, "polite", [sys.executable, "-S", "-c", polite], limit=6.0)
    assert run.rc is None and run.text.splitlines()[-1] == "interrupted, report written"
    stubborn = "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
    stubborn += "print('started', flush=True)\ntime.sleep(60)"
    run = module.run_logged(ctx, "stubborn", [sys.executable, "-S", "-c", stubborn], limit=6.0)
    assert run.rc is None and "started" in run.text
    assert time.monotonic() - start < 40  # 6 s + a 2 s grace each, not the 60 s sleeps
    assert module.failed_run(run, "x").summary == "x: timed out after 6 s"


def test_the_rest_of_the_suite_leaves_the_later_stages_their_expected_time(tmp_path):
    module = gpu_check_module()
    ctx = _context(module, tmp_path, stages="cdfg")  # e (sanitizer), h-k not selected: nothing set aside
    ctx.info = {"modules": dict.fromkeys(("torch", "pytest", "numpy", "scipy", "hypothesis", "mpmath"), True)}
    stages = {s.key: s for s in module.STAGES}
    later = tuple(s for s in module.STAGES if s.key > "d")
    reserve = stages["f"].expect_s[0] + stages["g"].expect_s[0]
    grace = module.INTERRUPT_GRACE_S
    assert module.stage_limit(stages["d"], ctx, 200.0, later) == 200.0 - grace - reserve
    assert module.stage_limit(stages["d"], ctx, 1000.0, later) == stages["d"].limit_s[0]  # its own limit
    too_little = module.stage_limit(stages["d"], ctx, reserve + grace + module.MIN_ELASTIC_S - 1, later)
    assert isinstance(too_little, str) and f"{reserve} s are set aside" in too_little
    # an ordinary stage takes its own limit within what is left, and is not started for less than 10 s
    assert module.stage_limit(stages["f"], ctx, 200.0, ()) == stages["f"].limit_s[0]
    assert module.stage_limit(stages["f"], ctx, 25.0, ()) == 25.0 - grace
    assert isinstance(module.stage_limit(stages["f"], ctx, 15.0, ()), str)


def test_missing_packages_skip_their_stages_and_are_listed(tmp_path):
    module = gpu_check_module()
    ctx = _context(module, tmp_path)
    assert {"pip", "setuptools", "xdist", "solo", "lightly", "torchvision", "hydra"} <= set(module.probed_modules())
    found = {"torch": True, "torchvision": False, "xdist": False, "solo": False, "lightly": False, "pip": False}
    ctx.info = {"modules": found}
    step = next(s for s in module.STAGES if s.name == "step")
    assert module.skip_reason(step, ctx).startswith("missing torchvision (--wheels DIR")
    lines = module.missing_packages(ctx)
    assert "- pytest-xdist: c, d: tests in one process" in lines
    assert "- pip: b: cannot build the extension (--no-build reuses an existing build)" in lines
    assert any(line.startswith("- torchvision: skips h. step, j. demo") for line in lines), lines
    assert any(line.startswith("- solo-learn: skips k. solo-learn; g, h, j: no VICReg") for line in lines), lines


def test_the_report_lists_every_stage_once(tmp_path):
    """write_report on made-up outcomes: one line per stage, in order, and the file list."""
    module = gpu_check_module()
    ctx = _context(module, tmp_path)
    ctx.info = {"python": "3.12", "modules": {}}
    (tmp_path / "step.csv").write_text("x\n")
    results = [(s, module.Outcome(module.SKIPPED, f"why {s.key}"), 0.0, 0.0) for s in module.STAGES]
    text = module.write_report(ctx, results, 1.0)
    assert re.findall(r"^- ([a-k])\. [\w-]+: \*\*skipped\*\* \(0 s of 0 s\): why \1$", text, re.MULTILINE) == [
        s.key for s in module.STAGES
    ]
    assert "report.md, step.csv (every command's log in logs.tar.gz)" in text
    assert text.startswith("# GPU check report\n")


def test_the_gpu_runs_commands_are_ones_their_tools_accept(tmp_path, monkeypatch):
    """The GPU-only command lines (the dry run never starts them): each stage's commands recorded
    with a stand-in for run_logged, the benchmark suites' and the demo's parsed by their own parsers."""
    from sfrik_experiments.bench.cli import build_parser

    demo_cli = pytest.importorskip("sfrik_experiments.demo.cli", reason="the demo needs Lightning")
    module = gpu_check_module()
    ctx = _context(module, tmp_path)
    ctx.info = {"capability": "9.0", "modules": {"pip": True, "setuptools": True, "lightly": True}}
    ctx.deadline = time.monotonic() + 60
    commands = []

    def record(ctx, name, cmd, env=None, cwd=None, limit=1e9):
        commands.append((name, cmd, env or {}))
        return module.Run(0, "$ command\n", limit)

    monkeypatch.setattr(module.core, "run_logged", record)
    for stage in module.STAGES:
        if stage.name in ("build", "bandwidth", "losses", "step", "tiles", "demo"):
            module.run_stage(stage, ctx, 60.0)  # fails on the missing outputs, after starting its command
    by_name = {name: (cmd, env) for name, cmd, env in commands}
    pip, env = by_name["build"]
    assert pip[1:] == ["-m", "pip", "install", "--no-index", "--no-build-isolation", "--no-deps", "-e", "."]
    assert env["FORCE_CUDA"] == "1" and env["TORCH_CUDA_ARCH_LIST"] == "9.0"
    for name in ("bandwidth", "losses-none", "step", "tiles"):
        cmd, _ = by_name[name]
        assert cmd[1:3] == ["-m", "sfrik_experiments.bench"], cmd
        args = build_parser().parse_args(cmd[3:])
        assert args.device == "cuda" and args.csv, (name, args)
    step = build_parser().parse_args(by_name["step"][0][3:])
    assert (step.backbone, step.batch, step.image_size, step.hidden, step.autocast) == (
        "resnet50",
        256,
        224,
        8192,
        "bf16",
    )
    assert step.dims == [8192, 16384, 32768]
    losses = build_parser().parse_args(by_name["losses-none"][0][3:])
    assert "sfrik_fallback" in losses.methods and losses.slow_repeats == 1 and losses.dims == [8192, 16384, 32768]
    with pytest.raises(module.StageFailure):  # (no CSV from the stand-in: after its command started)
        module.gram_blocks(ctx)
    gram = build_parser().parse_args(commands[-1][1][3:])
    assert commands[-1][0] == "gram"
    assert (gram.device, gram.precisions, gram.blocks) == ("cuda", ["float32", "tf32", "bf16"], [1, 2, 3, 4, 6, 8])
    tiles = build_parser().parse_args(by_name["tiles"][0][3:])
    assert tiles.sweep_only and tiles.sweep_cell == [[16384, 4096], [32768, 1024]]
    demo = by_name["demo"][0]
    assert demo[1:3] == ["-m", "sfrik_experiments.demo"]
    monkeypatch.setattr(demo_cli.torch.cuda, "is_available", lambda: True)  # as on the GPU machine
    options = demo_cli.parse_args(demo[3:])
    assert (options.epochs, options.accelerator) == (1, "gpu")


def test_the_demo_stage_asks_only_for_baselines_the_machines_libraries_have(tmp_path):
    demo_cli = pytest.importorskip("sfrik_experiments.demo.cli", reason="the demo needs Lightning")
    from sfrik_plugin.baselines import BASELINES_REGISTRY

    module = gpu_check_module()
    ctx = _context(module, tmp_path)
    for modules, library in (({"lightly": True}, "lightly"), ({"solo": True}, "solo-learn"), ({}, None)):
        ctx.info = {"modules": modules}
        args = demo_cli.parse_args(module.command_line(module.demo_methods(ctx)))
        for method in args.methods:  # the package's own losses, or a baseline the library provides
            builders = BASELINES_REGISTRY[method].builders if method in BASELINES_REGISTRY else {library: None}
            assert library in builders, (modules, method)
    ctx.info = {"modules": {"solo": True}}
    assert demo_cli.parse_args(module.command_line(module.demo_methods(ctx))).library == "solo-learn"


def test_a_suite_stopped_at_its_limit_keeps_the_cells_it_finished(tmp_path, monkeypatch):
    # The H200 run of 2026-12-04: the losses and step suites ran past their limits after some
    # cells and the stages reported nothing; those cells are now kept and the stage is partial.
    module = gpu_check_module()
    ctx = _context(module, tmp_path)
    path = tmp_path / "cells.csv"
    path.write_text("q,method,status\n8192,sfrik,ok\n")
    monkeypatch.setattr(module.core, "run_logged", lambda *a, **k: module.Run(None, "stopped", 40.0))
    run, rows = module.bench(ctx, "losses", ["losses"], path, "sfrik-bench losses", partial=True)
    assert run.rc is None and rows == [{"q": "8192", "method": "sfrik", "status": "ok"}]
    with pytest.raises(module.StageFailure, match="timed out after 40 s"):
        module.bench(ctx, "losses", ["losses"], path, "sfrik-bench losses")
    path.unlink()  # stopped before its first cell: a failure, partial or not
    with pytest.raises(module.StageFailure, match="timed out after 40 s"):
        module.bench(ctx, "losses", ["losses"], path, "sfrik-bench losses", partial=True)


def test_the_step_stage_stopped_at_its_limit_says_where_and_is_partial(tmp_path, monkeypatch):
    module = gpu_check_module()
    ctx = _context(module, tmp_path)
    cell = {"backbone": "resnet50", "n": "256", "q": "8192", "status": "ok", "ms_median": "211.3", "ms_min": "211.0"}
    cell |= {"ms_max": "211.9", "peak_mib": "", "peak_extra_mib": "1.0"}
    rows = [{**cell, "method": "none", "overhead_ms": "0"}, {**cell, "method": "sfrik", "overhead_ms": "0.98"}]
    monkeypatch.setattr(module.core, "bench", lambda *a, **k: (module.Run(None, "", 120.0), rows))
    outcome = module.stage_step(ctx)
    assert outcome.status == module.PARTIAL
    assert outcome.summary.endswith("(stopped at its 120 s limit after q = 8192)") and "sfrik +0.98" in outcome.summary


def test_the_step_stage_reads_a_baseline_out_of_memory_as_a_finding_and_sfrik_out_of_memory_as_a_failure(
    tmp_path, monkeypatch
):
    # The H100 run of 2026-12-06: VICReg and Barlow Twins did not fit at q = 32768 and the stage failed
    module = gpu_check_module()
    ctx = _context(module, tmp_path)
    cell = {"backbone": "resnet50", "n": "256", "q": "32768", "status": "ok", "ms_median": "236.9", "ms_min": "236.8"}
    cell |= {"ms_max": "237.6", "peak_mib": "", "peak_extra_mib": "1.0"}
    rows = [{**cell, "method": "none", "overhead_ms": "0"}, {**cell, "method": "sfrik", "overhead_ms": "1.01"}]
    rows.append({**cell, "method": "vicreg", "status": "out of memory (round 1)"})
    monkeypatch.setattr(module.core, "bench", lambda *a, **k: (module.Run(0, "", 70.0), rows))
    outcome = module.stage_step(ctx)
    assert outcome.status == module.PASSED and "out of memory: vicreg at q = 32768" in outcome.summary
    rows[1] = {**cell, "method": "sfrik", "status": "out of memory (round 1)"}
    assert module.stage_step(ctx).status == module.FAILED


def test_pytest_stopped_without_its_junit_xml_is_read_from_its_progress():
    # pytest-xdist's controller, interrupted, ended before writing the XML (the H200 run's stage d)
    module = gpu_check_module()
    progress = "bringing up nodes...\n\n" + "." * 31 + "s" + "." * 40 + " [  9%]\n" + "." * 7 + "s" + "." * 22 + "\n"
    outcome = module.progress_outcome(module.Run(None, progress, 82.0), "the rest of the suite")
    assert outcome.status == module.PARTIAL
    assert outcome.summary.startswith("the rest of the suite: 100 passed, 0 failed or errors, 2 skipped")
    failing = module.progress_outcome(module.Run(None, "..F.E.s [ 50%]\n", 82.0), "x")
    assert failing.status == module.FAILED and "4 passed, 2 failed or errors, 1 skipped" in failing.summary
    nothing = module.progress_outcome(module.Run(None, "bringing up nodes...\n", 82.0), "x")
    assert nothing.status == module.FAILED
