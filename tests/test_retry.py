"""Restart past TIME_WAIT: the bounded, probe-gated bind retry (twisted_patch.retry).

Unit tests drive ``listen_with_retry`` with a ``task.Clock`` and injected attempt / probe
functions; the last tests use a real (private) select reactor on loopback: a port held by
a bound, not listening socket is retried until it is freed; a port with a listener fails
at once.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterator
from typing import Any, Callable

import pytest
from twisted.internet import defer, protocol, task
from twisted.internet.error import CannotListenError
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure

from twisted_patch import errors, retry
from twisted_patch.endpoint import ExclusiveTCPServerEndpoint, parse_server_description


@pytest.fixture
def events() -> Iterator[list[dict[str, Any]]]:
    seen: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(seen.append)
    yield seen
    globalLogPublisher.removeObserver(seen.append)


def in_use(port: int = 4567) -> CannotListenError:
    return errors.cannot_listen("127.0.0.1", port, OSError(errno.EADDRINUSE, "in use"), "bind")


def retries(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if "nobody listens" in e.get("log_format", "")]


class Attempts:
    """A listen that fails with the given exceptions, then returns 'port'."""

    def __init__(self, *failures: BaseException) -> None:
        self.failures = list(failures)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return "port"


def probe_says(*answers: str) -> Callable[[], defer.Deferred[str]]:
    queue = list(answers)
    calls: list[str] = []

    def probe() -> defer.Deferred[str]:
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        calls.append(answer)
        return defer.succeed(answer)

    probe.calls = calls  # type: ignore[attr-defined]
    return probe


def result_of(d: defer.Deferred[Any]) -> Any:
    out: list[Any] = []
    d.addBoth(out.append)
    assert out, "the Deferred has not fired"
    return out[0]


# --- parameters ------------------------------------------------------------------------


def test_defaults() -> None:
    assert retry.default_retry("win32") == 30.0
    assert retry.default_retry("linux") == 0.0
    assert retry.default_retry("darwin") == 0.0


@pytest.mark.parametrize("value,expected", [("0", 0.0), ("2.5", 2.5), (10, 10.0), (3600, 3600.0)])
def test_check_retry_accepts(value: object, expected: float) -> None:
    assert retry.check_retry(value) == expected


@pytest.mark.parametrize("value", ["-1", "3601", "nan", "inf", "soon", "", True, None, [1]])
def test_check_retry_refuses(value: object) -> None:
    with pytest.raises(ValueError, match="retry"):
        retry.check_retry(value)


def test_endpoint_string_retry() -> None:
    fields = parse_server_description("xtcp", "", ("8080",), {"retry": "12.5"})
    assert fields["retry"] == 12.5
    assert "retry" not in parse_server_description("xtcp", "", ("8080",), {})
    with pytest.raises(ValueError, match="retry"):
        parse_server_description("xtcp", "", ("8080",), {"retry": "-3"})
    endpoint = ExclusiveTCPServerEndpoint(object(), 8080)
    assert endpoint.retry == retry.default_retry()
    assert ExclusiveTCPServerEndpoint(object(), 8080, retry=4).retry == 4.0


def test_classification() -> None:
    assert retry.is_address_in_use(in_use())
    wsa = errors.cannot_listen("0.0.0.0", 1, OSError(errors.WSAEADDRINUSE, "x"), "bind")
    assert retry.is_address_in_use(wsa)
    denied = errors.cannot_listen("0.0.0.0", 1, OSError(errno.EACCES, "x"), "bind")
    assert not retry.is_address_in_use(denied)
    at_listen = errors.cannot_listen("0.0.0.0", 1, OSError(errno.EADDRINUSE, "x"), "listen")
    assert not retry.is_address_in_use(at_listen)
    assert not retry.is_address_in_use(CannotListenError("", 1, OSError(errno.EADDRINUSE, "x")))
    assert not retry.is_address_in_use(ValueError("x"))


def test_listener_check_address() -> None:
    assert retry.listener_check_address("", socket.AF_INET) == "127.0.0.1"
    assert retry.listener_check_address("0.0.0.0", socket.AF_INET) == "127.0.0.1"
    assert retry.listener_check_address("::", socket.AF_INET6) == "::1"
    assert retry.listener_check_address("10.1.2.3", socket.AF_INET) == "10.1.2.3"


# --- the retry loop, on a fake clock ------------------------------------------------------


def test_retries_while_nobody_listens_then_succeeds(events: list[dict[str, Any]]) -> None:
    clock = task.Clock()
    attempt = Attempts(in_use(), in_use(), in_use())
    probe = probe_says("refused")
    d = retry.listen_with_retry(clock, attempt, probe, 30.0, "127.0.0.1:4567")
    assert not d.called and attempt.calls == 1
    for _ in range(3):
        (call,) = clock.getDelayedCalls()  # never sleeps: one pending callLater
        clock.advance(call.getTime() - clock.seconds())
    assert result_of(d) == "port"
    assert attempt.calls == 4
    logged = retries(events)
    assert [e["delay"] for e in logged] == [0.25, 0.5, 1.0]
    assert [e["attempt"] for e in logged] == [1, 2, 3]
    assert all(e["address"] == "127.0.0.1:4567" and e["retry"] == 30.0 for e in logged)
    assert all(e["errno"] == errno.EADDRINUSE for e in logged)


def test_gives_up_after_the_bound(events: list[dict[str, Any]]) -> None:
    clock = task.Clock()
    last = in_use()
    attempt = Attempts(*([in_use()] * 5 + [last] + [in_use()] * 100))
    d = retry.listen_with_retry(clock, attempt, probe_says("refused"), 5.0, "127.0.0.1:4567")
    while clock.getDelayedCalls():
        (call,) = clock.getDelayedCalls()
        clock.advance(call.getTime() - clock.seconds())
    f = result_of(d)
    assert isinstance(f, Failure) and f.value is last
    # 0, .25, .75, 1.75, 3.75, then the rest of the budget: 5.0
    assert attempt.calls == 6
    assert clock.seconds() == 5.0
    assert [e["delay"] for e in retries(events)] == [0.25, 0.5, 1.0, 2.0, 1.25]
    assert any("gave up" in e.get("log_format", "") for e in events)


@pytest.mark.parametrize("answer", ["listening", "unknown: timeout"])
def test_fails_at_once_if_someone_may_listen(events: list[dict[str, Any]], answer: str) -> None:
    clock = task.Clock()
    err = in_use()
    attempt = Attempts(err)
    d = retry.listen_with_retry(clock, attempt, probe_says(answer), 30.0, "127.0.0.1:4567")
    f = result_of(d)
    assert isinstance(f, Failure) and f.value is err
    assert attempt.calls == 1 and clock.getDelayedCalls() == []
    assert retries(events) == []
    assert any(e.get("listener_check") == answer for e in events)


def test_other_failures_are_not_retried() -> None:
    clock = task.Clock()
    denied = errors.cannot_listen("127.0.0.1", 1, OSError(errno.EACCES, "x"), "bind")
    probe = probe_says("refused")
    f = result_of(retry.listen_with_retry(clock, Attempts(denied), probe, 30.0, "a"))
    assert f.value is denied
    assert probe.calls == []  # type: ignore[attr-defined]
    boom = RuntimeError("boom")
    f = result_of(retry.listen_with_retry(clock, Attempts(boom), probe, 30.0, "a"))
    assert f.value is boom


def test_cancel_stops_the_retries() -> None:
    clock = task.Clock()
    attempt = Attempts(in_use(), in_use())
    d = retry.listen_with_retry(clock, attempt, probe_says("refused"), 30.0, "a")
    assert len(clock.getDelayedCalls()) == 1
    d.cancel()
    assert clock.getDelayedCalls() == []
    f = result_of(d)
    assert isinstance(f, Failure) and f.check(defer.CancelledError)
    clock.advance(60)
    assert attempt.calls == 1


def test_retry_zero_fails_at_once() -> None:
    clock = task.Clock()
    err = in_use()
    probe = probe_says("refused")
    f = result_of(retry.listen_with_retry(clock, Attempts(err), probe, 0.0, "a"))
    assert f.value is err
    assert probe.calls == []  # type: ignore[attr-defined]


def test_probe_failure_fails_the_listen() -> None:
    clock = task.Clock()
    err = in_use()
    f = result_of(retry.listen_with_retry(
        clock, Attempts(err), lambda: defer.fail(RuntimeError("probe broke")), 30.0, "a"))
    assert f.value is err


# --- with a real reactor on loopback ------------------------------------------------------


def run(reactor: Any, body: Callable[[], Any], limit: float = 30.0) -> Any:
    """Run a private reactor (once: reactors do not restart) until ``body``'s Deferred
    fires; ``limit`` is a safety stop, not an assertion.  Returns the result or Failure."""
    out: list[Any] = []

    def start() -> None:
        defer.ensureDeferred(body()).addBoth(done)

    def done(value: Any) -> None:
        out.append(value)
        if reactor.running:
            reactor.stop()

    reactor.callWhenRunning(start)
    guard = reactor.callLater(limit, reactor.stop)
    reactor.run(installSignalHandlers=False)
    if guard.active():
        guard.cancel()
    assert out, "did not finish"
    return out[0]


@pytest.fixture
def reactor() -> Iterator[Any]:
    from twisted.internet.selectreactor import SelectReactor

    r = SelectReactor()
    yield r
    for reader in r.removeAll():
        reader.connectionLost(Failure(Exception("test over")))
    r.waker.connectionLost(None)


def test_listener_check_real(reactor: Any) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    quiet = socket.socket()
    quiet.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused

    async def body() -> tuple[str, str]:
        a = await retry.listener_check(
            reactor, "127.0.0.1", listener.getsockname()[1], socket.AF_INET)
        b = await retry.listener_check(reactor, "0.0.0.0", quiet.getsockname()[1], socket.AF_INET)
        return a, b

    try:
        assert run(reactor, body) == ("listening", "refused")
    finally:
        listener.close()
        quiet.close()


def test_endpoint_waits_for_a_port_held_without_listener(
    reactor: Any, events: list[dict[str, Any]]
) -> None:
    """A bound, not listening socket without SO_REUSEADDR holds the port (like lingering
    connections would): the endpoint retries and gets the port once it is released."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    port_number = holder.getsockname()[1]
    reactor.callLater(0.6, holder.close)
    endpoint = ExclusiveTCPServerEndpoint(reactor, port_number, interface="127.0.0.1", retry=20)
    factory = protocol.ServerFactory.forProtocol(protocol.Protocol)

    async def body() -> int:
        port = await endpoint.listen(factory)
        try:
            return int(port.getHost().port)
        finally:
            await port.stopListening()

    try:
        got = run(reactor, body)
        assert got == port_number, got
        assert len(retries(events)) >= 1
    finally:
        holder.close()


def test_endpoint_fails_at_once_when_someone_listens(
    reactor: Any, events: list[dict[str, Any]]
) -> None:
    other = socket.socket()
    other.bind(("127.0.0.1", 0))
    other.listen(5)
    try:
        endpoint = ExclusiveTCPServerEndpoint(
            reactor, other.getsockname()[1], interface="127.0.0.1", retry=20)
        factory = protocol.ServerFactory.forProtocol(protocol.Protocol)

        async def body() -> Any:
            return await endpoint.listen(factory)

        f = run(reactor, body)
        assert isinstance(f, Failure) and f.check(CannotListenError)
        assert "already in use" in str(f.value)
        assert retries(events) == []
        assert any(e.get("listener_check") == "listening" for e in events)
    finally:
        other.close()
