# The two commands of the README:
#   make demo    set everything up, build, fetch Fashion-MNIST, run the main job (sfrik-demo --quick)
#   make test    set everything up, build, run the test suite with the compiled extension required
# Everything is installed into $(VENV); override TORCH_SPEC for another torch build.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
MAX_JOBS ?= 2
SOURCES := setup.py pyproject.toml $(wildcard cpp/*.h cpp/*.cpp cpp/cpu/*.cpp cpp/cuda/*.cu)
BENCH_ARGS ?=

.PHONY: setup build test test-fast demo bench cuda-check gpu-check clean

setup: $(VENV)/.torch-installed

$(VENV)/.torch-installed:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install $(TORCH_SPEC) ninja "setuptools>=64" wheel
	touch $@

# The extension is built against the venv's torch (no build isolation), in place (editable).
build: $(VENV)/.built
$(VENV)/.built: $(VENV)/.torch-installed $(SOURCES)
	MAX_JOBS=$(MAX_JOBS) $(PY) -m pip install --no-build-isolation -e ".[test,bench,demo,lint]"
	touch $@

PYTEST_ARGS ?=
test: build
	SFRIK_REQUIRE_EXTENSION=1 $(PY) -m pytest -q -rs $(PYTEST_ARGS)

# The contributor's loop: no slow test and no test that starts a process or compiles; with
# SFRIK_FAST_LOOP=1 an unmarked test that does either fails, naming the marker (tests/helpers/fast_loop.py).
test-fast: build
	SFRIK_REQUIRE_EXTENSION=1 SFRIK_FAST_LOOP=1 $(PY) -m pytest -q -m "not slow and not fresh_interpreter" $(PYTEST_ARGS)

# The hosts' environment (docs/hosts.md): stable-pretraining needs lightning >= 2.4 and solo-learn
# pins 2.1.2, so lightly and stable-pretraining get a venv of their own, $(HOSTS_VENV), with the
# same torch (TORCH_SPEC; a constraint file keeps it) and the plugin installed editable. The
# extension is the in-place one `make build` compiled (SFRIK_REUSE_EXTENSION=1: setup.py checks the
# torch and the sources, then compiles nothing; compiling it again took 3 minutes here).
HOSTS_VENV ?= .venv-hosts
HOSTS_PY := $(HOSTS_VENV)/bin/python
HOSTS_SPEC ?= stable-pretraining==0.1.8 lightly==1.6.0
HOSTS_CONSTRAINTS := $(HOSTS_VENV)/constraints.txt
.PHONY: hosts test-hosts
hosts: $(HOSTS_VENV)/.built

$(HOSTS_VENV)/.torch-installed:
	$(PYTHON) -m venv $(HOSTS_VENV)
	$(HOSTS_PY) -m pip install $(TORCH_SPEC) ninja "setuptools>=64" wheel
	touch $@

$(HOSTS_VENV)/.built: $(HOSTS_VENV)/.torch-installed $(VENV)/.built $(SOURCES)
	$(HOSTS_PY) -c "from importlib.metadata import version; print(*(f'{d}=={version(d)}' for d in ('torch', 'torchvision')), sep='\n')" > $(HOSTS_CONSTRAINTS)
	$(HOSTS_PY) -m pip install -c $(HOSTS_CONSTRAINTS) $(HOSTS_SPEC)
	SFRIK_REUSE_EXTENSION=1 $(HOSTS_PY) -m pip install -c $(HOSTS_CONSTRAINTS) --no-build-isolation -e ".[stable-pretraining,lightly,test]"
	touch $@

# tests/hosts in the hosts' environment, the extension and the hosts required (a skip is a failure).
test-hosts: hosts fashion-mnist
	SFRIK_REQUIRE_EXTENSION=1 SFRIK_REQUIRE_HOSTS=1 WANDB_MODE=disabled $(HOSTS_PY) -m pytest -q -rs tests/hosts $(PYTEST_ARGS)

# ruff (lint and format), mypy (the public API fully typed), clang-format (cpp/); the same checks as
# .pre-commit-config.yaml; and the file-size limit (tests/test_file_sizes.py), which make test-fast
# leaves out (it starts git) and a fresh-clone CI run once failed on. `make format` applies the formatters.
CPP_SOURCES := $(wildcard cpp/*.h cpp/*.cpp cpp/cpu/*.cpp cpp/cuda/*.cu)
.PHONY: lint format
lint: build
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/clang-format --dry-run --Werror $(CPP_SOURCES)
	$(PY) -m pytest -q -p no:cacheprovider tests/test_file_sizes.py

format: build
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .
	$(VENV)/bin/clang-format -i $(CPP_SOURCES)

# Fashion-MNIST comes from Debian's dataset-fashion-mnist where apt-get can install it (no internet
# needed); elsewhere the demo lets torchvision download it.
FASHION_MNIST_DIR := /usr/share/datasets/fashion-mnist
DEMO_ARGS ?=
demo: build fashion-mnist
	$(PY) -m sfrik_experiments.demo --out demo_out $(DEMO_ARGS)

# How the quick demo's epochs and pretraining subset size were chosen: SFRIK on the validation split
# for a few (epochs, images) candidates and 5 seeds, against the floor of 20 random-encoder inits
# (about 45 min on 2 CPU cores; resumable). Its record: docs/records/budget/v3.*.
BUDGET_OUT ?= budget_out
.PHONY: demo-budget
demo-budget: build fashion-mnist
	$(PY) -m sfrik_experiments.demo.budget --out $(BUDGET_OUT) --study-results docs/records/study/superseded/fashion_mnist_v2.csv

.PHONY: fashion-mnist study study-record
fashion-mnist:
	@if [ ! -d $(FASHION_MNIST_DIR) ] && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; fi

# A study's out folder seeded from its record: $(1) the folder, $(2) the record's stem. Where the
# folder holds no results yet, the record's rows and timing pass are copied in (never over results).
define resume-from-record
	@mkdir -p $(1)
	@if [ ! -f $(1)/results.csv ] && [ -f $(2).csv ]; then \
		cp $(2).csv $(1)/results.csv && echo "resuming from $(2).csv"; fi
	@if [ ! -f $(1)/timing.csv ] && [ -f $(2)_timing.csv ]; then cp $(2)_timing.csv $(1)/timing.csv; fi
endef

# The recorded study (sfrik-study --preset v3, hours on 2 CPU cores). It resumes from the rows
# already recorded in docs/records/study/ (a fresh machine starts where the last recording stopped)
# and keeps the record's timing pass (quiet cores; --overwrite-timing in STUDY_ARGS times again),
# then `make study-record` copies the results, summary, plots and timing pass back there.
STUDY_OUT ?= study_out
STUDY_ARGS ?=
STUDY_RECORD := docs/records/study/fashion_mnist_v3
STUDY_PLOTS := accuracy accuracy_vs_q ablation accuracy_vs_time paired_differences
study: build fashion-mnist
	$(call resume-from-record,$(STUDY_OUT),$(STUDY_RECORD))
	$(PY) -m sfrik_experiments.study --preset v3 --library lightly --out $(STUDY_OUT) $(STUDY_ARGS)

study-record:
	cp $(STUDY_OUT)/results.csv $(STUDY_RECORD).csv
	cp $(STUDY_OUT)/summary.md $(STUDY_RECORD).md
	for f in $(STUDY_PLOTS); do \
		if [ -f $(STUDY_OUT)/$$f.png ]; then cp $(STUDY_OUT)/$$f.png $(STUDY_RECORD)_$$f.png; fi; done
	if [ -f $(STUDY_OUT)/timing.csv ]; then cp $(STUDY_OUT)/timing.csv $(STUDY_RECORD)_timing.csv; fi

# The long-budget study (sfrik-study --preset long: every method at 10 epochs of 50,000 images with
# learning curves, about 9 quiet hours on 2 CPU cores), the same way: it resumes from the recorded
# rows, and `make study-long-record` copies the results, summary, plots and the timing pass its
# equal-wall-time reading used back to docs/records/study/.
LONG_OUT ?= study_long_out
LONG_RECORD := docs/records/study/fashion_mnist_long
.PHONY: study-long study-long-record
study-long: build fashion-mnist
	$(call resume-from-record,$(LONG_OUT),$(LONG_RECORD))
	$(PY) -m sfrik_experiments.study --preset long --library lightly --out $(LONG_OUT) $(STUDY_ARGS)

study-long-record:
	cp $(LONG_OUT)/results.csv $(LONG_RECORD).csv
	cp $(LONG_OUT)/summary.md $(LONG_RECORD).md
	for f in curves tuning_curves; do cp $(LONG_OUT)/$$f.png $(LONG_RECORD)_$$f.png; done
	if [ -f $(LONG_OUT)/timing.csv ]; then cp $(LONG_OUT)/timing.csv $(LONG_RECORD)_timing.csv; fi

bench: build
	mkdir -p bench_out
	$(PY) -m sfrik_experiments.bench legendre --csv bench_out/legendre.csv --plot bench_out/legendre.png --overwrite $(BENCH_ARGS)

# Compiles the CUDA kernels (no GPU needed) into a scratch folder and loads the result.
cuda-check: $(VENV)/.torch-installed
	$(PY) scripts/check_cuda_build.py

# On a machine with a CUDA GPU, within 9.5 minutes, with $(GPU_CHECK_PYTHON) (on the lent GPU machine its
# preinstalled python3: no venv, no download), in stages that each run a command under a time limit:
#   a. WHEELS=DIR installs the wheels there (pip --no-index --no-deps); b. builds the CUDA kernels for
#   the visible GPU (FORCE_CUDA=1 pip install --no-build-isolation -e .); c. the CUDA tests
#   (pytest -m requires_cuda -n 8, SFRIK_REQUIRE_CUDA=1); d. the rest of the suite in the time the
#   later stages leave; e. compute-sanitizer; f-i. sfrik-bench bandwidth, losses, step and the tile
#   sweep (tiled --sweep-only); j. one sfrik-demo epoch; k. (SOLO_LEARN_DIR set) solo-learn's
#   main_pretrain.py and main_knn.py.
# A stage whose packages are missing is skipped, naming them. report.md, the CSVs and logs.tar.gz (8
# files at most) go to $(GPU_CHECK_OUT). `make gpu-check GPU_CHECK_PYTHON=$(PY) GPU_CHECK_ARGS=--dry-run`
# runs every stage on the CPU at tiny sizes. The stages: scripts/gpu_check.py's docstring; limits: its STAGES.
GPU_CHECK_OUT ?= gpu_check_out
GPU_CHECK_ARGS ?=
GPU_CHECK_PYTHON ?= python3
gpu-check:
	$(GPU_CHECK_PYTHON) scripts/gpu_check.py --out $(GPU_CHECK_OUT) $(if $(WHEELS),--wheels $(WHEELS)) \
		$(if $(SOLO_LEARN_DIR_GIVEN),--solo-learn-dir $(SOLO_LEARN_DIR)) $(GPU_CHECK_ARGS)

# What a lent GPU machine lacks, prepared here into .gpu/ (ignored): wheels for its python3.12
# (Hydra, lightly, expecttest, solo-learn, and torchmetrics 0.11: solo-learn's main_knn.py fails on 1.x)
# and the solo-learn checkout for stage k. Carry .gpu to the machine and run
#   python3 scripts/gpu_check.py --out OUT --wheels .gpu/whl --solo-learn-dir .gpu/solo-learn
GPU_WHEELS ?= hydra-core==1.3.8 omegaconf==2.3.1 lightly==1.6.0 expecttest==0.3.0 torchmetrics==0.11.4
.PHONY: gpu-wheels
gpu-wheels: $(VENV)/.torch-installed
	rm -rf .gpu && mkdir -p .gpu/whl
	$(PY) -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		--platform manylinux2014_x86_64 -d .gpu/whl $(GPU_WHEELS)
	$(PY) -m pip wheel --no-deps -w .gpu/whl antlr4-python3-runtime==4.9.3
	$(PY) -m pip wheel --no-deps --no-build-isolation -w .gpu/whl "$(SOLO_LEARN_DIR)"
	cp -r "$(SOLO_LEARN_DIR)" .gpu/solo-learn
	rm -rf .gpu/solo-learn/build .gpu/solo-learn/.git .gpu/solo-learn/*.egg-info
	@ls .gpu/whl && du -sh .gpu

clean:
	rm -rf build *.egg-info sfrik_plugin/_C*.so sfrik_plugin/_build_info.json $(VENV)/.built

# solo-learn at the commit the plugin is tested against, installed into $(VENV) with the plugin
# (whose Hydra plugin makes its configs and methods visible to solo's scripts). Uses the checkout
# $(SOLO_LEARN_DIR) when it exists, else clones it there. solo's setup.py imports pkg_resources,
# gone from setuptools >= 82: the build runs with setuptools < 82, and a constraint file keeps the
# venv's torch and torchvision (solo only asks for torch >= 1.10).
# Then: cd $(SOLO_LEARN_DIR) && python main_pretrain.py --config-name sfrik (docs/solo-learn.md);
# SOLO_LEARN_DIR=$(SOLO_LEARN_DIR) make test also runs the end-to-end test.
SOLO_LEARN_DIR_GIVEN := $(SOLO_LEARN_DIR)
SOLO_LEARN_DIR ?= ../solo-learn
SOLO_LEARN_URL ?= https://github.com/vturrisi/solo-learn
SOLO_LEARN_COMMIT ?= 9187ea39c2c3
SOLO_LEARN_CONSTRAINTS := $(VENV)/solo-learn-constraints.txt

.PHONY: solo-learn
solo-learn: build
	@if [ -f "$(SOLO_LEARN_DIR)/setup.py" ]; then \
		echo "solo-learn: using the checkout $(SOLO_LEARN_DIR)"; \
		if [ -d "$(SOLO_LEARN_DIR)/.git" ]; then \
			head=$$(git -C "$(SOLO_LEARN_DIR)" rev-parse HEAD); \
			case $$head in $(SOLO_LEARN_COMMIT)*) ;; \
			*) echo "solo-learn: warning: $(SOLO_LEARN_DIR) is at $$head, not $(SOLO_LEARN_COMMIT) (the tested commit)";; \
			esac; \
		fi; \
	else \
		git clone $(SOLO_LEARN_URL) "$(SOLO_LEARN_DIR)" && \
		git -C "$(SOLO_LEARN_DIR)" checkout --detach $(SOLO_LEARN_COMMIT); \
	fi
	$(PY) -c "from importlib.metadata import version; print(*(f'{d}=={version(d)}' for d in ('torch', 'torchvision')), 'setuptools<82', sep='\n')" > $(SOLO_LEARN_CONSTRAINTS)
	$(PY) -m pip install -c $(SOLO_LEARN_CONSTRAINTS) "setuptools>=77.0.3,<82" wheel
	PIP_CONSTRAINT=$(abspath $(SOLO_LEARN_CONSTRAINTS)) $(PY) -m pip install --no-build-isolation "$(SOLO_LEARN_DIR)"
	$(PY) -c "from sfrik_plugin.solo import register_methods; print('solo-learn methods:', sorted(register_methods()))"

# Reliability (docs/testing.md): the long fuzz run of the operators and the losses
# (tests/fuzz with FUZZ_EXAMPLES examples per property, fresh randomness, seed printed),
# and the operator tests against an AddressSanitizer + UBSan build of the extension (built in a
# scratch folder; the normal build is untouched).
FUZZ_EXAMPLES ?= 5000

.PHONY: fuzz sanitize
fuzz: build
	$(PY) scripts/fuzz.py --examples $(FUZZ_EXAMPLES)

sanitize: build
	PY=$(abspath $(PY)) MAX_JOBS=$(MAX_JOBS) scripts/sanitize.sh
