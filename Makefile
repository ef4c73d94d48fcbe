# Set-up-free entry points: each target creates .venv and installs what it needs on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dev
BROWSER := $(VENV)/.installed-browser
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: demo test test-vision lint bench-klot clean

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

# timm and open_clip need torchvision, whose builds pair with torch's CUDA build, not with the
# CPU torch of .venv: a second environment (torch 2.14.1 + torchvision 0.29.1, about 5.7 GB and
# 5 minutes to set up on x86_64) in which their encoder tests run for real (they skip in .venv)
VISION := .venv-vision
$(VISION)/.installed:
	test -x $(VISION)/bin/python || $(PYTHON) -m venv $(VISION)
	$(VISION)/bin/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
	$(VISION)/bin/python -m pip install -q timm open_clip_torch transformers pytest hypothesis -e .
	touch $@

test-vision: $(VISION)/.installed
	$(VISION)/bin/python -m pytest -q -p no:cacheprovider tests/test_encoders.py -k "timm or open_clip"

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts

clean:
	rm -rf $(VENV) $(VISION) build dist src/*.egg-info .pytest_cache .ruff_cache
