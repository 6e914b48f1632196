# hardening.mk -- "hardening the hardener" (issue 8), included by the Makefile.
#
#   make test-static     cppcheck + clang-tidy on ext/ (POSIX and, via mingw headers, Windows)
#   make test-valgrind   every C test program tests/native/c/test_*.c under valgrind --leak-check=full
#   make test-fuzz       every libFuzzer harness tests/native/fuzz/fuzz_*.c for FUZZ_SECONDS each
#   make test-asan       the extension built with ASan+UBSan into .venv-asan, whole pytest suite
#
# `make test` runs the first three (after the pytest suite, which holds the fault-injection,
# race, refcount and Hypothesis tests); .ci/run runs `make test-asan` after `make test`.
# docs/hardening.rst explains each one, the longer fuzz runs and the results.
#
# New C files are covered without editing this file: CORE_SRCS is every ext/*.c that is
# not module.c and not another platform's file; test programs and harnesses are found by
# name.  A harness that needs a symbol not yet in ext/xbind.h says so on a line
# "// fuzz-requires: SYMBOL" and is skipped with a message until the symbol exists.

CLANG ?= clang
CLANG_TIDY ?= clang-tidy
CPPCHECK ?= cppcheck
VALGRIND ?= valgrind
HCC ?= cc
HBUILD := build/hardening
FUZZ_SECONDS ?= 25
ASAN_VENV ?= .venv-asan
# What test-asan runs (default: the whole suite but the tests whose result cannot depend on
# the extension's build, BUILD_INDEPENDENT_TESTS in the Makefile); e.g. ASAN_TESTS="tests/test_owner.py".
ASAN_TESTS ?= tests $(NOT_BUILD_INDEPENDENT)

# The C core of this platform without the Python binding.
CORE_SRCS := $(sort $(filter-out ext/module.c ext/%win32.c ext/%_darwin.c ext/%_none.c,$(wildcard ext/*.c)))
CORE_WIN_SRCS := $(sort $(filter-out ext/module.c ext/%_posix.c ext/%_linux.c ext/%_darwin.c ext/%_none.c,$(wildcard ext/*.c)))
CORE_HDRS := $(wildcard ext/*.h)
# Static analysis also reads the "not supported" fallbacks (checked on their own;
# *_darwin.c needs macOS headers and is only compiled on macOS).
STATIC_SRCS := ext/module.c $(CORE_SRCS) $(sort $(wildcard ext/*_none.c))
PY_INCLUDE = $(shell $(PYTHON) -c "import sysconfig; print(sysconfig.get_paths()['include'])")
MINGW_CC ?= x86_64-w64-mingw32-gcc

.PHONY: hardening test-static test-valgrind test-fuzz test-asan asan-venv hardening-clean

# Added to `make test`'s Linux lane, after the pytest suite (see the Makefile).
test-linux: test-static test-valgrind test-fuzz

hardening: test-static test-valgrind test-fuzz test-asan

# --- static analysis ----------------------------------------------------------------
# Suppressed, and why:
#   missingIncludeSystem  cppcheck does not need (or get) the system headers; --library=
#                         gives it the POSIX, Windows and Python API knowledge instead.
#   readdirCalled         asks for readdir_r(), which glibc deprecated (2.24) because
#                         readdir() on a DIR* of one's own is thread-safe there.
#   variableScope         a style preference (declare at the innermost scope); the core
#                         declares at the top of a block on purpose in places.
CPPCHECK_FLAGS := --quiet --error-exitcode=1 --enable=warning,style,performance,portability \
	--std=c11 --inline-suppr --suppress=missingIncludeSystem --suppress=readdirCalled \
	--suppress=variableScope -I ext
test-static: deps
	@start=$$(date +%s); mkdir -p $(HBUILD); \
	echo "cppcheck (POSIX): $(STATIC_SRCS)"; \
	for f in $(STATIC_SRCS); do \
	  $(CPPCHECK) $(CPPCHECK_FLAGS) --library=posix --library=python -U_WIN32 $$f || exit 1; \
	done; \
	echo "cppcheck (Windows): $(CORE_WIN_SRCS)"; \
	$(CPPCHECK) $(CPPCHECK_FLAGS) --library=windows --platform=win64 -D_WIN32 $(CORE_WIN_SRCS) || exit 1; \
	for f in $(STATIC_SRCS); do \
	  echo "clang-tidy (POSIX): $$f"; \
	  $(CLANG_TIDY) --quiet $$f -- -std=c11 -Iext -I$(PY_INCLUDE) -DPy_LIMITED_API=0x03090000 \
	    > $(HBUILD)/tidy.log 2>&1 || { cat $(HBUILD)/tidy.log; exit 1; }; \
	done; \
	if [ -d /usr/x86_64-w64-mingw32/include ]; then \
	  for f in $(CORE_WIN_SRCS); do \
	    echo "clang-tidy (Windows, mingw-w64 headers): $$f"; \
	    $(CLANG_TIDY) --quiet $$f -- --target=x86_64-w64-mingw32 -std=c11 -Iext \
	      > $(HBUILD)/tidy.log 2>&1 || { cat $(HBUILD)/tidy.log; exit 1; }; \
	  done; \
	else echo "NOTE: no mingw-w64 headers: clang-tidy of the Windows files skipped"; fi; \
	echo "test-static: clean ($$(( $$(date +%s) - start )) s)"

# --- C tests under valgrind -----------------------------------------------------------
# Every tests/native/c/*.c is a C test program: built natively with the core (CORE_SRCS) and run
# under valgrind with no arguments; it must exit 0.  Programs that include xbfault.h get
# the fault shim linked in.  A program that needs something else says so here, one line:
#   VG_ARGS_<name>   its arguments          VG_SRCS_<name>  the ext/ files instead of CORE_SRCS
#   VG_SKIP          programs that are not native tests (Windows-only ones)
VG_ARGS_xbtest := selftest
VG_ARGS_guardprobe := guard 127.0.0.1 127.0.0.1
VG_SRCS_owner_none_test := ext/owner_none.c ext/owner_common.c
VG_SKIP := owner_win32_test
test-valgrind: deps
	@start=$$(date +%s); mkdir -p $(HBUILD)/c; n=0; \
	for src in tests/native/c/*.c; do \
	  [ -e "$$src" ] || continue; \
	  name=$$(basename $$src .c); \
	  case " $(VG_SKIP) " in *" $$name "*) echo "valgrind: $$name skipped (VG_SKIP: not a native test)"; continue;; esac; \
	  grep -q 'main *(' $$src || continue; \
	  extra=""; if grep -q 'xbfault.h' $$src; then extra="tests/native/fault/xbfault.c -ldl -lpthread"; fi; \
	  srcs="$(CORE_SRCS)"; args=""; \
	  $(foreach v,$(filter VG_SRCS_%,$(.VARIABLES)),[ "$$name" = "$(patsubst VG_SRCS_%,%,$(v))" ] && srcs="$($(v))"; ) \
	  $(foreach v,$(filter VG_ARGS_%,$(.VARIABLES)),[ "$$name" = "$(patsubst VG_ARGS_%,%,$(v))" ] && args="$($(v))"; ) \
	  $(HCC) -std=c11 -g -O0 $(STRICT_CFLAGS) -Iext -Itests/native/fault -Itests/native/c -o $(HBUILD)/c/$$name \
	    $$src $$srcs $$extra || exit 1; \
	  echo "valgrind $$name $$args"; \
	  $(VALGRIND) -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite,indirect,possible \
	    $(HBUILD)/c/$$name $$args > $(HBUILD)/c/$$name.log 2>&1; rc=$$?; \
	  tail -n 2 $(HBUILD)/c/$$name.log; \
	  if [ $$rc -ne 0 ]; then cat $(HBUILD)/c/$$name.log; echo "FAIL: $$name under valgrind (exit $$rc)"; exit 1; fi; \
	  n=$$((n+1)); \
	done; \
	echo "test-valgrind: $$n program(s) clean ($$(( $$(date +%s) - start )) s)"

# --- libFuzzer ----------------------------------------------------------------------
# Each harness runs FUZZ_SECONDS from its seed corpus tests/native/fuzz/corpus/<harness>/ (read
# only here; new inputs go to $(HBUILD)/fuzz/<harness>.work, merge them with the command
# in docs/hardening.rst).  Crashes are written to $(HBUILD)/fuzz/ and fail the target.
FUZZ_FLAGS := -std=c11 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -Iext
test-fuzz: deps
	@start=$$(date +%s); mkdir -p $(HBUILD)/fuzz; n=0; \
	for src in tests/native/fuzz/fuzz_*.c; do \
	  [ -e "$$src" ] || continue; \
	  name=$$(basename $$src .c); \
	  missing=""; for sym in $$(sed -n 's|^// fuzz-requires: *||p' $$src); do \
	    grep -q "$$sym" $(CORE_HDRS) || missing="$$missing $$sym"; done; \
	  if [ -n "$$missing" ]; then echo "SKIP $$name: ext/xbind.h has no$$missing yet"; continue; fi; \
	  $(CLANG) $(FUZZ_FLAGS) -o $(HBUILD)/fuzz/$$name $$src $(CORE_SRCS) || exit 1; \
	  mkdir -p tests/native/fuzz/corpus/$$name $(HBUILD)/fuzz/$$name.work; \
	  echo "fuzz $$name for $(FUZZ_SECONDS) s"; \
	  $(HBUILD)/fuzz/$$name -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 \
	    -print_final_stats=1 -artifact_prefix=$(HBUILD)/fuzz/$$name- \
	    $(HBUILD)/fuzz/$$name.work tests/native/fuzz/corpus/$$name > $(HBUILD)/fuzz/$$name.log 2>&1; rc=$$?; \
	  grep -E '^(#[0-9]+ +DONE|stat::number_of_executed_units)' $(HBUILD)/fuzz/$$name.log; \
	  if [ $$rc -ne 0 ]; then tail -n 60 $(HBUILD)/fuzz/$$name.log; echo "FAIL: $$name (exit $$rc)"; exit 1; fi; \
	  n=$$((n+1)); \
	done; \
	echo "test-fuzz: $$n harness(es) clean ($$(( $$(date +%s) - start )) s)"

# --- ASan + UBSan build of the extension, whole pytest suite -------------------------
# The extension is built by gcc with the sanitizers from a copy of the sources (so that
# the normal build/ directory is never reused) into its own venv.  CPython itself is not
# instrumented, so libasan is preloaded; detect_leaks=0 because CPython keeps memory
# until exit by design (C-level leaks are checked by test-valgrind).  Any ASan or UBSan
# report -- in pytest or in any subprocess a test starts -- is written under
# $(HBUILD)/asan-logs and fails the target; UBSan halts on the first report.
ASAN_CFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all -g -O1
# Its venv with the test dependencies (from the package index; .ci/run makes it before
# the network namespace test-asan runs in, see ci/parallel.py).
asan-venv: deps
	@set -e; \
	if [ ! -x $(ASAN_VENV)/bin/pip ]; then \
	  $(PYTHON) -m venv $(ASAN_VENV); \
	  $(ASAN_VENV)/bin/pip install -q --upgrade pip setuptools wheel; \
	fi; \
	if [ ! -f $(ASAN_VENV)/.created ] || [ pyproject.toml -nt $(ASAN_VENV)/.created ]; then \
	  $(ASAN_VENV)/bin/pip install -q ".[test]"; \
	  touch $(ASAN_VENV)/.created; \
	fi

test-asan: deps asan-venv
	@start=$$(date +%s); set -e; \
	rm -rf $(HBUILD)/asan-src $(HBUILD)/asan-logs; mkdir -p $(HBUILD)/asan-src $(HBUILD)/asan-logs; \
	cp -r ext twisted_patch twisted setup.py pyproject.toml README.md MANIFEST.in $(HBUILD)/asan-src/; \
	find $(HBUILD)/asan-src -name '__pycache__' -prune -exec rm -rf {} +; \
	( cd $(HBUILD)/asan-src && CC=gcc TWISTED_PATCH_CFLAGS="$(STRICT_CFLAGS) $(ASAN_CFLAGS)" \
	  TWISTED_PATCH_LDFLAGS="-fsanitize=address,undefined" \
	  $(abspath $(ASAN_VENV))/bin/pip install -q --no-deps --force-reinstall --no-build-isolation . ) \
	  2>&1 | grep -v "^\s*$$" | grep -iv "warning\|!!\|\*\*\*\|deprecat\|See https\|pypi-more" || true; \
	libasan=$$(gcc -print-file-name=libasan.so); logs=$(abspath $(HBUILD)/asan-logs); \
	export LD_PRELOAD="$$libasan$${LD_PRELOAD:+ $$LD_PRELOAD}"; \
	export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:log_path=$$logs/asan"; \
	export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$$logs/ubsan"; \
	( cd / && $(abspath $(ASAN_VENV))/bin/python -c "import sys, twisted_patch._native as n; \
	  so = open(n.__file__, 'rb').read(); ok = b'__asan_report' in so and b'__ubsan_handle' in so; \
	  print(('ASan+UBSan build in use: ' if ok else 'NOT an ASan+UBSan build: ') + n.__file__); \
	  sys.exit(0 if ok else 1)" ); \
	rc=0; $(ASAN_VENV)/bin/pytest -p no:cacheprovider $(ASAN_TESTS) || rc=$$?; \
	if ls $$logs/* >/dev/null 2>&1; then cat $$logs/*; echo "FAIL: sanitizer reports above"; exit 1; fi; \
	if [ $$rc -ne 0 ]; then echo "FAIL: pytest under ASan+UBSan (exit $$rc)"; exit $$rc; fi; \
	echo "test-asan: $(firstword $(ASAN_TESTS)) passed, zero sanitizer reports ($$(( $$(date +%s) - start )) s)"

hardening-clean:
	rm -rf $(HBUILD) $(ASAN_VENV)
