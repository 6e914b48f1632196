"""The CI workflow (.github/workflows/windows.yml) cannot run here: check what it would run."""

from __future__ import annotations

from typing import Any

import pytest
from support.workflows import load_workflow, runs, steps

yaml = pytest.importorskip("yaml", reason="pyyaml is in the [test] extra: pip install '.[test]'")

SUPPORTED = ["3.9", "3.10", "3.11", "3.12", "3.13"]


@pytest.fixture(scope="module")
def workflow() -> dict[str, Any]:
    return load_workflow("windows.yml")


def test_triggers(workflow: dict[str, Any]) -> None:
    # YAML 1.1 reads the bare key `on` as True
    triggers = workflow.get("on", workflow.get(True))
    assert isinstance(triggers, dict)
    assert {"push", "pull_request"} <= set(triggers)
    assert workflow["permissions"] == {"contents": "read"}


def test_jobs(workflow: dict[str, Any]) -> None:
    assert set(workflow["jobs"]) == {"windows", "linux", "macos"}
    assert workflow["jobs"]["windows"]["runs-on"] == "windows-latest"
    assert workflow["jobs"]["linux"]["runs-on"] == "ubuntu-latest"
    assert workflow["jobs"]["macos"]["runs-on"] == "macos-latest"


def test_windows_runs_every_supported_python(workflow: dict[str, Any]) -> None:
    job = workflow["jobs"]["windows"]
    versions = job["strategy"]["matrix"]["python"]
    # strings, so that 3.10 is not read as 3.1
    assert versions == SUPPORTED and all(isinstance(v, str) for v in versions)
    assert job["strategy"]["fail-fast"] is False
    setup = [s for s in steps(job) if str(s.get("uses", "")).startswith("actions/setup-python@")]
    assert len(setup) == 1 and setup[0]["with"]["python-version"] == "${{ matrix.python }}"


def test_windows_builds_with_msvc_strictly_and_runs_the_suite(workflow: dict[str, Any]) -> None:
    job = workflow["jobs"]["windows"]
    build = [s for s in steps(job) if "pip install" in str(s.get("run", ""))]
    assert build and "/WX" in build[0]["env"]["TWISTED_PATCH_CFLAGS"]
    assert '".[test]"' in build[0]["run"]
    text = runs(job)
    assert "pytest tests" in text
    # the installed package is what is tested, not the source tree
    assert "python -m pytest" not in text


def test_linux_job_installs_wine_and_runs_the_matrix(workflow: dict[str, Any]) -> None:
    job = workflow["jobs"]["linux"]
    text = runs(job)
    for package in ("wine64", "gcc-mingw-w64-x86-64"):
        assert package in text
    assert "make install" in text and "make lint" in text
    assert ".venv/bin/pytest tests" in text
    assert "tests/wine.py matrix" in text
    assert job["strategy"]["matrix"]["python"] == SUPPORTED


def test_macos_job(workflow: dict[str, Any]) -> None:
    job = workflow["jobs"]["macos"]
    assert ".venv/bin/pytest tests" in runs(job)
    versions = job["strategy"]["matrix"]["python"]
    assert versions[0] == SUPPORTED[0] and versions[-1] == SUPPORTED[-1]


def test_actions_are_pinned_and_checked_out(workflow: dict[str, Any]) -> None:
    for name, job in workflow["jobs"].items():
        uses = [str(s["uses"]) for s in steps(job) if "uses" in s]
        assert uses[0].startswith("actions/checkout@"), name
        for u in uses:
            assert "@" in u and not u.endswith(("@main", "@master")), (name, u)
        assert isinstance(job.get("timeout-minutes"), int), name
