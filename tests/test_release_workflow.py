"""The release workflow (.github/workflows/release.yml) cannot run here: check what it would do.

Its structure is read from the YAML; which wheels each of its jobs builds is asked of
cibuildwheel itself (``--print-build-identifiers`` reads pyproject.toml's
[tool.cibuildwheel] and runs offline).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from support.workflows import load_workflow, runs, steps

yaml = pytest.importorskip("yaml", reason="pyyaml is in the [test] extra: pip install '.[test]'")

ROOT = Path(__file__).resolve().parent.parent
PYTHONS = ["cp39", "cp310", "cp311", "cp312", "cp313"]
# (cibuildwheel platform, arch) -> the wheel platform tags cibuildwheel builds for it
WHEELS = {
    ("linux", "x86_64"): ["manylinux_x86_64", "musllinux_x86_64"],
    ("linux", "aarch64"): ["manylinux_aarch64", "musllinux_aarch64"],
    ("macos", "x86_64"): ["macosx_x86_64"],
    ("macos", "arm64"): ["macosx_arm64"],
    ("windows", "AMD64"): ["win_amd64"],
    ("windows", "x86"): ["win32"],
    ("windows", "ARM64"): ["win_arm64"],
}
# runner image -> the architectures it runs natively (so the wheels' tests really run)
NATIVE = {
    "ubuntu-latest": {"x86_64"},
    "ubuntu-24.04-arm": {"aarch64"},
    "macos-15-intel": {"x86_64"},
    "macos-latest": {"arm64"},
    "windows-latest": {"AMD64", "x86"},
    "windows-11-arm": {"ARM64"},
}


@pytest.fixture(scope="module")
def workflow() -> dict[Any, Any]:
    return load_workflow("release.yml")


def matrix(workflow: dict[Any, Any]) -> list[dict[str, str]]:
    include = workflow["jobs"]["wheels"]["strategy"]["matrix"]["include"]
    assert isinstance(include, list)
    return include


def test_triggers_and_permissions(workflow: dict[Any, Any]) -> None:
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads `on` as True
    assert isinstance(triggers, dict)
    assert triggers["push"] == {"tags": ["v*"]}
    assert "pull_request" in triggers
    # read-only by default; only the publish job may mint an OIDC token
    assert workflow["permissions"] == {"contents": "read"}
    assert set(workflow["jobs"]) == {"sdist", "wheels", "publish"}


def test_sdist_job_builds_a_wheel_from_the_sdist_and_checks_it(workflow: dict[Any, Any]) -> None:
    job = workflow["jobs"]["sdist"]
    text = runs(job)
    # `python -m build` without --sdist/--wheel builds the sdist, then the wheel from it
    assert re.search(r"python -m build --outdir \S+ \.", text), text
    assert "twine check --strict" in text
    # the sdist installed into a fresh venv, then the smoke test run outside the tree
    assert "pip install dist/*.tar.gz" in text
    assert "python -I ../tests/smoke_installed.py --probe" in text
    upload = [s for s in steps(job) if str(s.get("uses", "")).startswith("actions/upload")]
    assert upload and upload[0]["with"]["path"] == "dist/*.tar.gz"


def test_wheel_matrix_covers_every_platform_on_native_runners(workflow: dict[Any, Any]) -> None:
    entries = matrix(workflow)
    pairs = [(e["platform"], e["archs"]) for e in entries]
    assert sorted(pairs) == sorted(WHEELS), pairs
    for e in entries:
        assert e["archs"] in NATIVE[e["os"]], f"{e}: {e['os']} cannot run the wheel's tests"
    job = workflow["jobs"]["wheels"]
    assert job["strategy"]["fail-fast"] is False
    build = [s for s in steps(job) if "cibuildwheel --output-dir" in str(s.get("run", ""))]
    assert len(build) == 1
    assert build[0]["env"] == {"CIBW_PLATFORM": "${{ matrix.platform }}",
                               "CIBW_ARCHS": "${{ matrix.archs }}"}
    # one cibuildwheel version for every runner, not whatever is newest that day
    assert re.search(r'pip install "cibuildwheel==\d+\.\d+\.\d+"', build[0]["run"])
    assert "twine check --strict wheelhouse/*.whl" in runs(job)


def test_publish_uses_trusted_publishing_on_tags_only(workflow: dict[Any, Any]) -> None:
    job = workflow["jobs"]["publish"]
    assert set(job["needs"]) == {"sdist", "wheels"}
    assert "refs/tags/v" in job["if"] and "push" in job["if"]
    assert job["permissions"] == {"id-token": "write"}
    publish = [s for s in steps(job) if "gh-action-pypi-publish" in str(s.get("uses", ""))]
    assert len(publish) == 1
    # trusted publishing: no token or password handed to the action
    assert not publish[0].get("with"), publish[0]
    assert "GITHUB_REF_NAME#v" in runs(job)  # the files carry the tag's version


def test_actions_are_pinned_and_jobs_time_limited(workflow: dict[Any, Any]) -> None:
    for name, job in workflow["jobs"].items():
        uses = [str(s["uses"]) for s in steps(job) if "uses" in s]
        for u in uses:
            assert "@" in u and not u.endswith(("@main", "@master")), (name, u)
        assert isinstance(job.get("timeout-minutes"), int), name


def test_each_wheel_is_tested_by_the_smoke_test(workflow: dict[Any, Any]) -> None:
    tomllib = pytest.importorskip("tomllib", reason="tomllib: Python 3.11+")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    cibw = config["tool"]["cibuildwheel"]
    assert "tests/smoke_installed.py" in cibw["test-command"]
    assert (ROOT / "tests" / "smoke_installed.py").is_file()
    # warnings are errors in the release builds as in every build make drives
    for table in (cibw, cibw["macos"], cibw["windows"]):
        flags = table["environment"]["TWISTED_PATCH_CFLAGS"]
        assert "-Werror" in flags or "/WX" in flags
    # the floor the wheel is built for is the project's floor
    assert config["project"]["requires-python"] == ">=3.9"
    assert cibw["build"][0] == "cp39-*"


cibuildwheel_missing = subprocess.run(
    [sys.executable, "-m", "cibuildwheel", "--help"], capture_output=True).returncode != 0


def identifiers(platform: str, archs: str | None) -> list[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIBW_")}
    cmd = [sys.executable, "-m", "cibuildwheel", "--print-build-identifiers",
           "--platform", platform]
    if archs is not None:
        cmd += ["--archs", archs]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


@pytest.mark.skipif(cibuildwheel_missing,
                    reason="cibuildwheel (the [test] extra, CPython 3.11+) is not installed")
def test_cibuildwheel_builds_the_abi3_wheels_of_each_job(workflow: dict[Any, Any]) -> None:
    for entry in matrix(workflow):
        got = identifiers(entry["platform"], entry["archs"])
        want = [f"{py}-{tag}" for tag in WHEELS[(entry["platform"], entry["archs"])]
                for py in PYTHONS]
        assert sorted(got) == sorted(want), entry
    # without --archs: pyproject's per-platform archs select exactly the same wheels
    for platform in ("linux", "macos", "windows"):
        want = [f"{py}-{tag}" for (plat, _), tags in WHEELS.items() if plat == platform
                for tag in tags for py in PYTHONS]
        assert sorted(identifiers(platform, None)) == sorted(want), platform


@pytest.mark.skipif(cibuildwheel_missing,
                    reason="cibuildwheel (the [test] extra, CPython 3.11+) is not installed")
def test_the_wheels_are_abi3_built_by_the_oldest_python() -> None:
    # cibuildwheel builds cp39 first; setup.py's py_limited_api makes that wheel
    # cp39-abi3, which cibuildwheel then reuses (and tests) for cp310..cp313.
    text = (ROOT / "setup.py").read_text(encoding="utf-8")
    assert '"py_limited_api": "cp39"' in text and "py_limited_api=True" in text
    assert ('"Py_LIMITED_API", "0x03090000"') in text
    assert identifiers("linux", "x86_64")[0] == "cp39-manylinux_x86_64"
