"""Shared pieces of the benchmarks: statistics, figures with targets, features.

Every figure the benchmarks report is a ratio (or a difference) between two
things measured in the same run, repeated several times; the figure is the
median over the repetitions and the spread is min..max of the repetitions.
A figure carries its target and whether it was met.  Nothing here is tuned to
make a target pass: a missed target is printed as NOT MET.
"""

from __future__ import annotations

import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))


@dataclass
class Figure:
    """One reported number: median over repetitions, spread, target, verdict."""

    section: str
    name: str
    unit: str
    median: float | None
    low: float | None = None
    high: float | None = None
    samples: list[float] = field(default_factory=list)
    target: str = ""
    # "MET", "NOT MET", "info" (no target) or "not available in this build"
    verdict: str = "info"
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def spread(samples: Sequence[float]) -> tuple[float, float, float]:
    """(median, min, max) of the samples."""
    if not samples:
        raise ValueError("no samples")
    return statistics.median(samples), min(samples), max(samples)


def figure(
    section: str,
    name: str,
    unit: str,
    samples: Sequence[float],
    target: str = "",
    check: Callable[[float], bool] | None = None,
    note: str = "",
) -> Figure:
    """A figure from repetitions; ``check(median)`` decides MET / NOT MET."""
    med, lo, hi = spread(samples)
    verdict = "info"
    if check is not None:
        verdict = "MET" if check(med) else "NOT MET"
    return Figure(section, name, unit, med, lo, hi, list(samples), target, verdict, note)


def unavailable(section: str, name: str, unit: str, target: str, why: str) -> Figure:
    return Figure(section, name, unit, None, target=target,
                  verdict="not available in this build", note=why)


def timed(fn: Callable[[], object]) -> float:
    """Seconds taken by one call of ``fn``."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def raise_fd_limit(wanted: int) -> int:
    """Raise this process's RLIMIT_NOFILE to at least ``wanted`` if allowed; return the soft limit.

    The soft limit goes up to the hard limit; as root the hard limit is raised too.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return soft
    new_hard = hard
    if hard != resource.RLIM_INFINITY and hard < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return wanted
        except (ValueError, OSError):
            new_hard = hard
    new_soft = wanted if new_hard == resource.RLIM_INFINITY else min(wanted, new_hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (new_soft, new_hard))
    return new_soft


def cpus() -> list[int]:
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def pin_to(cpu: int | None) -> Callable[[], None] | None:
    """A ``preexec_fn`` that pins the child to one CPU (the same as ``taskset -c CPU``)."""
    if cpu is None or not hasattr(os, "sched_setaffinity"):
        return None

    def pin() -> None:
        os.sched_setaffinity(0, {cpu})

    return pin


def xtcp_keywords() -> dict[str, bool]:
    """Which protection keywords this build's ``xtcp`` endpoint accepts.

    Detected at run time by parsing a description with the keyword: an
    unknown keyword is a ValueError from the parser.
    """
    from twisted.internet import endpoints, reactor

    found: dict[str, bool] = {}
    for key, value in (("guard", "no"), ("probe", "off")):
        try:
            endpoints.serverFromString(reactor, f"xtcp:0:interface=127.0.0.1:{key}={value}")
        except ValueError:
            found[key] = False
        else:
            found[key] = True
    return found


def who_function() -> Callable[..., Any] | None:
    import twisted_patch

    fn = getattr(twisted_patch, "who", None)
    return fn if callable(fn) else None


def machine() -> dict[str, Any]:
    """What the run was measured on."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "cpus_available": len(cpus()),
        "cpu_count": os.cpu_count(),
    }
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        import twisted

        info["twisted"] = twisted.__version__
    except Exception:  # pragma: no cover - Twisted is a dependency
        pass
    try:
        import twisted_patch

        info["twisted_patch"] = twisted_patch.__version__
    except Exception:
        pass
    try:
        with open("/proc/loadavg", encoding="utf-8") as f:
            info["loadavg_at_start"] = f.read().split()[:3]
    except OSError:
        pass
    return info


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit in ("x", "ratio"):
        return f"{value:.3f}"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3f}"


def table(figures: Sequence[Figure]) -> str:
    """The figures as a plain-text table."""
    rows = [("section", "figure", "median", "spread (min..max)", "unit", "target", "result")]
    for f in figures:
        rng = "-" if f.median is None else f"{fmt(f.low, f.unit)}..{fmt(f.high, f.unit)}"
        rows.append((f.section, f.name, fmt(f.median, f.unit), rng, f.unit,
                     f.target or "-", f.verdict))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for i, r in enumerate(rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


class ServerProcess:
    """``bench/server.py ENDPOINT`` in its own process, optionally pinned to one CPU."""

    def __init__(self, description: str, cpu: int | None = None,
                 extra_args: Sequence[str] = ()) -> None:
        import subprocess

        self.description = description
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "server.py"), description, *extra_args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=pin_to(cpu),
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if not line.startswith("LISTENING "):
            self.stop()
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise RuntimeError(f"server {description!r} did not start: {line!r} {err[-2000:]}")
        self.port = int(line.split()[1])

    @property
    def pid(self) -> int:
        return self.proc.pid

    def rss_kib(self) -> int:
        """Resident set size of the server, KiB (from /proc/PID/status)."""
        with open(f"/proc/{self.pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmRSS in /proc/PID/status")

    def stop(self) -> None:
        import signal
        import subprocess

        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
