"""Sockets from the C core: the only listen-side user of ``_native``.

Every function returns a Python ``socket.socket`` that owns the core's handle
(closed if wrapping it fails) or raises ``CannotListenError`` whose
``socketError`` explains the failure; a bind refused because another socket
holds the address names that holder where the owner lookup can.

Layer: above ``errors``, ``_address`` and ``owner``; below the port classes.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
import weakref

from twisted.internet.error import CannotListenError

from twisted_patch import _native
from twisted_patch.errors import (
    HELD,
    ExclusiveListenError,
    cannot_listen,
    format_address,
    listen_failure,
)
from twisted_patch.owner import describe_holder, only_time_wait

#: The core's exception for OS failures (``errno``, ``stage``, ``detail``).
CoreError = _native.BindError

#: Linux: listening sockets are bound without SO_REUSEADDR (set once listening),
#: so that a bind fails beside any socket bound on an overlapping address.
#: Elsewhere the TIME_WAIT entries that would then stop a restart cannot be
#: counted: SO_REUSEADDR is set before bind, as Twisted does.
STRICT_BIND = _native.OWNER_BACKEND == "linux"

# Listening sockets whose bind had to share the address (retried with
# SO_REUSEADDR because of TIME_WAIT entries): only beside these can a foreign
# socket be bound without listening (a placeholder).
_shared: weakref.WeakSet[socket.socket] = weakref.WeakSet()


def _listen_handle(host: str, port: int, backlog: int, family: int) -> tuple[int, bool]:
    """(handle, shared): a strict bind first; retried with SO_REUSEADDR from the start
    only when the address holds nothing but TIME_WAIT entries (``shared``)."""
    try:
        return _native.listen_tcp(host or None, port, backlog, family, STRICT_BIND), False
    except CoreError as e:
        retry = (
            STRICT_BIND
            and port != 0
            and e.stage == "bind"
            and e.errno == errno.EADDRINUSE
            and only_time_wait(host, port, family)
        )
        if not retry:
            raise
    return _native.listen_tcp(host or None, port, backlog, family), True


def _adopt_listening(handle: int, family: int, shared: bool) -> socket.socket:
    skt = adopt(handle, family)
    if shared:
        _shared.add(skt)
    return skt


def shared_bind(skt: socket.socket) -> bool:
    """Whether ``skt``'s bind shared its address (SO_REUSEADDR before bind): only then
    can a placeholder be bound beside it, and the owner check must look for one."""
    return skt in _shared


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
        handle, shared = _listen_handle(host, port, backlog, family)
    except ValueError as e:
        raise listen_failure(host, port, e) from None
    except CoreError as e:
        holder = None
        if e.stage in ("bind", "listen") and e.errno in HELD:
            holder = holder_of(host, port, family)
        raise cannot_listen(host, port, e, e.stage, holder, asked=asked) from None
    return _adopt_listening(handle, family, shared)


def open_guard(host: str, port: int, family: int) -> socket.socket:
    """A bound, never listening socket without reuse options (a refusing guard).

    Raises ``CoreError`` (the caller decides what an absent family means).
    """
    return adopt(_native.guard_open(host, port, family), family)


def open_serving_guard(host: str, port: int, backlog: int, family: int) -> socket.socket:
    """A listening guard socket (serve mode).  Raises ``CoreError``."""
    handle, shared = _listen_handle(host, port, backlog, family)
    return _adopt_listening(handle, family, shared)


def listen_on(skt: socket.socket, backlog: int) -> None:
    """listen() on a socket the core made (a guard being taken over).  Raises ``CoreError``.

    Then (Linux), as after a strict bind, SO_REUSEADDR is set: listening, the socket
    conflicts with every bind whatever its options, and its connections' TIME_WAIT
    entries may be reused by the next start (a refuse guard never had it).  Raises
    ``OSError`` if that fails.
    """
    _native.listen(skt.fileno(), backlog)
    if STRICT_BIND:
        skt.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)


def unlisten(skt: socket.socket) -> None:
    """Stop a listening socket listening and keep its bind (it becomes a refuse guard):
    SO_REUSEADDR cleared, shutdown(SHUT_RD), SO_ACCEPTCONN checked.  Raises
    ``CoreError`` where the OS cannot (the BSDs, macOS, Windows): the socket then
    still listens, still bound."""
    _native.unlisten(skt.fileno())


def is_listening(skt: socket.socket) -> bool:
    """SO_ACCEPTCONN of a socket."""
    return bool(skt.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))


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



# --- sockets made by someone else (socket activation) ------------------------------


class Inherited:
    """What an inherited descriptor is, read without taking it over (:func:`inspect_fd`)."""

    def __init__(
        self, fd: int, family: int, kind: int, protocol: int, address: tuple[str, int] | None,
        listening: bool,
    ) -> None:
        self.fd = fd
        self.family = family
        self.kind = kind
        self.protocol = protocol
        self.address = address
        self.listening = listening


def inspect_fd(fd: int) -> Inherited | None:
    """Family, type, address and listening state of descriptor ``fd``; None if it is
    not a socket (or not open).  The descriptor is neither closed nor changed."""
    try:
        if not stat.S_ISSOCK(os.fstat(fd).st_mode):
            return None
        skt = socket.socket(fileno=fd)  # family/type/proto read from the descriptor
    except OSError:
        return None
    try:
        address: tuple[str, int] | None = None
        if skt.family in (socket.AF_INET, socket.AF_INET6):
            name = skt.getsockname()
            address = (str(name[0]), int(name[1]))
        listening = bool(skt.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))
        return Inherited(fd, int(skt.family), int(skt.type), int(skt.proto), address, listening)
    except OSError:
        return None
    finally:
        skt.detach()


def _refuse(fd: int, what: str, address: tuple[str, int] | None, problem: str,
            fix: str) -> CannotListenError:
    where = format_address(*address) if address is not None else f"descriptor {fd}"
    message = f"{what} (descriptor {fd}, {where}) {problem}; {fix}"
    wrapped = ExclusiveListenError(errno.EINVAL, message, "inherited", where, "")
    host, port = address if address is not None else ("", 0)
    return listen_failure(host, port, wrapped)


def adopt_inherited(fd: int, family: int, what: str) -> tuple[socket.socket, str, int]:
    """Take over an inherited listening TCP socket, with xtcp's guarantees checked.

    Checked: a TCP stream socket of ``family``, bound to an address and port,
    listening, without ``SO_REUSEPORT`` and (IPv6 wildcard) with
    ``IPV6_V6ONLY``; what cannot be fixed raises ``CannotListenError`` (the
    descriptor is closed: it is not served, and not leaked either).  Fixed: the
    descriptor is made non-inheritable (close-on-exec) and non-blocking.
    ``what`` names it for messages (``xsystemd name=web``).  Returns the
    socket (which owns the descriptor), its host and its port.
    """
    found = inspect_fd(fd)
    if found is None:
        raise _refuse(fd, what, None, "is not an open socket",
                      "check the socket unit (or LISTEN_FDS) that passed it")
    address = found.address
    skt = socket.socket(fileno=fd)
    try:
        problem, fix = _inherited_problem(skt, found, family)
        if problem:
            raise _refuse(fd, what, address, problem, fix)
        assert address is not None
        if os.get_inheritable(fd):
            os.set_inheritable(fd, False)  # children of ours must not get the port
        skt.setblocking(False)
    except BaseException:
        skt.close()
        raise
    return skt, address[0], address[1]


def _inherited_problem(skt: socket.socket, found: Inherited, family: int) -> tuple[str, str]:
    """('', '') if ``skt`` may be served as an exclusive listener; else (problem, fix)."""
    names: dict[int, str] = {socket.AF_INET: "IPv4 (INET)", socket.AF_INET6: "IPv6 (INET6)"}
    if found.family not in names:
        return (f"is not an IPv4 or IPv6 socket (address family {found.family})",
                "xsystemd: adopts TCP sockets only (ListenStream=ADDRESS:PORT)")
    if found.kind != socket.SOCK_STREAM or found.protocol not in (0, socket.IPPROTO_TCP):
        return ("is not a TCP stream socket",
                "use ListenStream= for it in the socket unit")
    if found.family != family:
        return (f"is {names[found.family]}, not the {names.get(family, family)} that "
                f"domain= says", "make domain= match the socket unit's address")
    assert found.address is not None
    if found.address[1] == 0:
        return "is not bound to a port", "give the socket unit ListenStream=ADDRESS:PORT"
    if not found.listening:
        return ("is bound but not listening: between its bind and a listen() of ours, "
                "another socket could take the port over",
                "pass a listening socket (ListenStream=, not a bound-only socket)")
    reuseport = getattr(socket, "SO_REUSEPORT", None)
    if reuseport is not None and skt.getsockopt(socket.SOL_SOCKET, reuseport):
        return ("has SO_REUSEPORT set: another socket of the same user can share the "
                "port and receive its connections",
                "remove ReusePort=yes from the socket unit")
    if found.family == socket.AF_INET6 and found.address[0] == "::" and not skt.getsockopt(
        socket.IPPROTO_IPV6, socket.IPV6_V6ONLY
    ):
        return ("is a dual-stack [::] socket (IPV6_V6ONLY off), which cannot be changed "
                "once bound",
                "set BindIPv6Only=ipv6-only in the socket unit (and pass 0.0.0.0 "
                "separately if IPv4 is wanted)")
    return "", ""
