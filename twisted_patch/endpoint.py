"""The ``xtcp`` / ``xtcp6`` server endpoints and their string parser.

``serverFromString(reactor, "xtcp:3456:interface=127.0.0.1")`` gives an
:class:`ExclusiveTCPServerEndpoint`; its ``listen`` returns a Deferred that
fires with the listening port or fails with ``CannotListenError``.
"""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IStreamServerEndpoint
from twisted.logger import Logger
from zope.interface import implementer

from twisted_patch.errors import format_address, parse_numeric_host
from twisted_patch.guard import check_guard, check_probe, resolve_guard
from twisted_patch.port import ExclusivePort, port_class_for
from twisted_patch.report import log_listen_failure
from twisted_patch.retry import check_retry, connect_probe, default_retry, listen_with_retry

log = Logger()

DEFAULT_BACKLOG = 50
MAX_BACKLOG = 2**31 - 1


def check_port(value: object, what: str = "port") -> int:
    """A TCP port number 0..65535 from an int or a string of decimal digits."""
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a number from 0 to 65535, not {value!r}")
    if isinstance(value, str):
        text = value.strip()
        if not text:
            raise ValueError(f"{what} is empty: give a number from 0 to 65535")
        if not text.isascii() or not text.isdigit():
            raise ValueError(f"{what} must be a number from 0 to 65535, not {value!r}")
        number = int(text)
    elif isinstance(value, int):
        number = value
    else:
        raise ValueError(f"{what} must be a number from 0 to 65535, not {value!r}")
    if not 0 <= number <= 65535:
        raise ValueError(f"{what} {number} is out of range: give a number from 0 to 65535")
    return number


def check_backlog(value: object) -> int:
    """A listen backlog: a whole number from 0 up."""
    if isinstance(value, bool):
        raise ValueError(f"backlog must be a whole number, 0 or more, not {value!r}")
    if isinstance(value, str):
        text = value.strip()
        if not text or not text.isascii() or not text.isdigit():
            raise ValueError(f"backlog must be a whole number, 0 or more, not {value!r}")
        number = int(text)
    elif isinstance(value, int):
        number = value
    else:
        raise ValueError(f"backlog must be a whole number, 0 or more, not {value!r}")
    if not 0 <= number <= MAX_BACKLOG:
        raise ValueError(f"backlog {number} is out of range: give a whole number, 0 or more")
    return number


def check_interface(value: object, family: int = socket.AF_UNSPEC) -> tuple[int, str]:
    """(family, normalised address) for a numeric IP address; '' is the wildcard.

    Host names are refused on purpose: which address a name resolves to (and
    in which family) is not something a hardened listener should guess.
    """
    parsed = parse_numeric_host(
        value, "interface", family,
        localhost_hint="use 127.0.0.1 or ::1; the other family is guarded for you",
    )
    if parsed is None:
        if family == socket.AF_INET6:
            return socket.AF_INET6, "::"
        return socket.AF_INET, "0.0.0.0"
    return parsed


@implementer(IStreamServerEndpoint)
class ExclusiveTCPServerEndpoint:
    """A TCP server endpoint whose ports come from the exclusive-bind core.

    ``interface`` is a numeric IPv4 or IPv6 address; the address family
    follows it ('' is 0.0.0.0).  ``guard`` (serve/refuse/no, None: the
    address's default) and ``probe`` (strict/warn/off) are described in
    :mod:`twisted_patch.guard`.  Invalid arguments raise ``ValueError`` here;
    failures to listen arrive as a ``CannotListenError`` errback of ``listen``.
    """

    def __init__(
        self,
        reactor: Any,
        port: int,
        backlog: int = DEFAULT_BACKLOG,
        interface: str = "",
        retry: float | None = None,
        guard: str | None = None,
        probe: str | None = None,
    ) -> None:
        self._reactor = reactor
        self._port = check_port(port)
        self._backlog = check_backlog(backlog)
        self._family, self._interface = check_interface(interface)
        # seconds to retry a bind refused while nobody listens (TIME_WAIT); see retry.py
        self._retry = default_retry() if retry is None else check_retry(retry)
        self._guard = check_guard(guard)
        self._probe = None if probe is None else check_probe(probe)  # None: the default
        resolve_guard(self._guard, self._family, self._interface)  # ValueError now, not later

    @property
    def interface(self) -> str:
        return self._interface

    @property
    def port(self) -> int:
        return self._port

    @property
    def retry(self) -> float:
        return self._retry

    def listen(self, protocolFactory: IProtocolFactory) -> defer.Deferred[IListeningPort]:
        def attempt() -> IListeningPort:
            return listen_exclusive(
                self._port,
                protocolFactory,
                backlog=self._backlog,
                interface=self._interface,
                reactor=self._reactor,
                guard=self._guard,
                probe=self._probe,
            )

        d: defer.Deferred[IListeningPort]
        if self._retry <= 0 or self._port == 0:
            d = defer.execute(attempt)
        else:
            d = listen_with_retry(
                self._reactor,
                attempt,
                lambda: connect_probe(self._reactor, self._interface, self._port, self._family),
                self._retry,
                format_address(self._interface, self._port),
            )
        # Logged here, then passed on: callers that add no errback (Foolscap's
        # Listener, so Tahoe's tub.port) would otherwise fail silently.
        d.addErrback(log_listen_failure, self._interface, self._port)
        return d

    def __repr__(self) -> str:
        return (
            f"<ExclusiveTCPServerEndpoint {self._interface}:{self._port} "
            f"backlog={self._backlog} retry={self._retry:g} "
            f"guard={self._guard or 'default'} probe={self._probe or 'strict'}>"
        )


def listen_exclusive(
    port: int,
    factory: IProtocolFactory,
    backlog: int = DEFAULT_BACKLOG,
    interface: str = "",
    reactor: Any | None = None,
    guard: str | None = None,
    probe: str | None = None,
) -> ExclusivePort:
    """Listen now, like ``reactor.listenTCP``; raises ``CannotListenError``.

    ``guard`` and ``probe`` as for :class:`ExclusivePort` (None: the defaults).
    The IOCP reactor's port class has neither yet: there, asking for them
    explicitly is a ValueError and the defaults are skipped with a warning.
    """
    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor
    cls = port_class_for(reactor)
    if cls is ExclusivePort:
        p = ExclusivePort(port, factory, backlog, interface, reactor, guard=guard, probe=probe)
    else:
        guard, probe = check_guard(guard), None if probe is None else check_probe(probe)
        if guard not in (None, "no") or probe not in (None, "off"):
            raise ValueError(
                f"guard={guard} / probe={probe}: the address-family guard and the self-probe "
                f"are not implemented for the IOCP reactor yet; use the default reactor, "
                f"or guard=no and probe=off"
            )
        if guard is None or probe is None:
            log.warn(
                "twisted-patch: the IOCP reactor's exclusive port has no address-family guard "
                "and no self-probe yet ({address}); use the default reactor to get them",
                address=format_address(interface, port),
            )
        p = cls(port, factory, backlog, interface, reactor)
    p.startListening()
    return p


_KNOWN = ("port", "interface", "backlog", "retry", "guard", "probe")


def parse_server_description(
    prefix: str, default_interface: str, args: tuple[object, ...], kwargs: dict[str, object]
) -> dict[str, Any]:
    """Validate the fields of ``xtcp:...`` / ``xtcp6:...``; ValueError names what is wrong."""
    unknown = sorted(k for k in kwargs if k not in _KNOWN)
    if unknown:
        raise ValueError(
            f"{prefix}: unknown option {', '.join(map(repr, unknown))}; "
            f"known options are {', '.join(_KNOWN)}"
        )
    if len(args) > 1:
        raise ValueError(
            f"{prefix}: only one positional field (the port) is allowed, got {len(args)}: "
            f"{', '.join(map(repr, args))} (an IPv6 interface needs its colons escaped, "
            f"as in interface=\\:\\:1)"
        )
    if args and "port" in kwargs:
        raise ValueError(f"{prefix}: the port is given twice ({args[0]!r} and port=)")
    if not args and "port" not in kwargs:
        raise ValueError(f"{prefix}: no port given; write {prefix}:PORT[:interface=ADDRESS]")
    port = check_port(args[0] if args else kwargs["port"])
    family = socket.AF_INET6 if prefix == "xtcp6" else socket.AF_UNSPEC
    interface_text = kwargs.get("interface", default_interface)
    _, interface = check_interface(interface_text, family)
    if prefix == "xtcp6" and ":" not in interface:
        raise ValueError(f"{prefix}: interface {interface_text!r} is not an IPv6 address")
    backlog = check_backlog(kwargs.get("backlog", DEFAULT_BACKLOG))
    fields: dict[str, Any] = {"port": port, "interface": interface, "backlog": backlog}
    try:
        if "retry" in kwargs:
            fields["retry"] = check_retry(kwargs["retry"])
        if "guard" in kwargs:
            fields["guard"] = check_guard(kwargs["guard"])
        if "probe" in kwargs:
            fields["probe"] = check_probe(kwargs["probe"])
    except ValueError as e:
        raise ValueError(f"{prefix}: {e}") from None
    return fields


def parse_server(
    prefix: str, default_interface: str, reactor: Any, *args: object, **kwargs: object
) -> ExclusiveTCPServerEndpoint:
    fields = parse_server_description(prefix, default_interface, args, kwargs)
    return ExclusiveTCPServerEndpoint(reactor, **fields)
