"""Cross-compile the C core for macOS and FreeBSD with zig cc (`make test-cross`).

For each target the files are the ones setup.py's ``c_sources()`` picks for that
platform, compiled with the flags of every build make drives
(``-std=c11 -Wall -Wextra -Werror``, plus ``-O2`` so that the optimiser's
warnings show, and without zig's default UBSan so that the objects are the ones
a plain clang build makes).

- macOS (x86_64 at macOS 10.13 and arm64 at 11.0, cibuildwheel's deployment
  targets): every file, ``ext/module.c`` against Debian's CPython headers with
  ``tests/native/cross/macos/pyconfig.h`` and ``Py_LIMITED_API=0x03090000``;
  then the extension is linked as macOS links one (``-undefined
  dynamic_lookup``: the interpreter supplies the C API at import).  That flag
  lets any undefined name through, so the linked file's symbol table is read
  (``llvm-nm -m``): a symbol bound to libSystem is fine, ``PyInit__native``
  must be exported, and every other undefined symbol is looked up at import
  time and must be a name the limited API (3.9) declares.  A function that no
  macOS file defines shows here.
- FreeBSD (x86_64): every file but module.c, linked into a shared object with
  ``--no-undefined`` against FreeBSD's libc: an undefined symbol fails the link.
- Windows x86 and arm64 (the release's MSVC wheels; x86_64 is windows.mk's,
  under Wine): every file but module.c, compiled with zig's mingw-w64 headers,
  not linked (that needs zig to build mingw-w64's C runtime: minutes a target).
- FreeBSD and Windows: every core function module.c calls (read from the
  macOS module.o: module.c is the same C on every POSIX system, and its
  Windows branches call the same functions) is defined by that platform's files.

Controls run every time and must fail, or the check itself is reported broken:
an unused parameter under these flags; the macOS extension linked without its
owner-lookup file; a call to a CPython function outside the limited API; the
FreeBSD core linked without xbind_posix.c, and without its owner files; the
Windows core without xbind_win32.c.

Exit status 0 when everything passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
HERE = Path(__file__).resolve().parent
LIMITED_API = "0x03090000"
# -fPIC as setuptools compiles extensions; zig cc turns UBSan on unless told not to.
CFLAGS = ["-std=c11", "-Wall", "-Wextra", "-Werror", "-O2", "-fPIC", "-fno-sanitize=undefined"]


@dataclass(frozen=True)
class Target:
    triple: str  # zig's -target, with the minimum OS version
    platform: str  # the sys.platform value whose sources setup.py picks
    extension: bool  # compile module.c and link the extension (macOS)


TARGETS = [
    Target("x86_64-macos.10.13", "darwin", True),
    Target("aarch64-macos.11.0", "darwin", True),
    Target("x86_64-freebsd", "freebsd14", False),
    # The release's other Windows wheels (MSVC builds them; x86_64 is built with
    # mingw-w64 and run under Wine by windows.mk): the core with zig's mingw-w64.
    Target("x86-windows-gnu", "win32", False),
    Target("aarch64-windows-gnu", "win32", False),
]


class CheckFailed(Exception):
    pass


def load_setup_sources() -> Callable[[str], tuple[list[str], list[str]]]:
    spec = importlib.util.spec_from_file_location("twisted_patch_setup", ROOT / "setup.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # __name__ is not "__main__": setup() is not called
    sources: Callable[[str], tuple[list[str], list[str]]] = module.c_sources
    return sources


def run(cmd: list[str], what: str) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        lines = (out.stdout + out.stderr).splitlines()
        shown = "\n".join(lines[:40] + ([f"... ({len(lines) - 40} more lines)"]
                                        if len(lines) > 40 else []))
        raise CheckFailed(f"{what} failed (exit {out.returncode}):\n  {' '.join(cmd)}\n{shown}")
    return out


class Cross:
    def __init__(self, zig: list[str], nm: str, build: Path, headers: Path) -> None:
        self.zig = zig
        self.nm = nm
        self.build = build
        self.headers = headers
        self.module_calls: set[str] = set()
        self.c_sources = load_setup_sources()

    def cc(self, target: Target, *args: str) -> list[str]:
        return [*self.zig, "cc", "-target", target.triple, *args]

    def python_include(self) -> Path:
        """Debian's CPython headers with the macOS pyconfig.h in place of Debian's.

        A copy, because Python.h includes "pyconfig.h" from its own directory
        before any -I path.
        """
        src = self.headers
        if not (src / "Python.h").is_file():
            raise CheckFailed(f"no CPython headers at {src} (Debian package python3-dev)")
        dst = self.build / "python-include"
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(src, dst)
        shutil.copyfile(HERE / "macos" / "pyconfig.h", dst / "pyconfig.h")
        return dst

    def compile(self, target: Target, source: str, extra: list[str]) -> Path:
        obj = self.build / target.triple / (Path(source).stem + ".o")
        obj.parent.mkdir(parents=True, exist_ok=True)
        run(self.cc(target, *CFLAGS, "-Iext", *extra, "-c", source, "-o", str(obj)),
            f"{target.triple}: compiling {source}")
        return obj

    def limited_api_names(self, target: Target, include: Path) -> set[str]:
        """Every Py/_Py name the CPython headers declare under Py_LIMITED_API=3.9."""
        probe = self.build / "limited_api.c"
        probe.write_text("#define PY_SSIZE_T_CLEAN\n#include <Python.h>\n", encoding="utf-8")
        out = run(self.cc(target, "-E", f"-DPy_LIMITED_API={LIMITED_API}", f"-I{include}",
                          str(probe)), f"{target.triple}: preprocessing Python.h")
        names = set(re.findall(r"\b_?_?Py\w+", out.stdout))
        if "PyLong_FromLong" not in names or "PyModule_Create2" not in names:
            raise CheckFailed("the preprocessed limited-API headers look wrong")
        return names

    def link_macos(self, target: Target, objects: list[Path], name: str) -> Path:
        out = self.build / target.triple / name
        # -shared (an MH_DYLIB), not -bundle: zig's Mach-O linker does not write
        # bundles.  CPython imports either; the symbol binding is the same.
        run(self.cc(target, "-O2", "-shared", "-undefined", "dynamic_lookup",
                    *map(str, objects), "-o", str(out)), f"{target.triple}: linking {name}")
        return out

    def unresolved(self, library: Path, limited: set[str]) -> tuple[list[str], int, int]:
        """(symbols nobody provides, Python API symbols used, libSystem symbols used)."""
        out = run([self.nm, "-m", str(library)], f"llvm-nm {library.name}").stdout
        missing: list[str] = []
        python = system = 0
        exported = False
        for line in out.splitlines():
            m = re.match(r"\s*(?:[0-9a-f]+\s+)?\((undefined|[^)]*)\)\s+(?:weak\s+)?"
                         r"(external|non-external)\s+(\S+)(.*)", line)
            if not m:
                continue
            kind, scope, symbol, rest = m.groups()
            if kind != "undefined":
                if symbol == "_PyInit__native" and scope == "external":
                    exported = True
                continue
            if "(from " in rest:  # bound to a dylib (libSystem) at link time
                system += 1
                continue
            name = symbol[1:] if symbol.startswith("_") else symbol  # Mach-O's C prefix
            if name in limited:
                python += 1
            else:
                missing.append(name)
        if not exported and "module" in library.name:
            missing.append("(PyInit__native is not exported)")
        return missing, python, system

    def check_macos(self, target: Target, include: Path) -> str:
        sources = self.c_sources(target.platform)[0]
        py = [f"-DPy_LIMITED_API={LIMITED_API}", f"-I{include}"]
        objects = {s: self.compile(target, s, py if s.endswith("module.c") else [])
                   for s in sources}
        self.module_calls = self.core_calls(objects[next(s for s in sources
                                                         if s.endswith("module.c"))])
        module = self.link_macos(target, list(objects.values()), "module_native.abi3.so")
        limited = self.limited_api_names(target, include)
        missing, python, system = self.unresolved(module, limited)
        if missing:
            raise CheckFailed(f"{target.triple}: {module.name} leaves undefined symbols that "
                              f"neither libSystem nor the limited API provides: {missing}")
        # Control 1: without its owner-lookup file the extension must show missing symbols.
        owner = [s for s in sources if Path(s).name.startswith("owner_darwin")]
        partial = [o for s, o in objects.items() if s not in owner]
        lib = self.link_macos(target, partial, "control_module_no_owner.so")
        got, _, _ = self.unresolved(lib, limited)
        if not any(n.startswith("xb_owner") for n in got):
            raise CheckFailed(f"CONTROL: {target.triple}: linking without {owner} showed no "
                              f"missing xb_owner_* symbol (got {got}): the check is blind")
        # Control 2: a CPython function outside the limited API must be flagged.
        ctl = self.build / "control_private_api.c"
        ctl.write_text("extern void *_PyObject_GetDictPtr(void *);\n"
                       "void *control(void *o) { return _PyObject_GetDictPtr(o); }\n",
                       encoding="utf-8")
        lib = self.link_macos(target, [self.compile(target, str(ctl), [])],
                              "control_private_api.so")
        got, _, _ = self.unresolved(lib, limited)
        if got != ["_PyObject_GetDictPtr"]:
            raise CheckFailed(f"CONTROL: {target.triple}: a call to _PyObject_GetDictPtr "
                              f"(not in the limited API) was not flagged (got {got})")
        return (f"{len(sources)} files compiled, extension linked: {python} limited-API "
                f"symbols, {system} from libSystem, none missing")

    def core_calls(self, module_object: Path) -> set[str]:
        """The xb_* functions module.c calls (its undefined xb_ symbols)."""
        out = run([self.nm, "--undefined-only", "-j", str(module_object)], "llvm-nm -u").stdout
        return {n.lstrip("_") for n in out.split() if n.lstrip("_").startswith("xb_")}

    def defined(self, library: Path) -> set[str]:
        out = run([self.nm, "-D", "--defined-only", "-j", str(library)], "llvm-nm -D").stdout
        return set(out.split())

    def object_symbols(self, target: Target, objects: Iterable[Path]) -> set[str]:
        """The external symbols the objects define, as C names."""
        defined: set[str] = set()
        for obj in objects:
            names = run([self.nm, "--defined-only", "--extern-only", "-j", str(obj)],
                        "llvm-nm").stdout.split()
            # 32-bit x86 COFF prefixes C names with one underscore
            defined |= {n[1:] if target.triple.startswith("x86-") else n for n in names}
        return defined

    def core_objects(self, target: Target) -> dict[str, Path]:
        """The core's C files for the target (module.c aside), compiled: source -> object."""
        if not self.module_calls:
            raise CheckFailed("the macOS targets did not run: module.c's calls into the core "
                              "are read from their module.o")
        sources = [s for s in self.c_sources(target.platform)[0] if not s.endswith("module.c")]
        return {s: self.compile(target, s, []) for s in sources}

    def require_defined(self, target: Target, defined: set[str], system: str) -> None:
        """Every core function module.c calls is among `defined`."""
        absent = sorted(self.module_calls - defined)
        if absent:
            raise CheckFailed(f"{target.triple}: module.c calls {absent}, which no {system} "
                              f"file defines")

    def require_blind_spot(self, target: Target, defined: set[str], prefix: str,
                           without: str) -> None:
        """The control of require_defined(): with `without` left out, some function
        module.c calls (named `prefix`...) is not among `defined`."""
        if not any(n.startswith(prefix) for n in self.module_calls - defined):
            raise CheckFailed(f"CONTROL: {target.triple}: without {without} every function "
                              f"module.c calls was still defined: the check is blind")

    def check_windows(self, target: Target) -> str:
        objects = self.core_objects(target)
        sources = list(objects)
        # Compiled, not linked: linking needs zig to build mingw-w64's C runtime for the
        # target first (minutes per target, every fresh cache); windows.mk links x86_64.
        self.require_defined(target, self.object_symbols(target, objects.values()), "Windows")
        # Control: without xbind_win32.c, module.c's socket calls must show as absent.
        without = self.object_symbols(
            target, [o for s, o in objects.items() if "xbind_win32" not in s])
        self.require_blind_spot(target, without, "xb_socket", "xbind_win32.c")
        return (f"{len(sources)} core files compiled; the {len(self.module_calls)} core "
                f"functions module.c calls are all defined (not linked here; module.c: "
                f"windows.mk and MSVC)")

    def check_freebsd(self, target: Target) -> str:
        objects = self.core_objects(target)
        sources = list(objects)
        out = self.build / target.triple / "libxbcore.so"
        cmd = self.cc(target, "-O2", "-shared", "-Wl,--no-undefined")
        run([*cmd, *map(str, objects.values()), "-o", str(out)],
            f"{target.triple}: linking the core with --no-undefined")
        self.require_defined(target, self.defined(out), "FreeBSD")
        # Control 1: without xbind_posix.c the --no-undefined link must fail.
        partial = [str(o) for s, o in objects.items() if "xbind_posix" not in s]
        bad = subprocess.run([*cmd, *partial, "-o", str(out.with_name("control.so"))],
                             cwd=ROOT, capture_output=True, text=True)
        if bad.returncode == 0 or "xb_" not in bad.stderr:
            raise CheckFailed(f"CONTROL: {target.triple}: linking without xbind_posix.c "
                              f"did not fail on a missing xb_ symbol: the check is blind")
        # Control 2: without the owner files, module.c's owner calls must show as absent.
        partial = [str(o) for s, o in objects.items() if "owner_" not in s]
        control = out.with_name("control_no_owner.so")
        run([*cmd, *partial, "-o", str(control)], f"{target.triple}: control link")
        self.require_blind_spot(target, self.defined(control), "xb_owner", "the owner files")
        return (f"{len(sources)} core files compiled and linked with --no-undefined; the "
                f"{len(self.module_calls)} core functions module.c calls are all defined "
                f"(module.c itself: no FreeBSD pyconfig.h here)")

    def control_warnings(self, target: Target) -> None:
        ctl = self.build / "control_warning.c"
        ctl.write_text("int control(int unused);\nint control(int unused) { return 0; }\n",
                       encoding="utf-8")
        bad = subprocess.run(self.cc(target, *CFLAGS, "-c", str(ctl), "-o",
                                     str(ctl.with_suffix(".o"))),
                             cwd=ROOT, capture_output=True, text=True)
        if bad.returncode == 0 or "unused" not in bad.stderr:
            raise CheckFailed(f"CONTROL: {target.triple}: an unused parameter compiled "
                              f"under {' '.join(CFLAGS)}: warnings are not errors")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--zig", required=True,
                        help="the zig command, e.g. '.venv-cross/bin/python -m ziglang'")
    parser.add_argument("--nm", default=os.environ.get("LLVM_NM", "llvm-nm"))
    parser.add_argument("--build", default=str(ROOT / "build" / "cross"))
    debian = sorted(Path("/usr/include").glob("python3.*/Python.h"))
    parser.add_argument("--python-headers", type=Path,
                        default=debian[-1].parent if debian else Path("/usr/include/python3"),
                        help="CPython's headers (default: Debian's, /usr/include/python3.X)")
    args = parser.parse_args()
    nm = shutil.which(args.nm)
    if nm is None:
        print(f"test-cross: FAILED: {args.nm} not found (Debian package llvm)")
        return 1
    build = Path(args.build)
    shutil.rmtree(build, ignore_errors=True)
    build.mkdir(parents=True)
    cross = Cross(args.zig.split(), nm, build, args.python_headers)
    version = run([*cross.zig, "version"], "zig version").stdout.strip()
    print(f"test-cross: zig {version}, flags {' '.join(CFLAGS)}, "
          f"CPython headers {args.python_headers}")
    failed = 0
    include = None
    for target in TARGETS:
        start = time.monotonic()
        try:
            cross.control_warnings(target)
            if target.extension:
                include = include or cross.python_include()
                result = cross.check_macos(target, include)
            elif target.platform == "win32":
                result = cross.check_windows(target)
            else:
                result = cross.check_freebsd(target)
        except CheckFailed as exc:
            failed += 1
            print(f"  {target.triple}: FAILED: {exc}")
            continue
        print(f"  {target.triple}: ok: {result} ({time.monotonic() - start:.1f} s)")
    if failed:
        print(f"test-cross: {failed} of {len(TARGETS)} targets FAILED")
        return 1
    print(f"test-cross: {len(TARGETS)} targets passed, controls failed as they must")
    return 0


if __name__ == "__main__":
    sys.exit(main())
