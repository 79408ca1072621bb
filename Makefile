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

.PHONY: venv test unit book bench clean chapters nbval browser chromium chapter

venv: $(STAMP)

$(STAMP): requirements/lock.txt requirements/nodeps.txt pyproject.toml
	test -x $(PY) || $(PYTHON_SYS) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements/lock.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -r requirements/nodeps.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

unit: venv
	$(PY) -m pytest -q --durations=15 -m "not browser" tests

# The README's test command (.ci/run calls it): unit tests, then the book, then nbval on
# the executed chapters, then headless Chromium on every built page.
test: unit
	$(MAKE) --no-print-directory book
	$(MAKE) --no-print-directory nbval
	$(MAKE) --no-print-directory browser

# ---- The executable book ---------------------------------------------------------------
# A chapter is a jupytext percent script book/chapters/<name>.py, listed in _toc.yml as
# book/executed/<name>. papermill executes it with its default parameters, on the venv's
# python (the kernel "python3" of the venv's jupyter, i.e. this interpreter), into the
# git-ignored book/executed/; jupyter-book then only renders (execution is off in
# _config.yml). A chapter runs again only when it, the library or results/ changed.
CHAPTERS     := $(shell sed -n 's,^\( *- *file\|root\): *book/executed/\([A-Za-z0-9_-]*\) *$$,\2,p' _toc.yml)
EXECUTED     := $(CHAPTERS:%=book/executed/%.ipynb)
LIB_SOURCES  := $(shell find nngp_lib -name '*.py' -not -path '*/__pycache__/*')
RESULT_FILES := $(wildcard results/*)
BOOK_SOURCES := _config.yml _toc.yml $(wildcard book/*.md) $(wildcard book/_ext/*.py)
BOOK_HTML    := _build/html/index.html
PAPERMILL    := $(VENV)/bin/papermill --no-progress-bar -k python3

book: $(BOOK_HTML)

chapters: $(EXECUTED)

$(BOOK_HTML): $(EXECUTED) $(BOOK_SOURCES) $(STAMP)
	$(VENV)/bin/jupyter-book build --quiet --warningiserror --keep-going .
	touch $@

# The source notebook and papermill's output are temporary files, so an interrupted or
# failed run never leaves a stale executed chapter; a failed one stays as *.failed.ipynb.
book/executed/%.ipynb: book/chapters/%.py $(LIB_SOURCES) $(RESULT_FILES) $(STAMP)
	@mkdir -p $(@D)
	$(VENV)/bin/jupytext --quiet --to ipynb $< -o $(@D)/.$*.source.ipynb
	@rm -f $(@D)/$*.failed.ipynb
	@$(PAPERMILL) --cwd $(@D) $(@D)/.$*.source.ipynb $(@D)/.$*.partial.ipynb \
	  || { rm -f $(@D)/.$*.source.ipynb; mv $(@D)/.$*.partial.ipynb $(@D)/$*.failed.ipynb 2>/dev/null; \
	       echo "chapter $* failed (error above); its outputs so far: $(@D)/$*.failed.ipynb" >&2; exit 1; }
	@rm -f $(@D)/.$*.source.ipynb
	mv $(@D)/.$*.partial.ipynb $@

# One chapter with other parameters, e.g. at full scale:
#   make chapter NAME=nb101_data PARAMS="-p sample_for_plots 5000"
# writes artifacts/chapters/<NAME>.ipynb (set OUT= to choose), leaving the book alone.
NAME   ?=
PARAMS ?=
OUT    ?= artifacts/chapters/$(NAME).ipynb
chapter: venv
	@test -n "$(NAME)" -a -f book/chapters/$(NAME).py \
	  || { echo "usage: make chapter NAME=<one of: $(CHAPTERS)> PARAMS='-p name value ...'" >&2; exit 2; }
	@mkdir -p $(dir $(OUT))
	$(VENV)/bin/jupytext --quiet --to ipynb book/chapters/$(NAME).py -o $(dir $(OUT)).$(NAME).source.ipynb
	$(PAPERMILL) --cwd $(dir $(OUT)) $(dir $(OUT)).$(NAME).source.ipynb $(OUT) $(PARAMS)
	@rm -f $(dir $(OUT)).$(NAME).source.ipynb

# nbval re-executes each chapter and compares every cell's output with the executed
# notebook, except cells marked "# NBVAL_IGNORE_OUTPUT" (see book/chapters/README.md).
nbval: $(EXECUTED)
	$(PY) -m pytest -q -p no:cacheprovider --nbval --nbval-current-env $(EXECUTED)

# Headless Chromium opens every built page from disk and checks that each chart drew;
# screenshots go to artifacts/screenshots/. apt-get installs Chromium where it is missing.
CHROMIUM ?= /usr/bin/chromium
export CHROMIUM
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

chromium:
	@test -x $(CHROMIUM) || { \
	  echo "Chromium not found at $(CHROMIUM); installing the Debian package 'chromium'"; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

browser: $(BOOK_HTML) chromium
	$(PY) -m pytest -q -m browser tests/browser

bench: venv
	$(PY) -m benchmarks.bench_nngp $(ARGS)

clean:
	rm -rf _build book/executed artifacts/screenshots

