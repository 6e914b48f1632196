"""The self-probe: what it tries, that it can fail, and probe=strict|warn|off."""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from support.guard import can_bind, fetch, hello_factory, reactor, socket_fds, wait
from twisted.internet.error import CannotListenError
from twisted.logger import globalLogPublisher

from twisted_patch import _native, _sockets, listen_exclusive
from twisted_patch.port import guards as port_module
from twisted_patch.port import selfprobe as guard_module
from twisted_patch.port.selfprobe import ProbeAttempt, judge, run_probe

LINUX = sys.platform.startswith("linux")
HAS_REUSEPORT = hasattr(socket, "SO_REUSEPORT")


@pytest.fixture
def cleanup() -> Iterator[list[Any]]:
    items: list[Any] = []
    yield items
    for item in reversed(items):
        if isinstance(item, socket.socket):
            item.close()
        elif getattr(item, "connected", False):
            wait(item.stopListening())
    assert port_module.guard_sockets() == {}


@pytest.fixture
def events() -> Iterator[list[dict[str, Any]]]:
    seen: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(seen.append)
    yield seen
    globalLogPublisher.removeObserver(seen.append)


def weak_socket(host: str, port: int = 0) -> socket.socket:
    """A deliberately weak listener: SO_REUSEPORT set (what a careless server might do)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    if family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind((host, port))
    s.listen(5)
    s.setblocking(False)
    return s


def bound(attempts: list[ProbeAttempt]) -> set[tuple[str, str]]:
    return {(a.target, a.options) for a in attempts if a.outcome == "bound"}


@pytest.mark.skipif(not HAS_REUSEPORT, reason="the OS has no SO_REUSEPORT")
@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0", "::1", "::"])
def test_probe_catches_a_weak_port_and_not_ours(cleanup: list[Any], host: str) -> None:
    weak = weak_socket(host)
    cleanup.append(weak)
    found = bound(run_probe(weak))
    assert ("same", "SO_REUSEPORT") in found
    assert ("same", "SO_REUSEADDR+SO_REUSEPORT") in found
    # ours, same address kind, guard on: not one bind succeeds on Linux
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    mine = listen_exclusive(0, hello_factory(b"ours"), interface=host, reactor=reactor)
    cleanup.append(mine)
    assert mine.probe_results is not None
    assert {a.target for a in mine.probe_results} >= {"same", "sibling", "dualstack"}
    if LINUX:
        assert bound(mine.probe_results) == set()
    assert _native.socket_options(mine.fileno())["listening"] == 1
    assert mine.socket.family == family


def test_probe_attack_list_and_linux_table(cleanup: list[Any]) -> None:
    """What the probe tries, and (Linux) which succeed on a plain Twisted port vs ours."""
    plain = reactor.listenTCP(0, hello_factory(b"plain"), interface="127.0.0.1")
    cleanup.append(plain)
    results = run_probe(plain)
    opts = {a.options for a in results}
    assert {"none", "SO_REUSEADDR"} <= opts
    if HAS_REUSEPORT:
        assert {"SO_REUSEPORT", "SO_REUSEADDR+SO_REUSEPORT"} <= opts
    assert {a.target for a in results} == {
        "same", "wildcard", "sibling", "sibling-other", "dualstack"
    }
    assert not any(a.unavoidable for a in results) or not LINUX
    if LINUX:
        # a plain Twisted port: every bind of the other family works, nothing else does
        hit = bound(results)
        assert {t for t, _ in hit} <= guard_module.SIBLING_TARGETS
        assert {("sibling", o) for o in opts} <= hit
        assert {("sibling-other", o) for o in opts} <= hit
        assert all(a.outcome == "refused" for a in results if a.target in ("same", "wildcard"))


def test_probe_leaves_no_socket_and_keeps_the_port(cleanup: list[Any]) -> None:
    mine = listen_exclusive(0, hello_factory(b"ours"), interface="0.0.0.0", reactor=reactor,
                            probe="off")
    cleanup.append(mine)
    p = mine.getHost().port
    before = socket_fds()
    for _ in range(3):
        run_probe(mine)
    assert socket_fds() == before
    assert fetch("127.0.0.1", p) == b"ours"
    # even a probe whose binds succeed (the weak port) leaves nothing behind
    weak = weak_socket("127.0.0.1")
    cleanup.append(weak)
    before = socket_fds()
    assert bound(run_probe(weak))
    assert socket_fds() == before
    assert _native.socket_options(weak.fileno())["listening"] == 1


def test_probe_on_unbound_socket_is_a_clear_error(cleanup: list[Any]) -> None:
    s = socket.socket()
    cleanup.append(s)
    with pytest.raises(ValueError, match="not bound to an IPv4 or IPv6 address and port"):
        run_probe(s)


def _weak_open(interface: str, port: int, backlog: int, family: int) -> socket.socket:
    return weak_socket(interface, port)


@pytest.mark.skipif(not HAS_REUSEPORT, reason="the OS has no SO_REUSEPORT")
def test_strict_refuses_a_hijackable_port_and_closes_it(
    cleanup: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_sockets, "listen", _weak_open)
    before = socket_fds()
    with pytest.raises(CannotListenError) as info:
        listen_exclusive(0, hello_factory(b"ours"), interface="127.0.0.1", reactor=reactor)
    err = info.value.socketError
    assert err.stage == "probe"
    assert "is hijackable" in str(err) and "SO_REUSEPORT (same) succeeded" in str(err)
    assert socket_fds() == before  # the weak socket and the guard were both closed
    assert port_module.guard_sockets() == {}


@pytest.mark.skipif(not HAS_REUSEPORT, reason="the OS has no SO_REUSEPORT")
def test_warn_listens_and_logs(
    cleanup: list[Any], monkeypatch: pytest.MonkeyPatch, events: list[dict[str, Any]]
) -> None:
    monkeypatch.setattr(_sockets, "listen", _weak_open)
    mine = listen_exclusive(0, hello_factory(b"ours"), interface="127.0.0.1", reactor=reactor,
                            probe="warn")
    cleanup.append(mine)
    warned = [e for e in events if e.get("probe") == "warn" and "attacks" in e]
    assert warned and any("SO_REUSEPORT" in a for a in warned[0]["attacks"])
    assert warned[0]["log_level"].name == "warn"
    assert fetch("127.0.0.1", mine.getHost().port) == b"ours"


@pytest.mark.skipif(not HAS_REUSEPORT, reason="the OS has no SO_REUSEPORT")
def test_off_skips_the_probe(
    cleanup: list[Any], monkeypatch: pytest.MonkeyPatch, events: list[dict[str, Any]]
) -> None:
    monkeypatch.setattr(_sockets, "listen", _weak_open)
    mine = listen_exclusive(0, hello_factory(b"ours"), interface="127.0.0.1", reactor=reactor,
                            probe="off")
    cleanup.append(mine)
    assert mine.probe_results is None
    assert not [e for e in events if "attacks" in e]


def test_guard_no_with_strict_listens_and_warns(
    cleanup: list[Any], events: list[dict[str, Any]]
) -> None:
    mine = listen_exclusive(0, hello_factory(b"ours"), interface="127.0.0.1", reactor=reactor,
                            guard="no")
    cleanup.append(mine)
    assert mine.probe_results is not None
    if LINUX:
        hit = bound(mine.probe_results)
        assert ("sibling", "none") in hit
        unguarded = [e for e in events if e.get("guard") == "no" and "attacks" in e]
        assert unguarded and unguarded[0]["log_level"].name == "warn"


def test_unavoidable_attack_warns_with_remedy_instead_of_refusing(
    cleanup: list[Any], monkeypatch: pytest.MonkeyPatch, events: list[dict[str, Any]]
) -> None:
    """What strict does on macOS/FreeBSD, where the OS itself allows specific-over-wildcard."""
    real = guard_module.run_probe

    def with_unavoidable(handle: int) -> list[ProbeAttempt]:
        results = real(handle)
        p = results[0].address.rsplit(":", 1)[1]
        return [*results, ProbeAttempt("specific", "SO_REUSEADDR", "bound", 0, "bind",
                                       f"127.0.0.1:{p}", True)]

    monkeypatch.setattr(guard_module, "run_probe", with_unavoidable)
    mine = listen_exclusive(0, hello_factory(b"ours"), interface="0.0.0.0", reactor=reactor)
    cleanup.append(mine)
    remedy = [e for e in events if "Remedy" in e.get("log_format", "")]
    assert remedy and remedy[0]["log_level"].name == "warn"


def test_judge_classifies() -> None:
    def a(target: str, outcome: str, unavoidable: bool = False) -> ProbeAttempt:
        return ProbeAttempt(target, "SO_REUSEADDR", outcome, 0, "bind", "x", unavoidable)

    v = judge([a("same", "bound"), a("sibling", "bound"), a("specific", "bound", True),
               a("wildcard", "refused"), a("dualstack", "error")], "serve")
    assert [x.target for x in v.fatal] == ["same", "sibling"]
    assert [x.target for x in v.unavoidable] == ["specific"]
    assert [x.target for x in v.errors] == ["dualstack"]
    v = judge([a("sibling", "bound"), a("dualstack", "bound")], "no")
    assert v.fatal == [] and len(v.unguarded) == 2


def test_unavoidable_table_on_this_os() -> None:
    """Linux: nothing is unavoidable, as the probe tests above measure."""
    if not LINUX:
        pytest.skip("the table is measured on Linux only")
    assert can_bind("127.0.0.1", 0)
    weak = weak_socket("0.0.0.0")
    try:
        assert not any(x.unavoidable for x in run_probe(weak))
    finally:
        weak.close()
