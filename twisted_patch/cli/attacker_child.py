"""A local attacker, run as a separate process by ``twisted-patch probe`` and the tests.

Uses only the standard library (it may run as another user, from any Python),
and is run as a script: ``python attacker_child.py JSON``.  JSON describes one bind:
``{"family": 4|6, "host": "...", "port": P, "options": ["reuseaddr", ...],
"v6only": true|false, "listen": true, "wait": SECONDS}``.

It prints one JSON line when the bind/listen attempt is over:
``{"bound": bool, "listening": bool, "stage": "bind"|"listen"|null, "errno": int|null,
"error": str|null}``; if listening, it then waits up to ``wait`` seconds for a
connection and prints ``{"accepted": bool, "peer": ...}``.  It exits by itself;
the parent also kills it by pid.
"""

from __future__ import annotations

import errno as errno_module
import json
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


def run(spec: dict[str, Any]) -> int:
    family = socket.AF_INET6 if spec["family"] == 6 else socket.AF_INET
    stage = "socket"
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        stage = "option"
        for name in spec.get("options", []):
            level_name, opt_name = _OPTIONS[name]
            opt = getattr(socket, opt_name, None)
            if opt is None:
                _say({"bound": False, "listening": False, "stage": "option", "errno": None,
                      "error": f"{opt_name} does not exist on this OS", "unsupported": True})
                return 0
            s.setsockopt(getattr(socket, level_name), opt, 1)
        if family == socket.AF_INET6:
            v6only = 1 if spec.get("v6only", True) else 0
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, v6only)
        stage = "bind"
        s.bind((spec["host"], spec["port"]))
        if not spec.get("listen", True):
            _say({"bound": True, "listening": False, "stage": None, "errno": None, "error": None})
            return 0
        stage = "listen"
        s.listen(16)
    except OSError as e:
        code = e.errno if e.errno is not None else 0
        _say({"bound": stage == "listen", "listening": False, "stage": stage, "errno": code,
              "error": f"{_error_name(code)}: {e.strerror}"})
        s.close()
        return 0
    _say({"bound": True, "listening": True, "stage": None, "errno": None, "error": None,
          "port": s.getsockname()[1]})
    try:
        readable, _, _ = select.select([s], [], [], float(spec.get("wait", 3.0)))
        if readable:
            conn, peer = s.accept()
            conn.close()
            _say({"accepted": True, "peer": str(peer[0])})
        else:
            _say({"accepted": False, "peer": None})
    finally:
        s.close()
    return 0


if __name__ == "__main__":
    sys.exit(run(json.loads(sys.argv[1])))
