"""The bind->listen race, stressed.

An attacker process (tests/native/race/attacker.c) loops binding and listening on the
server's port with SO_REUSEADDR and SO_REUSEPORT, as the same uid and as another
uid, while the server -- an ``ExclusivePort`` from ``ExclusiveTCPServerEndpoint``
-- starts and stops 1,000 times.  In every trial either

  * the server listens and is the only listener on the port (every LISTEN socket
    on the port, asked of the kernel with NETLINK_SOCK_DIAG, is a socket of the
    server's own process: its port and its address-family guard), and a client that
    connects is accepted by the server, not by the attacker; or
  * the endpoint's Deferred fails with ``CannotListenError`` (bind or listen
    refused) and the server process holds nothing on the port.

The control shows the trial can fail: the same attack against a deliberately
weak port (SO_REUSEPORT set, which Twisted-based code sometimes adds "for fast
restarts") is hijacked.  Counts are written to build/hardening/race-counts.json
and listed in docs/hardening.rst.
"""

from __future__ import annotations

import json
import os
import random
import select
import shutil
import signal
import socket
import struct
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest
from support import hardening as h
from twisted.internet import tcp
from twisted.internet.defer import Deferred
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure

from twisted_patch.endpoint import ExclusiveTCPServerEndpoint

pytestmark = pytest.mark.skipif(not h.LINUX, reason="reads /proc/net/tcp; Linux kernel rules")

TRIALS = 1000
CONTROL_TRIALS = 200
# Safety net only (never reached when things work): how long a client may wait.
CONNECT_TIMEOUT = 10.0
RESULTS = h.ROOT / "build" / "hardening" / "race-counts.json"


@pytest.fixture(scope="module")
def attacker_binary() -> Iterator[Path]:
    if h.c_compiler() is None:
        pytest.skip("no C compiler to build the attacker")
    directory = h.world_readable_tempdir("xbrace-")
    try:
        binary = h.build_c([h.TESTS / "native" / "race" / "attacker.c"], directory / "attacker")
        binary.chmod(0o755)
        yield binary
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def results_file() -> Iterator[dict[str, Any]]:
    data: dict[str, Any] = {}
    yield data
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    previous: dict[str, Any] = {}
    if RESULTS.exists():
        try:
            previous = json.loads(RESULTS.read_text())
        except ValueError:
            previous = {}
    previous.update(data)
    RESULTS.write_text(json.dumps(previous, indent=2, sort_keys=True) + "\n")


class Attacker:
    def __init__(self, binary: Path, port: int, reuseport: bool, other_uid: bool) -> None:
        cmd = [str(binary), str(port), "1" if reuseport else "0"]
        if other_uid:
            cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]
        env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        assert line == "ready", f"attacker did not start: {line!r}"
        self.counters: dict[str, int] = {}

    def stop(self) -> dict[str, int]:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
        out, _ = self.proc.communicate()
        assert self.proc.returncode == 0, f"attacker exited {self.proc.returncode}"
        self.counters = {k: int(v) for k, v in (f.split("=") for f in out.split())}
        return self.counters

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def free_port() -> int:
    """A free port outside the ephemeral range: other processes' outgoing connections
    (which take ephemeral local ports) must not be what holds the port in a trial."""
    low = 32768
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        pass
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(10000, max(10001, low))
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            s.close()
        if not h.listening_inodes(port):
            return port
    raise RuntimeError("no free port below the ephemeral range")


class WeakPort(tcp.Port):
    """The control: a Twisted port with SO_REUSEPORT, as some code sets it."""

    def createInternetSocket(self) -> socket.socket:
        skt: socket.socket = super().createInternetSocket()
        skt.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        return skt


def listen_exclusive(reactor: MemoryReactorClock, port: int) -> Deferred[Any]:
    endpoint = ExclusiveTCPServerEndpoint(reactor, port, interface="127.0.0.1")
    return endpoint.listen(Factory.forProtocol(Protocol))


def listen_weak(reactor: MemoryReactorClock, port: int) -> Deferred[Any]:
    def start() -> tcp.Port:
        p = WeakPort(port, Factory.forProtocol(Protocol), 50, "127.0.0.1", reactor)
        p.startListening()
        return p

    from twisted.internet import defer

    return defer.execute(start)


def listen_plain(reactor: MemoryReactorClock, port: int) -> Deferred[Any]:
    def start() -> tcp.Port:
        p = tcp.Port(port, Factory.forProtocol(Protocol), 50, "127.0.0.1", reactor)
        p.startListening()
        return p

    from twisted.internet import defer

    return defer.execute(start)


def one_trial(listen: Callable[[MemoryReactorClock, int], Deferred[Any]], port: int) -> str:
    """Start, check, stop: returns the outcome's name."""
    reactor = MemoryReactorClock()
    fds = h.fd_count()
    results: list[Any] = []
    listen(reactor, port).addBoth(results.append)
    result = results[0]
    if isinstance(result, Failure):
        if not result.check(CannotListenError):
            return f"UNEXPECTED {result.type.__name__}: {result.value}"
        err = result.value.socketError
        stage = getattr(err, "stage", None) or "twisted"
        if h.fd_count() != fds:
            return "FD LEAKED after a refused listen"
        return f"refused at {stage}: {errno_name(getattr(err, 'errno', None))}"
    listening = result
    try:
        ours = h.socket_inode(listening.socket.fileno())
        listeners = set(h.listening_inodes(port))
        # Ours alone: the port's socket, plus (ExclusivePort's default on loopback)
        # the address-family guard, which listens on [::1]:P in this same process.
        if ours not in listeners or not listeners <= h.own_socket_inodes():
            return "HIJACKED: another socket listens on the port too"
        try:
            client = socket.create_connection(("127.0.0.1", port), timeout=CONNECT_TIMEOUT)
        except OSError as e:
            # Our port was the only listener, yet the connection was refused or reset.
            return f"HIJACKED: the client's connection failed ({errno_name(e.errno)})"
        # Close with a reset: no TIME_WAIT piles up on the port over 1,000 trials.
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn = None
        try:
            # Whoever accepted the connection shows first: the server's listening
            # socket becomes readable, or the attacker answers (or resets) the client.
            ready, _, _ = select.select([listening.socket, client], [], [], CONNECT_TIMEOUT)
            if listening.socket not in ready:
                return "HIJACKED: the client's connection did not reach the server"
            conn, peer = listening.socket.accept()
            if peer != client.getsockname():
                return "HIJACKED: the server accepted someone else's connection"
        finally:
            client.close()
            if conn is not None:
                conn.close()
        return "server listened alone and accepted the client"
    finally:
        listening.stopListening()
        reactor.advance(0)


def errno_name(code: object) -> str:
    import errno

    return errno.errorcode.get(code, str(code)) if isinstance(code, int) else str(code)


def run(
    binary: Path,
    listen: Callable[[MemoryReactorClock, int], Deferred[Any]],
    trials: int,
    other_uid: bool,
) -> tuple[Counter[str], dict[str, int]]:
    port = free_port()
    attacker = Attacker(binary, port, reuseport=True, other_uid=other_uid)
    counts: Counter[str] = Counter()
    try:
        for _ in range(trials):
            counts[one_trial(listen, port)] += 1
    finally:
        try:
            attacker.stop()
        finally:
            attacker.kill()
    return counts, attacker.counters


def check(counts: Counter[str], attacker: dict[str, int], trials: int) -> None:
    assert sum(counts.values()) == trials
    bad = {k: v for k, v in counts.items() if k.startswith(("HIJACKED", "UNEXPECTED", "FD"))}
    assert bad == {}, dict(counts)
    # The attack really ran: the attacker listened on the port many times.
    assert attacker.get("listened", 0) > 0, attacker
    # Both outcomes were seen: the test exercised the race, not only one side.
    assert counts["server listened alone and accepted the client"] > 0, dict(counts)
    assert any(k.startswith("refused") for k in counts), dict(counts)


def test_race_same_uid(attacker_binary: Path, results_file: dict[str, Any]) -> None:
    counts, attacker = run(attacker_binary, listen_exclusive, TRIALS, other_uid=False)
    results_file["exclusive_vs_same_uid"] = {"trials": dict(counts), "attacker": attacker}
    check(counts, attacker, TRIALS)


@pytest.mark.root
def test_race_other_uid(attacker_binary: Path, results_file: dict[str, Any]) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to run the attacker as uid 65534 (setpriv)")
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    counts, attacker = run(attacker_binary, listen_exclusive, TRIALS, other_uid=True)
    results_file["exclusive_vs_uid_65534"] = {"trials": dict(counts), "attacker": attacker}
    check(counts, attacker, TRIALS)


def test_control_weak_port_is_hijacked(attacker_binary: Path, results_file: dict[str, Any]) -> None:
    """The same trial catches a hijack when the server sets SO_REUSEPORT."""
    counts, attacker = run(attacker_binary, listen_weak, CONTROL_TRIALS, other_uid=False)
    results_file["control_weak_reuseport_vs_same_uid"] = {
        "trials": dict(counts), "attacker": attacker}
    assert sum(v for k, v in counts.items() if k.startswith("HIJACKED")) > 0, dict(counts)


def test_plain_twisted_for_comparison(
    attacker_binary: Path, results_file: dict[str, Any]
) -> None:
    """Plain Twisted (SO_REUSEADDR, no SO_REUSEPORT) in the same race, for the record.

    On Linux it is not hijacked either, but when the attacker listens between its
    bind() and listen(), Twisted's ``tcp.Port.startListening`` raises a bare
    ``OSError`` (listen() is outside its try/except) and leaks the socket --
    what ExclusivePort turns into a CannotListenError naming the listen stage."""
    counts, attacker = run(attacker_binary, listen_plain, CONTROL_TRIALS, other_uid=False)
    results_file["plain_twisted_vs_same_uid"] = {"trials": dict(counts), "attacker": attacker}
    assert sum(counts.values()) == CONTROL_TRIALS
    assert not any(k.startswith("HIJACKED") for k in counts), dict(counts)


def test_window_deterministic_listen_stage_error() -> None:
    """The window itself, without timing: the core's socket is bound, another socket
    (same uid, SO_REUSEADDR, as Linux allows while neither listens) binds and listens
    first; the core's listen() then fails with the listen stage and the message says
    what it looks like.  A plain socket in the same place would fail the same way on
    Linux -- the point is that the failure is reported, not hidden."""
    from twisted_patch import _native
    from twisted_patch.errors import cannot_listen

    port = free_port()
    handle = _native.open_socket(socket.AF_INET)
    attacker = socket.socket()
    try:
        _native.bind(handle, "127.0.0.1", port)
        attacker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        attacker.bind(("127.0.0.1", port))
        attacker.listen()
        with pytest.raises(_native.BindError) as info:
            _native.listen(handle, 5)
        assert info.value.stage == "listen"
        assert info.value.errno == errno_code("EADDRINUSE")
        assert info.value.address == f"127.0.0.1:{port}"
        message = str(cannot_listen("127.0.0.1", port, info.value, info.value.stage))
        assert "between our bind and listen" in message
        assert set(h.listening_inodes(port)) == {h.socket_inode(attacker.fileno())}
    finally:
        _native.close(handle)
        attacker.close()


def errno_code(name: str) -> int:
    import errno

    code: int = getattr(errno, name)
    return code
