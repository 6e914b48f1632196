# Cross-compile checks (part of `make test`): the C core for macOS (x86_64, arm64),
# FreeBSD (x86_64) and Windows (x86, arm64) with zig cc from the PyPI package ziglang,
# in a tool venv of its own.  zig keeps its per-target libc builds in its own cache
# (~/.cache/zig), so that a fresh checkout on the same machine does not redo them.
# tests/native/cross/check.py says what is compiled and linked, and runs its controls;
# docs/platforms.rst says which claims this makes "compiled here".
#
# Skipped, saying so, only when ziglang cannot be installed (pip's output is kept in
# build/cross-install.log).  llvm-nm (Debian's llvm) reads the linked macOS extension.

ZIGLANG_VERSION ?= 0.17.1
CROSS_VENV := .venv-cross
CROSS_STAMP := $(CROSS_VENV)/.ziglang-$(ZIGLANG_VERSION)
DEBIAN_PACKAGES += llvm python3-dev

.PHONY: test-cross cross-venv clean-cross

# The tool venv, made (from the package index) before make test's lanes, which have no
# network (ci/parallel.py).
cross-venv: deps
	@mkdir -p build; \
	if [ ! -f $(CROSS_STAMP) ]; then \
	  rm -rf $(CROSS_VENV); \
	  if ! { $(PYTHON) -m venv $(CROSS_VENV) && \
	         $(CROSS_VENV)/bin/pip install -q --disable-pip-version-check "ziglang==$(ZIGLANG_VERSION)"; \
	       } >build/cross-install.log 2>&1; then \
	    grep -v "Location" build/cross-install.log | tail -5; \
	    echo "NOTE: ziglang $(ZIGLANG_VERSION) could not be installed from the package index (pip's output: build/cross-install.log)"; \
	    exit 0; \
	  fi; \
	  touch $(CROSS_STAMP); \
	fi

test-cross: cross-venv
	@if [ ! -f $(CROSS_STAMP) ]; then \
	  echo "SKIPPED test-cross: ziglang $(ZIGLANG_VERSION) could not be installed from the package index (pip's output: build/cross-install.log)"; \
	  exit 0; \
	fi; \
	$(CROSS_VENV)/bin/python tests/native/cross/check.py --zig "$(CROSS_VENV)/bin/python -m ziglang"

clean-cross:
	rm -rf $(CROSS_VENV) build/cross

clean: clean-cross

# Made before make test's lanes (see the Makefile).
test: cross-venv
