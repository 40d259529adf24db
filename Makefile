# Every target sets up .venv on first use: the pinned torch==2.13.0 first, on its own (the CPU wheel where pip's
# config offers one, as on this machine), so the project's torch>=2.6 is already met and pip pulls no other
# build; then the project, editable, with the extras the tests use (dev, notebooks and the optional integrations).
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# pip at -qq prints errors only (a failed download, resolution or build still prints its ERROR lines and stops
# make). Plain -q still prints a WARNING per package when the machine's pip config names extra indexes that lack
# it (here ~/.config/pip/pip.conf: file:///opt/pypi*/simple, one "Location ... is ignored" line per package, pages
# of them) and setuptools' notice block about editable installs. `make PIP_QUIET=-q` shows them again.
PIP_QUIET ?= -qq
PIP    := $(PY) -m pip $(PIP_QUIET)

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install torch==2.13.0
	$(PIP) install -e '.[dev,notebooks,slurm,tensorboard,lightning]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m gradlab demo

test: $(STAMP)
	$(PY) -m pytest -q -n 2 -p no:cacheprovider

# The package, tests, benchmarks, analyses and notebooks (ruff reads .ipynb cells); what .ci/run runs first.
lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	$(PY) -m benchmarks.recorder_overhead
	$(PY) -m benchmarks.recorder_overhead --size 128 --rounds 8 --steps 6
	$(PY) -m benchmarks.analysis_scale
	$(PY) -m benchmarks.hem_vs_em
	$(PY) -m benchmarks.em_layer_speed

clean:
	rm -rf $(VENV) build *.egg-info
