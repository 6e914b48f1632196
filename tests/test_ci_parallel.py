"""ci/parallel.py: make test's lanes and .ci/run's last two runs, side by side.

The claim that matters: two suites run at once never share a network stack, so one
cannot take the other's port or see its listeners.  Shown with a port held here, in the
host's stack: inside a lane the same address binds (its own loopback), and two lanes
bind one fixed address at the same time; the control, the same bind in the host's
stack, is refused.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from support.tree import ROOT

PARALLEL = ROOT / "ci" / "parallel.py"



def _namespace_refusal() -> str | None:
    """Why no network namespace can be made here (None: one can)."""
    if not sys.platform.startswith("linux"):
        return "network namespaces are Linux's"
    for tool in ("unshare", "ip", "make"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    made = subprocess.run(["unshare", "--net", "true"], capture_output=True, text=True,
                          timeout=30)
    if made.returncode != 0:
        return f"cannot make a network namespace here: {made.stderr.strip()}"
    return None


_REFUSAL = _namespace_refusal()
needs_namespaces = pytest.mark.skipif(_REFUSAL is not None, reason=str(_REFUSAL))

# Binds HOST:PORT, listens, and waits for the other lane's file (both hold it at once).
BIND = textwrap.dedent("""\
    import socket, sys, time, pathlib
    s = socket.socket()
    s.bind(("127.0.0.1", int(sys.argv[1])))
    s.listen()
    pathlib.Path(sys.argv[2]).touch()
    deadline = time.monotonic() + 60
    while not pathlib.Path(sys.argv[3]).exists():
        if time.monotonic() > deadline:
            sys.exit("the other lane never bound: the lanes did not run side by side")
        time.sleep(0.05)
    print("bound", s.getsockname())
    """)


def _makefile(tmp_path: Path, port: int) -> Path:
    (tmp_path / "bind.py").write_text(BIND)
    py = sys.executable
    (tmp_path / "Makefile").write_text(textwrap.dedent(f"""\
        lane-a:
        \t{py} bind.py {port} a.bound b.bound
        lane-b:
        \t{py} bind.py {port} b.bound a.bound
        fails:
        \t@echo about to fail; exit 3
        """))
    return tmp_path


def _parallel(where: Path, *targets: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(PARALLEL), "--directory", str(where), *targets],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})


@needs_namespaces
def test_lanes_have_their_own_loopback(tmp_path: Path) -> None:
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen()
    port = held.getsockname()[1]
    try:
        # Control: in the host's stack the held address is taken.
        probe = socket.socket()
        with pytest.raises(OSError):
            probe.bind(("127.0.0.1", port))
        probe.close()
        out = _parallel(_makefile(tmp_path, port), "lane-a", "lane-b")
    finally:
        held.close()
    assert out.returncode == 0, out.stdout + out.stderr
    assert "each in a network namespace of its own" in out.stdout
    assert out.stdout.count(f"bound ('127.0.0.1', {port})") == 2, out.stdout
    # each lane's log is printed whole, between its header and its end line
    for lane in ("lane-a", "lane-b"):
        assert f"make {lane}: passed" in out.stdout and f"end of make {lane}: passed" in out.stdout


@needs_namespaces
def test_a_failed_lane_fails_the_run_and_is_shown(tmp_path: Path) -> None:
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    port = held.getsockname()[1]
    held.close()
    out = _parallel(_makefile(tmp_path, port), "fails", "lane-a", "lane-b")
    assert out.returncode != 0
    assert "make fails: FAILED" in out.stdout and "about to fail" in out.stdout
    assert "lane-a" in out.stdout.split("target(s) in")[1]


def test_serial_when_asked_says_so(tmp_path: Path) -> None:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    (tmp_path / "Makefile").write_text("one:\n\t@echo first\ntwo:\n\t@echo second\n")
    out = _parallel(tmp_path, "one", "two", TWISTED_PATCH_SERIAL="1")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "one after another: TWISTED_PATCH_SERIAL is set" in out.stdout
    assert out.stdout.index("first") < out.stdout.index("second")


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    for args in ([], ["--jobs"], ["--directory", str(tmp_path), "x"]):
        out = subprocess.run([sys.executable, str(PARALLEL), *args], capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 2, args
        assert "usage: python3 ci/parallel.py" in out.stderr


def test_variables_given_to_the_calling_make_reach_the_targets(tmp_path: Path) -> None:
    """``make test WIN_PYTEST_ARGS=...`` runs its lanes through ci/parallel.py: the value
    must not be dropped on the way (an ignored setting).  make exports its command line's
    variables to the recipe's environment, which parallel.py passes on (it drops only the
    calling make's MAKEFLAGS)."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    (tmp_path / "Makefile").write_text(
        f"outer:\n\t@{sys.executable} {PARALLEL} --directory . inner\n"
        "inner:\n\t@echo 'V is [$(V)]'\n")
    out = subprocess.run(["make", "--no-print-directory", "outer", "V=a b"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "V is [a b]" in out.stdout
