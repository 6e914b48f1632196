"""The ``exclusive`` reactor: the platform's default reactor, every ``listenTCP`` hardened.

``twistd --reactor=exclusive`` / ``trial --reactor=exclusive`` install it
through the plugin in ``twisted/plugins/twisted_patch_plugins.py``; a program
can also install it itself, before anything imports ``twisted.internet.reactor``::

    from twisted_patch import reactor
    reactor.install()

The reactor is the one ``twisted.internet.default.install`` would pick
(epoll on Linux, poll on other POSIX systems, select on macOS and Windows);
only ``listenTCP`` changes: it returns an :class:`~twisted_patch.port.ExclusivePort`
(and so does ``listenSSL``, which Twisted builds on ``listenTCP``), with the
drop-in rules of :mod:`twisted_patch.port.dropin` (host names resolved as
``tcp.Port`` does, ``SO_REUSEPORT`` refused, port options from
:func:`install` or ``TWISTED_PATCH_PORT_OPTIONS``).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any, Callable

from twisted.logger import Logger

from twisted_patch.port import ExclusiveListenTCPMixin
from twisted_patch.port.dropin import resolve_port_options

log = Logger()

# The module that twisted.internet.default would install from, and its reactor class.
_REACTOR_CLASSES = {
    "twisted.internet.epollreactor": "EPollReactor",
    "twisted.internet.pollreactor": "PollReactor",
    "twisted.internet.selectreactor": "SelectReactor",
    "twisted.internet.kqreactor": "KQueueReactor",
}

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

    port_options = resolve_port_options(options or {}, "the exclusive reactor")
    cls = exclusive_reactor_class(base)
    reactor = cls()
    reactor.twisted_patch_port_options = port_options
    installReactor(reactor)
    log.info(
        "twisted-patch: installed the exclusive reactor {reactor_class} "
        "(listenTCP returns an exclusive port; port options {options})",
        reactor_class=f"{base.__module__}.{base.__qualname__}",
        options=port_options,
    )
    return reactor


def install(**options: Any) -> Any:
    """Install the platform's default reactor with every ``listenTCP`` hardened.

    Keyword arguments (``guard``, ``probe``) are passed to every port the reactor
    creates; without any, ``TWISTED_PATCH_PORT_OPTIONS`` is read (both: ValueError).
    Raises ``ReactorAlreadyInstalledError`` if a reactor is installed already (use
    :func:`twisted_patch.install` then).
    """
    return install_reactor_class(default_reactor_class(), options)
