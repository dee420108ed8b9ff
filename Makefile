# Two fresh-machine entry points: `make demo` (main job) and `make test`.
PY := .venv/bin/python
VENV_STAMP := .venv/.installed

.PHONY: venv demo test test-all lint bench clean

$(VENV_STAMP): requirements.txt requirements-dev.txt
	@command -v python3 >/dev/null || (apt-get update && apt-get install -y python3 python3-venv)
	python3 -m venv .venv || (apt-get update && apt-get install -y python3-venv && python3 -m venv .venv)
	.venv/bin/pip install --quiet --upgrade pip
	.venv/bin/pip install --quiet -r requirements.txt -r requirements-dev.txt
	@# Debian's Chromium for the browser tests (tests/browser_support.py); Playwright uses it, downloads none
	@test -x /usr/bin/chromium || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium)
	touch $(VENV_STAMP)

venv: $(VENV_STAMP)

demo: $(VENV_STAMP)
	$(PY) node.py demo --json out/demo.json

# ruff, mypy and the package graph first (seconds), then the suite: CI (.ci/run) keeps all clean.
test: lint
	$(PY) -m pytest -q

test-all: $(VENV_STAMP)
	$(PY) -m pytest -q -m ''

bench: $(VENV_STAMP)
	$(PY) -m bench.suite --json bench/results/suite.json --plots bench/results

lint: $(VENV_STAMP)
	.venv/bin/ruff check .
	.venv/bin/mypy chain vm contracts consensus p2p rpc crypto client runtime cli diagnosis faults bench explorer
	.venv/bin/lint-imports

clean:
	rm -rf .venv var out
