"""Memory: resident set size of the same server on ``tcp:`` and ``xtcp:`` with N connections.

Four servers (bench/server.py, identical but for the endpoint string and the
plugin scan): ``tcp:``; ``tcp:`` after the plugin scan an ``xtcp:`` string
makes (``--discover=xtcp``: ``serverFromString`` loads the installed
endpoint-string plugins one by one until one has the prefix, which imports
every plugin module before twisted-patch's in Twisted's order, then
twisted-patch's plugin file, which imports nothing heavy); ``tcp:`` after a
scan of every installed endpoint plugin (``--discover=none``, what a prefix no
plugin has costs); and ``xtcp:``.  The second is the control the target is
measured against: the same scan, no plugin used, so xtcp / that control is
what twisted-patch itself costs (the package, the C core, the guard, the
probe, the owner check).

Each repetition starts the servers one after the other (order rotating),
reads each one's RSS once it listens, opens N connections to it from this
process and sends one request on each, waiting for every answer (so every
connection has been accepted and has its protocol object), then reads the RSS
again.  The servers are stopped by pid.
"""

from __future__ import annotations

import selectors
import socket
import time
from typing import Any

from accept import xtcp_description
from benchlib import Figure, ServerProcess, figure, raise_fd_limit

SECTION = "memory"
TARGET_RATIO = 1.05
REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"


def load(port: int, count: int) -> list[socket.socket]:
    """``count`` connections to 127.0.0.1:port, each answered once; returned open."""
    conns: list[socket.socket] = []
    try:
        for _ in range(count):
            c = socket.create_connection(("127.0.0.1", port), timeout=10)
            conns.append(c)
            c.sendall(REQUEST)
        sel = selectors.DefaultSelector()
        for c in conns:
            c.setblocking(False)
            sel.register(c, selectors.EVENT_READ)
        pending = len(conns)
        deadline = time.monotonic() + 60
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{pending} of {count} connections were not answered")
            for key, _ in sel.select(1.0):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if not sock.recv(4096):
                    raise RuntimeError("server closed a connection")
                sel.unregister(sock)
                pending -= 1
        sel.close()
    except BaseException:
        for c in conns:
            c.close()
        raise
    return conns


def one(description: str, count: int, extra_args: tuple[str, ...] = ()) -> tuple[int, int]:
    """(RSS KiB when listening, RSS KiB with ``count`` connections)."""
    with ServerProcess(description, extra_args=extra_args) as server:
        time.sleep(0.2)
        before = server.rss_kib()
        conns = load(server.port, count)
        try:
            time.sleep(0.2)
            after = server.rss_kib()
        finally:
            for c in conns:
                c.close()
    return before, after


def run(cfg: dict[str, Any]) -> tuple[list[Figure], dict[str, Any]]:
    count, reps = cfg["memory_connections"], cfg["memory_reps"]
    raise_fd_limit(count + 1000)
    desc, note = xtcp_description()
    tcp = "tcp:0:interface=127.0.0.1"
    kinds: list[tuple[str, str, tuple[str, ...]]] = [
        ("tcp", tcp, ()), ("scan", tcp, ("--discover=xtcp",)),
        ("fullscan", tcp, ("--discover=none",)), ("xtcp", desc, ())]
    runs: list[dict[str, Any]] = []
    r: dict[str, list[float]] = {k: [] for k in (
        "ctl", "ctl_idle", "ctl_per_conn", "full", "tcp", "tcp_idle", "tcp_per_conn", "scan_idle")}
    per_conn_kib: dict[str, list[float]] = {k: [] for k, _, _ in kinds}
    for rep in range(reps):
        order = kinds[rep % len(kinds):] + kinds[:rep % len(kinds)]
        res: dict[str, tuple[int, int]] = {}
        for kind, d, extra in order:
            res[kind] = one(d, count, extra)
            runs.append({"rep": rep, "server": kind, "rss_kib_listening": res[kind][0],
                         "rss_kib_with_connections": res[kind][1]})
        t0, t1 = res["tcp"]
        c0, c1 = res["scan"]
        x0, x1 = res["xtcp"]
        r["ctl"].append(x1 / c1)
        r["ctl_idle"].append(x0 / c0)
        r["ctl_per_conn"].append((x1 - x0) / max(1, c1 - c0))
        r["full"].append(x1 / res["fullscan"][1])
        r["tcp"].append(x1 / t1)
        r["tcp_idle"].append(x0 / t0)
        r["tcp_per_conn"].append((x1 - x0) / max(1, t1 - t0))
        r["scan_idle"].append(c0 / t0)
        for kind, (a, b) in res.items():
            per_conn_kib[kind].append((b - a) / count)
    label = f"{count:,} connections"
    ctl = "tcp + the same plugin scan"

    def at_most(v: float) -> bool:
        return v <= TARGET_RATIO

    figures = [
        figure(SECTION, f"RSS xtcp / ({ctl}) with {label}", "x", r["ctl"],
               f"<= {TARGET_RATIO}", at_most, note),
        figure(SECTION, f"RSS xtcp / ({ctl}), listening, no connections", "x", r["ctl_idle"]),
        figure(SECTION, f"RSS growth per connection xtcp / ({ctl})", "x", r["ctl_per_conn"]),
        figure(SECTION, f"RSS xtcp / (tcp + a scan of every plugin) with {label}", "x",
               r["full"]),
        figure(SECTION, f"RSS xtcp/tcp with {label}", "x", r["tcp"],
               note="against a tcp: server that ran no plugin scan"),
        figure(SECTION, f"RSS growth per connection xtcp/tcp ({label})", "x",
               r["tcp_per_conn"], f"<= {TARGET_RATIO}", at_most, note),
        figure(SECTION, "RSS xtcp/tcp listening, no connections", "x", r["tcp_idle"]),
        figure(SECTION, f"RSS ({ctl}) / tcp, listening: the scan's cost", "x", r["scan_idle"]),
        figure(SECTION, "tcp RSS growth per connection", "KiB", per_conn_kib["tcp"]),
        figure(SECTION, "xtcp RSS growth per connection", "KiB", per_conn_kib["xtcp"]),
    ]
    return figures, {"connections": count, "xtcp_description": desc, "runs": runs}
