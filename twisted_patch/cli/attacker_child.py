"""A local attacker, run as a separate process by ``twisted-patch probe`` and the tests.

Uses only the standard library (it may run as another user, from any Python),
and is run as a script: ``python attacker_child.py JSON`` (or with ``-c`` and its
source).  JSON describes the binds: ``{"family": 4|6, "host": "...", "port": P,
"options": ["reuseaddr", ...], "v6only": true|false, "listen": true, "wait": SECONDS}``;
``"hosts": [...]`` instead of ``host`` binds each of them on the same port (``0``:
the one the first bind got; ``"dual:::"`` is ``[::]`` without IPV6_V6ONLY);
``"v6only": null`` leaves the OS default; ``"forks": N`` (POSIX) starts N children
that inherit the sockets, as a fork without exec does, and keep them.

It prints one JSON line when the bind/listen attempt is over:
``{"bound": bool, "listening": bool, "port": P, "uid": U, "pid": PID, "children": [...],
"stage": "bind"|"listen"|null, "errno": int|null, "error": str|null}``.  Then, if
listening, by ``then``:

- ``"once"`` (default): waits up to ``wait`` seconds for one connection and prints
  ``{"accepted": bool, "peer": ...}``, then exits;
- ``"serve"``: accepts connections until killed, sending ``reply`` (text) to each;
- ``"hold"``: keeps the sockets until its standard input closes.

The parent ends it by its pid in every case.
"""

from __future__ import annotations

import errno as errno_module
import json
import os
import select
import socket
import sys
from typing import Any

_OPTIONS = {
    "reuseaddr": ("SOL_SOCKET", "SO_REUSEADDR"),
    "reuseport": ("SOL_SOCKET", "SO_REUSEPORT"),
    "exclusiveaddruse": ("SOL_SOCKET", "SO_EXCLUSIVEADDRUSE"),
}


def _say(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _error_name(code: int) -> str:
    return errno_module.errorcode.get(code, str(code))


def _uid() -> int | None:
    getuid = getattr(os, "getuid", None)
    return getuid() if getuid is not None else None


def _open(
    spec: dict[str, Any], host: str, port: int
) -> tuple[socket.socket | None, dict[str, Any]]:
    dual = host.startswith("dual:")
    host = host[5:] if dual else host
    if "hosts" in spec:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
    else:
        family = socket.AF_INET6 if spec["family"] == 6 else socket.AF_INET
    stage = "socket"
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        stage = "option"
        for name in spec.get("options", []):
            level_name, opt_name = _OPTIONS[name]
            opt = getattr(socket, opt_name, None)
            if opt is None:
                s.close()
                return None, {"bound": False, "listening": False, "stage": "option",
                              "errno": None, "error": f"{opt_name} does not exist on this OS",
                              "unsupported": True}
            s.setsockopt(getattr(socket, level_name), opt, 1)
        wanted = spec.get("v6only", True)
        if family == socket.AF_INET6 and (dual or wanted is not None):
            v6only = 0 if dual or not wanted else 1
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, v6only)
        stage = "bind"
        s.bind((host, port))
        if spec.get("listen", True):
            stage = "listen"
            s.listen(16)
    except OSError as e:
        code = e.errno if e.errno is not None else 0
        s.close()
        return None, {"bound": stage == "listen", "listening": False, "stage": stage,
                      "errno": code, "error": f"{_error_name(code)}: {e.strerror}"}
    return s, {}


def run(spec: dict[str, Any]) -> int:
    hosts = spec.get("hosts") or [spec["host"]]
    port = int(spec["port"])
    socks: list[socket.socket] = []
    for host in hosts:
        s, failed = _open(spec, host, port)
        if s is None:
            for other in socks:
                other.close()
            _say({**failed, "uid": _uid(), "host": host})
            return 0
        socks.append(s)
        port = s.getsockname()[1]
    listening = bool(spec.get("listen", True))
    children = []
    for _ in range(int(spec.get("forks", 0))):
        pid = os.fork()
        if pid == 0:  # holds the inherited sockets until stdin closes or it is killed
            sys.stdin.read()
            os._exit(0)
        children.append(pid)
    _say({"bound": True, "listening": listening, "stage": None, "errno": None, "error": None,
          "port": port, "uid": _uid(), "pid": os.getpid(), "children": children})
    then = spec.get("then", "once")
    try:
        if not listening or then == "hold":
            sys.stdin.read()
        elif then == "serve":
            reply = str(spec.get("reply", "")).encode()
            while True:
                readable, _, _ = select.select(socks, [], [])
                for s in readable:
                    conn, _ = s.accept()
                    if reply:
                        conn.sendall(reply)
                    conn.close()
        else:
            readable, _, _ = select.select(socks, [], [], float(spec.get("wait", 3.0)))
            if readable:
                conn, peer = readable[0].accept()
                conn.close()
                _say({"accepted": True, "peer": str(peer[0])})
            else:
                _say({"accepted": False, "peer": None})
    finally:
        for s in socks:
            s.close()
    return 0


if __name__ == "__main__":
    sys.exit(run(json.loads(sys.argv[1])))
