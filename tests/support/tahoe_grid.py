"""A tiny real Tahoe-LAFS grid for the integration tests: one introducer, one storage node.

Everything is loopback only and lives in a temporary directory (also HOME).
Nodes run as ``tahoe run`` subprocesses and are always stopped by pid
(SIGTERM, then SIGKILL after a bound).  Listener ownership is read from the
kernel: ``twisted_patch.owner`` per port, ``ss -Hltnp`` per process.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from twisted_patch import owner
from twisted_patch.cli.attacks import has_ipv6_loopback as has_ipv6


def require_tahoe() -> None:
    """Skip the calling test module when tahoe-lafs is not installed.  It is only
    looked up, not imported: the nodes run in their own processes."""
    if importlib.util.find_spec("allmydata") is None:
        pytest.skip("tahoe-lafs is not installed: pip install '.[tahoe]' (make test does)",
                    allow_module_level=True)


STOP_BOUND = 15.0  # seconds between SIGTERM and SIGKILL
START_BOUND = 60.0  # seconds for node.url / a port to appear
ENV_BOUND = 30.0  # seconds for the storage server to be "connected"


def tahoe_command() -> list[str]:
    """``tahoe`` of the Python running the tests (the venv's)."""
    exe = Path(sys.executable).with_name("tahoe")
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-m", "allmydata.scripts.runner"]


def free_port() -> int:
    """A port free on 127.0.0.1 and on [::1] (when the host has IPv6) right now."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s4:
            s4.bind(("127.0.0.1", 0))
            port = int(s4.getsockname()[1])
            try:
                with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s6:
                    s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                    s6.bind(("::1", port))
            except OSError:
                if has_ipv6():
                    continue
            return port
    raise RuntimeError("no port free on both 127.0.0.1 and ::1")




# --- who listens ----------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    host: str
    port: int
    pids: tuple[int, ...]


_SS_USER = re.compile(r"pid=(\d+)")


def _ss(filter_args: list[str]) -> list[Seen]:
    out = subprocess.run(
        ["ss", "-Hltnp", *filter_args], capture_output=True, text=True, check=True
    ).stdout
    found = []
    for line in out.splitlines():
        fields = line.split()
        if len(fields) < 5:
            continue
        local = fields[3]
        host, _, port = local.rpartition(":")
        host = host.strip("[]")
        if "%" in host:
            host = host.split("%", 1)[0]
        if host == "*":
            host = "0.0.0.0"
        pids = tuple(int(p) for p in _SS_USER.findall(line))
        found.append(Seen(host, int(port), pids))
    return found


def listeners_on(port: int) -> list[Seen]:
    """Every TCP listener on ``port`` (both families) and the pids holding it
    (``twisted_patch.owner``: netlink sock_diag, not ss)."""
    return [Seen(item.host, item.port, tuple(item.pids)) for item in owner.listeners(port)]


def listeners_of(pid: int) -> list[Seen]:
    """Every TCP listener held by process ``pid`` (``ss -Hltnp``: the owner lookup
    answers per port, this question is per process)."""
    return [item for item in _ss([]) if pid in item.pids]


# --- nodes ----------------------------------------------------------------------


def run_tahoe(args: list[str], home: Path, timeout: float = 120.0) -> str:
    proc = subprocess.run(
        [*tahoe_command(), *args],
        env=node_env(home),
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"tahoe {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc.stdout


def node_env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["HOME"] = str(home)
    env.pop("PYTHONPATH", None)
    return env


def set_config(cfg: Path, section: str, values: dict[str, str]) -> None:
    """Set ``key = value`` lines in one section of tahoe.cfg (added if missing)."""
    lines = cfg.read_text().splitlines()
    out: list[str] = []
    current = None
    pending = dict(values)
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            if current == section and pending:
                out += [f"{k} = {v}" for k, v in pending.items()]
                pending.clear()
            current = stripped[1:-1]
        elif current == section and "=" in stripped and not stripped.startswith("#"):
            key = stripped.split("=", 1)[0].strip()
            if key in pending:
                out.append(f"{key} = {pending.pop(key)}")
                continue
        out.append(line)
    if pending:
        if current != section:
            out.append(f"[{section}]")
        out += [f"{k} = {v}" for k, v in pending.items()]
    cfg.write_text("\n".join(out) + "\n")


class Node:
    """One node directory and, while it runs, its ``tahoe run`` process."""

    def __init__(self, basedir: Path, home: Path) -> None:
        self.basedir = basedir
        self.home = home
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0
        self.stdout_path = basedir.parent / f"{basedir.name}.stdout"
        self.stderr_path = basedir.parent / f"{basedir.name}.stderr"

    @property
    def cfg(self) -> Path:
        return self.basedir / "tahoe.cfg"

    @property
    def pid(self) -> int:
        assert self.proc is not None, "node not started"
        return self.proc.pid

    def configure(self, **node_values: str) -> None:
        """Set lines of the [node] section, e.g. ``configure(**{"web.port": "xtcp:..."})``."""
        set_config(self.cfg, "node", node_values)

    def start(self, command: list[str] | None = None) -> None:
        """``tahoe run`` in the background; stdout/stderr go to files (one pair per run).

        ``command`` replaces ``tahoe`` (e.g. ``python -I -m twisted_patch.tahoe``)."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        # Both survive a stop: remove them so that waiting for them means this run.
        (self.basedir / "node.url").unlink(missing_ok=True)
        (self.basedir / "private" / "logport.furl").unlink(missing_ok=True)
        self.runs += 1
        self.stdout_path = self.basedir.parent / f"{self.basedir.name}.{self.runs}.stdout"
        self.stderr_path = self.basedir.parent / f"{self.basedir.name}.{self.runs}.stderr"
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                [*(command or tahoe_command()), "run", "--allow-stdin-close", str(self.basedir)],
                env=node_env(self.home),
                cwd=self.home,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_for_file(self, name: str, bound: float = START_BOUND) -> str:
        """The content of ``basedir/name`` once written; fails if the node exits first."""
        path = self.basedir / name
        deadline = time.monotonic() + bound
        while time.monotonic() < deadline:
            if path.exists() and path.stat().st_size > 0:
                return path.read_text()
            if not self.running():
                raise NodeExited(self, f"exited before writing {name}")
            time.sleep(0.05)
        raise TimeoutError(f"{path} not written within {bound} s\n{self.output()}")

    def wait_for_listener(self, port: int, bound: float = START_BOUND) -> None:
        deadline = time.monotonic() + bound
        while time.monotonic() < deadline:
            if any(self.pid in item.pids for item in listeners_on(port)):
                return
            if not self.running():
                raise NodeExited(self, f"exited before listening on {port}")
            time.sleep(0.05)
        raise TimeoutError(f"node pid {self.pid} not listening on {port} within {bound} s")

    def wait_exit(self, bound: float = START_BOUND) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=bound)

    @property
    def url(self) -> str:
        return (self.basedir / "node.url").read_text().strip()

    def output(self) -> str:
        out = self.stdout_path.read_text(errors="replace") if self.stdout_path.exists() else ""
        err = self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""
        return f"--- stdout ---\n{out}\n--- stderr ---\n{err}"

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop by pid: ``sig`` (SIGTERM), then SIGKILL after a bound; assert it is gone."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            os.kill(proc.pid, sig)
            try:
                proc.wait(timeout=STOP_BOUND)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=STOP_BOUND)
        assert proc.poll() is not None
        assert not _alive(proc.pid), f"node pid {proc.pid} still exists"

    def http(self, method: str, path: str, data: bytes | None = None) -> bytes:
        req = urllib.request.Request(self.url + path.lstrip("/"), data=data, method=method)
        with urllib.request.urlopen(req, timeout=30) as resp:
            body: bytes = resp.read()
            return body

    def status(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.http("GET", "?t=json"))
        return result

    def wait_connected(self, bound: float = ENV_BOUND) -> None:
        """Until the node sees a storage server as connected (its own, here)."""
        deadline = time.monotonic() + bound
        last: Any = None
        while time.monotonic() < deadline:
            last = self.status().get("servers")
            if last and any(
                # Tahoe 1.20 says "Connected to tcp:HOST:PORT via tcp"
                str(s.get("connection_status", "")).lower().startswith("connected")
                for s in last
            ):
                return
            time.sleep(0.1)
        raise TimeoutError(f"no storage server connected within {bound} s: {last}")


def _alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (our children are reaped by wait)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return state != "Z"


class NodeExited(RuntimeError):
    def __init__(self, node: Node, what: str) -> None:
        self.node = node
        super().__init__(f"node {node.basedir.name} {what}:\n{node.output()}")


def exclusive_listener_lines(log: str) -> list[str]:
    """The addresses ExclusivePort logged as ``twisted-patch: exclusive listener on ...``."""
    return re.findall(r"twisted-patch: exclusive listener on (\S+)", log)


def logport(node: Node) -> int | None:
    """The log Tub's port, from private/logport.furl (pb://ID@tcp:HOST:PORT,.../NAME);
    None if the file is not there (Tahoe deletes it at start and writes it anew)."""
    path = node.basedir / "private" / "logport.furl"
    if not path.exists():
        return None
    furl = path.read_text().strip()
    m = re.search(r"@(?:tcp:)?[^,/]*?:(\d+)", furl)
    assert m, furl
    return int(m.group(1))


def stop_all(nodes: Iterable[Node]) -> None:
    errors = []
    for node in nodes:
        try:
            node.stop()
        except Exception as e:  # noqa: BLE001 -- stop the others anyway
            errors.append(e)
    if errors:
        raise errors[0]


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def enable_sftpd(node: Node) -> None:
    """[sftpd] with a fresh host key and an (empty) accounts file: enough to listen."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    private = node.basedir / "private"
    (private / "ssh_host_key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
    )
    (private / "ssh_host_key.pub").write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
    )
    (private / "accounts").write_text("")
    set_config(
        node.cfg,
        "sftpd",
        {
            "enabled": "true",
            "host_pubkey_file": "private/ssh_host_key.pub",
            "host_privkey_file": "private/ssh_host_key",
            "accounts.file": "private/accounts",
        },
    )


# --- a process that holds a port ------------------------------------------------

class Squatter:
    """Another process of the same user listening on ``host:port`` until closed.

    Unlike ``twisted_patch.cli.attacks.AttackerProcess`` (which exits after its
    first accepted connection), it keeps the port whatever connects to it --
    a Tahoe node dials its own tub port, which would free the port mid-test.
    Always ended by its pid (``close``).
    """

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        from twisted_patch.cli.attacks import AttackerProcess

        self.port = port
        self._child = AttackerProcess({"hosts": [host], "port": port, "options": ["reuseaddr"],
                                       "then": "serve"})
        self.proc = self._child.proc
        first = self._child.read()
        if not first.get("listening"):
            self.close()
            raise RuntimeError(f"could not claim {host}:{port}: {first.get('error')}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def close(self) -> None:
        self._child.close()
        assert not _alive(self.proc.pid)

    def __enter__(self) -> Squatter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
