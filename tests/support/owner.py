"""Helpers for the owner-lookup tests: listener processes started and ended by pid."""

from __future__ import annotations

import errno
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
    """A listener process on each of ``hosts`` on one port (0: a free one), kept until
    stopped; as another uid through setpriv when ``uid`` is given.  ``"dual:::"`` is
    ``[::]`` without IPV6_V6ONLY.  The project's one attacker child does the binds."""
    from twisted_patch.cli.attacks import AttackerProcess

    spec = {"hosts": list(hosts), "port": port, "then": "hold",
            "options": ["reuseport"] if reuseport else []}
    child = AttackerProcess(spec, uid=uid)
    first = child.read()
    if not first.get("listening"):
        child.close()
        if first.get("errno") == errno.EADDRINUSE:
            raise PortInUse(f"{hosts} port {port}")
        raise RuntimeError(f"listener {hosts} on {port} did not start: {first}")
    return Child(child.proc, int(first["port"]))


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
