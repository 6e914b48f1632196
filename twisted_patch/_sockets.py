"""Sockets from the C core: the only listen-side user of ``_native``.

Every function returns a Python ``socket.socket`` that owns the core's handle
(closed if wrapping it fails) or raises ``CannotListenError`` whose
``socketError`` explains the failure; a bind refused because another socket
holds the address names that holder where the owner lookup can.

Layer: above ``errors``, ``_address`` and ``owner``; below the port classes.
"""

from __future__ import annotations

import socket

from twisted_patch import _native
from twisted_patch.errors import HELD, cannot_listen, listen_failure
from twisted_patch.owner import describe_holder

#: The core's exception for OS failures (``errno``, ``stage``, ``detail``).
CoreError = _native.BindError


def adopt(handle: int, family: int) -> socket.socket:
    """A Python socket owning a core handle (the handle is closed if that fails)."""
    try:
        skt = socket.socket(family, socket.SOCK_STREAM, 0, fileno=handle)
    except BaseException:
        _native.close(handle)
        raise
    skt.setblocking(False)  # already non-blocking in the OS; align Python's view
    return skt


def holder_of(host: str, port: int, family: int) -> str | None:
    """Who holds host:port, in words, for an error message (None if unknown)."""
    return describe_holder(host, port, family)


def listen(
    host: str, port: int, backlog: int, family: int, *, asked: tuple[str, int] | None = None
) -> socket.socket:
    """Bind and listen through the core (non-inheritable, exclusive options set).

    ``asked``: the address the user asked for, when ``host:port`` is its sibling.
    """
    try:
        handle = _native.listen_tcp(host or None, port, backlog, family)
    except ValueError as e:
        raise listen_failure(host, port, e) from None
    except CoreError as e:
        holder = None
        if e.stage in ("bind", "listen") and e.errno in HELD:
            holder = holder_of(host, port, family)
        raise cannot_listen(host, port, e, e.stage, holder, asked=asked) from None
    return adopt(handle, family)


def open_guard(host: str, port: int, family: int) -> socket.socket:
    """A bound, never listening socket without reuse options (a refusing guard).

    Raises ``CoreError`` (the caller decides what an absent family means).
    """
    return adopt(_native.guard_open(host, port, family), family)


def open_serving_guard(host: str, port: int, backlog: int, family: int) -> socket.socket:
    """A listening guard socket (serve mode).  Raises ``CoreError``."""
    return adopt(_native.listen_tcp(host, port, backlog, family), family)


def listen_on(skt: socket.socket, backlog: int) -> None:
    """listen() on a socket the core made (a guard being taken over).  Raises ``CoreError``."""
    _native.listen(skt.fileno(), backlog)


def probe_rows(skt: socket.socket) -> list[tuple[str, str, str, int, str, str, bool]]:
    """The core's self-probe of a bound socket: one row per bind tried.

    ``ValueError`` if the socket is not bound to an IP address and port;
    ``CoreError`` if its address cannot be read.
    """
    handle = skt.fileno()
    try:
        return list(_native.probe(handle))
    except CoreError as e:
        if e.detail != "getsockname":
            raise ValueError(f"cannot probe socket {handle}: {e.detail}") from None
        raise

