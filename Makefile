PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test lint typecheck unit demo bench clean

# jq is built from source with optimisation: the published jq wheels compile libjq without
# -O2 and filter about 2.7 times slower (docs/performance.md); its configure reads CPPFLAGS.
$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	CPPFLAGS=-O2 $(BIN)/python -m pip install --quiet --force-reinstall --no-deps --no-binary jq 'jq>=1.6' \
	  || echo "note: could not build jq from source (no C compiler?); using the slower jq wheel"
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff format --check kongctl tests scripts bench
	$(BIN)/ruff check kongctl tests scripts bench

typecheck: $(STAMP)
	$(BIN)/mypy kongctl bench

unit: $(STAMP)
	$(BIN)/pytest -q

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

bench: $(STAMP)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
