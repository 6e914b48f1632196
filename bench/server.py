"""A trivial Twisted HTTP server for the benchmarks: ``server.py ENDPOINT [--discover=PREFIX]``.

ENDPOINT is a server endpoint string (``tcp:0:interface=127.0.0.1`` or
``xtcp:0:interface=127.0.0.1``); nothing else differs between the two runs.
The server answers every request with a fixed 2-byte body, keeps the
connection open unless the request says ``Connection: close``, prints
``LISTENING <port>`` once it listens (the parent reads its memory from /proc).
SIGTERM stops it (Twisted's default handler).

``--discover=PREFIX`` first runs Twisted's plugin discovery of endpoint-string
parsers the way ``serverFromString`` runs it for a prefix it does not know
itself: load the plugins one by one until one has that prefix (``xtcp``: the
scan an ``xtcp:`` string makes, which stops at twisted-patch's plugin file;
a prefix no plugin has: every endpoint plugin installed).  The controls of
bench/memory.py: they pay the scan without using any plugin; the server exits
with an error if the scan imported twisted-patch's runtime (the plugin file
must not).

The protocol is deliberately minimal (not twisted.web) so that accepting and
serving connections -- which is Twisted's own ``tcp.Port`` code in both runs --
is a large share of the work and a difference would show.
"""

from __future__ import annotations

import resource
import sys

from twisted.internet import endpoints, protocol, reactor

RESPONSE_KEEP = (
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"
)
RESPONSE_CLOSE = (
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n"
    b"Connection: close\r\n\r\nok"
)


class TinyHTTP(protocol.Protocol):
    def connectionMade(self) -> None:
        self.buf = b""

    def dataReceived(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head, self.buf = self.buf[:end], self.buf[end + 4:]
            if b"connection: close" in head.lower():
                self.transport.write(RESPONSE_CLOSE)
                self.transport.loseConnection()
                return
            self.transport.write(RESPONSE_KEEP)


def discover(prefix: str) -> None:
    from twisted.internet.interfaces import IStreamServerEndpointStringParser
    from twisted.plugin import getPlugins

    for plugin in getPlugins(IStreamServerEndpointStringParser):
        if plugin.prefix.lower() == prefix.lower():
            break
    loaded = [m for m in ("twisted_patch._native", "twisted_patch.endpoint") if m in sys.modules]
    if loaded:
        sys.exit(f"the plugin scan imported {loaded}: not a control")


def main() -> None:
    description = sys.argv[1]
    for arg in sys.argv[2:]:
        if arg.startswith("--discover="):
            discover(arg.split("=", 1)[1])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 8192 and hard != soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(8192, hard), hard))
    factory = protocol.Factory.forProtocol(TinyHTTP)
    endpoint = endpoints.serverFromString(reactor, description)
    d = endpoint.listen(factory)

    def listening(port: object) -> None:
        print(f"LISTENING {port.getHost().port}", flush=True)  # type: ignore[attr-defined]

    def failed(failure: object) -> None:
        print(f"FAILED {failure}", flush=True)
        reactor.stop()

    d.addCallbacks(listening, failed)
    reactor.run()


if __name__ == "__main__":
    main()
