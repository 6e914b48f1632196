"""Plugin objects for ``twisted/plugins/twisted_patch_plugins.py``.

This module is imported whenever Twisted scans its plugins, so it imports only
zope.interface and Twisted's interface modules -- never the reactor and never
the C extension.  The endpoint code is imported on first use; the reactor
modules (``twisted_patch.reactor``, ``twisted_patch.iocpreactor``) only when
their reactor is installed or ``twistd --help-reactors`` checks them.
"""

from __future__ import annotations

from typing import Any

from twisted.application.reactors import Reactor
from twisted.internet.interfaces import IStreamServerEndpointStringParser
from twisted.plugin import IPlugin
from zope.interface import implementer


@implementer(IPlugin, IStreamServerEndpointStringParser)
class ExclusiveServerParser:
    """``xtcp:PORT[:interface=ADDR][:backlog=N][:retry=S][:guard=G][:probe=P]``
    (and ``xtcp6:``, default ``::``); guard/probe: see docs/guard.rst."""

    def __init__(self, prefix: str, default_interface: str) -> None:
        self.prefix = prefix
        self._default_interface = default_interface

    def parseStreamServer(self, reactor: Any, *args: object, **kwargs: object) -> Any:
        from twisted_patch.endpoint import parse_server

        return parse_server(self.prefix, self._default_interface, reactor, *args, **kwargs)

    def __repr__(self) -> str:
        return f"<ExclusiveServerParser {self.prefix}>"


@implementer(IPlugin, IStreamServerEndpointStringParser)
class ExclusiveSystemdParser:
    """``xsystemd:domain=INET:name=NAME`` (or ``index=N``) ``[:guard=G][:probe=P]``: an
    inherited (socket-activated) listening socket with xtcp's guarantees; docs/systemd.rst."""

    prefix = "xsystemd"

    def parseStreamServer(self, reactor: Any, *args: object, **kwargs: object) -> Any:
        from twisted_patch.systemd import parse_server

        return parse_server(reactor, *args, **kwargs)

    def __repr__(self) -> str:
        return "<ExclusiveSystemdParser xsystemd>"


xtcp = ExclusiveServerParser("xtcp", "")
xtcp6 = ExclusiveServerParser("xtcp6", "::")
xsystemd = ExclusiveSystemdParser()

# Reactor plugins: twistd/trial --reactor=exclusive (and exclusive-iocp on Windows).
exclusive = Reactor(
    "exclusive",
    "twisted_patch.reactor",
    "the platform's default reactor; every listenTCP made exclusive by twisted-patch",
)
exclusive_iocp = Reactor(
    "exclusive-iocp",
    "twisted_patch.iocpreactor",
    "Windows IOCP reactor; every listenTCP made exclusive by twisted-patch",
)
