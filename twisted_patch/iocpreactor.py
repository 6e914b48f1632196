"""The ``exclusive-iocp`` reactor (Windows): Twisted's IOCP reactor, every ``listenTCP`` hardened.

Importing this module fails with ``ImportError`` where Twisted's IOCP reactor
does not exist (everywhere but Windows); ``twistd --help-reactors`` then lists
``exclusive-iocp`` as not available on this platform.

The IOCP reactor has its own ``Port`` class (overlapped ``AcceptEx``), so the
hardened port here is :class:`ExclusiveIOCPPort`: Twisted's IOCP ``Port``
whose socket is created, bound and put into listening state by the core
(``WSA_FLAG_OVERLAPPED | WSA_FLAG_NO_HANDLE_INHERIT``, ``SO_EXCLUSIVEADDRUSE``)
and then associated with the reactor's completion port, exactly as
``IOCPReactor.createSocket`` associates the sockets it creates.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import error
from twisted.internet.interfaces import IProtocolFactory
from twisted.internet.iocpreactor import iocpsupport as _iocp_support
from twisted.internet.iocpreactor import tcp as iocp_tcp
from twisted.internet.iocpreactor.reactor import IOCPReactor
from twisted.logger import Logger

from twisted_patch.port import open_listening_socket
from twisted_patch.reactor import resolve_interface

log = Logger()

# Twisted's IOCP classes are untyped; subclass them through Any.
_IOCPPort: Any = iocp_tcp.Port
_IOCPReactorBase: Any = IOCPReactor


class ExclusiveIOCPPort(_IOCPPort):  # type: ignore[misc]
    """Twisted's IOCP ``Port`` with its listening socket made by the core."""

    def __init__(
        self,
        port: Any,
        factory: IProtocolFactory,
        backlog: int = 50,
        interface: str = "",
        reactor: Any | None = None,
    ) -> None:
        super().__init__(port, factory, backlog, interface, reactor)

    def startListening(self) -> None:
        if getattr(self, "_reusePort", False):
            raise error.CannotListenError(
                self.interface,
                self.port,
                ValueError("reusePort=True asks for a shared port; twisted-patch refuses it"),
            )
        address = resolve_interface(self.interface, self.port, self.addressFamily)
        skt = open_listening_socket(
            address, int(self.port or 0), self.backlog, self.addressFamily
        )
        try:
            # What IOCPReactor.createSocket does for the sockets it creates.
            self.reactor.port.addHandle(skt.fileno())
            self.addrLen = _iocp_support.maxAddrLen(skt.fileno())
            self._realPortNumber = skt.getsockname()[1]
        except BaseException:
            skt.close()
            raise
        log.info(
            "twisted-patch: exclusive listener on {address}:{port} (IOCP)",
            address=address,
            port=self._realPortNumber,
        )
        self.factory.doStart()
        self.connected = True
        self.disconnected = False
        self.reactor.addActiveHandle(self)
        self.socket = skt
        self.getFileHandle = self.socket.fileno
        self.doAccept()


class ExclusiveIOCPReactor(_IOCPReactorBase):  # type: ignore[misc]
    """``IOCPReactor`` whose ``listenTCP`` returns :class:`ExclusiveIOCPPort`."""

    twisted_patch_port_options: dict[str, Any] = {}

    def listenTCP(
        self, port: Any, factory: IProtocolFactory, backlog: int = 50, interface: str = ""
    ) -> ExclusiveIOCPPort:
        p = ExclusiveIOCPPort(port, factory, backlog, interface, self)
        p.startListening()
        return p


def install(**options: Any) -> Any:
    """Install the hardened IOCP reactor as the global reactor."""
    if options:
        raise ValueError(
            "the exclusive-iocp reactor takes no port options in this version: "
            "its ports are made by the core with its default options"
        )
    from twisted.internet.main import installReactor

    reactor = ExclusiveIOCPReactor()
    installReactor(reactor)
    log.info("twisted-patch: installed the exclusive IOCP reactor")
    return reactor
