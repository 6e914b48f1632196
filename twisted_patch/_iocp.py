"""ExclusivePort for Twisted's IOCP reactor (Windows only; imported lazily).

``twisted.internet.iocpreactor.tcp.Port`` has its own ``startListening``: it asks the
reactor for a socket (``reactor.createSocket``, which also associates the socket with the
reactor's completion port through ``registerHandle``), binds, listens, registers the port
with ``addActiveHandle`` and posts the first ``AcceptEx`` (``doAccept``).  Here the socket
comes from the C core instead -- created overlapped, non-inheritable, with
SO_EXCLUSIVEADDRUSE set before bind -- and is registered exactly the way the reactor
registers its own sockets.  Accepting connections is Twisted's own code.

Do not import this module directly: :func:`twisted_patch.port.port_class_for` picks the
port class for a reactor and imports this module only for the IOCP reactor.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IProtocolFactory
from twisted.internet.iocpreactor import iocpsupport as _iocp
from twisted.internet.iocpreactor import tcp as iocp_tcp
from twisted.logger import Logger

from twisted_patch import owner as _owner
from twisted_patch import port as _port

log = Logger()

# Twisted's IOCP port is untyped; treat it as Any rather than scatter ignores.
_IOCPPort: Any = iocp_tcp.Port


class IOCPExclusivePort(_IOCPPort):  # type: ignore[misc]
    """``iocpreactor.tcp.Port`` whose listening socket comes from the exclusive-bind core."""

    def __init__(
        self,
        port: int,
        factory: IProtocolFactory,
        backlog: int = 50,
        interface: str = "",
        reactor: Any = None,
    ) -> None:
        super().__init__(port, factory, backlog, interface, reactor)

    def startListening(self) -> None:
        # bind + listen by the core; CannotListenError explains any failure
        skt = _port.open_listening_socket(
            self.interface, int(self.port or 0), self.backlog, self.addressFamily
        )
        try:
            _owner.ensure_exclusive(skt, self.interface)  # as ExclusivePort does
            # What reactor.createSocket does for the reactor's own sockets: associate
            # the handle with the completion port.
            self.reactor.registerHandle(skt.fileno())
            self.addrLen = _iocp.maxAddrLen(skt.fileno())
            self._realPortNumber = skt.getsockname()[1]
        except OSError as e:
            skt.close()
            raise CannotListenError(self.interface, self.port, e) from None
        except BaseException:
            skt.close()
            raise
        log.info(
            "twisted-patch: exclusive listener on {address} (IOCP reactor)",
            address=f"{self.interface or '0.0.0.0'}:{self._realPortNumber}",
            interface=self.interface,
            port=self._realPortNumber,
        )
        self.factory.doStart()
        self.connected = True
        self.disconnected = False
        self.reactor.addActiveHandle(self)
        self.socket = skt
        self.getFileHandle = self.socket.fileno
        self.doAccept()

    def __repr__(self) -> str:
        if self._realPortNumber is not None:
            return f"<{self.factory.__class__} on {self._realPortNumber} (exclusive, IOCP)>"
        return f"<{self.factory.__class__} (exclusive, IOCP, not listening)>"
