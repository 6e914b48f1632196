"""The attacks a local process can try on a listening port, run from another process.

Used by ``twisted-patch probe`` (the demo) and by the test suite.  Each attack
starts ``attacker_child.py`` as a separate process (optionally as another user via
``setpriv``), which binds and listens the way an attacker would; if it gets to
listen, a client then connects to the address the server's users would use,
and the attacker reports whether it received that connection.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twisted_patch.errors import format_address

WINDOWS = sys.platform == "win32"
NOBODY = 65534


@dataclass(frozen=True)
class Attack:
    """One bind an attacker tries against a server holding ``server_host:P``."""

    key: str
    title: str
    server: str  # "loopback" (server on 127.0.0.1) or "wildcard" (server on 0.0.0.0)
    family: int  # 4 or 6: the attacker's socket
    host: str  # the attacker's bind address
    connect_host: str  # where a victim client connects to see who answers
    options: tuple[str, ...] = ()
    other_uid: bool = False
    v6only: bool = True


@dataclass
class Outcome:
    """What happened: ``hijacked``, ``refused`` or ``n/a``; ``text`` says it in words."""

    result: str
    text: str
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def hijacked(self) -> bool:
        return self.result == "hijacked"


def standard_attacks() -> list[Attack]:
    """The attack set for this OS."""
    reuse = ["reuseaddr"]
    attacks = [
        Attack("same-plain", "bind 127.0.0.1:P, no option", "loopback", 4, "127.0.0.1",
               "127.0.0.1"),
        Attack("same-reuseaddr", "bind 127.0.0.1:P with SO_REUSEADDR", "loopback", 4,
               "127.0.0.1", "127.0.0.1", ("reuseaddr",)),
    ]
    if WINDOWS:
        attacks.append(Attack("same-exclusive", "bind 127.0.0.1:P with SO_EXCLUSIVEADDRUSE",
                              "loopback", 4, "127.0.0.1", "127.0.0.1", ("exclusiveaddruse",)))
    else:
        attacks += [
            Attack("same-reuseport", "bind 127.0.0.1:P with SO_REUSEPORT (same user)",
                   "loopback", 4, "127.0.0.1", "127.0.0.1", ("reuseport",)),
            Attack("same-reuseaddr-reuseport",
                   "bind 127.0.0.1:P with SO_REUSEADDR+SO_REUSEPORT (same user)", "loopback", 4,
                   "127.0.0.1", "127.0.0.1", ("reuseaddr", "reuseport")),
        ]
    attacks += [
        Attack("wildcard-over-specific", "bind 0.0.0.0:P over 127.0.0.1:P, SO_REUSEADDR",
               "loopback", 4, "0.0.0.0", "127.0.0.1", tuple(reuse)),
        Attack("v6-shadow", "IPv6 shadow: bind [::1]:P (browsers try ::1 for localhost)",
               "loopback", 6, "::1", "::1"),
        Attack("v6-wildcard-shadow", "IPv6 shadow: bind [::]:P v6-only", "loopback", 6, "::",
               "::1"),
        Attack("specific-over-wildcard", "bind 127.0.0.1:P over 0.0.0.0:P, no option",
               "wildcard", 4, "127.0.0.1", "127.0.0.1"),
        Attack("specific-over-wildcard-reuseaddr",
               "bind 127.0.0.1:P over 0.0.0.0:P with SO_REUSEADDR", "wildcard", 4, "127.0.0.1",
               "127.0.0.1", ("reuseaddr",)),
        Attack("v6-over-v4-wildcard", "IPv6 shadow: bind [::]:P v6-only over 0.0.0.0:P",
               "wildcard", 6, "::", "::1"),
    ]
    if not WINDOWS:
        attacks += [
            Attack("other-uid-same", "another user: bind 127.0.0.1:P, SO_REUSEADDR+SO_REUSEPORT",
                   "loopback", 4, "127.0.0.1", "127.0.0.1", ("reuseaddr", "reuseport"),
                   other_uid=True),
            Attack("other-uid-v6-shadow", "another user: bind [::1]:P", "loopback", 6, "::1",
                   "::1", other_uid=True),
        ]
    return attacks


_SETPRIV = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
_other_uid_python: list[str | None] = []


def other_uid_python() -> str | None:
    """A Python interpreter that uid 65534 can run (ours may live under /root)."""
    if not _other_uid_python:
        found = None
        for candidate in (sys.executable, shutil.which("python3"), "/usr/bin/python3"):
            if not candidate:
                continue
            try:
                ok = subprocess.run([*_SETPRIV, candidate, "-I", "-c", "pass"],
                                    capture_output=True, timeout=30).returncode == 0
            except (OSError, subprocess.TimeoutExpired):
                ok = False
            if ok:
                found = candidate
                break
        _other_uid_python.append(found)
    return _other_uid_python[0]


def can_switch_uid() -> str | None:
    """None if attacks can run as another uid here, else the reason they cannot."""
    if WINDOWS:
        return "another user cannot be impersonated here"
    if os.geteuid() != 0:
        return "needs root to run the attacker as uid 65534 (setpriv)"
    if shutil.which("setpriv") is None:
        return "setpriv (util-linux) is not installed"
    if other_uid_python() is None:
        return "no Python interpreter that uid 65534 may run"
    return None


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


class AttackerProcess:
    """A running ``attacker_child.py``; always ended by its pid (``close``).

    ``other_uid``: as uid 65534; ``uid``: as that uid (both through setpriv).
    The child's source is passed with ``-c``, so another uid needs no access to
    this installation.
    """

    def __init__(self, spec: dict[str, Any], other_uid: bool = False,
                 uid: int | None = None) -> None:
        source = Path(__file__).with_name("attacker_child.py").read_text(encoding="utf-8")
        if other_uid and uid is None:
            uid = NOBODY
        prefix: list[str] = []
        python = sys.executable
        if uid is not None:
            prefix = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
            python = other_uid_python() or sys.executable
        hold = spec.get("then") == "hold" or not spec.get("listen", True)
        self.proc = subprocess.Popen(
            [*prefix, python, "-I", "-c", source, json.dumps(spec)],
            stdout=subprocess.PIPE,
            stdin=subprocess.PIPE if hold else subprocess.DEVNULL,
            text=True,
            cwd="/",
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def read(self, timeout: float = 15.0) -> dict[str, Any]:
        assert self.proc.stdout is not None
        if not WINDOWS:
            ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
            if not ready:
                raise TimeoutError(f"attacker pid {self.pid} said nothing in {timeout} s")
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"attacker pid {self.pid} exited with {self.proc.wait()}")
        result: dict[str, Any] = json.loads(line)
        return result

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stdin):
            if stream is not None:
                stream.close()

    def __enter__(self) -> AttackerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect_once(host: str, port: int, timeout: float = 3.0) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as c:
            c.settimeout(timeout)
            c.connect((host, port))
        return True
    except OSError:
        return False


def run_attack(attack: Attack, port: int, wait: float = 3.0) -> Outcome:
    """Try ``attack`` against a server listening on port ``port``."""
    if attack.other_uid:
        reason = can_switch_uid()
        if reason is not None:
            return Outcome("n/a", f"n/a ({reason})")
    if attack.family == 6 and not has_ipv6_loopback():
        return Outcome("n/a", "n/a (no IPv6 on this host)")
    spec = {
        "family": attack.family,
        "host": attack.host,
        "port": port,
        "options": list(attack.options),
        "v6only": attack.v6only,
        "listen": True,
        "wait": wait,
    }
    with AttackerProcess(spec, other_uid=attack.other_uid) as attacker:
        first = attacker.read()
        if first.get("unsupported"):
            return Outcome("n/a", f"n/a ({first['error']})", first)
        if not first["listening"]:
            return Outcome("refused", f"refused: {first['stage']} {first['error']}", first)
        connected = connect_once(attack.connect_host, port)
        second = attacker.read(timeout=wait + 10)
        detail = {**first, **second, "client_connected": connected}
        if second.get("accepted"):
            return Outcome("hijacked",
                           f"HIJACKED: the attacker received a client of "
                           f"{format_address(attack.connect_host, port)}", detail)
        return Outcome("hijacked",
                       "HIJACKED: the attacker listens on the port (this connection went "
                       "elsewhere)", detail)


def preclaim_listener(host: str = "127.0.0.1") -> tuple[AttackerProcess, int]:
    """An attacker already listening on a fresh port of ``host`` (caller closes it)."""
    spec = {"family": 6 if ":" in host else 4, "host": host, "port": 0,
            "options": ["reuseaddr"], "listen": True, "wait": 30.0}
    attacker = AttackerProcess(spec)
    try:
        first = attacker.read()
    except BaseException:
        attacker.close()
        raise
    if not first["listening"]:
        attacker.close()
        raise RuntimeError(f"could not pre-claim a port: {first['error']}")
    return attacker, int(first["port"])


