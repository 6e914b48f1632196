"""Owner lookup: twisted_patch.who / verify / check_exclusive and the holder in errors.

Linux-only where the answer is compared with the kernel's other tools (ss);
the pure-Python rules are tested everywhere.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys

import pytest
from conftest import wait_for
from support.owner import (
    IS_ROOT,
    NOBODY,
    SETPRIV,
    listening,
    listening_pair,
    start_listener,
    stop,
)
from twisted.internet import protocol, tcp
from twisted.internet.error import CannotListenError

import twisted_patch
from twisted_patch import _address, _native, owner
from twisted_patch.cli.attacks import wine_version
from twisted_patch.owner import Listener, OwnerLookupError

LINUX = sys.platform.startswith("linux")
WINE = sys.platform == "win32" and wine_version() is not None
linux_only = pytest.mark.skipif(not LINUX, reason="compares with Linux tools (ss, /proc)")
needs_root = pytest.mark.skipif(
    not (IS_ROOT and SETPRIV), reason="needs root and setpriv to run a listener as another uid"
)


def fake(host: str, port: int = 4000, **kw: object) -> Listener:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    fields: dict[str, object] = {
        "family": family, "host": host, "port": port, "uid": 1000, "user": "alice",
        "inode": 1, "pids": (42,), "names": ("x",),
        "v6only": True if family == socket.AF_INET6 else None,
    }
    fields.update(kw)
    return Listener(**fields)  # type: ignore[arg-type]


# --- the lookup against ss ---------------------------------------------------------

_SS_LINE = re.compile(r"^LISTEN\s+\d+\s+\d+\s+(\S+):(\d+)\s+\S+\s*(.*)$")


def ss_listeners(port: int) -> set[tuple[str, int, int, int, tuple[int, ...]]]:
    """(host, port, uid, inode, pids) per listener, as `ss -Hltnpe 'sport = :P'` reports them."""
    out = subprocess.run(
        ["ss", "-Hltnpe", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout
    result = set()
    for line in out.splitlines():
        m = _SS_LINE.match(line.strip())
        assert m, f"cannot parse ss line {line!r}"
        host, lport, rest = m.group(1), int(m.group(2)), m.group(3)
        host = host.strip("[]")
        uid_m = re.search(r"\buid:(\d+)", rest)
        ino_m = re.search(r"\bino:(\d+)", rest)
        pids = tuple(sorted({int(p) for p in re.findall(r"pid=(\d+)", rest)}))
        assert ino_m, line
        result.add((host, lport, int(uid_m.group(1)) if uid_m else 0, int(ino_m.group(1)), pids))
    return result


@linux_only
@pytest.mark.skipif(shutil.which("ss") is None, reason="ss (iproute2) is not installed")
def test_who_agrees_with_ss() -> None:
    uid = NOBODY if IS_ROOT and SETPRIV else None
    # same port, the other family, another uid when we can
    with listening_pair(["127.0.0.1"], ["::1"], uid=uid) as (mine, other):
        ours = owner.who(None, mine.port)
        theirs = ss_listeners(mine.port)
        got = {(x.host, x.port, x.uid, x.inode, tuple(sorted(x.pids))) for x in ours}
        assert got == theirs
        assert len(got) == 2
        by_host = {x.host: x for x in ours}
        assert by_host["127.0.0.1"].pids == (mine.pid,)
        assert by_host["::1"].pids == (other.pid,)
        assert by_host["::1"].v6only is True
        assert by_host["127.0.0.1"].names == (mine.comm(),)


def test_own_listener_reports_our_pid_and_uid() -> None:
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        found = twisted_patch.who("127.0.0.1", port)
        assert len(found) == 1
        item = found[0]
        if WINE:  # Wine's table names no owner (pid 0): unknown, never the Idle process
            assert item.pids == () and item.holder().startswith("a process we cannot see")
        else:
            assert item.pids == (os.getpid(),)
        assert item.address == f"127.0.0.1:{port}"
        if hasattr(os, "getuid"):
            assert item.uid == os.getuid()
        if LINUX:
            assert item.inode == os.fstat(s.fileno()).st_ino  # sockfs inode, as ss -e shows
            with open("/proc/self/comm") as f:
                assert item.names == (f.read().strip(),)
        # and nothing for the other family's loopback or another port
        assert twisted_patch.who("::1", port) == []
    finally:
        s.close()
    assert twisted_patch.who(None, port) == []


@linux_only
@needs_root
def test_listener_of_another_uid_is_reported_with_that_uid() -> None:
    with listening(["127.0.0.1"], uid=NOBODY) as other:
        (item,) = twisted_patch.who("127.0.0.1", other.port)
        assert item.uid == NOBODY
        assert item.user == "nobody"
        # We are root, so /proc/PID/fd of the other uid's process is readable: pid known.
        assert item.pids == (other.pid,)
        assert item.holder() == f"pid {other.pid} ({other.comm()}), user nobody"


@linux_only
@needs_root
def test_unprivileged_lookup_reports_uid_alone() -> None:
    """As uid 65534, a root listener's process is unreadable: uid 0 and no pids."""
    from twisted_patch.cli.attacks import other_uid_python

    importable = subprocess.run(
        [SETPRIV or "setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
         sys.executable, "-I", "-c", "import twisted_patch"],
        capture_output=True, text=True, cwd="/", timeout=60,
    ).returncode == 0
    if other_uid_python() != sys.executable or not importable:
        # e.g. the venv lives in a 0700 folder (mktemp -d): that uid cannot read it.
        pytest.skip("this interpreter with twisted_patch cannot be run by uid 65534")
    with listening(["127.0.0.1"]) as root_child:
        code = (
            "import twisted_patch, json, sys;"
            f"print(json.dumps([x.to_dict() for x in twisted_patch.who('127.0.0.1', "
            f"{root_child.port})]))"
        )
        out = subprocess.run(
            [SETPRIV or "setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
             sys.executable, "-I", "-c", code],
            capture_output=True, text=True, cwd="/", timeout=60,
        )
        assert out.returncode == 0, out.stderr
        import json

        (item,) = json.loads(out.stdout)
        assert item["uid"] == 0
        assert item["user"] == "root"
        assert item["pids"] == []  # /proc/PID/fd of root's process: permission denied


# --- who() filtering rule ------------------------------------------------------------


def test_receives_rule() -> None:
    r = owner.receives
    assert r(fake("127.0.0.1"), "127.0.0.1")
    assert r(fake("0.0.0.0"), "127.0.0.1")
    assert not r(fake("127.0.0.2"), "127.0.0.1")
    assert not r(fake("::1"), "127.0.0.1")
    assert not r(fake("127.0.0.1"), "::1")
    assert r(fake("::"), "::1")
    assert r(fake("::", v6only=False), "127.0.0.1")  # dual-stack takes IPv4
    assert r(fake("::", v6only=None), "127.0.0.1")  # unknown: assume it may
    assert not r(fake("::", v6only=True), "127.0.0.1")
    assert r(fake("::ffff:127.0.0.1"), "127.0.0.1")
    assert r(fake("127.0.0.1"), "::ffff:127.0.0.1")
    assert r(fake("0.0.0.0"), "::ffff:127.0.0.1")
    assert r(fake("::1"), "[::1]")
    with pytest.raises(ValueError, match="127.0.0.1 or ::1"):
        r(fake("127.0.0.1"), "localhost")


@linux_only
def test_dual_stack_listener_receives_ipv4() -> None:
    """[::] without IPV6_V6ONLY takes IPv4 connections too: the kernel reports the flag
    and who()/verify() count the listener for 127.0.0.1."""
    def mine(items: list[twisted_patch.Listener], pid: int) -> list[twisted_patch.Listener]:
        # Other processes on this machine may hold the same port number elsewhere.
        return [x for x in items if pid in x.pids]

    with listening(["dual:::"]) as dual:
        (item,) = mine(twisted_patch.who(None, dual.port), dual.pid)
        assert item.host == "::" and item.v6only is False
        assert mine(twisted_patch.who("127.0.0.1", dual.port), dual.pid) == [item]
        assert mine(twisted_patch.who("::1", dual.port), dual.pid) == [item]
        # and it really does take an IPv4 connection
        with socket.create_connection(("127.0.0.1", dual.port)):
            pass
    with listening(["::"]) as v6only:
        (item,) = mine(twisted_patch.who(None, v6only.port), v6only.pid)
        assert item.v6only is True
        assert mine(twisted_patch.who("127.0.0.1", v6only.port), v6only.pid) == []


def test_bad_arguments() -> None:
    for bad in (0, 65536, -1, True, "80"):
        with pytest.raises(ValueError, match="port"):
            twisted_patch.who(None, bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not a numeric"):
        twisted_patch.who("example.org", 80)
    with pytest.raises(ValueError, match="at most one"):
        twisted_patch.verify("127.0.0.1", 80, uid=0, pid=1)
    with pytest.raises(ValueError, match="pid"):
        twisted_patch.verify("127.0.0.1", 80, pid=-5)
    with pytest.raises(ValueError, match="port"):
        _native.listeners(0)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("127.0.0.1:3456", ("127.0.0.1", 3456)),
        ("[::1]:3456", ("::1", 3456)),
        ("http://127.0.0.1:3456/", ("127.0.0.1", 3456)),
        ("http://[::1]:3456/uri", ("::1", 3456)),
        ("https://127.0.0.1/", ("127.0.0.1", 443)),
        ("3456", (None, 3456)),
        (":3456", (None, 3456)),
        (" 127.0.0.1:80\n", ("127.0.0.1", 80)),
    ],
)
def test_parse_target(text: str, expected: tuple[str | None, int]) -> None:
    assert _address.parse_target(text) == expected


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "no address"),
        ("::1:3456", "brackets"),
        ("localhost:3456", "127.0.0.1 or ::1"),
        ("127.0.0.1", "no port"),
        ("127.0.0.1:0", "out of range"),
        ("127.0.0.1:70000", "out of range"),
        ("127.0.0.1:http", "must be a number from 1 to 65535"),
        ("[127.0.0.1]:80", "brackets are for IPv6"),
        ("ftp://127.0.0.1:21/", "only http"),
        ("http://127.0.0.1:99999/", "port"),
    ],
)
def test_parse_target_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        _address.parse_target(text)


# --- verify ----------------------------------------------------------------------------


@linux_only
def test_verify_catches_a_reuseport_impostor() -> None:
    """Two processes of one uid sharing 127.0.0.1:P with SO_REUSEPORT: the kernel splits
    the connections between them.  verify(pid=real) must say so; with the real server
    alone it must pass."""
    with listening(["127.0.0.1"], reuseport=True) as real:
        ok = twisted_patch.verify("127.0.0.1", real.port, pid=real.pid)
        assert ok.owned and bool(ok)
        assert [x.pids for x in ok.listeners] == [(real.pid,)]
        with listening(["127.0.0.1"], real.port, reuseport=True) as impostor:
            bad = twisted_patch.verify("127.0.0.1", real.port, pid=real.pid)
            assert not bad.owned
            assert [x.pids for x in bad.foreign] == [(impostor.pid,)]
            assert f"pid {impostor.pid}" in bad.explain()
            # the uid check cannot tell them apart: same uid
            assert twisted_patch.verify("127.0.0.1", real.port).owned
        assert twisted_patch.verify("127.0.0.1", real.port, pid=real.pid).owned


@linux_only
@needs_root
def test_verify_uid() -> None:
    with listening(["127.0.0.1"], uid=NOBODY) as impostor:
        result = twisted_patch.verify("127.0.0.1", impostor.port)  # expected: our uid, 0
        assert result.listening and not result.owned
        assert result.foreign[0].uid == NOBODY
        assert twisted_patch.verify("127.0.0.1", impostor.port, uid=NOBODY).owned
        assert twisted_patch.verify("127.0.0.1", impostor.port, user="nobody").owned
        # the other family's loopback is a different address: nothing there
        assert not twisted_patch.verify("::1", impostor.port).listening


def test_verify_nothing_listening() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]  # bound, not listening: invisible to the lookup
    try:
        result = twisted_patch.verify("127.0.0.1", port)
        assert not result.listening and not result.owned
        assert "nothing is listening" in result.explain()
    finally:
        s.close()


def test_verify_fails_closed_on_unknowns(monkeypatch: pytest.MonkeyPatch) -> None:
    """A listener whose processes are invisible never matches pid=; one whose owner
    is unknown never matches uid= or user=."""
    hidden = fake("127.0.0.1", pids=(), names=())
    anonymous = fake("127.0.0.1", uid=None, user=None)
    monkeypatch.setattr(owner, "listeners", lambda port, **kw: [hidden])
    assert not twisted_patch.verify("127.0.0.1", 4000, pid=42).owned
    assert twisted_patch.verify("127.0.0.1", 4000, user="alice").owned
    if sys.platform == "win32":  # no uids: a clear error, never a silent mismatch
        with pytest.raises(ValueError, match="Windows has no uids"):
            twisted_patch.verify("127.0.0.1", 4000, uid=1000)
    else:
        assert twisted_patch.verify("127.0.0.1", 4000, uid=1000).owned
    monkeypatch.setattr(owner, "listeners", lambda port, **kw: [anonymous])
    assert twisted_patch.verify("127.0.0.1", 4000, pid=42).owned
    if sys.platform != "win32":
        assert not twisted_patch.verify("127.0.0.1", 4000, uid=1000).owned
    assert not twisted_patch.verify("127.0.0.1", 4000, user="alice").owned


def test_holder_text() -> None:
    assert fake("::1", pids=(), names=()).holder() == "a process we cannot see, user alice"
    assert fake("::1", pids=(1, 2), names=("a", None)).holder() == "pids 1 (a), 2, user alice"
    assert fake("::1", user=None, uid=7).holder() == "pid 42 (x), uid 7"
    assert fake("::1", pids_truncated=True).holder() == "pid 42 (x) and more, user alice"


# --- use in ExclusivePort ----------------------------------------------------------------


class Echo(protocol.Protocol):
    pass


def factory() -> protocol.Factory:
    return protocol.Factory.forProtocol(Echo)


@linux_only
def test_preclaimed_port_error_names_the_holder() -> None:
    from twisted.internet import reactor

    with listening(["127.0.0.1"]) as holder:
        with pytest.raises(CannotListenError) as ours:
            twisted_patch.listen_exclusive(
                holder.port, factory(), interface="127.0.0.1", reactor=reactor
            )
        text = str(ours.value)
        user = "root" if IS_ROOT else None
        expected = (
            f"127.0.0.1:{holder.port} is already in use by pid {holder.pid} ({holder.comm()})"
        )
        assert expected in text, text
        if user:
            assert f"({holder.comm()}), user {user}" in text
        # plain Twisted on the same pre-claimed port: generic error, no holder
        plain = tcp.Port(holder.port, factory(), interface="127.0.0.1", reactor=reactor)
        with pytest.raises(CannotListenError) as theirs:
            plain.startListening()
        assert "in use" in str(theirs.value)
        assert str(holder.pid) not in str(theirs.value)
        assert "pid" not in str(theirs.value)


@linux_only
def test_wildcard_bind_names_a_specific_holder() -> None:
    from twisted.internet import reactor

    with listening(["127.0.0.1"]) as holder:
        with pytest.raises(CannotListenError) as ours:
            twisted_patch.listen_exclusive(holder.port, factory(), interface="", reactor=reactor)
        assert f"pid {holder.pid}" in str(ours.value)


def test_windows_exclusive_refusal_names_the_holder(monkeypatch: pytest.MonkeyPatch) -> None:
    """On Windows a port held with SO_EXCLUSIVEADDRUSE refuses binds with WSAEACCES."""
    from twisted_patch import errors

    monkeypatch.setattr(errors, "WINDOWS", True)
    text = errors.describe(OSError(10013, "denied"), "bind", "127.0.0.1:80", "pid 7 (x.exe)")
    assert "another socket (pid 7 (x.exe)) holds the port exclusively" in text
    assert "another socket holds" in errors.describe(OSError(10013, "d"), "bind", "a:1")


def test_describe_holder_never_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(port: int) -> list[Listener]:
        raise OwnerLookupError(38, "owner lookup is not supported on this OS")

    monkeypatch.setattr(owner, "listeners", broken)
    assert owner.describe_holder("127.0.0.1", 80) is None
    assert owner.describe_holder("not an address", 80) is None


@linux_only
def test_check_exclusive() -> None:
    from twisted.internet import reactor

    with listening(["127.0.0.1"]) as other:
        foreign = owner.check_exclusive(("0.0.0.0", other.port))
        assert [x.pids for x in foreign] == [(other.pid,)]
        assert [x.pids for x in owner.check_exclusive(("127.0.0.1", other.port))] == [
            (other.pid,)
        ]
        assert owner.check_exclusive(("::1", other.port)) == []
        assert owner.check_exclusive(("::", other.port)) == []
    port = twisted_patch.listen_exclusive(0, factory(), interface="127.0.0.1", reactor=reactor)
    try:
        assert owner.check_exclusive(port) == []  # only ourselves
        assert owner.who("127.0.0.1", port.getHost().port)[0].pids == (os.getpid(),)
    finally:
        wait_for(port.stopListening())  # both sockets (guard=serve) are closed by the reactor


@linux_only
def test_start_listening_fails_when_not_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """The post-listen check, wired into ExclusivePort.startListening.

    On Linux nobody can share our port (no SO_REUSEPORT), so a foreign listener is
    injected into the lookup's answer: the port must refuse to run and leave nothing open.
    """
    from twisted.internet import reactor

    real = owner.listeners
    injected: list[Listener] = []

    def with_intruder(
        port: int, *, self_only: bool = False, processes: bool = True
    ) -> list[Listener]:
        found = real(port, self_only=self_only, processes=processes)
        intruder = fake("127.0.0.1", port, uid=NOBODY, user="nobody", pids=(4242,),
                        names=("evil",), inode=99)
        injected.append(intruder)
        return [*found, intruder]

    monkeypatch.setattr(owner, "listeners", with_intruder)
    fds_before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(CannotListenError) as failure:
        twisted_patch.listen_exclusive(0, factory(), interface="127.0.0.1", reactor=reactor)
    assert injected
    text = str(failure.value)
    assert "another process may receive its connections" in text
    assert "pid 4242 (evil), user nobody" in text
    assert len(os.listdir("/proc/self/fd")) == fds_before  # the socket was closed
    monkeypatch.setattr(owner, "listeners", real)
    # and without the intruder the same call works
    port = twisted_patch.listen_exclusive(0, factory(), interface="127.0.0.1", reactor=reactor)
    wait_for(port.stopListening())


# --- how the lookup works --------------------------------------------------------------------


@linux_only
@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
def test_lookup_uses_sock_diag_and_never_proc_net_tcp(tmp_path: object) -> None:
    with listening(["127.0.0.1"]) as child:
        code = f"import twisted_patch; print(len(twisted_patch.who(None, {child.port})))"
        out = subprocess.run(
            ["strace", "-f", "-e", "trace=open,openat,socket,sendto", sys.executable, "-I", "-c",
             code],
            capture_output=True, text=True, cwd="/", timeout=120,
        )
        assert out.returncode == 0, out.stderr[-2000:]
        assert out.stdout.strip() == "1"
        trace = out.stderr
        assert "socket(AF_NETLINK, SOCK_DGRAM|SOCK_CLOEXEC, NETLINK_SOCK_DIAG)" in trace
        assert trace.count("NETLINK_SOCK_DIAG)") == 2  # one request per family
        assert f"/proc/{child.pid}/comm" in trace  # pids and names came from /proc/PID
        assert "/proc/net/tcp" not in trace
        assert "/proc/net/" not in trace


@linux_only
def test_self_only_lookup() -> None:
    for _ in range(50):  # a port free on 127.0.0.1 (child) and [::1] (us)
        child = start_listener(["127.0.0.1"])
        mine = socket.socket(socket.AF_INET6)
        try:
            mine.bind(("::1", child.port))
            break
        except OSError:
            mine.close()
            stop(child)
    else:
        pytest.fail("no port free on both loopbacks")
    with contextlib.closing(mine):
        try:
            mine.listen(1)
            full = {x.host: x.pids for x in owner.listeners(child.port)}
            assert full == {"127.0.0.1": (child.pid,), "::1": (os.getpid(),)}
            quick = {x.host: x.pids for x in owner.listeners(child.port, self_only=True)}
            assert quick == {"127.0.0.1": (), "::1": (os.getpid(),)}
        finally:
            stop(child)


@linux_only
@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
def test_listening_reads_no_other_process() -> None:
    """ExclusivePort's post-listen check reads no /proc/PID/fd at all when we are
    alone (the kernel's socket inodes answer it); a walk happens only to name a
    foreign listener."""
    code = (
        "import os; from twisted.internet import protocol, reactor;"
        "import twisted_patch;"
        "p = twisted_patch.listen_exclusive(0, protocol.Factory(), interface='127.0.0.1',"
        " reactor=reactor); print(os.getpid(), p.getHost().port)"
    )
    out = subprocess.run(
        ["strace", "-f", "-e", "trace=openat,socket", sys.executable, "-I", "-c", code],
        capture_output=True, text=True, cwd="/", timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    pid = out.stdout.split()[0]
    assert "NETLINK_SOCK_DIAG" in out.stderr  # the check did run
    opened = set(re.findall(r'openat\(AT_FDCWD, "/proc/(\d+)/fd"', out.stderr))
    assert opened == set(), (pid, opened)
    assert '"/proc"' not in out.stderr


@linux_only
def test_no_fd_leak_over_1000_lookups() -> None:
    with listening(["127.0.0.1"]) as child:
        before = sorted(os.listdir("/proc/self/fd"))
        for _ in range(1000):
            found = _native.listeners(child.port)
            assert len(found) == 1
        for _ in range(20):  # the failing path too
            with pytest.raises(ValueError):
                _native.listeners(0)
        after = sorted(os.listdir("/proc/self/fd"))
        assert len(after) == len(before), (before, after)


def test_backend_is_known() -> None:
    platform = "linux" if LINUX else sys.platform
    expected = platform if platform in ("linux", "win32", "darwin") else "none"
    assert expected == _native.OWNER_BACKEND
