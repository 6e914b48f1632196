"""Run make targets side by side, each in a network namespace of its own.

Used by the Makefile (``make test`` runs its suites this way) and by .ci/run::

    python3 ci/parallel.py [--directory DIR] TARGET [TARGET ...]

A namespace has no route off the host: what a target downloads must be fetched
before, in the host's stack (make test's build steps; .ci/run's venvs).

Each target runs as ``make --no-print-directory TARGET`` (in DIR, default the project's
root) with its output in DIR/build/logs/TARGET.log; a log is printed whole, under a
header, when its target ends, so that the output of two suites never interleaves.  The
exit status is that of the first target that failed (0 when all passed); a table of the
targets with their time and result ends the output.

Why a network namespace each: the suites bind loopback ports, list every listener of
the host (``twisted-patch who``, sock_diag) and attack ports from another uid.  Two
suites in one network stack would see each other's listeners and could take each
other's ports.  A namespace has its own loopback (brought up here) and its own sock_diag
view; processes, files and uids stay shared.  Making one needs root (CAP_SYS_ADMIN).
Without it, or with ``TWISTED_PATCH_SERIAL=1``, the targets run one after another in the
host's stack, and the output says so.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Run inside the new namespace: bring its loopback up, then become make.
_IN_NAMESPACE = 'ip link set lo up && exec "$@"'


def namespace_prefix() -> tuple[list[str], str]:
    """The command prefix that puts a child in a network namespace of its own.

    Returns the prefix (empty: run in the host's stack) and why, for the output.
    """
    if os.environ.get("TWISTED_PATCH_SERIAL", "") not in ("", "0"):
        return [], "TWISTED_PATCH_SERIAL is set"
    unshare, ip = shutil.which("unshare"), shutil.which("ip")
    if unshare is None or ip is None:
        return [], "unshare(1) or ip(8) is missing (util-linux, iproute2)"
    prefix = [unshare, "--net", "sh", "-c", _IN_NAMESPACE, "netns"]
    try:
        probe = subprocess.run([*prefix, "true"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        return [], f"cannot make a network namespace ({exc})"
    if probe.returncode != 0:
        why = (probe.stderr.strip().splitlines() or [f"exit {probe.returncode}"])[-1]
        return [], f"cannot make a network namespace ({why})"
    return prefix, ""


def make_command(target: str) -> list[str]:
    return [os.environ.get("MAKE", "make"), "--no-print-directory", target]


Started = tuple[subprocess.Popen[bytes], Path, float]


def start(target: str, prefix: list[str], where: Path) -> Started:
    logs = where / "build" / "logs"
    log = logs / f"{target}.log"
    env = dict(os.environ)
    # pytest's numbered temporary directories, one root per suite: a suite's cleanup of
    # "old" directories never reaches another running suite's.
    temp_root = logs / f"{target}.tmp"
    shutil.rmtree(temp_root, ignore_errors=True)
    temp_root.mkdir(parents=True)
    env["PYTEST_DEBUG_TEMPROOT"] = str(temp_root)
    # MAKEFLAGS of the calling make (e.g. its jobserver) are not this make's.
    env.pop("MAKEFLAGS", None)
    env.pop("MFLAGS", None)
    env.pop("MAKELEVEL", None)
    with log.open("wb") as out:
        proc = subprocess.Popen([*prefix, *make_command(target)], cwd=where, env=env,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    return proc, log, time.monotonic()


def show(target: str, log: Path, rc: int, seconds: float, where: Path) -> None:
    result = "passed" if rc == 0 else f"FAILED (exit {rc})"
    bar = "=" * 20
    shown = log.relative_to(where)
    sys.stdout.write(f"\n{bar} make {target}: {result} in {seconds:.0f} s (log {shown}) {bar}\n")
    sys.stdout.flush()
    with log.open("rb") as f:
        shutil.copyfileobj(f, sys.stdout.buffer)
    sys.stdout.buffer.flush()
    sys.stdout.write(f"{bar} end of make {target}: {result} {bar}\n")
    sys.stdout.flush()


def wait_all(running: dict[str, Started],
             results: dict[str, tuple[int, float]], where: Path) -> None:
    """Show each target's log as it ends, until none runs."""
    while running:
        for target, (proc, log, t0) in list(running.items()):
            rc = proc.poll()
            if rc is None:
                continue
            del running[target]
            results[target] = (rc, time.monotonic() - t0)
            show(target, log, rc, results[target][1], where)
        if running:
            time.sleep(0.5)


def run(targets: list[str], where: Path = ROOT) -> int:
    (where / "build" / "logs").mkdir(parents=True, exist_ok=True)
    prefix, why = namespace_prefix()
    results: dict[str, tuple[int, float]] = {}
    began = time.monotonic()
    if prefix and len(targets) > 1:
        print(f"parallel: {' '.join(targets)} side by side, each in a network namespace of its own")
        batches = [targets]
    else:
        if len(targets) > 1:
            print(f"parallel: running {' '.join(targets)} one after another: {why}")
        batches = [[t] for t in targets]
    sys.stdout.flush()
    for batch in batches:
        running = {t: start(t, prefix, where) for t in batch}
        try:
            wait_all(running, results, where)
        finally:
            # Interrupted (Ctrl-C, SIGTERM from CI): end what still runs, by process group.
            for proc, _log, _t0 in running.values():
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGTERM)
                    proc.wait()
    print(f"\nparallel: {len(targets)} target(s) in {time.monotonic() - began:.0f} s")
    for target in targets:
        rc, seconds = results[target]
        print(f"  {target:<16} {seconds:6.0f} s  {'passed' if rc == 0 else f'FAILED (exit {rc})'}")
    failed = [results[t][0] for t in targets if results[t][0] != 0]
    return failed[0] if failed else 0


def main(argv: list[str]) -> int:
    where = ROOT
    if argv[:1] == ["--directory"] and len(argv) > 1:
        where, argv = Path(argv[1]).resolve(), argv[2:]
    if not argv or any(a.startswith("-") for a in argv) or not (where / "Makefile").is_file():
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        print("usage: python3 ci/parallel.py [--directory DIR] TARGET [TARGET ...]"
              " (DIR holds a Makefile; default: the project's root)", file=sys.stderr)
        return 2
    # SIGTERM (a CI timeout) ends the targets too: see run()'s finally.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    return run(argv, where)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
