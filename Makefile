# The two commands of the README: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# Every runtime, test and build dependency is pinned in constraints.txt (regenerate with `make lock`).
# pip, setuptools and wheel come from the same file, and the package is built without isolation, so that
# the build backend is pinned too.
PIP    := $(BIN)/python -m pip
# The extras whose dependencies the lock pins (test-time: dev; `make bench`: bench; `make docs`: docs).
LOCK_EXTRAS := dev,bench,docs

.PHONY: demo test test-latest bench docs lint lock clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet -c constraints.txt pip setuptools wheel
	$(PIP) install --quiet -c constraints.txt --no-build-isolation -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/sgd-dynamics demo

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q

# Every benchmark (benchmarks/run_all.py), then one table of issue 15's goals with their measured values
# (`make bench BENCH_ARGS=--quick`: the smoke modes). The peers live in their own venv: BackPACK pulls
# torchvision, whose PyPI wheel is built against the CUDA torch and fails to load beside the CPU build,
# and Lightning (in the test suite) imports torchvision whenever it is installed.
BENCH_VENV := .venv-bench
$(BENCH_VENV)/.installed: pyproject.toml constraints.txt
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet -c constraints.txt pip setuptools wheel
	$(BENCH_VENV)/bin/python -m pip install --quiet -c constraints.txt --no-build-isolation -e '.[dev,bench]'
	touch $@

bench: $(BENCH_VENV)/.installed
	$(BENCH_VENV)/bin/python benchmarks/run_all.py $(BENCH_ARGS)

# The documentation site (Sphinx: API reference, executed example gallery, guides) into docs/_build/html,
# offline (MathJax is bundled), warnings treated as errors. The gallery runs every example (a few minutes).
docs: $(STAMP)
	$(PIP) install --quiet -c constraints.txt --no-build-isolation -e '.[docs]'
	OMP_NUM_THREADS=1 $(BIN)/sphinx-build -W --keep-going -b html docs docs/_build/html
	@echo "open docs/_build/html/index.html"

# The suite against the newest releases of everything but torch (whose newer builds are CUDA builds of
# several GB): upgrades are seen deliberately here, never by accident in `make test`.
test-latest:
	rm -rf .venv-latest && $(PYTHON) -m venv .venv-latest
	.venv-latest/bin/python -m pip install --quiet --upgrade pip setuptools wheel
	.venv-latest/bin/python -m pip install --quiet --upgrade torch==2.13.0 -e '.[dev]'
	.venv-latest/bin/python -m pip freeze --exclude-editable | tr '\n' ' '; echo
	.venv-latest/bin/python -m pytest -n 2 -q

# Re-resolve constraints.txt from pyproject.toml's ranges in a clean venv (pip's resolver, then pip freeze).
lock:
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install --quiet --upgrade pip setuptools wheel
	.venv-lock/bin/python -m pip install --quiet torch==2.13.0 -e '.[$(LOCK_EXTRAS)]'
	{ sed -n '1,/^# ---- pins/p' constraints.txt; \
	  .venv-lock/bin/python -m pip freeze --all --exclude-editable | sed 's/+cpu$$//'; } > constraints.txt.new
	mv constraints.txt.new constraints.txt
	rm -rf .venv-lock

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) $(BENCH_VENV) .venv-latest .venv-lock .pytest_cache .hypothesis build src/*.egg-info
	rm -rf docs/_build docs/api/generated docs/gallery docs/sg_execution_times.rst
