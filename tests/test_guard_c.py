"""The guard socket and the self-probe at the C level: natively and as Windows code under Wine.

tests/native/c/guardprobe.c binds a victim socket WITHOUT listening (under Wine a
listening socket is protected by the Linux kernel whatever the options, so
only bind-time rules show Windows' behaviour -- DESIGN.md section 5), then
tries the attacker's binds and runs xb_probe() on the victim.  Every
assertion on the guard is paired with the same attack on a "plain" socket
(made the way Twisted makes it) that does get through.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXT = ROOT / "ext"
SOURCE = ROOT / "tests" / "native" / "c" / "guardprobe.c"
FLAGS = ["-std=c11", "-Wall", "-Wextra", "-Werror", f"-I{EXT}"]
WSAEACCES, WSAEADDRINUSE = 10013, 10048


def parse(out: str) -> dict[str, object]:
    result: dict[str, object] = {"probe": []}
    for line in out.splitlines():
        key, _, value = line.partition(" ")
        if key == "probe":
            result["probe"].append(value)  # type: ignore[union-attr]
        else:
            result[key] = int(value)
    return result


@pytest.fixture(scope="module")
def native(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler")
    exe = tmp_path_factory.mktemp("guardprobe") / "guardprobe"
    subprocess.run([cc, *FLAGS, "-o", str(exe), str(SOURCE), str(EXT / "addr.c"),
                    str(EXT / "xbind_posix.c"), str(EXT / "probe.c")], check=True)
    return exe


def run_native(exe: Path, *args: str) -> dict[str, object]:
    proc = subprocess.run([str(exe), *args], capture_output=True, text=True, check=True)
    return parse(proc.stdout)


def test_native_guard_refuses_what_a_plain_socket_lets_through(native: Path) -> None:
    for victim, attacker in [("127.0.0.1", "127.0.0.1"), ("0.0.0.0", "127.0.0.1"),
                             ("::1", "::1"), ("::", "::1")]:
        plain = run_native(native, "plain", victim, attacker)
        assert plain["SO_REUSEADDR"] == 0, (victim, plain)  # bound over a bound SO_REUSEADDR socket
        assert plain["probe-bound"] > 0  # type: ignore[operator]
        guard = run_native(native, "guard", victim, attacker)
        codes = [v for k, v in guard.items() if k.startswith("SO_") or k == "none"]
        assert codes and all(c != 0 for c in codes), (victim, guard)
        assert guard["probe-bound"] == 0 and guard["probe-fatal"] == 0, guard


@pytest.fixture(scope="module")
def wine_run(tmp_path_factory: pytest.TempPathFactory, wine_session: Any) -> Any:
    """Run guardprobe.exe under Wine, in the test run's shared Wine session (conftest)."""
    from support import wine

    mingw = wine.mingw_cc()
    assert mingw is not None
    exe = tmp_path_factory.mktemp("guardprobe-win") / "guardprobe.exe"
    subprocess.run([mingw, *FLAGS, "-o", str(exe), str(SOURCE), str(EXT / "addr.c"),
                    str(EXT / "xbind_win32.c"), str(EXT / "probe.c"), "-lws2_32"], check=True)

    def run(*args: str) -> dict[str, object]:
        proc = wine_session.run(exe, *args)
        assert proc.returncode == 0, proc.stderr
        return parse(proc.stdout)

    return run


def test_windows_guard_blocks_specific_over_wildcard(wine_run: Any) -> None:
    """Windows lets the same user bind 127.0.0.1 over a plain 0.0.0.0, any option; not over ours."""
    plain = wine_run("plain", "0.0.0.0", "127.0.0.1")
    assert plain["none"] == 0 and plain["SO_REUSEADDR"] == 0, plain
    assert any(p.startswith("specific ") for p in plain["probe"])  # type: ignore[union-attr]
    guard = wine_run("guard", "0.0.0.0", "127.0.0.1")
    assert guard["none"] == WSAEACCES and guard["SO_REUSEADDR"] == WSAEACCES, guard
    assert guard["SO_EXCLUSIVEADDRUSE"] == WSAEACCES
    assert guard["probe-bound"] == 0


def test_windows_guard_same_address(wine_run: Any) -> None:
    guard = wine_run("guard", "127.0.0.1", "127.0.0.1")
    assert guard["none"] == WSAEADDRINUSE and guard["SO_REUSEADDR"] == WSAEACCES, guard
    assert guard["SO_EXCLUSIVEADDRUSE"] == WSAEADDRINUSE


def test_windows_wildcard_over_specific_is_the_unavoidable_case(
    wine_run: Any,
) -> None:
    """A wildcard over our specific address binds even against SO_EXCLUSIVEADDRUSE
    (Microsoft's table says so too); the probe marks exactly those as unavoidable."""
    guard = wine_run("guard", "127.0.0.1", "0.0.0.0")
    assert guard["none"] == 0 and guard["SO_REUSEADDR"] == 0, guard
    assert guard["SO_EXCLUSIVEADDRUSE"] != 0
    assert guard["probe"] == [
        f"wildcard none 0.0.0.0:{guard['port']} unavoidable",
        f"wildcard SO_REUSEADDR 0.0.0.0:{guard['port']} unavoidable",
    ]
    assert guard["probe-fatal"] == 0
