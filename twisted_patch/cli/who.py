"""``twisted-patch who HOST:PORT [--json]``: who listens on a port.

Exit status: 0 listeners found (printed), 1 nothing listening, 2 error.
"""

from __future__ import annotations

import argparse
import json
import sys

from twisted_patch._address import parse_target
from twisted_patch.errors import format_address, format_host
from twisted_patch.owner import Listener, OwnerLookupError, who


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "target",
        metavar="HOST:PORT",
        help="127.0.0.1:3456, [::1]:3456, http://127.0.0.1:3456/, or PORT for every "
        "listener on the port",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of a table")


def _cell(value: object) -> str:
    return "?" if value is None or value == "" else str(value)


def format_table(found: list[Listener]) -> str:
    header = ("ADDRESS", "PORT", "UID", "USER", "PIDS", "NAMES")
    rows = [header]
    for item in found:
        pids = ",".join(str(p) for p in item.pids) or "?"
        names = ",".join(_cell(n) for n in item.names) or "?"
        if item.pids_truncated:
            pids += ",..."
            names += ",..."
        rows.append((format_host(item.host), str(item.port), _cell(item.uid),
                     _cell(item.user), pids, names))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows
    )


def run(args: argparse.Namespace) -> int:
    try:
        host, port = parse_target(args.target)
        found = who(host, port)
    except ValueError as e:
        print(f"twisted-patch who: {e}", file=sys.stderr)
        return 2
    except OwnerLookupError as e:
        print(f"twisted-patch who: {e.strerror}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps([item.to_dict() for item in found], indent=2))
    elif found:
        print(format_table(found))
    else:
        where = format_address(host, port) if host else f"port {port}"
        print(f"nothing is listening on {where}", file=sys.stderr)
    return 0 if found else 1
