"""Issue 13.5: when port 0 runs out of tries, the error says so.

``xtcp:0:interface=127.0.0.1`` takes an OS-chosen port for 127.0.0.1 and the same
number for its guard on [::1]; when that number is taken in IPv6 it starts again.
Here every guard bind fails with EADDRINUSE (the fault-injection shim of the test
suite, preloaded into a child interpreter, fails every second bind() the C core
makes: the first of each attempt is the listener's, the second the guard's).  The
error must say that port 0 was asked for, how many ports were tried, and why each
one failed -- not only the last sibling port with "choose another port".
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="LD_PRELOAD fault injection (Linux)")

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
from twisted.internet import reactor, protocol
from twisted.internet.endpoints import serverFromString
f = protocol.Factory.forProtocol(protocol.Protocol)
d = serverFromString(reactor, "xtcp:0:interface=127.0.0.1").listen(f)
out = []
d.addBoth(out.append)
for _ in range(1000):
    if out:
        break
    reactor.iterate(0.01)
r = out[0]
from twisted.internet.error import CannotListenError
v = getattr(r, "value", r)
print("RESULT", "CannotListenError" if isinstance(v, CannotListenError) else type(v).__name__)
print("MESSAGE", str(getattr(r, "value", r)))
"""


def shim_source() -> Path:
    found = sorted(ROOT.glob("tests/**/xbfault.c"))
    if not found:
        pytest.skip("the fault-injection shim (xbfault.c) is not in this checkout")
    return found[0]


@pytest.fixture(scope="module")
def shim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = shim_source()
    out = tmp_path_factory.mktemp("xbfault") / "libxbfault.so"
    cc = next((c for c in ("cc", "gcc", "clang") if shutil.which(c)), None)
    if cc is None:
        pytest.skip("no C compiler for the fault-injection shim")
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    subprocess.run([cc, "-std=c11", "-O1", "-shared", "-fPIC", "-o", str(out), str(source),
                    "-ldl", "-lpthread"], check=True, env=env)
    return out


def every_second_bind(n: int) -> str:
    """Rules that fail binds 2, 4, ..., 2n (see tests/fault/xbfault.h: rule k sees the
    k+1 odd binds before bind 2k+2, the even ones before it being taken by earlier rules)."""
    return ",".join(f"bind:EADDRINUSE:{k + 1}:1" for k in range(n))


def run_child(shim: Path, rules: str) -> str:
    env = dict(os.environ)
    env["LD_PRELOAD"] = f"{env.get('LD_PRELOAD', '')} {shim}".strip()
    env["XBFAULT"] = rules
    env["XBFAULT_CALLER"] = "_native"
    proc = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True,
                          env=env, cwd="/", timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_exhausted_port_zero_says_port_zero_and_every_try(shim: Path) -> None:
    out = run_child(shim, every_second_bind(16))
    assert "RESULT CannotListenError" in out, out
    message = out.split("MESSAGE ", 1)[1]
    assert re.search(r"\bport 0\b", message), message
    tried = re.search(r"(\d+) (?:OS-chosen )?(?:ports|port numbers|attempts|tries)", message)
    assert tried, message
    count = int(tried.group(1))
    assert count > 1, message
    # every number tried is named with why it failed ("N: Address already in use on [::1]:N")
    reasons = re.findall(r"(\d+): [^;:]*in use on \[::1\]:(\d+)", message)
    assert len(reasons) == count, f"{count} tries but {len(reasons)} reasons: {message}"
    assert all(a == b for a, b in reasons), message


def test_control_one_guard_failure_is_retried(shim: Path) -> None:
    """The rules really hit the guard: with one failed guard bind, port 0 is retried
    and then listens."""
    out = run_child(shim, every_second_bind(1))
    assert "RESULT" in out and "CannotListenError" not in out, out
