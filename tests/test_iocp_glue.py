"""The glue of the exclusive-iocp reactor, run here with stand-ins for Twisted's IOCP modules.

Twisted's IOCP reactor exists only on Windows.  This runs ``ExclusiveIOCPPort``'s
code on this machine with minimal stand-ins for ``twisted.internet.iocpreactor``
(its ``Port`` base, ``iocpsupport.maxAddrLen`` and the reactor's completion
port), with the real core making the socket: it checks the order of the steps
(core socket -> completion port -> accept), what the port records, and that the
socket is closed when a step fails.  It does not replace a run on Windows.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from enabling_helpers import run_python, summary

STANDINS = textwrap.dedent(
    """
    import socket, sys, types

    pkg = types.ModuleType("twisted.internet.iocpreactor")
    pkg.__path__ = []
    support = types.ModuleType("twisted.internet.iocpreactor.iocpsupport")
    support.maxAddrLen = lambda fd: 128
    tcpmod = types.ModuleType("twisted.internet.iocpreactor.tcp")
    reactormod = types.ModuleType("twisted.internet.iocpreactor.reactor")

    class Port:  # the constructor contract of Twisted's IOCP Port
        addressFamily = socket.AF_INET
        _realPortNumber = None
        def __init__(self, port, factory, backlog=50, interface="", reactor=None):
            self.reactor, self.port, self.factory = reactor, port, factory
            self.backlog, self.interface = backlog, interface
        def doAccept(self):
            self.accepting = True

    class IOCPReactor:
        pass

    tcpmod.Port = Port
    reactormod.IOCPReactor = IOCPReactor
    pkg.iocpsupport, pkg.tcp, pkg.reactor = support, tcpmod, reactormod
    for m in (pkg, support, tcpmod, reactormod):
        sys.modules[m.__name__] = m

    class CompletionPort:
        def __init__(self, fail=False):
            self.handles, self.fail = [], fail
        def addHandle(self, handle):
            if self.fail:
                raise OSError(22, "association failed")
            self.handles.append(handle)

    class FakeReactor:
        def __init__(self, fail=False):
            self.port, self.active = CompletionPort(fail), []
        def addActiveHandle(self, p):
            self.active.append(p)

    class Factory:
        started = False
        def doStart(self):
            self.started = True
    """
)


def test_exclusive_iocp_port_glue(tmp_path: Path) -> None:
    code = STANDINS + textwrap.dedent(
        """
        import os
        from twisted.internet.error import CannotListenError
        from twisted_patch.iocpreactor import ExclusiveIOCPPort, ExclusiveIOCPReactor

        assert issubclass(ExclusiveIOCPReactor, IOCPReactor)
        reactor, factory = FakeReactor(), Factory()
        p = ExclusiveIOCPPort(0, factory, 5, "127.0.0.1", reactor)
        p.startListening()
        fd = p.socket.fileno()
        assert reactor.port.handles == [fd], reactor.port.handles
        assert reactor.active == [p] and factory.started and p.accepting and p.connected
        assert p.addrLen == 128 and p.getFileHandle() == fd
        assert p._realPortNumber == p.socket.getsockname()[1] != 0
        with socket.create_connection(("127.0.0.1", p._realPortNumber), timeout=10):
            pass  # the core's socket is listening
        assert os.get_inheritable(fd) is False
        p.socket.close()

        # A failing step closes the core's socket and raises; nothing is registered.
        def fds():
            return set(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else set()
        before = fds()
        bad = FakeReactor(fail=True)
        try:
            ExclusiveIOCPPort(0, Factory(), 5, "127.0.0.1", bad).startListening()
        except OSError as e:
            assert "association failed" in str(e)
        else:
            raise AssertionError("no error")
        assert fds() == before and bad.active == []

        # A busy port is the core's CannotListenError, as for ExclusivePort.
        holder = socket.socket()
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        try:
            ExclusiveIOCPPort(holder.getsockname()[1], Factory(), 5, "127.0.0.1",
                              FakeReactor()).startListening()
        except CannotListenError as e:
            assert "already in use" in str(e), e
        else:
            raise AssertionError("listened on a busy port")
        print("ok")
        """
    )
    result = run_python(code, tmp_path)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), summary(result)
