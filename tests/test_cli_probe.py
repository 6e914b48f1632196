"""`twisted-patch probe` (the demo): the table tells the truth and the exit status follows it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

GUARD_MERGED = True
try:
    import twisted_patch.port.guards  # noqa: F401
except ImportError:
    GUARD_MERGED = False


def _probe(*args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("twisted-patch")
    return subprocess.run([str(exe), "probe", *args], capture_output=True, text=True,
                          timeout=300, cwd="/")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux attack set")
@pytest.mark.xfail(not GUARD_MERGED, reason="address-family guard not merged", strict=True)
def test_probe_json_plain_hijacked_ours_refused() -> None:
    out = _probe("--json")
    rows = {r["key"]: r for r in json.loads(out.stdout)}
    # Every attack of this OS, plus the pre-claim and the client-side check.
    assert {"same-reuseport", "v6-shadow", "specific-over-wildcard", "preclaim",
            "verify-impostor"} <= set(rows)
    # The table can fail: plain Twisted IS hijacked by the IPv6 shadow on Linux.
    assert rows["v6-shadow"]["plain"]["result"] == "hijacked"
    assert rows["v6-shadow"]["plain"]["short"].startswith("HIJACKED (got the client)")
    # ... and twisted-patch refuses every attack; the exit status says so.
    hijacked = [k for k, r in rows.items() if r["xtcp"]["result"] == "hijacked"]
    assert hijacked == []
    assert out.returncode == 0, out.stderr
    assert "already in use by pid" in rows["preclaim"]["xtcp"]["text"]


def test_probe_table_is_printed() -> None:
    out = _probe()
    assert "plain Twisted (tcp:)" in out.stdout and "twisted-patch (xtcp:)" in out.stdout
    assert out.returncode in (0, 1), out.stderr
    assert ("NOT PROTECTED" in out.stdout) == (out.returncode == 1)
