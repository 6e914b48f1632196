"""Issue 13.1: no instant in which an address this process guards is free.

A pair of listeners on one port -- the loopback pair ``xtcp:P:interface=127.0.0.1``
+ ``xtcp6:P:interface=\\:\\:1`` or the wildcard pair ``xtcp:P`` (0.0.0.0) +
``xtcp6:P`` ([::] v6-only), the second taking over the first's guard -- and one of
the two is stopped with ``stopListening()``.  The survivor must go on holding the
stopped one's address (its guard).  An attacker of another uid (uid 65534,
tests/support/spinner.c) spins on ``bind()`` of exactly that address, with
SO_REUSEADDR, from just before the stop until the stop's Deferred has fired: any
bind that succeeds is a round won by the attacker (it got node.url's address, or all
of IPv4).

The control shows the attacker is fast enough to win the race when there is one: the
same spinner against the re-create path (close the socket, then bind a new one for
the guard, as the survivor used to do) wins rounds.
"""

from __future__ import annotations

import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_for
from support import attackers as at
from twisted.internet import defer, protocol
from twisted.internet.endpoints import serverFromString

pytestmark = pytest.mark.skipif(at.as_nobody_reason() is not None,
                                reason=at.as_nobody_reason() or "")

ROUNDS = int(__import__("os").environ.get("XB_ROUNDS", "1000"))
CONTROL_ROUNDS = 1000
SAFETY = 30.0  # seconds: a hang guard for one Deferred, never a timing assertion

# shape -> (first endpoint, second endpoint, (family, host) of each listener)
SHAPES: dict[str, tuple[str, str, str, str]] = {
    "loopback": ("xtcp:{p}:interface=127.0.0.1", "xtcp6:{p}:interface=\\:\\:1",
                 "127.0.0.1", "::1"),
    "wildcard": ("xtcp:{p}", "xtcp6:{p}", "0.0.0.0", "::"),
}


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


def wait(d: defer.Deferred[Any]) -> Any:
    return wait_for(d, SAFETY)


class _Hello(protocol.Protocol):
    def connectionMade(self) -> None:
        self.transport.write(b"server")
        self.transport.loseConnection()


def factory() -> protocol.Factory:
    f = protocol.Factory.forProtocol(_Hello)
    f.noisy = False
    return f


@pytest.fixture(scope="module")
def spinner_binary() -> Iterator[Path]:
    directory = at.world_readable_dir("xb-spinner-")
    try:
        yield at.build_spinner(directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def listen(description: str | Any) -> Any:
    endpoint = serverFromString(_reactor(), description) if isinstance(description, str) \
        else description
    return wait(endpoint.listen(factory()))


def stop(port: Any) -> None:
    wait(defer.maybeDeferred(port.stopListening))


def race(binary: Path, shape: str, stopped: int, rounds: int) -> tuple[int, int]:
    """(rounds the attacker won, rounds run) for one shape, stopping listener `stopped`."""
    first, second, host1, host2 = SHAPES[shape]
    port = at.free_port()
    freed = (host1, host2)[stopped]
    spinner = at.Spinner(binary, freed, port)
    endpoints = [serverFromString(_reactor(), d.format(p=port)) for d in (first, second)]
    won = 0
    try:
        for _ in range(rounds):
            ports = [listen(endpoints[0]), listen(endpoints[1])]
            spinner.arm()
            stop(ports[stopped])
            got = spinner.stop()
            stop(ports[1 - stopped])
            if got:
                won += 1
                spinner.release()
    finally:
        spinner.close()
    return won, rounds


@pytest.mark.parametrize("stopped", [0, 1], ids=["first-stopped", "second-stopped"])
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_attacker_never_gets_the_stopped_address(
    spinner_binary: Path, shape: str, stopped: int, record_property: Any
) -> None:
    won, rounds = race(spinner_binary, shape, stopped, ROUNDS)
    record_property("attacker_won", f"{won}/{rounds}")
    print(f"\n{shape} pair, {('first', 'second')[stopped]} stopped: attacker won {won} "
          f"of {rounds}")
    assert won == 0, (
        f"{shape} pair: the attacker (uid 65534) bound the stopped listener's address in "
        f"{won} of {rounds} rounds"
    )


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_the_stopped_address_stays_ours(shape: str) -> None:
    """After one of the pair stops, its address is still held by this process: a
    loopback survivor serves it, a wildcard survivor refuses connections there, and
    no other process (any uid, SO_REUSEADDR) can bind it."""
    first, second, host1, host2 = SHAPES[shape]
    for stopped in (0, 1):
        port = at.free_port()
        ports = [listen(first.format(p=port)), listen(second.format(p=port))]
        try:
            stop(ports[stopped])
            freed = (host1, host2)[stopped]
            with pytest.raises(RuntimeError, match="could not take"):
                at.Holder(freed, port, listen=False, reuseaddr=True).stop()
            target = "::1" if ":" in freed else "127.0.0.1"
            data, refused = _connect_outcome(target, port)
            if shape == "loopback":
                assert data == b"server", f"{target}:{port} after the stop: {data!r}"
            else:
                assert refused and not data, f"{target}:{port} after the stop: {data!r}"
        finally:
            for p in ports:
                if p.connected:
                    stop(p)


@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0"])
def test_control_the_recreate_path_loses_rounds(spinner_binary: Path, host: str,
                                                record_property: Any) -> None:
    """The control: the spinner wins against close-then-bind-a-new-socket (the old
    re-guard), so 0 wins above is a property of the code, not of a slow attacker."""
    port = at.free_port()
    spinner = at.Spinner(spinner_binary, host, port)
    won = 0
    rounds = 0
    try:
        for rounds in range(1, CONTROL_ROUNDS + 1):  # noqa: B007
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
            s.listen(8)
            spinner.arm()
            s.close()
            g = socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # the new guard
            try:
                g.bind((host, port))
            except OSError:
                pass
            finally:
                g.close()
            if spinner.stop():
                won += 1
                spinner.release()
    finally:
        spinner.close()
    record_property("control_won", f"{won}/{rounds}")
    print(f"\ncontrol ({host}, close then re-bind): attacker won {won} of {rounds}")
    assert won > 0, f"the attacker never won against the re-create path in {rounds} rounds"


def _connect_outcome(host: str, port: int) -> tuple[bytes, bool]:
    """(bytes received, refused) for one client of host:port, the reactor running."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    c = socket.socket(family, socket.SOCK_STREAM)
    c.setblocking(False)
    c.connect_ex((host, port))
    data = b""
    try:
        deadline = time.monotonic() + SAFETY
        while time.monotonic() < deadline:
            _reactor().iterate(0.001)
            try:
                chunk = c.recv(100)
            except BlockingIOError:
                continue
            except (ConnectionRefusedError, ConnectionResetError):
                return data, True
            if not chunk:
                return data, False
            data += chunk
        raise TimeoutError(f"{host}:{port} neither answered nor closed")
    finally:
        c.close()


def test_refuse_guard_where_a_socket_cannot_stop_listening(monkeypatch: Any) -> None:
    """Where the OS cannot take a listening socket out of listening (macOS, the BSDs,
    Windows: simulated here by making the core's unlisten fail as it fails there, with
    ENOTCONN), the stopped wildcard's socket goes on listening as the refuse guard and
    closes every connection at once: the address stays ours, nothing is served."""
    from twisted_patch import _native

    real = _native.unlisten

    def cannot(handle: int) -> None:
        s = socket.socket()
        try:
            real(s.fileno())  # ENOTCONN, as shutdown() of a listening socket on a BSD
        finally:
            s.close()

    monkeypatch.setattr(_native, "unlisten", cannot)
    port = at.free_port()
    ports = [listen(f"xtcp:{port}"), listen(f"xtcp6:{port}")]
    try:
        stop(ports[0])
        with pytest.raises(RuntimeError, match="could not take"):
            at.Holder("0.0.0.0", port, listen=False, reuseaddr=True).stop()
        data, _ = _connect_outcome("127.0.0.1", port)
        assert data == b"", data
    finally:
        for p in ports:
            if p.connected:
                stop(p)


def test_when_the_guard_cannot_be_made_the_address_is_still_kept(monkeypatch: Any) -> None:
    """If turning the stopped listener's socket into the survivor's guard fails, the
    socket is not closed (nobody can take the address) and an error-level event says
    so, naming the address: the survivor never goes on silently shadowed."""
    from twisted.logger import LogLevel, globalLogPublisher

    from twisted_patch.port import ExclusivePort

    real = ExclusivePort._install_guard

    def broken(self: Any, held: Any, close_on_failure: bool = True) -> None:
        if not close_on_failure:  # the hand-over, not a start
            raise RuntimeError("injected failure")
        real(self, held, close_on_failure)

    monkeypatch.setattr(ExclusivePort, "_install_guard", broken)
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    port = at.free_port()
    ports = [listen(f"xtcp:{port}:interface=127.0.0.1"), listen(f"xtcp6:{port}:interface=\\:\\:1")]
    try:
        stop(ports[0])
        errors = [e for e in events if e.get("log_level") == LogLevel.error]
        assert errors, "no error-level event"
        assert errors[0].get("address") == f"127.0.0.1:{port}", errors[0]
        assert "injected failure" in str(errors[0].get("error")), errors[0]
        with pytest.raises(RuntimeError, match="could not take"):
            at.Holder("127.0.0.1", port, listen=False, reuseaddr=True).stop()
        stop(ports[1])  # the kept socket is closed with its owner
        at.Holder("127.0.0.1", port, listen=True, uid=None).stop()
    finally:
        globalLogPublisher.removeObserver(events.append)
        for p in ports:
            if p.connected:
                stop(p)
