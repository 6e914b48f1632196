"""``python -m twisted_patch.tahoe CMD ...``: Tahoe's client commands over verified connections.

Every ``tahoe`` command but ``run`` (``put``, ``get``, ``ls``, ``mkdir``,
``cp``, ``backup``, ``status`` ...) talks to the node's web gateway through
one function, ``allmydata.scripts.common_http.do_http``, which makes one
``http.client`` connection per request (``Connection: close``).  Here that
connection class is replaced by one that, after ``connect()`` and before the
first byte of the request, checks the connection itself
(:func:`twisted_patch.client.verify_connection`): its server end must be
held by the process named in the node directory's ``running.process``, and
that process must have the start time recorded there (a reused pid is not
the node).  Otherwise the connection is closed unused, nothing is sent, and
the command fails with a message naming the holder.

The node directory is Tahoe's: ``-d``/``--node-directory`` or the default
(``~/.tahoe``).  ``--node-url`` may point the commands elsewhere; the
connection must still belong to that node's process.  ``tahoe webopen`` is
refused (the browser's connection cannot be checked from here).

Layer: below ``twisted_patch.tahoe`` (which dispatches here and passes its
node-directory reader in); above ``client``.
"""

from __future__ import annotations

import http.client
import importlib
import os
import sys
import types
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from twisted_patch.client import (
    DEFAULT_TIMEOUT,
    ServerEnd,
    UnverifiedConnection,
    VerifiedHTTPConnection,
    identify,
)

#: Tahoe's global options that take a value (allmydata/scripts/runner.py, eliot options)
_VALUED = frozenset({"-d", "--node-directory", "--wormhole-server", "--wormhole-invite-appid",
                     "--eliot-destination"})

#: clock ticks: Linux records a start time in 1/100 s
START_TIME_SLACK = 0.011


class NodeLike(Protocol):
    """What ``twisted_patch.tahoe.read_node_dir`` returns (its ``NodeInfo``)."""

    @property
    def pid(self) -> int: ...

    @property
    def pidfile(self) -> str: ...


def command_of(args: Sequence[str]) -> str | None:
    """The tahoe subcommand in ``args`` (after Tahoe's global options), or None."""
    skip = False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg in _VALUED:
            skip = True
            continue
        if arg.startswith("-"):
            continue
        return arg
    return None


def node_directory(args: Sequence[str]) -> str:
    """The node directory Tahoe will use: the last ``-d``/``--node-directory``, else its default."""
    found: str | None = None
    items = list(args)
    i = 0
    while i < len(items):
        arg = items[i]
        if arg in _VALUED:
            if arg in ("-d", "--node-directory") and i + 1 < len(items):
                found = items[i + 1]
            i += 2
            continue
        if not arg.startswith("-"):
            break  # the command: what follows is its own
        if arg.startswith("--node-directory="):
            found = arg.split("=", 1)[1]
        elif arg.startswith("-d") and not arg.startswith("--"):
            found = arg[2:]
        i += 1
    if found is not None:
        return os.path.abspath(os.path.expanduser(found))
    common: Any = importlib.import_module("allmydata.scripts.common")
    return str(common.get_default_nodedir())


def recorded_start_time(pidfile: str) -> float | None:
    """The creation time in a Tahoe ``running.process`` (``"PID TIME"``), None for a
    ``twistd.pid`` (``"PID"``: older Tahoe records no time)."""
    try:
        with open(pidfile, encoding="utf-8") as f:
            fields = f.read(4096).split()
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read {pidfile}: {e}") from None
    if len(fields) < 2:
        return None
    try:
        value = float(fields[1])
    except ValueError:
        raise ValueError(f"{pidfile}: {fields[1]!r} is not a start time") from None
    if not value > 0:
        raise ValueError(f"{pidfile}: {fields[1]!r} is not a start time")
    return value


def process_start_time(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch, as Tahoe records it:
    psutil's ``create_time``), None if there is no such process.

    TODO: switch to ``_native.process_start_time`` once issue 13's branch (i13)
    is merged; psutil is what Tahoe itself uses to write running.process, and
    Tahoe depends on it, so it is always there when Tahoe is.
    """
    psutil: Any = importlib.import_module("psutil")
    try:
        return float(psutil.Process(pid).create_time())
    except psutil.NoSuchProcess:
        return None


def _holder_of(conn: http.client.HTTPConnection, timeout: float) -> str:
    try:
        end: ServerEnd = identify(conn.sock, timeout=timeout)
    except Exception as e:  # noqa: BLE001 -- the message must not fail
        return f"unknown ({e})"
    return end.holder()


def node_connection_class(nodedir: str, read_node: Callable[[str], NodeLike],
                          timeout: float = DEFAULT_TIMEOUT) -> type[http.client.HTTPConnection]:
    """An ``http.client.HTTPConnection`` class whose connections must belong to the node
    of ``nodedir`` (read anew, with ``read_node``, at every connection)."""

    class NodeHTTPConnection(VerifiedHTTPConnection):
        def __init__(self, host: str, port: int | None = None, **kwargs: Any) -> None:
            super().__init__(host, port, verify_timeout=timeout, **kwargs)

        def connect(self) -> None:
            try:
                node = read_node(nodedir)
                recorded = recorded_start_time(node.pidfile)
            except ValueError as e:
                raise UnverifiedConnection(
                    f"twisted-patch: refusing to send to {self.host}:{self.port}: cannot tell "
                    f"which process the node is ({e})", None, "the node") from None
            self.verify_pid = node.pid
            started = process_start_time(node.pid)
            if started is None or (recorded is not None
                                   and abs(started - recorded) > START_TIME_SLACK):
                # not the node: still connect (without sending) to name who answers there
                http.client.HTTPConnection.connect(self)
                holder = _holder_of(self, timeout)
                self.close()
                if started is None:
                    why = f"the node's process (pid {node.pid}, {node.pidfile}) is not running"
                else:
                    why = (f"pid {node.pid} started at {started:.2f}, not at {recorded:.2f} as "
                           f"{node.pidfile} records: it is not the node (a reused pid)")
                raise UnverifiedConnection(
                    f"twisted-patch: refusing to send to {self.host}:{self.port}: {why}; "
                    f"the connection is held by {holder}", None, f"pid {node.pid}")
            try:
                super().connect()
            except UnverifiedConnection as e:
                raise UnverifiedConnection(
                    f"twisted-patch: {e} (the node, from {node.pidfile})", e.server_end,
                    e.expected) from None

    return NodeHTTPConnection


class _RefusedHTTPS(http.client.HTTPSConnection):
    def connect(self) -> None:
        raise UnverifiedConnection(
            f"twisted-patch: refusing https://{self.host}:{self.port}: only http node URLs are "
            f"checked (a node's web gateway is http on loopback)", None, "the node")


def install(nodedir: str, read_node: Callable[[str], NodeLike],
            timeout: float = DEFAULT_TIMEOUT) -> None:
    """Make Tahoe's ``do_http`` use verified connections to the node of ``nodedir``."""
    common_http: Any = importlib.import_module("allmydata.scripts.common_http")
    verified = types.SimpleNamespace(
        HTTPConnection=node_connection_class(nodedir, read_node, timeout),
        HTTPSConnection=_RefusedHTTPS,
    )
    common_http.http_client = verified


def main(args: Sequence[str], read_node: Callable[[str], NodeLike]) -> int:
    """Run ``tahoe ARGS`` (a client command) with verified connections; the exit status."""
    args = list(args)
    command = command_of(args)
    if command == "webopen":
        print("twisted-patch: refusing 'tahoe webopen': a web browser's connection to the node "
              "cannot be verified from here; use 'tahoe ls'/'tahoe get', or open the URL "
              "yourself", file=sys.stderr)
        return 1
    install(node_directory(args), read_node)
    runner: Any = importlib.import_module("allmydata.scripts.runner")
    try:
        runner.run(argv=["tahoe", *args])
    except SystemExit as e:
        return exit_status(e)
    return 0


def exit_status(exc: SystemExit) -> int:
    """The exit status a ``SystemExit`` stands for, as Python's own exit gives it: None
    is 0, an int itself, anything else is printed to stderr and is 1."""
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1
