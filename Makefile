# The README's set-up commands: `make test` and `make train`. Both install first if needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA_ROOT ?= data
SYNTH_ARGS ?=
ARGS ?=
PYTEST_ARGS ?=

.PHONY: install test test-full test-slurm wheel-check docs train data results results-swin results-label results-few-labels results-few-labels-long bench parity \
	tables lint clean mutation

install: $(STAMP)

# Re-install when the package metadata changes; pip prints one line per skipped
# local index, so keep only its errors.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
	$(BIN)/python -m pip install --quiet -e '.[dev,optuna,docs,people]' 2>&1 | grep -v "^WARNING: Location" || true
	$(BIN)/python -c "import kspace_mim, fastmri, timm, lightning, hydra"
	touch $(STAMP)

# The default data set, simulated from the shipped Colin27 brain (multicoil train / val /
# test / test_full folders), written once.
$(DATA_ROOT)/colin27/multicoil_train: | $(STAMP)
	$(BIN)/python -m kspace_mim.data.synthesize --out $(DATA_ROOT)/colin27 --challenge multicoil $(SYNTH_ARGS)

data: $(DATA_ROOT)/colin27/multicoil_train

train: install data
	KSPACE_MIM_DATA=$(abspath $(DATA_ROOT)) $(BIN)/python -m kspace_mim.train $(ARGS)

# The studies behind the generated results pages: Hydra multiruns of the train command over
# rows (conf/row/) and seeds, each job's directory its row and seed under
# outputs/studies/<study>/ (a rerun reuses the finished jobs and resumes the rest); then
# `python -m kspace_mim.study PAGE` writes the page, its row files (docs/PAGE/) and plot.
STUDY := KSPACE_MIM_DATA=$(abspath $(DATA_ROOT)) $(BIN)/python -m kspace_mim.train -m
PAGE := KSPACE_MIM_DATA=$(abspath $(DATA_ROOT)) $(BIN)/python -m kspace_mim.study

# The results table and curves: every model for the same 400 optimizer steps, 3 seeds,
# the held-out test volumes at 4x and 8x (about 110 minutes on 2 CPU cores, run alone).
results: install data
	$(STUDY) experiment=results_pretrain $(ARGS)
	$(STUDY) experiment=results_cs $(ARGS)
	$(STUDY) experiment=results $(ARGS)
	$(PAGE) results

# SimMIM-Swin, one change at a time from its default (coil maps, zero-initialised output,
# ...), on the results protocol; its default and E2E-VarNet are the results study's rows
# (about 40 minutes on 2 CPU cores, run alone, after them).
results-swin: install data
	$(STUDY) experiment=results row=swin,varnet,unrolled $(ARGS)
	$(STUDY) experiment=swin_variants $(ARGS)
	$(PAGE) swin_variants

# The README's lead result, the label-efficiency curve, then the label-free variants at
# N = 0 (about 100 minutes on 2 CPU cores, run alone).
results-label: install data
	$(STUDY) experiment=results row=zero_filled $(ARGS)
	$(STUDY) experiment=label_pretrain $(ARGS)
	$(STUDY) experiment=label_efficiency $(ARGS)
	$(STUDY) experiment=label_free_variants $(ARGS)
	$(PAGE) label_efficiency
	$(PAGE) label_free_variants

# The few-labels study, split by person (data=people: labels and validation Colin27, the
# label-free pool Colin27 and the MNI152 template, the test a real person no pool saw):
# label-free pre-training of each
# network, then N = 1, 4 and all labelled volumes (random draws, augmented) per row, 3
# seeds, each page under two checkpoint selections (labelled validation; held-out
# acquired samples, no label). Both networks (SimMIM-Swin and the unrolled network):
# about 8.5 hours on 2 CPU cores, a third of it SimMIM-Swin (FEW_MODELS=swin alone).
# FEW_BUDGET=gpu: the converged version on a GPU (8 times the steps, a 128 x 128 grid).
# FEW_JOBS jobs run side by side (Hydra's joblib launcher), each on an equal share of the
# cores: on a CPU two single-threaded jobs train faster than one job on two threads.
FEW_MODELS ?= swin,unrolled
FEW_BUDGET ?= cpu
FEW_JOBS ?= $(if $(filter gpu,$(FEW_BUDGET)),1,2)
FEW_THREADS ?= $(shell echo $$(( $$(nproc) / $(FEW_JOBS) > 0 ? $$(nproc) / $(FEW_JOBS) : 1 )))
FEW_SIDE := hydra/launcher=joblib hydra.launcher.n_jobs=$(FEW_JOBS) $(ARGS)
FEW := budget=$(FEW_BUDGET) $(FEW_SIDE)
FEW_STUDY := OMP_NUM_THREADS=$(FEW_THREADS) $(STUDY)
# SimMIM-Swin's candidate rows above the recipe's 1e-3 (study.FEW_RATES), as Hydra's list
comma := ,
space := $() $()
SWIN_ROWS := scratch scratch_equal_total ssdu_tuned ssdu_density_tuned mim_tuned
SWIN_RATES := $(subst $(space),$(comma),$(foreach r,lr3e3 lr1e2,$(SWIN_ROWS:%=%_$(r))))
results-few-labels: install
	$(FEW_STUDY) experiment=few_labels_pretrain model=zero_filled row=zero_filled seed=0 \
		'~model.size' $(FEW)
	$(FEW_STUDY) experiment=few_labels_pretrain model=$(FEW_MODELS) $(FEW)
	$(FEW_STUDY) experiment=few_labels model=$(FEW_MODELS) $(FEW)
	$(FEW_STUDY) experiment=few_labels model=$(FEW_MODELS) row=scratch_equal_compute \
		data.train_volumes=1 $(FEW)
	# SimMIM-Swin's learning rates above 1e-3 (study.FEW_RATES): every candidate row
	$(if $(findstring swin,$(FEW_MODELS)),$(FEW_STUDY) experiment=few_labels model=swin \
		row=$(SWIN_RATES) $(FEW))
	$(PAGE) few_labels
	$(PAGE) few_labels_heldout
	$(PAGE) few_labels_unrolled
	$(PAGE) few_labels_unrolled_heldout

# Is the few-labels study's N = all trained long enough? SimMIM-Swin at N = all, from
# scratch and SSDU then fine-tuning at 2, 4 and 8 times the study's steps (3 seeds), read
# beside the study's own jobs (run results-few-labels first): about 95 minutes on 2 CPU
# cores. On a GPU, FEW_BUDGET=gpu is the longer version of the whole study instead.
results-few-labels-long: install
	$(FEW_STUDY) experiment=few_labels_long_pretrain $(FEW_SIDE)
	$(FEW_STUDY) experiment=few_labels_long $(FEW_SIDE)
	$(PAGE) few_labels_long

# Reference parity: fastMRI's own E2E-VarNet loop beside model=varnet and model=unrolled
# (and their grid / recipe variants, the U-Net's and SimMIM-Swin's grids), 600 equal
# steps, 2 seeds (about 90 minutes on 2 CPU cores).
parity: install data
	KSPACE_MIM_DATA=$(abspath $(DATA_ROOT)) $(BIN)/python -m kspace_mim.reference_loop -m \
		experiment=parity row=fastmri_loop $(ARGS)
	$(STUDY) experiment=parity $(ARGS)
	$(PAGE) parity

# Every generated page again from its committed row files (docs/<page>/*.json): no
# training, seconds.
tables: install
	for page in results swin_variants label_efficiency label_free_variants parity \
		few_labels few_labels_heldout few_labels_long few_labels_unrolled \
		few_labels_unrolled_heldout; do \
		$(BIN)/python -m kspace_mim.study $$page --row-files || exit 1; done

# Benchmarks: JSON per machine kind in docs/bench/, then the README tables from all of them
# (a GPU machine adds its rows beside the CPU ones).
BENCH_NAME ?= $(if $(shell command -v nvidia-smi 2>/dev/null),gpu,cpu)
bench: install
	mkdir -p docs/bench
	$(BIN)/python -m kspace_mim.bench data --out docs/bench/data_$(BENCH_NAME).json
	$(BIN)/python -m kspace_mim.bench train --out docs/bench/train_$(BENCH_NAME).json
	# each family's peak training memory at its knee grid (15 coils, batch 1, bf16)
	$(BIN)/python -m kspace_mim.bench memory --out docs/bench/memory_$(BENCH_NAME)_knee.json
	# GPU only (minutes a step on 2 CPU cores): base models on the knee recon grid, and the
	# base unrolled network on a whole oversampled 15-coil knee slice, with checkpointing
	if [ "$(BENCH_NAME)" = gpu ]; then \
	  $(BIN)/python -m kspace_mim.bench train --size base --grid 320 --coils 15 --batch 1 \
	    --repeats 3 --out docs/bench/train_gpu_base320.json && \
	  $(BIN)/python -m kspace_mim.bench train --size base --grid 640x368 --coils 15 --batch 1 \
	    --repeats 3 --encoders unrolled --override model.checkpointing=true \
	    --out docs/bench/train_gpu_unrolled_knee.json; fi
	$(BIN)/python -m kspace_mim.bench tables docs/bench/*.json

# Two tiers: `make test` (the fast one, a few minutes on 2 cores: units, equality with
# fastMRI, invariants, one tiny training per family) and `make test-full` (everything
# slower: real training runs, DDP, kills and resumes, notebooks, the study tables).
test: install
	$(BIN)/python -m pytest -m "not slow and not docs" $(PYTEST_ARGS)

test-full: install
	$(BIN)/python -m pytest -m "slow" $(PYTEST_ARGS)

# The SLURM tests on a one-node cluster of this machine: installs Debian's SLURM if missing
# (root; otherwise a skip message), starts munge, slurmctld and slurmd, runs tests/slurm,
# stops the daemons it started. Under CI=true a skip is a failure.
test-slurm: install
	KSPACE_MIM_SLURM_TESTS=1 .ci/slurm-cluster $(BIN)/python -m pytest tests/slurm -p no:nbmake -o addopts="" -ra \
		--timeout=900 $(PYTEST_ARGS)

# The package as a user installs it: a wheel, alone in a fresh virtual environment, trained
# from an empty folder (.ci/wheel-check).
wheel-check: install
	PYTHON=$(BIN)/python .ci/wheel-check

# The documentation site (site/), after the checks of its prose and commands (README size,
# links, every command in a bash block, YAML comments, the configuration page).
docs: install
	$(BIN)/python -m kspace_mim.config_reference docs/reference/configuration.md
	$(BIN)/python -m pytest -m "docs and not slow" tests $(PYTEST_ARGS)
	$(BIN)/mkdocs build --strict

# Mutation proof of the tests behind the README's promises (not part of make test): each
# mutation breaks one behaviour and its tests must fail (tests/mutations.py).
mutation: install
	$(BIN)/python tests/mutations.py

lint: install
	$(BIN)/ruff check src tests notebooks
	$(BIN)/ruff format --check src tests notebooks

clean:
	rm -rf $(VENV) outputs multirun .pytest_cache site
