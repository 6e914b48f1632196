"""Accept throughput and latency: the same trivial server on ``tcp:`` and ``xtcp:``.

Two server processes (bench/server.py), identical but for the endpoint
string, are pinned to one CPU; the load generators (``wrk``, one thread each)
are pinned to the other, so a load generator never competes with the servers
it measures.  In each repetition two wrk processes drive the two servers *at
the same time*, for the same duration: both servers share their CPU (the
scheduler gives runnable processes equal shares), so whatever else the
machine is doing hits both alike, and the ratio of their request rates is the
ratio of their per-request costs.  The order in which the two wrk processes
are started alternates between repetitions.  The figure is the median of the
per-repetition ratios xtcp/tcp; the spread is their min..max.

Two loads:

- ``new connection per request``: every request carries ``Connection: close``,
  so every request is one accept() -- the accept path itself;
- ``keep-alive``: requests over persistent connections (the serving path).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Any

from benchlib import Figure, ServerProcess, cpus, figure, pin_to, unavailable, xtcp_keywords

SECTION = "accept"
TARGET_RATIO = 0.98
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def xtcp_description() -> tuple[str, str]:
    """The xtcp server description, with guard and probe on where this build has them."""
    kw = xtcp_keywords()
    desc = "xtcp:0:interface=127.0.0.1"
    on = []
    if kw.get("guard"):
        desc += ":guard=serve"
        on.append("guard=serve")
    if kw.get("probe"):
        desc += ":probe=strict"
        on.append("probe=strict")
    note = "xtcp with " + (", ".join(on) if on else "the core only (no guard/probe in this build)")
    return desc, note


def parse_wrk(text: str) -> dict[str, float]:
    """Requests/s, median and 99th-percentile latency (ms), error count from wrk --latency."""
    out: dict[str, float] = {}
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if not m:
        raise RuntimeError(f"cannot read wrk output:\n{text}")
    out["rps"] = float(m.group(1))
    for pct, key in (("50", "p50_ms"), ("99", "p99_ms")):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
        if m:
            out[key] = float(m.group(1)) * UNITS[m.group(2)]
    errors = 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        errors += sum(int(g) for g in m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m:
        errors += int(m.group(1))
    out["errors"] = float(errors)
    return out


def wrk_command(port: int, seconds: float, connections: int, close: bool) -> list[str]:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency"]
    if close:
        cmd += ["-H", "Connection: close"]
    cmd.append(f"http://127.0.0.1:{port}/")
    return cmd


def run_wrk_together(ports: dict[str, int], seconds: float, connections: int, close: bool,
                     cpu: int | None) -> dict[str, dict[str, float]]:
    """One wrk per server, all started together (in the order of ``ports``)."""
    procs: dict[str, subprocess.Popen[str]] = {}
    try:
        for kind, port in ports.items():
            procs[kind] = subprocess.Popen(
                wrk_command(port, seconds, connections, close), stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True, preexec_fn=pin_to(cpu))
        out = {}
        for kind, proc in procs.items():
            stdout, stderr = proc.communicate(timeout=seconds + 60)
            if proc.returncode != 0:
                raise RuntimeError(f"wrk against {kind} failed: {stderr}")
            out[kind] = parse_wrk(stdout)
        return out
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def run(cfg: dict[str, Any]) -> tuple[list[Figure], dict[str, Any]]:
    desc, note = xtcp_description()
    names = [
        "throughput xtcp/tcp, new connection per request",
        "median latency xtcp/tcp, new connection per request",
        "throughput xtcp/tcp, keep-alive",
        "median latency xtcp/tcp, keep-alive",
        "p99 latency xtcp/tcp, keep-alive",
    ]
    if shutil.which("wrk") is None:
        why = "wrk is not installed (Debian package wrk; make deps installs it as root)"
        return [unavailable(SECTION, n, "x", "", why) for n in names], {"skipped": why}
    available = cpus()
    server_cpu = available[0] if len(available) > 1 else None
    client_cpu = available[1] if len(available) > 1 else None
    pinning = "1 CPU: no pinning"
    if server_cpu is not None:
        pinning = (f"both servers pinned to CPU {server_cpu}, both wrk (1 thread each, run "
                   f"concurrently) to CPU {client_cpu} (sched_setaffinity, as taskset -c)")
    raw: dict[str, Any] = {"xtcp_description": desc, "pinning": pinning, "runs": []}
    seconds, reps, conns = cfg["accept_seconds"], cfg["accept_reps"], cfg["accept_connections"]
    ratios: dict[str, list[float]] = {n: [] for n in names}
    with ServerProcess("tcp:0:interface=127.0.0.1", server_cpu) as tcp, \
            ServerProcess(desc, server_cpu) as xtcp:
        servers = {"tcp": tcp, "xtcp": xtcp}
        # Warm both servers up (first connections, allocator, caches).
        run_wrk_together({k: s.port for k, s in servers.items()}, 1, conns, True, client_cpu)
        for close in (True, False):
            label = "new connection per request" if close else "keep-alive"
            for rep in range(reps):
                order = ["tcp", "xtcp"] if rep % 2 == 0 else ["xtcp", "tcp"]
                res = run_wrk_together({k: servers[k].port for k in order}, seconds, conns,
                                       close, client_cpu)
                for kind in order:
                    raw["runs"].append({"load": label, "rep": rep, "server": kind, **res[kind]})
                ratios[f"throughput xtcp/tcp, {label}"].append(
                    res["xtcp"]["rps"] / res["tcp"]["rps"])
                if "p50_ms" in res["tcp"] and "p50_ms" in res["xtcp"]:
                    ratios[f"median latency xtcp/tcp, {label}"].append(
                        res["xtcp"]["p50_ms"] / res["tcp"]["p50_ms"])
                if not close and "p99_ms" in res["tcp"] and "p99_ms" in res["xtcp"]:
                    ratios[f"p99 latency xtcp/tcp, {label}"].append(
                        res["xtcp"]["p99_ms"] / res["tcp"]["p99_ms"])
    figures: list[Figure] = []
    for n in names:
        samples = ratios[n]
        if not samples:
            figures.append(unavailable(SECTION, n, "x", "", "wrk printed no such figure"))
        elif n.startswith("throughput"):
            figures.append(figure(SECTION, n, "x", samples, f">= {TARGET_RATIO}",
                                  lambda v: v >= TARGET_RATIO, note))
        else:
            target = 1 / TARGET_RATIO
            figures.append(figure(SECTION, n, "x", samples, f"<= {target:.3f} (1/{TARGET_RATIO})",
                                  lambda v, t=target: v <= t, note))
    for kind in ("tcp", "xtcp"):
        for label in ("new connection per request", "keep-alive"):
            rps = [r["rps"] for r in raw["runs"] if r["server"] == kind and r["load"] == label]
            figures.append(figure(SECTION, f"{kind} requests/s, {label}", "req/s", rps))
    return figures, raw
