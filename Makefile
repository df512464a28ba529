# Two entry points, each works on a fresh machine: it creates .venv and installs what it needs.
#   make eval   evaluate the embedded default model on the bundled question sets
#   make test   run the test suite (unit, plugin and integration tests)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
REPORT ?= em-report

.PHONY: eval test install lint

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# the CPU build of torch that lies on disk; an unpinned torch pulls CUDA packages
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[hf,dev]'
	touch $@

install: $(BIN)/.installed

eval: install
	$(BIN)/python -m pytest evals/ --em-report $(REPORT) -p no:cacheprovider -rA

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy src
