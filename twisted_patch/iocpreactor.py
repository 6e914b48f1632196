"""The ``exclusive-iocp`` reactor (Windows): Twisted's IOCP reactor, every ``listenTCP`` hardened.

Importing this module fails with ``ImportError`` where Twisted's IOCP reactor
does not exist (everywhere but Windows); ``twistd --help-reactors`` then lists
``exclusive-iocp`` as not available on this platform.

The IOCP reactor has its own ``Port`` class (overlapped ``AcceptEx``); its
hardened version is ``twisted_patch._iocp.IOCPExclusivePort``, used here with
the drop-in rules of the ``exclusive`` reactor (host names resolved as
``tcp.Port`` does, ``SO_REUSEPORT`` refused).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IProtocolFactory
from twisted.internet.iocpreactor.reactor import IOCPReactor
from twisted.logger import Logger

from twisted_patch._iocp import IOCPExclusivePort
from twisted_patch.reactor import DropInMixin

log = Logger()

# Twisted's IOCP reactor is untyped; subclass it through Any.
_IOCPReactorBase: Any = IOCPReactor


class DropInIOCPPort(DropInMixin, IOCPExclusivePort):
    """The IOCP exclusive port (``twisted_patch._iocp``) accepting what ``tcp.Port`` accepts."""


class ExclusiveIOCPReactor(_IOCPReactorBase):  # type: ignore[misc]
    """``IOCPReactor`` whose ``listenTCP`` returns :class:`DropInIOCPPort`."""

    def listenTCP(
        self, port: Any, factory: IProtocolFactory, backlog: int = 50, interface: str = ""
    ) -> DropInIOCPPort:
        p = DropInIOCPPort(port, factory, backlog, interface, self)
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
