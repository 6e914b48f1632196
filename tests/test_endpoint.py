"""The xtcp / xtcp6 endpoints: parsing, listening through the C core, serving."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from conftest import wait_for
from twisted.internet import endpoints
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import Factory, Protocol

from twisted_patch import ExclusivePort, ExclusiveTCPServerEndpoint, _native, listen_exclusive
from twisted_patch.cli.attacks import has_ipv6_loopback as has_ipv6


class Echo(Protocol):
    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)


def echo_factory() -> Factory:
    return Factory.forProtocol(Echo)


def roundtrip(host: str, port: int, reactor: Any, payload: bytes = b"capability") -> bytes:
    """A real blocking client in a thread-free way: connect, send, let the reactor echo."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as c:
        c.settimeout(5)
        c.connect((host, port))
        c.sendall(payload)
        c.setblocking(False)
        got = b""
        from conftest import spin

        for _ in range(500):
            spin(0.01)
            try:
                got += c.recv(100)
            except BlockingIOError:
                continue
            if len(got) >= len(payload):
                break
        return got


def test_server_from_string_gives_exclusive_endpoint(reactor: Any) -> None:
    ep = endpoints.serverFromString(reactor, "xtcp:3456:interface=127.0.0.1")
    assert isinstance(ep, ExclusiveTCPServerEndpoint)
    assert (ep.interface, ep.port) == ("127.0.0.1", 3456)


def test_listen_through_core_port_zero_and_echo(reactor: Any, ports: list[Any]) -> None:
    ep = endpoints.serverFromString(reactor, "xtcp:0:interface=127.0.0.1")
    port = wait_for(ep.listen(echo_factory()))
    ports.append(port)
    assert isinstance(port, ExclusivePort)
    real = port.getHost().port
    assert real != 0 and port.getHost().host == "127.0.0.1"
    assert roundtrip("127.0.0.1", real, reactor) == b"capability"


def test_socket_options_read_back_with_getsockopt(reactor: Any, ports: list[Any]) -> None:
    port = listen_exclusive(0, echo_factory(), interface="127.0.0.1", reactor=reactor)
    ports.append(port)
    skt = port.socket
    # Read back through Python's own socket module, not through the core.
    assert skt.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) != 0
    if hasattr(socket, "SO_REUSEPORT"):
        assert skt.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 0
    assert skt.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) != 0
    assert skt.get_inheritable() is False
    assert skt.getblocking() is False
    opts = _native.socket_options(skt.fileno())
    assert opts == {
        "reuseaddr": 1, "reuseport": 0, "exclusiveaddruse": -1, "v6only": -1,
        "inheritable": 0, "nonblocking": 1, "listening": 1,
    }


@pytest.mark.skipif(not has_ipv6(), reason="this host has no IPv6 loopback")
@pytest.mark.parametrize("description", ["xtcp:0:interface=\\:\\:1", "xtcp6:0:interface=\\:\\:1"])
def test_ipv6_listener_is_v6only(reactor: Any, ports: list[Any], description: str) -> None:
    port = wait_for(endpoints.serverFromString(reactor, description).listen(echo_factory()))
    ports.append(port)
    assert port.getHost().host == "::1"
    assert port.socket.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1
    assert roundtrip("::1", port.getHost().port, reactor) == b"capability"


def test_xtcp6_defaults_to_ipv6_wildcard(reactor: Any) -> None:
    ep = endpoints.serverFromString(reactor, "xtcp6:8080")
    assert ep.interface == "::"
    assert endpoints.serverFromString(reactor, "xtcp:port=8080").interface == "0.0.0.0"


def test_port_keyword_and_backlog(reactor: Any, ports: list[Any]) -> None:
    ep = endpoints.serverFromString(reactor, "xtcp:port=0:interface=127.0.0.1:backlog=5")
    port = wait_for(ep.listen(echo_factory()))
    ports.append(port)
    assert port.backlog == 5


@pytest.mark.parametrize(
    "description, words",
    [
        ("xtcp:abc", "port must be a number"),
        ("xtcp:65536", "out of range"),
        ("xtcp:-1", "port must be a number"),
        ("xtcp:", "port is empty"),
        ("xtcp", "no port given"),
        ("xtcp:80:bogus=1", "unknown option 'bogus'"),
        ("xtcp:80:interface=localhost", "use 127.0.0.1 or ::1"),
        ("xtcp:80:interface=1.2.3", "not a numeric IP address"),
        ("xtcp:80:interface=example.org", "not a numeric IP address"),
        ("xtcp:80:interface=300.1.1.1", "not a numeric IP address"),
        ("xtcp:80:backlog=-1", "backlog must be a whole number"),
        ("xtcp:80:backlog=many", "backlog must be a whole number"),
        ("xtcp:80:port=81", "port is given twice"),
        ("xtcp:80:81", "only one positional field"),
        ("xtcp6:80:interface=127.0.0.1", "IPv4 address was given where IPv6 is required"),
    ],
)
def test_bad_endpoint_strings_raise_clear_value_errors(
    reactor: Any, description: str, words: str
) -> None:
    with pytest.raises(ValueError) as info:
        endpoints.serverFromString(reactor, description)
    assert words in str(info.value)


def test_bad_constructor_arguments(reactor: Any) -> None:
    with pytest.raises(ValueError, match="out of range"):
        ExclusiveTCPServerEndpoint(reactor, 70000)
    with pytest.raises(ValueError, match="backlog"):
        ExclusiveTCPServerEndpoint(reactor, 80, backlog=-5)
    with pytest.raises(ValueError, match="interface"):
        ExclusiveTCPServerEndpoint(reactor, 80, interface="no.such.host")


def test_address_not_on_this_host_is_an_errback(reactor: Any) -> None:
    # 192.0.2.1 (TEST-NET-1) is not configured here: bind fails, nothing is sent.
    ep = endpoints.serverFromString(reactor, "xtcp:0:interface=192.0.2.1")
    with pytest.raises(CannotListenError) as info:
        wait_for(ep.listen(echo_factory()))
    err = info.value.socketError
    assert err.stage == "bind"
    assert "is not an address of this host" in str(info.value)


def test_native_errors_carry_stage_errno_and_address() -> None:
    handle = _native.listen_tcp("127.0.0.1", 0, 5)
    try:
        port = socket.socket(fileno=_native.open_socket(socket.AF_INET))
        taken = _native.socket_options(handle)
        assert taken["listening"] == 1
        with socket.socket(fileno=handle) as owner:
            p = owner.getsockname()[1]
            with pytest.raises(_native.BindError) as info:
                _native.bind(port.fileno(), "127.0.0.1", p)
            handle = -1
        port.close()
    finally:
        if handle != -1:
            _native.close(handle)
    e = info.value
    assert isinstance(e, OSError)
    assert e.stage == "bind" and e.detail == "bind"
    assert e.errno == 98 or e.errno == 48  # EADDRINUSE on Linux / BSD
    assert e.address == f"127.0.0.1:{p}"


def test_native_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="port out of range"):
        _native.listen_tcp("127.0.0.1", 70000, 5)
    with pytest.raises(ValueError, match="backlog"):
        _native.listen_tcp("127.0.0.1", 0, -1)
    with pytest.raises(ValueError):
        _native.listen_tcp("127.0.0.1\x00junk", 0, 5)
    with pytest.raises(ValueError, match="invalid file descriptor"):
        _native.close(-3)
    with pytest.raises(_native.BindError) as info:
        _native.open_socket(12345)
    assert info.value.stage == "socket"
    mapped = _native.parse_address("::FFFF:127.0.0.1", 80)
    assert mapped == (socket.AF_INET6, "::ffff:127.0.0.1", 80)
    assert _native.parse_address(None, 0, socket.AF_INET6) == (socket.AF_INET6, "::", 0)
