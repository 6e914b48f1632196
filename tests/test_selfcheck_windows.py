"""The post-listen owner check's Windows rule (port.selfcheck.windows_evidence).

Windows' table may report a listener with pid 0: no owner named (under Wine: every
listener, ours included).  Such a row is evidence of a shared port only where nobody
but us can be.  The rule is plain logic over what the lookup returned and what our
socket reads back, so it is tested here on every OS; make test-windows runs the real
lookup under Wine (every xtcp listen there goes through it).
"""

from __future__ import annotations

import socket
from typing import Any

import pytest
from twisted.internet.error import CannotListenError
from twisted.logger import LogLevel, globalLogPublisher

from twisted_patch.owner import Listener
from twisted_patch.port import selfcheck


class FakeSocket:
    """What windows_evidence reads from our socket: its address and SO_EXCLUSIVEADDRUSE."""

    def __init__(self, host: str, port: int, exclusive: int) -> None:
        self.address = (host, port)
        self.exclusive = exclusive

    def getsockname(self) -> tuple[str, int]:
        return self.address

    def getsockopt(self, level: int, option: int) -> int:
        assert (level, option) == (socket.SOL_SOCKET, selfcheck.SO_EXCLUSIVEADDRUSE)
        return self.exclusive


def row(host: str, port: int, pids: tuple[int, ...] = ()) -> Listener:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return Listener(family=family, host=host, port=port, uid=None, user=None, inode=None,
                    pids=pids, names=tuple("x.exe" for _ in pids))


@pytest.fixture
def logged() -> Any:
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


def evidence(host: str, found: list[Listener], exclusive: int = 1) -> list[Listener]:
    skt: Any = FakeSocket(host, 4567, exclusive)
    return selfcheck.windows_evidence(skt, host, 4567, found)


def test_unnamed_row_at_our_address_is_ours(logged: list[dict[str, Any]]) -> None:
    """SO_EXCLUSIVEADDRUSE=1: Windows refuses every other bind of our address."""
    assert evidence("127.0.0.1", [row("127.0.0.1", 4567)]) == []
    assert evidence("0.0.0.0", [row("0.0.0.0", 4567)]) == []
    assert evidence("::1", [row("::1", 4567)]) == []
    said = [e for e in logged if "without an owner (pid 0)" in e.get("log_format", "")]
    assert len(said) == 3 and said[0]["log_level"] == LogLevel.info


def test_two_unnamed_rows_at_our_address_are_evidence() -> None:
    found = [row("127.0.0.1", 4567), row("127.0.0.1", 4567)]
    assert evidence("127.0.0.1", found) == found


def test_named_foreign_listener_is_evidence() -> None:
    named = row("0.0.0.0", 4567, pids=(4242,))
    assert evidence("127.0.0.1", [named, row("127.0.0.1", 4567)]) == [named]


def test_unnamed_listener_elsewhere_is_logged_not_fatal(logged: list[dict[str, Any]]) -> None:
    """A wildcard over our specific address (Windows allows it) with no owner named."""
    assert evidence("127.0.0.1", [row("127.0.0.1", 4567), row("0.0.0.0", 4567)]) == []
    warned = [e for e in logged if e.get("log_level") == LogLevel.warn]
    assert len(warned) == 1 and warned[0]["others"] == "0.0.0.0:4567"


def test_socket_without_exclusiveaddruse_fails_closed() -> None:
    with pytest.raises(CannotListenError) as info:
        evidence("127.0.0.1", [row("127.0.0.1", 4567)], exclusive=0)
    assert "127.0.0.1:4567 is listening without SO_EXCLUSIVEADDRUSE (it reads back 0)" in str(
        info.value)
