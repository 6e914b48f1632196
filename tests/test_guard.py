"""The address-family guard: 127.0.0.1 <-> [::1], 0.0.0.0 <-> [::] (v6-only).

Every attack test runs the same attacker against a plain Twisted port of the
same kind first and asserts it IS shadowed (its listen succeeds and a client
of [::1]:P reaches the attacker), then against ours and asserts it is not.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from support.guard import (
    FD_TABLE,
    NOBODY,
    Attacker,
    can_bind,
    connect_refused,
    fetch,
    hello_factory,
    listening_hosts,
    reactor,
    setpriv_available,
    socket_fds,
    socket_identity,
    wait,
)
from support.windows import exclusive_refusal_errno, holder_text
from test_iocp_port import iocp_support  # noqa: F401 -- a fixture, used below
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import CannotListenError
from twisted.logger import globalLogPublisher

from twisted_patch import ExclusivePort, ExclusiveTCPServerEndpoint, _sockets, listen_exclusive
from twisted_patch.endpoint import parse_server_description
from twisted_patch.port import guards as port_module
from twisted_patch.port.guards import PORT_ZERO_ATTEMPTS, default_guard, resolve_guard

OPTIONS = [(False, False), (True, False), (False, True), (True, True)]
OPTION_IDS = ["no-option", "SO_REUSEADDR", "SO_REUSEPORT", "SO_REUSEADDR+SO_REUSEPORT"]

# (our address, the attacker's address of the other family, the address a client uses)
SHADOWS = [
    ("127.0.0.1", "::1", "::1"),
    ("0.0.0.0", "::", "::1"),
    ("::1", "127.0.0.1", "127.0.0.1"),
]


@pytest.fixture
def cleanup() -> Iterator[list[Any]]:
    """Ports and attackers to end after the test, whatever happens."""
    items: list[Any] = []
    yield items
    for item in reversed(items):
        if isinstance(item, Attacker):
            item.stop()
        elif getattr(item, "connected", False):
            wait(item.stopListening())
    assert port_module.guard_sockets() == {}


def _uid_or_skip(uid_kind: str) -> Any:
    if uid_kind == "same-uid":
        return None
    reason = setpriv_available()
    if reason:
        pytest.skip(reason)
    return NOBODY


@pytest.mark.parametrize("reuse", OPTIONS, ids=OPTION_IDS)
@pytest.mark.parametrize("uid_kind", ["same-uid", "other-uid"])
@pytest.mark.parametrize("ours,attack,client", SHADOWS, ids=[s[0] for s in SHADOWS])
def test_guard_blocks_sibling_attacker(
    cleanup: list[Any], ours: str, attack: str, client: str, uid_kind: str, reuse: tuple[bool, bool]
) -> None:
    uid = _uid_or_skip(uid_kind)
    reuseaddr, reuseport = reuse

    # 1. A plain Twisted port does not protect the other family: the attacker
    #    listens on it and a client of `localhost` over that family reaches it.
    #    (Other programs on a busy host may hold the OS-chosen number in the
    #    other family: then try a fresh port, a few times.)
    for _ in range(5):
        plain = reactor.listenTCP(0, hello_factory(b"plain"), interface=ours)
        cleanup.append(plain)
        p = plain.getHost().port
        a = Attacker(attack, p, reuseaddr, reuseport, uid)
        cleanup.append(a)
        if a.listening:
            break
        wait(plain.stopListening())
    assert a.listening, f"attacker could not shadow a plain Twisted port: {a.status}"
    assert fetch(client, p) == b"attacker"
    a.stop()
    wait(plain.stopListening())

    # 2. Ours: the same attacker cannot bind the other family.
    mine = listen_exclusive(0, hello_factory(b"ours"), interface=ours, reactor=reactor)
    cleanup.append(mine)
    p = mine.getHost().port
    b = Attacker(attack, p, reuseaddr, reuseport, uid)
    cleanup.append(b)
    assert not b.listening, f"attacker took {attack} port {p} over our guard: {b.status}"
    assert b.status[0] == "FAILED"
    assert int(b.status[1]) == exclusive_refusal_errno(attack, reuseaddr), b.status


def test_defaults_per_address() -> None:
    assert default_guard(socket.AF_INET, "127.0.0.1") == "serve"
    assert default_guard(socket.AF_INET6, "::1") == "serve"
    assert default_guard(socket.AF_INET, "0.0.0.0") == "refuse"
    assert default_guard(socket.AF_INET6, "::") == "refuse"
    assert default_guard(socket.AF_INET, "127.0.0.2") == "no"
    with pytest.raises(ValueError, match="guard=serve needs an address with a sibling"):
        resolve_guard("serve", socket.AF_INET, "127.0.0.2")
    assert resolve_guard("no", socket.AF_INET, "127.0.0.2") == "no"


def test_serve_reaches_our_factory_on_both_families(cleanup: list[Any]) -> None:
    mine = listen_exclusive(0, hello_factory(b"ours"), interface="127.0.0.1", reactor=reactor)
    cleanup.append(mine)
    p = mine.getHost().port
    assert mine.guard_mode == "serve"
    assert mine.sibling is not None and mine.sibling.getHost().host == "::1"
    assert mine.sibling.getHost().port == p  # port 0: the sibling got the OS's number
    assert fetch("127.0.0.1", p) == b"ours"
    assert fetch("::1", p) == b"ours"


@pytest.mark.parametrize(
    "interface,guard,client",
    [("127.0.0.1", "refuse", "::1"), ("0.0.0.0", None, "::1"), ("::", None, "127.0.0.1")],
)
def test_refuse_guard_refuses_connections(
    cleanup: list[Any], interface: str, guard: Any, client: str
) -> None:
    mine = listen_exclusive(
        0, hello_factory(b"ours"), interface=interface, reactor=reactor, guard=guard
    )
    cleanup.append(mine)
    p = mine.getHost().port
    assert mine.guard_mode == "refuse" and mine.sibling is None
    assert connect_refused(client, p)
    assert not can_bind(client, p, reuseaddr=True)


def test_guard_sockets_gone_after_stop_listening(cleanup: list[Any]) -> None:
    before = socket_fds()
    serve = listen_exclusive(0, hello_factory(b"a"), interface="127.0.0.1", reactor=reactor)
    refuse = listen_exclusive(0, hello_factory(b"b"), interface="0.0.0.0", reactor=reactor)
    p1, p2 = serve.getHost().port, refuse.getHost().port
    if FD_TABLE:
        assert len(socket_fds() - before) == 4  # two listeners, one serving sibling, one guard
    assert listening_hosts(p1) == {"127.0.0.1", "::1"}
    assert listening_hosts(p2) == {"0.0.0.0"}  # the refuse guard is bound, not listening
    d = serve.stopListening()
    assert d is not None
    wait(d)
    wait(refuse.stopListening())
    assert socket_fds() == before
    assert port_module.guard_sockets() == {}
    assert listening_hosts(p1) == listening_hosts(p2) == set()
    # nobody holds the guard addresses any more: a bind without SO_REUSEADDR works
    assert can_bind("::1", p1) and can_bind("::", p2)
    assert can_bind("127.0.0.1", p1) and can_bind("0.0.0.0", p2)


def test_stop_listening_fires_after_both_sockets_closed(cleanup: list[Any]) -> None:
    mine = listen_exclusive(0, hello_factory(b"ours"), interface="::1", reactor=reactor)
    sibling = mine.sibling
    assert sibling is not None and sibling.getHost().host == "127.0.0.1"
    seen: list[tuple[bool, bool]] = []
    d = mine.stopListening()
    assert d is not None
    d.addCallback(lambda _: seen.append((mine.connected, sibling.connected)))
    wait(d)
    assert seen == [(False, False)]


def test_takeover_of_serve_guard(cleanup: list[Any]) -> None:
    first = listen_exclusive(0, hello_factory(b"first"), interface="127.0.0.1", reactor=reactor)
    cleanup.append(first)
    p = first.getHost().port
    assert first.sibling is not None
    inode = socket_identity(first.sibling.fileno())
    second = wait(
        serverFromString(reactor, f"xtcp:{p}:interface=\\:\\:1").listen(hello_factory(b"second"))
    )
    cleanup.append(second)
    assert socket_identity(second.fileno()) == inode  # the very same socket, never closed
    assert first.sibling is None
    assert fetch("::1", p) == b"second" and fetch("127.0.0.1", p) == b"first"
    assert port_module.guard_sockets() == {}
    # the second one stops: the first guards its sibling again
    wait(second.stopListening())
    assert port_module.guard_sockets() == {(socket.AF_INET6, "::1", p): "serve"}
    assert fetch("::1", p) == b"first"


def test_takeover_of_refuse_guard(cleanup: list[Any]) -> None:
    first = listen_exclusive(0, hello_factory(b"first"), interface="0.0.0.0", reactor=reactor)
    cleanup.append(first)
    p = first.getHost().port
    assert port_module.guard_sockets() == {(socket.AF_INET6, "::", p): "refuse"}
    guard = port_module.registry.guard_of(first)
    assert guard is not None and guard.socket is not None
    guard_inode = socket_identity(guard.socket.fileno())
    second = wait(serverFromString(reactor, f"xtcp6:{p}").listen(hello_factory(b"second")))
    cleanup.append(second)
    assert socket_identity(second.fileno()) == guard_inode
    assert fetch("::1", p) == b"second"
    # first stops: its socket becomes second's guard of 0.0.0.0 (refuse: the default for
    # a wildcard), never closed.  first asked for port 0, and Linux releases an
    # OS-chosen port when such a socket stops listening, so it stays listening and
    # closes every connection at once (docs/guard.rst, "No instant free")
    wait(first.stopListening())
    assert port_module.guard_sockets() == {(socket.AF_INET, "0.0.0.0", p): "refuse"}
    assert fetch("127.0.0.1", p) == b""
    assert not can_bind("0.0.0.0", p, reuseaddr=True)


@pytest.mark.parametrize("ours,sibling", [("127.0.0.1", "::1"), ("0.0.0.0", "::")])
def test_sibling_already_taken_fails_and_leaks_nothing(
    cleanup: list[Any], ours: str, sibling: str
) -> None:
    holder = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    holder.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    holder.bind((sibling, 0))
    holder.listen(1)
    try:
        p = holder.getsockname()[1]
        before = socket_fds()
        with pytest.raises(CannotListenError) as info:
            listen_exclusive(p, hello_factory(b"ours"), interface=ours, reactor=reactor)
        text = str(info.value.socketError)
        assert f"[{sibling}]:{p} is {holder_text(os.getpid())}" in text  # the holder
        assert socket_fds() == before
        assert can_bind(ours, p)  # our first socket was closed
        # guard=no: the user accepts the shadow; the listen works
        mine = listen_exclusive(
            p, hello_factory(b"ours"), interface=ours, reactor=reactor, guard="no"
        )
        cleanup.append(mine)
        assert mine.sibling is None and port_module.guard_sockets() == {}
    finally:
        holder.close()


def test_port_zero_retries_when_sibling_number_taken(
    cleanup: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The OS's number for the first socket is taken on ::1: a fresh port is tried."""
    holder = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    holder.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    holder.bind(("::1", 0))
    holder.listen(1)
    taken = holder.getsockname()[1]
    real_open = _sockets.listen
    calls: list[int] = []

    def first_on_taken(interface: str, port: int, backlog: int, family: int) -> socket.socket:
        calls.append(port)
        return real_open(interface, taken if len(calls) == 1 else port, backlog, family)

    monkeypatch.setattr(_sockets, "listen", first_on_taken)
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        mine = listen_exclusive(0, hello_factory(b"ours"), interface="127.0.0.1", reactor=reactor)
        cleanup.append(mine)
    finally:
        globalLogPublisher.removeObserver(events.append)
        holder.close()
    # the second call gets a fresh OS-chosen port (a third one if, on this busy
    # machine, that number was taken on ::1 as well)
    assert len(calls) >= 2 and set(calls) == {0}
    p = mine.getHost().port
    assert p != taken and mine.sibling is not None and mine.sibling.getHost().port == p
    listened = [e for e in events if "retried_ports" in e]
    assert listened and listened[0]["retried_ports"][0] == taken
    assert listened[0]["attempts"] == PORT_ZERO_ATTEMPTS


def test_port_zero_gives_up_after_bounded_attempts(monkeypatch: pytest.MonkeyPatch) -> None:
    holder = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    holder.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    holder.bind(("::1", 0))
    holder.listen(1)
    taken = holder.getsockname()[1]
    real_open = _sockets.listen
    calls: list[int] = []

    def always_taken(interface: str, port: int, backlog: int, family: int) -> socket.socket:
        calls.append(port)
        return real_open(interface, taken, backlog, family)

    monkeypatch.setattr(_sockets, "listen", always_taken)
    before = socket_fds() - {holder.fileno()}
    try:
        with pytest.raises(CannotListenError, match="already in use"):
            listen_exclusive(0, hello_factory(b"ours"), interface="127.0.0.1", reactor=reactor)
        assert len(calls) == PORT_ZERO_ATTEMPTS
        assert socket_fds() - {holder.fileno()} == before
    finally:
        holder.close()


def test_parser_guard_and_probe_keywords() -> None:
    f = parse_server_description("xtcp", "", ("0",), {"interface": "127.0.0.1", "guard": "refuse"})
    assert f["guard"] == "refuse"
    f = parse_server_description("xtcp6", "::", ("0",), {"probe": "warn"})
    assert f["probe"] == "warn" and "guard" not in f
    with pytest.raises(ValueError, match="xtcp: guard must be one of serve, refuse, no"):
        parse_server_description("xtcp", "", ("0",), {"guard": "maybe"})
    with pytest.raises(ValueError, match="xtcp: probe must be one of strict, warn, off"):
        parse_server_description("xtcp", "", ("0",), {"probe": "loud"})
    with pytest.raises(ValueError, match="guard=serve needs an address with a sibling"):
        serverFromString(reactor, "xtcp:0:interface=127.0.0.2:guard=serve")
    ep = serverFromString(reactor, "xtcp:0:interface=127.0.0.1:guard=no:probe=off")
    assert isinstance(ep, ExclusiveTCPServerEndpoint)
    assert "guard=no probe=off" in repr(ep)
    with pytest.raises(ValueError, match="guard must be one of"):
        ExclusivePort(0, hello_factory(b"x"), guard="yes")


def test_other_address_gets_no_guard(cleanup: list[Any]) -> None:
    mine = listen_exclusive(0, hello_factory(b"ours"), interface="127.0.0.2", reactor=reactor)
    cleanup.append(mine)
    assert mine.guard_mode == "no" and port_module.guard_sockets() == {}


@pytest.mark.usefixtures("iocp_support")
def test_iocp_port_has_the_guard_and_the_probe() -> None:
    """The IOCP reactor's port class runs the same listening sequence: the guard (a
    second IOCP port serving ::1, registered with the reactor like the first), the
    self-probe, and both closed together."""
    from test_iocp_port import CountingFactory, FakeIOCPReactor

    reactor_ = FakeIOCPReactor()
    factory = CountingFactory()
    port = listen_exclusive(0, factory, interface="127.0.0.1", reactor=reactor_)
    try:
        p = port.getHost().port
        assert type(port).__name__ == "IOCPExclusivePort"
        assert type(port.sibling).__name__ == "IOCPExclusivePort"
        assert port_module.guard_sockets() == {(socket.AF_INET6, "::1", p): "serve"}
        assert reactor_.active == [port, port.sibling]
        assert port.socket.fileno() in reactor_.registered
        assert port.sibling.socket.fileno() in reactor_.registered
        assert port.probe_results and not [a for a in port.probe_results if a.hijackable]
        refuse = listen_exclusive(0, CountingFactory(), interface="0.0.0.0", reactor=reactor_)
        assert port_module.guard_sockets()[(socket.AF_INET6, "::", refuse.getHost().port)] \
            == "refuse"
        refuse.connectionLost(None)
    finally:
        port.connectionLost(None)
        for skt in reactor_.created:
            skt.close()
    assert reactor_.active == []
    assert port_module.guard_sockets() == {}
    assert factory.stops == 2  # ours and the sibling's (same factory)


def test_direct_connection_lost_closes_the_guard_and_stops_the_factory_last() -> None:
    """reactor.disconnectAll() at shutdown calls connectionLost directly (no
    stopListening): the guard closes too, our factory stops last (so stopFactory's
    exception reaches the caller, as with tcp.Port), and a second call is harmless."""
    from twisted.internet.protocol import Factory

    class Stopping(Factory):
        def stopFactory(self) -> None:
            raise RuntimeError("stopFactory")

    before = socket_fds()
    serve = listen_exclusive(0, Stopping(), interface="127.0.0.1", reactor=reactor)
    refuse = listen_exclusive(0, hello_factory(b"x"), interface="0.0.0.0", reactor=reactor)
    sibling = serve.sibling
    assert sibling is not None
    with pytest.raises(RuntimeError, match="stopFactory"):
        serve.connectionLost(None)
    refuse.connectionLost(None)
    assert not sibling.connected
    sibling.connectionLost(None)  # again, as disconnectAll may: no error
    serve.connectionLost(None)
    assert port_module.guard_sockets() == {}
    assert socket_fds() == before
