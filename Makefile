# Two commands do all the set-up on a fresh machine:
#   make serve   -> the service on http://127.0.0.1:8000 (embedded Redis and SQLite,
#                   both persistent in ./live-data: LIVE_DATA_DIR)
#   make test    -> the whole test suite (in parallel; the ten slowest tests at the end)
#   make test-fast -> the same without the tests marked slow (fault, crash, load tests)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Test processes run side by side (pytest-xdist). Most of a test's time is waiting on
# real servers and subprocesses, so more workers than cores pays; each worker has its own
# Redis (an embedded server, or a database of LIVE_TEST_REDIS_URL's) and SQL database.
# Tests sharing a module-scoped service stay on one worker (tests/conftest.py).
TEST_WORKERS ?= 5
# The suite starts a few hundred Python processes (services, workers, `live` commands).
# Where PYTHONDONTWRITEBYTECODE is set (as on the CI machines) none of them would keep
# the project's compiled modules (nor pytest its rewritten test modules), so every
# process compiled them all again: the test run lets them be cached in __pycache__.
PYTEST := env -u PYTHONDONTWRITEBYTECODE $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup

.PHONY: serve test test-fast lint bench install clean browser nginx screenshots

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,postgres,loadtest]'
	touch $(STAMP)

install: $(STAMP)

serve: $(STAMP)
	$(BIN)/live serve

test: $(STAMP) browser nginx
	$(BIN)/ruff check .
	$(PYTEST)

test-fast: $(STAMP) browser nginx
	$(BIN)/ruff check .
	$(PYTEST) -m "not slow"

# The browser tests (tests/test_pages_*.py) drive Debian's chromium with Playwright; they
# never download a browser. Install it when missing (as root, with apt), otherwise stop
# and say what to install: the browser tests are never skipped.
CHROMIUM ?= $(or $(LIVE_TEST_CHROMIUM),/usr/bin/chromium)
browser:
	@if [ ! -x "$(CHROMIUM)" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "make: installing chromium for the browser tests (apt-get install chromium)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else \
	    echo "make: the browser tests need Chromium at $(CHROMIUM). Install Debian's" \
	         "'chromium' package (sudo apt-get install -y chromium), or set" \
	         "LIVE_TEST_CHROMIUM to a Chromium binary." >&2; \
	    exit 1; \
	  fi; \
	fi

# tests/test_nginx.py runs docs/nginx.conf in front of two services (loopback only):
# install nginx the same way when it is missing; that test is never skipped either.
nginx:
	@if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "make: installing nginx for tests/test_nginx.py (apt-get install nginx)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx; \
	  else \
	    echo "make: tests/test_nginx.py needs nginx: install Debian's 'nginx' package" \
	         "(sudo apt-get install -y nginx)." >&2; \
	    exit 1; \
	  fi; \
	fi

# The benchmarks' own dependencies (aiohttp clients, psutil...); each benchmark's command
# and latest figures are in bench/RESULTS.md.
bench: $(STAMP)
	$(BIN)/pip install --quiet -e '.[bench]'
	@echo "make: benchmarks ready, e.g. $(BIN)/python bench/buy.py (see bench/RESULTS.md)"

# Screenshots of the pages at phone and laptop size, into docs/screenshots/.
screenshots: $(STAMP) browser
	$(BIN)/python docs/screenshots/take.py

clean:
	rm -rf $(VENV) live.db live.secret
