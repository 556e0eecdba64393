# `make run` starts the web app, `make test` runs the whole suite; both set everything up on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test system-packages

$(STAMP): requirements.txt constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements.txt -c constraints.txt
	touch $(STAMP)

# Debian packages: ffmpeg for the app (as in packages.txt), chromium for the browser tests.
system-packages:
	@if ! command -v ffmpeg >/dev/null || ! test -x /usr/bin/chromium; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg chromium chromium-driver >/dev/null; \
	  else echo "please install ffmpeg and chromium (Debian: apt-get install ffmpeg chromium chromium-driver)"; exit 1; fi; \
	fi

run: $(STAMP)
	@command -v ffmpeg >/dev/null || $(MAKE) --no-print-directory system-packages
	$(BIN)/python -m webapp

test: $(STAMP) system-packages
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -rs
