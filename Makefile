.PHONY: install check test
install:
	python3 -m venv .venv && .venv/bin/pip install -e '.[test,dev]'
check:
	.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy
test:
	.venv/bin/python -m pytest
