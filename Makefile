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

# The embedded demo: synthetic data, CPU, all stages (config/demo.yaml); ~15 min on 2 cores.
demo: venv
	$(BIN)/snakemake --cores $(CORES) --configfile config/demo.yaml all
	@cat results/demo/tables/table1.md
	@echo
	@echo "Table 1:  results/demo/tables/table1.{md,csv,tex}"
	@echo "Table 2:  results/demo/tables/table2.{md,csv,tex}"
	@echo "vs paper: results/demo/tables/comparison_to_paper.md"
	@echo "Figures:  results/demo/figures/ (fig1_*, ap_curves, training_curves; .png and .pdf)"

lint: venv
	cd workflow && ../$(BIN)/snakemake --lint --configfile ../config/config.yaml -n

clean-results:
	rm -rf results/demo .snakemake
