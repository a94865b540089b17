# lifeline: `make demo` runs the lab scenario, `make test` runs every check. Both install
# what they need first (Debian packages as root, the Python package with its extras).
PYTHON ?= python3
PYTEST_ARGS ?=

.PHONY: deps test lint typecheck unit demo bench clean

deps:
	@scripts/install-deps

lint: deps
	$(PYTHON) -m ruff check controller probes exporters lab tests

typecheck: deps
	$(PYTHON) -m mypy

test: lint typecheck
	$(PYTHON) -m pytest -q -ra $(PYTEST_ARGS)

unit: deps
	$(PYTHON) -m pytest -q tests/unit $(PYTEST_ARGS)

demo: deps
	lifeline demo

bench: deps
	$(PYTHON) -m tests.bench.run_all

clean:
	rm -rf build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache .deps-installed
