"""The ``twisted-patch`` command (also ``python -m twisted_patch``).

Each subcommand lives in its own module and registers itself in
:data:`SUBCOMMANDS`: ``(name, module, help)``.  The module provides
``add_arguments(parser)`` and ``run(args) -> int`` (the exit status) and is
imported only when its subcommand runs.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

SUBCOMMANDS: list[tuple[str, str, str]] = [
    (
        "probe",
        "twisted_patch._cli_probe",
        "attack a plain Twisted listener and an xtcp listener from another process; "
        "print the table",
    ),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="twisted-patch",
        description="Exclusive TCP listening ports for Twisted: check, attack and inspect them.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name, help_text in SUBCOMMANDS:
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    result: int = args._module.run(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
