"""A Tahoe-LAFS node on Windows CPython (make test-windows): xtcp ports, a file round trip,
and ``python -m twisted_patch.tahoe run`` hardening the log Tub.

One node directory (``tahoe create-node``: a client with its own storage server, no
introducer), loopback only::

    web.port = xtcp:W:interface=127.0.0.1
    tub.port = xtcp:Q:interface=127.0.0.1
    tub.location = tcp:127.0.0.1:Q
    [sftpd] port = tcp:S:interface=127.0.0.1   (plain Twisted string, unchanged in both runs)

Started twice, each time as a Windows Python process of its own (stopped by pid):

1. plain ``tahoe run`` -- the control.  Tahoe on Windows has no ``fcntl``, so its log
   Tub (``flogtool``'s port, ``private/logport.furl``) is ``tcp:L`` on 0.0.0.0 through
   Twisted's ``listenTCP`` (``allmydata/util/iputil.py``): a plain ``tcp.Port`` whose
   socket has SO_EXCLUSIVEADDRUSE 0 -- a port another process can share; so is
   [sftpd]port's ``tcp:`` string.
2. ``python -m twisted_patch.tahoe run`` -- the product's launcher: the exclusive select
   reactor (so [sftpd]port's unchanged ``tcp:`` string is exclusive through
   ``listenTCP``), the web and tub ports as before, and the log Tub made by the core on
   127.0.0.1 (``harden_log_tub``: the select reactor provides ``IReactorSocket`` on
   Windows too, so Tahoe's allocate-a-port-then-``listenTCP`` is replaced as on POSIX)
   with its [::1] guard: every listener SO_EXCLUSIVEADDRUSE 1.  The node
   finds its own storage server through ``private/servers.yaml`` (written from the
   FURL run 1 left) and a file goes up with ``PUT /uri`` and comes back with
   ``GET /uri/CAP`` through the hardened web port.

What each listener is, is read *inside* the node process: the node runs under a small
``runpy`` wrapper (the same module, the same ``sys.argv`` as ``python -m``) whose thread,
when the test asks, has the reactor list its listening ports with ``getsockopt``.
Windows' own owner table cannot answer from outside under Wine (it says pid 0 for every
socket: the Linux kernel holds them for the wineserver); the log Tub itself names its
process (Foolscap ``get_pid`` over ``logport.furl``, as ``flogtool`` connects).

The attack: under Wine no attack on a *listening* socket succeeds at all, against our
ports or plain ones (docs/windows.rst), so the specific-over-wildcard bind Microsoft's
table allows against the plain log Tub on real Windows cannot be shown here.  The IPv6
shadow can: another Windows Python process binds [::1]:P beside the log Tub (or
[sftpd]port) and receives a client of [::1]:P under plain ``tahoe run``; under the
launcher the [::1]:P guard refuses it.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from conftest import say

pytestmark = [
    pytest.mark.tahoe,
    pytest.mark.skipif(
        sys.platform != "win32",
        reason="Tahoe-LAFS's Windows code path (log Tub through listenTCP, no fcntl), "
        "read with SO_EXCLUSIVEADDRUSE: Windows CPython only (make test-windows runs it "
        "under Wine); the Linux node is tests/test_tahoe*.py",
    ),
]

if importlib.util.find_spec("allmydata") is None:
    pytest.skip("tahoe-lafs is not installed (make test-windows installs it for 3.13)",
                allow_module_level=True)

from support.tahoe_grid import (  # noqa: E402
    Node,
    enable_sftpd,
    exclusive_listener_lines,
    free_port,
    has_ipv6,
    logport,
    node_env,
    remove_tree,
    set_config,
    stop_all,
)

from twisted_patch.cli.attacks import Outcome, run_attack, standard_attacks  # noqa: E402

#: The IPv6 shadow of a port (bind [::1]:P and listen; a client of [::1]:P -- Foolscap
#: dialing the log Tub's "localhost:P" may be one -- reaches the attacker), with
#: SO_REUSEADDR so that a TIME_WAIT left on [::1]:P cannot pass for a refusal.  The one
#: attack a plain listening socket loses under Wine (docs/windows.rst).
(SHADOW,) = [replace(a, key=f"{a.key}+reuseaddr", options=tuple(sorted({*a.options, "reuseaddr"})))
             for a in standard_attacks() if a.key == "v6-shadow"]

#: Runs MODULE as ``python -m MODULE ARGS`` would, plus a thread that, when the file
#: BASEDIR/sockopts.request appears, has the reactor thread write every listening port
#: of the reactor with its socket options to BASEDIR/sockopts.json.
WRAPPER = textwrap.dedent(r"""
    import json, os, runpy, socket, sys, threading, time
    module, basedir = sys.argv[1], sys.argv[2]
    request = os.path.join(basedir, "sockopts.request")
    answer = os.path.join(basedir, "sockopts.json")

    def dump():
        from twisted.internet import reactor
        from twisted.internet.interfaces import IListeningPort
        rows = []
        for reader in reactor.getReaders():
            if not IListeningPort.providedBy(reader):
                continue
            skt, host = reader.socket, reader.getHost()
            rows.append({
                "class": type(reader).__module__ + "." + type(reader).__qualname__,
                "host": host.host, "port": host.port,
                "exclusiveaddruse": skt.getsockopt(socket.SOL_SOCKET,
                                                   socket.SO_EXCLUSIVEADDRUSE),
                "reuseaddr": skt.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR),
            })
        with open(answer + ".tmp", "w") as f:
            json.dump({"reactor": type(reactor).__module__ + "." + type(reactor).__qualname__,
                       "listeners": rows}, f)
        os.replace(answer + ".tmp", answer)

    def watch():
        while True:
            time.sleep(0.1)
            try:
                os.remove(request)
            except OSError:  # not there (or, on Windows, still open): not yet
                continue
            sys.modules["twisted.internet.reactor"].callFromThread(dump)

    threading.Thread(target=watch, daemon=True).start()
    sys.argv = [module, *sys.argv[3:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
""")

PLAIN = "allmydata"  # python -m allmydata: plain `tahoe`
LAUNCHER = "twisted_patch.tahoe"  # python -m twisted_patch.tahoe


def command(module: str, node: Node) -> list[str]:
    return [sys.executable, "-I", "-c", WRAPPER, module, str(node.basedir)]


def sockopts(node: Node, bound: float = 60.0) -> dict[str, Any]:
    """The node's listening ports and their socket options, read in the node."""
    answer = node.basedir / "sockopts.json"
    answer.unlink(missing_ok=True)
    request = node.basedir / "sockopts.request"
    request.with_suffix(".tmp").write_text("")
    request.with_suffix(".tmp").replace(request)
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        if answer.exists():
            got: dict[str, Any] = json.loads(answer.read_text())
            return got
        assert node.running(), node.output()
        time.sleep(0.1)
    raise TimeoutError(f"the node wrote no {answer} within {bound} s\n{node.output()}")


def by_address(found: dict[str, Any]) -> dict[tuple[str, int], dict[str, Any]]:
    return {(row["host"], row["port"]): row for row in found["listeners"]}


@dataclass
class Run:
    """What one run of the node showed."""

    seconds: float
    listeners: dict[tuple[str, int], dict[str, Any]]
    reactor: str
    log_tub: int
    stdout: str
    #: the IPv6 shadow (SHADOW) of the log Tub's port and of [sftpd]port, tried while
    #: the node ran: {"log Tub": ..., "[sftpd]port": ...}
    shadows: dict[str, Outcome]


@dataclass
class Windows:
    tmp: Path
    node: Node
    web: int
    tub: int
    sftp: int
    control: Run | None = None
    launched: Run | None = None


def create(args: list[str], home: Path) -> None:
    """``tahoe ARGS`` (``python -m allmydata``): Tahoe writes its errors to stdout."""
    proc = subprocess.run([sys.executable, "-I", "-m", "allmydata", *args],
                          env=node_env(home), capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=300)
    assert proc.returncode == 0, f"tahoe {' '.join(args)}: {proc.returncode}\n" \
        f"{proc.stdout[-3000:]}"


def start(node: Node, module: str) -> tuple[float, int]:
    """Start the node through the wrapper; (seconds until its log Tub listens, its port)."""
    t0 = time.monotonic()
    node.start(command=command(module, node))
    node.wait_for_file("node.url", bound=180)
    node.wait_for_file("private/logport.furl", bound=180)
    port = logport(node)
    assert port is not None
    return time.monotonic() - t0, port


@pytest.fixture(scope="module")
def win() -> Iterator[Windows]:
    tmp = Path(tempfile.mkdtemp(prefix="twisted-patch-wintahoe-"))
    node = Node(tmp / "node", tmp)
    web, tub, sftp = free_port(), free_port(), free_port()
    w = Windows(tmp, node, web, tub, sftp)
    try:
        create([
            "create-node", "--nickname=windows",
            f"--port=xtcp:{tub}:interface=127.0.0.1", f"--location=tcp:127.0.0.1:{tub}",
            f"--webport=xtcp:{web}:interface=127.0.0.1",
            "--shares-needed=1", "--shares-happy=1", "--shares-total=1", str(node.basedir),
        ], tmp)
        cfg = node.cfg.read_text()
        assert f"web.port = xtcp:{web}:interface=127.0.0.1" in cfg, cfg
        assert f"tub.port = xtcp:{tub}:interface=127.0.0.1" in cfg, cfg
        set_config(node.cfg, "storage", {"reserved_space": "0"})
        enable_sftpd(node)
        set_config(node.cfg, "sftpd", {"port": f"tcp:{sftp}:interface=127.0.0.1"})
        yield w
    finally:
        stop_all([node])
        remove_tree(tmp)


@pytest.fixture(scope="module")
def control(win: Windows) -> Run:
    """Run 1: plain ``tahoe run`` (the wrapper around ``python -m allmydata``)."""
    seconds, log_tub = start(win.node, PLAIN)
    storage_furl = win.node.wait_for_file("private/storage.furl", bound=60).strip()
    found = sockopts(win.node)
    shadows = {"log Tub": run_attack(SHADOW, log_tub),
               "[sftpd]port": run_attack(SHADOW, win.sftp)}
    stdout = win.node.stdout()
    win.node.stop()
    # The node finds its own storage server from now on (no introducer).
    pubkey = (win.node.basedir / "node.pubkey").read_text().strip()
    assert pubkey.startswith("pub-v0-"), pubkey
    server_id = pubkey[len("pub-"):]
    (win.node.basedir / "private" / "servers.yaml").write_text(
        f"storage:\n  {server_id}:\n    ann:\n      nickname: windows\n"
        f"      anonymous-storage-FURL: {storage_furl}\n")
    win.control = Run(seconds, by_address(found), found["reactor"], log_tub, stdout, shadows)
    return win.control


@pytest.fixture(scope="module")
def launched(win: Windows, control: Run) -> Iterator[Run]:
    """Run 2: ``python -m twisted_patch.tahoe run`` (the same node directory)."""
    seconds, log_tub = start(win.node, LAUNCHER)
    found = sockopts(win.node)
    shadows = {"log Tub": run_attack(SHADOW, log_tub),
               "[sftpd]port": run_attack(SHADOW, win.sftp)}
    win.launched = Run(seconds, by_address(found), found["reactor"], log_tub,
                       win.node.stdout(), shadows)
    yield win.launched
    win.node.stop()


def test_control_plain_tahoe_run_listen_tcp_is_not_exclusive(request: pytest.FixtureRequest,
                                                              win: Windows,
                                                              control: Run) -> None:
    """The control: plain ``tahoe run`` on Windows.  The xtcp strings already make the web
    and tub ports exclusive (the endpoint plugin needs no reactor); what goes through
    ``listenTCP`` -- the log Tub, which no configuration reaches, on 0.0.0.0, and
    ``[sftpd]port``'s plain ``tcp:`` string -- is Twisted's plain ``tcp.Port`` with
    SO_EXCLUSIVEADDRUSE 0: another process can bind its port (a shared-port cell of
    Microsoft's table)."""
    say(request, f"plain tahoe run on Windows ({control.seconds:.1f} s to listen), "
                 f"{control.reactor}:\n" + _table(control))
    seen = control.listeners
    expected = {("127.0.0.1", win.web), ("127.0.0.1", win.tub), ("127.0.0.1", win.sftp),
                ("0.0.0.0", control.log_tub)}
    if has_ipv6():  # the xtcp ports' guards
        expected |= {("::1", win.web), ("::1", win.tub)}
    assert set(seen) == expected, (sorted(seen), sorted(expected))
    assert seen[("127.0.0.1", win.web)]["exclusiveaddruse"] == 1, seen
    assert seen[("127.0.0.1", win.tub)]["exclusiveaddruse"] == 1, seen
    sftp = seen[("127.0.0.1", win.sftp)]
    assert sftp["class"] == "twisted.internet.tcp.Port", sftp
    assert sftp["exclusiveaddruse"] == 0, sftp
    log_tub = seen[("0.0.0.0", control.log_tub)]
    assert log_tub["class"] == "twisted.internet.tcp.Port", log_tub
    assert log_tub["exclusiveaddruse"] == 0, log_tub
    assert "Tahoe's log Tub on" not in control.stdout, control.stdout


def test_launcher_makes_every_listener_exclusive(request: pytest.FixtureRequest, win: Windows,
                                                 launched: Run) -> None:
    """``python -m twisted_patch.tahoe run``: every listening port of the node -- web,
    tub, the log Tub and the [::1] guards -- has SO_EXCLUSIVEADDRUSE 1 and SO_REUSEADDR
    0, and the node logged each as an exclusive listener."""
    say(request, f"python -m twisted_patch.tahoe run on Windows ({launched.seconds:.1f} s to "
                 f"listen), {launched.reactor}:\n" + _table(launched))
    assert launched.reactor.startswith("twisted_patch."), launched.reactor
    seen = launched.listeners
    # [sftpd]port's plain "tcp:" string, unchanged: listenTCP of the exclusive reactor;
    # the log Tub made by the core on 127.0.0.1 (harden_log_tub), no more 0.0.0.0; each
    # with its [::1] guard (serving) where the host has IPv6.
    ports = (win.web, win.tub, win.sftp, launched.log_tub)
    expected = {("127.0.0.1", p) for p in ports}
    if has_ipv6():
        expected |= {("::1", p) for p in ports}
    assert set(seen) == expected, (sorted(seen), sorted(expected))
    assert (f"twisted-patch: Tahoe's log Tub on 127.0.0.1:{launched.log_tub} (socket made "
            f"by the core)") in launched.stdout, launched.stdout
    for row in seen.values():
        assert (row["exclusiveaddruse"], row["reuseaddr"]) == (1, 0), row
        assert row["class"].startswith("twisted_patch."), row
    logged = exclusive_listener_lines(launched.stdout)
    for port in (win.web, win.tub, win.sftp, launched.log_tub):
        assert any(re.search(rf":{port}$", line) for line in logged), (port, logged)


@pytest.mark.parametrize("target", ["log Tub", "[sftpd]port"])
def test_ipv6_shadow(request: pytest.FixtureRequest, control: Run, launched: Run,
                     target: str) -> None:
    """The attack, through both runs: another Windows Python process binds and listens on
    [::1]:P beside the log Tub's port (or [sftpd]port's ``tcp:`` string, the same in both
    runs) and waits for a client of [::1]:P.  Plain ``tahoe run`` (no [::1] holder):
    HIJACKED, the attacker got the client.  The launcher (127.0.0.1:P and its [::1]:P
    guard, both exclusive): refused."""
    plain, ours = control.shadows[target], launched.shadows[target]
    say(request, f"IPv6 shadow of the {target}: plain tahoe run: {plain.text}; "
                 f"python -m twisted_patch.tahoe run: {ours.text}")
    if plain.result == "n/a":
        pytest.skip(plain.text)
    assert plain.hijacked, plain.text
    assert plain.detail.get("accepted"), plain.detail
    assert ours.result == "refused", ours.text


def test_hardened_log_tub_serves_flogtool_for_the_node(request: pytest.FixtureRequest,
                                                       win: Windows, launched: Run) -> None:
    """What ``flogtool tail`` does first, from this (Windows Python) process: a Foolscap
    Tub connects to the FURL in private/logport.furl -- the log Tub on the core's socket
    -- and the log publisher answers ``get_pid`` with the node's pid.  (Foolscap checks
    the Tub's TLS key against the FURL: only the node can answer.)"""
    from conftest import wait_for
    from foolscap.api import Tub
    from twisted.internet import defer

    furl = (win.node.basedir / "private" / "logport.furl").read_text().strip()
    assert f":{launched.log_tub}/" in furl, furl
    tub = Tub()
    tub.startService()
    try:
        publisher = wait_for(tub.getReference(furl), timeout=60)
        pid = wait_for(publisher.callRemote("get_pid"), timeout=60)
    finally:
        wait_for(defer.maybeDeferred(tub.stopService), timeout=60)
    say(request, f"the log Tub ({furl.split('@')[1].split('/')[0]}) answered get_pid: {pid}; "
                 f"the node is pid {win.node.pid}")
    assert pid == win.node.pid


def test_upload_and_download_through_the_hardened_web_port(request: pytest.FixtureRequest,
                                                           win: Windows,
                                                           launched: Run) -> None:
    """A file up (``PUT /uri``) and back (``GET /uri/CAP``) through the launcher's node,
    stored by its own storage server over its xtcp tub port."""
    node = win.node
    t0 = time.monotonic()
    node.wait_connected(bound=120)
    data = b"twisted-patch on Windows\n" * 4096  # 100 KiB: a CHK file, not a literal
    cap = node.http("PUT", "uri", data).decode().strip()
    assert cap.startswith("URI:CHK:"), cap
    back = node.http("GET", "uri/" + urllib.parse.quote(cap, safe=""))
    seconds = time.monotonic() - t0
    say(request, f"round trip through the Windows node: {len(data)} bytes, {cap[:24]}..., "
                 f"{seconds:.1f} s")
    assert back == data


def _table(run: Run) -> str:
    return "\n".join(
        f"  {host}:{port} {row['class']} SO_EXCLUSIVEADDRUSE={row['exclusiveaddruse']} "
        f"SO_REUSEADDR={row['reuseaddr']}"
        for (host, port), row in sorted(run.listeners.items()))
