"""``python -m twisted_patch.tahoe CMD``: Tahoe's client commands over verified connections.

A real grid (an introducer and one storage node, loopback, started with
``tahoe run`` and stopped by pid).  With the node up, ``put``, ``get``,
``mkdir`` and ``ls`` work through the launcher.  Then the node is killed
(SIGKILL: node.url and running.process survive it, as after a crash) and an
impostor -- another process of the same user -- listens on its web port and
counts every byte it receives.  The launcher's ``put`` and ``ls`` must fail,
name the impostor, and the impostor must receive **zero bytes** although it
accepted their connections.  The control: plain ``tahoe put`` against the
same impostor sends it the request (the test can fail).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.tahoe_grid import require_tahoe

pytestmark = [
    pytest.mark.tahoe,
    pytest.mark.skipif(not sys.platform.startswith("linux"),
                       reason="the grid helpers read /proc (Linux)"),
]

require_tahoe()

from support.servers import LoggingServer  # noqa: E402
from support.tahoe_grid import (  # noqa: E402
    Node,
    free_port,
    node_env,
    remove_tree,
    set_config,
    stop_all,
    tahoe_command,
)

LOOPBACK = "127.0.0.1"


@dataclass
class Grid:
    tmp: Path
    intro: Node
    store: Node
    web: int

    def ensure_running(self) -> Node:
        if not self.store.running():
            self.store.start()
            self.store.wait_for_file("node.url")
        self.store.wait_connected()
        return self.store


def _run(args: list[str], home: Path) -> None:
    proc = subprocess.run([*tahoe_command(), *args], env=node_env(home), capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=120)
    assert proc.returncode == 0, proc.stderr + proc.stdout


@pytest.fixture(scope="module")
def grid() -> Iterator[Grid]:
    tmp = Path(tempfile.mkdtemp(prefix="twisted-patch-tahoe-cli-"))
    intro = Node(tmp / "introducer", tmp)
    store = Node(tmp / "storage0", tmp)
    intro_port, web, tub = free_port(), free_port(), free_port()
    try:
        _run(["create-introducer", f"--port=tcp:{intro_port}:interface=127.0.0.1",
              f"--location=tcp:127.0.0.1:{intro_port}", str(intro.basedir)], tmp)
        intro.start()
        _run(["create-node", "--nickname=storage0",
              f"--port=tcp:{tub}:interface=127.0.0.1", f"--location=tcp:127.0.0.1:{tub}",
              f"--webport=tcp:{web}:interface=127.0.0.1", "--shares-needed=1",
              "--shares-happy=1", "--shares-total=1", str(store.basedir)], tmp)
        set_config(store.cfg, "storage", {"reserved_space": "0"})
        furl = intro.wait_for_file("private/introducer.furl").strip()
        (store.basedir / "private" / "introducers.yaml").write_text(
            f"introducers:\n  default:\n    furl: {furl}\n")
        g = Grid(tmp, intro, store, web)
        g.ensure_running()
        yield g
    finally:
        stop_all([store, intro])
        remove_tree(tmp)


def launcher(grid: Grid, *args: str, plain: bool = False) -> subprocess.CompletedProcess[str]:
    """``python -I -m twisted_patch.tahoe -d NODEDIR ARGS`` (``plain``: ``tahoe`` itself)."""
    command = tahoe_command() if plain else [sys.executable, "-I", "-m", "twisted_patch.tahoe"]
    return subprocess.run(
        [*command, "-d", str(grid.store.basedir), *args],
        env=node_env(grid.tmp), cwd=grid.tmp, capture_output=True, text=True,
        stdin=subprocess.DEVNULL, timeout=120,
    )


# --- the node up: the commands work --------------------------------------------


def test_put_get_mkdir_ls_work_with_the_node_up(grid: Grid) -> None:
    grid.ensure_running()
    source = grid.tmp / "secret.txt"
    source.write_bytes(b"verified connections only\n")
    put = launcher(grid, "put", str(source))
    assert put.returncode == 0, put.stderr
    cap = put.stdout.strip().splitlines()[-1]
    assert cap.startswith("URI:"), put.stdout + put.stderr
    got = launcher(grid, "get", cap)
    assert got.returncode == 0, got.stderr
    assert got.stdout == "verified connections only\n"
    mkdir = launcher(grid, "create-alias", "tahoe")
    assert mkdir.returncode == 0, mkdir.stderr
    cp = launcher(grid, "put", str(source), "tahoe:secret.txt")
    assert cp.returncode == 0, cp.stderr
    ls = launcher(grid, "ls", "tahoe:")
    assert ls.returncode == 0, ls.stderr
    assert ls.stdout.split() == ["secret.txt"]


# --- the node dead, an impostor on its port -------------------------------------

@pytest.fixture
def impostor(grid: Grid) -> Iterator[LoggingServer]:
    node = grid.ensure_running()
    node.stop(signal.SIGKILL)  # a crash: node.url and running.process stay behind
    assert (node.basedir / "node.url").exists()
    assert (node.basedir / "running.process").exists()
    imp = LoggingServer(grid.tmp / "impostor.log", grid.web)
    try:
        yield imp
    finally:
        imp.stop()


@pytest.mark.parametrize("command", [["put", "CAPFILE"], ["ls", "tahoe:"], ["mkdir"]],
                         ids=["put", "ls", "mkdir"])
def test_impostor_on_the_web_port_receives_zero_bytes(grid: Grid, impostor: LoggingServer,
                                                      command: list[str]) -> None:
    secret = grid.tmp / "secret2.txt"
    secret.write_bytes(b"must not reach an impostor\n")
    args = [str(secret) if a == "CAPFILE" else a for a in command]
    result = launcher(grid, *args)
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert "refusing to send" in out, out
    assert f"pid {impostor.pid}" in out, out  # the holder is named
    accepted, received = impostor.settle()
    assert accepted >= 1, out  # the connection was made, and checked...
    assert received == 0  # ...and not one byte was sent on it


def test_control_plain_tahoe_sends_to_the_impostor(grid: Grid, impostor: LoggingServer) -> None:
    secret = grid.tmp / "secret3.txt"
    secret.write_bytes(b"plain tahoe sends this to whoever listens\n")
    launcher(grid, "put", str(secret), plain=True)
    accepted, received = impostor.settle()
    assert accepted >= 1 and received > 0, (accepted, received)


def test_a_reused_pid_is_not_the_node(grid: Grid, impostor: LoggingServer) -> None:
    """running.process names the impostor's pid (as if the node's pid had been reused)
    with the node's recorded start time, not the impostor's: refused, zero bytes.  The
    control: with the impostor's own start time it *is* the recorded process, and the
    request goes through -- the start time is what told them apart."""
    import psutil

    pidfile = grid.store.basedir / "running.process"
    node_started = float(pidfile.read_text().split()[1])
    pidfile.write_text(f"{impostor.pid} {node_started}\n")
    secret = grid.tmp / "secret4.txt"
    secret.write_bytes(b"not for a reused pid\n")
    result = launcher(grid, "put", str(secret))
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert "reused pid" in out and f"pid {impostor.pid}" in out, out
    accepted, received = impostor.settle()
    assert accepted >= 1 and received == 0, (accepted, received)
    # control: the impostor's real start time makes it the process running.process names
    pidfile.write_text(f"{impostor.pid} {psutil.Process(impostor.pid).create_time()}\n")
    launcher(grid, "put", str(secret))
    accepted, received = impostor.settle()
    assert received > 0, (accepted, received)


def test_the_node_back_up_works_again(grid: Grid) -> None:
    grid.ensure_running()
    ls = launcher(grid, "ls", "tahoe:")
    assert ls.returncode == 0, ls.stderr
    assert "secret.txt" in ls.stdout.split()
