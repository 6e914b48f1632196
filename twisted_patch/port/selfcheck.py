"""The post-listen owner check: after listen, nobody else may share the port.

:func:`ensure_exclusive` asks the owner lookup (:func:`twisted_patch.owner.check_exclusive`)
which other listeners would receive connections meant for our socket (and,
after a bind that had to share the address, which sockets are bound there
without listening: placeholders).  Any is evidence of a shared port: the
listen fails.  A lookup that cannot be made
(an OS without an owner backend, no netlink in a sandbox) is logged and does
not stop the listener: not knowing is not evidence of a hijack, and the
self-probe still runs.
"""

from __future__ import annotations

import errno
import os
import socket

from twisted.internet.error import CannotListenError
from twisted.logger import Logger

from twisted_patch.errors import ExclusiveListenError, format_address, listen_failure
from twisted_patch.owner import Listener, OwnerLookupError, check_exclusive, holder_text

log = Logger()


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


def ensure_exclusive(skt: socket.socket, interface: str, *, placeholders: bool = False) -> None:
    """Raise CannotListenError if another process may receive ``skt``'s connections.

    ``placeholders``: sockets bound beside ours without listening count too
    (Linux 6.6+; about 5 ms per family here: the kernel walks its whole bind
    table), needed only where our bind shared the address (SO_REUSEADDR before
    bind, see ``docs/guard.rst``, *Placeholders*).  The caller closes the socket
    on error.
    """
    port = int(skt.getsockname()[1])
    try:
        foreign = check_exclusive(skt, placeholders=placeholders)
    except OwnerLookupError as e:
        emit = log.info if e.errno == errno.ENOSYS else log.warn
        emit(
            "twisted-patch: cannot check who else listens on {address}: {error}",
            address=format_address(interface, port),
            error=str(e),
        )
        return
    if foreign:
        raise foreign_listener_error(interface, port, foreign)
