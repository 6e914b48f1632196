"""Turn the core's failures into messages a person can act on.

Every failure of a hardened listener reaches Twisted code as a
:class:`twisted.internet.error.CannotListenError` whose ``socketError`` is an
:class:`ExclusiveListenError`: an ``OSError`` with the OS's errno, the stage
that failed (``socket``, ``option``, ``bind``, ``listen``, ...) and a
sentence that says what happened and what to do.
"""

from __future__ import annotations

import errno
import sys

from twisted.internet.error import CannotListenError

from twisted_patch import _native

_WINDOWS = sys.platform == "win32"

# Windows' Winsock codes; Python's errno module on Windows uses the same numbers.
WSAEACCES = 10013
WSAEADDRINUSE = 10048
WSAEADDRNOTAVAIL = 10049
WSAEAFNOSUPPORT = 10047

_IN_USE = {errno.EADDRINUSE, WSAEADDRINUSE}
_DENIED = {errno.EACCES, errno.EPERM, WSAEACCES}
_NOT_HERE = {errno.EADDRNOTAVAIL, WSAEADDRNOTAVAIL}
_NO_FAMILY = {errno.EAFNOSUPPORT, WSAEAFNOSUPPORT}
# Bind errors that mean "another socket holds it" (port.py then looks up the holder):
# on Windows a socket with SO_EXCLUSIVEADDRUSE makes later binds fail with WSAEACCES.
HELD = frozenset(_IN_USE | ({WSAEACCES} if _WINDOWS else set()))


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


def parse_numeric_host(
    value: object, what: str, family: int = 0, localhost_hint: str = ""
) -> tuple[int, str] | None:
    """(family, canonical text) of a numeric IP address, ``[...]`` allowed;
    None for an empty value.  ``ValueError`` names ``what`` and the problem
    (names are refused: which address they resolve to is not ours to guess)."""
    if not isinstance(value, str):
        raise ValueError(f"{what} must be an IP address, not {value!r}")
    text = value.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if not text:
        return None
    try:
        parsed_family, canonical, _ = _native.parse_address(text, 0, family)
    except ValueError as e:
        hint = f" ({localhost_hint})" if localhost_hint and text.lower() == "localhost" else ""
        raise ValueError(f"{what} {value!r}: {e}{hint}") from None
    return parsed_family, canonical


def format_address(host: str, port: int) -> str:
    """``127.0.0.1:80`` / ``[::1]:80``; an empty host is the IPv4 wildcard."""
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host or '0.0.0.0'}:{port}"


def describe(err: OSError, stage: str, address: str, holder: str | None = None) -> str:
    """One or two sentences: what failed, why, and what to do about it."""
    code = err.errno if err.errno is not None else 0
    os_text = err.strerror or _native.strerror(code)
    detail = getattr(err, "detail", stage)
    if stage == "bind" and code in _IN_USE:
        who = f" by {holder}" if holder else " by another socket"
        return (
            f"{address} is already in use{who} ({os_text}). Stop the program that holds it "
            f"or choose another port; twisted-patch never falls back to another port"
        )
    if stage == "bind" and code in _DENIED:
        if _WINDOWS:
            who = f" ({holder})" if holder else ""
            return (
                f"binding {address} was refused ({os_text}): another socket{who} holds the port "
                f"exclusively, or the port is in a range Windows reserves "
                f"(netsh interface ipv4 show excludedportrange protocol=tcp)."
            )
        return (
            f"binding {address} was refused ({os_text}): ports below 1024 need privileges, "
            f"or a security policy forbids this bind."
        )
    if stage == "bind" and code in _NOT_HERE:
        return f"{address} is not an address of this host ({os_text})."
    if stage == "socket" and code in _NO_FAMILY:
        return (
            f"this host has no support for the address family of {address} ({os_text}); "
            f"listen on an address of the other family."
        )
    if stage == "listen" and code in _IN_USE:
        who = f" ({holder})" if holder else ""
        return (
            f"another socket{who} started listening on {address} between our bind and "
            f"listen ({os_text}); this is what a port hijack attempt looks like. "
            f"Find and stop that program."
        )
    if stage == "option":
        return f"setting {detail} on the socket for {address} failed ({os_text})."
    return f"{detail} failed for {address} ({os_text})."


def cannot_listen(
    interface: str, port: int, err: OSError, stage: str, holder: str | None = None
) -> CannotListenError:
    """A CannotListenError carrying an :class:`ExclusiveListenError`."""
    address = format_address(interface, port)
    code = err.errno if err.errno is not None else 0
    message = describe(err, stage, address, holder)
    wrapped = ExclusiveListenError(code, message, stage, address, err.strerror or "")
    return CannotListenError(interface, port, wrapped)
