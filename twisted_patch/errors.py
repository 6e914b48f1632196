"""Messages a person can act on: the one errno table and the one address formatter.

Every failure of a hardened listener reaches Twisted code as a
:class:`twisted.internet.error.CannotListenError` (an :class:`ExclusiveCannotListen`,
whose text brackets IPv6 addresses) whose ``socketError`` is an
:class:`ExclusiveListenError`: an ``OSError`` with the OS's errno, the stage
that failed (``socket``, ``option``, ``bind``, ``listen``, ...) and a
sentence that says what happened and what to do.

Layer: only ``_native`` (for the OS's own error texts) is below this module.
"""

from __future__ import annotations

import errno
import sys

from twisted.internet.error import CannotListenError

from twisted_patch import _native

WINDOWS = sys.platform == "win32"

# --- the errno table ---------------------------------------------------------
# Winsock's codes; Python's errno module on Windows uses the same numbers.
WSAEACCES = 10013
WSAEAFNOSUPPORT = 10047
WSAEADDRINUSE = 10048
WSAEADDRNOTAVAIL = 10049

#: "address in use": another socket holds the address (or TIME_WAIT does).
IN_USE = frozenset({errno.EADDRINUSE, WSAEADDRINUSE})
#: "permission denied"; on Windows also "another socket holds it exclusively".
DENIED = frozenset({errno.EACCES, errno.EPERM, WSAEACCES})
#: the address is not one of this host's.
NOT_HERE = frozenset({errno.EADDRNOTAVAIL, WSAEADDRNOTAVAIL})
#: the address family does not exist here.
NO_FAMILY = frozenset({errno.EAFNOSUPPORT, WSAEAFNOSUPPORT})
#: the sibling family (or that address) is absent on this host: nothing to guard there.
NO_STACK = NO_FAMILY | NOT_HERE | {errno.EPROTONOSUPPORT}
#: bind errors that mean "another socket holds it" (the holder is then looked up):
#: on Windows a socket with SO_EXCLUSIVEADDRUSE makes later binds fail with WSAEACCES.
HELD = IN_USE | ({WSAEACCES} if WINDOWS else set())
#: a sibling address that cannot be had because something holds it (a listen-time
#: EADDRINUSE included): EACCES too, which Windows gives for an exclusive holder.
TAKEN = IN_USE | {errno.EACCES, WSAEACCES}


def os_text(code: int) -> str:
    """The OS's own text for an errno / Winsock code."""
    return _native.strerror(code)


# --- addresses in messages ------------------------------------------------------


def format_host(host: str) -> str:
    """``127.0.0.1`` / ``[::1]``; an empty host is the IPv4 wildcard."""
    if ":" in host:
        return f"[{host}]"
    return host or "0.0.0.0"


def format_address(host: str, port: int) -> str:
    """``127.0.0.1:80`` / ``[::1]:80``; an empty host is the IPv4 wildcard.

    The one formatter of addresses for people: every message, log event, table
    and ``repr`` uses it (or :func:`format_host` for a host alone).
    """
    return f"{format_host(host)}:{port}"


class ExclusiveListenError(OSError):
    """Why a hardened listener could not start.

    ``errno`` and ``strerror`` are as for any ``OSError``; ``stage`` names the
    step that failed and ``address`` the address that was asked for.
    """

    stage: str
    address: str
    os_text: str

    def __init__(self, code: int, message: str, stage: str, address: str, os_text: str) -> None:
        super().__init__(code, message)
        self.stage = stage
        self.address = address
        self.os_text = os_text

    def __str__(self) -> str:
        return str(self.strerror)


class ExclusiveCannotListen(CannotListenError):
    """A ``CannotListenError`` whose text brackets IPv6 addresses and ends in one period.

    ``interface`` and ``port`` are the address that was asked for, even when
    the failure happened on the guarded sibling address (the message says so).
    """

    def __str__(self) -> str:
        reason = str(self.socketError).rstrip()
        if reason.endswith("."):
            reason = reason[:-1]
        return f"Couldn't listen on {format_address(self.interface or '', self.port)}: {reason}."


def listen_failure(interface: str, port: int, reason: BaseException) -> CannotListenError:
    """A CannotListenError for ``interface:port`` (the address asked for)."""
    error: CannotListenError = ExclusiveCannotListen(  # type: ignore[no-untyped-call]
        interface, port, reason
    )
    return error


def describe(err: OSError, stage: str, address: str, holder: str | None = None) -> str:
    """One or two sentences: what failed, why, and what to do about it."""
    code = err.errno if err.errno is not None else 0
    text = err.strerror or os_text(code)
    detail = getattr(err, "detail", stage)
    if stage == "bind" and code in IN_USE:
        who = f" by {holder}" if holder else " by another socket"
        return (
            f"{address} is already in use{who} ({text}). Stop the program that holds it "
            f"or choose another port; twisted-patch never falls back to another port."
        )
    if stage == "bind" and code in DENIED:
        if WINDOWS:
            who = f" ({holder})" if holder else ""
            return (
                f"binding {address} was refused ({text}): another socket{who} holds the port "
                f"exclusively, or the port is in a range Windows reserves "
                f"(netsh interface ipv4 show excludedportrange protocol=tcp)."
            )
        return (
            f"binding {address} was refused ({text}): ports below 1024 need privileges, "
            f"or a security policy forbids this bind."
        )
    if stage == "bind" and code in NOT_HERE:
        return f"{address} is not an address of this host ({text})."
    if stage == "socket" and code in NO_FAMILY:
        return (
            f"this host has no support for the address family of {address} ({text}); "
            f"listen on an address of the other family."
        )
    if stage == "listen" and code in IN_USE:
        who = f" ({holder})" if holder else ""
        return (
            f"another socket{who} started listening on {address} between our bind and "
            f"listen ({text}); this is what a port hijack attempt looks like. "
            f"Find and stop that program."
        )
    if stage == "option":
        return f"setting {detail} on the socket for {address} failed ({text})."
    return f"{detail} failed for {address} ({text})."


def cannot_listen(
    interface: str,
    port: int,
    err: OSError,
    stage: str,
    holder: str | None = None,
    *,
    asked: tuple[str, int] | None = None,
    context: str = "",
) -> CannotListenError:
    """A CannotListenError carrying an :class:`ExclusiveListenError`.

    ``interface:port`` is where ``stage`` failed; ``asked`` the address the
    user asked for, when that is another one (the guarded sibling): the error
    then names the asked address and says the failure was on the sibling.
    ``context`` is prepended to the description (e.g. the port-0 attempts).
    """
    failed_at = format_address(interface, port)
    code = err.errno if err.errno is not None else 0
    message = describe(err, stage, failed_at, holder)
    if asked is not None and asked != (interface, port):
        message = (
            f"the other address family's {failed_at} (guarded for "
            f"{format_address(*asked)}) cannot be had: {message}"
        )
    if context:
        message = f"{context}: {message}"
    wrapped = ExclusiveListenError(code, message, stage, failed_at, err.strerror or "")
    where = asked if asked is not None else (interface, port)
    return listen_failure(where[0], where[1], wrapped)
