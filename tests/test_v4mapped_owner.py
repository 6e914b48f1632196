"""Issue 13.4: IPv4-mapped and dual-stack IPv6 listeners are listeners of the IPv4
address.

uid 65534 listens on ``[::]:P`` with IPV6_V6ONLY=0, or on ``[::ffff:0.0.0.0]:P``
(the IPv4 wildcard, mapped) or ``[::ffff:127.0.0.1]:P``.  Each receives clients of
127.0.0.1:P (the control below connects and reaches it), so ``who 127.0.0.1:P``
must list it, ``verify 127.0.0.1:P`` must exit 1 (someone else listens) -- not 2
(nothing listens) -- and a server that cannot start there names it.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from support import attackers as at
from twisted.internet import protocol
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import CannotListenError

pytestmark = pytest.mark.skipif(at.as_nobody_reason() is not None,
                                reason=at.as_nobody_reason() or "")

MAPPED = ["::", "::ffff:0.0.0.0", "::ffff:127.0.0.1"]


@pytest.fixture(params=MAPPED)
def holder(request: pytest.FixtureRequest) -> Iterator[at.Holder]:
    """uid 65534 listening with IPV6_V6ONLY=0 on one of MAPPED, on a free port."""
    h = at.Holder(request.param, at.free_port(), listen=True, v6only=0)
    try:
        yield h
    finally:
        h.stop()


def test_control_the_mapped_listener_receives_ipv4_clients(holder: at.Holder) -> None:
    port = holder.port
    c = socket.create_connection(("127.0.0.1", port), timeout=30)
    c.close()


def test_who_and_verify_see_it(holder: at.Holder) -> None:
    port = holder.port
    who = at.cli("who", f"127.0.0.1:{port}")
    assert who.returncode == 0 and str(holder.pid) in who.stdout, who.stdout + who.stderr
    verify = at.cli("verify", f"127.0.0.1:{port}")
    assert verify.returncode == 1, verify.stdout + verify.stderr
    assert str(holder.pid) in verify.stdout, verify.stdout


def test_the_server_names_it(holder: at.Holder) -> None:
    port = holder.port
    f = protocol.Factory.forProtocol(protocol.Protocol)
    from twisted.internet import reactor

    d = serverFromString(reactor, f"xtcp:{port}:interface=127.0.0.1").listen(f)
    box: list[Any] = []
    d.addBoth(box.append)
    deadline = time.monotonic() + 30
    while not box and time.monotonic() < deadline:
        reactor.iterate(0.001)
    assert box and isinstance(getattr(box[0], "value", None), CannotListenError), box
    assert f"pid {holder.pid}" in str(box[0].value), str(box[0].value)
