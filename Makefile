# Two commands do all the set-up on a fresh machine:
#   make serve   -> the service on http://127.0.0.1:8000 (embedded Redis, SQLite)
#   make test    -> the whole test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: serve test lint bench install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,postgres,loadtest]'
	touch $(STAMP)

install: $(STAMP)

serve: $(STAMP)
	$(BIN)/live serve

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) live.db live.secret
