"""How the Linux owner lookup finds the processes that hold a listener (ext/owner_linux.c).

- Our own process: getsockopt(SO_COOKIE) on each of our descriptors, matched with the
  cookies sock_diag reports; no walk of /proc/self/fd, and the scan stops once every
  listener has been found.
- Other processes: /proc/PID/fd is walked only when /proc/PID belongs to a listener's
  uid or to ours (one stat of /proc/PID each); ``all_processes=True`` walks all.

Each test runs real processes; the ones that switch uid need root and setpriv.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from support.owner import IS_ROOT, NOBODY, SETPRIV, listening

from twisted_patch import _native, owner

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the Linux owner lookup"
)
needs_root = pytest.mark.skipif(
    not (IS_ROOT and SETPRIV), reason="needs root and setpriv to run processes as another uid"
)
OTHER = NOBODY - 1  # a third uid (no passwd entry needed)
needs_strace = pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")


def pids_of(port: int, **flags: bool) -> dict[str, tuple[int, ...]]:
    return {row[1]: tuple(row[7]) for row in _native.listeners(port, **flags)}


def traced(code: str, *calls: str) -> tuple[str, str]:
    """Run ``code`` in a fresh interpreter under strace; (stdout, trace)."""
    out = subprocess.run(
        ["strace", "-f", "-e", f"trace={','.join(calls)}", sys.executable, "-I", "-c", code],
        capture_output=True, text=True, cwd="/", timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout, out.stderr


# --- this process ------------------------------------------------------------------


def test_own_listener_found_among_many_descriptors_with_holes() -> None:
    """The listener on the highest descriptor, below it 2,000 sockets with every other
    one closed, and the listener also on a second descriptor: found, our pid once."""
    noise = [socket.socket() for _ in range(2000)]
    listener = socket.socket()
    for s in noise[::2]:
        s.close()
    extra = -1
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        import fcntl  # POSIX; the module is Linux-only (pytestmark)

        extra = fcntl.fcntl(listener.fileno(), fcntl.F_DUPFD, listener.fileno() + 100)
        assert listener.fileno() > max(s.fileno() for s in noise[1::2])
        port = listener.getsockname()[1]
        assert pids_of(port, self_only=True) == {"127.0.0.1": (os.getpid(),)}
        assert pids_of(port) == {"127.0.0.1": (os.getpid(),)}
    finally:
        if extra >= 0:
            os.close(extra)
        listener.close()
        for s in noise:
            s.close()


def test_a_listener_we_do_not_hold_is_not_ours() -> None:
    with listening(["127.0.0.1"]) as child:
        assert pids_of(child.port, self_only=True) == {"127.0.0.1": ()}
        assert pids_of(child.port) == {"127.0.0.1": (child.pid,)}


@needs_strace
def test_own_process_by_cookie_without_reading_proc_self_fd() -> None:
    """The self-only lookup asks each descriptor for its cookie and stops at the
    listener: with 500 sockets opened after it, far fewer than 500 calls are made."""
    code = (
        "import os, socket; from twisted_patch import _native\n"
        "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(1)\n"
        "noise = [socket.socket() for _ in range(500)]\n"
        "rows = _native.listeners(s.getsockname()[1], True)\n"
        "print(os.getpid(), s.fileno(), rows[0][7])\n"
    )
    stdout, trace = traced(code, "getsockopt,openat")
    pid, fd, holders = stdout.split(maxsplit=2)
    assert holders.strip() == f"({pid},)"
    cookie_calls = [line for line in trace.splitlines() if "SO_COOKIE" in line]
    assert cookie_calls, trace[-2000:]
    # fd 0..listener: every call up to and including the listener's descriptor, no more
    assert len(cookie_calls) <= int(fd) + 1, (fd, len(cookie_calls))
    assert not re.search(rf'openat\([^"]*"/proc/({pid}|self|thread-self)/fd"', trace)


# --- other processes ----------------------------------------------------------------


@contextmanager
def running(cmd: list[str], **kw: object) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            cwd="/", **kw)  # type: ignore[call-overload]
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()


@needs_root
@needs_strace
def test_processes_of_other_uids_are_walked_only_when_they_own_a_listener() -> None:
    """A uid-65533 process holding sockets on other ports costs one stat of /proc/PID,
    never a walk of its /proc/PID/fd; a uid-65534 process that owns a listener on the
    port is walked and named."""
    with listening(["127.0.0.1"], uid=OTHER) as bystander, \
            listening(["127.0.0.1"], uid=NOBODY) as holder:
        code = (
            "from twisted_patch import _native\n"
            f"print(_native.listeners({holder.port})[0][7])\n"
        )
        stdout, trace = traced(code, "openat,newfstatat")
        assert stdout.strip() == f"({holder.pid},)"
        assert f'"/proc/{holder.pid}/fd"' in trace
        assert f'"{bystander.pid}"' in trace  # its /proc entry was looked at ...
        assert f'"/proc/{bystander.pid}/fd"' not in trace  # ... and not walked
        # Control: the same lookup of the bystander's own port walks the bystander.
        code = ("from twisted_patch import _native\n"
                f"print(_native.listeners({bystander.port})[0][7])\n")
        stdout, trace = traced(code, "openat,newfstatat")
        assert stdout.strip() == f"({bystander.pid},)"
        assert f'"/proc/{bystander.pid}/fd"' in trace


_DROP_THEN_LISTEN = r"""
import os, socket, sys
os.setgroups([]); os.setgid(65534); os.setuid(65534)  # no exec: the process is not dumpable
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(1)
print(s.getsockname()[1], flush=True)
sys.stdin.read()
"""


@needs_root
def test_a_daemon_that_dropped_root_without_exec_is_found() -> None:
    """twistd --uid and most daemons switch uid in-process, then listen: the socket is
    uid 65534's and the process is no longer dumpable (its /proc/PID/fd belongs to
    root, only root may read it), while /proc/PID shows its effective uid: found."""
    with running([sys.executable, "-I", "-c", _DROP_THEN_LISTEN]) as child:
        assert child.stdout is not None
        port = int(child.stdout.readline())
        assert os.stat(f"/proc/{child.pid}/fd").st_uid == 0  # not dumpable
        assert os.stat(f"/proc/{child.pid}").st_uid == NOBODY
        rows = _native.listeners(port)
        assert [(r[3], tuple(r[7])) for r in rows] == [(NOBODY, (child.pid,))]


@needs_root
@pytest.mark.skipif(shutil.which("ss") is None, reason="ss (iproute2) is not installed")
def test_socket_handed_to_a_third_uid_needs_all_processes() -> None:
    """The documented limit: our (root's) listening socket inherited by a uid-65534
    process, ours closed.  ss -p sees the holder; the default lookup does not walk
    uid 65534 (it owns no listener on the port) and reports no pid; all_processes=True
    finds it."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    cmd = [SETPRIV or "setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
           "sh", "-c", "echo ready; exec cat"]
    with running(cmd, pass_fds=(listener.fileno(),)) as child:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        listener.close()
        ss = subprocess.run(["ss", "-Hltnp", f"sport = :{port}"], capture_output=True,
                            text=True, check=True).stdout
        assert f"pid={child.pid}," in ss, ss
        rows = _native.listeners(port)
        assert [(r[3], tuple(r[7])) for r in rows] == [(0, ())]
        rows = _native.listeners(port, all_processes=True)
        assert [(r[3], tuple(r[7])) for r in rows] == [(0, (child.pid,))]
        # verify() with that pid looks in every process, so it finds the holder
        assert owner.verify("127.0.0.1", port, pid=child.pid).owned
        assert not owner.verify("127.0.0.1", port, pid=os.getpid()).owned
