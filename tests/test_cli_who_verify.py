"""``twisted-patch who`` and ``twisted-patch verify``, run as the installed command."""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

import pytest
from support.owner import IS_ROOT, NOBODY, SETPRIV, listening, listening_pair, run_cli

import twisted_patch
from twisted_patch.cli import main


class Result:
    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    """The command run in this process (fast); a few tests run the installed command."""

    def run(*args: str) -> Result:
        capsys.readouterr()
        try:
            code = main(list(args))
        except SystemExit as e:  # argparse errors
            code = int(e.code or 0)
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return run

LINUX = sys.platform.startswith("linux")
linux_only = pytest.mark.skipif(
    not LINUX, reason="compares with /proc/PID/comm and POSIX users (Windows: "
    "test_windows_product.py::test_console_who_and_verify)")
needs_reuseport = pytest.mark.skipif(
    not hasattr(socket, "SO_REUSEPORT"),
    reason=f"two listener processes on one address need SO_REUSEPORT ({sys.platform} has none)")
needs_root = pytest.mark.skipif(
    not (IS_ROOT and SETPRIV), reason="needs root and setpriv to run a listener as another uid"
)


@linux_only
def test_who_table_and_json() -> None:
    import pwd

    with listening_pair(["127.0.0.1"], ["::1"]) as (child, child6):
        table = run_cli("who", f"127.0.0.1:{child.port}")
        assert table.returncode == 0, table.stderr
        lines = table.stdout.splitlines()
        assert lines[0].split() == ["ADDRESS", "PORT", "UID", "USER", "PIDS", "NAMES"]
        assert len(lines) == 2  # only the listener that receives 127.0.0.1 connections
        assert lines[1].split() == [
            "127.0.0.1", str(child.port), str(os.getuid()), pwd.getpwuid(os.getuid()).pw_name,
            str(child.pid), child.comm(),
        ]
        both = run_cli("who", str(child.port))
        assert both.returncode == 0
        assert len(both.stdout.splitlines()) == 3
        assert both.stdout.splitlines()[2].split()[:2] == ["[::1]", str(child.port)]
        js = run_cli("who", f"http://[::1]:{child.port}/", "--json")
        assert js.returncode == 0, js.stderr
        data = json.loads(js.stdout)
        assert [d["pids"] for d in data] == [[child6.pid]]
        assert data[0]["family"] == "IPv6" and data[0]["address"] == f"[::1]:{child.port}"
        assert data == [x.to_dict() for x in twisted_patch.who("::1", child.port)]


def test_who_nothing_and_errors(cli) -> None:  # type: ignore[no-untyped-def]
    with listening(["127.0.0.1"]) as child:
        port = child.port
    none = cli("who", f"127.0.0.1:{port}")
    assert none.returncode == 1
    assert "nothing is listening" in none.stderr
    assert cli("who", f"127.0.0.1:{port}", "--json").stdout.strip() == "[]"
    for bad, message in [
        ("localhost:80", "127.0.0.1 or ::1"),
        ("::1:80", "brackets"),
        ("127.0.0.1", "no port"),
        ("127.0.0.1:0", "out of range"),
    ]:
        out = cli("who", bad)
        assert out.returncode == 2, (bad, out)
        assert message in out.stderr
        assert "Traceback" not in out.stderr


@needs_root
def test_verify_impostor_and_real_server(cli) -> None:  # type: ignore[no-untyped-def]
    with listening_pair(["127.0.0.1"], ["::1"], uid=NOBODY) as (real, impostor):
        ok = run_cli("verify", f"127.0.0.1:{real.port}", "--pid", str(real.pid))  # installed
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert "owned as expected" in ok.stdout
        assert cli("verify", f"127.0.0.1:{real.port}").returncode == 0  # our uid (root)
        bad = run_cli("verify", f"[::1]:{real.port}", "--pid", str(real.pid))  # installed
        assert bad.returncode == 1
        assert f"pid {impostor.pid}" in bad.stdout and "user nobody" in bad.stdout
        assert cli("verify", f"[::1]:{real.port}").returncode == 1  # not our uid
        assert cli("verify", f"[::1]:{real.port}", "--uid", str(NOBODY)).returncode == 0
        assert cli("verify", f"[::1]:{real.port}", "--user", "nobody").returncode == 0
        # every listener on the port: the impostor is among them
        assert cli("verify", str(real.port), "--pid", str(real.pid)).returncode == 1
        quiet = cli("verify", "-q", f"[::1]:{real.port}", "--pid", str(real.pid))
        assert quiet.returncode == 1 and quiet.stdout == ""


def test_verify_errors(cli) -> None:  # type: ignore[no-untyped-def]
    with listening(["127.0.0.1"]) as child:
        port = child.port
    nothing = cli("verify", f"127.0.0.1:{port}")
    assert nothing.returncode == 2
    assert "nothing is listening" in nothing.stderr
    assert cli("verify", "localhost:80").returncode == 2
    assert cli("verify").returncode == 2
    both = cli("verify", "127.0.0.1:80", "--uid", "0", "--pid", "1")
    assert both.returncode == 2  # argparse: mutually exclusive
    neg = cli("verify", "127.0.0.1:80", "--pid", "-3")
    assert neg.returncode == 2 and "pid must be" in neg.stderr


def make_node(tmp_path: Path, port: int, pid: int, pidfile: str = "running.process") -> Path:
    node = tmp_path / "node"
    node.mkdir()
    (node / "node.url").write_text(f"http://127.0.0.1:{port}/\n")
    if pidfile == "running.process":
        # Tahoe 1.18+ (allmydata/util/pid.py): "PID CREATION_TIME\n", the time as
        # psutil's create_time() gives it; verify compares it with the process's own
        from twisted_patch.owner import process_start_time

        (node / pidfile).write_text(f"{pid} {process_start_time(pid)}\n")
    elif pidfile:
        (node / pidfile).write_text(f"{pid}\n")
    return node


@needs_reuseport
@pytest.mark.parametrize("pidfile", ["running.process", "twistd.pid"])
def test_verify_node_dir(tmp_path: Path, pidfile: str, cli) -> None:  # type: ignore[no-untyped-def]
    with listening(["127.0.0.1"], reuseport=True) as real:
        node = make_node(tmp_path, real.port, real.pid, pidfile)
        ok = cli("verify", "--node", str(node))
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert f"expected pid {real.pid}" in ok.stdout and pidfile in ok.stdout
        with listening(["127.0.0.1"], real.port, reuseport=True) as impostor:
            bad = cli("verify", "--node", str(node))
            assert bad.returncode == 1, bad.stdout + bad.stderr
            assert f"pid {impostor.pid}" in bad.stdout
    stale = cli("verify", "--node", str(node))  # the node is gone
    assert stale.returncode == 2 and "nothing is listening" in stale.stderr


def test_verify_node_dir_errors(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    missing = cli("verify", "--node", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "not a directory" in missing.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    out = cli("verify", "--node", str(empty))
    assert out.returncode == 2 and "node.url" in out.stderr
    node = make_node(tmp_path, 3456, 1, pidfile="")
    out = cli("verify", "--node", str(node))
    assert out.returncode == 2 and "running.process or twistd.pid" in out.stderr
    (node / "running.process").write_text("garbage\n")
    out = cli("verify", "--node", str(node))
    assert out.returncode == 2 and "does not start with a process id" in out.stderr
    out = cli("verify", "127.0.0.1:3456", "--node", str(node))
    assert out.returncode == 2
