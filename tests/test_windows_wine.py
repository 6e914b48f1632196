"""The C core's own tests, native and for Windows under Wine, and the Windows attack matrix.

tests/native/c/xbtest.c is built twice: with the native compiler (POSIX core) and with mingw-w64
(Winsock core).  The Windows build runs under Wine in one throwaway WINEPREFIX per test
session, with a persistent wineserver that the session fixture starts and ends by pid.

The attack matrix (see docs/windows.rst): a victim socket bound and NOT listening (the
state in which Wine applies Windows' bind rules), on 0.0.0.0:P and 127.0.0.1:P; a second
Wine process binds with no option, SO_REUSEADDR and SO_EXCLUSIVEADDRUSE, on the same
address, specific over wildcard, wildcard over specific.  Against the core every
hijacking bind is refused; against a plain socket (Twisted on Windows today) the
specific-over-wildcard binds succeed, so these tests fail if the exclusive option is
ever dropped from the core.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import pytest
from conftest import say as _say
from support import wine

from twisted_patch import errors

LINUX = sys.platform.startswith("linux")


def _tap(output: str) -> tuple[list[str], list[str]]:
    oks = re.findall(r"^ok \d+ - (.*)$", output, re.M)
    fails = re.findall(r"^not ok \d+ - (.*)$", output, re.M)
    return oks, fails


@pytest.fixture(scope="session")
def c_build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cbuild")


@pytest.fixture(scope="session")
def native_xbtest(c_build_dir: Path) -> Path:
    if sys.platform == "win32":
        pytest.skip("the native C tests are the POSIX core's; Windows runs the Python suite")
    if wine.native_cc() is None:
        pytest.skip("no C compiler (gcc/cc/clang) on PATH")
    return wine.build(c_build_dir, windows=False)


@pytest.fixture(scope="session")
def windows_xbtest(c_build_dir: Path) -> Path:
    reason = wine.missing_windows_tools()
    if reason:
        pytest.skip(f"Windows core under Wine not tested: {reason}")
    return wine.build(c_build_dir, windows=True)


@pytest.fixture(scope="session")
def matrices(
    request: pytest.FixtureRequest, wine_session: wine.WineSession, windows_xbtest: Path
) -> dict[str, dict[wine.Cell, int]]:
    t0 = time.monotonic()
    core = wine.run_matrix(wine_session, windows_xbtest, "core")
    plain = wine.run_matrix(wine_session, windows_xbtest, "plain")
    _say(request, wine.format_matrix(
        "Victim = twisted-patch core socket (SO_EXCLUSIVEADDRUSE), measured under Wine",
        "core", core))
    _say(request, wine.format_matrix(
        "Control: victim = plain socket with no option (Twisted on Windows today), "
        "measured under Wine", "plain", plain))
    _say(request, f"[wine] both matrices in {time.monotonic() - t0:.1f} s")
    return {"core": core, "plain": plain}


# --- builds -----------------------------------------------------------------------------


def test_windows_core_compiles_strict_with_mingw(c_build_dir: Path) -> None:
    """xbind_win32.c and addr.c compile with mingw-w64, -std=c11 -Wall -Wextra -Werror."""
    if wine.mingw_cc() is None:
        pytest.skip(f"{wine.MINGW_CC} not installed (Debian package gcc-mingw-w64-x86-64)")
    proc = wine.compile_core_for_windows(c_build_dir)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stderr.strip() == ""


# --- the POSIX core, natively -----------------------------------------------------------


def test_native_c_selftest(native_xbtest: Path) -> None:
    import subprocess

    proc = subprocess.run([str(native_xbtest), "selftest"], capture_output=True, text=True,
                          timeout=60)
    oks, fails = _tap(proc.stdout)
    assert fails == [], proc.stdout
    assert proc.returncode == 0
    for expected in (
        "SO_REUSEADDR reads back 1 (restart past TIME_WAIT)",
        "xb_socket_options: not inheritable",
        "fcntl: FD_CLOEXEC set",
        "control: plain socket reported inheritable",
        "second exclusive server on the same port fails",
        "second server: stage is bind",
        "  ... stage bind",
        "  ... stage listen",
        "  ... stage socket",
    ):
        assert expected in oks, f"{expected!r} not checked:\n{proc.stdout}"
    assert len(oks) >= 50


# --- the Windows core under Wine --------------------------------------------------------


def test_wine_c_selftest(wine_session: wine.WineSession, windows_xbtest: Path) -> None:
    proc = wine_session.run(windows_xbtest, "selftest")
    oks, fails = _tap(proc.stdout)
    assert fails == [], proc.stdout + proc.stderr
    assert proc.returncode == 0
    for expected in (
        "SO_EXCLUSIVEADDRUSE reads back 1",
        "SO_REUSEADDR reads back 0",
        "xb_socket_options: not inheritable",
        "GetHandleInformation: HANDLE_FLAG_INHERIT clear",
        # the same checks can fail: a socket made without the core is inheritable
        "control: GetHandleInformation: HANDLE_FLAG_INHERIT set",
        "control: plain socket SO_EXCLUSIVEADDRUSE 0",
        "second exclusive server on the same port fails",
        "second server: address in use",
        "exclusive over a bound (not listening) exclusive socket fails",
        "  ... with WSAEADDRINUSE",
        "the OS error has a text",
    ):
        assert expected in oks, f"{expected!r} not checked:\n{proc.stdout}"


def test_wine_second_server_error_is_clear(
    wine_session: wine.WineSession, windows_xbtest: Path
) -> None:
    """The core's error for a second server, as Python turns it into a message."""
    proc = wine_session.run(windows_xbtest, "selftest")
    m = re.search(r"^# second server: stage=(\w+) detail=(\w+) code=(\d+) \((.*)\)$",
                  proc.stdout, re.M)
    assert m, proc.stdout
    stage, detail, code, text = m.group(1), m.group(2), int(m.group(3)), m.group(4)
    assert (stage, detail, code) == ("bind", "bind", wine.WSAEADDRINUSE)
    assert text.startswith("Only one usage of each socket address")
    message = errors.describe(OSError(code, text), stage, "127.0.0.1:4567")
    assert message.startswith("127.0.0.1:4567 is already in use")
    assert "never falls back to another port" in message


def test_core_matrix_exact_per_cell(matrices: dict[str, dict[wine.Cell, int]]) -> None:
    assert matrices["core"] == wine.WINE_CORE


def test_core_refuses_every_hijack(matrices: dict[str, dict[wine.Cell, int]]) -> None:
    hijacks = [c for c in wine.cells() if wine.is_hijack(c)]
    assert len(hijacks) == 9
    bound = [c for c in hijacks if matrices["core"][c] == 0]
    assert bound == [], f"attacker binds that succeeded against the core: {bound}"
    for cell in hijacks:
        assert matrices["core"][cell] in (wine.WSAEACCES, wine.WSAEADDRINUSE)
    # every specific-over-wildcard bind, whatever the attacker's option: WSAEACCES
    for option in wine.ATTACKER_OPTIONS:
        assert matrices["core"][("0.0.0.0", "127.0.0.1", option)] == wine.WSAEACCES


def test_control_matrix_exact_per_cell(matrices: dict[str, dict[wine.Cell, int]]) -> None:
    assert matrices["plain"] == wine.WINE_PLAIN


def test_control_plain_socket_is_hijacked(matrices: dict[str, dict[wine.Cell, int]]) -> None:
    """The attack works against a socket made the way Twisted makes one on Windows."""
    for option in wine.ATTACKER_OPTIONS:
        cell = ("0.0.0.0", "127.0.0.1", option)
        assert wine.microsoft("plain", cell) == "CHECK"  # allowed for the same user
        assert matrices["plain"][cell] == 0, f"{cell} was not hijackable: the test proves nothing"


def test_matrices_agree_with_microsoft(matrices: dict[str, dict[wine.Cell, int]]) -> None:
    """Success/failure matches Microsoft's table in all 24 cells; the error code in 22."""
    code_differs = []
    for kind in ("core", "plain"):
        for cell in wine.cells():
            documented = wine.microsoft(kind, cell)
            got = matrices[kind][cell]
            assert (got == 0) == (wine.MS_CODE[documented] == 0), (kind, cell, got, documented)
            if got != wine.MS_CODE[documented]:
                code_differs.append((kind, cell))
    # Wine says WSAEACCES where Microsoft documents WSAEADDRINUSE: refused either way.
    assert code_differs == [
        ("core", ("0.0.0.0", "0.0.0.0", "none")),
        ("core", ("0.0.0.0", "0.0.0.0", "SO_EXCLUSIVEADDRUSE")),
    ]


# --- restart after close: TIME_WAIT ------------------------------------------------------


def test_native_restart_past_time_wait(native_xbtest: Path) -> None:
    """POSIX: SO_REUSEADDR lets a restarted exclusive server bind past TIME_WAIT."""
    import subprocess

    proc = subprocess.run([str(native_xbtest), "timewait"], capture_output=True, text=True,
                          timeout=60)
    assert proc.stdout.split() == ["live", "0", "timewait", "0"], proc.stdout + proc.stderr


def test_wine_restart_after_close_measured(
    wine_session: wine.WineSession, windows_xbtest: Path
) -> None:
    """Under Wine an exclusive server re-binds at once, both with the old connection still
    open and with it in TIME_WAIT: Wine does not reproduce the TIME_WAIT caveat Microsoft
    documents for SO_EXCLUSIVEADDRUSE, so the retry (twisted_patch.retry) cannot be shown
    here; its logic is tested in tests/test_retry.py.  If a Wine version starts to refuse,
    this test says so (and the docs must change)."""
    proc = wine_session.run(windows_xbtest, "timewait")
    assert proc.stdout.split() == ["live", "0", "timewait", "0"], proc.stdout + proc.stderr


# --- what Wine cannot show ------------------------------------------------------------------


def test_wine_cannot_attack_a_listening_socket(
    request: pytest.FixtureRequest, wine_session: wine.WineSession, windows_xbtest: Path
) -> None:
    """Once the victim listens, the Linux kernel under Wine refuses every overlapping bind,
    even against a plain socket that real Windows lets be hijacked (Microsoft: CHECK, i.e.
    allowed for the same user).  A "hijack a listening server" test under Wine would pass
    without the fix; that is why the matrices above use bound, not listening victims."""
    listening = wine.run_matrix(wine_session, windows_xbtest, "plain+listen")
    _say(request, "[wine] plain victim that LISTENS, attacker results: " + ", ".join(
        f"{v}<-{a} {o}: {c}" for (v, a, o), c in listening.items()))
    assert all(code != 0 for code in listening.values()), listening
    for option in wine.ATTACKER_OPTIONS:
        assert wine.microsoft("plain", ("0.0.0.0", "127.0.0.1", option)) == "CHECK"
