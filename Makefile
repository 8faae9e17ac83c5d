# Two commands matter: `make run` (the main job on the embedded default) and `make test`.
# Every target depends on `setup`, which builds .venv once from pyproject.toml + constraints.txt.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CONFIG ?= data/configs/embedded.yaml
RUN    ?= runs/embedded

export HF_HUB_OFFLINE ?= 1
export PYTHONHASHSEED := 0

.PHONY: setup run test lint bench book minizoo lock clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[test]"
	touch $(STAMP)

run: setup
	$(BIN)/repsim run $(CONFIG) --out $(RUN)
	$(BIN)/repsim book --run $(RUN)

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check repsim tests

bench: setup
	$(BIN)/repsim bench all

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
