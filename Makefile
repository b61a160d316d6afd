# electra-rs: `make pretrain` (the CPU demo on the embedded corpus) and `make test`.
# Both install what they need on first use: a project-local .venv holding the PyPI
# torch==2.11.0 wheel, whose libtorch the `tch` crate links (LIBTORCH_USE_PYTORCH=1), and
# the Python clients the tests check our files with (pyarrow, transformers).

SHELL := /bin/bash
PYTHON ?= python3
VENV := $(CURDIR)/.venv
PY_DEPS := torch==2.11.0 pyarrow==26.0.1 transformers==5.24.0 numpy==2.4.6 datasets==5.2.0 zstandard==0.25.0 moto[server]==5.2.5 \
	nvidia-cuda-cccl==13.0.85 nvidia-cuda-crt==13.0.88
STAMP := $(VENV)/.deps-$(shell echo '$(PY_DEPS)' | cksum | cut -d' ' -f1)
CARGO ?= cargo
CONFIG ?= configs/tiny.toml
RUN_DIR ?= runs/tiny
ARGS ?=

export PATH := $(VENV)/bin:$(HOME)/.cargo/bin:$(PATH)
export LIBTORCH_USE_PYTORCH := 1

.PHONY: all venv build pretrain test test-build lint fmt clean-runs

all: build

$(STAMP):
	@command -v $(CARGO) >/dev/null || { echo "cargo not found: install Rust (rustup)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check $(PY_DEPS)
	@touch $@

venv: $(STAMP)

build: $(STAMP)
	$(CARGO) build --release --workspace

pretrain: build
	./target/release/electra pretrain --config $(CONFIG) --run-dir $(RUN_DIR) $(ARGS)

test: $(STAMP)
	$(CARGO) test --release --workspace

# Builds every test binary without running it (CI times this step on its own).
test-build: $(STAMP)
	$(CARGO) test --release --workspace --no-run

lint: $(STAMP)
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

clean-runs:
	rm -rf runs
