"""The benchmarks still run: ``bench/run.py --quick`` end to end, tiny sizes.

No timing is asserted (the figures of a quick run mean nothing); what is
asserted is that every benchmark ran, reported every figure with a verdict,
and measured what this build has (a feature that exists must not be reported
as "not available").
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / "bench" / "run.py"
VERDICTS = {"MET", "NOT MET", "info", "not available in this build"}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the benchmarks read /proc")
def test_bench_quick_runs_every_benchmark(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(RUN), "--quick", "--out", str(tmp_path)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, f"bench/run.py --quick failed:\n{out.stdout}\n{out.stderr}"
    assert "targets met:" in out.stdout
    result = json.loads((tmp_path / "latest.json").read_text())
    assert result["quick"] is True and not result["errors"]
    figures = result["figures"]
    sections = {f["section"] for f in figures}
    assert sections == {"accept", "listen", "owner", "memory"}
    for f in figures:
        assert f["verdict"] in VERDICTS, f
        if f["median"] is None:
            assert f["verdict"] == "not available in this build" and f["note"], f
            continue
        assert all(math.isfinite(x) for x in f["samples"]), f
        assert f["low"] <= f["median"] <= f["high"], f
        if f["target"]:
            assert f["verdict"] in ("MET", "NOT MET"), f
    by_name = {f["name"]: f for f in figures}

    def measured(name: str) -> bool:
        return by_name[name]["median"] is not None

    # What the build and the machine have is measured, never skipped.
    assert measured("plain Twisted (tcp:, listenTCP): per listen")
    assert measured("xtcp core only: per listen")
    assert measured("added per listen by all protections (xtcp all - plain)")
    assert measured("RSS xtcp/tcp with 20 connections")
    assert measured("RSS xtcp / (tcp + the same plugin scan) with 20 connections")
    if sys.platform.startswith("linux") and (shutil.which("cc") or shutil.which("gcc")):
        # the floors (bench/floor.c, a C loop in the benchmark's own process)
        assert measured("  floor of who() at 30 other sockets")
        assert measured("  floor of psutil and ss at 30 other sockets")
        assert measured("who() port held by another process of ours, 30 sockets here")
        if os.geteuid() == 0 and shutil.which("setpriv"):
            assert measured("who() (busy host: 6 sockets in 2 processes of uid 65534)")
    if shutil.which("wrk"):
        assert measured("throughput xtcp/tcp, new connection per request")
    import twisted_patch

    assert measured("who() at 10 other sockets") == hasattr(twisted_patch, "who")
    import twisted_patch.port.selfcheck

    assert measured("xtcp + owner check: per listen") == hasattr(
        twisted_patch.port.selfcheck, "ensure_exclusive")
    from twisted.internet import endpoints, reactor

    for keyword, value, row in (("guard", "no", "xtcp + guard: per listen"),
                                ("probe", "off", "xtcp + probe: per listen")):
        try:
            endpoints.serverFromString(reactor, f"xtcp:0:interface=127.0.0.1:{keyword}={value}")
        except ValueError:
            accepted = False
        else:
            accepted = True
        assert measured(row) == accepted, row
    if shutil.which("ss"):
        assert measured("ss at 30 other sockets")
    try:
        import psutil  # noqa: F401
    except ImportError:
        pass
    else:
        assert measured("psutil at 30 other sockets")
    stamped = [p for p in os.listdir(tmp_path) if p.startswith("bench-") and p.endswith(".json")]
    assert len(stamped) == 1
