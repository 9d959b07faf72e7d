"""The GPU check: one prepared command that builds, tests and measures the plugin on a CUDA GPU.

    python3 scripts/gpu_check.py --out OUT [--wheels DIR] [--solo-learn-dir DIR]   # (make gpu-check)
    python3 scripts/gpu_check.py --dry-run --out OUT    # every stage on the CPU at tiny sizes

The package (scripts/gpucheck/): core.py (the commands, their limits, the context), one module per
group of stages (stage_install: a, b; stage_tests: c-e; stage_bench: f-i; stage_apps: j, k), the
programs it runs in a new interpreter (programs/), cli.py (the stages' table, the driver, the
report). It runs with the interpreter that runs it (on the lent GPU machine: the preinstalled python3, no
venv) and imports nothing but the standard library: every stage runs commands (pip, pytest,
compute-sanitizer, `python -m sfrik_experiments.bench SUITE`, sfrik-demo, solo-learn's scripts), each in
its own process group under the stage's time limit (SIGINT at the limit, so that pytest still
writes what ran, then SIGKILL), and reads what they write. The whole run stays within --budget
seconds (570 by default): a stage that would start with less than 10 s left is skipped and says
so. Each stage is reported as passed, failed or skipped with the reason (the rest of the suite,
stopped at its limit with no failure, as partial); a stage whose packages are missing is skipped,
naming them.

  a wheels      with --wheels DIR: pip install --no-index --no-deps --find-links DIR of every wheel
                in DIR into the interpreter's site-packages, or, where pip cannot (and always in the
                dry run), --target a scratch folder put on PYTHONPATH for every later command; then
                the packages every stage needs are looked up (report.md lists what is missing).
  b build       pip install --no-build-isolation --no-deps -e . with FORCE_CUDA=1 and
                TORCH_CUDA_ARCH_LIST of the visible GPU (setup.py build_ext --inplace where pip
                cannot install), then checks that the extension loads with CUDA kernels. The dry
                run and --no-build reuse the existing build and say so.
  c cuda-tests  pytest -m requires_cuda -n 8 (pytest-xdist; serial without it) with
                SFRIK_REQUIRE_EXTENSION=1 and SFRIK_REQUIRE_CUDA=1: a skipped CUDA test fails.
                Dry run: tests/ops/test_cuda_kernels.py, which skips on a CPU.
  d tests       the rest of the suite (-m "not requires_cuda", this script's own test left out),
                -n 8, in the time the later stages leave (their expected times are set aside);
                stopped at its limit it reports what ran. Dry run: tests/bench/test_bench_losses.py.
  e sanitizer   compute-sanitizer memcheck and racecheck over the CUDA operator tests, checking the
                sfrik kernels only, where the toolkit has compute-sanitizer.
  f bandwidth   sfrik-bench bandwidth at n = 16384, float32 and bfloat16: the operator's forward,
                backward, both, the fused value_and_grad, the fallback without CUDA kernels
                (torch.compile's Triton kernels) and a device copy: GB/s, ratio to the copy. Then
                sfrik-bench gram: the Gram product in 1-8 row blocks against the full product, n in
                {1024, 2048, 4096}, q in {8192, 32768}, float32, TF32 and bf16 (what
                gram.GRAM_BLOCKS["cuda"] is chosen from).
  g losses      sfrik-bench losses at n = 2048, q in {8192, 16384, 32768}, float32 (with SFRIK on
                the fallback paths) and under bf16 autocast: SFRIK (float32, TF32 and bf16 Gram),
                VICReg, Barlow Twins, SimCLR, SIGReg, MMCR (float32 only; it and any method whose
                warm-up call takes over 0.25 s timed once, after the others); the summary gives
                issue 32's targets: SFRIK / its floor <= 1.0 and below SIGReg at each q. Then
                programs/loss_profile.py: SFRIK's loss under torch.profiler at n = 2048, q 8192
                and 32768 (its kernels, their count and time a call, the top ones by time).
  h step        sfrik-bench step: ResNet-50 + projector 2048-8192-8192-q, 2 x 256 images of 224 px,
                bf16 autocast, q in {8192, 16384, 32768}: each method's training step and its
                overhead over the step without a loss.
  i tiles       sfrik-bench tiled --sweep-only: the tile sweep at n x q = 16384 x 4096 and
                32768 x 1024, and the best tile for sfrik_plugin.tiled.DEFAULT_TILE_SIZE["cuda"]
                (a reviewed one-line change: the package reads no machine-specific file).
  j demo        one epoch of sfrik-demo on the GPU (Fashion-MNIST where it is on disk, otherwise a
                generated image folder; no download); without lightly or solo-learn, SFRIK and AUH.
  k solo-learn  with --solo-learn-dir and solo-learn importable: main_pretrain.py (sfrik_cpu
                protocol on the GPU, 40 steps of batch 8 on a generated image folder), then
                main_knn.py (through sfrik-knn) on its checkpoint.

Writes into --out at most 8 files, what the GPU machine hands back: report.md (one line per stage,
the missing packages, then the figures), the CSVs bandwidth.csv, losses.csv, step.csv,
tile_sweep.csv and demo_results.csv, and logs.tar.gz (every command's log, the JUnit XML, the
demo's other outputs). Scratch files (image folders, checkpoints) go to a temporary folder that is
removed at the end. Exits 1 if a stage failed (a failed test included), 2 if this machine cannot
run the check (torch missing, or no CUDA GPU without --dry-run), 0 otherwise.
"""
