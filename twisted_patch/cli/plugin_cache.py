"""``twisted-patch plugin-cache``: regenerate Twisted's plugin cache and show our plugins.

Twisted finds plugins by importing every module in every ``twisted/plugins``
directory on ``sys.path`` and remembers what it found in a ``dropin.cache``
file next to them.  After ``pip install`` that file is stale, so the first
plugin lookup (``twistd``, ``trial``, ``serverFromString``) re-imports the
plugin modules and tries to rewrite it.  When the directory is not writable
(site-packages owned by root, the program runs as a service user) the lookup
still works -- Twisted logs ``Unable to write to plugin cache ...: error
number 13`` and scans again next time.  Running this command as the owner of
site-packages (the user who ran ``pip install``) writes the cache once.  The
same, without twisted-patch::

    python -c "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))"
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

REGENERATE_COMMAND = (
    'python -c "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))"'
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--quiet", "-q", action="store_true", help="print nothing unless something is wrong"
    )


def _cache_state(directory: str) -> tuple[bool, float]:
    path = os.path.join(directory, "dropin.cache")
    try:
        return True, os.stat(path).st_mtime_ns / 1e9
    except OSError:
        return False, 0.0


def regenerate() -> dict[str, Any]:
    """Rebuild every ``dropin.cache``; what was written, what could not be, what we found."""
    from twisted.application.reactors import IReactorInstaller
    from twisted.internet.interfaces import IStreamServerEndpointStringParser
    from twisted.logger import ILogObserver, globalLogPublisher
    from twisted.plugin import IPlugin, getPlugins
    from zope.interface import implementer

    import twisted.plugins

    directories = [d for d in twisted.plugins.__path__ if os.path.isdir(d)]
    before = {d: _cache_state(d) for d in directories}
    failures: dict[str, str] = {}
    errors: list[str] = []

    @implementer(ILogObserver)
    def observe(event: dict[str, Any]) -> None:
        fmt = str(event.get("format") or event.get("log_format") or "")
        if "Unable to write to plugin cache" in fmt:
            path = str(event.get("path", "?"))
            code = event.get("errno")
            failures[os.path.dirname(path)] = (
                os.strerror(code) if isinstance(code, int) else "error"
            )
        elif event.get("isError") or event.get("log_failure") is not None:
            failure = event.get("log_failure") or event.get("failure")
            errors.append(str(getattr(failure, "value", failure) or event.get("why") or fmt))

    globalLogPublisher.addObserver(observe)
    try:
        all_plugins = list(getPlugins(IPlugin))
        reactors = list(getPlugins(IReactorInstaller))
        parsers = list(getPlugins(IStreamServerEndpointStringParser))
    finally:
        globalLogPublisher.removeObserver(observe)

    caches = []
    for d in directories:
        existed, mtime = before[d]
        exists, new_mtime = _cache_state(d)
        if d in failures:
            state = f"NOT written ({failures[d]})"
        elif exists and (not existed or new_mtime != mtime):
            state = "written"
        elif exists:
            state = "up to date"
        else:
            state = "no cache (nothing to cache)"
        caches.append({"directory": d, "state": state, "ok": d not in failures})

    ours_reactors = [
        r for r in reactors if getattr(r, "moduleName", "").startswith("twisted_patch")
    ]
    ours_parsers = [p for p in parsers if type(p).__module__.startswith("twisted_patch")]
    return {
        "caches": caches,
        "plugin_count": len(all_plugins),
        "reactors": ours_reactors,
        "parsers": ours_parsers,
        "errors": errors,
    }


def _available(module_name: str) -> str | None:
    """None if the reactor's module imports here, else why not."""
    import importlib

    try:
        importlib.import_module(module_name)
    except ImportError as e:
        return str(e)
    return None


def run(args: argparse.Namespace) -> int:
    result = regenerate()
    out = sys.stdout
    status = 0
    lines: list[str] = []
    for cache in result["caches"]:
        lines.append(f"{cache['directory']}/dropin.cache: {cache['state']}")
        if not cache["ok"]:
            status = 1
            lines.append(
                "  Twisted still finds the plugins, but scans this directory again on every "
                "lookup; run this command as the owner of the directory (the user who ran "
                "pip install), or: " + REGENERATE_COMMAND
            )
    lines.append(f"plugins found in all: {result['plugin_count']}")
    lines.append("twisted-patch plugins:")
    for r in sorted(result["reactors"], key=lambda r: str(r.shortName)):
        why = _available(r.moduleName)
        note = "" if why is None else f" [not available here: {why}]"
        lines.append(f"  reactor  {r.shortName:<15} {r.description}{note}")
    for p in sorted(result["parsers"], key=lambda p: str(p.prefix)):
        lines.append(f"  endpoint {p.prefix}:PORT[:interface=ADDRESS][:backlog=N]")
    if not result["reactors"] or not result["parsers"]:
        status = 1
        lines.append(
            "twisted-patch's plugins were NOT found: is twisted/plugins/twisted_patch_plugins.py "
            "installed next to Twisted's (pip show -f twisted-patch)?"
        )
    for err in result["errors"]:
        status = 1
        lines.append(f"error while loading a plugin module: {err}")
    if status or not args.quiet:
        out.write("\n".join(lines) + "\n")
    return status


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="twisted-patch plugin-cache", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
