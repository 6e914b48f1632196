"""Restart past TIME_WAIT: retry a refused bind for a bounded time, only if nobody listens.

Why: on Windows the core sets SO_EXCLUSIVEADDRUSE and never SO_REUSEADDR.  Microsoft
documents that a port whose exclusive socket was closed with connections still active
(TIME_WAIT) cannot be bound again with SO_EXCLUSIVEADDRUSE until they are gone: a server
restarted at once may get WSAEADDRINUSE for a while.  On POSIX the core sets SO_REUSEADDR,
which is exactly "bind past TIME_WAIT", so there is nothing to wait for.

Rule: a bind refused with "address in use" is retried -- with a growing delay, for at most
``retry`` seconds -- only while nobody listens on the address.  Whether someone listens is
decided by a connection attempt to it (the wildcard is checked on the loopback address of
its family): refused means no listener, so what holds the port is lingering connections
(or a socket that is bound and not listening); a connection that succeeds -- or any other
outcome, such as a timeout -- means a listener may be there, and the listen fails at once.
We chose a connect() check over the owner-lookup module because it needs nothing but
sockets, works the same on every OS and under Wine, and answers exactly the question
asked ("would a client reach someone else?").  Its costs: the check does connect to the
other listener (and closes at once); on Windows a refused loopback connect takes about a
second (Windows retries the SYN), which only slows the retry loop, never the reactor; a
listener bound to another specific address of the host is not seen by a loopback check,
so that case waits out the bounded retry before failing.

Every step is asynchronous (``reactor.callLater``, the reactor's own connect): the reactor
never sleeps.  The synchronous path (``listen_exclusive``, ``listenTCP`` replacements)
cannot wait and never retries; use the endpoint (``xtcp:PORT:retry=SECONDS``).
"""

from __future__ import annotations

import socket
import sys
from typing import Any, Callable, TypeVar

from twisted.internet import defer, error
from twisted.logger import Logger

from twisted_patch._address import check_seconds
from twisted_patch.errors import IN_USE, ExclusiveListenError

T = TypeVar("T")

log = Logger()

#: Default ``retry`` (seconds): 30 on Windows (SO_EXCLUSIVEADDRUSE and TIME_WAIT), 0
#: elsewhere (SO_REUSEADDR already binds past TIME_WAIT).
DEFAULT_RETRY_WINDOWS = 30.0
DEFAULT_RETRY_POSIX = 0.0
MAX_RETRY = 3600.0
#: delays between attempts: FIRST_DELAY, doubling, at most MAX_DELAY
FIRST_DELAY = 0.25
MAX_DELAY = 2.0
CHECK_TIMEOUT = 5.0

def default_retry(platform: str = sys.platform) -> float:
    return DEFAULT_RETRY_WINDOWS if platform == "win32" else DEFAULT_RETRY_POSIX


def check_retry(value: object) -> float:
    """Seconds to keep retrying a bind: a number from 0 to 3600."""
    return check_seconds(value, "retry", MAX_RETRY)


def is_address_in_use(failure_value: BaseException) -> bool:
    """A CannotListenError from the bind stage with EADDRINUSE / WSAEADDRINUSE."""
    if not isinstance(failure_value, error.CannotListenError):
        return False
    inner = failure_value.socketError
    if isinstance(inner, ExclusiveListenError):
        return inner.stage == "bind" and inner.errno in IN_USE
    return False


def listener_check_address(interface: str, family: int) -> str:
    """Where to connect to find a listener on ``interface``: the wildcard -> loopback."""
    if family == socket.AF_INET6:
        return "::1" if interface in ("", "::") else interface
    return "127.0.0.1" if interface in ("", "0.0.0.0") else interface


def listener_check(reactor: Any, interface: str, port: int, family: int) -> defer.Deferred[str]:
    """Fires with ``"refused"`` (nobody listens), ``"listening"`` (a connection was made)
    or ``"unknown: <why>"``.  Non-blocking: the reactor's own connectTCP."""
    from twisted.internet import protocol

    host = listener_check_address(interface, family)
    result: defer.Deferred[str] = defer.Deferred()

    class _Check(protocol.Protocol):
        def connectionMade(self) -> None:  # noqa: N802
            transport: Any = self.transport  # an ITCPTransport
            transport.abortConnection()
            if not result.called:
                result.callback("listening")

    class _Factory(protocol.ClientFactory):
        def buildProtocol(self, addr: Any) -> protocol.Protocol:  # noqa: N802
            return _Check()

        def clientConnectionFailed(self, connector: Any, reason: Any) -> None:  # noqa: N802
            if result.called:
                return
            if reason.check(error.ConnectionRefusedError):
                result.callback("refused")
            else:
                result.callback(f"unknown: {reason.getErrorMessage()}")

    reactor.connectTCP(host, port, _Factory(), timeout=CHECK_TIMEOUT)
    return result


def listen_with_retry(
    clock: Any,
    attempt: Callable[[], T],
    check: Callable[[], defer.Deferred[str]],
    retry: float,
    address: str,
) -> defer.Deferred[T]:
    """Call ``attempt()`` (a synchronous listen that raises CannotListenError) until it
    succeeds; retry only an "address in use" bind failure, only while ``check()`` says
    ``"refused"``, for at most ``retry`` seconds of ``clock``.  Fails with the last
    CannotListenError otherwise.  Each retry is logged with structured fields."""
    start = clock.seconds()
    pending: list[Any] = []  # the scheduled next attempt, if any

    def cancel(_: defer.Deferred[T]) -> None:
        # Cancelling the listen stops the retries; a check in flight is ignored.
        while pending:
            call = pending.pop()
            if call.active():
                call.cancel()

    result: defer.Deferred[T] = defer.Deferred(cancel)
    state = {"attempts": 0, "delay": FIRST_DELAY}

    def fail(exc: BaseException) -> None:
        result.errback(exc)

    def give_up(exc: BaseException, why: str, elapsed: float) -> None:
        log.error(
            "twisted-patch: {address} is still in use ({why}); gave up after {attempts} "
            "attempt(s) in {elapsed:.1f} s",
            address=address, why=why, attempts=state["attempts"], elapsed=elapsed,
            retry=retry,
        )
        fail(exc)

    def try_once() -> None:
        pending.clear()
        if result.called:
            return
        state["attempts"] += 1
        try:
            value = attempt()
        except error.CannotListenError as exc:
            on_failure(exc)
        except BaseException as exc:  # not ours to retry
            fail(exc)
        else:
            result.callback(value)

    def on_failure(exc: error.CannotListenError) -> None:
        elapsed = clock.seconds() - start
        if not is_address_in_use(exc) or retry <= 0:
            fail(exc)
            return
        if elapsed >= retry:
            give_up(exc, f"retried for {retry:g} s", elapsed)
            return

        def checked(outcome: str) -> None:
            if result.called:  # cancelled meanwhile
                return
            now = clock.seconds() - start
            if outcome != "refused":
                why = "another program listens on it" if outcome == "listening" else outcome
                log.error(
                    "twisted-patch: {address} is in use and {why}: not retrying",
                    address=address, why=why, listener_check=outcome, attempts=state["attempts"],
                )
                fail(exc)
                return
            delay = min(state["delay"], max(0.0, retry - now))
            state["delay"] = min(state["delay"] * 2, MAX_DELAY)
            log.warn(
                "twisted-patch: {address} is in use but nobody listens on it (old "
                "connections in TIME_WAIT?); retry {attempt} in {delay:.2f} s "
                "({elapsed:.1f} of {retry:g} s)",
                address=address, attempt=state["attempts"], delay=delay, elapsed=now,
                retry=retry, errno=exc.socketError.errno if exc.socketError else None,
            )
            pending.append(clock.callLater(delay, try_once))

        def check_failed(f: Any) -> None:
            if not result.called:
                fail(exc)

        d = check()
        d.addCallbacks(checked, check_failed)

    try_once()
    return result
