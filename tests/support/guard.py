"""Helpers for tests/test_guard.py and tests/test_probe.py.

- drive the global reactor until a Deferred fires (no pytest-twisted needed);
- an attacker in a subprocess (optionally as another uid via setpriv) that
  tries to bind + listen an address and, if it can, answers b"attacker";
- a blocking client that reads what the server it reached says first.

Every subprocess is ended by its pid.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from typing import Any

from conftest import wait_for
from twisted.internet import defer, protocol
from twisted.internet import reactor as _reactor

reactor: Any = _reactor

NOBODY = 65534
SAFETY_ITERATIONS = 20000  # a hang guard for fetch(), not a timing assertion


def wait(d: defer.Deferred[Any]) -> Any:
    """Iterate the reactor until d fires (conftest.wait_for); its result or failure."""
    return wait_for(d)


class Hello(protocol.Protocol):
    def connectionMade(self) -> None:
        assert self.factory is not None
        self.transport.write(self.factory.greeting)  # type: ignore[attr-defined]
        self.transport.loseConnection()


def hello_factory(greeting: bytes) -> protocol.Factory:
    f = protocol.Factory.forProtocol(Hello)
    f.greeting = greeting  # type: ignore[attr-defined]
    f.noisy = False
    return f


def fetch(host: str, port: int) -> bytes:
    """Connect and read until EOF, iterating the reactor so our ports can answer."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    c = socket.socket(family, socket.SOCK_STREAM)
    try:
        c.setblocking(False)
        err = c.connect_ex((host, port))
        data = b""
        for _ in range(SAFETY_ITERATIONS):
            reactor.iterate(0.002)
            try:
                chunk = c.recv(100)
            except BlockingIOError:
                continue
            except ConnectionRefusedError:
                raise
            if not chunk:
                return data
            data += chunk
        raise AssertionError(f"no answer from {host}:{port} (connect_ex={err})")
    finally:
        c.close()


def connect_refused(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    c = socket.socket(family, socket.SOCK_STREAM)
    try:
        c.connect((host, port))
    except ConnectionRefusedError:
        return True
    finally:
        c.close()
    return False


def socket_fds() -> set[int]:
    fds = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                fds.add(int(name))
        except OSError:
            pass
    return fds


def can_bind(host: str, port: int, reuseaddr: bool = False) -> bool:
    """Whether a fresh socket (no SO_REUSEADDR by default) can bind host:port now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        if family == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if reuseaddr:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


ATTACKER = r"""
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
reuseaddr, reuseport = sys.argv[3] == "1", sys.argv[4] == "1"
fam = socket.AF_INET6 if ":" in host else socket.AF_INET
s = socket.socket(fam, socket.SOCK_STREAM)
if fam == socket.AF_INET6:
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
if reuseaddr:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
if reuseport:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
try:
    s.bind((host, port))
    s.listen(5)
except OSError as e:
    print("FAILED", e.errno, flush=True)
    sys.exit(0)
import os
print("LISTENING", os.getuid(), flush=True)
while True:
    c, _ = s.accept()
    c.sendall(b"attacker")
    c.close()
"""


def setpriv_available() -> str | None:
    """None if we can run a process as another uid, else the reason we cannot."""
    if os.geteuid() != 0:
        return "not root: cannot start a process as another uid"
    if shutil.which("setpriv") is None:
        return "setpriv (util-linux) is not installed"
    from twisted_patch.cli.attacks import can_switch_uid

    return can_switch_uid()


class Attacker:
    """A subprocess that tries to take host:port; ended by its pid."""

    def __init__(
        self, host: str, port: int, reuseaddr: bool, reuseport: bool, uid: int | None = None
    ) -> None:
        python = sys.executable
        if uid is not None:
            # Our interpreter may live where another uid cannot run it (/root/.pyenv).
            from twisted_patch.cli.attacks import other_uid_python

            python = other_uid_python() or sys.executable
        argv = [python, "-I", "-S", "-c", ATTACKER, host, str(port),
                "1" if reuseaddr else "0", "1" if reuseport else "0"]
        if uid is not None:
            argv = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", *argv]
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, cwd="/", text=True
        )
        line = self.proc.stdout.readline().split() if self.proc.stdout else []
        self.listening = bool(line) and line[0] == "LISTENING"
        self.status = line
        if self.listening and uid is not None:
            assert line[1] == str(uid), line

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()
