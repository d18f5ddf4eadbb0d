# Two entry points for people (README Quick start) and one for CI (.ci/run -> make test).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
JS     := tests/interop/js
EXJS   := examples/js

.PHONY: run demo test lint typecheck unit integration interop bench clean java-peer

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(JS)/node_modules/.installed: $(JS)/package.json $(JS)/package-lock.json
	cd $(JS) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(EXJS)/node_modules/.installed: $(EXJS)/package.json $(EXJS)/package-lock.json
	cd $(EXJS) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

java-peer:
	bash tests/interop/java/install-peer.sh

run: $(STAMP)
	$(BIN)/gateway run

demo: $(STAMP)   # gateway + backend + devices as processes; Ctrl-C stops them (ARGS=--help)
	$(BIN)/python -m gateway.demo $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check gateway tests examples/python $(wildcard bench)
	$(BIN)/ruff format --check gateway tests examples/python $(wildcard bench)

typecheck: $(STAMP)
	$(BIN)/mypy
	cd examples/python && ../../$(BIN)/mypy --strict --config-file ../../pyproject.toml .

test: $(STAMP) $(JS)/node_modules/.installed $(EXJS)/node_modules/.installed java-peer lint typecheck
	$(BIN)/pytest -q -p no:cacheprovider

unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

bench: $(STAMP)   # needs mosquitto and rabbitmq-server (apt-get install mosquitto rabbitmq-server)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) $(JS)/node_modules $(EXJS)/node_modules .mypy_cache .ruff_cache .pytest_cache .hypothesis
