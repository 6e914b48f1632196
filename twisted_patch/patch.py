"""``twisted_patch.install()`` / ``uninstall()``: every ``listenTCP`` in the process hardened.

For programs that cannot choose their reactor (``tahoe run`` imports it before
``twistd`` parses ``--reactor``) but can run code before their listeners start::

    import twisted_patch
    twisted_patch.install()

What it changes, process-wide:

- ``PosixReactorBase.listenTCP`` (the method of every epoll / poll / select /
  kqueue / asyncio reactor; Twisted's ``listenSSL`` calls it too), and on
  Windows ``IOCPReactor.listenTCP``: they return a started drop-in exclusive
  port (:func:`twisted_patch.port.listen_tcp`; the class for the reactor is
  chosen by :func:`twisted_patch.port.port_class_for`).  Port options come from
  :func:`install`'s keyword arguments or ``TWISTED_PATCH_PORT_OPTIONS``.
  Reactors already installed are of those classes,
  so they are affected as well as reactors installed later.
- Nothing else: ports a program builds itself (``tcp.Port(...)``,
  ``adoptStreamPort``) and connections are untouched.

``install()`` is idempotent (a second call with the same options does nothing)
and logs once, through ``twisted.logger``, what it patched.  ``uninstall()``
puts back exactly the attributes that were there; ports already listening
stay hardened until they close.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from twisted.internet.interfaces import IProtocolFactory
from twisted.logger import Logger

from twisted_patch.port import listen_tcp
from twisted_patch.port.dropin import resolve_port_options

log = Logger()

_MISSING = object()
_lock = threading.Lock()


class _State:
    """What install() replaced: (class, previous value in its __dict__ or _MISSING)."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        self.saved: list[tuple[type, object]] = []


_state: _State | None = None


def _targets() -> list[type]:
    """The reactor base classes whose listenTCP makes every TCP listening port."""
    from twisted.internet.posixbase import PosixReactorBase

    targets: list[type] = [PosixReactorBase]
    if sys.platform == "win32":
        try:
            from twisted.internet.iocpreactor.reactor import IOCPReactor
        except ImportError:  # IOCP support not available in this Python
            pass
        else:
            targets.append(IOCPReactor)
    return targets


def _make_listen_tcp(options: dict[str, Any]) -> Any:
    def listenTCP(
        self: Any, port: Any, factory: IProtocolFactory, backlog: int = 50, interface: str = ""
    ) -> Any:
        return listen_tcp(self, port, factory, backlog, interface, options)

    listenTCP.__doc__ = "listenTCP hardened by twisted_patch.install(): an exclusive port."
    listenTCP.twisted_patch = True  # type: ignore[attr-defined]
    return listenTCP


def _name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def installed() -> bool:
    """True between :func:`install` and :func:`uninstall`."""
    return _state is not None


def install(**options: Any) -> None:
    """Harden every ``listenTCP`` of this process, now and for reactors installed later.

    Keyword arguments (``guard``, ``probe``) are passed to every hardened port;
    without any, ``TWISTED_PATCH_PORT_OPTIONS`` is read (both given, or an option
    the ports do not accept: ``ValueError``).  Calling it
    again with the same options does nothing; with other options it raises
    ``ValueError`` (call :func:`uninstall` first).
    """
    global _state
    port_options = resolve_port_options(options, "twisted_patch.install()")
    with _lock:
        if _state is not None:
            if _state.options != port_options:
                raise ValueError(
                    f"twisted_patch.install() was already called with options "
                    f"{_state.options!r}; call uninstall() before installing with "
                    f"{port_options!r}"
                )
            return
        state = _State(port_options)
        for target in _targets():
            state.saved.append((target, target.__dict__.get("listenTCP", _MISSING)))
            target.listenTCP = _make_listen_tcp(port_options)  # type: ignore[attr-defined]
        _state = state
    patched = [_name(target) + ".listenTCP" for target, _ in state.saved]
    current = _installed_reactor_note()
    log.info(
        "twisted-patch: install(): {patched} now return ExclusivePort "
        "(port options {options}); {current}",
        patched=patched,
        options=port_options,
        current=current,
    )


def _installed_reactor_note() -> str:
    """One sentence on whether the reactor installed right now is covered."""
    reactor = sys.modules.get("twisted.internet.reactor")
    if reactor is None:
        return "no reactor is installed yet: the one installed later is covered"
    method = getattr(type(reactor), "listenTCP", None)
    cls = _name(type(reactor))
    if getattr(method, "twisted_patch", False):
        return f"the installed reactor {cls} is covered"
    return (
        f"the installed reactor {cls} has its own listenTCP, which install() does not "
        f"change: its listeners are NOT hardened; use xtcp endpoints with it"
    )


def uninstall() -> None:
    """Undo :func:`install`: put back exactly what it replaced.  No-op if not installed.

    Ports already listening stay what they are (hardened) until they close.
    """
    global _state
    with _lock:
        state = _state
        if state is None:
            return
        for target, previous in reversed(state.saved):
            if previous is _MISSING:
                del target.listenTCP  # type: ignore[attr-defined]
            else:
                target.listenTCP = previous  # type: ignore[attr-defined]
        _state = None
    log.info(
        "twisted-patch: uninstall(): {restored} restored",
        restored=[_name(target) + ".listenTCP" for target, _ in state.saved],
    )
