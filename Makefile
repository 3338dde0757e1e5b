# Two commands for a fresh machine:  `make serve`  (set up everything, then serve)  and  `make test`.
# Every step is idempotent: a second run skips finished work.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: serve test setup install llama rebuild-llama models index browser lint bench eval clean-index reliability

serve: setup
	$(BIN)/rag serve

test: setup browser
	$(BIN)/python -m pytest

setup: index

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# llama.cpp first, built for the instructions this CPU really runs (never GGML_NATIVE's guess), so that
	# pip finds llama-cpp-python installed and never builds or reuses a wheel of its own for it.
	$(BIN)/python rag/models/llama_build.py --python $(BIN)/python
	# A venv from before rapidocr 3 has rapidocr-onnxruntime and its opencv-python, whose cv2 folder rapidocr's
	# opencv-python-headless shares: all three go first, and the install below brings the headless one back, so
	# that cv2 comes from one package, whole (nothing to do on a new venv).
	if $(BIN)/python -m pip show --quiet rapidocr-onnxruntime 2>/dev/null; then \
		$(BIN)/python -m pip uninstall --quiet --yes rapidocr-onnxruntime opencv-python opencv-python-headless; fi
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $@

# Every run: the CPU may not be the one the venv was built on (probing takes a few seconds; a wheel for the
# same flags is reused from ~/.cache/rag/llama-cpp-python/<key>/).
llama: install
	@$(BIN)/python rag/models/llama_build.py --python $(BIN)/python

# When `rag models` says llama.cpp crashed: rebuild from the most capable instruction set down, keeping the
# first build whose decode of the model succeeds in a child process.
rebuild-llama: install
	$(BIN)/rag models --rebuild-llama

# Provisions the models, then proves in a child process that llama.cpp decodes the GGUF on this CPU.
models: llama
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
