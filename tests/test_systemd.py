"""``xsystemd:``: socket-activated listeners with xtcp's guarantees, on real supervisors.

The supervisors are Debian's ``systemd-socket-activate`` (it binds and listens
like a systemd socket unit, waits for the first connection, then execs the
server with ``LISTEN_PID``/``LISTEN_FDS``/``LISTEN_FDNAMES``) and, for sockets
it cannot make (SO_REUSEPORT set, bound but not listening, a copy kept by the
supervisor as systemd keeps one), a small Python supervisor in this file that
passes descriptors the same way.  The server is ``support/systemd_child.py``, a
Twisted program listening on endpoint strings; every run is a real process,
ended by its pid.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="socket activation tests run on Linux"
)

from support.tahoe_grid import exclusive_listener_lines, free_port, has_ipv6  # noqa: E402

from twisted_patch import owner  # noqa: E402
from twisted_patch.cli.attacks import Attack, run_attack, standard_attacks  # noqa: E402

ACTIVATE = shutil.which("systemd-socket-activate")
NO_ACTIVATE = ("systemd-socket-activate missing (Debian package systemd; make deps)"
               if sys.platform.startswith("linux") else "socket activation tests run on Linux")
needs_activate = pytest.mark.skipif(ACTIVATE is None, reason=NO_ACTIVATE)
CHILD = str(Path(__file__).parent / "support" / "systemd_child.py")
BOUND = 30.0


def _attacks(*keys: str) -> list[Attack]:
    by_key = {a.key: a for a in standard_attacks()}
    return [by_key[k] for k in keys if k in by_key]


LOOPBACK_ATTACKS = _attacks("same-plain", "same-reuseaddr", "same-reuseport",
                            "same-reuseaddr-reuseport", "wildcard-over-specific",
                            "other-uid-same")
SHADOWS = [replace(a, key=f"{a.key}+reuseaddr", options=tuple(sorted({*a.options, "reuseaddr"})))
           for a in _attacks("v6-shadow", "v6-wildcard-shadow", "other-uid-v6-shadow")]


@dataclass
class Run:
    """One supervised server: its process, its STATUS file and its output."""

    proc: subprocess.Popen[bytes]
    status_path: Path
    out_path: Path
    ports: list[int]
    keep: list[socket.socket] = field(default_factory=list)  # the supervisor's copies

    @property
    def pid(self) -> int:
        return self.proc.pid

    def status(self, bound: float = BOUND) -> dict[str, Any]:
        deadline = time.monotonic() + bound
        while time.monotonic() < deadline:
            if self.status_path.exists():
                result: dict[str, Any] = json.loads(self.status_path.read_text())
                return result
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"no status from pid {self.pid} "
                             f"(exit {self.proc.poll()}):\n{self.output()}")

    def output(self) -> str:
        return self.out_path.read_text(errors="replace") if self.out_path.exists() else ""

    def errors(self) -> list[str]:
        return [r["error"] for r in self.status()["results"] if "error" in r]

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=15)
        for s in self.keep:
            s.close()


def _wait_listening(port: int, bound: float = BOUND) -> None:
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        if owner.listeners(port, processes=False):
            return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listens on {port} after {bound} s")


def _hello(host: str, port: int) -> str:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as c:
        c.settimeout(BOUND)
        c.connect((host, port))
        return c.makefile("rb").readline().decode()


def _child(tmp: Path, endpoints: list[str]) -> tuple[list[str], Path, Path]:
    status = tmp / f"status-{time.monotonic_ns()}.json"
    out = tmp / f"{status.stem}.out"
    return [sys.executable, "-I", CHILD, str(status), *endpoints], status, out


def activate(tmp: Path, listen: list[str], names: list[str], endpoints: list[str],
             trigger: tuple[str, int] | None = None) -> Run:
    """``systemd-socket-activate -l ADDR... --fdname=NAMES CHILD``; the first connection
    (to ``trigger``, default the first address) makes it exec the child."""
    assert ACTIVATE is not None
    command, status, out = _child(tmp, endpoints)
    args = [ACTIVATE]
    # systemd-socket-activate starts the child with a clean environment: pass on the
    # sanitizer runtime and its options (make test-asan), or the child cannot start.
    for name in sorted(os.environ):
        if name == "LD_PRELOAD" or name.endswith("SAN_OPTIONS"):
            args += ["-E", name]
    for address in listen:
        args += ["-l", address]
    args += [f"--fdname={':'.join(names)}", *command]
    with open(out, "wb") as f:
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT)
    ports = [int(a.rpartition(":")[2]) for a in listen]
    run = Run(proc, status, out, ports)
    try:
        _wait_listening(ports[0])
        host, port = trigger or (listen[0].rpartition(":")[0].strip("[]"), ports[0])
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        trig = socket.socket(family, socket.SOCK_STREAM)
        trig.settimeout(BOUND)
        trig.connect((host, port))
        run.keep.append(trig)  # answered (or reset) once the child runs
    except BaseException:
        run.stop()
        raise
    return run


def supervise(tmp: Path, sockets: list[tuple[socket.socket, str]], endpoints: list[str],
              keep: bool) -> Run:
    """What systemd does, in Python: the sockets become descriptors 3.. of the child,
    with LISTEN_PID (the child's own pid: set by ``sh`` before its exec), LISTEN_FDS
    and LISTEN_FDNAMES; ``keep``: the supervisor keeps its copies open (systemd does)."""
    command, status, out = _child(tmp, endpoints)
    fds = [s.fileno() for s, _ in sockets]
    env = dict(os.environ, LISTEN_FDS=str(len(fds)),
               LISTEN_FDNAMES=":".join(name for _, name in sockets))
    env.pop("LISTEN_PID", None)
    targets = list(range(3, 3 + len(fds)))

    def move_fds() -> None:  # in the child, before exec: descriptors 3.. (inheritable)
        dups = [os.dup(fd) for fd in fds]
        for dup, target in zip(dups, targets):
            os.dup2(dup, target)
        for dup in dups:
            if dup not in targets:
                os.close(dup)

    shell = 'LISTEN_PID=$$; export LISTEN_PID; exec "$@"'
    with open(out, "wb") as f:
        proc = subprocess.Popen(["/bin/sh", "-c", shell, "sh", *command], env=env,
                                stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                                pass_fds=targets, preexec_fn=move_fds)
    run = Run(proc, status, out, [s.getsockname()[1] for s, _ in sockets])
    if keep:
        run.keep += [s for s, _ in sockets]
    else:
        for s, _ in sockets:
            s.close()
    return run


def listening_socket(host: str, port: int = 0, *, reuseport: bool = False,
                     listen: bool = True, v6only: bool = True) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuseport:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(v6only))
    s.bind((host, port))
    if listen:
        s.listen(16)
    return s


@pytest.fixture
def tmp() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="twisted-patch-systemd-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def activated() -> Iterator[Run]:
    """xsystemd on 127.0.0.1:P from systemd-socket-activate, for the attack tests."""
    if ACTIVATE is None:
        pytest.skip(NO_ACTIVATE)
    path = Path(tempfile.mkdtemp(prefix="twisted-patch-systemd-"))
    port = free_port()
    run = activate(path, [f"127.0.0.1:{port}"], ["web"], ["xsystemd:domain=INET:name=web"])
    try:
        run.status()
        yield run
    finally:
        run.stop()
        shutil.rmtree(path, ignore_errors=True)


# --- socket-activated by systemd-socket-activate --------------------------------


@needs_activate
def test_adopted_socket_is_served_guarded_and_not_inheritable(activated: Run) -> None:
    run = activated
    port = run.ports[0]
    status = run.status()
    assert run.errors() == [], run.output()
    [result] = status["results"]
    assert result["class"] == "ExclusivePort", result
    assert result["inode"] == status["inherited"]["3"]  # the very socket it was given
    assert status["inheritable_before"] == {"3": True}  # as every LISTEN_FDS socket comes
    assert result["inheritable"] is False  # fixed: CLOEXEC set
    assert status["pid"] == run.pid  # systemd-socket-activate execs the server
    assert f"127.0.0.1:{port}" in exclusive_listener_lines(run.output())
    assert _hello("127.0.0.1", port) == f"served by {run.pid}\n"
    held = {(item.host, item.inode): item.pids for item in owner.listeners(port)}
    assert held.get(("127.0.0.1", result["inode"])) == (run.pid,), held
    if has_ipv6():
        v6 = [pids for (host, _), pids in held.items() if host == "::1"]
        assert v6 == [(run.pid,)], held  # the guard (serve) on [::1]
        assert _hello("::1", port) == f"served by {run.pid}\n"


@needs_activate
@pytest.mark.parametrize("attack", LOOPBACK_ATTACKS + SHADOWS, ids=lambda a: a.key)
def test_attacks_on_the_adopted_socket_are_refused(activated: Run, attack: Attack) -> None:
    outcome = run_attack(attack, activated.ports[0])
    if outcome.result == "n/a":
        pytest.skip(outcome.text)
    assert outcome.result == "refused", outcome.text
    assert activated.proc.poll() is None


@needs_activate
@pytest.mark.skipif(not has_ipv6(), reason="no IPv6 loopback on this host")
def test_control_twisted_systemd_endpoint_is_shadowed(tmp: Path) -> None:
    """The same supervisor and socket with Twisted's own ``systemd:``: [::1]:P is
    free, and the IPv6 shadow takes it."""
    port = free_port()
    # index=, not name=: Twisted 22.8's systemd: has no name=
    run = activate(tmp, [f"127.0.0.1:{port}"], ["web"], ["systemd:domain=INET:index=0"])
    try:
        assert run.errors() == [], run.output()
        assert run.status()["results"][0]["class"] == "Port"
        outcome = run_attack(SHADOWS[0], port)
        assert outcome.result == "hijacked", outcome.text
    finally:
        run.stop()


def _both_families(tmp: Path, endpoints: list[str]) -> None:
    """The supervisor passed 127.0.0.1:P and [::1]:P: both are served from the
    inherited sockets (no socket of ours on the port), and the shadow is refused."""
    port = free_port()
    run = activate(tmp, [f"127.0.0.1:{port}", f"[::1]:{port}"], ["web", "web6"], endpoints)
    try:
        status = run.status()
        assert run.errors() == [], run.output()
        inherited = {status["inherited"]["3"], status["inherited"]["4"]}
        seen = {(item.host, item.inode): item.pids for item in owner.listeners(port)}
        assert seen == {("127.0.0.1", status["inherited"]["3"]): (run.pid,),
                        ("::1", status["inherited"]["4"]): (run.pid,)}, (seen, inherited)
        assert _hello("::1", port) == f"served by {run.pid}\n"
        assert _hello("127.0.0.1", port) == f"served by {run.pid}\n"
        outcome = run_attack(SHADOWS[0], port)
        assert outcome.result == "refused", outcome.text
    finally:
        run.stop()


@needs_activate
@pytest.mark.skipif(not has_ipv6(), reason="no IPv6 loopback on this host")
def test_both_families_passed_one_endpoint_serves_both(tmp: Path) -> None:
    """One endpoint (guard=serve, the loopback default) serves the passed [::1]
    socket as its sibling: what Tahoe's single web.port needs."""
    _both_families(tmp, ["xsystemd:domain=INET:name=web"])


@needs_activate
@pytest.mark.skipif(not has_ipv6(), reason="no IPv6 loopback on this host")
def test_both_families_under_one_name(tmp: Path) -> None:
    """One socket unit, two ListenStream= lines, one FileDescriptorName: name=web
    with domain=INET is the 127.0.0.1 one, and its [::1] sibling is served."""
    port = free_port()
    run = activate(tmp, [f"[::1]:{port}", f"127.0.0.1:{port}"], ["web", "web"],
                   ["xsystemd:domain=INET:name=web"], trigger=("127.0.0.1", port))
    try:
        status = run.status()
        assert run.errors() == [], run.output()
        assert status["results"][0]["inode"] == status["inherited"]["4"]
        seen = {(item.host, item.inode) for item in owner.listeners(port)}
        assert seen == {("127.0.0.1", status["inherited"]["4"]),
                        ("::1", status["inherited"]["3"])}, seen
        assert _hello("::1", port) == f"served by {run.pid}\n"
    finally:
        run.stop()


@needs_activate
@pytest.mark.skipif(not has_ipv6(), reason="no IPv6 loopback on this host")
def test_both_families_passed_two_endpoints(tmp: Path) -> None:
    """guard=no on the first: each passed socket is served by its own endpoint, and
    the second finds its sibling held by the first (no guard socket opened)."""
    _both_families(tmp, ["xsystemd:domain=INET:name=web:guard=no",
                         "xsystemd:domain=INET6:name=web6"])


@needs_activate
@pytest.mark.skipif(not has_ipv6(), reason="no IPv6 loopback on this host")
def test_sibling_served_by_the_first_endpoint_is_not_taken_twice(tmp: Path) -> None:
    port = free_port()
    run = activate(tmp, [f"127.0.0.1:{port}", f"[::1]:{port}"], ["web", "web6"],
                   ["xsystemd:domain=INET:name=web", "xsystemd:domain=INET6:name=web6"])
    try:
        [error] = run.errors()
        assert "descriptor 4 was taken over already (served as the sibling of xsystemd " \
               "name=web (guard=serve; give it guard=no" in error, error
    finally:
        run.stop()


@needs_activate
@pytest.mark.skipif(not has_ipv6(), reason="no IPv6 loopback on this host")
def test_dual_stack_wildcard_is_refused(tmp: Path) -> None:
    """systemd-socket-activate -l [::]:P leaves IPV6_V6ONLY at the kernel default
    (off: dual-stack), which cannot be changed once bound: refused, saying what to set."""
    if Path("/proc/sys/net/ipv6/bindv6only").read_text().strip() != "0":
        pytest.skip("net.ipv6.bindv6only is 1 here: [::] sockets are v6-only by default")
    port = free_port()
    run = activate(tmp, [f"[::]:{port}"], ["web"], ["xsystemd:domain=INET6:name=web"],
                   trigger=("127.0.0.1", port))
    try:
        [error] = run.errors()
        assert f"Couldn't listen on [::]:{port}" in error, error
        assert "dual-stack" in error and "BindIPv6Only=ipv6-only" in error, error
        assert run.proc.wait(timeout=BOUND) == 3
    finally:
        run.stop()


@needs_activate
def test_one_socket_serves_one_endpoint(tmp: Path) -> None:
    port = free_port()
    run = activate(tmp, [f"127.0.0.1:{port}"], ["web"],
                   ["xsystemd:domain=INET:name=web", "xsystemd:domain=INET:index=0"])
    try:
        [error] = run.errors()
        assert "descriptor 3 was taken over already (by xsystemd name=web)" in error, error
    finally:
        run.stop()


@needs_activate
def test_unknown_name_lists_what_was_inherited(tmp: Path) -> None:
    port = free_port()
    run = activate(tmp, [f"127.0.0.1:{port}"], ["web"], ["xsystemd:domain=INET:name=nope"])
    try:
        [error] = run.errors()
        assert "no inherited socket name=nope: inherited web=3" in error, error
    finally:
        run.stop()


# --- sockets systemd-socket-activate cannot make: a Python supervisor --------------


def test_reuseport_socket_is_refused(tmp: Path) -> None:
    s = listening_socket("127.0.0.1", reuseport=True)
    port = s.getsockname()[1]
    run = supervise(tmp, [(s, "web")], ["xsystemd:domain=INET:name=web"], keep=False)
    try:
        [error] = run.errors()
        assert f"Couldn't listen on 127.0.0.1:{port}" in error, error
        assert "has SO_REUSEPORT set" in error and "ReusePort=yes" in error, error
        assert run.proc.wait(timeout=BOUND) == 3
        assert owner.listeners(port, processes=False) == []  # closed, not leaked or served
    finally:
        run.stop()


def test_bound_but_not_listening_socket_is_refused(tmp: Path) -> None:
    s = listening_socket("127.0.0.1", listen=False)
    port = s.getsockname()[1]
    run = supervise(tmp, [(s, "web")], ["xsystemd:domain=INET:name=web"], keep=False)
    try:
        [error] = run.errors()
        assert f"Couldn't listen on 127.0.0.1:{port}" in error, error
        assert "bound but not listening" in error, error
    finally:
        run.stop()


def test_wrong_domain_and_udp_are_refused(tmp: Path) -> None:
    tcp = listening_socket("127.0.0.1")
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    run = supervise(tmp, [(tcp, "web"), (udp, "dgram")],
                    ["xsystemd:domain=INET6:name=web", "xsystemd:domain=INET:name=dgram"],
                    keep=False)
    try:
        errors = run.errors()
        assert len(errors) == 2, errors
        assert "is IPv4 (INET), not the IPv6 (INET6) that domain= says" in errors[0], errors
        assert "is not a TCP stream socket" in errors[1], errors
    finally:
        run.stop()


def test_supervisor_keeping_its_copy_is_accepted(tmp: Path) -> None:
    """systemd keeps the socket it passed: the owner check finds the supervisor
    holding the same kernel socket (same inode), accepts it and logs it."""
    s = listening_socket("127.0.0.1")
    port = s.getsockname()[1]
    run = supervise(tmp, [(s, "web")], ["xsystemd:domain=INET:name=web"], keep=True)
    try:
        assert run.errors() == [], run.output()
        [item] = [i for i in owner.listeners(port) if i.host == "127.0.0.1"]
        assert set(item.pids) == {os.getpid(), run.pid}, item
        assert f"127.0.0.1:{port} is also held by pid {os.getpid()} (" in run.output()
        assert _hello("127.0.0.1", port) == f"served by {run.pid}\n"
        # The server stops (SIGTERM: Twisted closes its port) without shutdown(),
        # which would have stopped the supervisor's copy listening too.
        os.kill(run.pid, signal.SIGTERM)
        assert run.proc.wait(timeout=BOUND) == 0, run.output()
        assert "(TCP Port" in run.output()  # Twisted did close the port
        assert s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
        with socket.create_connection(("127.0.0.1", port), timeout=BOUND):
            pass  # still listening: queued for the next activation, as with systemd
    finally:
        run.stop()


def test_supervisor_holding_another_socket_on_the_port_is_refused(tmp: Path) -> None:
    """The control for the same-socket rule: a second listening socket on the port
    (a SO_REUSEPORT group whose passed member then cleared the flag) held by the
    supervisor is foreign, and the listen fails naming its holder."""
    passed = listening_socket("127.0.0.1", reuseport=True)
    port = passed.getsockname()[1]
    other = listening_socket("127.0.0.1", port, reuseport=True)
    passed.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 0)
    try:
        run = supervise(tmp, [(passed, "web")], ["xsystemd:domain=INET:name=web"], keep=False)
        try:
            [error] = run.errors()
            assert "another process may receive its connections too" in error, error
            assert f"pid {os.getpid()}" in error, error
        finally:
            run.stop()
    finally:
        other.close()


# --- the parser, in this process ------------------------------------------------


@pytest.mark.parametrize(
    "description,message",
    [
        ("xsystemd:domain=UNIX:index=0", "domain='UNIX' is not INET or INET6"),
        ("xsystemd:domain=INET", "give exactly one of index= and name="),
        ("xsystemd:domain=INET:index=0:name=web", "give exactly one of index= and name="),
        ("xsystemd:name=web", "no domain given"),
        ("xsystemd:domain=INET:index=x", "index='x' is not a number"),
        ("xsystemd:domain=INET:index=0", "this process inherited no sockets"),
        ("xsystemd:domain=INET:name=web:colour=red", "unknown option 'colour'"),
        ("xsystemd:domain=INET:name=web:guard=maybe", "xsystemd: guard"),
    ],
)
def test_parser_errors_are_clear(description: str, message: str) -> None:
    from twisted.internet import endpoints, reactor

    with pytest.raises(ValueError) as raised:
        endpoints.serverFromString(reactor, description)
    assert message in str(raised.value), str(raised.value)


# --- a real Tahoe-LAFS node on xsystemd: ports -----------------------------------


@needs_activate
@pytest.mark.tahoe
def test_tahoe_node_on_socket_activated_ports(tmp: Path) -> None:
    """``web.port`` and ``tub.port`` as ``xsystemd:`` (explicit ``tub.location``),
    the node run by ``tahoe run`` under systemd-socket-activate: both ports are the
    inherited sockets, guarded on [::1], served, and the IPv6 shadow is refused."""
    import importlib.util
    import urllib.request

    if importlib.util.find_spec("allmydata") is None:
        pytest.skip("tahoe-lafs is not installed: pip install '.[tahoe]'")
    from support.tahoe_grid import Node, node_env, run_tahoe, set_config, tahoe_command

    assert ACTIVATE is not None
    web, tub = free_port(), free_port()
    node = Node(tmp / "node", tmp)
    run_tahoe(["create-node", "--hostname=127.0.0.1", "--nickname=activated",
               str(node.basedir)], tmp)
    set_config(node.cfg, "node", {
        "web.port": "xsystemd:domain=INET:name=web",
        "tub.port": "xsystemd:domain=INET:name=tub",
        "tub.location": f"tcp:127.0.0.1:{tub}",
    })
    out = tmp / "node.out"
    with open(out, "wb") as f:
        proc = subprocess.Popen(
            [ACTIVATE, "-l", f"127.0.0.1:{web}", "-l", f"127.0.0.1:{tub}", "--fdname=web:tub",
             *tahoe_command(), "run", "--allow-stdin-close", str(node.basedir)],
            env=node_env(tmp), cwd=tmp, stdin=subprocess.DEVNULL, stdout=f,
            stderr=subprocess.STDOUT)
    try:
        _wait_listening(web)
        inodes = {p: {i.inode for i in owner.listeners(p, processes=False)} for p in (web, tub)}
        with socket.create_connection(("127.0.0.1", web), timeout=BOUND):
            pass  # the first connection: systemd-socket-activate execs tahoe
        deadline = time.monotonic() + 90
        while not (node.basedir / "node.url").exists():
            assert proc.poll() is None, out.read_text(errors="replace")
            assert time.monotonic() < deadline, out.read_text(errors="replace")
            time.sleep(0.1)
        assert (node.basedir / "node.url").read_text().strip() == f"http://127.0.0.1:{web}/"
        log = out.read_text(errors="replace")
        made = exclusive_listener_lines(log)
        assert f"127.0.0.1:{web}" in made and f"127.0.0.1:{tub}" in made, log
        for port in (web, tub):
            held = {(i.host, i.inode): i.pids for i in owner.listeners(port)}
            v4 = {inode: pids for (host, inode), pids in held.items() if host == "127.0.0.1"}
            assert set(v4) == inodes[port] and all(p == (proc.pid,) for p in v4.values()), held
            if has_ipv6():
                assert [p for (h, _), p in held.items() if h == "::1"] == [(proc.pid,)], held
        with urllib.request.urlopen(f"http://127.0.0.1:{web}/?t=json", timeout=BOUND) as resp:
            assert json.loads(resp.read())["introducers"] is not None  # the node's web API
        if has_ipv6():
            outcome = run_attack(SHADOWS[0], web)
            assert outcome.result == "refused", outcome.text
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=15)

