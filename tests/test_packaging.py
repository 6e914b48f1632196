"""The distribution: wheel and sdist contents, install into and uninstall from a fresh venv."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from support.tree import ROOT, clean_copy
from support.windows import no_msvc_under_wine

PLUGIN = "twisted/plugins/twisted_patch_plugins.py"
FORBIDDEN = ("twisted/__init__.py", "twisted/plugins/__init__.py")


def _run(*cmd: str, cwd: Path = ROOT) -> str:
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, f"{' '.join(cmd)} failed:\n{out.stdout}\n{out.stderr}"
    return out.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    reason = no_msvc_under_wine()
    if reason:
        pytest.skip(reason)
    out = tmp_path_factory.mktemp("wheel")
    src = clean_copy(tmp_path_factory.mktemp("checkout"))
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(out), str(src))
    (whl,) = out.glob("twisted_patch-*.whl")
    return whl


def test_wheel_has_plugin_extension_and_no_twisted_init(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert PLUGIN in names
    for name in FORBIDDEN:
        assert name not in names
    # Nothing else of Twisted's namespace is shipped: uninstall cannot touch Twisted.
    assert [n for n in names if n.startswith("twisted/")] == [PLUGIN]
    assert any(n.startswith("twisted_patch/_native") for n in names)
    assert "twisted_patch/py.typed" in names and "twisted_patch/_native.pyi" in names
    # One wheel for every supported CPython: the limited API (abi3).
    assert "-cp39-abi3-" in wheel.name, wheel.name


def test_sdist_has_sources_plugin_and_no_twisted_init(tmp_path: Path) -> None:
    pytest.importorskip("build")
    pytest.importorskip("setuptools", reason="setuptools (the build backend) is not installed")
    _run(sys.executable, "-m", "build", "--sdist", "--no-isolation", "--outdir", str(tmp_path))
    (sdist,) = tmp_path.glob("twisted_patch-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = [n.split("/", 1)[1] for n in tar.getnames() if "/" in n]
    assert PLUGIN in names
    for name in FORBIDDEN:
        assert name not in names
    for source in ("ext/xbind.h", "ext/module.c", "ext/xbind_posix.c", "ext/xbind_win32.c",
                   "setup.py", "pyproject.toml"):
        assert source in names


@pytest.mark.skipif(sys.platform == "win32", reason="venv layout differs; covered by CI there")
def test_fresh_venv_install_works_and_uninstall_leaves_twisted(
    wheel: Path, tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", str(venv))
    py = str(venv / "bin" / "python")
    # Twisted from the index (pip's cache makes this quick), our wheel from disk.
    env_pip = (py, "-m", "pip", "install", "-q", "--disable-pip-version-check")
    _run(*env_pip, str(wheel))
    check = (
        "from twisted.internet import endpoints, reactor\n"
        "ep = endpoints.serverFromString(reactor, 'xtcp:0:interface=127.0.0.1')\n"
        "print(type(ep).__name__)\n"
    )
    # Run from tmp_path: the source tree (cwd) must not shadow what pip installed.
    assert _run(py, "-c", check, cwd=tmp_path).strip() == "ExclusiveTCPServerEndpoint"
    where = "import twisted, os; print(os.path.dirname(twisted.__file__))"
    site = Path(_run(py, "-c", where, cwd=tmp_path).strip())
    before = sorted(p.name for p in (site / "plugins").iterdir() if p.suffix == ".py")
    assert "twisted_patch_plugins.py" in before
    _run(py, "-m", "pip", "uninstall", "-y", "-q", "twisted-patch", cwd=tmp_path)
    after = sorted(p.name for p in (site / "plugins").iterdir() if p.suffix == ".py")
    assert after == [n for n in before if n != "twisted_patch_plugins.py"]
    assert (site / "__init__.py").exists() and (site / "plugins" / "__init__.py").exists()
    out = _run(py, "-c", "import twisted.internet.endpoints, twisted.plugin; print('ok')",
               cwd=tmp_path)
    assert out.strip() == "ok"
    assert not os.path.exists(site.parent / "twisted_patch")
