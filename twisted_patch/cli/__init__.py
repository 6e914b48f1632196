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
        "twisted_patch.cli.attack_table",
        "attack a plain Twisted listener and an xtcp listener from another process; "
        "print the table",
    ),
    ("who", "twisted_patch.cli.who", "who listens on HOST:PORT: address, uid, user, pids, names"),
    (
        "verify",
        "twisted_patch.cli.verify",
        "exit 0 iff HOST:PORT is owned by the expected uid/pid",
    ),
    ("plugin-cache", "twisted_patch.cli.plugin_cache", "rewrite Twisted's plugin cache"),
]


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; with ``command``, only that subcommand's module is imported."""
    parser = argparse.ArgumentParser(
        prog="twisted-patch",
        description="Exclusive TCP listening ports for Twisted: check, attack and inspect them.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name, help_text in SUBCOMMANDS:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module_name=module_name)
        if command is None or command == name:
            importlib.import_module(module_name).add_arguments(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    names = {name for name, _, _ in SUBCOMMANDS}
    parser = build_parser(next((w for w in words if w in names), None))
    args = parser.parse_args(words)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    result: int = importlib.import_module(args._module_name).run(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
