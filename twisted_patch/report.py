"""Make a failed listen visible even when nobody handles the Deferred.

Foolscap's ``Listener.startService`` (and so every ``Tub.listenOn``, and
Tahoe-LAFS's ``tub.port``) calls ``endpoint.listen(...)`` and adds no
errback: a port that cannot be had leaves the program running without the
listener, and the only trace is an "Unhandled error in Deferred" printed
whenever the failed Deferred happens to be garbage-collected -- for a Tahoe
introducer, only at shutdown.

:class:`~twisted_patch.ExclusiveTCPServerEndpoint` therefore logs every
listen failure itself, at error level through ``twisted.logger``, before
passing the failure on unchanged: the line names the address, the reason
and (where the owner lookup can tell) the holder, at the moment it happens.
"""

from __future__ import annotations

from twisted.logger import Logger
from twisted.python.failure import Failure

from twisted_patch.errors import format_address

log = Logger()


def log_listen_failure(failure: Failure, interface: str, port: int) -> Failure:
    """Log ``failure`` (a failed listen on ``interface:port``) at error level; return it."""
    log.error(
        "twisted-patch: cannot listen on {address}: {reason}",
        address=format_address(interface, port),
        reason=str(failure.value),
        interface=interface,
        port=port,
        error_type=failure.type.__name__ if failure.type is not None else None,
    )
    return failure
