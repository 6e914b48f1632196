"""Attackers of issue 13, written against what a user sees only: endpoint strings,
the CLI, sockets.  Each attacker runs as uid 65534 (``setpriv``) where the attack is
another user's.

- :class:`Spinner` -- tests/support/spinner.c: spins on ``bind()`` of one address
  while armed; the re-guard race.
- :class:`Holder` -- the project's attacker child (stdlib only) binding, and
  optionally listening on, an address with chosen options, and keeping it.
- :func:`free_port` -- a port free in both families, outside the ephemeral range;
  :func:`can_bind` -- whether a fresh socket can bind an address now.
- :func:`cli` -- ``python -m twisted_patch ...``.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

NOBODY = 65534
HERE = Path(__file__).resolve().parent
SYSTEM_PYTHON = "/usr/bin/python3"  # readable by uid 65534, unlike a venv under /root


def as_nobody_reason() -> str | None:
    """None if we can run processes as uid 65534, else why not (a skip reason)."""
    if not sys.platform.startswith("linux"):
        return "Linux only (setpriv, sock_diag)"
    if os.geteuid() != 0:
        return "needs root to start an attacker as uid 65534 (setpriv)"
    if shutil.which("setpriv") is None:
        return "setpriv (util-linux) is not installed"
    return None


def nobody(argv: list[str]) -> list[str]:
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *argv]


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def can_bind(host: str, port: int, reuseaddr: bool = False) -> bool:
    """Whether a fresh socket (no SO_REUSEADDR by default) can bind host:port now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        if family == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if reuseaddr:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def free_port() -> int:
    """A port nothing holds in either family (wildcards included), below the
    ephemeral range so that no outgoing connection takes it meanwhile."""
    low = _ephemeral_low()
    rng = random.Random()
    for _ in range(500):
        port = rng.randrange(20000, low)
        if can_bind("0.0.0.0", port) and can_bind("::", port):
            return port
    raise RuntimeError("no free port found")


def build_c(source: Path, directory: Path, name: str) -> Path:
    names = (os.environ.get("CC", ""), "cc", "gcc", "clang")
    cc = next((c for c in names if c and shutil.which(c)), None)
    if cc is None:
        raise RuntimeError("no C compiler to build a test attacker")
    out = directory / name
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    proc = subprocess.run(
        [cc, "-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(out), str(source)],
        capture_output=True, text=True, env=env,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"building {source.name} failed:\n{proc.stderr}")
    out.chmod(0o755)
    return out


def world_readable_dir(prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


def build_spinner(directory: Path) -> Path:
    return build_c(HERE / "spinner.c", directory, "spinner")


class Spinner:
    """tests/support/spinner.c as uid 65534, spinning on bind(host:port) while armed."""

    def __init__(self, binary: Path, host: str, port: int, uid: int | None = NOBODY) -> None:
        argv = [str(binary), host, str(port)]
        if uid is not None:
            argv = nobody(argv)
        env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd="/", env=env, bufsize=0
        )
        assert self.proc.stdout is not None and self.proc.stdin is not None
        self._in = self.proc.stdin
        self._out = self.proc.stdout
        line = self._out.readline()
        if line != b"ready\n":
            self.close()
            raise RuntimeError(f"spinner did not start: {line!r}")

    def _ask(self, command: bytes) -> bytes:
        self._in.write(command)
        self._in.flush()
        reply = self._out.read(1)
        if not reply:
            code = self.proc.wait()
            raise RuntimeError(f"spinner exited ({code}) on {command!r}")
        return reply

    def arm(self) -> None:
        """Start spinning; returns once the attacker is in its bind loop."""
        assert self._ask(b"g") == b"a"

    def stop(self) -> bool:
        """Stop spinning; True if a bind succeeded (the attacker then holds the address)."""
        reply = self._ask(b"s")
        assert reply in (b"W", b"L"), reply
        return reply == b"W"

    def release(self) -> None:
        assert self._ask(b"r") == b"R"

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self._in.write(b"q")
                self._in.flush()
            except OSError:
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._in.close()
        self._out.close()


class Holder:
    """A process that binds (and with ``listen`` listens on) host:port and keeps it
    until :meth:`stop` (the project's one attacker child, ``"then": "hold"``).
    ``v6only``: None leaves the OS default, else 0/1; ``forks``: children that
    inherit the socket."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        listen: bool,
        reuseaddr: bool = False,
        v6only: int | None = 1,
        uid: int | None = NOBODY,
        forks: int = 0,
    ) -> None:
        from twisted_patch.cli.attacks import AttackerProcess

        spec = {"hosts": [host], "port": port, "listen": listen, "then": "hold",
                "options": ["reuseaddr"] if reuseaddr else [],
                "v6only": None if v6only is None else bool(v6only), "forks": forks}
        self.host, self.port = host, port
        self.children: list[int] = []
        self._child = AttackerProcess(spec, uid=uid)
        self.proc = self._child.proc
        first = self._child.read()
        if not first.get("bound"):
            self.stop()
            raise RuntimeError(f"holder could not take {host}:{port}: {first}")
        self.pid = int(first["pid"])
        self.uid = int(first["uid"])
        self.children = [int(c) for c in first["children"]]

    def stop(self) -> None:
        for child in self.children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
        self._child.close()


def cli(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """``python -m twisted_patch ARGS`` (this interpreter, the installed package)."""
    return subprocess.run(
        [sys.executable, "-m", "twisted_patch", *args],
        capture_output=True, text=True, cwd="/", timeout=timeout,
    )
