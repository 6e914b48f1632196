"""A logging TCP server in a child process: the impostor of the verified-connection tests.

The child (``python -I``, stdlib only, so that uid 65534 can run it too) listens
on 127.0.0.1, accepts (unless told not to), logs every accept and every byte it
receives, and answers each request with an HTTP 200 "ok".  It exits when its
stdin closes; :meth:`LoggingServer.stop` ends it by its pid.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable

_SERVER = r"""
import select, socket, sys
port, accept, log = int(sys.argv[1]), sys.argv[2] == "1", open(sys.argv[3], "a", buffering=1)
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port))
s.listen(16)
print(s.getsockname()[1], flush=True)
conns = []
while True:
    ready, _, _ = select.select(([s] if accept else []) + conns + [sys.stdin], [], [])
    for r in ready:
        if r is sys.stdin:
            sys.exit(0)
        if r is s:
            c, _ = s.accept(); conns.append(c); log.write("accepted\n")
            continue
        data = r.recv(65536)
        if data:
            log.write(f"bytes {len(data)}\n")
            r.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        else:
            conns.remove(r); r.close()
"""


class LoggingServer:
    """Listens on 127.0.0.1:`port` (0: a free one, then in .port), logging into `log`
    (created writable for any uid); as `uid` (setpriv) when given."""

    def __init__(self, log: Path, port: int = 0, *, accept: bool = True,
                 uid: int | None = None) -> None:
        self.log = log
        self.log.write_text("")
        self.log.chmod(0o666)
        argv = [PYTHON, "-I", "-c", _SERVER, str(port), "1" if accept else "0", str(self.log)]
        if uid is not None:
            argv = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", *argv]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if not line.isdigit():
            err = self.proc.stderr.read() if self.proc.stderr else ""
            self.stop()
            raise RuntimeError(f"server could not listen on 127.0.0.1:{port}: {line} {err}")
        self.port = int(line)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def received(self) -> tuple[int, int]:
        """(connections accepted, bytes received) so far."""
        lines = self.log.read_text().splitlines()
        return (lines.count("accepted"),
                sum(int(x.split()[1]) for x in lines if x.startswith("bytes ")))

    def settle(self) -> tuple[int, int]:
        """What it received, once its log stops changing (it may be reading still)."""
        last = self.received()
        while True:
            time.sleep(0.2)
            now = self.received()
            if now == last:
                return now
            last = now

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=15)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
