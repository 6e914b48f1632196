"""The exclusive-iocp reactor and install()'s IOCP path, run here with stand-ins.

Twisted's IOCP reactor exists only on Windows.  As in test_iocp_port.py, Twisted's
REAL ``iocpreactor.tcp.Port`` is loaded with a stand-in for the compiled
``iocpsupport`` module; the reactor module (which needs pywin32) is replaced by a
stand-in ``IOCPReactor`` with the methods the port calls.  The core makes the
socket for real.  Checked: ``ExclusiveIOCPReactor.listenTCP`` and the listenTCP
that ``install()`` puts on ``IOCPReactor`` return a ``DropInIOCPPort`` (the IOCP
exclusive port with the drop-in rules: a host name is resolved, SO_REUSEPORT is
refused).  This does not replace a run on Windows (see test_iocp_port.py).
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
from support.enabling import run_python, summary

SCRIPT = textwrap.dedent(
    """
    import errno, socket, sys, types
    from pathlib import Path
    import twisted.internet

    errno.WSAECONNREFUSED, errno.WSAENETUNREACH = 10061, 10051  # read by iocpreactor.tcp
    package = types.ModuleType("twisted.internet.iocpreactor")
    package.__path__ = [str(Path(twisted.internet.__file__).parent / "iocpreactor")]
    support = types.ModuleType("twisted.internet.iocpreactor.iocpsupport")
    support.maxAddrLen = lambda fd: 128
    support.accepts = []
    class Event:
        def __init__(self, callback, owner):
            self.callback, self.owner = callback, owner
    support.Event = Event
    def accept(listening, accepting, buff, evt):
        support.accepts.append(listening)
        return 997  # ERROR_IO_PENDING
    support.accept = accept
    reactor_module = types.ModuleType("twisted.internet.iocpreactor.reactor")
    class IOCPReactor:
        def __init__(self):
            self.registered, self.active = [], []
        def registerHandle(self, handle):
            self.registered.append(handle)
        def addActiveHandle(self, handle):
            self.active.append(handle)
        def createSocket(self, af, stype):
            skt = socket.socket(af, stype)
            self.registerHandle(skt.fileno())
            return skt
    IOCPReactor.__module__ = reactor_module.__name__
    reactor_module.IOCPReactor = IOCPReactor
    sys.modules[package.__name__] = package
    sys.modules[support.__name__] = support
    sys.modules[reactor_module.__name__] = reactor_module

    from twisted.internet import tcp
    from twisted.internet.error import CannotListenError
    from twisted.internet.iocpreactor import tcp as iocp_tcp
    from twisted.internet.protocol import Factory, Protocol
    from twisted_patch import patch
    from twisted_patch.iocpreactor import ExclusiveIOCPReactor
    from twisted_patch.port import port_class_for

    assert issubclass(ExclusiveIOCPReactor, IOCPReactor)
    DropInIOCPPort = port_class_for(IOCPReactor(), dropin=True)
    assert issubclass(DropInIOCPPort, iocp_tcp.Port)
    f = Factory.forProtocol(Protocol)

    def check(port, reactor, host):
        assert type(port) is DropInIOCPPort, type(port)
        fd = port.socket.fileno()
        # registered first (then the socket doAccept creates for the next connection)
        assert reactor.registered[0] == fd and port in reactor.active
        assert fd in support.accepts  # an AcceptEx on the core's socket
        assert port.socket.getsockname() == (host, port._realPortNumber)
        with socket.create_connection((host, port._realPortNumber), timeout=10):
            pass

    reactor = ExclusiveIOCPReactor()
    p = reactor.listenTCP(0, f, interface="localhost")
    check(p, reactor, "127.0.0.1")
    assert p.interface == "localhost"  # as tcp.Port keeps it
    if hasattr(tcp, "makeBinding"):
        try:
            reactor.listenTCP(tcp.makeBinding("127.0.0.1", 0, reusePort=True), f)
        except CannotListenError as e:
            assert "SO_REUSEPORT" in str(e), e
        else:
            raise AssertionError("reusePort=True was not refused")

    # The listenTCP install() puts on IOCPReactor on Windows.
    listen = patch._make_listen_tcp({})
    plain = IOCPReactor()
    p2 = listen(plain, 0, f, 5, "127.0.0.1")
    check(p2, plain, "127.0.0.1")
    print("ok")
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="Windows has the real IOCP reactor")
def test_exclusive_iocp_reactor_glue(tmp_path: Path) -> None:
    result = run_python(SCRIPT, tmp_path)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), summary(result)
