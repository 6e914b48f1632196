"""Who listens on a TCP port, and is it who we expect?

The lookup itself is native (``ext/owner_*.c``, see ``docs/owner.rst``):
Linux asks the kernel through NETLINK_SOCK_DIAG with an in-kernel port filter
and maps socket inodes to processes through ``/proc/PID/fd``; Windows uses
``GetExtendedTcpTable`` and the process token; macOS walks processes with
libproc.  Elsewhere every function here raises :class:`OwnerLookupError`.

Which listeners receive a connection to ``host:port`` (the rule used by
:func:`who` and :func:`verify`; it errs on the side of "may receive"):

- a listener bound to exactly ``host`` (same family);
- a wildcard listener of the same family (``0.0.0.0`` for an IPv4 host,
  ``::`` for an IPv6 host), even where the OS would prefer a more specific
  listener: if that one goes away, the wildcard gets the connections;
- for an IPv4 host, an IPv6 listener on ``::`` that is not IPV6_V6ONLY (or
  whose V6ONLY flag the OS does not report), or on ``::ffff:host``: dual-stack
  sockets receive IPv4 connections;
- for an IPv4-mapped IPv6 host ``::ffff:a.b.c.d``, IPv4 listeners on
  ``a.b.c.d`` or ``0.0.0.0``.

The other family's loopback (``::1`` for ``127.0.0.1``) is a different
address: a client that connects to ``localhost`` may use either, which is
what the address-family guard of :class:`ExclusivePort` is for.
"""

from __future__ import annotations

import errno
import os
import socket
import sys
from dataclasses import dataclass
from typing import Any

from twisted.logger import Logger

from twisted_patch import _native
from twisted_patch._address import check_host, check_port
from twisted_patch.errors import WINDOWS, format_address

log = Logger()


class OwnerLookupError(OSError):
    """The owner lookup failed, or is not supported on this OS (errno ENOSYS)."""


@dataclass(frozen=True)
class Listener:
    """One listening TCP socket.

    ``uid`` is None where the OS has no uids (Windows) or does not say;
    ``user`` is None when the name is unknown.  ``inode`` identifies the socket
    (Linux: the socket inode, as in ``ss -e``; macOS: the kernel's socket id;
    None on Windows).  ``pids`` are the processes holding the socket that we
    were allowed to see -- possibly none (another user's process, when we are
    not root; on Windows a listener the table reports with pid 0) -- and
    ``names`` their names (None where unknown).
    """

    family: int
    host: str
    port: int
    uid: int | None
    user: str | None
    inode: int | None
    pids: tuple[int, ...]
    names: tuple[str | None, ...]
    v6only: bool | None = None
    pids_truncated: bool = False
    listening: bool = True  # False: bound, neither listening nor connected (a placeholder)

    @property
    def address(self) -> str:
        """``127.0.0.1:3456`` or ``[::1]:3456``."""
        return format_address(self.host, self.port)

    @property
    def is_wildcard(self) -> bool:
        return self.host in ("0.0.0.0", "::")

    def holder(self) -> str:
        """``pid 4242 (python3), user alice`` -- who holds this listener, in words."""
        if self.pids:
            procs = ", ".join(
                f"{pid} ({name})" if name else str(pid) for pid, name in zip(self.pids, self.names)
            )
            who = f"pid {procs}" if len(self.pids) == 1 else f"pids {procs}"
            if self.pids_truncated:
                who += " and more"
        else:
            who = "a process we cannot see"
        if self.user:
            return f"{who}, user {self.user}"
        if self.uid is not None:
            return f"{who}, uid {self.uid}"
        return who

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``twisted-patch who --json``)."""
        return {
            "family": "IPv6" if self.family == socket.AF_INET6 else "IPv4",
            "host": self.host,
            "port": self.port,
            "address": self.address,
            "uid": self.uid,
            "user": self.user,
            "inode": self.inode,
            "v6only": self.v6only,
            "pids": list(self.pids),
            "names": list(self.names),
            "pids_truncated": self.pids_truncated,
            "listening": self.listening,
        }


def _lookup_error(e: OSError) -> OwnerLookupError:
    code = e.errno if e.errno is not None else 0
    detail = getattr(e, "detail", None) or "owner lookup"
    if code == errno.ENOSYS:
        return OwnerLookupError(code, f"{detail} ({sys.platform})")
    return OwnerLookupError(code, f"owner lookup failed: {detail}: {e.strerror}")


def _check_port(port: object) -> int:
    if not isinstance(port, int):
        raise ValueError(f"port must be a number from 1 to 65535, not {port!r}")
    return check_port(port, low=1)


def _rows(rows: list[Any], listening: bool) -> list[Listener]:
    result = []
    for family, host, lport, uid, user, inode, v6only, pids, names, truncated in rows:
        if WINDOWS and tuple(pids) == (0,):
            # pid 0 is the System Idle Process, which owns no socket: the table could
            # not name the owner (under Wine: every listener, as the Linux kernel holds
            # them for the wineserver).  Unknown, not the Idle process.
            pids, names, user = (), (), None
        result.append(
            Listener(
                family=family,
                host=host,
                port=lport,
                uid=uid,
                user=user,
                inode=inode,
                pids=tuple(pids),
                names=tuple(names),
                v6only=v6only,
                pids_truncated=truncated,
                listening=listening,
            )
        )
    return result


def listeners(
    port: int, *, self_only: bool = False, processes: bool = True, all_processes: bool = False
) -> list[Listener]:
    """Every TCP listener on ``port``, both families, wildcard and specific.

    ``self_only`` (Linux): find holding processes only in this process, without
    walking other processes' ``/proc/PID/fd``; other listeners then have no
    pids.  ``processes=False`` (Linux): no search for holding processes at all
    (inodes and uids only).  By default (Linux) other processes are looked at
    only when they run as a uid that owns one of the listeners, or as ours;
    ``all_processes=True`` looks at every process, which also finds a socket
    handed to a process of a third uid (docs/owner.rst).  Raises ``ValueError``
    for a bad port and :class:`OwnerLookupError` when the lookup fails.
    """
    _check_port(port)
    try:
        rows = _native.listeners(port, self_only, processes, all_processes)
    except _native.BindError as e:
        raise _lookup_error(e) from None
    return _rows(rows, True)


#: Whether :func:`bound_sockets` can see anything here: Linux 6.6 and later.
BOUND_VISIBLE = _native.OWNER_BACKEND == "linux" and bool(_native.BOUND_VISIBLE)


def bound_sockets(
    port: int, *, self_only: bool = False, processes: bool = True, all_processes: bool = False
) -> list[Listener]:
    """Every TCP socket on ``port`` that is bound but neither listening nor
    connected (``listening`` False): a placeholder that can ``listen()`` the moment
    the address is free.  Same arguments and errors as :func:`listeners`.

    Linux 6.6+ only (sock_diag ``TCP_BOUND_INACTIVE``); on an older kernel the
    list is always empty (:data:`BOUND_VISIBLE` is False), elsewhere
    :class:`OwnerLookupError` with errno ``ENOSYS``.
    """
    _check_port(port)
    if _native.OWNER_BACKEND != "linux":
        raise OwnerLookupError(
            errno.ENOSYS, f"bound, non-listening sockets cannot be listed on {sys.platform}"
        )
    if not BOUND_VISIBLE:
        return []
    try:
        rows = _native.bound(port, self_only, processes, all_processes)
    except _native.BindError as e:
        raise _lookup_error(e) from None
    return _rows(rows, False)


# --- which listeners receive a connection -----------------------------------


def _packed(family: int, host: str) -> bytes:
    return socket.inet_pton(family, host.split("%", 1)[0])


_V4_MAPPED = b"\x00" * 10 + b"\xff\xff"
_V4_MAPPED_ANY = _V4_MAPPED + bytes(4)  # ::ffff:0.0.0.0, the IPv4 wildcard in IPv6


def normalise_host(host: str) -> tuple[int, str]:
    """(family, canonical text) of a numeric address; ValueError otherwise."""
    return check_host(host)


def receives(listener: Listener, host: str) -> bool:
    """Whether ``listener`` may receive connections to ``host`` on its port.

    See the module docstring for the rule.
    """
    family, canonical = normalise_host(host)
    target = _packed(family, canonical)
    own = _packed(listener.family, listener.host)
    if listener.family == family:
        if own == target or own == bytes(len(own)):
            return True
        # [::ffff:0.0.0.0] receives every IPv4(-mapped) address
        return family == socket.AF_INET6 and target[:12] == _V4_MAPPED and own == _V4_MAPPED_ANY
    if family == socket.AF_INET and listener.family == socket.AF_INET6:
        # [::ffff:a.b.c.d] is a.b.c.d; [::ffff:0.0.0.0] is the IPv4 wildcard
        if own == _V4_MAPPED + target or own == _V4_MAPPED_ANY:
            return True
        return own == bytes(16) and listener.v6only is not True
    if family == socket.AF_INET6 and listener.family == socket.AF_INET:
        return target[:12] == _V4_MAPPED and (own == target[12:] or own == bytes(4))
    return False


def _overlaps(listener: Listener, family: int, host: str) -> bool:
    """Whether ``listener`` competes with a socket bound to (family, host).

    For a wildcard address that is every listener it would accept connections
    for: all of its own family (and, for 0.0.0.0, dual-stack [::] listeners).
    """
    if host in ("0.0.0.0", "::"):
        if listener.family == family:
            return True
        if family != socket.AF_INET or listener.family != socket.AF_INET6:
            return False
        if listener.is_wildcard:
            return listener.v6only is not True
        # any IPv4-mapped address is an IPv4 address
        return _packed(listener.family, listener.host)[:12] == _V4_MAPPED
    return receives(listener, host)


def who(host: str | None, port: int, *, all_processes: bool = False) -> list[Listener]:
    """The TCP listeners that may receive connections to ``host:port``.

    ``host`` None or ``''``: every listener on the port.  ``host`` must be a
    numeric IPv4 or IPv6 address (no name lookup, ever).  ``all_processes``:
    see :func:`listeners`.
    """
    found = listeners(port, all_processes=all_processes)
    if not host:
        return found
    normalise_host(host)
    return [item for item in found if receives(item, host)]


# --- verify -----------------------------------------------------------------


@dataclass(frozen=True)
class VerifyResult:
    """What :func:`verify` found.

    ``listeners``: every listener that may receive connections to host:port;
    ``foreign``: those not owned as expected.  ``owned`` is true iff there is
    at least one listener and none is foreign.
    """

    host: str | None
    port: int
    expected: str
    listeners: tuple[Listener, ...]
    foreign: tuple[Listener, ...]
    #: what else is wrong (verify_process: another holder, another uid, another
    #: process with the same pid); each makes ``owned`` false
    problems: tuple[str, ...] = ()

    @property
    def listening(self) -> bool:
        return bool(self.listeners)

    @property
    def owned(self) -> bool:
        return bool(self.listeners) and not self.foreign and not self.problems

    def __bool__(self) -> bool:
        return self.owned

    def explain(self) -> str:
        where = format_address(self.host, self.port) if self.host else f"port {self.port}"
        if not self.listeners:
            return f"nothing is listening on {where}"
        if not self.foreign and not self.problems:
            return f"{where} is owned as expected ({self.expected})"
        lines = [f"{where} is NOT owned as expected ({self.expected})"]
        if self.foreign:
            lines[0] += "; listening there:"
            lines += [f"  {item.address}: {item.holder()}" for item in self.foreign]
        lines += [f"  {problem}" for problem in self.problems]
        return "\n".join(lines)


def _own_user() -> str:
    try:
        _, user = _native.process_user(os.getpid())
    except _native.BindError as e:
        raise _lookup_error(e) from None
    if not user:
        raise OwnerLookupError(errno.EPERM, "cannot tell which user this process runs as")
    return user


def verify(
    host: str | None,
    port: int,
    *,
    uid: int | None = None,
    pid: int | None = None,
    user: str | None = None,
) -> VerifyResult:
    """Check that every listener that may receive ``host:port`` is the expected one.

    Expected is, at most one of: ``pid`` (the process holds the listening
    socket), ``uid``, or ``user`` (a user name; on Windows, ``DOMAIN\\name``
    or ``name``).  Default: our own uid (POSIX) or our own user (Windows).
    A listener whose processes cannot be seen never matches ``pid``; one
    whose owner is unknown never matches ``uid``/``user``: verify fails
    closed.  Raises ``ValueError`` for bad arguments and
    :class:`OwnerLookupError` when the lookup fails.
    """
    choices = (("uid", uid), ("pid", pid), ("user", user))
    given = [name for name, value in choices if value is not None]
    if len(given) > 1:
        raise ValueError(f"give at most one of uid, pid, user (got {', '.join(given)})")
    for name, value in (("uid", uid), ("pid", pid)):
        bad = isinstance(value, bool) or not isinstance(value, int) or value < 0
        if value is not None and bad:
            raise ValueError(f"{name} must be a whole number, 0 or more, not {value!r}")
    if uid is not None and WINDOWS:
        raise ValueError("Windows has no uids: give pid= or user=")
    if pid is None and uid is None and user is None:
        if hasattr(os, "getuid"):
            uid = os.getuid()
        else:
            user = _own_user()

    if pid is not None:
        expected = f"pid {pid}"

        def matches(item: Listener) -> bool:
            return pid in item.pids

    elif uid is not None:
        expected = f"uid {uid}"

        def matches(item: Listener) -> bool:
            return item.uid == uid

    else:
        assert user is not None
        expected = f"user {user}"
        wanted = user.casefold() if WINDOWS else user

        def matches(item: Listener) -> bool:
            if not item.user:
                return False
            have = item.user.casefold() if WINDOWS else item.user
            if have == wanted:
                return True
            # "alice" matches "HOST\alice" on Windows
            return WINDOWS and "\\" not in wanted and have.rsplit("\\", 1)[-1] == wanted

    # A pid is looked for in every process: the socket may have been handed to it
    # by a process of another uid (socket activation with User=, seen by root).
    found = tuple(who(host, port, all_processes=pid is not None))
    foreign = tuple(item for item in found if not matches(item))
    return VerifyResult(host or None, port, expected, found, foreign)


#: How far a recorded process start time may be from the process's own (seconds).
#: Both come from the same clock-tick count and boot time; the boot time the
#: kernel reports is whole seconds and moves when the clock is adjusted.
START_TIME_SLACK = 1.0


def process_start_time(pid: int) -> float:
    """When process ``pid`` started (seconds since the epoch), as psutil's
    ``Process.create_time()`` -- what Tahoe-LAFS records in running.process.
    :class:`OwnerLookupError` if there is no such process or the OS does not say."""
    try:
        return _native.process_start_time(pid)
    except _native.BindError as e:
        raise _lookup_error(e) from None


def _when(t: float) -> str:
    import time

    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) + f".{int(t * 100) % 100:02d}"


def verify_process(
    host: str,
    port: int,
    pid: int,
    *,
    started: float | None = None,
    uid: int | None = None,
) -> VerifyResult:
    """Check that ``host:port`` is served by process ``pid`` and by nothing else.

    Every listener that may receive ``host:port`` must be held by ``pid``, and
    by no other process (a child that inherited the socket is another holder:
    it is named); with ``uid``, the socket must belong to that uid; with
    ``started`` (the start time recorded when the process was launched, as in
    Tahoe's running.process), the process that has the pid now must have started
    then (within :data:`START_TIME_SLACK`): otherwise the pid was reused.
    Raises ``ValueError`` for bad arguments and :class:`OwnerLookupError`
    when the lookup fails.
    """
    for name, value in (("pid", pid), ("uid", uid)):
        bad = isinstance(value, bool) or not isinstance(value, int) or value < 0
        if value is not None and bad:
            raise ValueError(f"{name} must be a whole number, 0 or more, not {value!r}")
    expected = f"pid {pid}" + (f", uid {uid}" if uid is not None else "")
    # every process that may hold the socket, whatever its uid
    found = tuple(who(host, port, all_processes=True))
    foreign: list[Listener] = []
    problems: list[str] = []
    for item in found:
        if pid not in item.pids:
            foreign.append(item)
            continue
        others = [
            f"{p} ({n})" if n else str(p) for p, n in zip(item.pids, item.names) if p != pid
        ]
        if others:
            problems.append(
                f"{item.address} is also held by pid {', '.join(others)}: another process "
                f"(a child that inherited the socket, or one it was passed to) can accept "
                f"its connections"
            )
        if item.pids_truncated:
            problems.append(f"{item.address} is held by more processes than could be listed")
        if uid is not None and item.uid != uid:
            owner = f"uid {item.uid}" if item.user is None else f"uid {item.uid} ({item.user})"
            problems.append(f"{item.address} belongs to {owner}, not to uid {uid}")
    if started is not None and found:
        try:
            actual: float | None = process_start_time(pid)
        except OwnerLookupError as e:
            if e.errno != errno.ESRCH:
                raise
            actual = None
        if actual is None:
            problems.append(f"pid {pid} is not running")
        elif abs(actual - started) > START_TIME_SLACK:
            problems.append(
                f"pid {pid} started at {_when(actual)}, but the pid file records a process "
                f"started at {_when(started)}: pid {pid} now belongs to another process"
            )
    return VerifyResult(host, port, expected, found, tuple(foreign), tuple(problems))


# --- for ExclusivePort --------------------------------------------------------


def _with_bound(found: list[Listener], port: int, **kw: bool) -> list[Listener]:
    """``found`` plus the bound, non-listening sockets on the port where the OS shows them."""
    try:
        return found + bound_sockets(port, **kw)
    except OwnerLookupError as e:
        if e.errno == errno.ENOSYS:
            return found
        raise


def only_time_wait(interface: str, port: int, family: int = socket.AF_UNSPEC) -> bool:
    """Whether a bind of ``interface:port`` without SO_REUSEADDR can have failed only
    because of TIME_WAIT entries: there are some on the port, and no listener or
    (Linux 6.6+) bound socket overlaps the address.  Never raises: when the
    lookup fails (no netlink in a sandbox) the answer is True, as it was before
    binds were strict -- the post-listen check then says it could not look."""
    try:
        if family == socket.AF_UNSPEC:
            family = socket.AF_INET6 if ":" in interface else socket.AF_INET
        host = interface or ("::" if family == socket.AF_INET6 else "0.0.0.0")
        _, host = normalise_host(host)
        if _native.timewait(port) == 0:
            return False
        found = _with_bound(listeners(port, processes=False), port, processes=False)
    except Exception as e:  # noqa: BLE001 -- not knowing must not stop a restart
        log.debug("twisted-patch: TIME_WAIT lookup for {port} failed: {error}", port=port,
                  error=e)
        return True
    return not any(_overlaps(item, family, host) for item in found)


def holder_text(item: Listener) -> str:
    text = item.holder()
    if not item.listening:
        text += " (a socket bound there, not listening)"
    return text


def describe_holder(interface: str, port: int, family: int = socket.AF_UNSPEC) -> str | None:
    """Who holds ``interface:port`` in words, for an EADDRINUSE message.

    Listeners, and (Linux 6.6+) sockets bound without listening.  Never raises:
    when the lookup fails or finds nobody, the answer is None.
    """
    try:
        if family == socket.AF_UNSPEC:
            family = socket.AF_INET6 if ":" in interface else socket.AF_INET
        host = interface or ("::" if family == socket.AF_INET6 else "0.0.0.0")
        _, host = normalise_host(host)
        found = _with_bound(listeners(port), port)
        holders = [item for item in found if _overlaps(item, family, host)]
    except Exception as e:  # noqa: BLE001 -- an error message must never fail
        log.debug("twisted-patch: owner lookup for {port} failed: {error}", port=port, error=e)
        return None
    if not holders:
        return None
    texts: list[str] = []
    for item in holders:
        text = holder_text(item)
        if len(holders) > 1:
            text += f" (on {item.address})"
        if text not in texts:
            texts.append(text)
    return "; ".join(texts)


def _target_address(target: Any) -> tuple[int, str, int]:
    if isinstance(target, tuple):
        host, port = target
        if not host:
            host = "0.0.0.0"
        family, host = normalise_host(str(host))
        return family, host, int(port)
    if isinstance(target, socket.socket):
        name = target.getsockname()
        family, host = normalise_host(name[0])
        return family, host, int(name[1])
    get_host = getattr(target, "getHost", None)
    if get_host is not None:
        address = get_host()
        family, host = normalise_host(address.host)
        return family, host, int(address.port)
    raise TypeError(f"check_exclusive needs a port, a socket or (host, port), not {target!r}")


def check_exclusive(
    target: Any | socket.socket | tuple[str, int], *, placeholders: bool = True
) -> list[Listener]:
    """The foreign listeners that would receive connections meant for ``target``.

    ``target`` is a listening port (anything with ``getHost()``), a bound
    socket, or ``(host, port)``.  Foreign means: not held by this process.
    For a wildcard target every listener of its family on the port counts;
    for a specific address, the listeners that may receive it (see the
    module docstring).  With ``placeholders`` (Linux 6.6+), sockets bound there
    without listening count too.  Raises :class:`OwnerLookupError` if the lookup
    fails.
    """
    family, host, port = _target_address(target)
    me = os.getpid()

    def lookup(**kw: bool) -> list[Listener]:
        found = listeners(port, **kw)
        return _with_bound(found, port, **kw) if placeholders else found

    def foreign(found: list[Listener]) -> list[Listener]:
        return [item for item in found if _overlaps(item, family, host) and me not in item.pids]

    # The common case (only us): for our own socket, the kernel's inodes say it
    # without any walk of /proc; then only our own fds; name others only if any.
    # Sockets bound without listening count (Linux 6.6+ shows them): such a
    # placeholder listens the moment we stop.
    if isinstance(target, socket.socket) and _native.OWNER_BACKEND == "linux":
        mine = os.fstat(target.fileno()).st_ino
        seen = lookup(processes=False)
        if all(item.inode == mine for item in seen if _overlaps(item, family, host)):
            return []
    if not foreign(lookup(self_only=True)):
        return []
    return foreign(lookup())
