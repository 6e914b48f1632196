"""Every parser of what people give us: hosts, interfaces, ports, backlogs, seconds, targets.

Each function returns a canonical value or raises ``ValueError`` whose text
names the field, the value given and what is expected.  Numbers are plain
ASCII decimal digits only (``int()`` and ``float()`` would also take ``١`` or
``1_0``), and their length is checked before they are converted (Python's
own "Exceeds the limit (4300 digits)" text is for programmers).

Layer: above ``_native`` (which parses IP addresses) and ``errors``.
"""

from __future__ import annotations

import math
import re
import socket
from urllib.parse import urlsplit

from twisted_patch import _native

_DECIMAL = re.compile(r"[0-9]+\Z")
_SECONDS = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)\Z")
_V4_MAPPED = re.compile(r"::ffff:", re.IGNORECASE)

LOCALHOST_HINT = "use 127.0.0.1 or ::1; the other family is guarded for you"


def decimal(value: object, what: str, low: int, high: int, expect: str) -> int:
    """A whole number ``low..high`` from an int or a string of ASCII digits.

    ``expect`` says what to give ("a number from 0 to 65535").
    """
    if isinstance(value, bool):
        raise ValueError(f"{what} must be {expect}, not {value!r}")
    if isinstance(value, str):
        text = value.strip()
        if not text:
            raise ValueError(f"{what} is empty: give {expect}")
        if not _DECIMAL.match(text):
            raise ValueError(f"{what} must be {expect}, not {_short(value)}")
        if len(text.lstrip("0")) > len(str(high)):
            raise ValueError(f"{what} {_short(value)} is out of range: give {expect}")
        number = int(text)
    elif isinstance(value, int):
        number = value
    else:
        raise ValueError(f"{what} must be {expect}, not {_short(value)}")
    if not low <= number <= high:
        raise ValueError(f"{what} {_short(number)} is out of range: give {expect}")
    return number


def _short(value: object) -> str:
    """``repr(value)``, cut to a readable length (a 5,000-digit port is not printed whole)."""
    text = repr(value)
    if len(text) <= 40:
        return text
    length = len(value) if isinstance(value, str) else len(str(value))
    return f"{text[:20]}...{text[-8:]} ({length} characters)"


def check_port(value: object, what: str = "port", low: int = 0) -> int:
    """A TCP port number ``low``..65535 (0 lets the OS choose, where allowed)."""
    return decimal(value, what, low, 65535, f"a number from {low} to 65535")


MAX_BACKLOG = 2**31 - 1


def check_backlog(value: object) -> int:
    """A listen backlog: a whole number from 0 up."""
    return decimal(value, "backlog", 0, MAX_BACKLOG, "a whole number, 0 or more")


MAX_PID = 2**32 - 1


def check_pid(value: object, what: str = "pid") -> int:
    """A process id: 1 to 2**32-1 (Windows' widest), ASCII digits only."""
    return decimal(value, what, 1, MAX_PID, "a process id (a whole number from 1)")


def check_seconds(value: object, what: str, high: float) -> float:
    """A number of seconds ``0..high``: an int, a float or ASCII ``12`` / ``0.5``."""
    expect = f"a number of seconds from 0 to {high:g}"
    if isinstance(value, bool):
        raise ValueError(f"{what} must be {expect}, not {value!r}")
    if isinstance(value, str):
        text = value.strip()
        if not _SECONDS.match(text) or len(text) > 32:
            raise ValueError(f"{what} must be {expect}, not {_short(value)}")
        number = float(text)
    elif isinstance(value, (int, float)):
        number = float(value)
    else:
        raise ValueError(f"{what} must be {expect}, not {_short(value)}")
    if not math.isfinite(number) or not 0 <= number <= high:
        raise ValueError(f"{what} {_short(value)} is out of range: give {expect}")
    return number


def parse_numeric_host(
    value: object, what: str, family: int = 0, localhost_hint: str = ""
) -> tuple[int, str] | None:
    """(family, canonical text) of a numeric IP address, ``[...]`` allowed;
    None for an empty value.  ``ValueError`` names ``what`` and the problem
    (names are refused: which address they resolve to is not ours to guess)."""
    if not isinstance(value, str):
        raise ValueError(f"{what} must be an IP address given as text, not {_short(value)}")
    text = value.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if not text:
        return None
    try:
        parsed_family, canonical, _ = _native.parse_address(text, 0, family)
    except ValueError as e:
        hint = f" ({localhost_hint})" if localhost_hint and text.lower() == "localhost" else ""
        raise ValueError(f"{what} {_short(value)}: {e}{hint}") from None
    return parsed_family, canonical


def check_interface(value: object, family: int = socket.AF_UNSPEC) -> tuple[int, str]:
    """(family, canonical address) of a listening interface; '' is the wildcard.

    Host names are refused on purpose: which address a name resolves to (and
    in which family) is not something a hardened listener should guess.  An
    IPv4-mapped IPv6 address cannot be listened on (IPV6_V6ONLY is set): the
    IPv4 address is the one to give.
    """
    parsed = parse_numeric_host(value, "interface", family, localhost_hint=LOCALHOST_HINT)
    if parsed is None:
        if family == socket.AF_INET6:
            return socket.AF_INET6, "::"
        return socket.AF_INET, "0.0.0.0"
    parsed_family, host = parsed
    if parsed_family == socket.AF_INET6 and _V4_MAPPED.match(host) and "." in host:
        raise ValueError(
            f"interface {_short(value)} is an IPv4-mapped IPv6 address, which an IPv6-only "
            f"listener cannot use: give the IPv4 address {host[7:]} instead"
        )
    return parsed


def check_host(host: object) -> tuple[int, str]:
    """(family, canonical text) of the numeric address a client connects to."""
    parsed = parse_numeric_host(
        host, "host", localhost_hint="give 127.0.0.1 or ::1: a name may resolve to either family"
    )
    if parsed is None:
        raise ValueError("host is empty: give an IP address such as 127.0.0.1 or ::1")
    return parsed


# --- addresses people type on the command line -----------------------------------

_BRACKETED = re.compile(r"\[([^\]]+)\]:([^:]*)\Z")


def _target_port(text: str, original: str) -> int:
    try:
        return check_port(text, "port", low=1)
    except ValueError as e:
        raise ValueError(f"{_short(original)}: {e}") from None


def parse_target(text: object) -> tuple[str | None, int]:
    """``(host, port)`` from ``127.0.0.1:3456``, ``[::1]:3456``, a URL such as
    ``http://127.0.0.1:3456/``, or ``PORT`` / ``:PORT`` (host None: every
    listener on the port).  Hosts must be numeric; ValueError says what is wrong.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError("no address given: write HOST:PORT, [IPv6]:PORT or a URL")
    original = text
    text = text.strip()
    if "://" in text:
        parts = urlsplit(text)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"{original!r}: only http:// and https:// URLs are understood")
        try:
            port: int | None = parts.port
        except ValueError:
            raise ValueError(f"{original!r}: the URL's port is not a number 1-65535") from None
        if port is None:
            port = 443 if parts.scheme == "https" else 80
        if not parts.hostname:
            raise ValueError(f"{original!r}: the URL has no host")
        _, host = check_host(parts.hostname)
        return host, _target_port(str(port), original)
    if text.lstrip(":").isascii() and text.lstrip(":").isdigit() and text.count(":") <= 1:
        return None, _target_port(text.lstrip(":"), original)
    m = _BRACKETED.match(text)
    if m:
        family, host = check_host(m.group(1))
        if family != socket.AF_INET6:
            raise ValueError(f"{original!r}: brackets are for IPv6 addresses")
        return host, _target_port(m.group(2), original)
    if text.count(":") == 1:
        host_text, port_text = text.split(":")
        _, host = check_host(host_text)
        return host, _target_port(port_text, original)
    if text.count(":") > 1:
        raise ValueError(f"{original!r}: put an IPv6 address in brackets, as in [::1]:3456")
    raise ValueError(f"{original!r}: no port given; write HOST:PORT")
