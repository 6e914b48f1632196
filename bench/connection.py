"""Verified connections: ``verify_connection(sock, pid=P)`` with many sockets in other processes.

Set up: a "node" child process that listens on 127.0.0.1, accepts and holds
the connection (a handful of descriptors, like a server); a "noise" child
process holding ``size`` other TCP sockets on loopback (half listening, half
established pairs, both ends in that process); this process connects to the
node once and then, in each repetition, times ``calls`` checks of that
connection.  Measured in the same repetition, on the same connection:

- ``verify_connection(sock, pid=node)``: the figure (target < 1 ms at 10,000);
- floor: ``_native.connection(..., processes=False)``, the kernel's answer
  alone (one NETLINK_SOCK_DIAG request for the 4-tuple, no /proc), the part no
  verification can skip; what the figure adds is the node's /proc/PID/fd and
  the Python around it;
- ``psutil.net_connections("tcp")`` searched for the 4-tuple, what a Python
  program would otherwise use (it reads every socket of the host), once per
  repetition.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from typing import Any

from benchlib import Figure, figure, unavailable

SECTION = "connection"
TARGET_MS = 1.0

_NODE = r"""
import socket, sys
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(8)
print(s.getsockname()[1], flush=True)
c, _ = s.accept()
sys.stdin.read()
"""

_NOISE = r"""
import resource, socket, sys
n = int(sys.argv[1])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
want = n + 256
if soft < want:
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(want, hard if hard != -1 else want),) * 2)
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
socks = []
server = socket.socket(); server.bind(("127.0.0.1", 0)); server.listen(4096); socks.append(server)
pairs = (n - n // 2) // 2
for _ in range(n - 2 * pairs - 1):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(1); socks.append(s)
done = 0
while done < pairs:
    chunk = min(512, pairs - done)
    cs = []
    for _ in range(chunk):
        c = socket.socket(); c.connect(server.getsockname()); cs.append(c)
    for _ in range(chunk):
        a, _ = server.accept(); socks.append(a)
    socks += cs
    done += chunk
print(len(socks), flush=True)
sys.stdin.read()
"""


def _child(code: str, *args: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-I", "-c", code, *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.isdigit():
        err = proc.stderr.read() if proc.stderr else ""
        _stop(proc)
        raise RuntimeError(f"benchmark child failed: {line} {err}")
    return proc, line


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.stdin is not None:
        proc.stdin.close()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=30)
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def run(cfg: dict[str, Any]) -> tuple[list[Figure], dict[str, Any]]:
    try:
        from twisted_patch import _native
        from twisted_patch.client import verify_connection
    except ImportError as e:
        why = f"twisted_patch.client is not in this build ({e})"
        return [unavailable(SECTION, "verify_connection(pid=...)", "ms",
                            f"< {TARGET_MS} ms", why)], {}
    if _native.OWNER_BACKEND != "linux":
        return [unavailable(SECTION, "verify_connection(pid=...)", "ms", f"< {TARGET_MS} ms",
                            "measured on Linux only")], {}
    try:
        import psutil
    except ImportError:
        psutil = None
    size = int(cfg.get("connection_sockets", 10_000))
    reps = int(cfg.get("connection_reps", 7))
    calls = int(cfg.get("connection_calls", 200))
    noise, counted = _child(_NOISE, str(size))
    node, port = _child(_NODE)
    figures: list[Figure] = []
    try:
        sock = socket.create_connection(("127.0.0.1", int(port)), timeout=10)
        try:
            verify_connection(sock, pid=node.pid)  # accepted: the node holds it
            ch, cp = sock.getsockname()[:2]
            sh, sp = sock.getpeername()[:2]
            verify: list[float] = []
            floor: list[float] = []
            ratio: list[float] = []
            net: list[float] = []
            for _ in range(reps):
                t0 = time.perf_counter()
                for _ in range(calls):
                    verify_connection(sock, pid=node.pid)
                v = (time.perf_counter() - t0) / calls * 1000
                t0 = time.perf_counter()
                for _ in range(calls):
                    _native.connection(ch, cp, sh, sp, 0, False)
                f = (time.perf_counter() - t0) / calls * 1000
                verify.append(v)
                floor.append(f)
                ratio.append(v / f)
                if psutil is not None:
                    t0 = time.perf_counter()
                    found = [c for c in psutil.net_connections("tcp")
                             if c.laddr and c.raddr and c.laddr.port == sp and c.raddr.port == cp]
                    net.append((time.perf_counter() - t0) * 1000)
                    assert found, "psutil did not find the connection"
        finally:
            sock.close()
    finally:
        _stop(node)
        _stop(noise)
    note = f"{counted} sockets in another process; {calls} calls per repetition"
    figures.append(figure(SECTION, f"verify_connection(pid=...), {size} other sockets", "ms",
                          verify, f"< {TARGET_MS} ms", lambda m: m < TARGET_MS, note))
    figures.append(figure(SECTION, "  floor: the kernel's answer alone (sock_diag, no /proc)",
                          "ms", floor, note="same connection, same repetition"))
    figures.append(figure(SECTION, "  verify_connection / floor", "x", ratio))
    if net:
        figures.append(figure(SECTION, "  psutil.net_connections() searched for the 4-tuple",
                              "ms", net, note="once per repetition"))
    details = {"sockets_in_other_process": int(counted), "calls": calls, "reps": reps,
               "pid": os.getpid()}
    return figures, details
