"""Fault injection: every libc call the core makes fails, with every errno its man
page lists, and the failure reaches Python as a clear error -- then 10,000 such
failures in one process leave its fd count, memory and live objects unchanged.

The failures come from tests/native/fault/xbfault.c, an LD_PRELOAD shim that needs no
change in the core and only fails calls made from twisted_patch._native; the
cases themselves live in tests/native/fault/fault_cases.py and run in a child process
with the shim preloaded.  The C-level twin (no Python) is tests/native/c/test_core_faults.c
under valgrind (make test-valgrind).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from support import hardening as h

pytestmark = pytest.mark.skipif(not h.LINUX, reason="the LD_PRELOAD shim is for Linux/glibc")

CASES_FILE = h.TESTS / "native" / "fault" / "fault_cases.py"
_spec = importlib.util.spec_from_file_location("fault_cases", CASES_FILE)
assert _spec is not None and _spec.loader is not None
fault_cases = importlib.util.module_from_spec(_spec)
sys.modules["fault_cases"] = fault_cases
_spec.loader.exec_module(fault_cases)

CASES = {c.id: c for c in fault_cases.cases()}

SOAK_FAILURES = 10_000
# RSS may move by allocator noise: pymalloc arenas (256 KiB each) and glibc's heap
# top are returned to the OS or kept at their own discretion.  Measured here: 0-12 KiB
# of drift over 10,000 failures in repeated runs (the child collects reference
# cycles every 100 cases and takes gc.get_objects() before RSS; without that, the
# not-yet-collected Failure cycles and the object list add a ~400 KiB high-water
# mark that stops growing after ~40,000 failures).  Since the listening sequence
# grew (placeholder checks, adopted sockets), one more arena is sometimes touched
# once in the measured stretch: 196-248 KiB, the same after 10,000 or 30,000
# failures and with objects unchanged (2026-12-01), so not a leak, which grows with
# the count.  A leak of 40 bytes per failure is 400 KB over 10,000 failures; the
# control below leaks 64 bytes per failure and must exceed this tolerance, so the
# check can fail.
RSS_TOLERANCE = 384 * 1024
# gc-tracked objects: a few may come and go with caches (Twisted's, typing's).
OBJECTS_TOLERANCE = 50


@pytest.fixture(scope="module")
def shim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if h.c_compiler() is None:
        pytest.skip("no C compiler to build the fault shim")
    return h.build_fault_shim(tmp_path_factory.mktemp("xbfault"))


def run_child(shim: Path, *args: str) -> Any:
    env = h.preload_env(shim, XBFAULT_LIB=str(shim))
    proc = subprocess.run(
        [sys.executable, str(CASES_FILE), *args],
        capture_output=True, text=True, env=env, cwd=str(h.TESTS),
    )
    assert proc.returncode == 0, f"child failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def matrix(shim: Path) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = run_child(shim, "matrix")
    return results


@pytest.mark.parametrize("case_id", sorted(CASES))
def test_injected_failure_is_a_clear_error(matrix: dict[str, dict[str, Any]], case_id: str) -> None:
    outcome = matrix[case_id]
    assert fault_cases.problems(CASES[case_id], outcome) == [], outcome


def test_matrix_covers_every_core_call() -> None:
    calls = {rule[0] for case in CASES.values() for rule in case.rules}
    assert {"socket", "setsockopt", "getsockopt", "fcntl", "bind", "listen", "getsockname",
            "close", "getaddrinfo", "getnameinfo"} <= calls


def test_checks_can_fail() -> None:
    """problems() rejects a wrong stage, a wrong errno, a leaked fd and a silent success."""
    case = CASES["endpoint-bind-EADDRINUSE-v4"]
    good = {"type": "CannotListenError", "errno": 98, "stage": "bind", "injected": 1,
            "fds_before": 5, "fds_after": 5, "cause": "ExclusiveListenError",
            "message": "Couldn't listen on 127.0.0.1:0: 127.0.0.1:0 is already in use by "
                       "another socket (Address already in use)."}
    assert fault_cases.problems(case, good) == []
    for change in ({"stage": "listen"}, {"errno": 13}, {"fds_after": 6},
                   {"type": "listening"}, {"injected": 0}, {"message": "failed"}):
        assert fault_cases.problems(case, {**good, **change}) != [], change


def test_soak_10000_failures_leave_no_trace(shim: Path) -> None:
    r = run_child(shim, "soak", str(SOAK_FAILURES))
    assert r["injected"] >= SOAK_FAILURES
    # The measurements can fail: a small leak of each kind is seen.
    assert r["control_fds_leak"] == 10
    assert r["control_objects_leak"] > OBJECTS_TOLERANCE
    assert r["fds_after"] == r["fds_before"], r
    assert r["objects_after"] - r["objects_before"] <= OBJECTS_TOLERANCE, r
    if h.under_asan():
        # ASan keeps freed memory in its quarantine (by design, to catch use after
        # free), so RSS grows with any allocation churn; memory is checked in the
        # normal build (make test) and at C level by make test-valgrind.
        return
    assert r["control_rss_leak"] > RSS_TOLERANCE, r
    assert r["rss_after"] - r["rss_before"] <= RSS_TOLERANCE, r
