"""ExclusivePort: Twisted's ``tcp.Port`` with its listening socket made by the C core.

Only socket creation changes.  The core creates the socket non-inheritable and
non-blocking, sets the protective options (SO_EXCLUSIVEADDRUSE on Windows,
SO_REUSEADDR without SO_REUSEPORT on POSIX, IPV6_V6ONLY on IPv6), binds and
listens; the socket is then handed to Twisted's own ``Port`` as a pre-existing
socket, so accepting connections is exactly Twisted's code.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from twisted.internet import defer, main, tcp
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IProtocolFactory
from twisted.logger import Logger
from twisted.python import failure

from twisted_patch import _native
from twisted_patch import guard as _guard_mod
from twisted_patch.errors import HELD, cannot_listen, format_address
from twisted_patch.owner import describe_holder, ensure_exclusive

log = Logger()


def open_listening_socket(interface: str, port: int, backlog: int, family: int) -> socket.socket:
    """Bind and listen through the core; return a Python socket owning the handle.

    Raises :class:`CannotListenError` (never anything else for OS failures) whose
    ``socketError`` explains what happened.
    """
    try:
        handle = _native.listen_tcp(interface or None, port, backlog, family)
    except ValueError as e:
        raise CannotListenError(interface, port, e) from None
    except _native.BindError as e:
        holder = None
        if e.stage in ("bind", "listen") and e.errno in HELD:
            holder = describe_holder(interface, port, family)
        raise cannot_listen(interface, port, e, e.stage, holder) from None
    try:
        skt = socket.socket(family, socket.SOCK_STREAM, 0, fileno=handle)
    except BaseException:
        _native.close(handle)
        raise
    skt.setblocking(False)  # already non-blocking in the OS; align Python's view
    return skt


def _adopt(handle: int, family: int) -> socket.socket:
    """A Python socket owning a core handle (closed if that fails)."""
    try:
        skt = socket.socket(family, socket.SOCK_STREAM, 0, fileno=handle)
    except BaseException:
        _native.close(handle)
        raise
    skt.setblocking(False)
    return skt


# --- the process-wide registries ------------------------------------------------
#
# Keys are (family, canonical numeric host, port).  _listeners holds every
# ExclusivePort listening on an address it asked for; _guards every guard
# socket (serve or refuse) held on behalf of one of them.  A new listener for
# an address in _guards takes the guard's socket over (listen() on it): the
# port is never free in between.

Key = tuple[int, str, int]

_NO_STACK = {errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL, errno.EPROTONOSUPPORT, 10047, 10049}
_IN_USE = {errno.EADDRINUSE, errno.EACCES, 10048, 10013}


@dataclass
class _Guard:
    key: Key
    owner: ExclusivePort
    mode: str  # "serve" or "refuse"
    socket: socket.socket | None = None  # refuse: bound, not listening
    port: ExclusivePort | None = None  # serve: a second ExclusivePort, same factory


_CONNECTION_DONE = failure.Failure(main.CONNECTION_DONE)

_listeners: dict[Key, ExclusivePort] = {}
_guards: dict[Key, _Guard] = {}


def guard_sockets() -> dict[Key, str]:
    """The guard sockets this process holds now: {(family, host, port): mode}."""
    return {k: g.mode for k, g in _guards.items()}


class _SiblingBusy(Exception):
    def __init__(self, family: int, host: str, port: int, err: OSError) -> None:
        super().__init__(host, port)
        self.family = family
        self.host = host
        self.port = port
        self.err = err


class ExclusivePort(tcp.Port):
    """A ``twisted.internet.tcp.Port`` whose socket nobody else can share.

    Same constructor as ``tcp.Port`` plus ``guard`` and ``probe``;
    ``interface`` must be a numeric IP address (or empty for the IPv4
    wildcard).  ``startListening`` raises :class:`CannotListenError`
    explaining any failure.

    ``guard``: ``serve``, ``refuse``, ``no`` or None for the default of the
    address (serve for 127.0.0.1/::1, refuse for 0.0.0.0/::, no elsewhere);
    see :mod:`twisted_patch.guard`.  ``probe``: ``strict`` (default), ``warn``
    or ``off``.  After ``startListening``, :attr:`sibling` is the port serving
    the other family (guard=serve) and :attr:`probe_results` what the
    self-probe found.
    """

    sibling: ExclusivePort | None = None
    probe_results: list[_guard_mod.ProbeAttempt] | None = None
    _guard: _Guard | None = None
    _key: Key | None = None
    _guard_owner: ExclusivePort | None = None  # set on a serve-mode sibling
    _sibling_absent = False  # the sibling family/address does not exist on this host
    _closing_guard: socket.socket | None = None  # a refuse guard, closed with our socket

    def __init__(
        self,
        port: int,
        factory: IProtocolFactory,
        backlog: int = 50,
        interface: str = "",
        reactor: Any | None = None,
        guard: str | None = None,
        probe: str | None = None,
    ) -> None:
        super().__init__(port, factory, backlog, interface, reactor)
        self.requested_guard = _guard_mod.check_guard(guard)
        self.probe_mode = _guard_mod.check_probe(probe)
        self.guard_mode: str | None = None
        try:
            family, host = _guard_mod.normalise(interface)
        except ValueError:
            return  # reported by startListening as a CannotListenError
        self.guard_mode = _guard_mod.resolve_guard(self.requested_guard, family, host)

    # --- listening ----------------------------------------------------------

    def _adopt_listening(self, skt: socket.socket) -> None:
        self._preexistingSocket = skt
        try:
            tcp.Port.startListening(self)
        except BaseException:
            self._preexistingSocket = None
            skt.close()
            raise
        # Twisted skips shutdown() for adopted sockets; this one is ours.
        self._shouldShutdown = True

    def startListening(self) -> None:
        if self._preexistingSocket is not None:
            super().startListening()
            return
        try:
            family, host = _guard_mod.normalise(self.interface)
        except ValueError as e:
            raise CannotListenError(self.interface, self.port, e) from None
        mode = self.guard_mode
        if mode is None:
            # __init__ could not parse the interface (a transient failure: out of
            # memory, resolver error) but startListening could: resolve the guard now
            # instead of silently listening without one (found by fault injection).
            try:
                mode = _guard_mod.resolve_guard(self.requested_guard, family, host)
            except ValueError as e:
                raise CannotListenError(self.interface, self.port, e) from None
            self.guard_mode = mode
        attempts = _guard_mod.PORT_ZERO_ATTEMPTS if self.port == 0 else 1
        taken_from: ExclusivePort | None = None
        retried: list[int] = []  # port-0 numbers given up: taken in the sibling family
        for attempt in range(1, attempts + 1):
            self._sibling_absent = False
            skt, taken_from = self._open_primary(family, host)
            real = skt.getsockname()[1]
            try:
                held = self._open_guard(mode, family, host, real)
            except _SiblingBusy as busy:
                skt.close()
                if attempt < attempts:
                    # reported in the "exclusive listener" event once listening (Twisted's
                    # "starting on" message stays the first one a port logs)
                    retried.append(real)
                    continue
                self._after_failed_takeover(taken_from)
                raise cannot_listen(
                    busy.host,
                    busy.port,
                    busy.err,
                    "bind",
                    holder=_guard_mod.lookup_holder(busy.host, busy.port, busy.family),
                ) from None
            except BaseException:
                skt.close()
                self._after_failed_takeover(taken_from)
                raise
            break
        key: Key = (family, host, real)
        try:
            ensure_exclusive(skt, host)  # no other process may share the port
            report = self._probe(skt, mode, host, real)
            self._adopt_listening(skt)
        except BaseException:
            skt.close()  # no-op if _adopt_listening already closed it
            self._drop_guard(held)
            self._after_failed_takeover(taken_from)
            raise
        self._key = key
        _listeners[key] = self
        if held is not None:
            self._install_guard(held)
        if report is not None:
            report()  # after Twisted's own "starting on" message
        log.info(
            "twisted-patch: exclusive listener on {address}",
            address=format_address(host, self._realPortNumber or 0),
            interface=self.interface,
            port=self._realPortNumber,
            guard=mode,
            probe=self.probe_mode,
            sibling=None if held is None else held.key[1],
            retried_ports=retried,
            attempts=attempts,
        )

    def _open_primary(
        self, family: int, host: str
    ) -> tuple[socket.socket, ExclusivePort | None]:
        """The listening socket: a guard of ours taken over, or a new one from the core."""
        port = self.port or 0
        g = _guards.get((family, host, port)) if port != 0 else None
        if g is None:
            return open_listening_socket(host, port, self.backlog, family), None
        # Take the guard over: the socket stays bound throughout.
        if g.mode == "refuse":
            assert g.socket is not None
            skt = g.socket
            try:
                _native.listen(skt.fileno(), self.backlog)
            except _native.BindError as e:
                raise cannot_listen(host, port, e, e.stage) from None
        else:
            assert g.port is not None
            skt = g.port._release_socket()
            try:
                _native.listen(skt.fileno(), self.backlog)  # already listening: sets our backlog
            except _native.BindError as e:
                skt.close()
                del _guards[g.key]
                g.owner._guard = None
                g.owner.sibling = None
                g.owner._reguard()
                raise cannot_listen(host, port, e, e.stage) from None
        del _guards[g.key]
        g.owner._guard = None
        g.owner.sibling = None
        log.info(
            "twisted-patch: {address} taken over from the {mode} guard of {owner}",
            address=_format(host, port),
            mode=g.mode,
            owner=repr(g.owner),
        )
        return skt, g.owner

    def _after_failed_takeover(self, owner: ExclusivePort | None) -> None:
        """We took a guard over and then failed: its owner guards again."""
        if owner is not None and owner.connected:
            owner._reguard()

    def _open_guard(self, mode: str, family: int, host: str, port: int) -> _Guard | None:
        """Open (not yet install) the sibling guard; None if none is needed or possible."""
        if mode == "no":
            return None
        sib = _guard_mod.sibling_of(family, host)
        if sib is None:
            return None
        sfamily, shost = sib
        skey: Key = (sfamily, shost, port)
        if skey in _listeners:
            return None  # one of our own listeners holds the sibling address
        try:
            if mode == "refuse":
                handle = _native.guard_open(shost, port, sfamily)
            else:
                handle = _native.listen_tcp(shost, port, self.backlog, sfamily)
        except _native.BindError as e:
            code = e.errno if e.errno is not None else 0
            if code in _NO_STACK:
                self._sibling_absent = True
                log.warn(
                    "twisted-patch: no guard for {sibling} ({reason}): this host has no "
                    "{family_name} address there, so nobody can be reached there either; "
                    "if it appears later, restart this server to guard it",
                    sibling=_format(shost, port),
                    reason=e.strerror,
                    errno=code,
                    stage=e.stage,
                    family_name="IPv6" if sfamily == socket.AF_INET6 else "IPv4",
                    address=_format(host, port),
                )
                return None
            if e.stage in ("bind", "listen") and code in _IN_USE:
                raise _SiblingBusy(sfamily, shost, port, e) from None
            raise cannot_listen(shost, port, e, e.stage) from None
        skt = _adopt(handle, sfamily)
        if mode == "refuse":
            return _Guard(skey, self, mode, socket=skt)
        assert self.factory is not None
        factory = cast(IProtocolFactory, self.factory)
        sibling = ExclusivePort(
            port, factory, self.backlog, shost, self.reactor, guard="no", probe="off"
        )
        sibling._guard_owner = self
        sibling._preexistingSocket = skt
        return _Guard(skey, self, mode, port=sibling)

    def _install_guard(self, held: _Guard) -> None:
        if held.port is not None:
            skt = held.port._preexistingSocket
            held.port._preexistingSocket = None
            assert skt is not None
            held.port._adopt_listening(skt)
            self.sibling = held.port
        self._guard = held
        _guards[held.key] = held

    @staticmethod
    def _drop_guard(held: _Guard | None) -> None:
        """Close a guard that was opened but not installed."""
        if held is None:
            return
        if held.socket is not None:
            held.socket.close()
        if held.port is not None and held.port._preexistingSocket is not None:
            held.port._preexistingSocket.close()
            held.port._preexistingSocket = None

    def _reguard(self) -> None:
        """Guard the sibling again (after the listener of ours that held it went away)."""
        if self._key is None or self._guard is not None or not self.connected:
            return
        family, host, port = self._key
        mode = self.guard_mode or "no"
        try:
            held = self._open_guard(mode, family, host, port)
        except (_SiblingBusy, CannotListenError) as e:
            log.error(
                "twisted-patch: could not guard the other family of {address} again: {error}",
                address=_format(host, port),
                error=str(e),
            )
            return
        if held is not None:
            self._install_guard(held)

    def _probe(
        self, skt: socket.socket, mode: str, host: str, port: int
    ) -> Callable[[], None] | None:
        """Run the self-probe; raise if strict and hijackable; return the logging to do."""
        if self.probe_mode == "off":
            return None
        try:
            results = _guard_mod.run_probe(skt.fileno())
        except _native.BindError as e:
            raise cannot_listen(host, port, e, e.stage) from None
        self.probe_results = results
        # Without a sibling address on this host there is nothing to guard;
        # binds of that family's other addresses are reported, not fatal.
        verdict = _guard_mod.judge(results, "no" if self._sibling_absent else mode)
        if self.probe_mode == "strict" and verdict.fatal:
            raise _guard_mod.hijackable_error(host, port, verdict.fatal)
        label = "no (the other family is absent here)" if self._sibling_absent else mode
        probe_mode = self.probe_mode
        return lambda: _guard_mod.report(verdict, probe_mode, host, port, label)

    # --- stopping -----------------------------------------------------------

    def _release_socket(self) -> socket.socket:
        """Stop serving and hand the (still listening) socket over, without closing it."""
        tcp.Port.stopReading(self)
        skt: socket.socket = self.socket
        self._realPortNumber = None
        self.connected = False
        self.disconnected = True
        del self.socket
        del self.fileno
        if self.factory is not None:
            self.factory.doStop()
        return skt

    def loseConnection(
        self, connDone: failure.Failure = _CONNECTION_DONE
    ) -> defer.Deferred[None] | None:
        """Stop listening; with a guard, the Deferred fires once both sockets are closed."""
        d: defer.Deferred[None] | None = tcp.Port.loseConnection(self, connDone)
        held = self._guard
        if held is None or not self.connected:
            return d
        self._guard = None
        _guards.pop(held.key, None)
        d2: defer.Deferred[None] | None = None
        if held.port is not None:
            self.sibling = None
            d2 = held.port.loseConnection(connDone)
        if held.socket is not None:
            # closed right after our own socket (connectionLost), never before it
            self._closing_guard = held.socket
        if d is None or d2 is None:
            return d
        d.addCallback(lambda _: d2)
        return d

    stopListening = loseConnection

    def connectionLost(self, reason: failure.Failure) -> None:
        if not self.connected:
            # Already closed: e.g. a serve sibling closed by its owner, then again by
            # reactor.disconnectAll() at shutdown.
            return
        key = self._key
        held, self._guard = self._guard, None
        try:
            try:
                if held is not None:
                    # Called directly (reactor.disconnectAll at shutdown, or by a caller),
                    # not through stopListening: the guard goes first, so that our own
                    # factory.doStop() is the last one (it calls stopFactory).
                    _guards.pop(held.key, None)
                    if held.socket is not None:
                        self._closing_guard = held.socket
                    if held.port is not None:
                        self.sibling = None
                        held.port.connectionLost(reason)
            finally:
                tcp.Port.connectionLost(self, reason)
        finally:
            if self._closing_guard is not None:
                self._closing_guard.close()
                self._closing_guard = None
            owner = self._guard_owner
            if owner is not None and owner._guard is not None and owner._guard.port is self:
                # a serve-mode sibling stopped on its own: its owner has no guard now
                _guards.pop(owner._guard.key, None)
                owner._guard = None
                owner.sibling = None
            if key is not None and _listeners.get(key) is self:
                del _listeners[key]
                self._key = None
                sib = _guard_mod.sibling_of(key[0], key[1])
                if sib is not None:
                    other = _listeners.get((sib[0], sib[1], key[2]))
                    if other is not None:
                        other._reguard()

    def __repr__(self) -> str:
        if self._realPortNumber is not None:
            return f"<{self.factory.__class__} on {self._realPortNumber} (exclusive)>"
        return f"<{self.factory.__class__} (exclusive, not listening)>"


def _format(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


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


def port_class_for(reactor: object) -> type[Any]:
    """The exclusive port class for ``reactor``: the one place the code path is chosen."""
    if reactor_kind(reactor) == "iocp":
        from twisted_patch._iocp import IOCPExclusivePort

        return IOCPExclusivePort
    return ExclusivePort
