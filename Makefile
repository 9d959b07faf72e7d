# The two commands of the README:
#   make bench   set everything up, build, run the main job (for now the operator benchmark)
#   make test    set everything up, build, run the test suite with the compiled extension required
# Everything is installed into $(VENV); override TORCH_SPEC for another torch build.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
MAX_JOBS ?= 2
SOURCES := setup.py pyproject.toml $(wildcard cpp/*.h cpp/*.cpp cpp/cpu/*.cpp cpp/cuda/*.cu)
BENCH_ARGS ?=

.PHONY: setup build test bench cuda-check clean

setup: $(VENV)/.torch-installed

$(VENV)/.torch-installed:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install $(TORCH_SPEC) ninja "setuptools>=64" wheel
	touch $@

# The extension is built against the venv's torch (no build isolation), in place (editable).
build: $(VENV)/.built
$(VENV)/.built: $(VENV)/.torch-installed $(SOURCES)
	MAX_JOBS=$(MAX_JOBS) $(PY) -m pip install --no-build-isolation -e ".[test,bench]"
	touch $@

test: build
	SFRIK_REQUIRE_EXTENSION=1 $(PY) -m pytest -q -rs

bench: build
	mkdir -p bench_out
	$(PY) -m sfrik_plugin.bench legendre --csv bench_out/legendre.csv --plot bench_out/legendre.png $(BENCH_ARGS)

# Compiles the CUDA kernels (no GPU needed) into a scratch folder and loads the result.
cuda-check: $(VENV)/.torch-installed
	$(PY) scripts/check_cuda_build.py

clean:
	rm -rf build *.egg-info sfrik_plugin/_C*.so sfrik_plugin/_build_info.json $(VENV)/.built
