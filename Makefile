# lifeline: `make demo` runs the lab scenario, `make test` runs every check. Both install
# what they need first (Debian packages as root, the Python package with its extras).
PYTHON ?= python3
PYTEST_ARGS ?=

.PHONY: deps test lint typecheck layers unit demo bench bench-peers clean

deps:
	@scripts/install-deps

lint: deps
	$(PYTHON) -m ruff check controller probes exporters tests grafana

typecheck: deps
	$(PYTHON) -m mypy

# import-linter's contracts (pyproject.toml); called through Python so no script shim is needed.
layers: deps
	$(PYTHON) -c 'import sys; from importlinter.cli import lint_imports; \
	sys.exit(lint_imports(no_cache=True, no_logo=True))'

# Two workers, each test file on one (its lab and module fixtures stay together): the lab
# tests mostly wait on timers and peers, so two at once halve the wall time (19 -> 10 min).
# pytest-benchmark, if installed, refuses xdist: it is not ours, so it is left out.
test: lint typecheck layers
	$(PYTHON) -m pytest -q -ra --durations=25 -n 2 --dist loadfile -p no:benchmark $(PYTEST_ARGS)

unit: deps
	$(PYTHON) -m pytest -q tests/unit $(PYTEST_ARGS)

demo: deps
	$(PYTHON) -m controller demo

bench: deps
	$(PYTHON) -m tests.bench.run_all

# lifeline next to keepalived, FRR bfdd, an mwan3 re-creation and a naive ping loop (as root;
# about 35 minutes); writes BENCHMARKS.md and the raw results it is made from
# (docs/bench-peers.json: `python -m tests.bench.peers --from-json` rebuilds the text).
bench-peers: deps
	$(PYTHON) -m tests.bench.peers --json docs/bench-peers.json --write-benchmarks BENCHMARKS.md

clean:
	rm -rf build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache .deps-installed
