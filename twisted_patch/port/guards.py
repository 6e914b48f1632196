"""The address-family guard: its policy and its state, in one place.

A loopback or wildcard listener also holds the other family's counterpart of
its address on the same port (127.0.0.1 <-> ::1, 0.0.0.0 <-> ::), so that
``localhost`` cannot be shadowed.  The sockets come from the C core
(:mod:`twisted_patch._sockets`); the listening sequence that opens, installs
and hands them over is :class:`twisted_patch.port.listening.ExclusiveListening`.

Guard modes (endpoint keyword ``guard=``, constructor argument ``guard``):

``serve``
    the sibling is a second exclusive listening socket serving the same
    factory, so ``localhost`` works on both families.  Default for
    127.0.0.1 and ::1.
``refuse``
    the sibling is a bound, non-listening socket without SO_REUSEADDR or
    SO_REUSEPORT (SO_EXCLUSIVEADDRUSE on Windows): connections to it are
    refused and nobody can bind it.  Default for 0.0.0.0 and ``::`` (a server
    that asked for one family's wildcard does not become reachable from the
    network on the other one).
``no``
    no guard.  Other addresses have no sibling and always get ``no``.

The state: :data:`registry` knows every exclusive listener of this process by
address and every guard it holds, and which listener each guard belongs to.
A new listener for an address that a guard holds takes that guard's socket
over (listen() on it): the port is never free in between.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

GUARD_MODES = ("serve", "refuse", "no")

#: With port 0 the sibling must get the number the OS chose for the first
#: socket; if that number is taken in the sibling family, the listen is
#: retried with a fresh OS-chosen port, at most this many times in all.
PORT_ZERO_ATTEMPTS = 8

WILDCARDS = frozenset({"0.0.0.0", "::"})

_SIBLINGS: dict[tuple[int, str], tuple[int, str]] = {
    (socket.AF_INET, "127.0.0.1"): (socket.AF_INET6, "::1"),
    (socket.AF_INET6, "::1"): (socket.AF_INET, "127.0.0.1"),
    (socket.AF_INET, "0.0.0.0"): (socket.AF_INET6, "::"),
    (socket.AF_INET6, "::"): (socket.AF_INET, "0.0.0.0"),
}

#: (family, canonical numeric host, port)
Key = tuple[int, str, int]


def check_guard(value: object) -> str | None:
    """``serve``/``refuse``/``no``, or None for "the default for this address"."""
    if value is None:
        return None
    if isinstance(value, str) and value.strip().lower() in GUARD_MODES:
        return value.strip().lower()
    raise ValueError(f"guard must be one of {', '.join(GUARD_MODES)}, not {value!r}")


def sibling_of(family: int, host: str) -> tuple[int, str] | None:
    """The other family's counterpart of 127.0.0.1, ::1, 0.0.0.0 and ::; else None."""
    return _SIBLINGS.get((family, host))


def default_guard(family: int, host: str) -> str:
    """serve for loopback, refuse for the wildcards, no for every other address."""
    if sibling_of(family, host) is None:
        return "no"
    return "refuse" if host in WILDCARDS else "serve"


def resolve_guard(requested: str | None, family: int, host: str) -> str:
    """The guard mode to use; ValueError if serve/refuse is asked where no sibling exists."""
    if requested is None:
        return default_guard(family, host)
    if requested != "no" and sibling_of(family, host) is None:
        raise ValueError(
            f"guard={requested} needs an address with a sibling in the other family "
            f"(127.0.0.1, ::1, 0.0.0.0 or ::), not {host}; use guard=no"
        )
    return requested


@dataclass
class Guard:
    """One guard held for ``owner``: ``key`` is the sibling address it holds.

    refuse: ``socket`` is bound and not listening.  serve: ``port`` is a second
    exclusive port of the owner's class, serving the owner's factory.
    """

    key: Key
    owner: Any
    mode: str
    socket: socket.socket | None = None
    port: Any | None = None


class Registry:
    """Every exclusive listener of this process by address, and every guard it holds."""

    def __init__(self) -> None:
        self._listeners: dict[Key, Any] = {}
        self._guards: dict[Key, Guard] = {}
        self._by_owner: dict[int, Guard] = {}  # id(owner) -> its guard

    # listeners
    def add_listener(self, key: Key, port: Any) -> None:
        self._listeners[key] = port

    def listener_at(self, key: Key) -> Any | None:
        return self._listeners.get(key)

    def remove_listener(self, key: Key, port: Any) -> bool:
        """Forget ``port`` at ``key``; False if another port (or none) is registered there."""
        if self._listeners.get(key) is not port:
            return False
        del self._listeners[key]
        return True

    def key_of(self, port: Any) -> Key | None:
        for key, value in self._listeners.items():
            if value is port:
                return key
        return None

    # guards
    def add_guard(self, guard: Guard) -> None:
        self._guards[guard.key] = guard
        self._by_owner[id(guard.owner)] = guard

    def guard_at(self, key: Key) -> Guard | None:
        return self._guards.get(key)

    def guard_of(self, owner: Any) -> Guard | None:
        return self._by_owner.get(id(owner))

    def guard_serving_as(self, port: Any) -> Guard | None:
        """The serve guard whose sibling port is ``port``."""
        for guard in self._guards.values():
            if guard.port is port:
                return guard
        return None

    def remove_guard(self, guard: Guard) -> None:
        if self._guards.get(guard.key) is guard:
            del self._guards[guard.key]
        if self._by_owner.get(id(guard.owner)) is guard:
            del self._by_owner[id(guard.owner)]

    def guard_sockets(self) -> dict[Key, str]:
        return {key: guard.mode for key, guard in self._guards.items()}


registry = Registry()


def guard_sockets() -> dict[Key, str]:
    """The guard sockets this process holds now: {(family, host, port): mode}."""
    return registry.guard_sockets()
