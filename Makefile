# Entry points for people and CI. `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch for the venvs. On an ordinary Linux machine pip resolves `torch==2.13.0` to the CUDA build
# (several GB); for the CPU build pass PyTorch's CPU wheel index, e.g.
#   make test TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# Left empty (the default), pip uses its configured index: here that index holds the CPU wheel.
# On a CUDA workstation use workflow/envs/embedseg.yaml (conda) or set TORCH_SPEC.
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX_URL ?=
TORCH_INDEX := $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL))
CORES ?= 2

.PHONY: venv venv-official venv-stardist venv-cellpose venv-napari venv-torchvision test test-fast demo demo3d lint clean-results

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH_INDEX) "$(TORCH_SPEC)"
	$(EDITABLE_INSTALL) $(BIN)/pip install -q -e '.[workflow,test,slurm,export,lint,zarr,weights]'
	touch $@

venv: $(BIN)/.installed

# Official EmbedSeg 0.2.5 beside CPU torch, for tests/test_equivalence_official.py and the peer
# benchmarks (~1 min on an idle 2-core machine); a failed build only makes those tests skip.
venv-official:
	-PYTHON=$(PYTHON) bash benchmarks/official_env.sh

# `make test` builds the venvs $(CORES) at a time; an editable install writes the package's
# egg-info into this checkout, so those installs take turns (flock, util-linux).
EDITABLE_INSTALL := flock $(CURDIR)/.venv-install.lock
TEST_VENVS := venv venv-official venv-stardist venv-cellpose venv-napari venv-torchvision

# Baseline venvs: the tests run `embedseg baseline …` with these interpreters (docs/baselines.md).
# The package goes in without its dependencies (no torch for StarDist) plus the light ones it needs.
# $(3): a torch spec installed first, from TORCH_INDEX_URL when given.
BASELINE_DEPS := numpy scipy scikit-image tifffile imageio tqdm pyyaml
define baseline_venv
	$(PYTHON) -m venv $(1)
	$(1)/bin/pip install -q --upgrade pip
	$(if $(3),$(1)/bin/pip install -q $(TORCH_INDEX) $(3))
	$(1)/bin/pip install -q $(2) $(BASELINE_DEPS)
	$(EDITABLE_INSTALL) $(1)/bin/pip install -q --no-deps -e .
	touch $(1)/.installed
endef

.venv-stardist/.installed: pyproject.toml
	$(call baseline_venv,.venv-stardist,"tensorflow-cpu==2.21.*" "stardist==0.9.2")

.venv-cellpose/.installed: pyproject.toml
	$(call baseline_venv,.venv-cellpose,"cellpose==3.1.1.3","$(TORCH_SPEC)")


# The napari plugin's tests (tests/test_napari.py) run a headless napari session with this one:
# napari and Qt stay out of .venv (and its pytest run). ~75 s, 1.8 GB (torch 0.75, PyQt6 0.26).
.venv-napari/.installed: pyproject.toml
	$(call baseline_venv,.venv-napari,"napari[pyqt6]==0.9.2" pandas,"$(TORCH_SPEC)")

# The baselines that need torchvision (Mask R-CNN; the generalists cellpose 4, micro-sam,
# instanseg-torch) share one venv: one 5.5 GB CUDA torch build (it runs on the CPU) instead of two.
# All need torch with a working torchvision, which the torch 2.13.0 CPU wheel lacks (torchvision
# 0.28's operators do not load beside it), so it has the 2.14.1/0.29.1 pair. micro-sam without its
# napari GUI (PyQt6, trackastra): only what its automatic segmentation imports; seaborn for
# InstanSeg's export code, which the tests use to write a random model. ~95 s on 2 cores with a
# fast mirror (most of it the 5.5 GB CUDA torch wheel).
TORCHVISION_PEERS := "torch==2.14.1" "torchvision==0.29.1" "cellpose==4.2.1.1" "instanseg-torch==0.1.2" pooch seaborn psutil
MICRO_SAM_PARTS := "micro-sam==1.8.14" "segment-anything-py==1.0.1" "torch-em==0.10.9" "python-elf==0.9.2" "bioimage-cpp==0.10.0"
MICRO_SAM_DEPS := xarray xxhash zarr timm kornia natsort h5py imagecodecs pandas networkx joblib scikit-learn skan requests

.venv-torchvision/.installed: pyproject.toml
	$(PYTHON) -m venv .venv-torchvision
	.venv-torchvision/bin/pip install -q --upgrade pip
	.venv-torchvision/bin/pip install -q $(TORCHVISION_PEERS) $(BASELINE_DEPS)
	.venv-torchvision/bin/pip install -q --no-deps $(MICRO_SAM_PARTS)
	.venv-torchvision/bin/pip install -q $(MICRO_SAM_DEPS)
	$(EDITABLE_INSTALL) .venv-torchvision/bin/pip install -q --no-deps -e .
	touch .venv-torchvision/.installed

venv-stardist: .venv-stardist/.installed
venv-cellpose: .venv-cellpose/.installed
venv-napari: .venv-napari/.installed
venv-torchvision: .venv-torchvision/.installed

# The suite runs on $(CORES) pytest-xdist workers, one test file at a time each (--dist loadfile):
# a file's module fixtures (a trained model, a workflow run, the SLURM cluster) are built once,
# in one worker. One OpenMP thread per worker: with more, threads spin-wait for a busy core.
TEST_WORKERS ?= $(CORES)
PYTEST := OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

# `make test` builds every peer venv first, so a peer test that still finds its venv missing fails
# instead of skipping (EMBEDSEG_REQUIRE_PEERS, tests/conftest.py): its fidelity check cannot vanish.
# The 15 slowest tests close the log: the suite's time budget (20 min on 2 cores) is watched there.
test:
	$(MAKE) -j$(CORES) $(TEST_VENVS)
	EMBEDSEG_REQUIRE_PEERS=1 $(PYTEST) --durations=15

test-fast: venv
	$(PYTEST) -m "not slow and not slurm"

# The embedded demo: synthetic data, CPU, all stages (config/demo.yaml); measured times per CPU
# kind in README.md.
# In this venv, not conda: --workflow-profile none skips workflow/profiles/default.
demo: venv
	$(BIN)/snakemake all --cores $(CORES) --workflow-profile none --configfile config/demo.yaml
	@cat results/demo/tables/table1.md
	@echo
	@echo "Table 1:  results/demo/tables/table1.{md,csv,tex}"
	@echo "Table 2:  results/demo/tables/table2.{md,csv,tex}"
	@echo "vs paper: results/demo/tables/comparison_to_paper.md"
	@echo "Figures:  results/demo/figures/ (fig1_*, ap_curves, training_curves; .png and .pdf)"

# The 3-D demo: synthetic nuclei volumes, EmbedSeg with 16-fold TTA, Table 1 at τ 0.1 … 0.9
# (config/demo3d.yaml); ~8 min on 2 cores.
demo3d: venv
	$(BIN)/snakemake all --cores $(CORES) --workflow-profile none --configfile config/demo3d.yaml
	@cat results/demo3d/tables/table1.md
	@echo
	@echo "Tables:   results/demo3d/tables/;  figures: results/demo3d/figures/"

# Style and static checks (pyproject.toml: [tool.ruff], [tool.snakefmt]); CI runs it before the tests.
lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakefmt --check workflow
	cd workflow && ../$(BIN)/snakemake --lint --configfile ../config/config.yaml -n

clean-results:
	rm -rf results/demo .snakemake
