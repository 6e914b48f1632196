"""Verified connections (``twisted_patch.client``) against real server processes.

Each server is a child process (``/usr/bin/python3 -I``, stdlib only, so that
uid 65534 can run it too) that listens on 127.0.0.1, accepts (unless told not
to), and logs every byte it receives.  The attacks:

- the port check passed, then the server died and an impostor took its port:
  the *port* check (``owner.verify``) was right when it ran, the connection
  check refuses, names the impostor, and the impostor receives zero bytes; the
  control, a client that only checked the port, sends it the secret;
- an impostor of another uid (65534): refused by the default (own-uid) check;
  the control, the same server as our own uid, passes;
- a listener that never accepts: no process holds the connection, so a pid
  check cannot pass (it waits, then refuses); a uid check can;
- the Twisted client endpoint: the protocol never sees an unverified
  connection and its first write never leaves.
"""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_for
from support.owner import IS_ROOT
from twisted.internet import endpoints
from twisted.internet.protocol import Factory, Protocol

from twisted_patch import _native, owner
from twisted_patch.client import (
    UnverifiedConnection,
    VerifiedClientEndpoint,
    VerifiedHTTPConnection,
    server_end,
    verify_connection,
)

pytestmark = pytest.mark.skipif(_native.OWNER_BACKEND != "linux",
                                reason="real processes and /proc: Linux (Windows: tests/native)")

PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
NOBODY = 65534

_SERVER = r"""
import select, socket, sys
port, accept, log = int(sys.argv[1]), sys.argv[2] == "1", open(sys.argv[3], "a", buffering=1)
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port))
s.listen(16)
print(s.getsockname()[1], flush=True)
conns = []
while True:
    ready, _, _ = select.select(([s] if accept else []) + conns + [sys.stdin], [], [])
    for r in ready:
        if r is sys.stdin:
            sys.exit(0)
        if r is s:
            c, _ = s.accept(); conns.append(c); log.write("accepted\n")
            continue
        data = r.recv(65536)
        if data:
            log.write(f"bytes {len(data)}\n")
            r.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        else:
            conns.remove(r); r.close()
"""


class Server:
    def __init__(self, tmp: Path, port: int = 0, *, accept: bool = True,
                 uid: int | None = None) -> None:
        self.log = tmp / f"server-{time.monotonic_ns()}.log"
        self.log.write_text("")
        self.log.chmod(0o666)
        argv = [PYTHON, "-I", "-c", _SERVER, str(port), "1" if accept else "0", str(self.log)]
        if uid is not None:
            argv = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", *argv]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if not line.isdigit():
            err = self.proc.stderr.read() if self.proc.stderr else ""
            self.stop()
            raise RuntimeError(f"server did not start: {line} {err}")
        self.port = int(line)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def received(self) -> tuple[int, int]:
        """(connections accepted, bytes received), once the log stops changing."""
        def read() -> tuple[int, int]:
            lines = self.log.read_text().splitlines()
            return (lines.count("accepted"),
                    sum(int(x.split()[1]) for x in lines if x.startswith("bytes ")))
        last = read()
        while True:
            time.sleep(0.1)
            now = read()
            if now == last:
                return now
            last = now

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=15)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def logs() -> Iterator[Path]:
    """A folder uid 65534 can write its log into (pytest's own tmp is 0700)."""
    path = Path(tempfile.mkdtemp(prefix="twisted-patch-client-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for s in started:
        s.stop()


def _start(servers: list[Server], tmp: Path, **kwargs: Any) -> Server:
    s = Server(tmp, **kwargs)
    servers.append(s)
    return s


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def _swap(servers: list[Server], tmp: Path, first: Server, **kwargs: Any) -> Server:
    """``first`` dies; an impostor listens on its port."""
    first.stop()
    return _start(servers, tmp, port=first.port, **kwargs)


def test_the_server_process_verifies(servers: list[Server], logs: Path) -> None:
    srv = _start(servers, logs)
    with _connect(srv.port) as c:
        end = verify_connection(c, pid=srv.pid)
        assert end.state == "established" and srv.pid in end.socket.pids  # type: ignore
        assert end.socket is not None and end.socket.uid == os.getuid()
        assert verify_connection(c).socket is not None  # our own uid, the default


def test_another_process_is_refused_and_named(servers: list[Server], logs: Path) -> None:
    srv = _start(servers, logs)
    with _connect(srv.port) as c, pytest.raises(UnverifiedConnection) as info:
        verify_connection(c, pid=os.getpid())
    text = str(info.value)
    assert f"pid {srv.pid}" in text and f"expected pid {os.getpid()}" in text, text
    assert info.value.server_end is not None


def test_impostor_after_the_port_check_receives_zero_bytes(servers: list[Server],
                                                            logs: Path) -> None:
    real = _start(servers, logs)
    assert owner.verify("127.0.0.1", real.port, pid=real.pid).owned  # the port check passes
    impostor = _swap(servers, logs, real)
    conn = VerifiedHTTPConnection("127.0.0.1", impostor.port, pid=real.pid, timeout=10)
    with pytest.raises(UnverifiedConnection) as info:
        conn.request("PUT", "/uri", body=b"URI:SSK:secret-capability")
    assert f"pid {impostor.pid}" in str(info.value), info.value
    assert conn.sock is None  # closed unused
    assert impostor.received() == (1, 0)  # it accepted the connection and got nothing
    # control: a client that trusted the earlier port check sends the secret to it
    plain = http.client.HTTPConnection("127.0.0.1", impostor.port, timeout=10)
    plain.request("PUT", "/uri", body=b"URI:SSK:secret-capability")
    plain.getresponse().read()
    plain.close()
    accepted, received = impostor.received()
    assert accepted == 2 and received > 0


@pytest.mark.skipif(not IS_ROOT or shutil.which("setpriv") is None,
                    reason="needs root and setpriv to run the impostor as uid 65534")
def test_impostor_of_another_uid_is_refused(servers: list[Server], logs: Path) -> None:
    impostor = _start(servers, logs, uid=NOBODY)
    with _connect(impostor.port) as c, pytest.raises(UnverifiedConnection) as info:
        verify_connection(c)  # default: our own uid
    text = str(info.value)
    assert "nobody" in text or str(NOBODY) in text, text
    assert f"pid {impostor.pid}" in text, text  # the holder is named after the uid check
    # control: the same server as our own uid passes the same check
    mine = _start(servers, logs)
    with _connect(mine.port) as c:
        verify_connection(c)


def test_a_connection_nobody_accepts(servers: list[Server], logs: Path) -> None:
    lazy = _start(servers, logs, accept=False)
    with _connect(lazy.port) as c:
        end = server_end(c)
        assert end.state == "established" and not end.accepted
        with pytest.raises(UnverifiedConnection) as info:
            verify_connection(c, pid=lazy.pid, timeout=0.2)
        assert "not yet accepted" in str(info.value), info.value
        # the uid is the listener's from the start: a uid check needs no accept
        assert verify_connection(c, uid=os.getuid(), timeout=0).socket is not None


def test_a_closed_server_end_is_refused(servers: list[Server], logs: Path) -> None:
    srv = _start(servers, logs)
    with _connect(srv.port) as c:
        verify_connection(c, pid=srv.pid)
        srv.stop()
        with pytest.raises(UnverifiedConnection) as info:
            verify_connection(c, pid=srv.pid, timeout=0.2)
        assert "closing" in str(info.value) or "nobody" in str(info.value), info.value


def test_bad_arguments() -> None:
    with socket.socket() as s:
        with pytest.raises(ValueError, match="not connected"):
            verify_connection(s)
        with pytest.raises(ValueError, match="pid must be"):
            verify_connection(s, pid=0)
        with pytest.raises(ValueError, match="not both"):
            verify_connection(s, pid=1, uid=0)
        with pytest.raises(ValueError, match="timeout"):
            verify_connection(s, timeout=-1)
    with pytest.raises(TypeError):
        verify_connection("127.0.0.1:80")  # type: ignore[arg-type]


# --- Twisted ---------------------------------------------------------------------


class _Sink(Protocol):
    def connectionMade(self) -> None:
        self.factory.connections += 1  # type: ignore[attr-defined]

    def dataReceived(self, data: bytes) -> None:
        self.factory.received += data  # type: ignore[attr-defined]

    def connectionLost(self, reason: Any = None) -> None:
        self.factory.closed += 1  # type: ignore[attr-defined]


class _Talker(Protocol):
    def connectionMade(self) -> None:
        self.transport.write(b"URI:DIR2:secret")  # type: ignore[union-attr]


def _sink_port(reactor: Any) -> tuple[Any, Factory]:
    factory = Factory.forProtocol(_Sink)
    factory.connections = 0  # type: ignore[attr-defined]
    factory.received = b""  # type: ignore[attr-defined]
    factory.closed = 0  # type: ignore[attr-defined]
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    return port, factory


def test_endpoint_connects_a_verified_connection(reactor: Any) -> None:
    """The server is in this process (the same reactor): the check must not block it."""
    port, sink = _sink_port(reactor)
    try:
        inner = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
        proto = wait_for(VerifiedClientEndpoint(inner, pid=os.getpid(), reactor=reactor)
                         .connect(Factory.forProtocol(_Talker)))
        assert isinstance(proto, _Talker)
        deadline = time.monotonic() + 10
        from conftest import spin
        while sink.received != b"URI:DIR2:secret" and time.monotonic() < deadline:  # type: ignore
            spin(0.01)
        assert sink.received == b"URI:DIR2:secret"  # type: ignore[attr-defined]
        proto.transport.loseConnection()  # type: ignore[union-attr]
        while sink.closed < 1 and time.monotonic() < deadline:  # type: ignore[attr-defined]
            spin(0.01)
        spin(0.05)
    finally:
        wait_for(port.stopListening())


def test_endpoint_refuses_and_the_protocol_sends_nothing(reactor: Any) -> None:
    port, sink = _sink_port(reactor)
    built: list[Any] = []

    class Recording(Factory):
        def buildProtocol(self, addr: Any) -> Protocol:
            p = _Talker()
            built.append(p)
            return p

    try:
        inner = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
        d = VerifiedClientEndpoint(inner, pid=1, reactor=reactor).connect(Recording())
        with pytest.raises(UnverifiedConnection) as info:
            wait_for(d)
        assert f"pid {os.getpid()}" in str(info.value)  # we are the holder here
        from conftest import spin
        spin(0.2)
        assert built == []  # the protocol never existed
        assert sink.connections >= 1 and sink.received == b""  # type: ignore[attr-defined]
    finally:
        wait_for(port.stopListening())
