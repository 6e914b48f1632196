"""What the package index shows and what the sdist holds (issue 15).

- The sdist carries every file git tracks but a short, explained list (MANIFEST.in),
  and builds a wheel from itself, unpacked, with nothing else around it.
- That wheel's metadata is what a user sees on the index: the version from its one
  source (``twisted_patch.__version__``), classifiers, project URLs, the license
  file, and a README that renders (twine's check).
"""

from __future__ import annotations

import ast
import email
import email.message
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from support.tree import ROOT, checkout_files, clean_copy
from support.windows import no_msvc_under_wine

# Tracked but deliberately not shipped: this repository's CI entry point and git settings.
NOT_SHIPPED = {".ci/run", ".gitignore"}


def _run(*cmd: str, cwd: Path = ROOT) -> str:
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, f"{' '.join(cmd)} failed:\n{out.stdout}\n{out.stderr}"
    return out.stdout


def source_version() -> str:
    """``__version__`` as written in twisted_patch/__init__.py (read, not imported)."""
    tree = ast.parse((ROOT / "twisted_patch" / "__init__.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__version__" for t in node.targets
        ):
            assert isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
            return node.value.value
    raise AssertionError("no __version__ = '...' in twisted_patch/__init__.py")


@pytest.fixture(scope="module")
def sdist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist of a clean copy of the tree: a stale *.egg-info/SOURCES.txt in the
    checkout would add the files it lists, hiding a file MANIFEST.in misses."""
    pytest.importorskip("build")
    pytest.importorskip("setuptools", reason="setuptools (the build backend) is not installed")
    if checkout_files() is None and (ROOT / ".git").exists():
        pytest.skip("git is not installed: cannot list the files of a clean checkout")
    src = clean_copy(tmp_path_factory.mktemp("checkout"))
    out = tmp_path_factory.mktemp("sdist")
    _run(sys.executable, "-m", "build", "--sdist", "--no-isolation", "--outdir", str(out),
         cwd=src)
    (archive,) = out.glob("twisted_patch-*.tar.gz")
    return archive


@pytest.fixture(scope="module")
def wheel_from_sdist(sdist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built from the unpacked sdist alone (the source tree is not reachable)."""
    reason = no_msvc_under_wine()
    if reason:
        pytest.skip(reason)
    where = tmp_path_factory.mktemp("unpacked")
    safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
    with tarfile.open(sdist) as tar:
        tar.extractall(where, **safe)  # type: ignore[arg-type]
    (tree,) = where.iterdir()
    out = tmp_path_factory.mktemp("wheel")
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(out), str(tree), cwd=where)
    (whl,) = out.glob("twisted_patch-*.whl")
    return whl


def metadata(whl: Path) -> email.message.Message:
    with zipfile.ZipFile(whl) as z:
        (name,) = [n for n in z.namelist() if n.endswith(".dist-info/METADATA")]
        return email.message_from_bytes(z.read(name))


def test_sdist_holds_every_tracked_file(sdist: Path) -> None:
    files = checkout_files()
    if files is None:
        pytest.skip("not a git checkout (run from an unpacked sdist?): nothing to compare with")
    tracked = set(files)
    with tarfile.open(sdist) as tar:
        shipped = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    missing = sorted(tracked - shipped - NOT_SHIPPED)
    assert missing == [], f"tracked but not in the sdist (add them to MANIFEST.in): {missing}"
    # the license file is in it, and nothing git ignores (build output) came along
    assert "LICENSE" in shipped
    assert not [n for n in shipped if n.endswith((".o", ".so", ".pyd", ".pyc"))]


def test_wheel_builds_from_the_unpacked_sdist(wheel_from_sdist: Path) -> None:
    names = zipfile.ZipFile(wheel_from_sdist).namelist()
    assert any(n.startswith("twisted_patch/_native") for n in names)
    assert "twisted/plugins/twisted_patch_plugins.py" in names
    assert "-cp39-abi3-" in wheel_from_sdist.name


def test_version_has_one_source(wheel_from_sdist: Path) -> None:
    tomllib = pytest.importorskip("tomllib", reason="tomllib: Python 3.11+")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert "version" not in project and project["dynamic"] == ["version"]
    assert metadata(wheel_from_sdist)["Version"] == source_version()
    assert f"-{source_version()}-" in wheel_from_sdist.name
    # the docs take the installed package's version rather than a copy of it
    assert "release = _installed_version(" in (ROOT / "docs" / "conf.py").read_text()


def test_index_metadata(wheel_from_sdist: Path) -> None:
    meta = metadata(wheel_from_sdist)
    classifiers = set(meta.get_all("Classifier") or [])
    for c in ("Framework :: Twisted", "Topic :: Security",
              "Operating System :: Microsoft :: Windows", "Operating System :: POSIX :: Linux",
              "Operating System :: MacOS", "Programming Language :: Python :: 3 :: Only"):
        assert c in classifiers, c
    versions = sorted((c.rsplit(" ", 1)[1] for c in classifiers
                       if c.startswith("Programming Language :: Python :: 3.")),
                      key=lambda v: tuple(map(int, v.split("."))))
    assert versions[0] == "3.9" and meta["Requires-Python"] == ">=3.9"
    # the classifiers name the CPythons the CI runs (.github/workflows/windows.yml)
    yaml = pytest.importorskip("yaml")
    ci = yaml.safe_load((ROOT / ".github" / "workflows" / "windows.yml").read_text())
    assert versions == ci["jobs"]["windows"]["strategy"]["matrix"]["python"]
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL") or [])
    assert {"Source", "Documentation", "Issues", "Changelog"} <= set(urls), urls
    assert all(u.startswith("https://") for u in urls.values())
    assert meta["License-Expression"] == "MIT"
    assert meta.get_all("License-File") == ["LICENSE"]
    licence = [n for n in zipfile.ZipFile(wheel_from_sdist).namelist()
               if n.endswith(".dist-info/licenses/LICENSE")]
    assert licence, "the wheel does not carry LICENSE"
    assert meta["Description-Content-Type"] == "text/markdown"


def test_readme_renders_twine_check(sdist: Path, wheel_from_sdist: Path) -> None:
    pytest.importorskip("twine", reason="twine is in the [test] extra (CPython 3.10+)")
    out = subprocess.run([sys.executable, "-m", "twine", "check", "--strict",
                          str(sdist), str(wheel_from_sdist)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("PASSED") == 2, out.stdout
