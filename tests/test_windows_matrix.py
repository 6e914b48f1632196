"""The Windows attack matrix through the product, in Windows CPython (make test-windows).

The same cells and the same exact assertions as the C matrix of test_windows_wine.py
(tests/support/wine.py holds the tables), but the victim is the installed wheel's
``twisted_patch._native`` socket (``open_socket`` + ``bind``, not listening: the state
in which Wine applies Windows' bind rules) in one Windows Python process, and the
attacker is a second Windows Python process binding with the ``socket`` module.  The
control victim is Twisted's own ``tcp.Port.createInternetSocket()`` + ``bind``, the way
Twisted makes a listening socket on Windows: its specific-over-wildcard cells are
hijacked, so these tests fail if the product ever stops refusing them.

Under Wine (detected through ntdll's ``wine_get_version``) the codes must be exactly
the ones Wine 8 was measured to give; on real Windows, Microsoft's documented ones.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from conftest import say
from support import wine  # the cells, Microsoft's table, the Wine measurements

pytestmark = pytest.mark.skipif(
    sys.platform != "win32",
    reason="Windows CPython only (make test-windows runs it under Wine); "
    "on Linux test_windows_wine.py runs the C matrix",
)

VICTIM = r"""
import socket, sys
kind, host = sys.argv[1], sys.argv[2]
if kind == "core":
    from twisted_patch import _native
    handle = _native.open_socket(socket.AF_INET)
    _native.bind(handle, host, 0)
    skt = socket.socket(fileno=handle)
else:
    from twisted.internet import tcp
    from twisted.internet.protocol import Factory
    skt = tcp.Port(0, Factory(), interface=host).createInternetSocket()
    skt.bind((host, 0))
if kind.endswith("+listen"):
    skt.listen(5)
exclusive = skt.getsockopt(socket.SOL_SOCKET, socket.SO_EXCLUSIVEADDRUSE)
reuse = skt.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
print("READY", skt.getsockname()[1], exclusive, reuse, flush=True)
sys.stdin.readline()
skt.close()
"""

ATTACKER = r"""
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
for option in ("none", "SO_REUSEADDR", "SO_EXCLUSIVEADDRUSE"):
    skt = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if option != "none":
        skt.setsockopt(socket.SOL_SOCKET, getattr(socket, option), 1)
    try:
        skt.bind((host, port))
        code = 0
    except OSError as e:
        code = e.winerror or e.errno
    finally:
        skt.close()
    print(option, code, flush=True)
"""


def wine_version() -> str | None:
    """Wine's version if this Windows process runs under Wine (ntdll.wine_get_version)."""
    import ctypes

    try:
        get = ctypes.WinDLL("ntdll").wine_get_version
    except AttributeError:
        return None
    get.restype = ctypes.c_char_p
    value: bytes = get()
    return value.decode()


def run_matrix(victim_kind: str) -> tuple[dict[wine.Cell, int], dict[str, tuple[int, int]]]:
    """Per victim address, a victim process binds it; an attacker process tries every
    bind of the cells.  Returns the attacker's result per cell and the victim's
    (SO_EXCLUSIVEADDRUSE, SO_REUSEADDR) as read back in the victim process."""
    results: dict[wine.Cell, int] = {}
    options: dict[str, tuple[int, int]] = {}
    for victim in wine.VICTIM_ADDRESSES:
        proc = subprocess.Popen(
            [sys.executable, "-c", VICTIM, victim_kind, victim], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        try:
            assert proc.stdout is not None and proc.stdin is not None
            line = proc.stdout.readline().split()
            if not line or line[0] != "READY":
                _, err = proc.communicate(timeout=30)
                raise AssertionError(f"victim {victim_kind} {victim} failed: {line} {err}")
            port = int(line[1])
            options[victim] = (int(line[2]), int(line[3]))
            for attacker in wine.VICTIM_ADDRESSES:
                out = subprocess.run(
                    [sys.executable, "-c", ATTACKER, attacker, str(port)],
                    stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
                )
                assert out.returncode == 0, out.stdout + out.stderr
                for row in out.stdout.splitlines():
                    option, code = row.split()
                    results[(victim, attacker, option)] = int(code)
            proc.stdin.write("done\n")
            proc.stdin.flush()
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return results, options


@pytest.fixture(scope="module")
def matrices(request: pytest.FixtureRequest) -> dict[str, Any]:
    core, core_options = run_matrix("core")
    plain, plain_options = run_matrix("plain")
    where = f"Windows CPython {sys.version.split()[0]}"
    version = wine_version()
    where += f" under Wine {version}" if version else " (not Wine)"
    say(request, wine.format_matrix(
        f"Victim = twisted_patch._native socket from the installed wheel, {where}",
        "core", core))
    say(request, wine.format_matrix(
        f"Control: victim = Twisted's tcp.Port.createInternetSocket(), {where}",
        "plain", plain))
    return {"core": core, "plain": plain, "core_options": core_options,
            "plain_options": plain_options, "wine": version}


def test_victims_read_back_their_options(matrices: dict[str, Any]) -> None:
    """The product's socket has SO_EXCLUSIVEADDRUSE=1 and SO_REUSEADDR=0; Twisted's
    has neither (the control is what Twisted makes on Windows today)."""
    for victim in wine.VICTIM_ADDRESSES:
        assert matrices["core_options"][victim] == (1, 0)
        assert matrices["plain_options"][victim] == (0, 0)


def test_product_refuses_every_hijack(matrices: dict[str, Any]) -> None:
    core = matrices["core"]
    hijacks = [c for c in wine.cells() if wine.is_hijack(c)]
    assert len(hijacks) == 9
    assert [c for c in hijacks if core[c] == 0] == []
    for option in wine.ATTACKER_OPTIONS:
        assert core[("0.0.0.0", "127.0.0.1", option)] == wine.WSAEACCES


def test_control_twisted_socket_is_hijacked(matrices: dict[str, Any]) -> None:
    """The attack works against Twisted's own socket: the test can fail."""
    for option in wine.ATTACKER_OPTIONS:
        cell = ("0.0.0.0", "127.0.0.1", option)
        assert matrices["plain"][cell] == 0, f"{cell} not hijackable: the test proves nothing"


def test_exact_per_cell(matrices: dict[str, Any]) -> None:
    """Under Wine: exactly what Wine 8 gave the C matrix.  On Windows: Microsoft's codes."""
    if matrices["wine"]:
        assert matrices["core"] == wine.WINE_CORE
        assert matrices["plain"] == wine.WINE_PLAIN
    else:
        for kind in ("core", "plain"):
            expected = {c: wine.MS_CODE[wine.microsoft(kind, c)] for c in wine.cells()}
            assert matrices[kind] == expected


def test_agrees_with_microsoft_on_success_and_failure(matrices: dict[str, Any]) -> None:
    for kind in ("core", "plain"):
        for cell in wine.cells():
            documented = wine.microsoft(kind, cell)
            assert (matrices[kind][cell] == 0) == (wine.MS_CODE[documented] == 0), (
                kind, cell, matrices[kind][cell], documented)


def test_wine_cannot_attack_a_listening_socket(request: pytest.FixtureRequest) -> None:
    """What Wine cannot show: once Twisted's plain socket LISTENS, every attacker bind is
    refused under Wine (the Linux kernel holds the socket), although Windows allows the
    specific-over-wildcard cells (Microsoft: CHECK).  So a listening-victim test under
    Wine would pass without the fix; the matrices above use bound victims."""
    version = wine_version()
    if version is None:
        pytest.skip("not under Wine (ntdll has no wine_get_version): Windows' own rules apply")
    listening, _ = run_matrix("plain+listen")
    say(request, f"[Wine {version}] Twisted's socket LISTENING, attacker results: " + ", ".join(
        f"{v}<-{a} {o}: {c}" for (v, a, o), c in listening.items()))
    assert all(code != 0 for code in listening.values()), listening
    for option in wine.ATTACKER_OPTIONS:
        assert wine.microsoft("plain", ("0.0.0.0", "127.0.0.1", option)) == "CHECK"

