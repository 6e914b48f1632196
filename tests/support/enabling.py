"""Helpers for the tests of the ways to turn twisted-patch on (issue 5).

Every process a test starts is registered with :class:`Processes` and ended by
its pid when the test finishes.
"""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
PYTHON = sys.executable


def tool(name: str) -> str:
    """A console script of the venv that runs the tests (twistd, trial, twisted-patch)."""
    path = BIN / name
    assert path.exists(), f"{path} is missing: run the tests with the venv's pytest"
    return str(path)


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def run_python(code: str, cwd: Path, env: dict[str, str] | None = None,
               timeout: float = 120, user: int | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter (as uid ``user`` through setpriv if given)."""
    cmd = [PYTHON, "-c", code]
    if user is not None:
        cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *cmd]
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True,
                          timeout=timeout)


class Process:
    """A started subprocess whose merged stdout/stderr is read by a thread."""

    def __init__(self, cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.popen = subprocess.Popen(cmd, cwd=cwd, env=full_env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True)
        self.pid = self.popen.pid
        self.lines: list[str] = []
        self._eof = False
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        with self.popen.stdout:
            for line in self.popen.stdout:
                self._queue.put(line)
        self._queue.put(None)

    def wait_for_line(self, needle: str, timeout: float = 60) -> str:
        """The first output line containing ``needle``; fails if the process ends first."""
        for line in self.lines:
            if needle in line:
                return line
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no line with {needle!r} in {timeout} s:\n{self.output()}")
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                self._eof = True
                raise AssertionError(f"process ended without {needle!r}:\n{self.output()}")
            self.lines.append(line)
            if needle in line:
                return line

    def wait(self, timeout: float = 60) -> int:
        rc = self.popen.wait(timeout=timeout)
        self.drain()
        return rc

    def drain(self) -> None:
        """Collect the rest of the output of an ended process."""
        while not self._eof:
            try:
                line = self._queue.get(timeout=15)
            except queue.Empty:
                return
            if line is None:
                self._eof = True
                return
            self.lines.append(line)

    def output(self) -> str:
        return "".join(self.lines)

    def stop(self) -> None:
        """End it by pid: SIGTERM, then SIGKILL if it does not exit."""
        if self.popen.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.popen.wait(timeout=15)
        self.drain()


class Processes:
    def __init__(self) -> None:
        self.started: list[Process] = []

    def start(self, cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> Process:
        p = Process(cmd, cwd, env)
        self.started.append(p)
        return p

    def stop_all(self) -> None:
        for p in self.started:
            p.stop()


def listening_inodes(port: int, table: str = "/proc/net/tcp") -> dict[int, str]:
    """inode -> local address of every socket listening on ``port`` (Linux /proc)."""
    found: dict[int, str] = {}
    with open(table) as f:
        next(f)
        for row in f:
            fields = row.split()
            local, state, inode = fields[1], fields[3], int(fields[9])
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                found[inode] = local
    return found


def socket_fds_of(pid: int) -> dict[int, int]:
    """inode -> fd number of every socket process ``pid`` holds (Linux /proc)."""
    result: dict[int, int] = {}
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue
        if target.startswith("socket:["):
            result[int(target[8:-1])] = int(name)
    return result


def fd_flags(pid: int, fd: int) -> int:
    with open(f"/proc/{pid}/fdinfo/{fd}") as f:
        for line in f:
            if line.startswith("flags:"):
                return int(line.split()[1], 8)
    raise AssertionError(f"no flags in /proc/{pid}/fdinfo/{fd}")


def try_reuseport_bind(host: str, port: int) -> OSError | None:
    """What a same-user attacker tries: SO_REUSEADDR + SO_REUSEPORT, bind host:port.

    Returns None if the bind succeeded (the port is hijackable), else the error.
    """
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind((host, port))
    except OSError as e:
        return e
    finally:
        s.close()
    return None


def summary(result: Any) -> str:
    return f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
