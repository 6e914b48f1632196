"""Attackers of issue 13, written against what a user sees only: endpoint strings,
the CLI, sockets.  Each attacker runs as uid 65534 (``setpriv``) where the attack is
another user's.

- :class:`Spinner` -- tests/support/spinner.c: spins on ``bind()`` of one address
  while armed; the re-guard race.
- :class:`Holder` -- a process (system python, stdlib only) that binds, and
  optionally listens on, an address with chosen options, and keeps it.
- :func:`free_port` -- a port free in both families, outside the ephemeral range.
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


def _free(family: int, host: str, port: int) -> bool:
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        if family == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
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
        if _free(socket.AF_INET, "0.0.0.0", port) and _free(socket.AF_INET6, "::", port):
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


_HOLDER = r"""
import os, socket, sys
host, port, v6only, reuseaddr, do_listen, forks = (
    sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6]))
fam = socket.AF_INET6 if ":" in host else socket.AF_INET
s = socket.socket(fam, socket.SOCK_STREAM)
if fam == socket.AF_INET6 and v6only != "-":
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(v6only))
if reuseaddr == "1":
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind((host, port))
    if do_listen == "1":
        s.listen(8)
except OSError as e:
    print("FAILED", e.errno, flush=True)
    sys.exit(0)
children = []
for _ in range(forks):  # children inherit the socket, as a fork without exec does
    pid = os.fork()
    if pid == 0:
        sys.stdin.read()
        os._exit(0)
    children.append(pid)
print("HOLDING", os.getpid(), os.getuid(), *children, flush=True)
sys.stdin.read()
"""


class Holder:
    """A process that binds (and with ``listen`` listens on) host:port and keeps it
    until :meth:`stop`.  ``v6only``: None leaves the OS default, else 0/1."""

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
        python = SYSTEM_PYTHON if os.path.exists(SYSTEM_PYTHON) else sys.executable
        argv = [python, "-I", "-S", "-c", _HOLDER, host, str(port),
                "-" if v6only is None else str(v6only), "1" if reuseaddr else "0",
                "1" if listen else "0", str(forks)]
        if uid is not None:
            argv = nobody(argv)
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd="/", text=True
        )
        assert self.proc.stdout is not None
        words = self.proc.stdout.readline().split()
        if not words or words[0] != "HOLDING":
            self.stop()
            raise RuntimeError(f"holder could not take {host}:{port}: {words}")
        self.pid = int(words[1])
        self.uid = int(words[2])
        self.children = [int(w) for w in words[3:]]

    def stop(self) -> None:
        for child in getattr(self, "children", []):
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            if f is not None:
                f.close()


def cli(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """``python -m twisted_patch ARGS`` (this interpreter, the installed package)."""
    return subprocess.run(
        [sys.executable, "-m", "twisted_patch", *args],
        capture_output=True, text=True, cwd="/", timeout=timeout,
    )
