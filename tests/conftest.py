"""Shared fixtures: a reactor driven by hand, and clean-up of listeners.

The tests do not run ``reactor.run()``; ``wait_for`` iterates the global
reactor until a Deferred fires (bounded), so a test reads top to bottom.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
from twisted.internet import defer
from twisted.python.failure import Failure


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


def wait_for(d: defer.Deferred[Any], timeout: float = 15.0) -> Any:
    """Run the reactor until ``d`` fires; return its result or raise its failure."""
    reactor = _reactor()
    box: list[Any] = []
    d.addBoth(box.append)
    deadline = time.monotonic() + timeout
    while not box:
        if time.monotonic() > deadline:
            raise TimeoutError(f"Deferred did not fire within {timeout} s")
        reactor.iterate(0.01)
    result = box[0]
    if isinstance(result, Failure):
        result.raiseException()
    return result


def spin(seconds: float) -> None:
    """Let the reactor run for a while."""
    reactor = _reactor()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        reactor.iterate(0.01)


@pytest.fixture(scope="session", autouse=True)
def _running_reactor() -> Iterator[None]:
    """Mark the reactor running (startup triggers fire: thread pool, resolvers),
    without handing control to it; shut it down cleanly at the end."""
    r = _reactor()
    if not r.running:
        r.startRunning()
    yield
    r.stop()
    for _ in range(100):
        r.iterate(0.01)
        if not r.running:
            break


@pytest.fixture
def reactor() -> Iterator[Any]:
    r = _reactor()
    yield r


@pytest.fixture
def ports(reactor: Any) -> Iterator[list[Any]]:
    """Listening ports to stop at the end of the test."""
    opened: list[Any] = []
    yield opened
    for p in opened:
        if getattr(p, "connected", False):
            wait_for(defer.maybeDeferred(p.stopListening))


def open_fds() -> set[int]:
    if not os.path.isdir("/proc/self/fd"):
        return set()
    return {int(n) for n in os.listdir("/proc/self/fd")}




@pytest.fixture(autouse=True)
def _no_fd_leak(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test leaves the process's fd table as it found it (Linux)."""
    before = open_fds()
    yield
    if not before:
        return
    # Sockets closed by the reactor are closed synchronously; give stray Python
    # objects a chance to be collected before judging.
    import gc

    gc.collect()
    leaked = open_fds() - before
    leaked_sockets = set()
    for fd in leaked:
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                leaked_sockets.add(fd)
        except OSError:
            pass
    assert not leaked_sockets, f"test leaked socket fds {sorted(leaked_sockets)}"


def say(request: pytest.FixtureRequest, text: str) -> None:
    """Write to the terminal even when output is captured (matrices, timings)."""
    capman = request.config.pluginmanager.getplugin("capturemanager")
    if capman is not None:
        with capman.global_and_fixture_disabled():
            print("\n" + text, flush=True)
    else:  # pragma: no cover - pytest without its capture plugin
        print(text)


@pytest.fixture(scope="session")
def wine_session(request: pytest.FixtureRequest) -> Iterator[Any]:
    """One throwaway Wine prefix and wineserver for the whole test session (tests/wine.py)."""
    import sys

    from support import wine

    if not sys.platform.startswith("linux"):
        pytest.skip("the Wine tests run on Linux")
    reason = wine.missing_windows_tools()
    if reason:
        pytest.skip(f"Windows code under Wine not tested: {reason}")
    session = wine.WineSession.start()
    server = session.server_proc.pid if session.server_proc else "?"
    say(request, f"[wine] prefix {session.prefix} initialised in {session.init_seconds:.1f} s "
                 f"(wineserver pid {server})")
    yield session
    left = session.stop()
    assert not left, f"wine processes still running after the session: {left}"
