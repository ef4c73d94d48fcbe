# Set-up-free entry points: each target creates .venv and installs what it needs on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dev
BROWSER := $(VENV)/.installed-browser
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: demo test lint bench-klot clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "torch==2.13.0"
	$(BIN)/python -m pip install -q -e ".[dev]"
	# CLIP_benchmark's evaluators (tests/test_aligned.py); its own requirements pull
	# torchvision and open_clip, which the evaluators do not use: installed without them
	$(BIN)/python -m pip install -q --no-deps "clip-benchmark==1.6.2"
	touch $(STAMP)

# Debian's Chromium for the search page's browser test (Playwright drives it; nothing downloaded)
$(BROWSER):
	command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq chromium >/dev/null) || echo "no chromium: the browser test is skipped"
	touch $(BROWSER)

demo: $(STAMP)
	$(BIN)/sotalign demo

test: $(STAMP) $(BROWSER)
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache
