"""The post-listen owner check: after listen, nobody else may share the port.

:func:`ensure_exclusive` asks the owner lookup (:func:`twisted_patch.owner.check_exclusive`)
which other listeners would receive connections meant for our socket (and,
after a bind that had to share the address, which sockets are bound there
without listening: placeholders).  Any is evidence of a shared port: the
listen fails.  A lookup that cannot be made
(an OS without an owner backend, no netlink in a sandbox) is logged and does
not stop the listener: not knowing is not evidence of a hijack, and the
self-probe still runs.

On Windows the table (``GetExtendedTcpTable``) may report a listener with pid 0:
the owner is unknown (pid 0 is the Idle process, which owns no socket; under Wine
every listener is reported so).  Such a listener is evidence only where nobody
but us can be (:func:`windows_evidence`).
"""

from __future__ import annotations

import dataclasses
import errno
import os
import socket
from collections.abc import Callable

from twisted.internet.error import CannotListenError
from twisted.logger import Logger

from twisted_patch.errors import WINDOWS, ExclusiveListenError, format_address, listen_failure
from twisted_patch.owner import (
    Listener,
    OwnerLookupError,
    check_exclusive,
    holder_text,
    listeners,
    normalise_host,
)

log = Logger()

#: Windows' SO_EXCLUSIVEADDRUSE (~SO_REUSEADDR); the socket module has it on Windows only.
SO_EXCLUSIVEADDRUSE: int = getattr(socket, "SO_EXCLUSIVEADDRUSE", ~4)


def foreign_listener_error(interface: str, port: int, foreign: list[Listener]) -> CannotListenError:
    """The CannotListenError for a port that another process shares with us."""
    address = format_address(interface, port)
    holders = "; ".join(f"{item.address} held by {holder_text(item)}" for item in foreign)
    placeholders = any(not item.listening for item in foreign)
    message = (
        f"{address} is listening, but another process may receive its connections too"
        + (" or take the address the moment this server stops" if placeholders else "")
        + f": {holders}. Stop that program before starting this one; twisted-patch does not "
        f"serve a port it does not own alone"
    )
    wrapped = ExclusiveListenError(
        errno.EADDRINUSE, message, "owner", address, os.strerror(errno.EADDRINUSE)
    )
    return listen_failure(interface, port, wrapped)


def ensure_exclusive(
    skt: socket.socket, interface: str, *, shared: bool = False, placeholders: bool = False,
    notes: list[Callable[[], None]] | None = None,
) -> None:
    """Raise CannotListenError if another process may receive ``skt``'s connections.

    ``shared``: ``skt`` was inherited (socket activation) and the supervisor that
    made it may hold it too.  Another holder of this same kernel socket (same
    inode) is then not foreign -- it cannot receive anything our socket does not
    -- and is logged; any *other* socket on the port still fails the listen.
    ``placeholders``: sockets bound beside ours without listening count too
    (Linux 6.6+; about 5 ms per family here: the kernel walks its whole bind
    table), needed only where our bind shared the address (SO_REUSEADDR before
    bind, see ``docs/guard.rst``, *Placeholders*).  ``notes``: where to put the
    log events of :func:`windows_evidence` for the caller to emit once the port
    is announced (Twisted's "starting on" is a port's first event); without it
    they are logged at once.  The caller closes the socket on error.
    """
    port = int(skt.getsockname()[1])
    try:
        foreign = check_exclusive(skt, placeholders=placeholders)
        if shared:
            foreign = _not_the_same_socket(skt, interface, port, foreign)
    except OwnerLookupError as e:
        emit = log.info if e.errno == errno.ENOSYS else log.warn
        emit(
            "twisted-patch: cannot check who else listens on {address}: {error}",
            address=format_address(interface, port),
            error=str(e),
        )
        return
    if WINDOWS:
        foreign = windows_evidence(skt, interface, port, foreign, notes=notes)
    if foreign:
        raise foreign_listener_error(interface, port, foreign)


def _not_the_same_socket(
    skt: socket.socket, interface: str, port: int, foreign: list[Listener]
) -> list[Listener]:
    """``foreign`` without the holders of ``skt`` itself; log who else holds it."""
    mine = os.fstat(skt.fileno()).st_ino
    others = [item for item in listeners(port) if item.inode == mine
              and any(pid != os.getpid() for pid in item.pids)]
    for found in others:
        kept = [(pid, name) for pid, name in zip(found.pids, found.names) if pid != os.getpid()]
        item = dataclasses.replace(found, pids=tuple(p for p, _ in kept),
                                   names=tuple(n for _, n in kept))
        log.info(
            "twisted-patch: {address} is also held by {holder}: the same socket "
            "(inode {inode}), passed on by the supervisor that made it",
            address=format_address(interface, port),
            holder=item.holder(),
            inode=mine,
            pids=list(item.pids),
        )
    return [item for item in foreign if item.inode != mine]


def windows_evidence(
    skt: socket.socket, interface: str, port: int, found: list[Listener],
    notes: list[Callable[[], None]] | None = None,
) -> list[Listener]:
    """Which of the foreign listeners ``found`` for ``skt`` show a shared port, on Windows.

    A listener the table names (a pid that is not ours) is evidence.  One reported
    without an owner (pid 0) is evidence only where nobody but us can be:

    - at exactly our address, with SO_EXCLUSIVEADDRUSE on our socket (read back
      here): Microsoft's table refuses every second bind of that address, whatever
      its options (INUSE or DENIED in every cell), so one such listener is our own
      socket; two would be evidence;
    - elsewhere (a wildcard listener over our specific address, allowed by
      Windows; the other family's dual-stack socket): someone the OS does not
      name.  Not evidence: logged, and the listener runs.

    Our socket without SO_EXCLUSIVEADDRUSE fails the listen: nothing above holds.
    """
    exclusive = skt.getsockopt(socket.SOL_SOCKET, SO_EXCLUSIVEADDRUSE)
    address = format_address(interface, port)
    if exclusive != 1:
        message = (
            f"{address} is listening without SO_EXCLUSIVEADDRUSE (it reads back "
            f"{exclusive}): another process may bind it too; twisted-patch does not serve it"
        )
        wrapped = ExclusiveListenError(
            errno.EADDRINUSE, message, "owner", address, os.strerror(errno.EADDRINUSE)
        )
        raise listen_failure(interface, port, wrapped)
    mine = normalise_host(str(skt.getsockname()[0]))
    named = [item for item in found if item.pids]
    unnamed = [item for item in found if not item.pids]
    here = [item for item in unnamed if normalise_host(item.host) == mine]
    elsewhere = [item for item in unnamed if item not in here]
    emitted: list[Callable[[], None]] = []
    if here:
        emitted.append(lambda: log.info(
            "twisted-patch: the owner lookup reports {address} without an owner (pid 0); "
            "SO_EXCLUSIVEADDRUSE=1 on our socket, so by Windows' rules it is ours",
            address=address,
            listeners=[item.address for item in here],
        ))
    if elsewhere:
        emitted.append(lambda: log.warn(
            "twisted-patch: cannot tell who holds {others} (the OS reports pid 0), on the "
            "port of {address}; connections to {address} reach our socket, the most specific",
            address=address,
            others=", ".join(item.address for item in elsewhere),
        ))
    if notes is not None:
        notes.extend(emitted)
    else:
        for note in emitted:
            note()
    return named + (here if len(here) > 1 else [])
