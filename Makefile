# Set-up and checks for dfscan. `make lint` and `make test` are what CI runs (.ci/run).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint clean browser

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	# The wheel installs `scanner` only; training/, export/ and benchmarks/ are imported from
	# this checkout, which a .pth file puts on the virtualenv's path (see pyproject.toml).
	$(BIN)/python -c 'import sysconfig, pathlib; pathlib.Path(sysconfig.get_paths()["purelib"], "dfscan-checkout.pth").write_text("$(CURDIR)\n")'
	touch $(STAMP)

# The main job on the bundled default: scan the two sample clips with the shipped model.
demo: setup
	$(BIN)/dfscan scan --samples --out demo_results.csv --overwrite
	@cat demo_results.csv

test: setup browser
	$(BIN)/python -m pytest -q

# Chromium from the distribution's packages for the HTML report's browser tests
# (tests/browser.py). Installed once where this runs as root with apt-get; elsewhere, or when
# the install fails (offline), those tests skip and say why.
browser:
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then \
	  :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing Debian's chromium package for the report's browser tests" >&2; \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq --no-install-recommends chromium; } >/dev/null 2>&1 \
	  || echo "chromium could not be installed: the browser tests will skip" >&2; \
	else \
	  echo "chromium is missing (install it as root: apt-get install chromium):" \
	    "the browser tests will skip" >&2; \
	fi

# ruff, and the import contract in pyproject.toml (scanner <- {training, export} <- benchmarks)
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
