"""The address-family guard and the self-probe: policy, results, messages.

The sockets themselves come from the C core (``_native.guard_open``,
``_native.listen_tcp``, ``_native.probe``); :class:`twisted_patch.port.ExclusivePort`
drives them.  This module holds what is pure policy:

- which address is the *sibling* of which (127.0.0.1 <-> ::1, 0.0.0.0 <-> ::),
- the guard modes and the default per address,
- the probe modes, the probe's results, and which of them make a listen fail.

Guard modes (endpoint keyword ``guard=``, constructor argument ``guard``):

``serve``
    the sibling is a second exclusive listening socket serving the same
    factory, so ``localhost`` works on both families.  Default for
    127.0.0.1 and ::1.
``refuse``
    the sibling is a bound, non-listening socket without SO_REUSEADDR or
    SO_REUSEPORT (SO_EXCLUSIVEADDRUSE on Windows): connections to it are
    refused and nobody can bind it.  Default for 0.0.0.0 and ``::`` (a server
    that asked for one family's wildcard does not become reachable from the
    network on the other one).
``no``
    no guard.  Other addresses have no sibling and always get ``no``.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from twisted.internet.error import CannotListenError
from twisted.logger import Logger

from twisted_patch import _native
from twisted_patch.errors import ExclusiveListenError, format_address

log = Logger()

GUARD_MODES = ("serve", "refuse", "no")
PROBE_MODES = ("strict", "warn", "off")
DEFAULT_PROBE = "strict"

#: With port 0 the sibling must get the number the OS chose for the first
#: socket; if that number is taken in the sibling family, the listen is
#: retried with a fresh OS-chosen port, at most this many times in all.
PORT_ZERO_ATTEMPTS = 8

#: Probe targets that the guard protects (the other address family).
SIBLING_TARGETS = frozenset({"sibling", "sibling-other", "dualstack"})

_SIBLINGS: dict[tuple[int, str], tuple[int, str]] = {
    (socket.AF_INET, "127.0.0.1"): (socket.AF_INET6, "::1"),
    (socket.AF_INET6, "::1"): (socket.AF_INET, "127.0.0.1"),
    (socket.AF_INET, "0.0.0.0"): (socket.AF_INET6, "::"),
    (socket.AF_INET6, "::"): (socket.AF_INET, "0.0.0.0"),
}
_WILDCARDS = frozenset({"0.0.0.0", "::"})


def check_guard(value: object) -> str | None:
    """``serve``/``refuse``/``no``, or None for "the default for this address"."""
    if value is None:
        return None
    if isinstance(value, str) and value.strip().lower() in GUARD_MODES:
        return value.strip().lower()
    raise ValueError(f"guard must be one of {', '.join(GUARD_MODES)}, not {value!r}")


def check_probe(value: object) -> str:
    """``strict``/``warn``/``off`` (None means the default, strict)."""
    if value is None:
        return DEFAULT_PROBE
    if isinstance(value, str) and value.strip().lower() in PROBE_MODES:
        return value.strip().lower()
    raise ValueError(f"probe must be one of {', '.join(PROBE_MODES)}, not {value!r}")


def normalise(interface: str) -> tuple[int, str]:
    """(family, canonical numeric host) of an interface ('' is 0.0.0.0); ValueError if bad."""
    text = interface.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    family, host, _ = _native.parse_address(text or None, 0)
    return family, host


def sibling_of(family: int, host: str) -> tuple[int, str] | None:
    """The other family's counterpart of 127.0.0.1, ::1, 0.0.0.0 and ::; else None."""
    return _SIBLINGS.get((family, host))


def default_guard(family: int, host: str) -> str:
    """serve for loopback, refuse for the wildcards, no for every other address."""
    if sibling_of(family, host) is None:
        return "no"
    return "refuse" if host in _WILDCARDS else "serve"


def resolve_guard(requested: str | None, family: int, host: str) -> str:
    """The guard mode to use; ValueError if serve/refuse is asked where no sibling exists."""
    if requested is None:
        return default_guard(family, host)
    if requested != "no" and sibling_of(family, host) is None:
        raise ValueError(
            f"guard={requested} needs an address with a sibling in the other family "
            f"(127.0.0.1, ::1, 0.0.0.0 or ::), not {host}; use guard=no"
        )
    return requested


def lookup_holder(host: str, port: int, family: int = socket.AF_UNSPEC) -> str | None:
    """Who holds host:port, as text for an error message, or None if unknown.

    The single call site of the owner lookup for the guard's "sibling already
    taken" error (:func:`twisted_patch.owner.describe_holder`, which never
    raises).
    """
    from twisted_patch.owner import describe_holder

    return describe_holder(host, port, family)


# --- the self-probe ---------------------------------------------------------


@dataclass(frozen=True)
class ProbeAttempt:
    """One bind the self-probe tried, and what the OS said.

    ``outcome`` is ``refused`` (protected), ``bound`` (an attacker could do
    this), ``unavailable`` (family or address absent here) or ``error``.
    """

    target: str
    options: str
    outcome: str
    code: int
    detail: str
    address: str
    unavoidable: bool

    @property
    def hijackable(self) -> bool:
        return self.outcome == "bound"

    def describe(self) -> str:
        opts = "no option" if self.options == "none" else self.options
        if self.outcome == "bound":
            return f"bind {self.address} with {opts} ({self.target}) succeeded"
        if self.outcome == "refused":
            return f"bind {self.address} with {opts} ({self.target}) was refused"
        text = _native.strerror(self.code) if self.code else self.outcome
        return f"bind {self.address} with {opts} ({self.target}): {self.detail}: {text}"


def run_probe(handle: int) -> list[ProbeAttempt]:
    """The core's self-probe on any bound (normally listening) socket handle.

    ValueError if the socket is not bound to an IPv4/IPv6 address and port;
    ``_native.BindError`` if its address cannot be read.
    """
    try:
        rows = _native.probe(handle)
    except _native.BindError as e:
        if e.detail != "getsockname":
            raise ValueError(f"cannot probe socket {handle}: {e.detail}") from None
        raise
    return [ProbeAttempt(*row) for row in rows]


@dataclass(frozen=True)
class ProbeVerdict:
    fatal: list[ProbeAttempt]  # succeeded and nothing excuses it
    unavoidable: list[ProbeAttempt]  # succeeded, but this OS allows it whatever we do
    unguarded: list[ProbeAttempt]  # succeeded on the other family, and guard=no was asked
    errors: list[ProbeAttempt]  # the probe could not try (not a verdict)


def judge(attempts: list[ProbeAttempt], guard_mode: str) -> ProbeVerdict:
    fatal: list[ProbeAttempt] = []
    unavoidable: list[ProbeAttempt] = []
    unguarded: list[ProbeAttempt] = []
    for a in attempts:
        if not a.hijackable:
            continue
        if a.unavoidable:
            unavoidable.append(a)
        elif guard_mode == "no" and a.target in SIBLING_TARGETS:
            unguarded.append(a)
        else:
            fatal.append(a)
    errors = [a for a in attempts if a.outcome == "error"]
    return ProbeVerdict(fatal, unavoidable, unguarded, errors)


def hijackable_error(interface: str, port: int, fatal: list[ProbeAttempt]) -> CannotListenError:
    """The CannotListenError of probe=strict: lists every bind that succeeded."""
    address = format_address(interface, port)
    lines = "; ".join(a.describe() for a in fatal)
    message = (
        f"{address} is hijackable: the self-probe made {len(fatal)} bind(s) that another "
        f"process of this user could make too: {lines}. The port was closed. "
        f"(probe=warn listens anyway and logs this; see docs/guard.rst)"
    )
    wrapped = ExclusiveListenError(0, message, "probe", address, "")
    return CannotListenError(interface, port, wrapped)


def report(
    verdict: ProbeVerdict, mode: str, interface: str, port: int, guard_mode: str
) -> None:
    """Log what the probe found that does not (or, with warn, must not) stop the listen."""
    address = format_address(interface, port)
    if mode == "warn" and verdict.fatal:
        log.warn(
            "twisted-patch: {address} is hijackable (probe=warn): {attacks}",
            address=address,
            attacks=[a.describe() for a in verdict.fatal],
            probe=mode,
        )
    # A specific address over our wildcard takes that address's traffic from
    # us; a wildcard over our specific address only gets other addresses' traffic.
    shadowing = [
        a
        for a in verdict.unavoidable
        if a.target == "specific" or (a.target == "sibling-other" and interface in _WILDCARDS)
    ]
    beside = [a for a in verdict.unavoidable if a not in shadowing]
    if shadowing:
        log.warn(
            "twisted-patch: on this OS another process of the same user can bind a specific "
            "address inside {address} whatever options we set: {attacks}. Remedy: listen on "
            "the specific address clients use (e.g. 127.0.0.1) instead of a wildcard.",
            address=address,
            attacks=[a.describe() for a in shadowing],
            probe=mode,
        )
    if beside:
        log.info(
            "twisted-patch: on this OS another process of the same user can bind a wildcard "
            "over {address}: {attacks}; it receives only traffic for other addresses.",
            address=address,
            attacks=[a.describe() for a in beside],
            probe=mode,
        )
    if verdict.unguarded:
        log.warn(
            "twisted-patch: guard={guard}: the other address family of {address} is open to "
            "anyone: {attacks}",
            address=address,
            guard=guard_mode,
            attacks=[a.describe() for a in verdict.unguarded],
            probe=mode,
        )
    if verdict.errors:
        log.info(
            "twisted-patch: the self-probe of {address} could not try: {attacks}",
            address=address,
            attacks=[a.describe() for a in verdict.errors],
            probe=mode,
        )
