"""The ``exclusive`` reactor: the platform's default reactor, every ``listenTCP`` hardened.

``twistd --reactor=exclusive`` / ``trial --reactor=exclusive`` install it
through the plugin in ``twisted/plugins/twisted_patch_plugins.py``; a program
can also install it itself, before anything imports ``twisted.internet.reactor``::

    from twisted_patch import reactor
    reactor.install()

The reactor is the one ``twisted.internet.default.install`` would pick
(epoll on Linux, poll on other POSIX systems, select on macOS and Windows);
only ``listenTCP`` changes: it returns an :class:`~twisted_patch.port.ExclusivePort`
(and so does ``listenSSL``, which Twisted builds on ``listenTCP``).

Drop-in compatibility with ``tcp.Port`` (see ``docs/enabling.rst``):

- an IPv4 interface given as a host name (``interface="localhost"``) is
  resolved the way ``tcp.Port`` resolves it (``socket.gethostbyname``), and the
  core listens on the resulting address; IPv6 interfaces must be numeric, as
  for ``tcp.Port``;
- a ``Binding`` (Twisted 26.5+) that asks for ``reusePort=True`` is refused
  with ``CannotListenError``: a shared port is exactly what this package
  exists to prevent;
- options for the hardened port (keyword arguments of ``ExclusivePort``) can
  be given to :func:`install`, or to ``--reactor=exclusive`` through the
  environment variable ``TWISTED_PATCH_PORT_OPTIONS`` (a JSON object).
"""

from __future__ import annotations

import inspect
import json
import os
import socket
import threading
from collections.abc import Mapping
from typing import Any, Callable

from twisted.internet import abstract
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IProtocolFactory
from twisted.logger import Logger

from twisted_patch.port import ExclusivePort

log = Logger()

#: Environment variable read by the reactor plugins: a JSON object of
#: keyword arguments for every ``ExclusivePort`` the reactor creates.
OPTIONS_ENVIRONMENT_VARIABLE = "TWISTED_PATCH_PORT_OPTIONS"

# The module that twisted.internet.default would install from, and its reactor class.
_REACTOR_CLASSES = {
    "twisted.internet.epollreactor": "EPollReactor",
    "twisted.internet.pollreactor": "PollReactor",
    "twisted.internet.selectreactor": "SelectReactor",
    "twisted.internet.kqreactor": "KQueueReactor",
}


class DropInMixin:
    """What the drop-in ports accept beyond ``ExclusivePort``: what ``tcp.Port`` accepts.

    Used where ``listenTCP`` is replaced (the ``exclusive`` reactors and
    :func:`twisted_patch.install`): the caller wrote code for Twisted's port,
    so an IPv4 host name as interface is resolved as Twisted resolves it, and
    a request for ``SO_REUSEPORT`` is refused with a clear error.  Mixed in
    before the port class whose ``startListening`` asks the core for a socket.
    """

    interface: str
    port: int | None
    addressFamily: socket.AddressFamily

    def startListening(self) -> None:
        if getattr(self, "_preexistingSocket", None) is not None:
            super().startListening()  # type: ignore[misc]
            return
        if getattr(self, "_reusePort", False):
            raise CannotListenError(
                self.interface,
                self.port,
                ValueError(
                    "this listener asks for SO_REUSEPORT (a Binding with reusePort=True): "
                    "a port shared with other sockets is what twisted-patch prevents; "
                    "use twisted.internet.tcp.Port directly for this listener"
                ),
            )
        original = self.interface
        resolved = resolve_interface(original, self.port, self.addressFamily)
        if resolved == original:
            super().startListening()  # type: ignore[misc]
            return
        self.interface = resolved
        try:
            super().startListening()  # type: ignore[misc]
        finally:
            self.interface = original


class DropInExclusivePort(DropInMixin, ExclusivePort):
    """An :class:`ExclusivePort` that accepts what ``tcp.Port`` accepts (see DropInMixin)."""


def resolve_interface(interface: str, port: int | None, family: int) -> str:
    """``interface`` as a numeric address, resolved the way ``tcp.Port`` would.

    IPv4: a numeric address or '' is returned as is; a name is resolved with
    ``socket.gethostbyname`` (what binding ``(name, port)`` on an AF_INET
    socket does).  IPv6 interfaces are numeric already (``tcp.Port`` decides
    the family with ``isIPv6Address``).  Raises ``CannotListenError`` when
    the name does not resolve, as ``tcp.Port`` does.
    """
    if family != socket.AF_INET or not interface or abstract.isIPAddress(interface):
        return interface
    try:
        return socket.gethostbyname(interface)
    except OSError as e:
        raise CannotListenError(interface, port, e) from None


def check_port_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The options as a dict, if ``ExclusivePort`` accepts them; else ValueError naming them."""
    options = dict(options)
    if not options:
        return options
    signature = inspect.signature(ExclusivePort.__init__)
    try:
        signature.bind(None, 0, None, **options)
    except TypeError:
        known = [
            name
            for name, p in signature.parameters.items()
            if p.kind is inspect.Parameter.KEYWORD_ONLY
        ]
        raise ValueError(
            f"ExclusivePort does not accept the option(s) "
            f"{', '.join(sorted(map(repr, options)))}; "
            f"keyword options it accepts: {', '.join(known) or 'none in this version'}"
        ) from None
    return options


def options_from_environment(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Port options from ``TWISTED_PATCH_PORT_OPTIONS`` (a JSON object); {} if unset."""
    env = os.environ if environ is None else environ
    text = env.get(OPTIONS_ENVIRONMENT_VARIABLE, "").strip()
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as e:
        raise ValueError(
            f"{OPTIONS_ENVIRONMENT_VARIABLE} is not valid JSON ({e}): "
            f'write a JSON object such as {{"name": value}}'
        ) from None
    if not isinstance(value, dict):
        raise ValueError(
            f"{OPTIONS_ENVIRONMENT_VARIABLE} must be a JSON object, not {type(value).__name__}"
        )
    return check_port_options(value)


def listen_tcp(
    reactor: Any,
    port: Any,
    factory: IProtocolFactory,
    backlog: int = 50,
    interface: str = "",
    options: Mapping[str, Any] | None = None,
) -> ExclusivePort:
    """What the replaced ``listenTCP`` does: a started :class:`DropInExclusivePort`."""
    p = DropInExclusivePort(port, factory, backlog, interface, reactor, **dict(options or {}))
    p.startListening()
    return p


class ExclusiveListenTCPMixin:
    """Mixed in before a reactor class: ``listenTCP`` returns an ExclusivePort."""

    twisted_patch_port_options: dict[str, Any] = {}

    def listenTCP(
        self, port: Any, factory: IProtocolFactory, backlog: int = 50, interface: str = ""
    ) -> ExclusivePort:
        return listen_tcp(
            self, port, factory, backlog, interface, self.twisted_patch_port_options
        )


_classes: dict[type, type] = {}
_classes_lock = threading.Lock()


def exclusive_reactor_class(base: type) -> type:
    """The subclass of reactor class ``base`` whose ``listenTCP`` is hardened (cached)."""
    with _classes_lock:
        cls = _classes.get(base)
        if cls is None:
            cls = type(
                f"Exclusive{base.__name__}",
                (ExclusiveListenTCPMixin, base),
                {
                    "__module__": __name__,
                    "__doc__": f"{base.__module__}.{base.__qualname__} whose listenTCP "
                    f"returns twisted_patch.port.ExclusivePort.",
                },
            )
            _classes[base] = cls
        return cls


def default_reactor_class() -> type:
    """The reactor class ``twisted.internet.default.install`` would install here."""
    from twisted.internet import default
    from twisted.python.runtime import platform

    get_install: Callable[[Any], Callable[[], None]] | None = getattr(
        default, "_getInstallFunction", None
    )
    installer = get_install(platform) if get_install is not None else default.install
    module_name = installer.__module__
    class_name = _REACTOR_CLASSES.get(module_name)
    if class_name is None:
        raise RuntimeError(
            f"twisted.internet.default picks {module_name}.install here, which "
            f"twisted-patch does not know; use --reactor=exclusive-iocp on Windows or "
            f"the xtcp endpoint strings"
        )
    module = __import__(module_name, fromlist=[class_name])
    cls: type = getattr(module, class_name)
    return cls


def install_reactor_class(base: type, options: Mapping[str, Any] | None = None) -> Any:
    """Instantiate the hardened subclass of ``base`` and install it as the global reactor."""
    from twisted.internet.main import installReactor

    port_options = check_port_options(
        options_from_environment() if options is None else options
    )
    cls = exclusive_reactor_class(base)
    reactor = cls()
    reactor.twisted_patch_port_options = port_options
    installReactor(reactor)
    log.info(
        "twisted-patch: installed the exclusive reactor {reactor_class} "
        "(listenTCP returns ExclusivePort; port options {options})",
        reactor_class=f"{base.__module__}.{base.__qualname__}",
        options=port_options,
    )
    return reactor


def install(**options: Any) -> Any:
    """Install the platform's default reactor with every ``listenTCP`` hardened.

    Keyword arguments are passed to every ``ExclusivePort`` the reactor
    creates; without any, ``TWISTED_PATCH_PORT_OPTIONS`` is read.  Raises
    ``ReactorAlreadyInstalledError`` if a reactor is installed already (use
    :func:`twisted_patch.install` then).
    """
    return install_reactor_class(default_reactor_class(), options or None)
