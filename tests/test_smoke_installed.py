"""tests/smoke_installed.py against the package this interpreter has installed.

`make dist` and the release workflow run that script against each artefact; here it
runs against what `make install` (or, under Wine, the Windows harness) installed, so
that the smoke test itself is exercised by every test run and cannot rot unnoticed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SMOKE = Path(__file__).resolve().parent / "smoke_installed.py"


def test_smoke_test_passes_against_the_installed_package(tmp_path: Path) -> None:
    # -I and a cwd outside the tree: the installed package, never the checkout
    out = subprocess.run([sys.executable, "-I", str(SMOKE)], cwd=tmp_path,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.rstrip().endswith("smoke: passed"), out.stdout
