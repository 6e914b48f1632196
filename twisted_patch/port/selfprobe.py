"""The self-probe: after listen, try the binds an attacker of the same user would try.

The binds themselves are the core's (``ext/probe.c``, through
:func:`twisted_patch._sockets.probe_rows`); this module holds the policy:
the probe modes, the results, which of them make a listen fail, and what is
logged.

``probe=strict`` (default): any bind that succeeded and that nothing excuses
fails the listen.  ``probe=warn``: listen anyway, log it.  ``probe=off``: no probe.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from twisted.internet.error import CannotListenError
from twisted.logger import Logger

from twisted_patch._sockets import probe_rows
from twisted_patch.errors import ExclusiveListenError, format_address, listen_failure, os_text
from twisted_patch.port.guards import WILDCARDS

log = Logger()

PROBE_MODES = ("strict", "warn", "off")
DEFAULT_PROBE = "strict"

#: Probe targets that the guard protects (the other address family).
SIBLING_TARGETS = frozenset({"sibling", "sibling-other", "dualstack"})


def check_probe(value: object) -> str:
    """``strict``/``warn``/``off`` (None means the default, strict)."""
    if value is None:
        return DEFAULT_PROBE
    if isinstance(value, str) and value.strip().lower() in PROBE_MODES:
        return value.strip().lower()
    raise ValueError(f"probe must be one of {', '.join(PROBE_MODES)}, not {value!r}")


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
        text = os_text(self.code) if self.code else self.outcome
        return f"bind {self.address} with {opts} ({self.target}): {self.detail}: {text}"


def run_probe(skt: socket.socket) -> list[ProbeAttempt]:
    """The core's self-probe on a bound (normally listening) socket.

    ValueError if the socket is not bound to an IPv4/IPv6 address and port;
    the core's error if its address cannot be read.
    """
    return [ProbeAttempt(*row) for row in probe_rows(skt)]


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
        f"process of this user could make too: {lines}. The port was closed "
        f"(probe=warn listens anyway and logs this; see docs/guard.rst)."
    )
    wrapped = ExclusiveListenError(0, message, "probe", address, "")
    return listen_failure(interface, port, wrapped)


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
        if a.target == "specific" or (a.target == "sibling-other" and interface in WILDCARDS)
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
