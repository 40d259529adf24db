# Every target sets up .venv on first use: torch==2.13.0 (CPU wheel) first, then the project (see docs/ENV notes).
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev,notebooks]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m gradlab demo

test: $(STAMP)
	$(PY) -m pytest -q -n 2 -p no:cacheprovider

lint: $(STAMP)
	$(VENV)/bin/ruff check gradlab tests benchmarks

bench: $(STAMP)
	$(PY) -m benchmarks.recorder_overhead
	$(PY) -m benchmarks.recorder_overhead --size 128 --rounds 8 --steps 6
	$(PY) -m benchmarks.analysis_scale
	$(PY) -m benchmarks.hem_vs_em
	$(PY) -m benchmarks.em_layer_speed

clean:
	rm -rf $(VENV) build *.egg-info
