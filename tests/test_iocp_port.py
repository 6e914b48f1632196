"""Port class selection (select vs IOCP reactor) and the IOCP port's socket registration.

The IOCP reactor only runs on Windows.  Here (any OS) we check:
  * ``port_class_for`` picks the class from the reactor's class hierarchy, in one place;
  * ``IOCPExclusivePort`` -- a subclass of Twisted's REAL ``iocpreactor.tcp.Port``, loaded
    with a stand-in for the compiled ``iocpsupport`` module -- takes the core's socket and
    registers it the way the IOCP reactor registers its own: ``registerHandle`` with the
    socket's handle, ``addActiveHandle`` with the port, an ``AcceptEx`` on that handle; the
    reactor's ``createSocket`` is used only for the accepted connection, never for the
    listening socket.
On Windows (the CI workflow) a last test runs the real IOCP reactor end to end.
"""

from __future__ import annotations

import socket
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import protocol
from twisted.internet.error import CannotListenError

from twisted_patch import _native
from twisted_patch.endpoint import listen_exclusive
from twisted_patch.port import ExclusivePort, port_class_for, reactor_kind

ERROR_IO_PENDING = 997


def _fake_reactor_class(module: str, name: str) -> type:
    return type(name, (), {"__module__": module})


IOCPReactor = _fake_reactor_class("twisted.internet.iocpreactor.reactor", "IOCPReactor")


class SubclassOfIOCP(IOCPReactor):  # type: ignore[valid-type,misc]
    pass


@pytest.mark.parametrize(
    "module,name",
    [
        ("twisted.internet.selectreactor", "SelectReactor"),
        ("twisted.internet.pollreactor", "PollReactor"),
        ("twisted.internet.epollreactor", "EPollReactor"),
        ("twisted.internet.asyncioreactor", "AsyncioSelectorReactor"),
        ("twisted.internet.win32eventreactor", "Win32Reactor"),
        ("twisted.internet.iocpreactor.reactor", "SomethingElse"),
        ("elsewhere", "IOCPReactor"),
    ],
)
def test_non_iocp_reactors_get_exclusive_port(module: str, name: str) -> None:
    reactor = _fake_reactor_class(module, name)()
    assert reactor_kind(reactor) == "select"
    assert port_class_for(reactor) is ExclusivePort


def test_real_select_reactor_class() -> None:
    from twisted.internet.selectreactor import SelectReactor

    reactor = object.__new__(SelectReactor)  # the class, without opening its waker
    assert reactor_kind(reactor) == "select"
    assert port_class_for(reactor) is ExclusivePort


def test_iocp_reactor_and_subclasses_are_recognised() -> None:
    assert reactor_kind(IOCPReactor()) == "iocp"
    assert reactor_kind(SubclassOfIOCP()) == "iocp"


@pytest.mark.skipif(sys.platform == "win32", reason="the IOCP reactor imports on Windows")
def test_iocp_port_class_needs_windows() -> None:
    """Without Windows (and no stand-in) the IOCP module does not import: an error, not a
    silent fallback to a port the IOCP reactor cannot drive."""
    saved = {k: v for k, v in sys.modules.items() if k.startswith("twisted.internet.iocpreactor")}
    try:
        with pytest.raises(ImportError):
            port_class_for(IOCPReactor())
    finally:
        for k in list(sys.modules):
            if k.startswith("twisted.internet.iocpreactor") or k == "twisted_patch.port.iocp":
                sys.modules.pop(k, None)
        sys.modules.update(saved)


# --- the real iocpreactor.tcp.Port with a stand-in for the compiled iocpsupport ---------


class FakeIOCPSupport(types.ModuleType):
    def __init__(self) -> None:
        super().__init__("twisted.internet.iocpreactor.iocpsupport")
        self.accepts: list[tuple[int, int]] = []

        class Event:
            def __init__(self, callback: Any, owner: Any) -> None:
                self.callback, self.owner = callback, owner

        self.Event = Event

    def maxAddrLen(self, fileno: int) -> int:  # noqa: N802 - Twisted's name
        return 128

    def accept(self, listening: int, accepting: int, buff: bytearray, evt: Any) -> int:
        self.accepts.append((listening, accepting))
        return ERROR_IO_PENDING

    def __getattr__(self, name: str) -> Any:  # connect, recv, send, ...: unused here
        raise AttributeError(name)


@pytest.fixture
def iocp_support(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeIOCPSupport]:
    if sys.platform == "win32":
        pytest.skip("Windows has the real IOCP reactor (see test_real_iocp_reactor)")
    import errno

    import twisted.internet

    # Windows-only errno names that iocpreactor.tcp reads at import time
    monkeypatch.setattr(errno, "WSAECONNREFUSED", 10061, raising=False)
    monkeypatch.setattr(errno, "WSAENETUNREACH", 10051, raising=False)

    before = dict(sys.modules)
    package = types.ModuleType("twisted.internet.iocpreactor")
    # the real submodules (tcp, abstract, const, interfaces), without the package
    # __init__ that imports the reactor and pywin32
    package.__path__ = [str(Path(twisted.internet.__file__).parent / "iocpreactor")]
    fake = FakeIOCPSupport()
    sys.modules["twisted.internet.iocpreactor"] = package
    sys.modules["twisted.internet.iocpreactor.iocpsupport"] = fake
    try:
        yield fake
    finally:
        for k in list(sys.modules):
            if k not in before:
                del sys.modules[k]
        sys.modules.update(before)


class FakeIOCPReactor(IOCPReactor):  # type: ignore[valid-type,misc]
    def __init__(self) -> None:
        self.registered: list[int] = []
        self.active: list[object] = []
        self.created: list[socket.socket] = []

    def registerHandle(self, handle: int) -> None:  # noqa: N802
        self.registered.append(handle)

    def addActiveHandle(self, handle: object) -> None:  # noqa: N802
        self.active.append(handle)

    def removeActiveHandle(self, handle: object) -> None:  # noqa: N802
        self.active.remove(handle)

    def createSocket(self, af: int, stype: int) -> socket.socket:  # noqa: N802
        skt = socket.socket(af, stype)
        self.registerHandle(skt.fileno())
        self.created.append(skt)
        return skt


class CountingFactory(protocol.ServerFactory):
    protocol = protocol.Protocol
    starts = 0
    stops = 0

    def doStart(self) -> None:  # noqa: N802
        self.starts += 1

    def doStop(self) -> None:  # noqa: N802
        self.stops += 1


def test_iocp_port_registers_the_core_socket(iocp_support: FakeIOCPSupport) -> None:
    from twisted.internet.iocpreactor import tcp as iocp_tcp

    reactor = FakeIOCPReactor()
    cls = port_class_for(reactor)
    assert cls.__name__ == "IOCPExclusivePort"
    assert issubclass(cls, iocp_tcp.Port)  # Twisted's real IOCP port
    factory = CountingFactory()
    port = listen_exclusive(0, factory, backlog=5, interface="127.0.0.1", reactor=reactor,
                            guard="no")
    try:
        assert isinstance(port, cls)
        handle = port.socket.fileno()
        # the listening socket is the core's, bound and listening, hardened
        opts = _native.socket_options(handle)
        assert opts["listening"] == 1
        assert opts["inheritable"] == 0
        assert opts["reuseport"] in (0, -1)
        assert port.getHost().port == port._realPortNumber > 0
        # registered like the reactor's own sockets
        assert reactor.registered[0] == handle
        assert reactor.active == [port]
        assert factory.starts == 1
        # AcceptEx posted on our handle, into a socket made by the reactor
        assert len(reactor.created) == 1
        assert iocp_support.accepts == [(handle, reactor.created[0].fileno())]
        assert reactor.registered == [handle, reactor.created[0].fileno()]
        # the kernel accepts connections on it
        with socket.create_connection(("127.0.0.1", port._realPortNumber), timeout=5):
            pass
        assert "exclusive, IOCP" in repr(port)
    finally:
        port.connectionLost(None)
        for skt in reactor.created:
            skt.close()
    assert reactor.active == []
    assert factory.stops == 1
    with pytest.raises(OSError):
        _native.socket_options(handle)


def test_iocp_port_failure_registers_nothing(iocp_support: FakeIOCPSupport) -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    try:
        reactor = FakeIOCPReactor()
        factory = CountingFactory()
        with pytest.raises(CannotListenError) as info:
            listen_exclusive(holder.getsockname()[1], factory, interface="127.0.0.1",
                             reactor=reactor)
        assert "already in use" in str(info.value)
        assert reactor.registered == [] and reactor.active == []
        assert factory.starts == 0
        assert iocp_support.accepts == []
    finally:
        holder.close()


@pytest.mark.skipif(sys.platform != "win32", reason="the real IOCP reactor needs Windows")
def test_real_iocp_reactor() -> None:  # pragma: no cover - runs in the Windows workflow
    from twisted.internet.iocpreactor.reactor import IOCPReactor as RealIOCPReactor

    reactor = RealIOCPReactor()
    connected: list[object] = []

    class Server(protocol.Protocol):
        def connectionMade(self) -> None:  # noqa: N802
            connected.append(self.transport.getPeer())
            reactor.stop()

    factory = protocol.ServerFactory.forProtocol(Server)
    port = listen_exclusive(0, factory, interface="127.0.0.1", reactor=reactor)
    assert type(port).__name__ == "IOCPExclusivePort"
    opts = _native.socket_options(port.socket.fileno())
    assert opts["exclusiveaddruse"] == 1 and opts["reuseaddr"] == 0
    assert opts["inheritable"] == 0
    client = socket.socket()
    client.setblocking(False)
    client.connect_ex(("127.0.0.1", port.getHost().port))
    reactor.callLater(20, reactor.stop)
    reactor.run(installSignalHandlers=False)
    client.close()
    assert connected, "the IOCP reactor never accepted the connection"
    # a second exclusive listener on the same port is refused
    with pytest.raises(CannotListenError):
        listen_exclusive(port.getHost().port, factory, interface="127.0.0.1", reactor=reactor)
    port.connectionLost(None)
