"""Drop-in ports: what replaces ``listenTCP`` accepts what ``tcp.Port`` accepts.

Used where ``listenTCP`` is replaced (the ``exclusive`` reactors and
:func:`twisted_patch.install`): the caller wrote code for Twisted's port, so

- an IPv4 interface given as a host name (``interface="localhost"``) is
  resolved the way ``tcp.Port`` resolves it (``socket.gethostbyname``), and
  the core listens on the resulting address; IPv6 interfaces must be numeric,
  as for ``tcp.Port``;
- a ``Binding`` (Twisted 26.5+) that asks for ``reusePort=True`` is refused
  with ``CannotListenError``: a shared port is what this package prevents;
- the options of the hardened port (:data:`PORT_OPTIONS`) come from the
  caller of ``install()`` or from ``TWISTED_PATCH_PORT_OPTIONS`` (a JSON object).
"""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Mapping
from typing import Any

from twisted.internet import abstract

from twisted_patch.errors import listen_failure
from twisted_patch.port import guards, selfprobe

#: Environment variable read by ``--reactor=exclusive`` and ``install()``: a JSON
#: object of port options for every hardened ``listenTCP``.
OPTIONS_ENVIRONMENT_VARIABLE = "TWISTED_PATCH_PORT_OPTIONS"

#: The options a drop-in port takes beyond ``listenTCP``'s arguments, and their checks.
PORT_OPTIONS = {"guard": guards.check_guard, "probe": selfprobe.check_probe}


class DropInMixin:
    """Mixed in before an exclusive port class: accept what ``tcp.Port`` accepts."""

    interface: str
    port: int | None
    addressFamily: socket.AddressFamily

    def startListening(self) -> None:
        if getattr(self, "_preexistingSocket", None) is not None:
            super().startListening()  # type: ignore[misc]
            return
        if getattr(self, "_reusePort", False):
            raise listen_failure(
                self.interface,
                self.port or 0,
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


_classes: dict[type, type] = {}
_classes_lock = threading.Lock()


def dropin_class(base: type) -> type:
    """``DropIn<base>``: the exclusive port class ``base`` with :class:`DropInMixin` (cached)."""
    with _classes_lock:
        cls = _classes.get(base)
        if cls is None:
            cls = type(
                f"DropIn{base.__name__}",
                (DropInMixin, base),
                {"__module__": __name__, "__doc__": f"{base.__name__} accepting what "
                 f"tcp.Port accepts (see twisted_patch.port.dropin)."},
            )
            _classes[base] = cls
        return cls


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
        raise listen_failure(interface, port or 0, e) from None


def check_port_options(options: Mapping[str, Any], source: str = "port options") -> dict[str, Any]:
    """The options as a dict of checked values; ValueError naming the unknown ones."""
    result: dict[str, Any] = {}
    unknown = sorted(name for name in options if name not in PORT_OPTIONS)
    if unknown:
        raise ValueError(
            f"{source}: unknown option(s) {', '.join(map(repr, unknown))}; "
            f"the options a hardened listenTCP accepts are {', '.join(PORT_OPTIONS)} "
            f"(port, factory, backlog and interface are listenTCP's own arguments)"
        )
    for name, value in options.items():
        try:
            result[name] = PORT_OPTIONS[name](value)
        except ValueError as e:
            raise ValueError(f"{source}: {e}") from None
    return result


def options_from_environment(environ: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """Port options from ``TWISTED_PATCH_PORT_OPTIONS`` (a JSON object); None if unset."""
    env = os.environ if environ is None else environ
    text = env.get(OPTIONS_ENVIRONMENT_VARIABLE, "").strip()
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError as e:
        raise ValueError(
            f"{OPTIONS_ENVIRONMENT_VARIABLE} is not valid JSON ({e}): "
            f'write a JSON object such as {{"guard": "refuse"}}'
        ) from None
    if not isinstance(value, dict):
        raise ValueError(
            f"{OPTIONS_ENVIRONMENT_VARIABLE} must be a JSON object, not {type(value).__name__}"
        )
    return check_port_options(value, OPTIONS_ENVIRONMENT_VARIABLE)


def resolve_port_options(options: Mapping[str, Any], caller: str) -> dict[str, Any]:
    """The port options for ``caller`` (``install()``, the ``exclusive`` reactor): the
    keyword arguments given, or else ``TWISTED_PATCH_PORT_OPTIONS``; both is a ValueError
    (one of them would be ignored)."""
    from_env = options_from_environment()
    if options and from_env is not None:
        raise ValueError(
            f"{caller} was given port options {dict(options)!r} and "
            f"{OPTIONS_ENVIRONMENT_VARIABLE} is set too: give them one way"
        )
    if options:
        return check_port_options(options, caller)
    return from_env or {}
