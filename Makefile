# Two commands for a fresh machine:  `make serve`  (set up everything, then serve)  and  `make test`.
# Every step is idempotent: a second run skips finished work.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: serve test setup install models index browser lint bench eval clean-index reliability

serve: setup
	$(BIN)/rag serve

test: setup browser
	$(BIN)/python -m pytest

setup: index

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# llama-cpp-python compiles from source (about 6 minutes on 2 cores); pip caches the wheel it builds.
	CMAKE_BUILD_PARALLEL_LEVEL=2 $(BIN)/python -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $@

models: install
	$(BIN)/rag models

index: models
	$(BIN)/rag ingest corpus

# The page's browser tests drive Debian's chromium (never a downloaded browser) and need a CJK font.
browser:
	@sh scripts/browser_deps.sh

lint: install
	$(BIN)/ruff check rag tests eval scripts
	$(BIN)/mypy rag

bench: setup
	$(BIN)/python scripts/bench_ingest.py
	$(BIN)/python scripts/bench_answer.py

eval: setup
	$(BIN)/rag eval

# Fuzzing, concurrency and kill -9 against a running service, bounded (about 4 minutes); CI runs it.
reliability: setup
	$(BIN)/python scripts/reliability.py
