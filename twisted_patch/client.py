"""Verified connections: is the socket a client is about to send on connected to who it expects?

``twisted_patch.owner.verify`` checks the *port*; between that check and the
connection a server can die and an impostor take its port.  This module
checks the *connection* itself, after ``connect()`` and before the first
byte is sent: it finds the server end of that exact 4-tuple (client address
and port, server address and port) and who holds it
(``_native.connection``, ``ext/owner_*.c``):

- Linux: one NETLINK_SOCK_DIAG request for the 4-tuple (the kernel's own
  lookup, no dump), giving the server socket's state, uid and inode; then the
  given pid's ``/proc/PID/fd`` (every process's, to name another holder);
- Windows: ``GetExtendedTcpTable(TCP_TABLE_OWNER_PID_CONNECTIONS)``, the row
  of that 4-tuple and its owning pid (no uid: compare pids or users);
- macOS: libproc, the process whose socket has that 4-tuple (unverified here).

A server that has not yet ``accept()``ed the connection holds no descriptor
for it: :func:`verify_connection` waits for the accept (up to ``timeout``)
before it can say which process holds it.  Only connections to this host can
be verified (the server end must be a socket of this machine).

Layer: above ``owner`` (it reuses :class:`owner.Listener` for the server
socket); nothing of the port classes.
"""

from __future__ import annotations

import errno
import functools
import http.client
import os
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import (
    IAddress,
    IProtocol,
    IProtocolFactory,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_patch import _native
from twisted_patch.errors import WINDOWS, format_address
from twisted_patch.owner import Listener, OwnerLookupError

log = Logger()

#: how long verify_connection waits, by default, for the server to accept()
DEFAULT_TIMEOUT = 5.0


class UnverifiedConnection(ConnectionError):
    """The connection's server end is not held as expected: send nothing on it.

    ``server_end`` is what was found (None when the lookup could not run),
    ``expected`` the owner asked for in words (``pid 4242``, ``uid 1000``).
    """

    def __init__(self, message: str, server_end: ServerEnd | None, expected: str) -> None:
        super().__init__(errno.EPERM, message)
        self.server_end = server_end
        self.expected = expected

    def __str__(self) -> str:
        return str(self.strerror)


@dataclass(frozen=True)
class ServerEnd:
    """The server end of one TCP connection, as the OS reports it.

    ``state``: ``"none"`` (no socket of this host has that 4-tuple),
    ``"established"``, ``"syn-received"`` (the server has not completed the
    handshake) or ``"closing"``.  ``socket``: the server's socket (None for
    ``"none"``): its uid, inode (None while not yet accepted, and on Windows)
    and the processes holding it.
    """

    client: tuple[str, int]
    server: tuple[str, int]
    state: str
    socket: Listener | None

    @property
    def accepted(self) -> bool:
        """Whether a process holds the server socket (so the holders are known)."""
        if self.socket is None:
            return False
        if _native.OWNER_BACKEND == "linux":
            return self.socket.inode is not None
        return bool(self.socket.pids)

    def holder(self) -> str:
        """Who holds the server end, in words (``pid 4242 (python3), uid 1000``)."""
        if self.socket is None:
            return "nobody on this host"
        if not self.accepted:
            if self.socket.user:
                owner = f"user {self.socket.user}"
            elif self.socket.uid is not None:
                owner = f"uid {self.socket.uid}"
            else:
                owner = "an unknown user"
            return f"a socket of {owner} not yet accepted by any process"
        return self.socket.holder()

    def describe(self) -> str:
        return (f"the connection {format_address(*self.client)} -> "
                f"{format_address(*self.server)}")


def _endpoint(name: Any) -> tuple[str, int]:
    return str(name[0]), int(name[1])


@functools.lru_cache(maxsize=64)
def _user_name(uid: int | None) -> str | None:
    """The user name of a uid, for messages (cached: getpwuid reads /etc/passwd)."""
    if uid is None:
        return None
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        return None


def server_end(sock: socket.socket, *, pid: int | None = None,
               processes: bool = True) -> ServerEnd:
    """Look up the server end of ``sock``'s connection once (no waiting).

    ``pid``: look for holders in that process first, and stop there if it
    holds the socket.  ``processes=False`` (Linux): uid and inode only.
    Raises ``ValueError`` for a socket that is not a connected TCP socket and
    :class:`OwnerLookupError` when the lookup fails.
    """
    if not isinstance(sock, socket.socket):
        raise TypeError(f"verify_connection needs a socket.socket, not {sock!r}")
    if sock.family not in (socket.AF_INET, socket.AF_INET6) or sock.type != socket.SOCK_STREAM:
        raise ValueError(f"not a TCP socket: {sock!r}")
    try:
        client = _endpoint(sock.getsockname())
        server = _endpoint(sock.getpeername())
    except OSError as e:
        raise ValueError(f"the socket is not connected ({e.strerror}): {sock!r}") from None
    try:
        state, _os_state, row = _native.connection(
            client[0], client[1], server[0], server[1], pid or 0, processes)
    except _native.BindError as e:
        code = e.errno if e.errno is not None else 0
        detail = getattr(e, "detail", None) or "connection lookup"
        if code == errno.ENOSYS:
            raise OwnerLookupError(code, f"{detail} ({sys.platform})") from None
        raise OwnerLookupError(code, f"connection lookup failed: {detail}: {e.strerror}") from None
    found = None
    if row is not None:
        family, host, port, uid, user, inode, v6only, pids, names, truncated = row
        found = Listener(family=family, host=host, port=port, uid=uid,
                         user=user if user is not None or WINDOWS else _user_name(uid),
                         inode=inode, pids=tuple(pids), names=tuple(names), v6only=v6only,
                         pids_truncated=truncated)
    return ServerEnd(client, server, state, found)


def _expected(pid: int | None, uid: int | None, user: str | None) -> tuple[str, Callable[
        [ServerEnd], bool | None]]:
    """(the owner in words, a check: True ok, False not, None not known yet)."""
    if pid is not None:
        def by_pid(end: ServerEnd) -> bool | None:
            assert end.socket is not None
            if pid in end.socket.pids:
                return True
            return False if end.accepted else None

        return f"pid {pid}", by_pid
    if uid is not None:
        def by_uid(end: ServerEnd) -> bool | None:
            assert end.socket is not None
            if end.socket.uid is None:
                return False if end.accepted else None
            return end.socket.uid == uid

        return f"uid {uid}", by_uid
    assert user is not None
    wanted = user.casefold()

    def by_user(end: ServerEnd) -> bool | None:
        assert end.socket is not None
        if not end.accepted:
            return None
        have = (end.socket.user or "").casefold()
        return bool(have) and (have == wanted or have.rsplit("\\", 1)[-1] == wanted)

    return f"user {user}", by_user


def _arguments(pid: int | None, uid: int | None) -> tuple[int | None, int | None, str | None]:
    for name, value in (("pid", pid), ("uid", uid)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < (1 if name == "pid" else 0)):
            raise ValueError(f"{name} must be a whole number ({'1' if name == 'pid' else '0'} "
                             f"or more), not {value!r}")
    if pid is not None and uid is not None:
        raise ValueError("give pid= or uid=, not both")
    if uid is not None and WINDOWS:
        raise ValueError("Windows has no uids: give pid=")
    user = None
    if pid is None and uid is None:
        if hasattr(os, "getuid"):
            uid = os.getuid()
        else:
            _, user = _native.process_user(os.getpid())
            if not user:
                raise OwnerLookupError(errno.EPERM, "cannot tell which user this process runs as")
    return pid, uid, user


class _Check:
    """One verification: the decision shared by the blocking and the Twisted form."""

    def __init__(self, sock: socket.socket, pid: int | None, uid: int | None,
                 timeout: float, blocking: bool = True) -> None:
        if not (isinstance(timeout, (int, float)) and 0 <= timeout <= 3600):
            raise ValueError(f"timeout must be a number of seconds from 0 to 3600, not "
                             f"{timeout!r}")
        self.sock = sock
        self.pid, uid, user = _arguments(pid, uid)
        self.expected, self.matches = _expected(self.pid, uid, user)
        self.deadline = time.monotonic() + timeout
        self.delay = 0.0005
        self.blocking = blocking  # False in a reactor: never sleep

    def refuse(self, end: ServerEnd, why: str) -> UnverifiedConnection:
        return UnverifiedConnection(
            f"refusing to send on {end.describe()}: {why}; expected {self.expected}",
            end, self.expected)

    def step(self) -> ServerEnd | None:
        """The verified server end, None to try again later; raises UnverifiedConnection."""
        end = server_end(self.sock, pid=self.pid, processes=self.pid is not None)
        if end.state == "closing":
            raise self.refuse(end, "the server end is closing")
        verdict = None if end.state != "established" else self.matches(end)
        if verdict is True:
            return end
        if verdict is False:
            if self.pid is None:  # name the holder (the check itself needed no process walk)
                left = max(0.0, self.deadline - time.monotonic()) if self.blocking else 0.0
                end = identify(self.sock, timeout=left)
            raise self.refuse(end, f"it is held by {end.holder()}")
        if time.monotonic() >= self.deadline:
            if end.state == "none":
                why = "no socket of this host holds its server end"
            elif end.state == "syn-received":
                why = "the server never completed the handshake"
            else:
                why = f"its server end is {end.holder()}"
            raise self.refuse(end, why + " (waited for the server to accept it)")
        return None

    def next_delay(self) -> float:
        delay = min(self.delay, max(0.0, self.deadline - time.monotonic()))
        self.delay = min(self.delay * 2, 0.05)
        return delay


def identify(sock: socket.socket, *, timeout: float = DEFAULT_TIMEOUT) -> ServerEnd:
    """The server end of ``sock``'s connection with its holders, waiting up to
    ``timeout`` for the server to accept() it (for messages: who answers there?)."""
    deadline = time.monotonic() + timeout
    delay = 0.0005
    while True:
        end = server_end(sock)
        if end.accepted or end.state == "closing" or time.monotonic() >= deadline:
            return end
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 2, 0.05)


def verify_connection(sock: socket.socket, *, pid: int | None = None, uid: int | None = None,
                      timeout: float = DEFAULT_TIMEOUT) -> ServerEnd:
    """Check that the server end of ``sock``'s connection is held as expected.

    Call it after ``connect()`` and before sending anything.  Expected is
    ``pid`` (that process holds the server's socket), or ``uid`` (the socket
    belongs to that user; POSIX), or by default our own uid (Windows: our own
    user).  Waits up to ``timeout`` seconds for the server to accept() the
    connection (until then no process holds it).  Returns the
    :class:`ServerEnd`; raises :class:`UnverifiedConnection` naming the
    holder when it is someone else (or nobody on this host), ``ValueError``
    for bad arguments or an unconnected socket, :class:`OwnerLookupError` when
    the lookup cannot run.  Do not call it from the thread of a reactor that
    serves the connection itself (the accept could not happen meanwhile): use
    :class:`VerifiedClientEndpoint` there.
    """
    check = _Check(sock, pid, uid, timeout)
    while True:
        end = check.step()
        if end is not None:
            return end
        time.sleep(check.next_delay())


# --- http.client ------------------------------------------------------------


class VerifiedHTTPConnection(http.client.HTTPConnection):
    """``http.client.HTTPConnection`` that verifies every connection it makes before
    the request is sent (``pid=`` / ``uid=`` as :func:`verify_connection`).

    On a failed check the socket is closed and :class:`UnverifiedConnection`
    raised from ``connect()``: not a byte of the request was sent.
    """

    def __init__(self, host: str, port: int | None = None, *, pid: int | None = None,
                 uid: int | None = None, verify_timeout: float = DEFAULT_TIMEOUT,
                 **kwargs: Any) -> None:
        super().__init__(host, port, **kwargs)
        self.verify_pid = pid
        self.verify_uid = uid
        self.verify_timeout = verify_timeout
        self.server_end: ServerEnd | None = None
        _arguments(pid, uid)  # bad arguments fail here, not at the first request

    def connect(self) -> None:
        super().connect()
        try:
            self.server_end = verify_connection(self.sock, pid=self.verify_pid,
                                                uid=self.verify_uid,
                                                timeout=self.verify_timeout)
        except BaseException:
            self.close()
            raise


# --- Twisted ------------------------------------------------------------------


class _VerifyingProtocol(Protocol):
    """Sits between the transport and the real protocol: the real one is connected
    only once the connection is verified; bytes received meanwhile are kept."""

    def __init__(self, owner: _VerifyingFactory, addr: IAddress | None) -> None:
        self._owner = owner
        self._addr = addr
        self._inner: IProtocol | None = None
        self._pending: list[bytes] = []
        self._call: Any = None
        self._check: _Check | None = None

    def connectionMade(self) -> None:
        transport: Any = self.transport
        handle = transport.getHandle()
        try:
            if not isinstance(handle, socket.socket):
                raise ValueError(f"cannot verify a transport without a socket: {transport!r}")
            self._check = _Check(handle, self._owner.pid, self._owner.uid, self._owner.timeout,
                                 blocking=False)
        except BaseException:
            self._fail(Failure())
            return
        self._attempt()

    def _attempt(self) -> None:
        self._call = None
        assert self._check is not None
        try:
            end = self._check.step()
        except BaseException:
            self._fail(Failure())
            return
        if end is None:
            self._call = self._owner.reactor.callLater(self._check.next_delay(), self._attempt)
            return
        self._verified(end)

    def _verified(self, end: ServerEnd) -> None:
        log.debug("twisted-patch: verified {connection}: {holder}", connection=end.describe(),
                  holder=end.holder(), expected=self._check.expected if self._check else None)
        try:
            wrapped: Any = self._owner.wrapped
            inner = wrapped.buildProtocol(self._addr)
            if inner is None:
                raise ValueError(f"{self._owner.wrapped!r} built no protocol")
            self._inner = inner
            transport: Any = self.transport
            inner.makeConnection(transport)
        except BaseException:
            self._fail(Failure())
            return
        self._owner.fire(inner)
        pending, self._pending = self._pending, []
        for data in pending:
            inner.dataReceived(data)

    def _fail(self, why: Failure) -> None:
        transport: Any = self.transport
        log.info("twisted-patch: connection not verified, closed unused: {error}",
                 error=why.getErrorMessage())
        self._owner.fail(why)
        transport.abortConnection()

    def dataReceived(self, data: bytes) -> None:
        if self._inner is not None:
            self._inner.dataReceived(data)
        else:
            self._pending.append(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
            self._call = None
        if self._inner is not None:
            self._inner.connectionLost(reason)
        else:
            self._owner.fail(Failure(UnverifiedConnection(
                f"the connection closed before it was verified ({reason.getErrorMessage()})",
                None, self._check.expected if self._check else "")))


class _VerifyingFactory(Factory):
    def __init__(self, wrapped: IProtocolFactory, reactor: Any, pid: int | None,
                 uid: int | None, timeout: float) -> None:
        self.wrapped = wrapped
        self.reactor = reactor
        self.pid = pid
        self.uid = uid
        self.timeout = timeout
        self.done: defer.Deferred[IProtocol] = defer.Deferred()

    def buildProtocol(self, addr: IAddress | None) -> _VerifyingProtocol:
        return _VerifyingProtocol(self, addr)

    def fire(self, protocol: IProtocol) -> None:
        if not self.done.called:
            self.done.callback(protocol)

    def fail(self, why: Failure) -> None:
        if not self.done.called:
            self.done.errback(why)


@implementer(IStreamClientEndpoint)
class VerifiedClientEndpoint:
    """Wraps a TCP client endpoint: ``connect()`` fires with the protocol only once the
    connection's server end is verified (``pid=`` / ``uid=`` as
    :func:`verify_connection`); the protocol never sees an unverified connection.

    On a failed check the Deferred fails with :class:`UnverifiedConnection`
    and the connection is aborted before the protocol is even built.  The
    check runs in the reactor without blocking it (the wait for the server's
    accept() is a ``callLater`` loop), so the server may be in this process.
    """

    def __init__(self, endpoint: IStreamClientEndpoint, *, pid: int | None = None,
                 uid: int | None = None, timeout: float = DEFAULT_TIMEOUT,
                 reactor: Any = None) -> None:
        _arguments(pid, uid)
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self._endpoint = endpoint
        self._pid = pid
        self._uid = uid
        self._timeout = timeout
        self._reactor = reactor

    def connect(self, protocolFactory: IProtocolFactory) -> defer.Deferred[IProtocol]:
        factory = _VerifyingFactory(protocolFactory, self._reactor, self._pid, self._uid,
                                    self._timeout)
        connecting = self._endpoint.connect(factory)
        connecting.addErrback(factory.fail)
        return factory.done

    def __repr__(self) -> str:
        return f"<VerifiedClientEndpoint {self._endpoint!r}>"
