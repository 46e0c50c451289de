# fairprune-lite: the two commands a newcomer needs are `make book` and `make test`.
# Each creates .venv (Python 3.11+) and installs the project into it when missing or stale,
# with the exact versions behind the stored results (constraints.txt).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch/torchvision are pinned here (not in pyproject) so the book's numbers come from one
# known build; override on other machines, e.g. `make test TORCH="torch torchvision"`.
TORCH  ?= torch==2.14.1 torchvision==0.29.1
STAMP  := $(VENV)/.installed
PYTEST_NB := --nbval-lax --nbval-current-env --nbval-sanitize-with book/sanitize.cfg
# pytest-xdist: one worker per core; --dist loadfile keeps a test module's tests (and a notebook's
# cells, in order) in one worker. PYTEST_XDIST= (empty) runs everything in one process.
PYTEST_XDIST ?= -n auto --dist loadfile

.PHONY: help install lint test test-unit test-book verify book book-execute bench clean

help:
	@echo "make book          build the executed book (HTML in _build/html)"
	@echo "make lint          ruff (lint) and mypy (types); make test runs it first"
	@echo "make test          lint, unit tests + every notebook under nbval (recomputes a sample of stored results)"
	@echo "make test-unit     unit tests only"
	@echo "make verify        the slow tests: FAIRPRUNE_VERIFY_N (default 1) runs of every stored sweep recomputed, ..."
	@echo "make book-execute  re-run in place the chapters whose inputs changed (default profile), then build"
	@echo "make bench         the cost benchmark (benchmarks/README.md)"

CONSTRAINTS ?= constraints.txt

$(STAMP): pyproject.toml $(CONSTRAINTS)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -c $(CONSTRAINTS) -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

# ruff's rules and mypy's settings are in pyproject.toml; .pre-commit-config.yaml runs the same
lint: $(STAMP)
	$(BIN)/python -m ruff check fairprune_lite benchmarks tests
	$(BIN)/python -m mypy

test: lint
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_XDIST) -m "not slow" tests book $(PYTEST_NB)

test-unit: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_XDIST) -m "not slow" tests

# the tests marked slow: every stored sweep recomputed, and the long end-to-end checks
verify: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_XDIST) -m slow tests

test-book: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_XDIST) book $(PYTEST_NB)

book: $(STAMP)
	$(BIN)/jupyter-book build . -W -n --keep-going
	@echo "The book is at file://$(CURDIR)/_build/html/index.html"

# only the chapters whose code or inputs (library, data, stored results) changed since they were
# written back: benchmarks/execute_book.py's docstring; `execute_book.py --inplace` re-runs all
book-execute: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/execute_book.py --inplace --changed
	$(MAKE) book

bench: $(STAMP)
	$(BIN)/python benchmarks/cost.py

clean:
	rm -rf _build book/_build .pytest_cache
