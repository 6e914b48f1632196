"""Fault-injection cases for the Python path, run in a child process with the
fault shim (xbfault.c) preloaded.  Used by tests/test_fault_injection.py:

    python fault_cases.py matrix        one injected failure per case; JSON outcomes
    python fault_cases.py soak N        N injected failures; JSON fd/RSS/object counts

The shim only fails calls made from twisted_patch._native (XBFAULT_CALLER), so
Python's own socket module and Twisted are never hit.  The errno lists are the
ones each call's Linux man page documents for a TCP socket.
"""

from __future__ import annotations

import ctypes
import errno
import gc
import json
import os
import socket
import sys
from dataclasses import asdict, dataclass, field
from typing import Any

E = errno

SOCKET_ERRS = ["EACCES", "EAFNOSUPPORT", "EINVAL", "EMFILE", "ENFILE", "ENOBUFS", "ENOMEM",
               "EPROTONOSUPPORT"]
SOCKOPT_ERRS = ["EBADF", "EFAULT", "EINVAL", "ENOPROTOOPT", "ENOTSOCK"]
BIND_ERRS = ["EACCES", "EADDRINUSE", "EBADF", "EINVAL", "ENOTSOCK", "EADDRNOTAVAIL", "EFAULT",
             "ENOMEM"]
LISTEN_ERRS = ["EADDRINUSE", "EBADF", "ENOTSOCK", "EOPNOTSUPP"]
GETSOCKNAME_ERRS = ["EBADF", "EFAULT", "EINVAL", "ENOBUFS", "ENOTSOCK"]
FCNTL_ERRS = ["EBADF", "EINVAL"]  # F_GETFD / F_GETFL can only fail these ways
CLOSE_ERRS = ["EBADF", "EINTR", "EIO", "ENOSPC", "EDQUOT"]
GAI_ERRS = ["EAI_AGAIN", "EAI_FAIL", "EAI_MEMORY"]
# The owner lookup (Linux): netlink socket, sendto, recvmsg, /proc reads.
SENDTO_ERRS = ["EACCES", "EAGAIN", "EBADF", "ECONNRESET", "EINVAL", "EMSGSIZE", "ENOBUFS",
               "ENOMEM", "ENOTSOCK", "EOPNOTSUPP"]
RECVMSG_ERRS = ["EAGAIN", "EBADF", "EFAULT", "EINVAL", "ENOBUFS", "ENOMEM", "ENOTSOCK"]
OPENDIR_ERRS = ["EMFILE", "ENFILE", "ENOMEM"]
OPENDIR_SKIPPED = ["EACCES", "ENOENT", "ENOTDIR"]  # "gone or not ours to see"
READLINK_ERRS = ["EBADF", "EFAULT", "EINVAL", "EIO", "ELOOP", "ENAMETOOLONG", "ENOMEM"]
READLINK_SKIPPED = ["EACCES", "ENOENT", "ENOTDIR"]
# getsockopt(SO_COOKIE) on our own descriptors: these fail the lookup; the FALLBACK ones
# (no cookies from this kernel, or a security module refusing) make it walk /proc/self/fd.
COOKIE_ERRS = ["EFAULT", "ENOBUFS", "ENOMEM"]
COOKIE_FALLBACK = ["ENOPROTOOPT", "EOPNOTSUPP", "EACCES", "EPERM", "EINVAL"]
# stat(/proc/PID): ENOENT/EACCES/ENOTDIR are "gone or not ours to see".
FSTATAT_ERRS = ["EBADF", "EFAULT", "ELOOP", "ENAMETOOLONG", "ENOMEM", "EOVERFLOW"]
FSTATAT_SKIPPED = ["EACCES", "ENOENT", "ENOTDIR"]
GNI_ERRS = ["EAI_AGAIN", "EAI_FAIL", "EAI_MEMORY", "EAI_OVERFLOW"]

# What a message must mention for each stage (besides the address and the OS text).
STAGE_WORDS = {
    "socket": ("socket", "address family"),
    "bind": ("bind", "in use", "not an address of this host"),
    "listen": ("listen",),
}


@dataclass
class Case:
    id: str
    path: str  # "endpoint": ExclusiveTCPServerEndpoint.listen; else a _native function
    host: str
    rules: list[tuple[Any, ...]]  # (call, errno name, skip[, times: default 1, -1 all])
    stage: str | None = None  # expected BindError / ExclusiveListenError stage
    errno_name: str | None = None  # expected errno (None: the first rule's)
    detail: str | None = None  # expected .detail / word in the message
    value_error: bool = False  # expect ValueError (endpoint: CannotListenError from one)
    words: list[str] = field(default_factory=list)  # the message must contain one of these
    succeeds: bool = False  # the failure is absorbed by design (retried, skipped, logged)
    guard: str | None = None  # endpoint guard= / probe= (None: the defaults)
    probe: str | None = None
    sibling: bool = False  # the message names the other family's address (the guard's)
    expect_guard: str | None = None  # guard mode the listening port must have
    holder_self: bool = False  # listeners: this process must still be found as the holder


def cases() -> list[Case]:
    out: list[Case] = []
    hosts = ("127.0.0.1", "::1")
    for host in hosts:
        fam = "v4" if host == "127.0.0.1" else "v6"
        for e in SOCKET_ERRS:
            out.append(Case(f"endpoint-socket-{e}-{fam}", "endpoint", host, [("socket", e, 0)],
                            "socket", detail="socket"))
        opts = ["SO_REUSEADDR"] if fam == "v4" else ["IPV6_V6ONLY", "SO_REUSEADDR"]
        for skip, opt in enumerate(opts):
            for e in SOCKOPT_ERRS:
                out.append(Case(f"endpoint-setsockopt{skip}-{e}-{fam}", "endpoint", host,
                                [("setsockopt", e, skip)], "option", detail=opt, words=[opt]))
        for e in BIND_ERRS:
            out.append(Case(f"endpoint-bind-{e}-{fam}", "endpoint", host, [("bind", e, 0)],
                            "bind", detail="bind"))
        for e in LISTEN_ERRS:
            out.append(Case(f"endpoint-listen-{e}-{fam}", "endpoint", host, [("listen", e, 0)],
                            "listen", detail="listen"))
        for e in CLOSE_ERRS:
            # close() failing on the error path must not hide the listen error nor leak.
            out.append(Case(f"endpoint-listen+close-{e}-{fam}", "endpoint", host,
                            [("listen", "EADDRINUSE", 0), ("close", e, 0)], "listen",
                            errno_name="EADDRINUSE", detail="listen"))
        for e in GNI_ERRS:
            # The address in the error cannot be formatted: still a clear bind error.
            out.append(Case(f"endpoint-bind+getnameinfo-{e}-{fam}", "endpoint", host,
                            [("bind", "EADDRINUSE", 0), ("getnameinfo", e, 0)], "bind",
                            errno_name="EADDRINUSE", detail="bind"))
    for e in GAI_ERRS:
        words = ["out of memory"] if e == "EAI_MEMORY" else ["getaddrinfo failed"]
        # Every parse fails: a clear error, from the first parse in listen.
        out.append(Case(f"endpoint-getaddrinfo-every-{e}", "endpoint", "::1",
                        [("getaddrinfo", e, 0, -1)], value_error=True, words=words))
        # Only ExclusivePort.__init__'s parse fails: startListening parses again and
        # must still give the port its default guard (not run without one).
        out.append(Case(f"endpoint-getaddrinfo-init-{e}", "endpoint", "::1",
                        [("getaddrinfo", e, 0)], succeeds=True, expect_guard="serve"))
        out.append(Case(f"parse_address-getaddrinfo-{e}", "parse_address", "::1",
                        [("getaddrinfo", e, 0)], value_error=True, words=words))
    for e in GNI_ERRS:
        out.append(Case(f"parse_address-getnameinfo-{e}", "parse_address", "::1",
                        [("getnameinfo", e, 0)], value_error=True, words=["cannot format"]))
    for host in hosts:
        fam = "v4" if host == "127.0.0.1" else "v6"
        for e in GETSOCKNAME_ERRS:
            out.append(Case(f"bind-getsockname-{e}-{fam}", "bind", host,
                            [("getsockname", e, 0)], "getsockname", detail="getsockname"))
            out.append(Case(f"socket_options-getsockname-{e}-{fam}", "socket_options", host,
                            [("getsockname", e, 0)], "getsockname", detail="getsockname"))
        opts = ["SO_REUSEADDR", "SO_REUSEPORT", "SO_ACCEPTCONN"] + (
            ["IPV6_V6ONLY"] if fam == "v6" else [])
        for skip, opt in enumerate(opts):
            for e in SOCKOPT_ERRS:
                out.append(Case(f"socket_options-getsockopt{skip}-{e}-{fam}", "socket_options",
                                host, [("getsockopt", e, skip)], "option", detail=opt))
        for skip, what in enumerate(["F_GETFD", "F_GETFL"]):
            for e in FCNTL_ERRS:
                out.append(Case(f"socket_options-fcntl{skip}-{e}-{fam}", "socket_options", host,
                                [("fcntl", e, skip)], "option", detail=what))  # fcntl64 too
        for e in CLOSE_ERRS:
            out.append(Case(f"close-{e}-{fam}", "close", host, [("close", e, 0)], "socket",
                            detail="close"))
        for e in BIND_ERRS:
            out.append(Case(f"bind-bind-{e}-{fam}", "bind", host, [("bind", e, 0)], "bind",
                            detail="bind"))
        for e in LISTEN_ERRS:
            out.append(Case(f"listen-listen-{e}-{fam}", "listen", host, [("listen", e, 0)],
                            "listen", detail="listen"))
    out += owner_cases()
    return out


def owner_cases() -> list[Case]:
    """_native.listeners (NETLINK_SOCK_DIAG + /proc/PID/fd) and the endpoint's
    post-listen check, which uses it."""
    out: list[Case] = []
    nl = "NETLINK_SOCK_DIAG"
    for e in SOCKET_ERRS:
        out.append(Case(f"listeners-socket-{e}", "listeners", "127.0.0.1", [("socket", e, 0)],
                        "owner", detail=f"socket(AF_NETLINK, {nl})"))
    for e in SENDTO_ERRS:
        out.append(Case(f"listeners-sendto-{e}", "listeners", "127.0.0.1", [("sendto", e, 0)],
                        "owner", detail=f"sendto({nl})"))
    for e in RECVMSG_ERRS:
        out.append(Case(f"listeners-recvmsg-{e}", "listeners", "127.0.0.1",
                        [("recvmsg", e, 0)], "owner", detail=f"recvmsg({nl})"))
    for call in ("sendto", "recvmsg"):  # EINTR is retried
        out.append(Case(f"listeners-{call}-EINTR", "listeners", "127.0.0.1",
                        [(call, "EINTR", 0)], succeeds=True))
    for e in CLOSE_ERRS:
        out.append(Case(f"listeners-close-{e}", "listeners", "127.0.0.1", [("close", e, 0)],
                        "owner", detail=f"close({nl})"))
    # This process: getsockopt(SO_COOKIE) on each descriptor below FDSize (read from
    # /proc/thread-self/status).  A failure of the call itself is an error; a kernel
    # or security module that will not give cookies makes the lookup walk
    # /proc/self/fd instead, and we are still found.
    for e in COOKIE_ERRS:
        out.append(Case(f"listeners-cookie-{e}", "listeners", "127.0.0.1",
                        [("getsockopt", e, 0)], "owner", detail="getsockopt(SO_COOKIE)"))
    for e in COOKIE_FALLBACK:
        out.append(Case(f"listeners-cookie-{e}", "listeners", "127.0.0.1",
                        [("getsockopt", e, 0)], succeeds=True, holder_self=True))
    # The size of the fd table unreadable: the soft RLIMIT_NOFILE bounds the scan.
    for call in ("open", "read"):
        for e in ("EACCES", "EIO", "ENOENT", "EMFILE"):
            out.append(Case(f"listeners-{call}-status-{e}", "listeners", "127.0.0.1",
                            [(call, e, 0, 2)], succeeds=True, holder_self=True))
    # The /proc/self/fd walk (cookies refused): every call of it.
    no_cookie = ("getsockopt", "ENOPROTOOPT", 0)
    for e in OPENDIR_ERRS:
        out.append(Case(f"listeners-opendir-self-{e}", "listeners", "127.0.0.1",
                        [no_cookie, ("opendir", e, 0)], "owner", errno_name=e,
                        detail="opendir(/proc/PID/fd)"))
    for e in OPENDIR_SKIPPED:
        out.append(Case(f"listeners-opendir-self-{e}", "listeners", "127.0.0.1",
                        [no_cookie, ("opendir", e, 0)], succeeds=True))
    out.append(Case("listeners-readdir-EBADF", "listeners", "127.0.0.1",
                    [no_cookie, ("readdir", "EBADF", 0)], "owner", errno_name="EBADF",
                    detail="readdir(/proc/PID/fd)"))
    for e in READLINK_ERRS:
        out.append(Case(f"listeners-readlinkat-{e}", "listeners", "127.0.0.1",
                        [no_cookie, ("readlinkat", e, 0)], "owner", errno_name=e,
                        detail="readlink(/proc/PID/fd/N)"))
    for e in READLINK_SKIPPED:
        out.append(Case(f"listeners-readlinkat-{e}", "listeners", "127.0.0.1",
                        [no_cookie, ("readlinkat", e, 0)], succeeds=True))
    # /proc/PID/comm (the 2nd open and read, after the status file): the name stays unknown.
    for call in ("open", "read"):
        for e in ("EACCES", "EIO", "ENOENT", "EMFILE"):
            out.append(Case(f"listeners-{call}-comm-{e}", "listeners", "127.0.0.1",
                            [(call, e, 1)], succeeds=True, holder_self=True))
    # Other processes: /proc, then one stat of /proc/PID each (a process is walked only
    # when its uid owns a listener or is ours).
    for e in OPENDIR_ERRS:
        out.append(Case(f"listeners-opendir-proc-{e}", "listeners-all", "127.0.0.1",
                        [("opendir", e, 0)], "owner", detail="opendir(/proc)"))
    out.append(Case("listeners-readdir-proc-EBADF", "listeners-all", "127.0.0.1",
                    [("readdir", "EBADF", 0)], "owner", detail="readdir(/proc)"))
    for e in FSTATAT_ERRS:
        out.append(Case(f"listeners-stat-proc-{e}", "listeners-all", "127.0.0.1",
                        [("fstatat", e, 0)], "owner", detail="stat(/proc/PID)"))
    for e in FSTATAT_SKIPPED:
        out.append(Case(f"listeners-stat-proc-{e}", "listeners-all", "127.0.0.1",
                        [("fstatat", e, 0)], succeeds=True, holder_self=True))
    # The endpoint's post-listen check cannot look: logged, the port still listens
    # (ExclusivePort's documented policy: not knowing is not evidence of a hijack).
    # guard=no, probe=off: the second socket() is then the lookup's netlink socket.
    for call, e in (("socket", "EMFILE"), ("sendto", "ENOBUFS"), ("recvmsg", "ENOMEM")):
        skip = 1 if call == "socket" else 0  # the first socket() is the listener's
        for host in ("127.0.0.1", "::1"):
            fam = "v4" if host == "127.0.0.1" else "v6"
            out.append(Case(f"endpoint-postcheck-{call}-{e}-{fam}", "endpoint", host,
                            [(call, e, skip)], succeeds=True, guard="no", probe="off"))
    # The address-family guard (default serve on loopback): a guard that cannot be
    # opened fails the listen (fail closed), naming the sibling address -- except
    # EAFNOSUPPORT: that family does not exist here, which is logged, not fatal.
    for host in ("127.0.0.1", "::1"):
        fam = "v4" if host == "127.0.0.1" else "v6"
        for e in ("EMFILE", "ENOBUFS"):
            out.append(Case(f"endpoint-guard-socket-{e}-{fam}", "endpoint", host,
                            [("socket", e, 1)], "socket", detail="socket", sibling=True))
        out.append(Case(f"endpoint-guard-socket-EAFNOSUPPORT-{fam}", "endpoint", host,
                        [("socket", "EAFNOSUPPORT", 1)], succeeds=True, expect_guard="serve"))
    # The self-probe (strict): an attempt whose socket cannot be made is recorded as
    # a probe error, not a hijackable bind: the port listens.
    for host in ("127.0.0.1", "::1"):
        fam = "v4" if host == "127.0.0.1" else "v6"
        for e in ("EMFILE", "ENOBUFS"):
            out.append(Case(f"endpoint-probe-socket-{e}-{fam}", "endpoint", host,
                            [("socket", e, 2)], succeeds=True, guard="no", probe="strict"))
    return out


def problems(case: Case, outcome: dict[str, Any]) -> list[str]:
    """What is wrong with an outcome (empty: as expected)."""
    found: list[str] = []
    if outcome.get("injected", 0) < 1:
        found.append(f"the shim injected nothing ({outcome})")
    if outcome.get("fds_after") != outcome.get("fds_before"):
        found.append(f"fd count {outcome.get('fds_before')} -> {outcome.get('fds_after')}")
    kind = outcome.get("type")
    message = outcome.get("message", "")
    if case.succeeds:
        expected = "listening" if case.path == "endpoint" else "returned"
        if kind != expected:
            found.append(f"expected the failure to be absorbed ({expected}), got {outcome}")
        if case.expect_guard is not None and outcome.get("guard") != case.expect_guard:
            found.append(f"guard {outcome.get('guard')!r}, expected {case.expect_guard!r}")
        if case.holder_self and outcome.get("self_found") is not True:
            found.append(f"this process was not found as the holder: {outcome}")
        return found
    if case.value_error:
        expected = "CannotListenError" if case.path == "endpoint" else "ValueError"
        if kind != expected or (case.path == "endpoint" and outcome.get("cause") != "ValueError"):
            found.append(f"expected {expected} from ValueError, got {kind} {outcome}")
    else:
        expected = "CannotListenError" if case.path == "endpoint" else "BindError"
        if kind != expected:
            found.append(f"expected {expected}, got {kind}: {message}")
        code = getattr(E, case.errno_name or case.rules[0][1])
        if outcome.get("errno") != code:
            found.append(f"errno {outcome.get('errno')}, expected {code}")
        if outcome.get("stage") != case.stage:
            found.append(f"stage {outcome.get('stage')!r}, expected {case.stage!r}")
        if case.path != "endpoint" and outcome.get("detail") != case.detail:
            found.append(f"detail {outcome.get('detail')!r}, expected {case.detail!r}")
        if os.strerror(code) not in message:
            found.append(f"message lacks the OS text {os.strerror(code)!r}: {message}")
        if case.path == "endpoint":
            words = case.words or list(STAGE_WORDS.get(case.stage or "", ()))
            if words and not any(w in message for w in words):
                found.append(f"message names none of {words}: {message}")
            address = f"[{case.host}]:0" if ":" in case.host else f"{case.host}:0"
            if case.sibling:  # the guard's address: the other family, the real port
                address = "127.0.0.1:" if ":" in case.host else "[::1]:"
            if address not in message:
                found.append(f"message lacks the address {address}: {message}")
    if case.words and not any(w in message for w in case.words):
        found.append(f"message names none of {case.words}: {message}")
    return found


# --- the child side -------------------------------------------------------------------


class Shim:
    def __init__(self, path: str) -> None:
        lib = ctypes.CDLL(path)
        lib.xbfault_config.argtypes = [ctypes.c_char_p]
        lib.xbfault_config.restype = ctypes.c_int
        lib.xbfault_caller.argtypes = [ctypes.c_char_p]
        lib.xbfault_injected.restype = ctypes.c_long
        self.lib = lib
        lib.xbfault_caller(b"_native")

    def arm(self, rules: list[tuple[Any, ...]]) -> None:
        spec = ",".join(
            f"{r[0]}:{r[1]}:{r[2]}:{r[3] if len(r) > 3 else 1}" for r in rules)
        if self.lib.xbfault_config(spec.encode()) != len(rules):
            raise RuntimeError(f"shim refused {spec!r}")

    def disarm(self) -> None:
        self.lib.xbfault_config(None)

    def injected(self) -> int:
        return int(self.lib.xbfault_injected())


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def run_case(shim: Shim, case: Case) -> dict[str, Any]:
    from twisted.internet.protocol import Factory, Protocol
    from twisted.internet.testing import MemoryReactorClock

    from twisted_patch import _native
    from twisted_patch.endpoint import ExclusiveTCPServerEndpoint

    family = socket.AF_INET6 if ":" in case.host else socket.AF_INET
    outcome: dict[str, Any] = {"type": None}
    before = fd_count()
    handle = None
    try:
        if case.path == "endpoint":
            reactor = MemoryReactorClock()
            endpoint = ExclusiveTCPServerEndpoint(reactor, 0, interface=case.host,
                                                  guard=case.guard, probe=case.probe)
            results: list[Any] = []
            shim.arm(case.rules)
            endpoint.listen(Factory.forProtocol(Protocol)).addBoth(results.append)
            outcome["injected"] = shim.injected()
            shim.disarm()
            result = results[0]
            if hasattr(result, "value"):  # a Failure
                exc = result.value
                err = getattr(exc, "socketError", None)
                from twisted.internet.error import CannotListenError

                kind = "CannotListenError" if isinstance(exc, CannotListenError) else None
                outcome.update(type=kind or type(exc).__name__, message=str(exc),
                               cause=type(err).__name__,
                               errno=getattr(err, "errno", None),
                               stage=getattr(err, "stage", None))
            else:
                outcome["type"] = "listening"
                outcome["guard"] = getattr(result, "guard_mode", None)
                result.stopListening()
                reactor.advance(0)
        elif case.path in ("listeners", "listeners-all"):
            handle = _native.listen_tcp(case.host, 0, 5)
            with socket.socket(fileno=os.dup(handle)) as view:
                port = view.getsockname()[1]
            shim.arm(case.rules)
            try:
                rows = _native.listeners(port, case.path == "listeners")
                outcome["type"] = "returned"
                outcome["self_found"] = any(os.getpid() in row[7] for row in rows)
            finally:
                outcome["injected"] = shim.injected()
                shim.disarm()
        elif case.path == "parse_address":
            shim.arm(case.rules)
            try:
                _native.parse_address(case.host, 80)
                outcome["type"] = "returned"
            finally:
                outcome["injected"] = shim.injected()
                shim.disarm()
        else:
            handle = _native.open_socket(family)
            if case.path in ("listen", "socket_options", "close"):
                _native.bind(handle, case.host, 0)
            if case.path == "socket_options":
                _native.listen(handle, 5)
            shim.arm(case.rules)
            try:
                if case.path == "bind":
                    _native.bind(handle, case.host, 0)
                elif case.path == "listen":
                    _native.listen(handle, 5)
                elif case.path == "socket_options":
                    _native.socket_options(handle)
                elif case.path == "close":
                    h, handle = handle, None
                    _native.close(h)
                outcome["type"] = "returned"
            finally:
                outcome["injected"] = shim.injected()
                shim.disarm()
    except _native.BindError as e:
        outcome.update(type="BindError", message=str(e), errno=e.errno, stage=e.stage,
                       detail=e.detail, address=e.address)
    except ValueError as e:
        outcome.update(type="ValueError", message=str(e))
    except Exception as e:  # anything else is a finding, reported by the test
        outcome.update(type=type(e).__name__, message=repr(e))
    finally:
        shim.disarm()
        if handle is not None:
            _native.close(handle)
    outcome["fds_before"] = before
    outcome["fds_after"] = fd_count()
    return outcome


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def soak(shim: Shim, total: int) -> dict[str, Any]:
    """`total` injected failures cycling through every case; fds, RSS and live
    objects measured after a warm-up and again at the end."""
    # Every case but the ones that walk all of /proc (their cost grows with the
    # number of processes on the host; they run once each in the matrix).
    all_cases = [c for c in cases() if c.path != "listeners-all"]

    runs = [0]

    def run(n: int) -> int:
        done = 0
        while done < n:
            for case in all_cases:
                outcome = run_case(shim, case)
                if problems(case, outcome):
                    raise AssertionError(f"{case.id}: {problems(case, outcome)}")
                done += outcome["injected"]
                runs[0] += 1
                if runs[0] % 100 == 0:
                    # Twisted's Failures hold reference cycles (traceback <-> frames):
                    # without regular collections the peak of not-yet-collected cycles
                    # sets the RSS high-water mark, which is GC timing, not a leak.
                    gc.collect()
                if done >= n:
                    break
        return done

    def measure() -> tuple[int, int, int]:
        # gc.get_objects() builds a list of every object (~1 MB): take it first, so
        # that the heap it leaves behind is the same at both measurements.
        gc.collect()
        objects = len(gc.get_objects())
        gc.collect()
        return fd_count(), rss_bytes(), objects

    run(2000)  # warm-up: imports, caches, allocator pools
    measure()
    fds0, rss0, objs0 = measure()
    injected = run(total)
    fds1, rss1, objs1 = measure()

    # Controls: the same measurements see a small leak of each kind.
    leaked_fds = [os.dup(0) for _ in range(10)]
    fds_leak = fd_count() - fds1
    for fd in leaked_fds:
        os.close(fd)
    rss_before_leak = rss_bytes()
    leak = [ctypes.create_string_buffer(64) for _ in range(total)]  # 64 bytes per "failure"
    rss_leak = rss_bytes() - rss_before_leak
    del leak
    gc.collect()
    objs_base = len(gc.get_objects())
    kept = [[] for _ in range(total)]  # one live object per "failure"
    gc.collect()
    objs_leak = len(gc.get_objects()) - objs_base - 1
    del kept
    return {
        "injected": injected, "cases": len(all_cases),
        "fds_before": fds0, "fds_after": fds1, "rss_before": rss0, "rss_after": rss1,
        "objects_before": objs0, "objects_after": objs1,
        "control_fds_leak": fds_leak, "control_rss_leak": rss_leak,
        "control_objects_leak": objs_leak,
    }


def warm_up() -> None:
    """One successful listen first: Twisted's tcp.Port reserves a spare descriptor
    (open(os.devnull), kept for the life of the process, to handle EMFILE) on the
    first startListening; that one-time fd is not a leak of any case."""
    from twisted.internet.protocol import Factory, Protocol
    from twisted.internet.testing import MemoryReactorClock
    from twisted.logger import globalLogBeginner

    from twisted_patch.endpoint import ExclusiveTCPServerEndpoint

    # Until a program starts logging, Twisted keeps every log event in memory (up
    # to 65,536): start logging, to nowhere, as a real program would to a file.
    globalLogBeginner.beginLoggingTo([lambda event: None], redirectStandardIO=False)
    reactor = MemoryReactorClock()
    results: list[Any] = []
    endpoint = ExclusiveTCPServerEndpoint(reactor, 0, interface="127.0.0.1")
    endpoint.listen(Factory.forProtocol(Protocol)).addBoth(results.append)
    results[0].stopListening()
    reactor.advance(0)


def main(argv: list[str]) -> int:
    shim = Shim(os.environ["XBFAULT_LIB"])
    warm_up()
    if argv[1] == "matrix":
        results = {c.id: run_case(shim, c) for c in cases()}
        json.dump(results, sys.stdout)
    elif argv[1] == "soak":
        json.dump(soak(shim, int(argv[2])), sys.stdout)
    else:
        raise SystemExit(f"unknown mode {argv[1]!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))


__all__ = ["Case", "asdict", "cases", "problems"]
