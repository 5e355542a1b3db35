# usdiff: two commands on a fresh machine.
#   make demo   install into .venv, build the built-in data set, execute the notebooks in order
#   make test   install into .venv, run the unit tests and every notebook under nbval (quick mode, JOBS=2 workers)

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.usdiff-installed
OUT    ?= outputs
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))
# FAST=1 make demo runs the quick (CI-sized) variant of every notebook.
FAST   ?= 0
# make test runs JOBS pytest-xdist workers with one thread each; every notebook (and every test module)
# stays on one worker, in order. The quick data set is built first so that no two notebooks build it at once.
JOBS   ?= 2

.PHONY: install test lint demo data notebooks lab bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=23"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

lint: $(STAMP)
	$(PY) -m ruff check usdiff tests benchmarks scripts

test: $(STAMP) lint
	USDIFF_FAST=1 $(PY) -m usdiff.cli data ensure
	USDIFF_FAST=1 MPLBACKEND=Agg OMP_NUM_THREADS=1 $(PY) -m pytest tests $(NOTEBOOKS) --nbval-lax --nbval-cell-timeout=900 \
		-n $(JOBS) --dist loadscope -p no:cacheprovider

data: $(STAMP)
	USDIFF_FAST=$(FAST) $(PY) -m usdiff.cli data ensure

demo: $(STAMP) data
	@mkdir -p $(OUT)/notebooks
	@for nb in $(NOTEBOOKS); do \
		echo "== $$nb"; \
		start=$$(date +%s); \
		(cd notebooks && env -u MPLBACKEND USDIFF_FAST=$(FAST) USDIFF_OUT=../$(OUT) ../$(PY) -m jupyter nbconvert --to notebook --execute \
			--ExecutePreprocessor.timeout=-1 --output-dir ../$(OUT)/notebooks $$(basename $$nb)) || exit 1; \
		echo "   done in $$(( $$(date +%s) - start )) s"; \
	done
	@echo "Executed notebooks in $(OUT)/notebooks, figures in $(OUT)/"

notebooks: $(STAMP) data
	@for nb in $(NOTEBOOKS); do \
		echo "== $$nb"; \
		(cd notebooks && env -u MPLBACKEND USDIFF_FAST=$(FAST) ../$(PY) -m jupyter nbconvert --to notebook --execute --inplace \
			--ExecutePreprocessor.timeout=-1 $$(basename $$nb)) || exit 1; \
	done
	$(PY) scripts/clean_notebooks.py $(NOTEBOOKS)

lab: $(STAMP)
	$(PY) -m jupyter lab notebooks/

bench: $(STAMP)
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache
