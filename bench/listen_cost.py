"""Listen cost: listen + stopListening cycles, plain Twisted vs xtcp vs a raw socket.

Every variant opens a listener on 127.0.0.1, port 0 (a fresh port each time,
so TIME_WAIT never interferes) and closes it again, ``cycles`` times; the
variants run in a rotating order within each repetition.  Twisted variants go
through the endpoint (``serverFromString(reactor, DESC).listen(factory)``,
which for ``tcp:`` is ``reactor.listenTCP``) and wait for ``stopListening``'s
Deferred by iterating the reactor, as a running program would.

The protections are measured one at a time where this build's ``xtcp``
endpoint has the keywords for them (``guard=``, ``probe=``; detected at run
time).  ExclusivePort's post-listen owner check has no keyword: to measure
the core without it, the benchmark replaces it by a no-op for the duration of
those cycles (``xtcp core only``), and measures it switched on in ``xtcp +
owner check``.  A variant this build cannot run is reported as "not
available in this build".
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

from benchlib import Figure, figure, unavailable, xtcp_keywords

SECTION = "listen"
TARGET_ADDED_MS = 1.0
HOST = "127.0.0.1"


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


def _wait(d: Any) -> Any:
    from twisted.python.failure import Failure

    box: list[Any] = []
    d.addBoth(box.append)
    reactor = _reactor()
    deadline = time.monotonic() + 10
    while not box:
        if time.monotonic() > deadline:
            raise TimeoutError("Deferred did not fire")
        reactor.iterate(0)
    if isinstance(box[0], Failure):
        box[0].raiseException()
    return box[0]


def raw_cycle() -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((HOST, 0))
    s.listen(50)
    s.close()


def core_cycle() -> None:
    from twisted_patch import _native

    handle = _native.listen_tcp(HOST, 0, 50, socket.AF_INET)
    _native.close(handle)


def endpoint_cycle(description: str, bypass_owner_check: bool = False) -> Callable[[], None]:
    """listen + stopListening through ``serverFromString(reactor, description)``.

    ``bypass_owner_check``: replace ExclusivePort's post-listen owner check
    (``twisted_patch.port.selfcheck.ensure_exclusive``) by a no-op during the cycle, to
    measure the core without it.  For measurement only; restored at once.
    """
    from twisted.internet import endpoints, protocol

    endpoint = endpoints.serverFromString(_reactor(), description)
    factory = protocol.Factory.forProtocol(protocol.Protocol)
    factory.noisy = False

    def cycle() -> None:
        if bypass_owner_check:
            import twisted_patch.port.selfcheck as port_module

            saved = port_module.ensure_exclusive  # type: ignore[attr-defined]
            port_module.ensure_exclusive = lambda *a, **k: None  # type: ignore[attr-defined]
            try:
                port = _wait(endpoint.listen(factory))
            finally:
                port_module.ensure_exclusive = saved  # type: ignore[attr-defined]
        else:
            port = _wait(endpoint.listen(factory))
        _wait(port.stopListening())

    return cycle


def has_owner_check() -> bool:
    import twisted_patch.port.selfcheck as port_module

    return callable(getattr(port_module, "ensure_exclusive", None))


def variants() -> tuple[dict[str, Callable[[], None] | str], str]:
    """name -> cycle function, or the reason it is not available."""
    kw = xtcp_keywords()
    owner_check = has_owner_check()
    base = f"xtcp:0:interface={HOST}"
    out: dict[str, Callable[[], None] | str] = {
        "raw socket/bind/listen/close": raw_cycle,
        "core only, no Twisted (_native.listen_tcp)": core_cycle,
        "plain Twisted (tcp:, listenTCP)": endpoint_cycle(f"tcp:0:interface={HOST}"),
    }
    off = ""
    if kw.get("guard"):
        off += ":guard=no"
    if kw.get("probe"):
        off += ":probe=off"
    out["xtcp core only"] = endpoint_cycle(base + off, bypass_owner_check=owner_check)
    if kw.get("guard"):
        probe_off = ":probe=off" if kw.get("probe") else ""
        out["xtcp + guard"] = endpoint_cycle(base + ":guard=serve" + probe_off, owner_check)
    else:
        out["xtcp + guard"] = "the xtcp endpoint has no guard= keyword in this build"
    if kw.get("probe"):
        guard_off = ":guard=no" if kw.get("guard") else ""
        out["xtcp + probe"] = endpoint_cycle(base + guard_off + ":probe=strict", owner_check)
    else:
        out["xtcp + probe"] = "the xtcp endpoint has no probe= keyword in this build"
    if owner_check:
        out["xtcp + owner check"] = endpoint_cycle(base + off)
    else:
        out["xtcp + owner check"] = "ExclusivePort has no post-listen owner check in this build"
    everything = base
    if kw.get("guard"):
        everything += ":guard=serve"
    if kw.get("probe"):
        everything += ":probe=strict"
    out["xtcp, all protections"] = endpoint_cycle(everything)
    present = [k for k in ("guard", "probe") if kw.get(k)]
    if owner_check:
        present.append("owner check")
    all_note = "all protections this build has: " + (", ".join(present) or "core only")
    return out, all_note


def run(cfg: dict[str, Any]) -> tuple[list[Figure], dict[str, Any]]:
    cycles, reps = cfg["listen_cycles"], cfg["listen_reps"]
    table, all_note = variants()
    runnable = {k: v for k, v in table.items() if callable(v)}
    per_cycle_us: dict[str, list[float]] = {k: [] for k in runnable}
    names = list(runnable)
    # Warm up (imports, first-use allocations) and calibrate: a variant that is
    # slow on this machine runs fewer cycles (at least 5), so that one
    # repetition of it takes about ``listen_budget`` seconds at most.
    counts: dict[str, int] = {}
    for name, fn in runnable.items():
        t0 = time.perf_counter()
        for _ in range(3):
            fn()
        each = (time.perf_counter() - t0) / 3
        counts[name] = max(5, min(cycles, int(cfg.get("listen_budget", 0.3) / max(each, 1e-9))))
    for rep in range(reps):
        shift = rep % len(names)
        for name in names[shift:] + names[:shift]:
            fn = runnable[name]
            n = counts[name]
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            per_cycle_us[name].append((time.perf_counter() - t0) / n * 1e6)
    figures: list[Figure] = []
    plain = per_cycle_us["plain Twisted (tcp:, listenTCP)"]
    for name, value in table.items():
        if not callable(value):
            figures.append(unavailable(SECTION, f"{name}: per listen", "us", "", value))
            continue
        figures.append(figure(SECTION, f"{name}: per listen", "us", per_cycle_us[name]))
    for name, value in table.items():
        if not callable(value) or name.startswith(("plain", "raw", "core only, no")):
            continue
        ratios = [x / p for x, p in zip(per_cycle_us[name], plain)]
        figures.append(figure(SECTION, f"{name} / plain Twisted", "x", ratios))
    added_ms = [(x - p) / 1000 for x, p in zip(per_cycle_us["xtcp, all protections"], plain)]
    figures.append(figure(
        SECTION, "added per listen by all protections (xtcp all - plain)", "ms", added_ms,
        f"< {TARGET_ADDED_MS} ms", lambda v: v < TARGET_ADDED_MS, all_note))
    ratios = [x / p for x, p in zip(plain, per_cycle_us["raw socket/bind/listen/close"])]
    figures.append(figure(SECTION, "plain Twisted / raw socket", "x", ratios))
    raw = {"cycles_per_repetition": counts, "repetitions": reps, "per_cycle_us": per_cycle_us,
           "unavailable": {k: v for k, v in table.items() if not callable(v)},
           "all_protections": all_note}
    return figures, raw
