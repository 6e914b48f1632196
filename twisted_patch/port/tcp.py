"""ExclusivePort: Twisted's ``tcp.Port`` with its listening socket made by the C core.

Only socket creation changes.  The core creates the socket non-inheritable and
non-blocking, sets the protective options (SO_EXCLUSIVEADDRUSE on Windows,
SO_REUSEADDR without SO_REUSEPORT on POSIX, IPV6_V6ONLY on IPv6), binds and
listens; the socket is then handed to Twisted's own ``Port`` as a pre-existing
socket, so accepting connections is exactly Twisted's code.  The sequence
around it (guard, owner check, self-probe) is
:class:`twisted_patch.port.listening.ExclusiveListening`.
"""

from __future__ import annotations

import socket

from twisted.internet import defer, tcp
from twisted.python import failure

from twisted_patch.port.listening import ExclusiveListening


class ExclusivePort(ExclusiveListening, tcp.Port):
    """A ``twisted.internet.tcp.Port`` whose socket nobody else can share.

    Same constructor as ``tcp.Port`` plus ``guard`` and ``probe``;
    ``interface`` must be a numeric IP address (or empty for the IPv4
    wildcard).  ``startListening`` raises :class:`CannotListenError`
    explaining any failure.

    ``guard``: ``serve``, ``refuse``, ``no`` or None for the default of the
    address (serve for 127.0.0.1/::1, refuse for 0.0.0.0/::, no elsewhere);
    see :mod:`twisted_patch.port.guards`.  ``probe``: ``strict`` (default),
    ``warn`` or ``off``.  After ``startListening``, :attr:`sibling` is the
    port serving the other family (guard=serve) and :attr:`probe_results`
    what the self-probe found.
    """

    def startListening(self) -> None:
        if self._preexistingSocket is not None:
            super().startListening()
            return
        self._exclusive_start()

    def _adopt_listening(self, skt: socket.socket) -> None:
        self._preexistingSocket = skt
        try:
            tcp.Port.startListening(self)
        except BaseException:
            self._preexistingSocket = None  # skt stays open: the caller's
            raise
        # Twisted skips shutdown() for adopted sockets.  One the core made is ours
        # alone; an inherited one (adopt(shared=True)) may be the supervisor's too,
        # and shutdown() would stop its copy listening as well.
        self._shouldShutdown = not self.shared_socket

    def _stop_serving(self) -> None:
        tcp.Port.stopReading(self)
        del self.fileno

    def _base_lose_connection(self, connDone: failure.Failure) -> defer.Deferred[None] | None:
        d: defer.Deferred[None] | None = tcp.Port.loseConnection(self, connDone)
        return d

    def _base_connection_lost(self, reason: failure.Failure) -> None:
        tcp.Port.connectionLost(self, reason)

    _repr_kind = "exclusive"


ExclusivePort._sibling_class = ExclusivePort
