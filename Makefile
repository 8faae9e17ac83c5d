# Two commands matter: `make run` (the main job on the embedded default) and `make test`.
# Every target but `lock` and `clean` depends on `setup`, which builds .venv once from
# pyproject.toml + constraints.txt.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CONFIG ?= data/configs/embedded.yaml
RUN    ?= runs/embedded

export HF_HUB_OFFLINE ?= 1
export PYTHONHASHSEED := 0

.PHONY: setup run test fuzz lint bench gpu-check book minizoo lock clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { \
	  echo "make: $(PYTHON) is $$($(PYTHON) -V 2>&1); repsim needs Python 3.11 or newer." \
	       "Name one: make $(or $(MAKECMDGOALS),setup) PYTHON=python3.11" >&2; exit 2; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[test]"
	touch $(STAMP)

# On a CPU with 2+ cores the run trains its probes on one worker process per core and the book
# executes its notebooks two at a time; run.json and the summary give the time of each stage.
run: setup
	$(BIN)/repsim run $(CONFIG) --out $(RUN)
	$(BIN)/repsim book --run $(RUN)

test: setup
	$(BIN)/python -m pytest -q

# Opt-in exploratory fuzzing (not part of `test` or .ci/run): the property tests with fresh random
# examples. FUZZ_SEED replays a run (a new one is drawn and printed by default); see CONTRIBUTING.md.
FUZZ_SEED ?=
FUZZ_EXAMPLES ?= 500
fuzz: setup
	@seed="$(FUZZ_SEED)"; seed="$${seed:-$$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}"; \
	echo "make fuzz: FUZZ_SEED=$$seed FUZZ_EXAMPLES=$(FUZZ_EXAMPLES)"; \
	REPSIM_HYPOTHESIS_PROFILE=fuzz REPSIM_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) \
	  $(BIN)/python -m pytest -q -m hypothesis --hypothesis-seed="$$seed"

lint: setup
	$(BIN)/ruff check repsim tests
	$(BIN)/ruff format --check repsim tests
	@# the notebooks keep their own layout; unused imports and undefined names are still errors
	$(BIN)/ruff check --select F notebooks book/course

bench: setup
	$(BIN)/repsim bench all

# The prepared GPU check (under 5 minutes on one H100/H200; a dry run at tiny sizes without CUDA).
gpu-check: setup
	bash tests/benchmarks/gpu_check.sh

book: setup
	$(BIN)/repsim book --run $(RUN)

minizoo: setup
	$(BIN)/repsim minizoo train

# Re-resolve exact versions after changing ranges in pyproject.toml.
lock:
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install --quiet torch==2.14.1 torchvision==0.29.1 -e ".[test]"
	{ head -2 constraints.txt; .venv-lock/bin/pip freeze --exclude-editable; } > constraints.txt.new
	mv constraints.txt.new constraints.txt && rm -rf .venv-lock

clean:
	rm -rf $(VENV) runs book/_build
