"""The exclusive port classes, and the one place where a reactor's class is chosen.

- :class:`ExclusivePort` (``tcp.Port``) for every reactor built on
  ``PosixReactorBase`` (epoll, poll, select, kqueue, asyncio, ...);
- :class:`twisted_patch.port.iocp.IOCPExclusivePort` for Twisted's IOCP reactor;
- their drop-in variants (:mod:`twisted_patch.port.dropin`) where ``listenTCP`` is
  replaced.

:func:`port_class_for` is the single switch between them; :func:`listen_tcp` is
what every replaced ``listenTCP`` does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from twisted.internet.interfaces import IProtocolFactory

from twisted_patch.port.tcp import ExclusivePort

__all__ = ["ExclusivePort", "ExclusiveListenTCPMixin", "listen_tcp", "port_class_for",
           "reactor_kind"]

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


def port_class_for(reactor: object, *, dropin: bool = False) -> type[Any]:
    """The exclusive port class for ``reactor``: the one place the code path is chosen.

    ``dropin``: the variant that accepts what ``tcp.Port`` accepts (for replaced
    ``listenTCP`` methods).
    """
    base: type[Any] = ExclusivePort
    if reactor_kind(reactor) == "iocp":
        from twisted_patch.port.iocp import IOCPExclusivePort

        base = IOCPExclusivePort
    if dropin:
        from twisted_patch.port.dropin import dropin_class

        return dropin_class(base)
    return base


def listen_tcp(
    reactor: Any,
    port: Any,
    factory: IProtocolFactory,
    backlog: int = 50,
    interface: str = "",
    options: Mapping[str, Any] | None = None,
) -> Any:
    """What every replaced ``listenTCP`` does: a started drop-in exclusive port."""
    cls = port_class_for(reactor, dropin=True)
    p = cls(port, factory, backlog, interface, reactor, **dict(options or {}))
    p.startListening()
    return p


class ExclusiveListenTCPMixin:
    """Mixed in before a reactor class: ``listenTCP`` returns an exclusive port."""

    twisted_patch_port_options: dict[str, Any] = {}

    def listenTCP(
        self, port: Any, factory: IProtocolFactory, backlog: int = 50, interface: str = ""
    ) -> Any:
        return listen_tcp(self, port, factory, backlog, interface, self.twisted_patch_port_options)

    listenTCP.twisted_patch = True  # type: ignore[attr-defined]
