"""Tahoe-LAFS end to end: a real grid on ``xtcp`` ports, attacked, pre-claimed, verified.

One grid for the module (an introducer and a storage node, loopback only, in a
temporary directory that is also HOME), started with ``tahoe run`` and stopped
by pid.  The storage node's tahoe.cfg::

    web.port = xtcp:P:interface=127.0.0.1
    tub.port = xtcp:Q:interface=127.0.0.1
    tub.location = tcp:127.0.0.1:Q

Tests that need the node running call ``grid.ensure_running()``; tests that
stop it, reconfigure it (plain ``tcp:`` comparisons) or pre-claim its ports
leave it stopped, and the next one restarts it.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from support.tahoe_grid import require_tahoe

pytestmark = [
    pytest.mark.tahoe,
    pytest.mark.skipif(
        not sys.platform.startswith("linux"),
        reason="the Tahoe grid tests read listeners with ss and /proc (Linux)",
    ),
]

require_tahoe()

from support.tahoe_grid import (  # noqa: E402
    Node,
    NodeExited,
    Squatter,
    enable_sftpd,
    exclusive_listener_lines,
    free_port,
    has_ipv6,
    listeners_of,
    listeners_on,
    logport,
    node_env,
    remove_tree,
    set_config,
    stop_all,
    tahoe_command,
)
from support.windows import holder_text  # noqa: E402

from twisted_patch.cli.attacks import Attack, run_attack, standard_attacks  # noqa: E402

GUARD_MERGED = importlib.util.find_spec("twisted_patch.port.guards") is not None
LOOPBACK = "127.0.0.1"


def _loopback(port: int) -> str:
    return f"xtcp:{port}:interface=127.0.0.1"


@dataclass
class Grid:
    tmp: Path
    intro: Node
    store: Node
    intro_port: int
    web: int  # P
    tub: int  # Q
    sftp: int  # S: [sftpd]port
    furl: str = ""

    def xtcp_config(self) -> None:
        self.store.configure(
            **{
                "web.port": _loopback(self.web),
                "tub.port": _loopback(self.tub),
                "tub.location": f"tcp:127.0.0.1:{self.tub}",
            }
        )
        set_config(self.store.cfg, "sftpd", {"port": _loopback(self.sftp)})

    def plain_config(self, web: bool, tub: bool) -> None:
        """Plain Twisted ``tcp:`` for the web port and/or the tub port."""
        self.store.configure(
            **{
                "web.port": (f"tcp:{self.web}:interface=127.0.0.1" if web else _loopback(self.web)),
                "tub.port": (f"tcp:{self.tub}:interface=127.0.0.1" if tub else _loopback(self.tub)),
            }
        )

    def ensure_running(self, connected: bool = True) -> Node:
        """The storage node running on its xtcp ports (and connected to its own
        storage server, unless ``connected`` is False)."""
        if not self.store.running():
            self.xtcp_config()
            self.store.start()
            self.store.wait_for_file("node.url")
        if connected:
            self.store.wait_connected()
        return self.store

    def stop_storage(self, sig: int = signal.SIGTERM) -> None:
        self.store.stop(sig)

    def allowed_listeners(self, node: Node, *ports: int) -> set[tuple[str, int]]:
        """What the node may listen on: ``ports`` on 127.0.0.1 (and [::1], the guard)
        plus the log Tub Tahoe opens on 0.0.0.0 that no configuration reaches."""
        allowed = {(LOOPBACK, p) for p in ports}
        if GUARD_MERGED:
            allowed |= {("::1", p) for p in ports}
        node.wait_for_file("private/logport.furl")
        log_tub = logport(node)
        assert log_tub is not None
        if log_tub in ports:
            return allowed
        allowed.add(("0.0.0.0", log_tub))
        return allowed


def _create(args: list[str], home: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*tahoe_command(), *args],
        env=node_env(home),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen[str], what: str) -> None:
    out, err = proc.communicate(timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed ({proc.returncode}): {err}{out}")


@pytest.fixture(scope="module")
def grid() -> Iterator[Grid]:
    tmp = Path(tempfile.mkdtemp(prefix="twisted-patch-tahoe-"))
    intro = Node(tmp / "introducer", tmp)
    store = Node(tmp / "storage0", tmp)
    intro_port, web, tub, sftp = free_port(), free_port(), free_port(), free_port()
    g = Grid(tmp, intro, store, intro_port, web, tub, sftp)
    try:
        # Both node directories at once (each `tahoe create-*` is ~2 s of imports);
        # the storage node learns the introducer's FURL afterwards.  `tahoe create-*`
        # takes xtcp strings for --port / --webport as they are (tub.location stays tcp:).
        c1 = _create(
            [
                "create-introducer",
                f"--port={_loopback(intro_port)}",
                f"--location=tcp:127.0.0.1:{intro_port}",
                str(intro.basedir),
            ],
            tmp,
        )
        c2 = _create(
            [
                "create-node",
                "--nickname=storage0",
                f"--port={_loopback(tub)}",
                f"--location=tcp:127.0.0.1:{tub}",
                f"--webport={_loopback(web)}",
                "--shares-needed=1",
                "--shares-happy=1",
                "--shares-total=1",
                str(store.basedir),
            ],
            tmp,
        )
        _finish(c1, "tahoe create-introducer")
        assert f"tub.port = {_loopback(intro_port)}" in intro.cfg.read_text()
        intro.start()
        _finish(c2, "tahoe create-node")
        assert f"web.port = {_loopback(web)}" in store.cfg.read_text()
        set_config(store.cfg, "storage", {"reserved_space": "0"})
        enable_sftpd(store)
        g.xtcp_config()
        g.furl = intro.wait_for_file("private/introducer.furl").strip()
        (store.basedir / "private" / "introducers.yaml").write_text(
            f"introducers:\n  default:\n    furl: {g.furl}\n"
        )
        intro.wait_for_listener(intro_port)
        g.ensure_running()
        yield g
    finally:
        stop_all([store, intro])
        remove_tree(tmp)


def _attacks(*keys: str) -> list[Attack]:
    by_key = {a.key: a for a in standard_attacks()}
    return [by_key[k] for k in keys if k in by_key]


SAME_FAMILY = _attacks(
    "same-plain", "same-reuseaddr", "same-reuseport", "same-reuseaddr-reuseport",
    "wildcard-over-specific", "other-uid-same",
)
# The IPv6 shadows, with SO_REUSEADDR added on the attacker: a hijack earlier in
# the module leaves [::1]:P in TIME_WAIT, and a plain bind would then fail
# with EADDRINUSE -- a "refusal" that proves nothing.  With SO_REUSEADDR only a
# socket that really holds [::1]:P (a listener, the guard) stops the attacker.
SHADOWS = [
    replace(a, key=f"{a.key}+reuseaddr", options=tuple(sorted({*a.options, "reuseaddr"})))
    for a in _attacks("v6-shadow", "v6-wildcard-shadow", "other-uid-v6-shadow")
]


def _client_running(node: Node, bound: float = 60.0) -> None:
    """Until the node has logged that its client service started (tub listen done)."""
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        if "client running" in node.stdout():
            return
        if not node.running():
            raise NodeExited(node, "exited before 'client running'")
        time.sleep(0.05)
    raise TimeoutError(f"no 'client running' within {bound} s\n{node.output()}")


# --- the node on xtcp works and owns its ports -----------------------------------


def test_xtcp_listeners_belong_to_the_node(grid: Grid) -> None:
    node = grid.ensure_running()
    for port in (grid.web, grid.tub, grid.sftp):
        found = listeners_on(port)
        assert (LOOPBACK, port) in {(item.host, item.port) for item in found}, found
        for item in found:
            assert item.pids == (node.pid,), (port, found)
    assert {(item.host, item.port) for item in listeners_of(node.pid)} <= (
        grid.allowed_listeners(node, grid.web, grid.tub, grid.sftp)
    )
    assert node.url == f"http://127.0.0.1:{grid.web}/"
    who = subprocess.run(
        [*_cli(), "who", f"127.0.0.1:{grid.web}"], capture_output=True, text=True, timeout=60
    )
    assert who.returncode == 0, who.stderr
    rows = [line.split() for line in who.stdout.splitlines()[1:]]
    assert rows and all(row[4] == str(node.pid) for row in rows), who.stdout


def test_xtcp_listeners_were_made_by_the_core(grid: Grid) -> None:
    """The node's twistd log (stdout of ``tahoe run``) has ExclusivePort's line for
    both ports: the sockets came from the C core, not from Twisted's listenTCP."""
    node = grid.ensure_running()
    made = exclusive_listener_lines(node.stdout())
    assert f"127.0.0.1:{grid.web}" in made, node.stdout()
    assert f"127.0.0.1:{grid.tub}" in made, node.stdout()
    assert f"127.0.0.1:{grid.sftp}" in made, node.stdout()
    # The log Tub is Tahoe's own adopted socket: not ours, and the log says so.
    assert not any(line.endswith(f":{logport(node)}") for line in made), made


def test_upload_and_download_through_the_web_port(grid: Grid) -> None:
    node = grid.ensure_running()
    data = os.urandom(10_000)  # > 55 bytes: stored as shares, not a literal cap
    cap = node.http("PUT", "uri", data).decode()
    assert cap.startswith("URI:CHK:"), cap
    assert node.http("GET", f"uri/{cap}") == data


def test_sftp_port_serves_ssh(grid: Grid) -> None:
    """[sftpd]port = xtcp:S:interface=127.0.0.1: the SSH server answers there."""
    import socket

    grid.ensure_running()
    with socket.create_connection((LOOPBACK, grid.sftp), timeout=30) as c:
        banner = c.makefile("rb").readline()
    assert banner.startswith(b"SSH-2.0-"), banner


@pytest.mark.parametrize("attack", SAME_FAMILY, ids=lambda a: a.key)
def test_same_family_attacks_fail_while_the_node_runs(grid: Grid, attack: Attack) -> None:
    node = grid.ensure_running()
    for port in (grid.web, grid.tub, grid.sftp):
        outcome = run_attack(attack, port)
        if outcome.result == "n/a":
            pytest.skip(outcome.text)
        assert outcome.result == "refused", (port, outcome.text)
    assert node.running()


def test_reuseport_attack_can_succeed_at_all() -> None:
    """The control for the co-bind attack: against a listener that set SO_REUSEPORT
    (as many servers do) the same attacker process does get in."""
    import socket

    with socket.socket() as victim:
        victim.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        victim.bind((LOOPBACK, 0))
        victim.listen(8)
        attack = _attacks("same-reuseport")[0]
        outcome = run_attack(attack, victim.getsockname()[1])
    assert outcome.result == "hijacked", outcome.text


@pytest.mark.skipif(not has_ipv6(), reason="no IPv6 loopback on this host")
@pytest.mark.parametrize("attack", SHADOWS, ids=lambda a: a.key)
@pytest.mark.xfail(not GUARD_MERGED, strict=True, reason="address-family guard not merged")
def test_ipv6_shadow_of_the_web_port_fails(grid: Grid, attack: Attack) -> None:
    """``localhost`` may mean [::1]: with the guard the node holds [::1]:P too.
    (The same attack against plain Tahoe is hijacked: see
    test_plain_tcp_tub_port_taken_node_runs_silently.)"""
    node = grid.ensure_running()
    outcome = run_attack(attack, grid.web)
    if outcome.result == "n/a":
        pytest.skip(outcome.text)
    assert outcome.result == "refused", outcome.text
    v6 = [item for item in listeners_on(grid.web) if item.host == "::1"]
    assert v6 and all(item.pids == (node.pid,) for item in v6), listeners_on(grid.web)


# --- twisted-patch verify --node ---------------------------------------------------


def _cli() -> list[str]:
    exe = Path(sys.executable).with_name("twisted-patch")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "twisted_patch"]


def _verify(nodedir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*_cli(), "verify", "--node", str(nodedir)], capture_output=True, text=True, timeout=60
    )


def test_verify_node(grid: Grid) -> None:
    node = grid.ensure_running()
    ok = _verify(node.basedir)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    # The node dies; node.url and running.process stay behind.  A squatter takes
    # its web port: what a script reading node.url would now send capabilities to.
    grid.stop_storage(signal.SIGKILL)
    assert (node.basedir / "node.url").exists()
    assert (node.basedir / "running.process").exists()
    with Squatter(grid.web) as squatter:
        bad = _verify(node.basedir)
        assert bad.returncode == 1, bad.stdout + bad.stderr
        assert f"pid {squatter.pid}" in bad.stdout + bad.stderr
    node = grid.ensure_running(connected=False)
    back = _verify(node.basedir)
    assert back.returncode == 0, back.stdout + back.stderr


# --- the log Tub: the listener tahoe.cfg cannot reach ---------------------------


def test_log_tub_is_on_all_interfaces_with_plain_tahoe_run(grid: Grid) -> None:
    """What tahoe.cfg cannot reach: Tahoe's log Tub listens on 0.0.0.0, ephemeral port."""
    node = grid.ensure_running(connected=False)
    node.wait_for_file("private/logport.furl")
    log_tub = logport(node)
    assert log_tub is not None
    assert ("0.0.0.0", log_tub) in {(item.host, item.port) for item in listeners_of(node.pid)}


def test_launcher_puts_the_log_tub_on_loopback_through_the_core(grid: Grid) -> None:
    """``python -m twisted_patch.tahoe run NODEDIR``: the same node, nothing on 0.0.0.0,
    the log Tub made by the core on 127.0.0.1, and it still serves Foolscap."""
    from conftest import wait_for
    from foolscap.api import Tub
    from twisted.internet import defer

    grid.stop_storage()
    grid.xtcp_config()
    node = grid.store
    node.start(command=[sys.executable, "-I", "-m", "twisted_patch.tahoe"])
    node.wait_for_file("node.url")
    node.wait_connected()
    pidfile = (node.basedir / "running.process").read_text().split()
    assert int(pidfile[0]) == node.pid  # same process, same pid file as `tahoe run`
    node.wait_for_file("private/logport.furl")
    log_tub = logport(node)
    assert log_tub is not None
    mine = {(item.host, item.port) for item in listeners_of(node.pid)}
    assert (LOOPBACK, log_tub) in mine
    assert not [address for address in mine if address[0] in ("0.0.0.0", "::")], mine
    assert mine <= grid.allowed_listeners(node, grid.web, grid.tub, grid.sftp, log_tub), mine
    assert f"127.0.0.1:{log_tub}" in exclusive_listener_lines(node.stdout())
    # The log Tub really works: a Foolscap client reaches the logport FURL.
    furl = (node.basedir / "private" / "logport.furl").read_text().strip()
    client = Tub()
    client.startService()
    try:
        ref = wait_for(client.getReference(furl), timeout=30)
        assert ref is not None
    finally:
        wait_for(defer.maybeDeferred(client.stopService))
    grid.stop_storage()  # the next test starts it again the plain `tahoe run` way


# --- a pre-claimed web port ------------------------------------------------------


@dataclass
class FailedStart:
    returncode: int | None
    stdout: str
    stderr: str
    seen: set[tuple[str, int]]
    node_url_written: bool
    holder_pid: int
    holder_kept_port: bool
    allowed: set[tuple[str, int]]


def _start_against_squatter(grid: Grid, squat_port: int) -> FailedStart:
    """Start the (configured) node while another process holds ``squat_port``;
    record every listener its pid had until it exited."""
    node = grid.store
    with Squatter(squat_port) as squatter:
        node.start()
        seen: set[tuple[str, int]] = set()
        deadline = time.monotonic() + 60
        while node.running() and time.monotonic() < deadline:
            seen |= {(item.host, item.port) for item in listeners_of(node.pid)}
            time.sleep(0.02)
        if node.running():
            node.stop()
            pytest.fail(f"node still running 60 s after start with {squat_port} taken")
        holders = listeners_on(squat_port)
        kept = bool(holders) and all(item.pids == (squatter.pid,) for item in holders)
        # Before the node gives up it may have started its other configured
        # listeners (tub, SFTP; with the guard their [::1] siblings) and Tahoe's
        # log Tub (this run's): nothing else, and never another web port.
        allowed = {(LOOPBACK, grid.tub), (LOOPBACK, grid.sftp)}
        if GUARD_MERGED:
            allowed |= {("::1", grid.tub), ("::1", grid.sftp)}
        log_tub = logport(node)
        if log_tub is not None:
            allowed.add(("0.0.0.0", log_tub))
        return FailedStart(
            node.proc.returncode if node.proc else None,
            node.stdout(),
            node.stderr(),
            seen,
            (node.basedir / "node.url").exists(),
            squatter.pid,
            kept,
            allowed,
        )


@pytest.fixture(scope="module")
def xtcp_web_preclaimed(grid: Grid) -> FailedStart:
    grid.stop_storage()
    grid.xtcp_config()
    return _start_against_squatter(grid, grid.web)


def test_preclaimed_xtcp_web_port_node_fails_to_start(xtcp_web_preclaimed: FailedStart,
                                                      grid: Grid) -> None:
    r = xtcp_web_preclaimed
    assert r.returncode not in (0, None), r
    assert f"127.0.0.1:{grid.web} is already in use" in r.stderr, r.stderr
    assert "never falls back to another port" in r.stderr
    assert not r.node_url_written
    assert r.holder_kept_port  # the node neither took the port over nor shared it
    assert r.seen <= r.allowed, r.seen  # and listened nowhere else meanwhile
    assert f"127.0.0.1:{grid.web}" not in exclusive_listener_lines(r.stdout)


def test_preclaimed_xtcp_web_port_message_names_the_holder(
    xtcp_web_preclaimed: FailedStart,
) -> None:
    assert holder_text(xtcp_web_preclaimed.holder_pid) in (
        xtcp_web_preclaimed.stderr
    )


def test_preclaimed_plain_tcp_web_port_for_comparison(grid: Grid) -> None:
    """Plain Tahoe also refuses to start on a taken web port (Twisted's strports
    raises synchronously).  What differs is the message: errno text only, no
    holder, no advice (recorded here so a change in Twisted shows up)."""
    grid.stop_storage()
    grid.plain_config(web=True, tub=False)
    r = _start_against_squatter(grid, grid.web)
    assert r.returncode not in (0, None)
    assert not r.node_url_written and r.holder_kept_port
    expected = f"Couldn't listen on 127.0.0.1:{grid.web}: [Errno 98] Address already in use."
    assert expected in r.stderr, r.stderr
    assert f"pid {r.holder_pid}" not in r.stderr
    assert "already in use by" not in r.stderr


# --- a pre-claimed tub port: Foolscap swallows the failure -------------------------


def _run_with_tub_taken(grid: Grid, plain: bool) -> tuple[Node, Squatter]:
    grid.stop_storage()
    if plain:
        grid.plain_config(web=True, tub=True)
    else:
        grid.xtcp_config()
    squatter = Squatter(grid.tub)
    try:
        grid.store.start()
        grid.store.wait_for_file("node.url")
        _client_running(grid.store)
    except BaseException:
        squatter.close()
        raise
    return grid.store, squatter


def _holders(port: int) -> set[int]:
    return {pid for item in listeners_on(port) for pid in item.pids}


def test_plain_tcp_tub_port_taken_node_runs_silently(grid: Grid) -> None:
    """The problem: plain ``tcp:`` tub.port on a taken port.  The node keeps running
    and serving its web API, without its tub listener, and says nothing at start-up.
    Also the control for the IPv6 shadow: plain Tahoe's web port IS shadowed."""
    node, squatter = _run_with_tub_taken(grid, plain=True)
    try:
        assert node.running()
        assert _holders(grid.tub) == {squatter.pid}
        assert node.pid not in _holders(grid.tub)
        assert "cannot listen" not in node.stdout()
        assert node.stderr() == ""
        if has_ipv6():
            shadow = run_attack(SHADOWS[0], grid.web)
            assert shadow.result == "hijacked", shadow.text
    finally:
        grid.stop_storage()
        squatter.close()


def test_xtcp_tub_port_taken_is_logged_at_error_level(grid: Grid) -> None:
    """With xtcp the node still runs (Foolscap adds no errback; Tahoe cannot be
    made to exit from an endpoint), but its log says so at once, naming the port."""
    node, squatter = _run_with_tub_taken(grid, plain=False)
    try:
        assert node.running()
        assert _holders(grid.tub) == {squatter.pid}
        lines = [
            line
            for line in node.stdout().splitlines()
            if f"twisted-patch: cannot listen on 127.0.0.1:{grid.tub}" in line
        ]
        assert len(lines) == 1, node.stdout()
        assert "[twisted_patch.endpoint#error]" in lines[0]
        assert f"127.0.0.1:{grid.tub} is already in use" in lines[0]
        assert holder_text(squatter.pid) in lines[0]
    finally:
        grid.stop_storage()
        squatter.close()


def test_verify_node_after_failed_start_is_an_error(grid: Grid) -> None:
    """After a clean stop there is no pid file: verify refuses (2), never says 0."""
    grid.stop_storage()
    with Squatter(grid.web):
        (grid.store.basedir / "node.url").write_text(f"http://127.0.0.1:{grid.web}/\n")
        result = _verify(grid.store.basedir)
    assert result.returncode == 2, result.stdout + result.stderr
