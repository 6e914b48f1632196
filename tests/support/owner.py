"""Helpers for the owner-lookup tests: listener processes started and ended by pid."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
SETPRIV = shutil.which("setpriv")
NOBODY = 65534

# A child that listens on each (host, options) on one port (0: pick a free one
# with the first socket), prints the port, then waits for stdin to close.
_LISTENER = r"""
import socket, sys
port = int(sys.argv[1]); reuseport = sys.argv[2] == "1"; socks = []
pick = port == 0
for host in sys.argv[3:]:
    dual = host.startswith("dual:")  # "dual:::" is [::] without IPV6_V6ONLY
    host = host[5:] if dual else host
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    if family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if dual else 1)
    if reuseport:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        s.bind((host, port))
    except OSError as e:
        print("in-use" if e.errno == 98 else repr(e), flush=True); sys.exit(1)
    s.listen(5); port = s.getsockname()[1]; socks.append(s)
print(port, flush=True)
sys.stdin.read()
"""


@dataclass
class Child:
    proc: subprocess.Popen[str]
    port: int

    @property
    def pid(self) -> int:
        return self.proc.pid

    def comm(self) -> str:
        with open(f"/proc/{self.pid}/comm") as f:
            return f.read().strip()


def start_listener(
    hosts: Sequence[str], port: int = 0, *, uid: int | None = None, reuseport: bool = False
) -> Child:
    """Start a listener process; as another uid through setpriv when ``uid`` is given."""
    python = sys.executable
    if uid is not None:
        # Our interpreter may live where another uid cannot run it (/root/.pyenv).
        from twisted_patch.cli.attacks import other_uid_python

        python = other_uid_python() or sys.executable
    cmd = [python, "-I", "-c", _LISTENER, str(port), "1" if reuseport else "0", *hosts]
    if uid is not None:
        assert SETPRIV is not None
        cmd = [SETPRIV, f"--reuid={uid}", f"--regid={uid}", "--clear-groups", *cmd]
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd="/",
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.isdigit():
        assert proc.stderr is not None
        error = line + proc.stderr.read() if line != "in-use" else line
        stop(Child(proc, 0))
        if error == "in-use":
            raise PortInUse(f"{hosts} port {port}")
        raise RuntimeError(f"listener {hosts} on {port} did not start: {error}")
    return Child(proc, int(line))


class PortInUse(RuntimeError):
    pass


def stop(child: Child) -> None:
    """End the child by its pid and reap it."""
    if child.proc.poll() is None:
        child.proc.kill()
    child.proc.wait()
    for stream in (child.proc.stdin, child.proc.stdout, child.proc.stderr):
        if stream is not None:
            stream.close()


@contextmanager
def listening(
    hosts: Sequence[str], port: int = 0, *, uid: int | None = None, reuseport: bool = False
) -> Iterator[Child]:
    child = start_listener(hosts, port, uid=uid, reuseport=reuseport)
    try:
        yield child
    finally:
        stop(child)


@contextmanager
def listening_pair(
    first: Sequence[str],
    second: Sequence[str],
    *,
    uid: int | None = None,
    reuseport: bool = False,
) -> Iterator[tuple[Child, Child]]:
    """Two listener processes on one port (the second as ``uid``).  The port is picked
    by the kernel for the first; if another program on this host holds it for the
    second's addresses, try another port."""
    for _ in range(50):
        a = start_listener(first, reuseport=reuseport)
        try:
            b = start_listener(second, a.port, uid=uid, reuseport=reuseport)
        except PortInUse:
            stop(a)
            continue
        try:
            yield a, b
        finally:
            stop(b)
            stop(a)
        return
    raise RuntimeError("no port free for both listeners in 50 tries")


def run_cli(*args: str, cwd: str = "/", uid: int | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m twisted_patch ARGS`` with the installed package (never the source tree)."""
    cmd = [sys.executable, "-I", "-m", "twisted_patch", *args]
    if uid is not None:
        assert SETPRIV is not None
        cmd = [SETPRIV, f"--reuid={uid}", f"--regid={uid}", "--clear-groups", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=120)
