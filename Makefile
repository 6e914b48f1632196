# twisted-patch: the two commands a person needs are `make demo` and `make test`.
# Both create what they need: the virtual environment, the C extension, and (as root)
# the Debian packages the tests use.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# Warnings are errors for every build that make drives.
STRICT_CFLAGS := -Wall -Wextra -Werror
DEBIAN_PACKAGES := wine wine64 gcc-mingw-w64-x86-64 iproute2 util-linux strace \
	clang clang-tidy cppcheck libclang-rt-14-dev valgrind
# wrk: the load generator of `make bench` (accept throughput and latency).
DEBIAN_PACKAGES += wrk
# systemd: systemd-socket-activate, the supervisor of the xsystemd tests (no systemd as PID 1).
DEBIAN_PACKAGES += systemd

.PHONY: all demo test deps venv install lint pytest pytest-suite test-linux test-other
.PHONY: clean test-compat test-compat-suite compat-venv wheel
.PHONY: docs bench

all: install

# Debian packages the tests use; installed only when run as root and missing.
deps:
	@missing=""; for p in $(DEBIAN_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian packages:$$missing"; \
	    (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "NOTE: missing Debian packages:$$missing (not root: the tests that need them will be skipped with a reason)"; \
	  fi; \
	fi

# Re-made when pyproject.toml changes (new extras reach an existing venv).
$(VENV)/.created: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel
	$(PIP) install -q ".[test,lint,tahoe,docs,bench]"
	touch $@

venv: $(VENV)/.created

# A real (non-editable) install: the tests run against what pip installed,
# plugin file and compiled extension included.
install: venv
	@mkdir -p build; echo "building and installing twisted-patch (CFLAGS $(STRICT_CFLAGS); log: build/install.log)"; \
	if ! TWISTED_PATCH_CFLAGS="$(STRICT_CFLAGS)" $(PIP) install --no-deps --force-reinstall --no-build-isolation . >build/install.log 2>&1; then \
	  grep -v "Location" build/install.log | tail -40; echo "make install: the build FAILED (full log: build/install.log)"; exit 1; fi
	$(PY) -I -c "import twisted_patch._native as n; print('twisted_patch._native built:', n.PLATFORM_CORE)"

lint: venv
	$(VENV)/bin/ruff check twisted_patch twisted tests bench ci
	$(VENV)/bin/mypy twisted_patch
	$(VENV)/bin/mypy --strict ci/parallel.py

pytest: install
	@$(MAKE) --no-print-directory pytest-suite

# The Linux pytest suite against what `make install` installed (no rebuild).
pytest-suite:
	$(VENV)/bin/pytest tests

# `make test`: build, lint and document once, then two lanes side by side, each in a
# network namespace of its own (ci/parallel.py; one after another where none can be made):
#   test-linux   the pytest suite, then (hardening.mk) static analysis, valgrind, fuzzing
#   test-other   the zig cross-compile checks, then (windows.mk) the Windows suite under Wine
# Each lane's log is printed whole when it ends; the last lines are a table of both.
test: deps install lint docs
	@$(PYTHON) ci/parallel.py test-linux test-other

test-linux: pytest-suite
test-other: test-cross

# The documentation site; warnings are errors (part of `make test`).
docs: install
	$(VENV)/bin/sphinx-build -W --keep-going -q -b html docs docs/_build/html

# Benchmarks against plain Twisted, psutil and ss (not part of `make test`; < 5 min).
# Prints the table and writes bench/results/bench-<time>.json and latest.json.
bench: deps install
	$(PY) bench/run.py

demo: install
	$(VENV)/bin/twisted-patch probe

# The abi3 wheel, built once by the main venv's CPython.
wheel: install
	rm -rf dist && $(PIP) wheel -q --no-deps --no-build-isolation -w dist . 2>&1 | grep -v "Location" || true
	@ls dist/*.whl

# Tests whose result cannot depend on which build of the extension, or which interpreter,
# runs them: C programs built by the test itself (natively, with sanitizers, or for Windows
# under Wine), packaging from a clean copy, the workflow files, ci/parallel.py.  `make test`
# runs them; test-asan and test-compat leave them out (they would repeat the same run).
BUILD_INDEPENDENT_TESTS := tests/test_owner_c.py tests/test_guard_c.py tests/test_connection_c.py \
	tests/test_windows_wine.py tests/test_client_win32.py tests/test_workflow.py \
	tests/test_release_workflow.py tests/test_dist.py tests/test_packaging.py \
	tests/test_ci_parallel.py
NOT_BUILD_INDEPENDENT := $(foreach t,$(BUILD_INDEPENDENT_TESTS),--ignore=$(t))

# The floor: CPython 3.9 + Twisted 22.8.0 run the suite against the SAME abi3 wheel.
# Skipped (with the reason) when no CPython 3.9 is on this machine.
COMPAT_PYTHON ?= $(firstword $(wildcard /root/.pyenv/versions/3.9*/bin/python3.9) $(shell command -v python3.9 2>/dev/null))
COMPAT_VENV := .venv-compat
# What the 3.9 run runs (default: the whole suite but BUILD_INDEPENDENT_TESTS).
COMPAT_TESTS ?= tests $(NOT_BUILD_INDEPENDENT)
test-compat: wheel compat-venv
	@$(MAKE) --no-print-directory test-compat-suite

# The 3.9 venv with the wheel in dist/ and the pinned test dependencies (from the package
# index: .ci/run makes it before the network namespace the suite runs in, ci/parallel.py).
compat-venv:
	@if [ -z "$(COMPAT_PYTHON)" ]; then exit 0; fi; \
	if ! ls dist/*.whl >/dev/null 2>&1; then echo "compat-venv: no wheel in dist/: make wheel first"; exit 1; fi; \
	set -e; rm -rf $(COMPAT_VENV); $(COMPAT_PYTHON) -m venv $(COMPAT_VENV); \
	$(COMPAT_VENV)/bin/pip install -q --disable-pip-version-check -c ci/compat-constraints.txt \
	  dist/*.whl pytest foolscap hypothesis 2>&1 | grep -v "Location" || true

# The 3.9 run in that venv (no rebuild, no download).
test-compat-suite:
	@if [ -z "$(COMPAT_PYTHON)" ]; then echo "SKIPPED test-compat: no CPython 3.9 on this machine"; exit 0; fi; \
	set -e; if [ ! -x $(COMPAT_VENV)/bin/pytest ]; then echo "test-compat-suite: no $(COMPAT_VENV) with pytest: make compat-venv first"; exit 1; fi; \
	$(COMPAT_VENV)/bin/python -I -c "import sys, twisted; print('compat run:', sys.version.split()[0], 'Twisted', twisted.__version__)"; \
	$(COMPAT_VENV)/bin/pytest -q -p no:cacheprovider $(COMPAT_TESTS) -m "not tahoe"

clean:
	rm -rf build dist *.egg-info $(VENV) $(COMPAT_VENV) tests/native/c/build docs/_build

# Sanitizers, fuzzing, valgrind, static analysis: test-asan, test-fuzz, test-valgrind, test-static.
include hardening.mk
# zig cc cross-compile checks for macOS and FreeBSD (test-cross, part of `make test`).
include cross.mk
# The release artefacts: `make dist` (sdist, manylinux wheel, Windows wheel; checked and installed).
include dist.mk

# The Windows product under Wine: win-python, win-wheel, test-windows (windows.mk adds
# lint-windows to `make lint` and test-windows to `make test`).
include windows.mk
