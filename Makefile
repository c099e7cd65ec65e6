# Entry points for people and CI. `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU wheel; on a CUDA workstation use envs/embedseg.yaml (conda) or set TORCH_SPEC.
TORCH_SPEC ?= torch==2.13.0
CORES ?= 2

.PHONY: venv test test-fast demo lint bench clean-results

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e '.[workflow,test]'
	touch $@

venv: $(BIN)/.installed

test: venv
	$(BIN)/python -m pytest

test-fast: venv
	$(BIN)/python -m pytest -m "not slow and not slurm"

lint: venv
	cd workflow && ../$(BIN)/snakemake --lint --configfile ../config/config.yaml -n

clean-results:
	rm -rf results/demo .snakemake
