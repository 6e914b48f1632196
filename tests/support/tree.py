"""The source tree as a test sees it: its files, and a clean copy to build from."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def checkout_files() -> list[str] | None:
    """The files of a fresh checkout with this tree's changes (None: not a git checkout)."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        return None
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"git ls-files failed:\n{out.stderr}"
    return [f for f in out.stdout.split("\n") if f and (ROOT / f).is_file()]


def clean_copy(dest: Path) -> Path:
    """A copy of the checkout's files in dest (the tree itself where it is no checkout).

    Builds run there, not in the tree: a build in the tree writes build/ and *.egg-info
    beside the sources, which another suite running at the same time (``make test``'s
    lanes, .ci/run's sanitizer and 3.9 runs) may be building from too, and a stale
    *.egg-info/SOURCES.txt adds the files it lists to an sdist.
    """
    files = checkout_files()
    if files is None:
        return ROOT
    for f in files:
        (dest / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, dest / f)
    return dest
