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
import socket
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


#: Whether socket_fds() can see this process's sockets (Linux's /proc/self/fd).
FD_TABLE = sys.platform.startswith("linux") and os.path.isdir("/proc/self/fd")


def socket_identity(handle: int) -> int:
    """What identifies a socket while it is open: Linux, its sockfs inode (the same
    socket under another fd number too); Windows, its SOCKET handle (Windows hands
    out no handle value of an open socket to another one)."""
    if sys.platform == "win32":
        return handle
    return os.fstat(handle).st_ino


def listening_hosts(port: int) -> set[str]:
    """The addresses with a listener on ``port``, as the OS reports them: Linux's ss;
    elsewhere the OS's table through the owner lookup (Windows: GetExtendedTcpTable)."""
    if sys.platform.startswith("linux") and shutil.which("ss"):
        out = os.popen(f"ss -Hltn '( sport = :{port} )'").read()
        return {line.split()[3].rsplit(":", 1)[0].strip("[]") for line in out.splitlines()}
    from twisted_patch import owner

    return {x.host for x in owner.who(None, port)}


def socket_fds() -> set[int]:
    """This process's socket fds (Linux: /proc/self/fd).  Windows has no fd table to
    read this way: empty there, so the leak checks that use it only run on Linux."""
    fds: set[int] = set()
    if not sys.platform.startswith("linux"):
        return fds
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


def setpriv_available() -> str | None:
    """None if we can run a process as another uid, else the reason we cannot."""
    if not hasattr(os, "geteuid"):
        return "Windows: no uid to switch to (setpriv is Linux's)"
    if os.geteuid() != 0:
        return "not root: cannot start a process as another uid"
    if shutil.which("setpriv") is None:
        return "setpriv (util-linux) is not installed"
    from twisted_patch.cli.attacks import can_switch_uid

    return can_switch_uid()


class Attacker:
    """A subprocess that tries to take host:port, serving b"attacker" if it gets it.

    The project's one attacker child (``twisted_patch.cli.attacker_child``); ended
    by its pid.  ``status`` is ``["LISTENING", uid]`` or ``["FAILED", errno]``.
    """

    def __init__(
        self, host: str, port: int, reuseaddr: bool, reuseport: bool, uid: int | None = None
    ) -> None:
        if reuseport and not hasattr(socket, "SO_REUSEPORT"):
            import pytest

            pytest.skip(f"this OS ({sys.platform}) has no SO_REUSEPORT")
        from twisted_patch.cli.attacks import AttackerProcess

        options = [name for name, on in (("reuseaddr", reuseaddr), ("reuseport", reuseport))
                   if on]
        spec = {"hosts": [host], "port": port, "options": options, "then": "serve",
                "reply": "attacker"}
        self._child = AttackerProcess(spec, uid=uid)
        self.proc = self._child.proc
        first = self._child.read()
        self.listening = bool(first.get("listening"))
        self.status = (["LISTENING", str(first.get("uid"))] if self.listening
                       else ["FAILED", str(first.get("errno"))])
        if self.listening and uid is not None:
            assert first.get("uid") == uid, first

    def stop(self) -> None:
        self._child.close()
