"""The listening sequence every exclusive port class shares, whatever the reactor.

:class:`ExclusiveListening` is mixed in before a Twisted port class
(``tcp.Port`` for the select-style reactors, ``iocpreactor.tcp.Port`` for
IOCP).  ``startListening`` runs, in order:

1. the listening socket: a guard of ours for this address taken over, a
   new socket from the core (:mod:`twisted_patch._sockets`), or a listening
   socket handed to :meth:`ExclusiveListening.adopt` before the start (an
   inherited, socket-activated one, already checked by
   ``_sockets.adopt_inherited``; the socket the core made for Tahoe's log Tub);
2. the sibling guard (none when the supervisor passed the sibling address
   too: ``adopt(..., sibling_held=True)``) (:mod:`twisted_patch.port.guards`), retried with a new
   port number for port 0 when the sibling family's number is taken;
3. the post-listen owner check (:mod:`twisted_patch.port.selfcheck`);
4. the self-probe (:mod:`twisted_patch.port.selfprobe`);
5. the port class's own ``_adopt_listening(skt)``: from here on, accepting
   connections is Twisted's code.

Stopping closes the guard with the port (after it, never before); when one
listener of a pair of ours stops, its socket is not closed but becomes the
other's guard: no instant in which an address we hold is free.

A port class provides ``_adopt_listening(skt)`` (serve this listening socket;
on failure it leaves ``skt`` open for the caller to close or keep),
``_release_socket()`` (stop serving and hand the still-listening socket over),
``_base_lose_connection``/``_base_connection_lost`` (its base class's methods)
and ``_sibling_class`` (the class of a serve-mode sibling port).
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

from twisted.internet import defer, main, protocol
from twisted.internet.interfaces import IProtocolFactory
from twisted.logger import Logger
from twisted.python import failure

from twisted_patch import _sockets
from twisted_patch._address import check_interface
from twisted_patch.errors import NO_STACK, TAKEN, cannot_listen, format_address, listen_failure
from twisted_patch.port import guards, selfcheck, selfprobe
from twisted_patch.port.guards import PORT_ZERO_ATTEMPTS, Guard, Key, registry

log = Logger()

CONNECTION_DONE = failure.Failure(main.CONNECTION_DONE)


class _SiblingBusy(Exception):
    """The sibling address is held by someone else (carries the core's error)."""

    def __init__(self, family: int, host: str, port: int, err: OSError, stage: str) -> None:
        super().__init__(format_address(host, port))
        self.family = family
        self.host = host
        self.port = port
        self.err = err
        self.stage = stage


class ExclusiveListening:
    """The exclusive listening sequence; see the module docstring.

    ``guard``: ``serve``, ``refuse``, ``no`` or None for the default of the
    address (serve for 127.0.0.1/::1, refuse for 0.0.0.0/::, no elsewhere).
    ``probe``: ``strict`` (default), ``warn`` or ``off``.  After
    ``startListening``, :attr:`sibling` is the port serving the other family
    (guard=serve) and :attr:`probe_results` what the self-probe found.
    """

    # provided by the Twisted port class this is mixed into
    port: Any
    interface: str
    backlog: int
    factory: Any
    reactor: Any
    connected: Any
    _realPortNumber: int | None

    _sibling_class: type[Any]
    _pending_socket: socket.socket | None = None  # a serve sibling's socket, until installed
    probe_results: list[selfprobe.ProbeAttempt] | None = None
    _closing_guard: socket.socket | None = None  # a refuse guard, closed after our socket
    _adopted: socket.socket | None = None  # the listening socket to start from (adopt())
    _sibling_held = False  # adopt(sibling_held=True): no guard of ours is needed
    _adopted_sibling: socket.socket | None = None  # adopt(sibling=...): served as guard=serve
    shared_socket = False  # adopt(shared=True): another process may hold the socket too
    _kept_socket: socket.socket | None = None  # ours, being handed over as a guard

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
        """The Twisted port class's constructor, plus ``guard`` and ``probe``."""
        if not isinstance(interface, str):
            raise ValueError(f"interface must be an IP address given as text, not {interface!r}")
        super().__init__(port, factory, backlog, interface, reactor)  # type: ignore[call-arg]
        self._init_exclusive(guard, probe)

    def _init_exclusive(self, guard: str | None, probe: str | None) -> None:
        self.requested_guard = guards.check_guard(guard)
        self.probe_mode = selfprobe.check_probe(probe)
        self.guard_mode: str | None = None
        try:
            family, host = check_interface(self.interface)
            self.guard_mode = guards.resolve_guard(self.requested_guard, family, host)
        except ValueError:
            pass  # reported by startListening as a CannotListenError

    # --- hooks of the port class ------------------------------------------------

    def _adopt_listening(self, skt: socket.socket) -> None:
        raise NotImplementedError

    def _stop_serving(self) -> None:
        """Stop the reactor serving our socket (the port class's part of a release)."""
        raise NotImplementedError

    def _release_socket(self) -> socket.socket:
        """Stop serving and hand the (still listening) socket over, without closing it."""
        port: Any = self  # the Twisted port class's attributes (socket, disconnected)
        skt: socket.socket = port.socket
        self._stop_serving()
        self._realPortNumber = None
        self.connected = False
        port.disconnected = True
        del port.socket
        if self.factory is not None:
            self.factory.doStop()
        return skt

    _repr_kind = "exclusive"

    def __repr__(self) -> str:
        if self._realPortNumber is not None:
            return f"<{self.factory.__class__} on {self._realPortNumber} ({self._repr_kind})>"
        return f"<{self.factory.__class__} ({self._repr_kind}, not listening)>"

    def _base_lose_connection(self, connDone: failure.Failure) -> defer.Deferred[None] | None:
        raise NotImplementedError

    def _base_connection_lost(self, reason: failure.Failure) -> None:
        raise NotImplementedError

    # --- state -------------------------------------------------------------------

    @property
    def sibling(self) -> Any | None:
        """The port serving the other family for us (guard=serve), or None."""
        held = registry.guard_of(self)
        return held.port if held is not None and held.mode == "serve" else None

    # --- listening ---------------------------------------------------------------

    def adopt(
        self,
        skt: socket.socket,
        *,
        sibling_held: bool = False,
        shared: bool = False,
        sibling: socket.socket | None = None,
    ) -> None:
        """Start from ``skt`` (listening, on this port's interface and port) instead of
        a new socket; call before ``startListening``.  The rest of the sequence runs
        as for a new socket: guard, owner check, self-probe.

        ``sibling_held``: the other family's address on this port is held by a socket
        the supervisor passed too, so no guard is opened.  ``shared``: the socket was
        inherited and the supervisor may keep a copy (systemd does): the owner check
        accepts other holders of this same kernel socket, and stopping closes our
        descriptor without ``shutdown()``, which would stop the supervisor's copy
        listening as well.  ``sibling``: a listening socket the supervisor passed on
        the other family's address of this port, served as the sibling (guard=serve)
        instead of a new one (guard=serve only; otherwise leave it open and give
        ``sibling_held``).  Raises ValueError if ``skt`` is not bound to this port's
        address.
        """
        family, host = check_interface(self.interface)
        name = skt.getsockname()
        if skt.family != family or (str(name[0]), int(name[1])) != (host, int(self.port)):
            raise ValueError(
                f"the socket to adopt is on {format_address(str(name[0]), int(name[1]))}, "
                f"not on {format_address(host, int(self.port))}"
            )
        self._adopted = skt
        self._sibling_held = sibling_held
        self.shared_socket = shared
        if sibling is not None:
            if self.guard_mode != "serve":
                raise ValueError(
                    f"a sibling socket is served only with guard=serve, not "
                    f"guard={self.guard_mode}"
                )
            self._adopted_sibling = sibling

    def _take_adopted(self) -> socket.socket | None:
        skt, self._adopted = self._adopted, None
        return skt

    def _drop_adopted_sibling(self) -> None:
        if self._adopted_sibling is not None:
            self._adopted_sibling.close()
            self._adopted_sibling = None

    def _exclusive_start(self) -> None:
        try:
            family, host = check_interface(self.interface)
            mode = self.guard_mode
            if mode is None:
                # __init__ could not parse the interface (a transient failure: out of
                # memory, resolver error) but startListening could: resolve the guard
                # now instead of silently listening without one (found by fault injection).
                mode = guards.resolve_guard(self.requested_guard, family, host)
                self.guard_mode = mode
        except ValueError as e:
            adopted = self._take_adopted()
            if adopted is not None:
                adopted.close()
            self._drop_adopted_sibling()
            raise listen_failure(self.interface, self.port, e) from None
        asked = int(self.port or 0)
        adopted = self._take_adopted()
        attempts = PORT_ZERO_ATTEMPTS if asked == 0 and adopted is None else 1
        guard_to_open = "no" if self._sibling_held else mode
        taken_from: ExclusiveListening | None = None
        retried: list[int] = []  # port-0 numbers given up: taken in the sibling family
        tried: list[str] = []  # the same, with why, for the message
        sibling_absent = False
        held: Guard | None = None
        skt: socket.socket | None = None
        for attempt in range(1, attempts + 1):
            if adopted is not None:
                skt, taken_from = adopted, None
            else:
                skt, taken_from = self._open_primary(family, host)
            real = int(skt.getsockname()[1])
            try:
                held, sibling_absent = self._open_guard(guard_to_open, family, host, real)
            except _SiblingBusy as busy:
                self._give_back_or_close(skt, taken_from)
                if attempt == attempts:
                    self._drop_adopted_sibling()
                retried.append(real)
                holder = _sockets.holder_of(busy.host, busy.port, busy.family)
                held_by = f" (held by {holder})" if holder else ""
                tried.append(f"{real}: {busy.err.strerror or busy.err} on {busy}{held_by}")
                if attempt < attempts:
                    continue
                context = ""
                if asked == 0:
                    context = (
                        f"port 0 (any free port): {attempts} OS-chosen port numbers were "
                        f"free for {format_address(host, 0)} but taken for the other "
                        f"address family ({'; '.join(tried)})"
                    )
                raise cannot_listen(
                    busy.host,
                    busy.port,
                    busy.err,
                    busy.stage,
                    holder=holder,
                    asked=(host, asked),
                    context=context,
                ) from None
            except BaseException:
                self._give_back_or_close(skt, taken_from)
                self._drop_adopted_sibling()
                raise
            break
        assert skt is not None
        key: Key = (family, host, real)
        notes: list[Callable[[], None]] = []
        try:
            # no other process may share the port (an inherited socket: but its
            # supervisor), nor hold a socket bound beside ours
            selfcheck.ensure_exclusive(
                skt, host, shared=self.shared_socket, placeholders=_sockets.shared_bind(skt),
                notes=notes,
            )
            self._check_guard(held)  # the same for the guarded address
            report = self._probe(skt, mode, host, real, sibling_absent)
            self._adopt_listening(skt)
        except BaseException:
            self._drop_adopted_sibling()  # (if the guard did not take it)
            self._drop_guard(held)
            self._give_back_or_close(skt, taken_from)
            raise
        registry.add_listener(key, self)
        if held is not None:
            self._install_guard(held)
        if report is not None:
            report()  # after Twisted's own "starting on" message
        for note in notes:  # the owner check's (Windows), after it too
            note()
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
            port_class=type(self).__name__,
        )

    def _open_primary(
        self, family: int, host: str
    ) -> tuple[socket.socket, ExclusiveListening | None]:
        """The listening socket: a guard of ours taken over, or a new one from the core."""
        port = int(self.port or 0)
        held = registry.guard_at((family, host, port)) if port != 0 else None
        if held is None:
            return _sockets.listen(host, port, self.backlog, family), None
        # Take the guard over: the socket stays bound throughout.
        if held.port is None:
            assert held.socket is not None
            skt = held.socket
            try:
                _sockets.listen_on(skt, self.backlog)
            except OSError as e:  # the guard stays the guard
                raise cannot_listen(host, port, e, getattr(e, "stage", "listen")) from None
        else:
            assert held.port is not None
            skt = held.port._release_socket()
            try:
                _sockets.listen_on(skt, self.backlog)  # already listening: sets our backlog
            except OSError as e:
                registry.remove_guard(held)
                held.owner._keep_as_guard(skt)  # never closed: no instant free
                raise cannot_listen(host, port, e, getattr(e, "stage", "listen")) from None
        registry.remove_guard(held)
        log.info(
            "twisted-patch: {address} taken over from the {mode} guard of {owner}",
            address=format_address(host, port),
            mode=held.mode,
            owner=repr(held.owner),
        )
        owner: ExclusiveListening = held.owner
        return skt, owner

    @staticmethod
    def _give_back_or_close(skt: socket.socket, owner: ExclusiveListening | None) -> None:
        """A start failed: close its socket -- or, if it was a guard taken over from
        ``owner``, give it back to ``owner`` as its guard (never closed, so the
        address is never free)."""
        if owner is not None and owner.connected and registry.guard_of(owner) is None:
            owner._keep_as_guard(skt)
        else:
            skt.close()

    def _open_guard(
        self, mode: str, family: int, host: str, port: int
    ) -> tuple[Guard | None, bool]:
        """Open (not yet install) the sibling guard.

        Returns (guard or None if none is needed or possible, whether the sibling
        family is absent on this host).
        """
        if mode == "no":
            return None, False
        sib = guards.sibling_of(family, host)
        if sib is None:
            return None, False
        sfamily, shost = sib
        skey: Key = (sfamily, shost, port)
        if registry.listener_at(skey) is not None:
            return None, False  # one of our own listeners holds the sibling address
        try:
            if mode == "refuse":
                skt = _sockets.open_guard(shost, port, sfamily)
            elif self._adopted_sibling is not None:
                # serve the sibling socket the supervisor passed with ours (adopt())
                skt, self._adopted_sibling = self._adopted_sibling, None
            else:
                skt = _sockets.open_serving_guard(shost, port, self.backlog, sfamily)
        except _sockets.CoreError as e:
            code = e.errno if e.errno is not None else 0
            if code in NO_STACK:
                log.warn(
                    "twisted-patch: no guard for {sibling} ({reason}): this host has no "
                    "{family_name} address there, so nobody can be reached there either; "
                    "if it appears later, restart this server to guard it",
                    sibling=format_address(shost, port),
                    reason=e.strerror,
                    errno=code,
                    stage=e.stage,
                    family_name="IPv6" if sfamily == socket.AF_INET6 else "IPv4",
                    address=format_address(host, port),
                )
                return None, True
            if e.stage in ("bind", "listen") and code in TAKEN:
                raise _SiblingBusy(sfamily, shost, port, e, e.stage) from None
            raise cannot_listen(shost, port, e, e.stage, asked=(host, port)) from None
        if mode == "refuse":
            return Guard(skey, self, mode, socket=skt), False
        sibling = self._sibling_class(
            port, self.factory, self.backlog, shost, self.reactor, guard="no", probe="off"
        )
        sibling._pending_socket = skt
        sibling.shared_socket = self.shared_socket
        return Guard(skey, self, mode, port=sibling), False

    def _install_guard(self, held: Guard, close_on_failure: bool = True) -> None:
        if held.port is not None:
            skt = held.port._pending_socket
            held.port._pending_socket = None
            try:
                held.port._adopt_listening(skt)
            except BaseException:
                if close_on_failure:
                    skt.close()
                raise
        registry.add_guard(held)

    @staticmethod
    def _drop_guard(held: Guard | None) -> None:
        """Close a guard that was opened but not installed."""
        if held is None:
            return
        if held.socket is not None:
            held.socket.close()
        if held.port is not None and held.port._pending_socket is not None:
            held.port._pending_socket.close()
            held.port._pending_socket = None

    def _check_guard(self, held: Guard | None) -> None:
        """The post-listen owner check for the guarded address.  Only a serve guard
        whose bind shared the address can have a placeholder beside it (a refuse
        guard never sets SO_REUSEADDR; a listener conflicts with every later bind)."""
        if held is None or held.port is None:
            return
        skt = held.port._pending_socket
        if skt is not None and _sockets.shared_bind(skt):
            selfcheck.ensure_exclusive(skt, held.key[1], placeholders=True)

    def _keep_as_guard(self, skt: socket.socket, os_chose_port: bool = False) -> None:
        """Make ``skt`` -- bound to our sibling address, listening or not -- our guard.

        Used when the listener of ours on the sibling address stops, or fails to
        take our guard over: its socket becomes our guard instead of being closed
        and replaced by a new one, so the address is never free for an instant.
        serve: it goes on listening, for our factory.  refuse: it stops listening
        and keeps its bind (:func:`twisted_patch._sockets.unlisten`); where the
        OS cannot -- or when ``os_chose_port`` (the socket was bound to port 0:
        Linux releases such a port at shutdown, silently, measured) -- it goes on
        listening and closes every connection at once.
        Whatever fails, the socket is not closed here: it is kept as a bare guard
        (the address stays ours) and an error-level event says so.
        """
        key = registry.key_of(self)
        mode = self.guard_mode or "no"
        sib = guards.sibling_of(key[0], key[1]) if key is not None else None
        if key is None or sib is None or mode == "no" or not self.connected:
            skt.close()
            return
        if registry.guard_of(self) is not None:
            skt.close()
            return
        skey: Key = (sib[0], sib[1], key[2])
        address = format_address(sib[1], key[2])
        try:
            listening = _sockets.is_listening(skt)
            if mode == "serve":
                if not listening:
                    _sockets.listen_on(skt, self.backlog)
                held = Guard(skey, self, mode, port=self._guard_port(skt, sib[1], self.factory))
            elif not listening:
                held = Guard(skey, self, mode, socket=skt)
            elif os_chose_port:
                held = Guard(skey, self, mode, port=self._guard_port(skt, sib[1], _REFUSE))
            else:
                try:
                    _sockets.unlisten(skt)
                    held = Guard(skey, self, mode, socket=skt)
                except _sockets.CoreError as e:
                    log.info(
                        "twisted-patch: {address} cannot stop listening on this OS ({error}); "
                        "as the refuse guard of {owner} it closes every connection at once",
                        address=address,
                        error=e.strerror,
                        owner=repr(self),
                    )
                    held = Guard(skey, self, mode, port=self._guard_port(skt, sib[1], _REFUSE))
            self._install_guard(held, close_on_failure=False)
        except Exception as e:  # noqa: BLE001 -- the address must stay ours whatever failed
            registry.add_guard(Guard(skey, self, mode, socket=skt))
            log.error(
                "twisted-patch: {address} is kept bound as the guard of {owner}, but could not "
                "be made a {mode} guard: {error}. Nobody else can take the address; "
                "connections to it wait unanswered until this server stops.",
                address=address,
                owner=repr(self),
                mode=mode,
                error=f"{type(e).__name__}: {e}",
            )
            return
        log.info(
            "twisted-patch: {address} kept as the {mode} guard of {owner} (its listener "
            "stopped; the socket never closed)",
            address=address,
            mode=mode,
            owner=repr(self),
        )

    def _guard_port(self, skt: socket.socket, host: str, factory: Any) -> Any:
        """A guard port of our class around ``skt`` (already listening), not yet serving."""
        port = self._sibling_class(
            self._realPortNumber or 0, factory, self.backlog, host, self.reactor, guard="no",
            probe="off",
        )
        port._pending_socket = skt
        return port

    def _probe(
        self, skt: socket.socket, mode: str, host: str, port: int, sibling_absent: bool
    ) -> Callable[[], None] | None:
        """Run the self-probe; raise if strict and hijackable; return the logging to do."""
        if self.probe_mode == "off":
            return None
        try:
            results = selfprobe.run_probe(skt)
        except _sockets.CoreError as e:
            raise cannot_listen(host, port, e, e.stage) from None
        self.probe_results = results
        # Without a sibling address on this host there is nothing to guard;
        # binds of that family's other addresses are reported, not fatal.
        verdict = selfprobe.judge(results, "no" if sibling_absent else mode)
        if self.probe_mode == "strict" and verdict.fatal:
            raise selfprobe.hijackable_error(host, port, verdict.fatal)
        label = "no (the other family is absent here)" if sibling_absent else mode
        probe_mode = self.probe_mode
        return lambda: selfprobe.report(verdict, probe_mode, host, port, label)

    # --- stopping ----------------------------------------------------------------

    def loseConnection(
        self, connDone: failure.Failure = CONNECTION_DONE
    ) -> defer.Deferred[None] | None:
        """Stop listening; with a guard, the Deferred fires once both sockets are closed."""
        d = self._base_lose_connection(connDone)
        held = registry.guard_of(self)
        if held is None or not self.connected:
            return d
        registry.remove_guard(held)
        d2: defer.Deferred[None] | None = None
        if held.port is not None:
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
        key = registry.key_of(self)
        held = registry.guard_of(self)
        survivor = self._survivor(key) if held is None else None
        if survivor is not None:
            # left open by _closeSocket (the port classes keep their socket in .socket)
            self._kept_socket = self.socket  # type: ignore[attr-defined]
        try:
            try:
                if held is not None:
                    # Called directly (reactor.disconnectAll at shutdown, or by a caller),
                    # not through stopListening: the guard goes first, so that our own
                    # factory.doStop() is the last one (it calls stopFactory).
                    registry.remove_guard(held)
                    if held.socket is not None:
                        self._closing_guard = held.socket
                    if held.port is not None:
                        held.port.connectionLost(reason)
            finally:
                self._base_connection_lost(reason)
        finally:
            if self._closing_guard is not None:
                self._closing_guard.close()
                self._closing_guard = None
            serving = registry.guard_serving_as(self)
            if serving is not None:
                # a serve-mode sibling stopped on its own: its owner has no guard now
                registry.remove_guard(serving)
            if key is not None:
                registry.remove_listener(key, self)
            kept, self._kept_socket = self._kept_socket, None
            if kept is not None:
                assert survivor is not None
                survivor._keep_as_guard(kept, os_chose_port=int(self.port or 0) == 0)

    def _survivor(self, key: Key | None) -> ExclusiveListening | None:
        """The listener of ours on our sibling address that takes our socket as its
        guard when we stop (None: the socket is closed as usual)."""
        if key is None:
            return None
        sib = guards.sibling_of(key[0], key[1])
        if sib is None:
            return None
        other: ExclusiveListening | None = registry.listener_at((sib[0], sib[1], key[2]))
        if other is None or not other.connected or registry.guard_of(other) is not None:
            return None
        return other if other.guard_mode in ("serve", "refuse") else None

    def _closeSocket(self, orderly: bool) -> None:
        """Twisted's socket close, except for a socket handed over as a guard."""
        if self._kept_socket is not None:
            return
        super()._closeSocket(orderly)  # type: ignore[misc]


class _Refuse(protocol.Factory):
    """The factory of a refuse guard that cannot stop listening (not Linux): every
    connection is closed at once (``buildProtocol`` returns None)."""

    noisy = False

    def buildProtocol(self, addr: Any) -> None:
        return None


_REFUSE = _Refuse()
