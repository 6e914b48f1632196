"""Issue 13.3: ``verify --node`` checks the process, not just the pid.

A Tahoe node directory (owned by root) says, in node.url and running.process
("PID CREATION_TIME", as Tahoe's allmydata/util/pid.py writes it with psutil),
where the node listens and which process it is.  The impostors:

- pid reuse: the node died and another process now has its pid and listens on its
  port.  Instead of forking 32k times, running.process records the impostor's live
  pid with a creation time that is not the impostor's -- exactly what a reused pid
  looks like;
- another uid: the recorded pid and creation time are right, but the socket
  belongs to uid 65534 while the node directory belongs to root;
- another holder: the node's socket is also held by a child that inherited it.

Each must get exit status 1.  The controls (the same files, the right creation
time, the right owner, no other holder) get exit status 0: the check can pass.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import attackers as at

psutil = pytest.importorskip("psutil", reason="psutil writes Tahoe's running.process times")

pytestmark = pytest.mark.skipif(at.as_nobody_reason() is not None,
                                reason=at.as_nobody_reason() or "")


def make_node(directory: Path, port: int, pid: int, created: float) -> Path:
    directory.mkdir()
    (directory / "node.url").write_text(f"http://127.0.0.1:{port}/\n")
    (directory / "running.process").write_text(f"{pid} {created}\n")
    return directory


@pytest.fixture
def port() -> Iterator[int]:
    yield at.free_port()


def verify(node: Path) -> tuple[int, str]:
    proc = at.cli("verify", "--node", str(node))
    return proc.returncode, proc.stdout + proc.stderr


def test_control_the_real_node_passes(tmp_path: Path, port: int) -> None:
    holder = at.Holder("127.0.0.1", port, listen=True, uid=None)
    try:
        created = psutil.Process(holder.pid).create_time()
        code, out = verify(make_node(tmp_path / "node", port, holder.pid, created))
        assert code == 0, out
    finally:
        holder.stop()


@pytest.mark.parametrize("offset", [-3600.0, -5.0, 5.0], ids=["an-hour-earlier", "5s-earlier",
                                                              "5s-later"])
def test_reused_pid_is_an_impostor(tmp_path: Path, port: int, offset: float) -> None:
    holder = at.Holder("127.0.0.1", port, listen=True, uid=None)
    try:
        created = psutil.Process(holder.pid).create_time() + offset
        code, out = verify(make_node(tmp_path / "node", port, holder.pid, created))
        assert code == 1, out
        assert "start" in out and str(holder.pid) in out, out
    finally:
        holder.stop()


def test_socket_of_another_uid_is_an_impostor(tmp_path: Path, port: int) -> None:
    holder = at.Holder("127.0.0.1", port, listen=True, uid=at.NOBODY)
    try:
        created = psutil.Process(holder.pid).create_time()
        node = make_node(tmp_path / "node", port, holder.pid, created)
        assert os.stat(node).st_uid == 0
        code, out = verify(node)
        assert code == 1, out
        assert "65534" in out or "nobody" in out, out
        # control: the same node directory owned by uid 65534 is that uid's node
        os.chown(node, at.NOBODY, at.NOBODY)
        code, out = verify(node)
        assert code == 0, out
    finally:
        holder.stop()


def test_another_process_holding_the_socket_is_named(tmp_path: Path, port: int) -> None:
    holder = at.Holder("127.0.0.1", port, listen=True, uid=None, forks=1)
    try:
        created = psutil.Process(holder.pid).create_time()
        code, out = verify(make_node(tmp_path / "node", port, holder.pid, created))
        assert code == 1, out
        assert str(holder.children[0]) in out, out
    finally:
        holder.stop()
