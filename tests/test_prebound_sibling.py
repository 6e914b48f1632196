"""Issue 13.2: a foreign socket bound (not listening) on an address we listen on or
guard stops the start, naming its holder.

uid 65534 binds an address of the port -- with SO_REUSEADDR or without -- and does
not listen, before the server starts.  Such a socket receives nothing, but it is a
placeholder: the moment the server stops, its holder can listen() and take the
address (and a client of ``localhost``).  With SO_REUSEADDR on both sides, Linux
lets the server's bind succeed beside it, so the start has to look for it.

The control shows the placeholder is real: once the plain Twisted port (or ours,
were it allowed to start) stops, the attacker's listen() succeeds on it.
"""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest
from support import attackers as at
from twisted.internet import defer, protocol
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import CannotListenError

pytestmark = pytest.mark.skipif(at.as_nobody_reason() is not None,
                                reason=at.as_nobody_reason() or "")

SAFETY = 30.0


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


def outcome(d: defer.Deferred[Any]) -> Any:
    box: list[Any] = []
    d.addBoth(box.append)
    deadline = time.monotonic() + SAFETY
    while not box:
        assert time.monotonic() < deadline, "Deferred did not fire"
        _reactor().iterate(0.001)
    return box[0]


def start(description: str) -> Any:
    f = protocol.Factory.forProtocol(protocol.Protocol)
    f.noisy = False
    return outcome(serverFromString(_reactor(), description).listen(f))


# (server endpoint, attacker's address, attacker's v6only): every address that
# overlaps what the server listens on or guards.
CASES = [
    ("xtcp:{p}:interface=127.0.0.1", "::1", 1),  # the case: the serve guard's address
    ("xtcp:{p}:interface=127.0.0.1", "127.0.0.1", 1),  # the listener's own address
    ("xtcp:{p}:interface=127.0.0.1", "0.0.0.0", 1),  # a wildcard over it
    ("xtcp:{p}:interface=127.0.0.1", "::", 1),  # the guard family's wildcard
    ("xtcp6:{p}:interface=\\:\\:1", "127.0.0.1", 1),
    ("xtcp:{p}", "::", 1),  # the refuse guard's address
    ("xtcp:{p}", "127.0.0.1", 1),  # a specific address inside the wildcard
    ("xtcp6:{p}", "0.0.0.0", 1),
]


@pytest.mark.xfail(strict=True, reason="issue 13.2: bound, non-listening sockets are invisible "
                   "to the start (and to the holder lookup)")
@pytest.mark.parametrize("reuseaddr", [True, False], ids=["SO_REUSEADDR", "no-option"])
@pytest.mark.parametrize(("server", "host", "v6only"), CASES,
                         ids=[f"{s.split(':')[0]}-{s.rsplit('=', 1)[-1] if '=' in s else 'any'}"
                              f"-vs-{h}" for s, h, _ in CASES])
def test_prebound_placeholder_stops_the_start(server: str, host: str, v6only: int,
                                              reuseaddr: bool) -> None:
    port = at.free_port()
    holder = at.Holder(host, port, listen=False, reuseaddr=reuseaddr, v6only=v6only)
    try:
        result = start(server.format(p=port))
        if not isinstance(getattr(result, "value", None), CannotListenError):
            if hasattr(result, "stopListening"):
                outcome(defer.maybeDeferred(result.stopListening))
            pytest.fail(f"{server.format(p=port)} started beside uid 65534's socket bound on "
                        f"{host}:{port}: {result!r}")
        message = str(result.value)
        assert f"pid {holder.pid}" in message, message
        assert "nobody" in message or "uid 65534" in message, message
    finally:
        holder.stop()


def test_control_the_placeholder_takes_the_address_later() -> None:
    """Against a plain Twisted port on 127.0.0.1, uid 65534's socket bound on [::1]:P
    beforehand (SO_REUSEADDR) listens there and receives a client of [::1]:P."""
    port = at.free_port()
    code = (
        "import socket,sys,os\n"
        "s=socket.socket(socket.AF_INET6)\n"
        "s.setsockopt(socket.IPPROTO_IPV6,socket.IPV6_V6ONLY,1)\n"
        "s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
        f"s.bind(('::1',{port}))\n"
        "print('bound',flush=True)\n"
        "sys.stdin.readline()\n"
        "s.listen(1)\n"
        "print('listening',flush=True)\n"
        "c,_=s.accept(); c.sendall(b'attacker'); c.close()\n"
    )
    import subprocess

    proc = subprocess.Popen(at.nobody([at.SYSTEM_PYTHON, "-I", "-S", "-c", code]),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd="/")
    try:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline().strip() == "bound"
        f = protocol.Factory.forProtocol(protocol.Protocol)
        f.noisy = False
        plain = _reactor().listenTCP(port, f, interface="127.0.0.1")
        outcome(defer.maybeDeferred(plain.stopListening))
        proc.stdin.write("go\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "listening"
        c = socket.create_connection(("::1", port), timeout=SAFETY)
        try:
            assert c.recv(100) == b"attacker"
        finally:
            c.close()
    finally:
        proc.kill()
        proc.wait()
