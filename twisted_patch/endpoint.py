"""The ``xtcp`` / ``xtcp6`` server endpoints and their string parser.

``serverFromString(reactor, "xtcp:3456:interface=127.0.0.1")`` gives an
:class:`ExclusiveTCPServerEndpoint`; its ``listen`` returns a Deferred that
fires with the listening port or fails with ``CannotListenError``.
"""

from __future__ import annotations

import socket
import sys
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IStreamServerEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_patch._address import check_backlog, check_interface, check_port
from twisted_patch.errors import format_address
from twisted_patch.port import port_class_for
from twisted_patch.port.guards import check_guard, resolve_guard
from twisted_patch.port.selfprobe import check_probe
from twisted_patch.retry import check_retry, default_retry, listen_with_retry, listener_check

log = Logger()

DEFAULT_BACKLOG = 50


def log_listen_failure(failure: Failure, interface: str, port: int) -> Failure:
    """Log ``failure`` (a failed listen on ``interface:port``) at error level; return it.

    Foolscap's ``Listener.startService`` (and so every ``Tub.listenOn``, and
    Tahoe-LAFS's ``tub.port``) calls ``endpoint.listen(...)`` and adds no
    errback: without this line a port that cannot be had leaves only an
    "Unhandled error in Deferred" whenever the Deferred is garbage-collected.
    """
    log.error(
        "twisted-patch: cannot listen on {address}: {reason}",
        address=format_address(interface, port),
        reason=str(failure.value),
        interface=interface,
        port=port,
        error_type=failure.type.__name__ if failure.type is not None else None,
    )
    return failure


@implementer(IStreamServerEndpoint)
class ExclusiveTCPServerEndpoint:
    """A TCP server endpoint whose ports come from the exclusive-bind core.

    ``interface`` is a numeric IPv4 or IPv6 address; the address family
    follows it ('' is 0.0.0.0).  ``guard`` (serve/refuse/no, None: the
    address's default) and ``probe`` (strict/warn/off) are described in
    :mod:`twisted_patch.port.guards`.  Invalid arguments raise ``ValueError`` here;
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
            port: IListeningPort = listen_exclusive(
                self._port,
                protocolFactory,
                backlog=self._backlog,
                interface=self._interface,
                reactor=self._reactor,
                guard=self._guard,
                probe=self._probe,
            )
            return port

        d: defer.Deferred[IListeningPort]
        if self._retry <= 0 or self._port == 0:
            d = defer.execute(attempt)
        else:
            d = listen_with_retry(
                self._reactor,
                attempt,
                lambda: listener_check(self._reactor, self._interface, self._port, self._family),
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
) -> Any:
    """Listen now, like ``reactor.listenTCP``; raises ``CannotListenError``.

    Returns the reactor's exclusive port (:class:`~twisted_patch.ExclusivePort`,
    or the IOCP reactor's); ``guard`` and ``probe`` as for it (None: the defaults).
    Bad arguments raise ``ValueError`` naming them.
    """
    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor
    check_port(port)
    check_backlog(backlog)
    if not isinstance(interface, str):
        raise ValueError(f"interface must be an IP address given as text, not {interface!r}")
    p = port_class_for(reactor)(
        port, factory, backlog, interface, reactor, guard=guard, probe=probe
    )
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


def repeated_fields() -> list[str]:
    """The ``name=`` fields given more than once in the endpoint string being parsed.

    Twisted's parser keeps the last of repeated fields and hands plugins a dict,
    so a repetition (``interface=127.0.0.1:interface=0.0.0.0``) cannot be seen in
    the arguments.  The description is read from the ``serverFromString`` call
    on the stack and split with Twisted's own tokenizer; [] when there is none
    (the parser called directly) or Twisted's private tokenizer has changed.
    """
    frame = sys._getframe(1)
    description: object = None
    while frame is not None:
        if (
            frame.f_code.co_name == "serverFromString"
            and frame.f_globals.get("__name__") == "twisted.internet.endpoints"
        ):
            description = frame.f_locals.get("description")
            break
        frame = frame.f_back  # type: ignore[assignment]
    if not isinstance(description, str):
        return []
    from twisted.internet import endpoints

    tokenize = getattr(endpoints, "_tokenize", None)
    string_token = getattr(endpoints, "_STRING", None)
    if tokenize is None or string_token is None:
        return []
    names: list[str] = []
    field: list[str] = []
    for kind, value in [*tokenize(description), (None, ":")]:
        if kind == string_token:
            field.append(value)
        elif value == ":":
            if len(field) > 1:
                names.append(field[0])
            field = []
    return sorted({name for name in names if names.count(name) > 1})


def parse_server(
    prefix: str, default_interface: str, reactor: Any, *args: object, **kwargs: object
) -> ExclusiveTCPServerEndpoint:
    repeated = repeated_fields()
    if repeated:
        raise ValueError(
            f"{prefix}: {', '.join(f'{name}=' for name in repeated)} given more than once; "
            f"give each option once"
        )
    fields = parse_server_description(prefix, default_interface, args, kwargs)
    return ExclusiveTCPServerEndpoint(reactor, **fields)
