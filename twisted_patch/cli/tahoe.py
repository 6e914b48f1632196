"""``twisted-patch tahoe ARGS...``: ``tahoe ARGS...`` on the exclusive reactor.

The same as ``python -m twisted_patch.tahoe ARGS...`` (see
:mod:`twisted_patch.tahoe`): ``twisted-patch tahoe run NODEDIR`` runs the node
with every listener exclusive, from an unchanged tahoe.cfg.
"""

from __future__ import annotations

import argparse

from twisted_patch import tahoe, tahoe_cli


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "tahoe_args",
        nargs=argparse.REMAINDER,
        metavar="ARGS",
        help="the arguments of tahoe, e.g. run NODEDIR",
    )


def run(args: argparse.Namespace) -> int:
    words: list[str] = list(args.tahoe_args)
    if not words:
        print("twisted-patch tahoe: give tahoe's arguments, e.g. twisted-patch tahoe run NODEDIR")
        return 2
    try:
        tahoe.main(words)
    except SystemExit as e:
        return tahoe_cli.exit_status(e)
    return 0
