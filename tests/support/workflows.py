"""Reading the GitHub Actions workflows (.github/workflows/*.yml) that cannot run here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

WORKFLOWS = Path(__file__).resolve().parent.parent.parent / ".github" / "workflows"


def load_workflow(name: str) -> dict[Any, Any]:
    """The workflow file `name` (e.g. "windows.yml") as YAML; needs pyyaml (the [test] extra)."""
    import yaml

    data = yaml.safe_load((WORKFLOWS / name).read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    """The steps of one job."""
    out = job["steps"]
    assert isinstance(out, list) and all(isinstance(s, dict) for s in out)
    return out


def runs(job: dict[str, Any]) -> str:
    """Every `run:` script of one job, one after the other."""
    return "\n".join(str(s.get("run", "")) for s in steps(job))
