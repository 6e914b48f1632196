"""``twisted-patch probe``, the attack table: plain Twisted and xtcp listeners attacked.

Starts, on free loopback ports, a plain Twisted ``tcp:`` listener and an
``xtcp:`` listener (on 127.0.0.1, and on 0.0.0.0 for the specific-over-wildcard
attacks), runs every attack a local process can try on this OS from a separate
process against both, and prints one row per attack.  Exit status 0 when
twisted-patch refused every attack, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from typing import Any

from twisted.internet.error import CannotListenError
from twisted.internet.protocol import Protocol, ServerFactory

from twisted_patch.cli.attacks import (
    Attack,
    Outcome,
    can_switch_uid,
    preclaim_listener,
    run_attack,
    standard_attacks,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the results as JSON")


def _short(outcome: Outcome) -> str:
    if outcome.result == "hijacked":
        return "HIJACKED" + (" (got the client)" if outcome.detail.get("accepted") else "")
    if outcome.result == "refused":
        err = str(outcome.detail.get("error") or "")
        return f"refused ({err.split(':')[0]})" if err else "refused"
    return outcome.text


def _preclaim_row(listen: Any) -> Outcome:
    attacker, port = preclaim_listener("127.0.0.1")
    try:
        try:
            p = listen(port)
        except CannotListenError as e:
            return Outcome("refused", f"server refused to start: {e}",
                           {"error": "CannotListenError", "message": str(e)})
        p.stopListening()
        return Outcome("hijacked", "HIJACKED: the server started on a port another process holds")
    finally:
        attacker.close()


def _verify_row() -> dict[str, Any]:
    """A squatter holds the server's port while the server is down; a client checks first."""
    import os

    from twisted_patch.owner import verify

    row: dict[str, Any] = {
        "key": "verify-impostor",
        "attack": "impostor on the port while the server is down (client checks first)",
    }
    attacker, port = preclaim_listener("127.0.0.1")
    try:
        result = verify("127.0.0.1", port, pid=os.getpid())
    finally:
        attacker.close()
    row["plain"] = {"result": "hijacked", "short": "not detected (no owner check)",
                    "text": "Twisted has no way for a client to ask who owns a port"}
    if result:
        row["xtcp"] = {"result": "hijacked", "short": "NOT detected", "text": result.explain()}
    else:
        holder = result.foreign[0].holder() if result.foreign else "someone else"
        row["xtcp"] = {"result": "refused", "short": "caught by verify (exit 1)",
                       "text": f"twisted-patch verify: {holder} holds it, not the server"}
    return row


def collect() -> list[dict[str, Any]]:
    from twisted.internet import reactor

    from twisted_patch.endpoint import listen_exclusive

    factory = ServerFactory()
    factory.protocol = Protocol
    servers: dict[tuple[str, str], Any] = {}
    rows: list[dict[str, Any]] = []
    try:
        for kind, host in (("loopback", "127.0.0.1"), ("wildcard", "0.0.0.0")):
            servers[("plain", kind)] = reactor.listenTCP(0, factory, interface=host)
            servers[("xtcp", kind)] = listen_exclusive(0, factory, interface=host, reactor=reactor)
        attacks: list[Attack] = standard_attacks()
        for attack in attacks:
            row: dict[str, Any] = {"key": attack.key, "attack": attack.title}
            for column in ("plain", "xtcp"):
                server = servers[(column, attack.server)]
                outcome = run_attack(attack, server.getHost().port)
                row[column] = {"result": outcome.result, "text": outcome.text,
                               "short": _short(outcome)}
            rows.append(row)
    finally:
        for server in servers.values():
            server.stopListening()

    row = {"key": "preclaim", "attack": "pre-claim 127.0.0.1:P while the server is down"}
    plain = _preclaim_row(lambda port: reactor.listenTCP(
        port, factory, interface="127.0.0.1"))
    ours = _preclaim_row(lambda port: listen_exclusive(port, factory, interface="127.0.0.1",
                                                       reactor=reactor))
    for column, outcome in (("plain", plain), ("xtcp", ours)):
        refused = outcome.result == "refused"
        short = "server fails (CannotListenError)" if refused else _short(outcome)
        row[column] = {"result": outcome.result, "text": outcome.text, "short": short}
    rows.append(row)
    rows.append(_verify_row())
    return rows


def render(rows: list[dict[str, Any]]) -> str:
    headers = ("attack by a local process", "plain Twisted (tcp:)", "twisted-patch (xtcp:)")
    table = [(r["attack"], r["plain"]["short"], r["xtcp"]["short"]) for r in rows]
    widths = [max(len(h), *(len(t[i]) for t in table)) for i, h in enumerate(headers)]
    line = "  ".join("-" * w for w in widths)
    out = [
        f"twisted-patch probe on {platform.system()} {platform.release()} "
        f"(Python {platform.python_version()})",
        "",
        "  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip(),
        line,
    ]
    out += ["  ".join(c.ljust(w) for c, w in zip(t, widths)).rstrip() for t in table]
    out.append(line)
    ours_hijacked = [r["attack"] for r in rows if r["xtcp"]["result"] == "hijacked"]
    plain_hijacked = [r["attack"] for r in rows if r["plain"]["result"] == "hijacked"]
    out.append(f"plain Twisted: {len(plain_hijacked)} of {len(rows)} attacks succeeded; "
               f"twisted-patch: {len(ours_hijacked)} of {len(rows)}.")
    reason = can_switch_uid()
    if reason:
        out.append(f"attacks as another user were not run: {reason}.")
    for key, what in (("preclaim", "pre-claimed port, twisted-patch says"),
                      ("verify-impostor", "impostor, the client-side check says")):
        found = next((r for r in rows if r["key"] == key), None)
        if found is not None:
            out.append(f"{what}: {found['xtcp']['text']}")
    if ours_hijacked:
        out.append("NOT PROTECTED against: " + "; ".join(ours_hijacked))
    return "\n".join(out)


def run(args: argparse.Namespace) -> int:
    rows = collect()
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(render(rows))
    return 1 if any(r["xtcp"]["result"] == "hijacked" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(run(argparse.Namespace(json=False)))
