"""Owner lookup: who listens on 127.0.0.1:P, with many other TCP sockets open.

Three ways to answer, each measured in the same repetition:

- ``twisted_patch.who(host, port)`` (netlink sock_diag with an in-kernel port
  filter on Linux), when this build has it;
- ``psutil.net_connections("tcp")`` filtered to the port (what a Python
  program would use otherwise);
- ``ss -Hltnp sport = :P`` (a subprocess, as a script would run it).

Where the build has it, ``twisted_patch.owner.listeners(port, self_only=True)``
(the kernel query, with holders looked up in this process only: what the
post-listen owner check uses) is measured too, to show where ``who``'s time
goes.

The benchmark opens the other sockets itself, on loopback: half listening
sockets, half established connections (both ends, accepted), after raising its
own RLIMIT_NOFILE.  It closes them all before returning.
"""

from __future__ import annotations

import shutil
import socket
import statistics
import subprocess
import time
from typing import Any

from benchlib import Figure, figure, raise_fd_limit, unavailable, who_function

SECTION = "owner"
HOST = "127.0.0.1"
TARGET_MS = 1.0
TARGET_FASTER = 50.0


def open_noise(count: int) -> list[socket.socket]:
    """``count`` TCP sockets on loopback: count//2 listeners, the rest established pairs."""
    socks: list[socket.socket] = []
    try:
        listeners = count // 2
        pairs = (count - listeners) // 2
        listeners = count - 2 * pairs
        for _ in range(listeners):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(s)
            s.bind((HOST, 0))
            s.listen(1024)
        if pairs:
            server = socks[0]
            done = 0
            while done < pairs:
                chunk = min(512, pairs - done)
                for _ in range(chunk):
                    c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    socks.append(c)
                    c.connect(server.getsockname())
                for _ in range(chunk):
                    conn, _addr = server.accept()
                    socks.append(conn)
                done += chunk
    except BaseException:
        for s in socks:
            s.close()
        raise
    return socks


def self_only_available() -> bool:
    try:
        from twisted_patch.owner import listeners
    except ImportError:
        return False
    import inspect

    return "self_only" in inspect.signature(listeners).parameters


def host_tcp_sockets() -> int | None:
    total = 0
    try:
        for name in ("/proc/net/tcp", "/proc/net/tcp6"):
            with open(name, encoding="ascii") as f:
                total += sum(1 for _ in f) - 1
    except OSError:
        return None
    return total


def run(cfg: dict[str, Any]) -> tuple[list[Figure], dict[str, Any]]:
    sizes: list[int] = cfg["owner_sizes"]
    reps: int = cfg["owner_reps"]
    who = who_function()
    try:
        import psutil
    except ImportError:
        psutil = None
    ss = shutil.which("ss")
    limit = raise_fd_limit(max(sizes) + 1000)
    raw: dict[str, Any] = {"fd_limit": limit, "sizes": {}}
    figures: list[Figure] = []
    target = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    target.bind((HOST, 0))
    target.listen(50)
    port = target.getsockname()[1]
    try:
        for size in sizes:
            if size + 100 > limit:
                why = f"RLIMIT_NOFILE is {limit}, cannot open {size} sockets"
                for n in ("who", "psutil", "ss"):
                    figures.append(unavailable(SECTION, f"{n} at {size:,} sockets", "ms", "", why))
                continue
            noise = open_noise(size)
            try:
                figures += measure(size, port, reps, who, psutil, ss, raw)
            finally:
                for s in noise:
                    s.close()
    finally:
        target.close()
    return figures, raw


def measure(size: int, port: int, reps: int, who: Any, psutil: Any, ss: str | None,
            raw: dict[str, Any]) -> list[Figure]:
    times: dict[str, list[float]] = {"who": [], "self_only": [], "psutil": [], "ss": []}
    answers: dict[str, Any] = {}

    def time_who() -> float:
        batch = []
        for _ in range(10):
            t0 = time.perf_counter()
            found = who(HOST, port)
            batch.append(time.perf_counter() - t0)
        answers["who"] = repr(found)[:300]
        return statistics.median(batch) * 1e3

    def time_self_only() -> float:
        from twisted_patch.owner import listeners

        batch = []
        for _ in range(10):
            t0 = time.perf_counter()
            found = listeners(port, self_only=True)
            batch.append(time.perf_counter() - t0)
        answers["self_only"] = repr(found)[:300]
        return statistics.median(batch) * 1e3

    def time_psutil() -> float:
        t0 = time.perf_counter()
        found = [c for c in psutil.net_connections("tcp")
                 if c.laddr and c.laddr.port == port and c.status == psutil.CONN_LISTEN]
        elapsed = time.perf_counter() - t0
        answers["psutil"] = [(c.laddr.ip, c.laddr.port, c.pid) for c in found]
        return elapsed * 1e3

    def time_ss() -> float:
        assert ss is not None
        t0 = time.perf_counter()
        out = subprocess.run([ss, "-Hltnp", f"sport = :{port}"], capture_output=True,
                             text=True, timeout=60)
        elapsed = time.perf_counter() - t0
        answers["ss"] = out.stdout.strip()[:300]
        return elapsed * 1e3

    runners = {"who": time_who if who else None,
               "self_only": time_self_only if self_only_available() else None,
               "psutil": time_psutil if psutil else None,
               "ss": time_ss if ss else None}
    for fn in runners.values():  # warm up
        if fn is not None:
            fn()
    for rep in range(reps):
        order = list(runners) if rep % 2 == 0 else list(reversed(runners))
        for name in order:
            fn = runners[name]
            if fn is not None:
                times[name].append(fn())
    raw["sizes"][str(size)] = {"times_ms": times, "answers": answers,
                               "tcp_sockets_on_host": host_tcp_sockets()}
    figs: list[Figure] = []
    big = size >= 10_000
    why = {"who": "twisted_patch.who does not exist in this build",
           "psutil": "psutil is not installed (pip install '.[bench]')",
           "ss": "ss is not installed (Debian package iproute2)"}
    label = f"at {size:,} other sockets"
    if times["who"]:
        figs.append(figure(SECTION, f"who() {label}", "ms", times["who"],
                           f"<= {TARGET_MS} ms" if big else "",
                           (lambda v: v <= TARGET_MS) if big else None))
    else:
        figs.append(unavailable(SECTION, f"who() {label}", "ms",
                                f"<= {TARGET_MS} ms" if big else "", why["who"]))
    if times["self_only"]:
        figs.append(figure(SECTION, f"listeners(self_only=True) {label}", "ms",
                           times["self_only"], note="kernel query + this process's fds only"))
    for name in ("psutil", "ss"):
        if times[name]:
            figs.append(figure(SECTION, f"{name} {label}", "ms", times[name]))
        else:
            figs.append(unavailable(SECTION, f"{name} {label}", "ms", "", why[name]))
    for name in ("psutil", "ss"):
        fig_name = f"{name} / who() {label}"
        tgt = f">= {TARGET_FASTER:.0f}x" if (big and name == "psutil") else ""
        if times["who"] and times[name]:
            ratios = [o / w for o, w in zip(times[name], times["who"])]
            check = (lambda v: v >= TARGET_FASTER) if tgt else None
            figs.append(figure(SECTION, fig_name, "x", ratios, tgt, check))
        else:
            figs.append(unavailable(SECTION, fig_name, "x", tgt,
                                    why["who"] if not times["who"] else why[name]))
    return figs
