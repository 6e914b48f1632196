"""Issue 12's bugs and messages, each tried as a new user would meet it."""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from support.enabling import run_python, summary
from support.guard import hello_factory, reactor, wait
from support.windows import holder_text
from twisted.internet import endpoints
from twisted.internet.error import AlreadyListened, CannotListenError

from twisted_patch import (
    ExclusivePort,
    ExclusiveTCPServerEndpoint,
    _native,
    _sockets,
    listen_exclusive,
)
from twisted_patch.cli.attacks import has_ipv6_loopback
from twisted_patch.errors import cannot_listen

needs_ipv6 = pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback here")


# --- endpoint strings and API arguments -------------------------------------------


@pytest.mark.parametrize(
    "description,expected",
    [
        (r"xtcp:3456:interface=\:\:ffff\:127.0.0.1",
         "IPv4-mapped IPv6 address, which an IPv6-only listener cannot use: give the IPv4 "
         "address 127.0.0.1"),
        ("xtcp:3456:interface=127.0.0.1:interface=0.0.0.0", "interface= given more than once"),
        ("xtcp:3456:guard=no:probe=off:guard=serve", "guard= given more than once"),
        ("xtcp:" + "9" * 5000, "(5000 characters) is out of range: give a number from 0 to"),
        ("xtcp:1:retry=١", "retry must be a number of seconds from 0 to 3600, not '١'"),
        ("xtcp:1:retry=1_0", "not '1_0'"),
        ("xtcp:1:retry=1e3", "not '1e3'"),
        ("xtcp:١٢٣", "port must be a number from 0 to 65535"),
        ("xtcp:1:backlog=" + "1" * 400, "(400 characters) is out of range"),
    ],
)
def test_bad_endpoint_strings_are_clear_value_errors(description: str, expected: str) -> None:
    with pytest.raises(ValueError) as info:
        endpoints.serverFromString(reactor, description)
    assert expected in str(info.value)
    assert "Exceeds the limit" not in str(info.value)
    assert len(str(info.value)) < 300  # a 5,000-digit value is not printed whole


def test_a_single_field_is_still_accepted() -> None:
    ep = endpoints.serverFromString(reactor, "xtcp:0:interface=127.0.0.1:retry=1.5")
    assert ep.interface == "127.0.0.1" and ep.retry == 1.5  # type: ignore[attr-defined]


@pytest.mark.parametrize("bad", [None, b"127.0.0.1", 127])
def test_non_text_interface_is_a_value_error_from_every_api(bad: Any) -> None:
    for call in (
        lambda: listen_exclusive(0, hello_factory(b"x"), interface=bad, reactor=reactor),
        lambda: ExclusiveTCPServerEndpoint(reactor, 0, interface=bad),
        lambda: ExclusivePort(0, hello_factory(b"x"), interface=bad, reactor=reactor),
    ):
        with pytest.raises(ValueError, match="interface must be an IP address given as text"):
            call()


# --- what a failed listen says --------------------------------------------------------


@needs_ipv6
def test_sibling_failure_names_the_address_asked_for() -> None:
    holder = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    holder.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    holder.bind(("::1", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    try:
        with pytest.raises(CannotListenError) as info:
            listen_exclusive(port, hello_factory(b"x"), interface="127.0.0.1", reactor=reactor)
    finally:
        holder.close()
    text = str(info.value)
    assert text.startswith(f"Couldn't listen on 127.0.0.1:{port}: "), text
    assert f"[::1]:{port}" in text and "guarded for 127.0.0.1" in text
    assert info.value.interface == "127.0.0.1"
    assert f"is {holder_text(os.getpid())}" in text  # the holder, named (Wine: unknown)
    assert not text.endswith(".."), text


def test_ipv6_addresses_are_bracketed_and_messages_end_once() -> None:
    holder = socket.socket(socket.AF_INET6, socket.SOCK_STREAM) if has_ipv6_loopback() else None
    if holder is None:
        pytest.skip("no IPv6 here")
    holder.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    holder.bind(("::", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    try:
        d = endpoints.serverFromString(reactor, f"xtcp6:{port}:guard=no").listen(
            hello_factory(b"x"))
        # (on Windows the endpoint's default retry= first asks whether anyone listens
        # there: asynchronously; someone does, so it fails without a retry)
        with pytest.raises(CannotListenError) as info:
            wait(d)
    finally:
        holder.close()
    text = str(info.value)
    assert text.startswith(f"Couldn't listen on [::]:{port}: "), text
    assert f":::{port}" not in text and not text.endswith(".."), text


def test_a_failed_listen_on_the_sibling_is_reported_at_its_stage(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The sibling's listen() (not bind()) fails: the message says listen, not 'in use'."""

    def listen_fails(host: str, port: int, backlog: int, family: int) -> socket.socket:
        err = _native.BindError(errno.EADDRINUSE, os.strerror(errno.EADDRINUSE))
        err.stage = "listen"
        err.detail = "listen"
        raise err

    monkeypatch.setattr(_sockets, "open_serving_guard", listen_fails)
    with pytest.raises(CannotListenError) as info:
        listen_exclusive(0, hello_factory(b"x"), interface="127.0.0.1", reactor=reactor)
    inner = info.value.socketError
    assert inner.stage == "listen"  # type: ignore[union-attr]
    assert "between our bind and listen" in str(info.value)
    assert "is already in use" not in str(info.value)
    assert "port 0 (any free port): 8 OS-chosen port numbers" in str(info.value)


def test_message_helper_ends_in_one_period() -> None:
    err = cannot_listen("::", 80, OSError(errno.EADDRINUSE, "in use"), "bind")
    assert str(err).startswith("Couldn't listen on [::]:80: [::]:80 is already in use")
    assert str(err).endswith("port.") and not str(err).endswith("..")


# --- port options from the environment ----------------------------------------------

OPTIONS_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    way = os.environ["TEST_WAY"]
    try:
        if way == "reactor":
            from twisted_patch import reactor as exclusive
            exclusive.install()
            from twisted.internet import reactor
        else:
            import twisted_patch
            twisted_patch.install()
            from twisted.internet import reactor
        from twisted.internet.protocol import Factory, Protocol
        p = reactor.listenTCP(0, Factory.forProtocol(Protocol), interface="127.0.0.1")
        print(json.dumps({"guard": p.guard_mode, "probe": p.probe_mode,
                          "sibling": p.sibling is not None}))
        p.stopListening()
    except ValueError as e:
        print(json.dumps({"ValueError": str(e)}))
    """
)


@pytest.mark.parametrize("way", ["reactor", "install"])
@pytest.mark.parametrize(
    "value,expected",
    [
        ('{"backlog": 5}', {"ValueError": "unknown option(s) 'backlog'"}),
        ('{"nonsense": 1}', {"ValueError": "accepts are guard, probe"}),
        ('{"guard": "sideways"}', {"ValueError": "guard must be one of serve, refuse, no"}),
        ('{"guard": "refuse"}', {"guard": "refuse", "probe": "strict", "sibling": False}),
        ('{"probe": "warn", "guard": "no"}', {"guard": "no", "probe": "warn", "sibling": False}),
        ("", {"guard": "serve", "probe": "strict", "sibling": True}),
    ],
)
def test_port_options_from_the_environment(
    tmp_path: Path, way: str, value: str, expected: dict[str, Any]
) -> None:
    """TWISTED_PATCH_PORT_OPTIONS is read, checked and applied the same way by the
    reactor plugin and by install(); an unknown option names the accepted ones."""
    env = {"TWISTED_PATCH_PORT_OPTIONS": value, "TEST_WAY": way}
    result = run_python(OPTIONS_SCRIPT, tmp_path, env=env)
    assert result.returncode == 0, summary(result)
    out = json.loads(result.stdout.strip().splitlines()[-1])
    if "ValueError" in expected:
        assert expected["ValueError"] in out.get("ValueError", ""), out
        assert "TWISTED_PATCH_PORT_OPTIONS" in out["ValueError"], out
    else:
        assert out == expected


def test_install_with_options_and_the_environment_is_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import twisted_patch

    monkeypatch.setenv("TWISTED_PATCH_PORT_OPTIONS", '{"guard": "no"}')
    with pytest.raises(ValueError, match="give them one way"):
        twisted_patch.install(guard="refuse")
    assert not twisted_patch.installed()


# --- Tahoe's log Tub endpoint, verify --pid, pid files ----------------------------------


def test_adopted_core_socket_endpoint_listens_once() -> None:
    from twisted_patch.tahoe import AdoptedCoreSocketEndpoint

    skt = _sockets.listen("127.0.0.1", 0, 5, socket.AF_INET)
    ep = AdoptedCoreSocketEndpoint(reactor, skt)
    port = wait(ep.listen(hello_factory(b"x")))
    second: list[Any] = []
    ep.listen(hello_factory(b"y")).addErrback(second.append)
    try:
        assert second and second[0].check(AlreadyListened)
    finally:
        wait(port.stopListening())


@pytest.mark.parametrize("pid", ["٣", "3_0", "-1", "0", "9" * 30])
def test_verify_pid_takes_ascii_process_ids_only(pid: str) -> None:
    result = subprocess.run(
        [sys.executable, "-I", "-m", "twisted_patch", "verify", "127.0.0.1:1", "--pid", pid],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2, result
    assert "--pid" in result.stderr and len(result.stderr) < 600, result.stderr


def test_pid_file_with_a_huge_number_is_refused_without_printing_it(tmp_path: Path) -> None:
    from twisted_patch.tahoe import read_node_dir, read_pidfile

    (tmp_path / "node.url").write_text("http://127.0.0.1:3456/\n")
    (tmp_path / "running.process").write_text("4" * 4200 + " 1234.5\n")
    with pytest.raises(ValueError) as info:
        read_node_dir(str(tmp_path))
    assert "does not start with a process id" in str(info.value)
    assert len(str(info.value)) < 400
    (tmp_path / "running.process").write_text("4242 1234.5\n")
    assert read_pidfile(str(tmp_path / "running.process")) == 4242
