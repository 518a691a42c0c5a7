# Entry points: make install | test | test-quick | lint | format | bench | bench-torch | bench-serve | train | install-gpu | install-mpi | install-extras | gpu-check | clean
# STACK=pinned (default: Python 3.11, NumPy 1.26) or STACK=modern (Python 3.12, NumPy 2).

STACK ?= pinned
ifeq ($(STACK),modern)
# python3.12 from pyenv when it has one (its shim runs 3.12 only if selected), else from PATH.
PYTHON ?= $(shell PYENV_VERSION=3.12 pyenv which python3.12 2>/dev/null || echo python3.12)
VENV ?= .venv-modern
REQS := requirements-modern.txt
else ifeq ($(STACK),pinned)
PYTHON ?= python3.11
VENV ?= .venv
REQS := requirements.txt
else
$(error STACK must be 'pinned' or 'modern', not '$(STACK)')
endif

PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(STACK)
PYTEST_ARGS ?=
BENCH_ARGS ?=
# The PyTorch peer of `make bench-torch`: its own venv, never a dependency of the project.
TORCH_PYTHON ?= python3.11
TORCH_VENV ?= .venv-torch

.PHONY: install install-gpu install-mpi install-extras gpu-check test test-faults test-quick lint bench-serve format bench bench-torch bench-table train clean

install: $(STAMP)

# chainer 7.8.1 ships only an sdist whose setup.py imports pkg_resources (gone in
# setuptools 82+): put setuptools<82 in the venv and build chainer against it.
# Then the project itself, editable and without dependencies (pyproject.toml), so examples,
# benchmarks and scripts anywhere import it.
$(STAMP): $(REQS) requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check 'setuptools<82' wheel
	@# an older venv's GNU OpenMP build of oneDNN writes the same lib/libdnnl.so.3: out first
	$(PY) -m pip uninstall -q -y onednn-cpu-gomp 2>/dev/null || true
	$(PY) -m pip install -q --disable-pip-version-check --no-build-isolation -r $(REQS)
	$(PY) -m pip install -q --disable-pip-version-check --no-build-isolation --no-deps -e .
	touch $@

# The GPU extra, for the stack in use. Pinned stack (CUDA 12 only): cupy-cuda12x 13.6 with
# cuDNN and NCCL fetched once into ~/.cupy (running it again finds them); it needs the CUDA 12
# runtime of a toolkit, not only a driver. Modern stack (STACK=modern, CUDA=12 or 13):
# CuPy 14 with the CUDA runtime from PyPI ([ctk]), no cuDNN (Chainer then uses im2col).
CUDA ?= 12
CUPY_MODERN := 14.2.0
install-gpu: install
ifeq ($(STACK),modern)
	$(PY) -m pip install -q --disable-pip-version-check 'cupy-cuda$(CUDA)x[ctk]==$(CUPY_MODERN)'
else
	@test "$(CUDA)" = 12 || { echo "CUDA $(CUDA) needs CuPy 14 and NumPy 2: make install-gpu STACK=modern CUDA=$(CUDA)" >&2; exit 2; }
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-gpu.txt
	$(PY) -m tools.cuda_libraries --cuda 12.x cudnn nccl
endif

# Optional extras (ONNX export and backend, TensorBoard, Optuna) for the stack in use: wheels,
# then onnx-chainer (a pure-Python sdist) without the deps it declares (chainer<7, onnx<1.7).
install-extras: install
	$(PY) -m pip install -q --disable-pip-version-check --only-binary=:all: -r requirements-extras.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -r requirements-extras-nodeps.txt

# Prove the GPU path on this machine (after install-gpu): GPU tests, a killed and resumed
# GPU run, GPU/CPU predictions, CPU -> GPU -> CPU resume, the benchmark; one JSON summary.
GPU_CHECK_ARGS ?=
gpu-check: install
	$(PY) -m tools.gpu_check $(GPU_CHECK_ARGS)

# MPI for ChainerMN (mpiexec -n N python main.py ... --communicator ...): wheels, no compiler.
install-mpi: install
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-mpi.txt

test: install
	$(PY) -m pytest -q -rs $(PYTEST_ARGS) tests

# The fault loops at full length (20 random kills, 10 random signals; `make test` runs 8 and 4).
test-faults: install
	FAULT_ROUNDS=20 $(PY) -m pytest -q -rs -m slow $(PYTEST_ARGS) tests/test_faults.py

# The same without the tests marked slow (the kill loop...): a couple of minutes.
test-quick: install
	$(PY) -m pytest -q -rs -m 'not slow' $(PYTEST_ARGS) tests

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: install
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

bench: install
	$(PY) -m benchmarks.speed $(BENCH_ARGS)

bench-serve: install
	$(PY) -m benchmarks.serve_load $(BENCH_ARGS)

# Same, plus the per-function profile and the PyTorch peer (benchmarks/torch_squeezenet.py).
bench-torch: install $(TORCH_VENV)/.installed
	$(PY) -m benchmarks.speed --profile --torch --torch-python $(TORCH_VENV)/bin/python $(BENCH_ARGS)

# The README's speed table: every row against both PyTorch layouts, alternating, 3 cycles.
bench-table: install $(TORCH_VENV)/.installed
	$(PY) -m benchmarks.table --torch-python $(TORCH_VENV)/bin/python $(BENCH_ARGS)

$(TORCH_VENV)/.installed:
	$(TORCH_PYTHON) -m venv $(TORCH_VENV)
	$(TORCH_VENV)/bin/python -m pip install -q --disable-pip-version-check torch==2.13.0
	touch $@

# The reference run; TRAIN_ARGS adds flags: make train TRAIN_ARGS='--data /tmp/cifar10 -p runs/ref'
TRAIN_ARGS ?=
train: install
	$(PY) main.py -e 300 -b 64 -g 0 -lr 0.1 $(TRAIN_ARGS)

clean:
	rm -rf .venv .venv-modern $(TORCH_VENV) .pytest_cache .ruff_cache
