"""ExclusivePort: Twisted's ``tcp.Port`` with its listening socket made by the C core.

Only socket creation changes.  The core creates the socket non-inheritable and
non-blocking, sets the protective options (SO_EXCLUSIVEADDRUSE on Windows,
SO_REUSEADDR without SO_REUSEPORT on POSIX, IPV6_V6ONLY on IPv6), binds and
listens; the socket is then handed to Twisted's own ``Port`` as a pre-existing
socket, so accepting connections is exactly Twisted's code.
"""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet import tcp
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IProtocolFactory
from twisted.logger import Logger

from twisted_patch import _native
from twisted_patch.errors import HELD, cannot_listen, format_address
from twisted_patch.owner import describe_holder, ensure_exclusive

log = Logger()


def open_listening_socket(interface: str, port: int, backlog: int, family: int) -> socket.socket:
    """Bind and listen through the core; return a Python socket owning the handle.

    Raises :class:`CannotListenError` (never anything else for OS failures) whose
    ``socketError`` explains what happened.
    """
    try:
        handle = _native.listen_tcp(interface or None, port, backlog, family)
    except ValueError as e:
        raise CannotListenError(interface, port, e) from None
    except _native.BindError as e:
        holder = None
        if e.stage in ("bind", "listen") and e.errno in HELD:
            holder = describe_holder(interface, port, family)
        raise cannot_listen(interface, port, e, e.stage, holder) from None
    try:
        skt = socket.socket(family, socket.SOCK_STREAM, 0, fileno=handle)
    except BaseException:
        _native.close(handle)
        raise
    skt.setblocking(False)  # already non-blocking in the OS; align Python's view
    return skt


class ExclusivePort(tcp.Port):
    """A ``twisted.internet.tcp.Port`` whose socket nobody else can share.

    Same constructor as ``tcp.Port``; ``interface`` must be a numeric IP address
    (or empty for the IPv4 wildcard).  ``startListening`` raises
    :class:`CannotListenError` explaining any failure.
    """

    def __init__(
        self,
        port: int,
        factory: IProtocolFactory,
        backlog: int = 50,
        interface: str = "",
        reactor: Any | None = None,
    ) -> None:
        super().__init__(port, factory, backlog, interface, reactor)

    def startListening(self) -> None:
        if self._preexistingSocket is None:
            skt = open_listening_socket(
                self.interface, int(self.port or 0), self.backlog, self.addressFamily
            )
            try:
                ensure_exclusive(skt, self.interface)  # no other process may share the port
            except BaseException:
                skt.close()
                raise
            self._preexistingSocket = skt
            try:
                super().startListening()
            except BaseException:
                self._preexistingSocket = None
                skt.close()
                raise
            # Twisted skips shutdown() for adopted sockets; this one is ours.
            self._shouldShutdown = True
            log.info(
                "twisted-patch: exclusive listener on {address}",
                address=format_address(self.interface, self._realPortNumber or 0),
                interface=self.interface,
                port=self._realPortNumber,
            )
        else:
            super().startListening()

    def __repr__(self) -> str:
        if self._realPortNumber is not None:
            return f"<{self.factory.__class__} on {self._realPortNumber} (exclusive)>"
        return f"<{self.factory.__class__} (exclusive, not listening)>"


_IOCP_REACTOR = ("twisted.internet.iocpreactor.reactor", "IOCPReactor")


def reactor_kind(reactor: object) -> str:
    """``"iocp"`` for Twisted's IOCP reactor (or a subclass of it), else ``"select"``.

    Decided from the reactor's class hierarchy, without importing the IOCP reactor
    (which only imports on Windows).  Every reactor other than IOCP (select, poll,
    epoll, kqueue, asyncio, win32event, ...) uses ``tcp.Port``'s socket handling.
    """
    for klass in type(reactor).__mro__:
        if (klass.__module__, klass.__name__) == _IOCP_REACTOR:
            return "iocp"
    return "select"


def port_class_for(reactor: object) -> type[Any]:
    """The exclusive port class for ``reactor``: the one place the code path is chosen."""
    if reactor_kind(reactor) == "iocp":
        from twisted_patch._iocp import IOCPExclusivePort

        return IOCPExclusivePort
    return ExclusivePort
