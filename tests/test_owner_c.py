"""The owner-lookup C files on their own: parser under sanitizers, Windows build under Wine,
the "not supported" implementation.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXT = ROOT / "ext"
C_TESTS = ROOT / "tests" / "native" / "c"
STRICT = ["-std=c11", "-Wall", "-Wextra", "-Werror"]
GCC = shutil.which("gcc") or shutil.which("cc")
MINGW = shutil.which("x86_64-w64-mingw32-gcc")
WINE = shutil.which("wine64") or shutil.which("wine")

if not (EXT / "owner_linux.c").exists():
    pytest.skip("needs the source tree (ext/, tests/native/c/)", allow_module_level=True)


def build(compiler: str, out: Path, sources: list[str], extra: Sequence[str] = ()) -> None:
    cmd = [compiler, *STRICT, "-I", str(EXT), "-o", str(out), *sources, *extra]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(not sys.platform.startswith("linux") or GCC is None, reason="Linux + gcc")
def test_sock_diag_parser_under_sanitizers(tmp_path: Path) -> None:
    exe = tmp_path / "owner_parse_test"
    build(
        GCC or "gcc",
        exe,
        [str(C_TESTS / "owner_parse_test.c"), str(EXT / "owner_linux.c"),
         str(EXT / "owner_common.c"), str(EXT / "owner_posix.c")],
        ["-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all"],
    )
    out = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 failures" in out.stdout
    # the mutations exercised both paths
    accepted = int(out.stdout.split(":")[1].split()[0])
    assert accepted > 1000 and "rejected" in out.stdout


@pytest.mark.skipif(GCC is None, reason="needs a C compiler")
def test_owner_none_says_not_supported(tmp_path: Path) -> None:
    exe = tmp_path / "owner_none_test"
    build(GCC or "cc", exe, [str(C_TESTS / "owner_none_test.c"), str(EXT / "owner_none.c"),
                             str(EXT / "owner_common.c")])
    out = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    assert out.stdout.strip() == "owner lookup is not supported on this OS"


@pytest.mark.skipif(MINGW is None, reason="x86_64-w64-mingw32-gcc is not installed")
def test_owner_win32_compiles_with_mingw_werror(tmp_path: Path) -> None:
    for name in ("owner_win32.c", "owner_common.c"):
        build(MINGW or "", tmp_path / (name + ".o"), ["-c", str(EXT / name)])


@pytest.mark.skipif(MINGW is None or WINE is None, reason="needs mingw-w64 and wine")
def test_owner_win32_under_wine(tmp_path: Path, wine_session: Any) -> None:
    """GetExtendedTcpTable under Wine 8 lists the listener (address and port); Wine
    reports owning pid 0 for it (a Wine limitation, see docs/owner.rst), so only the
    listener itself is asserted, not the pid."""
    exe = tmp_path / "owner_win32_test.exe"
    build(
        MINGW or "",
        exe,
        [str(C_TESTS / "owner_win32_test.c"), str(EXT / "owner_win32.c"),
         str(EXT / "owner_common.c"), str(EXT / "xbind_win32.c"), str(EXT / "addr.c")],
        ["-liphlpapi", "-ladvapi32", "-lws2_32"],
    )
    out = wine_session.run(exe, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr[-2000:]
    lines = out.stdout.splitlines()
    assert lines[0].startswith("self pid ")
    port = lines[0].split()[4]
    assert any(line.startswith(f"IPv4 127.0.0.1 {port} ") for line in lines[1:]), out.stdout
    # our own process token: DOMAIN\user, and no uid on Windows
    user_lines = [line for line in lines if line.startswith("process_user ")]
    assert user_lines and user_lines[0].startswith("process_user uid -1 user "), out.stdout
    assert "\\" in user_lines[0], out.stdout
