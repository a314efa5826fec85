# The two commands a fresh machine needs: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run link test lint bench bench-peer screenshots install clean chromium compiled

# everything the tests, the linters and the benchmarks use
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP) $(RUN_STAMP)

# only what running needs: `make run` on a fresh clone installs no test tools
RUN_STAMP := $(VENV)/.installed-run
$(RUN_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $(RUN_STAMP)

install: $(STAMP)

PORT ?= 8000
# the demo keeps its own database, so the README's example (signoff.db) never meets the demo's
# workflows, and its own secret key, so `make link` signs links the demo server accepts
DEMO_DB ?= sqlite:///demo.db
DEMO_KEY := $(VENV)/demo-secret-key

$(DEMO_KEY): | $(RUN_STAMP)
	$(BIN)/python -c "import secrets; print(secrets.token_urlsafe(48))" > $(DEMO_KEY)

# the demo: open access on 127.0.0.1:$(PORT), example instances added to an empty database
run: $(RUN_STAMP) $(DEMO_KEY)
	SIGNOFF_SECRET_KEY="$$(cat $(DEMO_KEY))" $(BIN)/signoff serve --open-access --port $(PORT) --db $(DEMO_DB)

# an approval link for the demo: make link ID=<instance id> APPROVER=alice
link: $(RUN_STAMP) $(DEMO_KEY)
	SIGNOFF_SECRET_KEY="$$(cat $(DEMO_KEY))" $(BIN)/signoff link --db $(DEMO_DB) \
	  --base-url http://127.0.0.1:$(PORT) --approver $(APPROVER) $(ID)

# the browser tests drive Debian's Chromium: installed here when it is missing and apt-get may
# (as root); otherwise those tests skip, saying why
chromium:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
	  || echo "chromium could not be installed: the browser tests will be skipped"

# two pytest processes, a test file each at a time (a file's servers and browser are set up once):
# the suite mostly waits on subprocesses, servers and the browser. TEST_WORKERS=0 runs it in one.
TEST_WORKERS ?= 2
test: $(STAMP) chromium
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

# mypy reads the packages under their installed names through a tree of links to the checkout
TYPECHECK := build/typecheck/signoff

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	mkdir -p $(TYPECHECK)
	for f in engine web __init__.py py.typed; do ln -sfn ../../../$$f $(TYPECHECK)/$$f; done
	$(BIN)/mypy

# the README's pictures: the browser tests, writing their screenshots into docs/screenshots/
screenshots: $(STAMP) chromium
	SIGNOFF_SCREENSHOTS=docs/screenshots $(BIN)/python -m pytest -m browser -q

# signoff as users install it: compiled core (setup.py), built from this checkout into a venv of
# its own that borrows the dev venv's dependencies (no downloads). `make install`'s editable
# install stays pure Python, so an edited module is always what runs there.
COMPILED := bench/compiled-venv
SOURCES := $(shell find engine web templates static -type f -not -path '*/__pycache__/*') \
  __init__.py setup.py pyproject.toml
$(COMPILED)/.installed: $(STAMP) $(SOURCES)
	rm -rf $(COMPILED)
	$(PYTHON) -m venv --without-pip $(COMPILED)
	$(BIN)/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])" > \
	  "$$($(COMPILED)/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")/borrowed-dependencies.pth"
	SIGNOFF_COMPILE=1 $(BIN)/pip --python $(COMPILED)/bin/python install --quiet --no-deps \
	  --no-build-isolation .
	@$(COMPILED)/bin/python -c "import signoff.engine.core as c; print('bench/compiled-venv:', 'compiled core' if c.COMPILED else 'pure Python core (no compiler?)')"
	touch $@

compiled: $(COMPILED)/.installed

# the figures are of the compiled core, as users install it; bench/engine.py also sets it
# beside the pure Python core (the editable install) in alternating rounds
bench: $(STAMP) $(COMPILED)/.installed
	$(COMPILED)/bin/python bench/engine.py --against $(BIN)/python
	$(COMPILED)/bin/python bench/timers.py
	$(COMPILED)/bin/python bench/web.py
	$(COMPILED)/bin/python bench/check.py
	$(COMPILED)/bin/python bench/slack.py

# signoff beside DBOS Transact and the raw drivers, on PostgreSQL (127.0.0.1:5432) and SQLite.
# DBOS goes into a venv of its own, bench/peer-venv: never a dependency of signoff.
PEER := bench/peer-venv
$(PEER)/.installed:
	$(PYTHON) -m venv $(PEER)
	$(PEER)/bin/pip install --quiet 'dbos==3.4.0'
	touch $(PEER)/.installed

bench-peer: $(STAMP) $(PEER)/.installed $(COMPILED)/.installed
	$(COMPILED)/bin/python bench/scale.py

clean:
	rm -rf $(VENV) $(COMPILED) build dist *.egg-info
	find engine -name '*.so' -delete -o -name '*.pyd' -delete
