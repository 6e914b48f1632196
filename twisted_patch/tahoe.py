"""Tahoe-LAFS: node directories, and ``python -m twisted_patch.tahoe run NODEDIR``.

:func:`read_node_dir` reads where a node says it listens (``node.url``) and
which process it is (``running.process``), for ``twisted-patch verify --node``.

``python -m twisted_patch.tahoe run NODEDIR`` (also ``twisted-patch tahoe run
NODEDIR``) is ``tahoe`` -- same arguments, same process, same pid file --
with two changes made before Tahoe imports anything of Twisted's reactor:

1. the ``exclusive`` reactor is installed, through Twisted's reactor plugin
   (``twisted.application.reactors.installReactor("exclusive")``, what
   ``twistd --reactor=exclusive`` does; it runs
   :func:`twisted_patch.reactor.install`).  Every ``listenTCP`` of the node
   is then exclusive, so plain ``tcp:`` strings in an *unchanged* tahoe.cfg
   (``web.port``, ``tub.port``, ``[sftpd]port``) get the core's socket, the
   sibling-family guard, the post-listen check and the self-probe.
   ``tahoe run`` itself cannot take ``--reactor``: ``tahoe`` starts through
   ``task.react``, which installs the default reactor first.
2. the log Tub is hardened (:func:`harden_log_tub`).  Every node starts a *log
   Tub* (for ``flogtool tail``, FURL in ``private/logport.furl``) on an
   ephemeral port bound to **0.0.0.0** by a plain socket that Tahoe binds
   itself and hands to Twisted with ``adoptStreamPort``
   (``allmydata/util/iputil.py``, ``_foolscapEndpointForPortNumber``): no
   ``listenTCP``, so no reactor reaches it.  On Windows (no ``fcntl``) Tahoe
   instead picks a free port number, closes it and later listens on
   ``tcp:PORT`` (0.0.0.0) with ``listenTCP`` (Tahoe ticket 2787's race).  Either
   way, here that socket is made by the core, on **127.0.0.1** -- Tahoe itself
   publishes it as ``localhost`` only.

Everything else is Tahoe's own code path.
"""

from __future__ import annotations

import importlib
import os
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer
from twisted.internet.error import AlreadyListened
from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IStreamServerEndpoint
from twisted.logger import Logger
from zope.interface import implementer

from twisted_patch import _sockets
from twisted_patch._address import check_pid, parse_target
from twisted_patch.errors import WINDOWS, format_address
from twisted_patch.port import port_class_for

log = Logger()

LOG_TUB_INTERFACE = "127.0.0.1"


@implementer(IStreamServerEndpoint)
class AdoptedCoreSocketEndpoint:
    """An endpoint over a socket the core already made listening (Tahoe's pattern:
    the port number must be known before the Tub starts)."""

    def __init__(self, reactor: Any, skt: socket.socket) -> None:
        self._reactor = reactor
        self._skt = skt
        self._used = False
        self.port = int(skt.getsockname()[1])

    def listen(self, protocolFactory: IProtocolFactory) -> defer.Deferred[IListeningPort]:
        # As Twisted's AdoptedStreamServerEndpoint: the socket serves one listener.
        if self._used:
            return defer.fail(AlreadyListened("the log Tub's socket is already listening"))
        self._used = True
        # The exclusive port's own sequence, started from this socket: the [::1]
        # guard, the owner check and the self-probe, as for any xtcp listener.
        try:
            port = port_class_for(self._reactor)(
                self.port, protocolFactory, 50, LOG_TUB_INTERFACE, self._reactor
            )
            port.adopt(self._skt)
        except BaseException:
            self._skt.close()
            return defer.fail()
        try:
            port.startListening()  # closes the socket on failure
        except BaseException:
            return defer.fail()
        log.info(
            "twisted-patch: Tahoe's log Tub on {address} (socket made by the core)",
            address=format_address(LOG_TUB_INTERFACE, self.port),
            port=self.port,
        )
        return defer.succeed(port)

    def __repr__(self) -> str:
        return f"<AdoptedCoreSocketEndpoint {format_address(LOG_TUB_INTERFACE, self.port)}>"


def harden_log_tub() -> bool:
    """Make Tahoe's log Tub listen on 127.0.0.1 through the core.  True if done.

    Replaces ``allmydata.util.iputil._foolscapEndpointForPortNumber`` for the
    one call Tahoe makes with ``portnum=None`` (the log Tub): the socket is made
    by the core and started through the exclusive port's sequence
    (:meth:`~twisted_patch.port.listening.ExclusiveListening.adopt`: the [::1]
    guard, the owner check, the self-probe).  That needs no ``fcntl``, so it is
    the same on Windows, whose select reactor provides ``IReactorSocket`` too
    (``socket.fromfd`` exists there) and where Tahoe would otherwise listen on
    ``tcp:PORT`` (0.0.0.0) with ``listenTCP`` (tests/test_windows_tahoe.py).  With
    a reactor that does not provide ``IReactorSocket`` nothing is changed and
    False is returned: Tahoe then listens with ``listenTCP``, which the exclusive
    reactor of ``python -m twisted_patch.tahoe`` makes exclusive.
    """
    from twisted.internet import reactor
    from twisted.internet.interfaces import IReactorSocket

    if not IReactorSocket.providedBy(reactor):
        log.info("twisted-patch: log Tub left as Tahoe makes it (no adoptStreamPort here)")
        return False
    iputil: Any = importlib.import_module("allmydata.util.iputil")
    original = iputil._foolscapEndpointForPortNumber
    if getattr(original, "_twisted_patch", False):
        return True

    def endpoint_for_port_number(portnum: int | None) -> tuple[int, Any]:
        if portnum is not None:
            return original(portnum)  # type: ignore[no-any-return]
        skt = _sockets.listen(LOG_TUB_INTERFACE, 0, 50, socket.AF_INET)
        endpoint = AdoptedCoreSocketEndpoint(reactor, skt)
        return endpoint.port, endpoint

    endpoint_for_port_number._twisted_patch = True  # type: ignore[attr-defined]
    iputil._foolscapEndpointForPortNumber = endpoint_for_port_number
    return True


# --- node directories -----------------------------------------------------------


@dataclass(frozen=True)
class NodeInfo:
    """Where a Tahoe-LAFS node says it listens and which process it is."""

    host: str
    port: int
    pid: int
    pidfile: str
    url: str
    #: the process start time recorded in running.process (None: twistd.pid has none)
    started: float | None = None
    #: the uid owning the node directory (None on Windows)
    owner_uid: int | None = None


def read_pidfile(path: str) -> int:
    """The pid in a pid file (see :func:`read_pidfile_times`)."""
    return read_pidfile_times(path)[0]


def read_pidfile_times(path: str) -> tuple[int, float | None]:
    """The pid and process creation time in a Tahoe ``running.process`` (or a
    twistd ``twistd.pid``) file.

    ``running.process`` (Tahoe 1.18+, allmydata/util/pid.py) holds
    ``"PID CREATION_TIME\\n"``; ``twistd.pid`` holds ``"PID\\n"``.  The first
    whitespace-separated field is the pid either way; the second, when there is
    one, the process creation time (seconds since the epoch, psutil's
    ``create_time()``).  Returns ``(pid, creation time or None)``.
    """
    try:
        with open(path, encoding="utf-8") as f:
            content = f.read(4096)
    except OSError as e:
        raise ValueError(f"cannot read pid file {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise ValueError(f"pid file {path} is not text") from None
    fields = content.split()
    try:
        pid = check_pid(fields[0] if fields else "", f"the process id in {path}")
    except ValueError as e:
        raise ValueError(f"pid file {path} does not start with a process id: {e}") from None
    started: float | None = None
    if len(fields) > 1:
        try:
            started = float(fields[1])
        except ValueError:
            raise ValueError(
                f"pid file {path}: the creation time {fields[1][:40]!r} is not a number"
            ) from None
        if not started > 0 or started == float("inf"):
            raise ValueError(f"pid file {path}: the creation time {fields[1][:40]!r} is not valid")
    return pid, started


def read_node_dir(nodedir: str) -> NodeInfo:
    """Read ``node.url`` and the pid file of a Tahoe node directory.

    The pid file is ``running.process`` (Tahoe 1.18 and later, written by
    ``tahoe run``) or else ``twistd.pid`` (older Tahoe, ``twistd``).
    ValueError names what is missing or malformed.
    """
    if not os.path.isdir(nodedir):
        raise ValueError(f"{nodedir} is not a directory")
    url_path = os.path.join(nodedir, "node.url")
    try:
        with open(url_path, encoding="utf-8") as f:
            url = f.read(4096).strip()
    except OSError as e:
        raise ValueError(
            f"cannot read {url_path} ({e.strerror}): is this a Tahoe node directory, "
            f"and has the node started its web server?"
        ) from None
    host, port = parse_target(url)
    if host is None:
        raise ValueError(f"{url_path} holds {url!r}, not a URL with a host")
    for name in ("running.process", "twistd.pid"):
        path = os.path.join(nodedir, name)
        if os.path.exists(path):
            pid, started = read_pidfile_times(path)
            owner_uid = None if WINDOWS else os.stat(nodedir).st_uid
            return NodeInfo(host, port, pid, path, url, started, owner_uid)
    raise ValueError(
        f"no pid file (running.process or twistd.pid) in {nodedir}: is the node running?"
    )


class LauncherError(Exception):
    """The launcher cannot start Tahoe as asked (the message says why)."""


def install_exclusive_reactor() -> Any:
    """Install the ``exclusive`` reactor through Twisted's reactor plugin; return it.

    Raises :class:`LauncherError` if another reactor is installed already
    (something imported ``twisted.internet.reactor`` first) or the plugin is
    not found (twisted-patch's ``twisted/plugins`` file not on ``sys.path``).
    """
    from twisted.application import reactors
    from twisted.internet.error import ReactorAlreadyInstalledError

    if "twisted.internet.reactor" in sys.modules:
        current = sys.modules["twisted.internet.reactor"]
        raise LauncherError(
            f"a reactor is installed already ({type(current).__module__}."
            f"{type(current).__qualname__}): the exclusive reactor must be installed "
            f"before anything imports twisted.internet.reactor"
        )
    try:
        return reactors.installReactor("exclusive")
    except reactors.NoSuchReactor:
        raise LauncherError(
            "Twisted's plugin scan did not find the 'exclusive' reactor: is "
            "twisted-patch installed in this Python's environment (twisted/plugins/"
            "twisted_patch_plugins.py on sys.path)?"
        ) from None
    except ReactorAlreadyInstalledError as e:
        raise LauncherError(f"a reactor is installed already: {e}") from None


def main(argv: Sequence[str] | None = None) -> None:
    """``tahoe`` hardened; never returns (Tahoe exits).

    ``run``: on the exclusive reactor, its log Tub hardened.  Every other command
    (``put``, ``get``, ``ls`` ...) goes to :mod:`twisted_patch.tahoe_cli`: its HTTP
    requests to the node go only over connections verified to belong to the
    node's process."""
    args = list(sys.argv[1:] if argv is None else argv)
    from twisted_patch import tahoe_cli

    if tahoe_cli.command_of(args) not in (None, "run"):
        raise SystemExit(tahoe_cli.main(args, read_node_dir))
    try:
        install_exclusive_reactor()
    except LauncherError as e:
        sys.stderr.write(f"twisted-patch tahoe: {e}\n")
        raise SystemExit(2) from None
    # allmydata.scripts.runner imports the reactor (allmydata.util.eliotutil):
    # only now, with the exclusive one installed.
    runner: Any = importlib.import_module("allmydata.scripts.runner")
    harden_log_tub()
    runner.run(argv=["tahoe", *args])


if __name__ == "__main__":
    main()
