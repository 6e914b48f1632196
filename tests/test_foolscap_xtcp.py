"""Foolscap on xtcp: a pre-claimed port is reported, not swallowed.

``Tub.listenOn`` adds no errback to the endpoint's Deferred (foolscap/pb.py,
``Listener.startService``): with a plain ``tcp:`` port that is already taken
the Tub runs on without its listener and the only trace is an "Unhandled
error in Deferred" logged whenever the Deferred is garbage-collected.  These
tests show that (the control), then the two remedies: the xtcp endpoint logs
the failure at error level when it happens, and ``twisted_patch.tub.listen_on``
hands the failure to the caller.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import spin, wait_for

foolscap = pytest.importorskip("foolscap")
from foolscap.api import Referenceable, Tub  # noqa: E402
from twisted.internet import defer  # noqa: E402
from twisted.internet.error import CannotListenError  # noqa: E402
from twisted.logger import LogEvent, formatEvent, globalLogPublisher  # noqa: E402

from twisted_patch import ExclusivePort  # noqa: E402
from twisted_patch.cli.attacks import preclaim_listener  # noqa: E402
from twisted_patch.tub import listen_on  # noqa: E402


class Adder(Referenceable):  # type: ignore[misc]
    def remote_add(self, a: int, b: int) -> int:
        return a + b


@pytest.fixture
def events() -> Iterator[list[LogEvent]]:
    """Every twisted.logger event emitted during the test."""
    seen: list[LogEvent] = []
    globalLogPublisher.addObserver(seen.append)
    yield seen
    globalLogPublisher.removeObserver(seen.append)


@pytest.fixture
def tubs() -> Iterator[list[Any]]:
    started: list[Any] = []
    yield started
    for tub in started:
        wait_for(defer.maybeDeferred(tub.stopService))


def _tub(tubs: list[Any]) -> Any:
    tub = Tub()
    tub.startService()
    tubs.append(tub)
    return tub


def _texts(events: list[LogEvent]) -> list[str]:
    return [formatEvent(e) for e in events]


def _unhandled(events: list[LogEvent]) -> list[str]:
    """The failures Twisted logged as "Unhandled error in Deferred" (at GC), as text."""
    return [
        str(e["log_failure"].value)
        for e in events
        if e.get("log_namespace") == "twisted.internet.defer" and "log_failure" in e
    ]


def _our_error_lines(events: list[LogEvent], port: int) -> list[LogEvent]:
    return [
        e
        for e in events
        if e.get("log_namespace") == "twisted_patch.endpoint"
        and e.get("port") == port
        and e["log_level"].name == "error"
    ]


def test_listen_on_gives_the_port_and_the_tub_serves(tubs: list[Any]) -> None:
    server, client = _tub(tubs), _tub(tubs)
    port = wait_for(listen_on(server, "xtcp:0:interface=127.0.0.1"))
    assert isinstance(port, ExclusivePort)
    assert port.factory in server.getListeners()  # the Foolscap Listener, for stopListeningOn
    server.setLocation(f"tcp:127.0.0.1:{port.getHost().port}")
    furl = server.registerReference(Adder(), "adder")
    ref = wait_for(client.getReference(furl))
    assert wait_for(ref.callRemote("add", 40, 2)) == 42


def test_listen_on_before_the_tub_starts_fires_when_it_starts(tubs: list[Any]) -> None:
    tub = Tub()
    d = listen_on(tub, "xtcp:0:interface=127.0.0.1")
    spin(0.05)
    assert not d.called  # nothing listens until the Tub runs
    tub.startService()
    tubs.append(tub)
    port = wait_for(d)
    assert isinstance(port, ExclusivePort) and port.connected


def test_listen_on_bad_description_raises_at_once() -> None:
    with pytest.raises(ValueError, match="70000"):
        listen_on(Tub(), "xtcp:70000:interface=127.0.0.1")
    with pytest.raises(TypeError):
        listen_on(Tub(), 1234)


def test_plain_listen_on_taken_port_is_swallowed(
    tubs: list[Any], events: list[LogEvent]
) -> None:
    """The control: plain Foolscap + tcp: on a taken port.  Nothing tells the
    program; the Tub keeps running; only GC prints "Unhandled error"."""
    attacker, port = preclaim_listener()
    try:
        tub = _tub(tubs)
        listener = tub.listenOn(f"tcp:{port}:interface=127.0.0.1")
        spin(0.05)
        assert tub.running and listener._lp is None  # running, without its port
        assert not _our_error_lines(events, port)  # nobody said anything at listen time
        assert not _unhandled(events)
        del listener
        tub.stopListeningOn(tub.getListeners()[0])
        gc.collect()
        # ... and the failure only surfaces when the Deferred is collected.
        unhandled = _unhandled(events)
        assert unhandled and "Address already in use" in unhandled[0], _texts(events)
    finally:
        attacker.close()


def test_xtcp_listen_on_taken_port_is_logged_when_it_happens(
    tubs: list[Any], events: list[LogEvent]
) -> None:
    """Plain ``Tub.listenOn("xtcp:...")``: Foolscap still adds no errback, but the
    endpoint logs the failure at error level at once (what a Tahoe tub.port gets)."""
    attacker, port = preclaim_listener()
    try:
        tub = _tub(tubs)
        listener = tub.listenOn(f"xtcp:{port}:interface=127.0.0.1")
        spin(0.05)
        assert tub.running and listener._lp is None
        lines = _our_error_lines(events, port)
        assert len(lines) == 1, _texts(events)
        text = formatEvent(lines[0])
        assert f"cannot listen on 127.0.0.1:{port}" in text
        assert "already in use" in text
        assert f"already in use by pid {attacker.pid}" in text
        del listener
        gc.collect()
    finally:
        attacker.close()


def test_listen_on_taken_port_fails_the_deferred(
    tubs: list[Any], events: list[LogEvent]
) -> None:
    attacker, port = preclaim_listener()
    try:
        tub = _tub(tubs)
        d = listen_on(tub, f"xtcp:{port}:interface=127.0.0.1")
        with pytest.raises(CannotListenError) as info:
            wait_for(d)
        message = str(info.value)
        assert f"127.0.0.1:{port} is already in use" in message
        assert "never falls back" in message
        assert f"already in use by pid {attacker.pid}" in message
        assert tub.running
        assert all(listener._lp is None for listener in tub.getListeners())
        gc.collect()
        spin(0.05)
        assert not _unhandled(events), _unhandled(events)  # reported, not swallowed
    finally:
        attacker.close()


def test_listen_on_with_a_plain_endpoint_reports_too(
    tubs: list[Any], events: list[LogEvent]
) -> None:
    """listen_on is not tied to xtcp: a plain tcp: failure reaches the caller as well."""
    attacker, port = preclaim_listener()
    try:
        tub = _tub(tubs)
        with pytest.raises(CannotListenError, match="Address already in use"):
            wait_for(listen_on(tub, f"tcp:{port}:interface=127.0.0.1"))
        gc.collect()
        spin(0.05)
        assert not _unhandled(events)
    finally:
        attacker.close()
