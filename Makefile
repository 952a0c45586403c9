# Two commands on a fresh machine: `make demo` and `make test`.
# Both bootstrap uv into .tools/ (from PyPI, with the system python3) and sync .venv from uv.lock.

PYTHON ?= python3
UV := .tools/bin/uv
VENV := .venv/bin
export UV_PYTHON_DOWNLOADS := never
export UV_COMPILE_BYTECODE := 1

.PHONY: sync demo test lint bench clean

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet 'uv==0.13.9'

.venv/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --all-extras --frozen --quiet
	touch $@

sync: .venv/.synced

demo: sync
	$(VENV)/python examples/demo.py

lint: sync
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .
	$(VENV)/mypy
	$(VENV)/lint-imports --no-cache

test: lint
	$(VENV)/pytest -q -p no:cacheprovider

bench: sync
	$(VENV)/python -m bench

clean:
	rm -rf .tools .venv
