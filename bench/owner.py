"""Owner lookup: who listens on 127.0.0.1:P, each way beside its floor.

Ways to answer, each measured in the same repetition (order alternating):

- ``twisted_patch.who(host, port)`` (netlink sock_diag with an in-kernel port
  filter on Linux, then the holding processes), when this build has it;
- ``twisted_patch.owner.listeners(port, self_only=True)`` (holders looked up in
  this process only: what the post-listen owner check uses);
- ``_native.listeners(port, processes=False)``: the two kernel queries alone;
- ``psutil.net_connections("tcp")`` filtered to the port;
- ``ss -Hltnp sport = :P`` (a subprocess, as a script would run it).

The floor of a lookup is a bare C loop (bench/floor.c, loaded with ctypes so that
it runs in this process and sees the same descriptors) making the system calls
the lookup cannot do without, over the same descriptors and processes:

- who(): getsockopt(SO_COOKIE) on our descriptors up to the listener's (the
  lookup stops there once every listener is found), one stat of every other
  /proc/PID, and readlink of every /proc/PID/fd entry of the processes whose
  uid owns the listener or is ours;
- listeners(self_only=True): the descriptor part alone;
- psutil and ss: readlink of every descriptor of every process (both read
  every process's /proc/PID/fd; psutil also parses /proc/net/tcp).

The floors leave out the two sock_diag queries (the kernel-query row shows
them) and all parsing and matching.

Scenarios:

1. N other TCP sockets in this process (100, 1,000, 10,000): half listening,
   half established connections (both ends, accepted); the target listener was
   opened before them, on a low descriptor.
2. The same N sockets, the target port held by another process of our uid:
   our descriptors are all scanned (nothing to stop at).
3. A busy host: many processes of another uid (65534, through setpriv; needs
   root) holding listening sockets of their own, the target ours.

The benchmark raises its own RLIMIT_NOFILE and closes and ends everything it
opened before returning.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from benchlib import HERE, Figure, figure, raise_fd_limit, unavailable, who_function

SECTION = "owner"
HOST = "127.0.0.1"
TARGET_FASTER = 50.0
BATCH = 10  # calls per sample; the sample is their median
NOBODY = 65534


def open_noise(count: int) -> list[socket.socket]:
    """``count`` TCP sockets on loopback: count//2 listeners, the rest established pairs."""
    socks: list[socket.socket] = []
    try:
        listeners = count // 2
        pairs = (count - listeners) // 2
        listeners = count - 2 * pairs
        for _ in range(listeners):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(s)
            s.bind((HOST, 0))
            s.listen(1024)
        if pairs:
            server = socks[0]
            done = 0
            while done < pairs:
                chunk = min(512, pairs - done)
                for _ in range(chunk):
                    c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    socks.append(c)
                    c.connect(server.getsockname())
                for _ in range(chunk):
                    conn, _addr = server.accept()
                    socks.append(conn)
                done += chunk
    except BaseException:
        for s in socks:
            s.close()
        raise
    return socks


def host_tcp_sockets() -> int | None:
    total = 0
    try:
        for name in ("/proc/net/tcp", "/proc/net/tcp6"):
            with open(name, encoding="ascii") as f:
                total += sum(1 for _ in f) - 1
    except OSError:
        return None
    return total


def host_processes() -> int:
    return sum(1 for name in os.listdir("/proc") if name.isdigit())


# --- the C helpers ------------------------------------------------------------------


def build_c(directory: str, source: str, output: str, *flags: str) -> str:
    """Compile bench/<source> into directory/output; raise with the compiler's message."""
    names = (os.environ.get("CC", ""), "cc", "gcc", "clang")
    cc = next((c for c in names if c and shutil.which(c)), None)
    if cc is None:
        raise RuntimeError("no C compiler (cc, gcc or clang)")
    out = os.path.join(directory, output)
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    proc = subprocess.run([cc, "-std=c11", "-O2", "-Wall", "-Wextra", *flags, "-o", out,
                           os.path.join(HERE, source)], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"building {source} failed: {proc.stderr[-1000:]}")
    return out


class Floors:
    """bench/floor.c, loaded into this process."""

    def __init__(self, path: str) -> None:
        lib = ctypes.CDLL(path)
        long_p = ctypes.POINTER(ctypes.c_long)
        lib.floor_self_cookies.argtypes = [ctypes.c_long, long_p]
        lib.floor_self_fstat.argtypes = [long_p]
        lib.floor_self_readlink.argtypes = [long_p]
        lib.floor_others.argtypes = [ctypes.POINTER(ctypes.c_uint), ctypes.c_int, ctypes.c_int,
                                     long_p, long_p, long_p]
        for name in ("floor_self_cookies", "floor_self_fstat", "floor_self_readlink",
                     "floor_others"):
            getattr(lib, name).restype = ctypes.c_double
        self.lib = lib
        self.counts: dict[str, Any] = {}

    @staticmethod
    def _ok(ms: float, what: str) -> float:
        if ms < 0:
            raise OSError(f"floor.c: {what} could not read /proc")
        return float(ms)

    def self_cookies(self, limit: int) -> float:
        n = ctypes.c_long()
        ms = self._ok(self.lib.floor_self_cookies(limit, ctypes.byref(n)), "self_cookies")
        self.counts["own sockets seen by the cookie loop"] = n.value
        return ms

    def self_fstat(self) -> float:
        n = ctypes.c_long()
        return self._ok(self.lib.floor_self_fstat(ctypes.byref(n)), "self_fstat")

    def self_readlink(self) -> float:
        n = ctypes.c_long()
        ms = self._ok(self.lib.floor_self_readlink(ctypes.byref(n)), "self_readlink")
        self.counts["own descriptors"] = n.value
        return ms

    def others(self, uids: set[int], walk_all: bool) -> float:
        arr = (ctypes.c_uint * max(1, len(uids)))(*sorted(uids))
        procs, walked, links = ctypes.c_long(), ctypes.c_long(), ctypes.c_long()
        ms = self._ok(self.lib.floor_others(arr, len(uids), 1 if walk_all else 0,
                                            ctypes.byref(procs), ctypes.byref(walked),
                                            ctypes.byref(links)), "others")
        key = "every process" if walk_all else "processes of the wanted uids"
        self.counts[key] = {"other processes": procs.value, "walked": walked.value,
                            "descriptors read": links.value}
        return ms


def batch(fn: Callable[[], object]) -> float:
    """Median wall time of BATCH calls, ms."""
    times = []
    for _ in range(BATCH):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def c_batch(fn: Callable[[], float]) -> float:
    """Median of BATCH passes of a floor (each timed in C), ms."""
    return statistics.median(fn() for _ in range(BATCH))


# --- the measurement -----------------------------------------------------------------


class Scenario:
    """Named runners measured in the same repetitions, order alternating."""

    def __init__(self, reps: int) -> None:
        self.reps = reps
        self.runners: dict[str, Callable[[], float]] = {}
        self.times: dict[str, list[float]] = {}

    def add(self, name: str, fn: Callable[[], float] | None) -> None:
        if fn is not None:
            self.runners[name] = fn

    def run(self) -> dict[str, list[float]]:
        for fn in self.runners.values():  # warm up
            fn()
        self.times = {name: [] for name in self.runners}
        for rep in range(self.reps):
            names = list(self.runners)
            for name in names if rep % 2 == 0 else reversed(names):
                self.times[name].append(self.runners[name]())
        return self.times

    def has(self, name: str) -> bool:
        return bool(self.times.get(name))

    def ratio(self, a: str, b: str) -> list[float]:
        return [x / y for x, y in zip(self.times[a], self.times[b])]


def psutil_runner(psutil: Any, port: int) -> Callable[[], float] | None:
    if psutil is None:
        return None

    def run() -> float:
        t0 = time.perf_counter()
        found = [c for c in psutil.net_connections("tcp")
                 if c.laddr and c.laddr.port == port and c.status == psutil.CONN_LISTEN]
        elapsed = time.perf_counter() - t0
        assert found, "psutil did not find the target listener"
        return elapsed * 1e3

    return run


def ss_runner(ss: str | None, port: int) -> Callable[[], float] | None:
    if ss is None:
        return None

    def run() -> float:
        t0 = time.perf_counter()
        out = subprocess.run([ss, "-Hltnp", f"sport = :{port}"], capture_output=True,
                             text=True, timeout=60)
        elapsed = time.perf_counter() - t0
        assert out.stdout.strip(), "ss did not find the target listener"
        return elapsed * 1e3

    return run


WHY = {"who": "twisted_patch.who does not exist in this build",
       "psutil": "psutil is not installed (pip install '.[bench]')",
       "ss": "ss is not installed (Debian package iproute2)"}


def ms_row(sc: Scenario, key: str, name: str, why: str = "", note: str = "") -> Figure:
    if sc.has(key):
        return figure(SECTION, name, "ms", sc.times[key], note=note)
    return unavailable(SECTION, name, "ms", "", why or WHY.get(key, "not measured"))


def ratio_row(sc: Scenario, a: str, b: str, name: str, target: float | None = None,
              at_least: bool = True) -> Figure:
    tgt = ""
    check = None
    if target is not None:
        tgt = f">= {target:.0f}x" if at_least else f"<= {target:.0f}x"
        check = (lambda v: v >= target) if at_least else (lambda v: v <= target)
    if sc.has(a) and sc.has(b):
        return figure(SECTION, name, "x", sc.ratio(a, b), tgt, check)
    missing = a if not sc.has(a) else b
    return unavailable(SECTION, name, "x", tgt, WHY.get(missing, f"{missing} not measured"))


def run(cfg: dict[str, Any]) -> tuple[list[Figure], dict[str, Any]]:
    sizes: list[int] = cfg["owner_sizes"]
    reps: int = cfg["owner_reps"]
    busy_procs, busy_socks = cfg["owner_busy"]
    who = who_function()
    try:
        import psutil
    except ImportError:
        psutil = None
    ss = shutil.which("ss")
    limit = raise_fd_limit(max(sizes) + 1000)
    raw: dict[str, Any] = {"fd_limit": limit, "sizes": {}, "host_processes": host_processes()}
    figures: list[Figure] = []
    workdir = tempfile.mkdtemp(prefix="twisted-patch-bench-owner-")
    os.chmod(workdir, 0o755)  # the busy host's holders run as another uid
    try:
        floors: Floors | None = None
        floor_why = ""
        try:
            floors = Floors(build_c(workdir, "floor.c", "floor.so", "-shared", "-fPIC"))
        except (RuntimeError, OSError) as e:
            floor_why = str(e)
        holders: str | None = None
        try:
            holders = build_c(workdir, "holders.c", "holders")
            os.chmod(holders, 0o755)
        except RuntimeError as e:
            raw["holders_error"] = str(e)
        target = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        target.bind((HOST, 0))
        target.listen(50)
        port = target.getsockname()[1]
        ctx = Context(who, psutil, ss, floors, floor_why, holders, reps, port, target.fileno())
        try:
            for size in sizes:
                if size + 100 > limit:
                    why = f"RLIMIT_NOFILE is {limit}, cannot open {size} sockets"
                    for n in ("who()", "psutil", "ss"):
                        figures.append(unavailable(SECTION, f"{n} at {size:,} other sockets",
                                                   "ms", "", why))
                    continue
                noise = open_noise(size)
                try:
                    figures += ctx.own_sockets(size, size == max(sizes), raw)
                    if size == max(sizes):
                        figures += ctx.foreign_port(size, raw)
                finally:
                    for s in noise:
                        s.close()
            figures += ctx.busy_host(busy_procs, busy_socks, raw)
        finally:
            target.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return figures, raw


class Context:
    def __init__(self, who: Any, psutil: Any, ss: str | None, floors: Floors | None,
                 floor_why: str, holders: str | None, reps: int, port: int,
                 target_fd: int) -> None:
        self.who, self.psutil, self.ss = who, psutil, ss
        self.floors, self.floor_why, self.holders = floors, floor_why, holders
        self.reps, self.port, self.target_fd = reps, port, target_fd
        self.me = os.geteuid()

    # runners -------------------------------------------------------------------------

    def who_runner(self, port: int) -> Callable[[], float] | None:
        who = self.who
        if who is None:
            return None

        def run() -> float:
            found = []

            def call() -> None:
                found[:] = who(HOST, port)

            ms = batch(call)
            assert found and all(item.pids for item in found), f"who() found no holder: {found}"
            return ms

        return run

    def floor_runner(self, self_limit: int, uids: set[int] | None,
                     walk_all: bool = False) -> Callable[[], float] | None:
        """Own descriptors 0..self_limit-1 (-1: all) by cookie, then the other processes
        (uids None: none of them)."""
        floors = self.floors
        if floors is None:
            return None

        def one() -> float:
            ms = floors.self_cookies(self_limit)
            if uids is not None:
                ms += floors.others(uids, walk_all)
            return ms

        return lambda: c_batch(one)

    def all_floor_runner(self) -> Callable[[], float] | None:
        floors = self.floors
        if floors is None:
            return None
        return lambda: c_batch(lambda: floors.self_readlink() + floors.others(set(), True))

    def floor_row(self, sc: Scenario, key: str, name: str, note: str) -> Figure:
        return ms_row(sc, key, name, self.floor_why or "no floor", note)

    # scenarios -----------------------------------------------------------------------

    def own_sockets(self, size: int, big: bool, raw: dict[str, Any]) -> list[Figure]:
        from twisted_patch import _native
        from twisted_patch.owner import listeners

        port = self.port
        sc = Scenario(self.reps)
        sc.add("who", self.who_runner(port))
        sc.add("floor_who", self.floor_runner(self.target_fd + 1, {self.me}))
        sc.add("self_only", lambda: batch(lambda: listeners(port, self_only=True)))
        sc.add("floor_self", self.floor_runner(self.target_fd + 1, None))
        sc.add("kernel", lambda: batch(lambda: _native.listeners(port, False, False)))
        sc.add("psutil", psutil_runner(self.psutil, port))
        sc.add("ss", ss_runner(self.ss, port))
        sc.add("floor_all", self.all_floor_runner())
        times = sc.run()
        label = f"at {size:,} other sockets"
        raw["sizes"][str(size)] = {"times_ms": times, "tcp_sockets_on_host": host_tcp_sockets(),
                                   "floor_counts": dict(self.floors.counts) if self.floors else {}}
        tgt = TARGET_FASTER if big else None
        return [
            ms_row(sc, "who", f"who() {label}"),
            self.floor_row(sc, "floor_who", f"  floor of who() {label}",
                           "C: own fds up to the listener, stat of each /proc/PID, "
                           "fd walk of our uid's processes"),
            ratio_row(sc, "who", "floor_who", f"  who() / its floor {label}"),
            ms_row(sc, "self_only", f"listeners(self_only=True) {label}"),
            self.floor_row(sc, "floor_self", f"  floor of self_only {label}",
                           "C: SO_COOKIE of own fds up to the listener"),
            ms_row(sc, "kernel", f"kernel queries alone (processes=False) {label}"),
            ms_row(sc, "psutil", f"psutil {label}"),
            ms_row(sc, "ss", f"ss {label}"),
            self.floor_row(sc, "floor_all", f"  floor of psutil and ss {label}",
                           "C: readlink of every fd of every process"),
            ratio_row(sc, "psutil", "who", f"psutil / who() {label}", tgt),
            ratio_row(sc, "ss", "who", f"ss / who() {label}"),
        ]

    def foreign_port(self, size: int, raw: dict[str, Any]) -> list[Figure]:
        label = f"port held by another process of ours, {size:,} sockets here"
        if self.holders is None:
            why = raw.get("holders_error", "bench/holders.c could not be built")
            return [unavailable(SECTION, f"who() {label}", "ms", "", why)]
        with Holders([self.holders, "1", "1"]) as held:
            sc = Scenario(self.reps)
            sc.add("who", self.who_runner(held.port))
            sc.add("floor_who", self.floor_runner(-1, {self.me}))
            floors = self.floors
            if floors is not None:
                sc.add("fstat", lambda: c_batch(floors.self_fstat))
                sc.add("readlink", lambda: c_batch(floors.self_readlink))
            sc.run()
        raw["foreign_port"] = {"times_ms": sc.times}
        return [
            ms_row(sc, "who", f"who() {label}"),
            self.floor_row(sc, "floor_who", "  floor of who(), port held elsewhere",
                           "C: SO_COOKIE of every own fd + the /proc part as above"),
            ratio_row(sc, "who", "floor_who", "  who() / its floor, port held elsewhere"),
            self.floor_row(sc, "fstat", f"  reference: fstat() of every own fd ({size:,})",
                           "C: what issue 14 suggested; can block on NFS/FUSE files"),
            self.floor_row(sc, "readlink", f"  reference: readlink of /proc/self/fd ({size:,})",
                           "C: the floor of the previous method"),
        ]

    def busy_host(self, procs: int, socks: int, raw: dict[str, Any]) -> list[Figure]:
        label = f"busy host: {procs * socks:,} sockets in {procs} processes of uid {NOBODY}"
        setpriv = shutil.which("setpriv")
        why = ""
        if os.geteuid() != 0 or setpriv is None:
            why = "needs root and setpriv to run processes as another uid"
        elif self.holders is None:
            why = raw.get("holders_error", "bench/holders.c could not be built")
        if why:
            return [unavailable(SECTION, f"{n} ({label})", "ms", "", why)
                    for n in ("who()", "psutil", "ss")]
        assert setpriv is not None and self.holders is not None
        cmd = [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
               self.holders, str(procs), str(socks)]
        port = self.port
        with Holders(cmd):
            sc = Scenario(self.reps)
            sc.add("who", self.who_runner(port))
            sc.add("floor_who", self.floor_runner(self.target_fd + 1, {self.me}))
            sc.add("psutil", psutil_runner(self.psutil, port))
            sc.add("ss", ss_runner(self.ss, port))
            sc.add("floor_all", self.all_floor_runner())
            sc.run()
            raw["busy_host"] = {"times_ms": sc.times, "host_processes": host_processes(),
                                "floor_counts": dict(self.floors.counts) if self.floors else {}}
        return [
            ms_row(sc, "who", f"who() ({label})"),
            self.floor_row(sc, "floor_who", "  floor of who(), busy host",
                           "C: as above; uid 65534's processes are stat()ed, not walked"),
            ratio_row(sc, "who", "floor_who", "  who() / its floor, busy host"),
            ms_row(sc, "psutil", f"psutil ({label})"),
            ms_row(sc, "ss", f"ss ({label})"),
            self.floor_row(sc, "floor_all", "  floor of psutil and ss, busy host",
                           "C: readlink of every fd of every process"),
            ratio_row(sc, "psutil", "who", "psutil / who(), busy host"),
        ]


class Holders:
    """bench/holders.c in its own process group; ended by that group."""

    def __init__(self, cmd: list[str]) -> None:
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, cwd="/",
                                     start_new_session=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().split()
        if len(line) != 2 or line[0] != "READY":
            self.close()
            raise RuntimeError(f"{' '.join(cmd)} did not start: {line} "
                               f"{self.proc.stderr.read() if self.proc.stderr else ''}")
        self.port = int(line[1])

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()

    def __enter__(self) -> Holders:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


if __name__ == "__main__":  # pragma: no cover - run through bench/run.py
    sys.exit("run bench/run.py --only owner")
