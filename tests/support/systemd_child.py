"""A Twisted server for tests/test_systemd.py, started by a socket-activation supervisor.

``python systemd_child.py STATUS ENDPOINT...``: listens on each endpoint string
(serverFromString), answers every connection with ``served by PID``, and writes
STATUS (JSON, atomically): its pid, each listener (address, socket inode,
whether its descriptor is inheritable) or the error, and the inodes of the
inherited descriptors 3.. (LISTEN_FDS as the supervisor set it).  Exits 3 after
writing STATUS if any endpoint failed; else serves until SIGTERM.  Its twisted
log goes to stdout.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any


def inherited_inodes(count: int) -> dict[str, int | None]:
    found: dict[str, int | None] = {}
    for fd in range(3, 3 + count):
        try:
            found[str(fd)] = os.fstat(fd).st_ino
            INHERITABLE[str(fd)] = os.get_inheritable(fd)
        except OSError:
            found[str(fd)] = None
    return found


INHERITABLE: dict[str, bool] = {}  # as the supervisor passed them


# Before importing twisted.internet.endpoints: it removes LISTEN_FDS from the environment.
INODES = inherited_inodes(int(os.environ.get("LISTEN_FDS", "0") or 0))

from twisted.internet import defer, endpoints, protocol, reactor  # noqa: E402
from twisted.logger import globalLogBeginner, textFileLogObserver  # noqa: E402


class Hello(protocol.Protocol):
    def connectionMade(self) -> None:
        self.transport.write(f"served by {os.getpid()}\n".encode())
        self.transport.loseConnection()


def main() -> None:
    status_path = sys.argv[1]
    inodes = INODES
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)])
    factory = protocol.Factory.forProtocol(Hello)
    results: list[dict[str, Any]] = []

    def listened(port: Any, description: str) -> None:
        host = port.getHost()
        fd = port.fileno()
        results.append({"endpoint": description, "host": host.host, "port": host.port,
                        "inode": os.fstat(fd).st_ino, "inheritable": os.get_inheritable(fd),
                        "class": type(port).__name__})

    def failed(failure: Any, description: str) -> None:
        results.append({"endpoint": description,
                        "error": f"{failure.type.__name__}: {failure.value}"})

    ds = []
    for description in sys.argv[2:]:
        try:
            endpoint = endpoints.serverFromString(reactor, description)
        except Exception as e:  # noqa: BLE001 -- reported in STATUS
            results.append({"endpoint": description, "error": f"{type(e).__name__}: {e}"})
            continue
        d = endpoint.listen(factory)
        d.addCallbacks(listened, failed, callbackArgs=(description,), errbackArgs=(description,))
        ds.append(d)

    def report(_: object) -> None:
        status = {"pid": os.getpid(), "results": results, "inherited": inodes,
                  "inheritable_before": INHERITABLE}
        with open(status_path + ".tmp", "w") as f:
            json.dump(status, f)
        os.rename(status_path + ".tmp", status_path)
        sys.stdout.flush()
        if any("error" in r for r in results):
            os._exit(3)

    defer.DeferredList(ds).addCallback(report)
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
