# `make test` is the README's test command and what .ci/run calls: it does all
# the set-up a fresh machine needs (virtualenv, packages, wrk for the
# benchmark smoke test), runs the checks (`make check`), then the whole suite.
.PHONY: install test check bench

.venv/.installed: pyproject.toml
	python3 -m venv .venv
	.venv/bin/pip install -q -e '.[test,dev]'
	touch $@

install: .venv/.installed
	@command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; } \
	  || echo "wrk not installed: the benchmark smoke test will fail" >&2
	@command -v haproxy >/dev/null || { apt-get update -qq && apt-get install -y -qq haproxy; } \
	  || echo "haproxy not installed: tests/unit/deploy's check of its config will fail" >&2
	@{ command -v chromium >/dev/null && command -v chromedriver >/dev/null; } \
	  || { apt-get update -qq && apt-get install -y -qq chromium chromium-driver; } \
	  || echo "chromium not installed: the dasbor browser tests will fail" >&2

# the checks first (ruff, ruff format, mypy --strict over ledger/, projections/,
# gateways/, dasbor/): CI runs this target, and a type error fails it like a test
test: install check
	.venv/bin/python -m pytest

check: install
	.venv/bin/ruff check . && .venv/bin/ruff format --check ledger projections gateways loadtests dasbor && .venv/bin/mypy

bench: install
	.venv/bin/python -m loadtests.bench --duration 10 --write
