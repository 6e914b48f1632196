"""The ``exclusive-iocp`` reactor (Windows): Twisted's IOCP reactor, every ``listenTCP`` hardened.

Importing this module fails with ``ImportError`` where Twisted's IOCP reactor
does not exist (everywhere but Windows); ``twistd --help-reactors`` then lists
``exclusive-iocp`` as not available on this platform.

The IOCP reactor has its own ``Port`` class (overlapped ``AcceptEx``); its
hardened version is :class:`twisted_patch.port.iocp.IOCPExclusivePort`, chosen by
:func:`twisted_patch.port.port_class_for` with the drop-in rules of
:mod:`twisted_patch.port.dropin`, as for the ``exclusive`` reactor.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.iocpreactor.reactor import IOCPReactor
from twisted.logger import Logger

from twisted_patch.port import ExclusiveListenTCPMixin
from twisted_patch.port.dropin import resolve_port_options

log = Logger()

# Twisted's IOCP reactor is untyped; subclass it through Any.
_IOCPReactorBase: Any = IOCPReactor


class ExclusiveIOCPReactor(ExclusiveListenTCPMixin, _IOCPReactorBase):  # type: ignore[misc]
    """``IOCPReactor`` whose ``listenTCP`` returns an exclusive IOCP port."""


def install(**options: Any) -> Any:
    """Install the hardened IOCP reactor as the global reactor.

    Port options as for :func:`twisted_patch.reactor.install`.
    """
    from twisted.internet.main import installReactor

    port_options = resolve_port_options(options, "the exclusive-iocp reactor")
    reactor = ExclusiveIOCPReactor()
    reactor.twisted_patch_port_options = port_options
    installReactor(reactor)
    log.info(
        "twisted-patch: installed the exclusive IOCP reactor (port options {options})",
        options=port_options,
    )
    return reactor
