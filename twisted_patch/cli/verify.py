"""``twisted-patch verify HOST:PORT [--uid U | --pid P | --user NAME | --node NODEDIR]``.

Exit status: 0 every listener that may receive connections to HOST:PORT is
owned as expected; 1 someone else listens there too, or (--node) the process
holding the socket is not the node's (printed); 2 error (bad arguments,
nothing listening, lookup failed).
"""

from __future__ import annotations

import argparse
import sys

from twisted_patch._address import check_pid, decimal, parse_target
from twisted_patch.owner import OwnerLookupError, VerifyResult, verify, verify_process
from twisted_patch.tahoe import read_node_dir


def _pid(text: str) -> int:
    try:
        return check_pid(text, "--pid")
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _uid(text: str) -> int:
    try:
        return decimal(text, "--uid", 0, 2**32 - 1, "a user id (a whole number, 0 or more)")
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "target",
        metavar="HOST:PORT",
        nargs="?",
        help="127.0.0.1:3456, [::1]:3456 or http://127.0.0.1:3456/ (not with --node)",
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--uid", type=_uid, help="expected owner uid (default: our own uid)")
    group.add_argument("--pid", type=_pid, help="expected process id")
    group.add_argument("--user", help="expected user name (Windows: DOMAIN\\name or name)")
    group.add_argument(
        "--node",
        metavar="NODEDIR",
        help="a Tahoe-LAFS node directory: address from node.url, expected pid from "
        "running.process (or twistd.pid)",
    )
    parser.add_argument(
        "--quiet", "-q", action="store_true", help="print nothing but errors; exit status only"
    )


def run(args: argparse.Namespace) -> int:
    def say(text: str, error: bool = False) -> None:
        if not args.quiet or error:
            print(text, file=sys.stderr if error else sys.stdout)

    try:
        result: VerifyResult
        if args.node is not None:
            if args.target is not None:
                raise ValueError("give either HOST:PORT or --node, not both")
            node = read_node_dir(args.node)
            owner = "" if node.owner_uid is None else f", uid {node.owner_uid} (the directory's)"
            say(f"node {args.node}: {node.url} expected pid {node.pid} "
                f"(from {node.pidfile}){owner}")
            if node.started is None:
                say(f"note: {node.pidfile} records no process start time: a reused pid "
                    f"cannot be told from the node")
            result = verify_process(
                node.host, node.port, node.pid, started=node.started, uid=node.owner_uid
            )
        elif args.target is None:
            raise ValueError("give HOST:PORT or --node NODEDIR")
        else:
            host, port = parse_target(args.target)
            result = verify(host, port, uid=args.uid, pid=args.pid, user=args.user)
    except ValueError as e:
        say(f"twisted-patch verify: {e}", error=True)
        return 2
    except OwnerLookupError as e:
        say(f"twisted-patch verify: {e.strerror}", error=True)
        return 2
    if not result.listening:
        say(f"twisted-patch verify: {result.explain()}", error=True)
        return 2
    say(result.explain())
    return 0 if result.owned else 1
