"""ExclusivePort for Twisted's IOCP reactor (Windows only; imported lazily).

``twisted.internet.iocpreactor.tcp.Port`` has its own ``startListening``: it asks the
reactor for a socket (``reactor.createSocket``, which also associates the socket with the
reactor's completion port through ``registerHandle``), binds, listens, registers the port
with ``addActiveHandle`` and posts the first ``AcceptEx`` (``doAccept``).  Here the socket
comes from the C core instead -- created overlapped, non-inheritable, with
SO_EXCLUSIVEADDRUSE set before bind -- and is registered exactly the way the reactor
registers its own sockets.  Accepting connections is Twisted's own code; the sequence
around it (guard, owner check, self-probe) is the same as for every exclusive port
(:class:`twisted_patch.port.listening.ExclusiveListening`).

Do not import this module directly: :func:`twisted_patch.port.port_class_for` picks the
port class for a reactor and imports this module only for the IOCP reactor.
"""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet import defer
from twisted.internet.iocpreactor import iocpsupport as _iocp
from twisted.internet.iocpreactor import tcp as iocp_tcp
from twisted.python import failure
from twisted.python import log as legacy_log

from twisted_patch.errors import listen_failure
from twisted_patch.port.listening import ExclusiveListening

# Twisted's IOCP port is untyped; treat it as Any rather than scatter ignores.
_IOCPPort: Any = iocp_tcp.Port

# Handles already associated with a completion port (a handle can be associated once):
# a serve-mode guard's socket taken over by a new listener keeps its association.
_associated: set[int] = set()


class IOCPExclusivePort(ExclusiveListening, _IOCPPort):  # type: ignore[misc]
    """``iocpreactor.tcp.Port`` whose listening socket comes from the exclusive-bind core."""

    def startListening(self) -> None:
        self._exclusive_start()

    def _adopt_listening(self, skt: socket.socket) -> None:
        # What reactor.createSocket does for the reactor's own sockets: associate the
        # handle with the completion port; then what iocpreactor.tcp.Port.startListening
        # does after listen().
        try:
            if skt.fileno() not in _associated:
                self.reactor.registerHandle(skt.fileno())
                _associated.add(skt.fileno())
            self.addrLen = _iocp.maxAddrLen(skt.fileno())
            self._realPortNumber = skt.getsockname()[1]
        except OSError as e:  # skt stays open: the caller's
            raise listen_failure(self.interface, self.port, e) from None
        # Twisted's own first event of a port (iocpreactor.tcp.Port.startListening's)
        legacy_log.msg(f"{self._getLogPrefix(self.factory)} starting on {self._realPortNumber}")
        self.factory.doStart()
        self.connected = True
        self.disconnected = False
        self.reactor.addActiveHandle(self)
        self.socket = skt
        self.getFileHandle = self.socket.fileno
        self.doAccept()

    def _stop_serving(self) -> None:
        # The handle stays associated with the reactor's completion port (a handle is
        # associated once); an AcceptEx already posted completes on this port object,
        # which drops it (``handleAccept`` checks ``disconnected``).
        self.reactor.removeActiveHandle(self)
        del self.getFileHandle

    def _base_lose_connection(self, connDone: failure.Failure) -> defer.Deferred[None] | None:
        d: defer.Deferred[None] | None = _IOCPPort.loseConnection(self, connDone)
        return d

    def _base_connection_lost(self, reason: failure.Failure) -> None:
        if self._kept_socket is None:  # closed now: the number may be reused
            _associated.discard(self.socket.fileno())
        _IOCPPort.connectionLost(self, reason)

    _repr_kind = "exclusive, IOCP"


IOCPExclusivePort._sibling_class = IOCPExclusivePort
