# `make demo`: set up .venv and run the end-to-end demo on the bundled sample data.
# `make test`: set up .venv and run the whole test suite (what CI runs).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test bench clean

setup: $(STAMP)

$(STAMP): requirements.txt requirements-radiomics.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet versioneer==0.29 wheel==0.48.0
	$(PY) -m pip install --quiet --no-build-isolation -r requirements-radiomics.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	$(PY) -c "import torch, monai, SimpleITK, slicer; print('environment ready: torch', torch.__version__)"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/hcc demo --out out/demo

test: $(STAMP)
	$(PY) -m pytest -q -n 2

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

clean:
	rm -rf out .pytest_cache
