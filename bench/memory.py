"""Memory: resident set size of the same server on ``tcp:`` and ``xtcp:`` with N connections.

Each repetition starts both servers (bench/server.py, identical but for the
endpoint string; order alternating), reads each one's RSS once it listens,
opens N connections to it from this process and sends one request on each,
waiting for every answer (so every connection has been accepted and has its
protocol object), then reads the RSS again.  The servers are stopped by pid.
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


def one(description: str, count: int) -> tuple[int, int]:
    """(RSS KiB when listening, RSS KiB with ``count`` connections)."""
    with ServerProcess(description) as server:
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
    runs: list[dict[str, Any]] = []
    total: list[float] = []
    per_conn: list[float] = []
    idle: list[float] = []
    per_conn_kib: dict[str, list[float]] = {"tcp": [], "xtcp": []}
    for rep in range(reps):
        kinds = [("tcp", "tcp:0:interface=127.0.0.1"), ("xtcp", desc)]
        if rep % 2:
            kinds.reverse()
        res = {}
        for kind, d in kinds:
            res[kind] = one(d, count)
            runs.append({"rep": rep, "server": kind, "rss_kib_listening": res[kind][0],
                         "rss_kib_with_connections": res[kind][1]})
        t0, t1 = res["tcp"]
        x0, x1 = res["xtcp"]
        idle.append(x0 / t0)
        total.append(x1 / t1)
        per_conn.append((x1 - x0) / max(1, t1 - t0))
        per_conn_kib["tcp"].append((t1 - t0) / count)
        per_conn_kib["xtcp"].append((x1 - x0) / count)
    label = f"{count:,} connections"
    figures = [
        figure(SECTION, f"RSS xtcp/tcp with {label}", "x", total, f"<= {TARGET_RATIO}",
               lambda v: v <= TARGET_RATIO, note),
        figure(SECTION, f"RSS growth per connection xtcp/tcp ({label})", "x", per_conn,
               f"<= {TARGET_RATIO}", lambda v: v <= TARGET_RATIO, note),
        figure(SECTION, "RSS xtcp/tcp listening, no connections", "x", idle),
        figure(SECTION, "tcp RSS growth per connection", "KiB", per_conn_kib["tcp"]),
        figure(SECTION, "xtcp RSS growth per connection", "KiB", per_conn_kib["xtcp"]),
    ]
    return figures, {"connections": count, "xtcp_description": desc, "runs": runs}
