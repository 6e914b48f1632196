"""``xb_owner_connection`` of ext/owner_win32.c under Wine: the server end of a real connection.

A small C program (written here, compiled with mingw-w64 and -Werror against
the real ext/ files) listens on 127.0.0.1, connects to itself, accepts, and
looks up the server end of that connection with
``GetExtendedTcpTable(TCP_TABLE_OWNER_PID_CONNECTIONS)``; then the same
4-tuple with the client port changed (no such connection: state none).  What
Wine 8 reports as the owning pid is printed, not asserted (for listeners it
reports 0, docs/owner.rst); the state, address and port are asserted.  The
Python layer on Windows (the real wheel under Wine's CPython) is not run here.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXT = ROOT / "ext"
MINGW = shutil.which("x86_64-w64-mingw32-gcc")
WINE = shutil.which("wine64") or shutil.which("wine")
STRICT = ["-std=c11", "-Wall", "-Wextra", "-Werror"]

PROGRAM = r"""
#include "xbind.h"
#include <stdio.h>
#include <string.h>

static int addr_of(SOCKET s, int peer, xb_addr *out)
{
    out->len = (int)sizeof(out->ss);
    memset(&out->ss, 0, sizeof(out->ss));
    return peer ? getpeername(s, (struct sockaddr *)&out->ss, &out->len)
                : getsockname(s, (struct sockaddr *)&out->ss, &out->len);
}

int main(void)
{
    WSADATA wsa;
    SOCKET l, c, a;
    struct sockaddr_in sin;
    int alen = (int)sizeof(sin);
    xb_addr mine, peer;
    xb_connection conn;
    xb_error err = {XB_STAGE_NONE, 0, NULL};
    char text[256];
    static const char *const states[] = {"none", "established", "syn-received", "closing"};

    if (WSAStartup(MAKEWORD(2, 2), &wsa) != 0)
        return 3;
    l = socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
    c = socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (l == INVALID_SOCKET || c == INVALID_SOCKET ||
        bind(l, (struct sockaddr *)&sin, (int)sizeof(sin)) != 0 || listen(l, 5) != 0 ||
        getsockname(l, (struct sockaddr *)&sin, &alen) != 0 ||
        connect(c, (struct sockaddr *)&sin, (int)sizeof(sin)) != 0)
        return 3;
    a = accept(l, NULL, NULL);
    if (a == INVALID_SOCKET || addr_of(c, 0, &mine) != 0 || addr_of(c, 1, &peer) != 0)
        return 3;
    printf("self pid %lu server port %d client port %d\n", (unsigned long)GetCurrentProcessId(),
           xb_addr_port(&peer), xb_addr_port(&mine));
    if (xb_owner_connection(&mine, &peer, 0, 0, &conn, &err) != 0) {
        printf("lookup error: %s: %s\n", err.detail, xb_strerror(err.code, text, sizeof(text)));
        return 2;
    }
    printf("found %s %s %d pid %ld name %s\n", states[conn.state], conn.server.host,
           conn.server.port, conn.server.npids ? conn.server.pids[0] : -1L,
           conn.server.npids ? conn.server.names[0] : "");
    /* the same 4-tuple with another client port: nobody */
    ((struct sockaddr_in *)&mine.ss)->sin_port = htons((u_short)(xb_addr_port(&mine) ^ 1));
    if (xb_owner_connection(&mine, &peer, 0, 0, &conn, &err) != 0)
        return 2;
    printf("other %s\n", states[conn.state]);
    closesocket(a);
    closesocket(c);
    closesocket(l);
    return 0;
}
"""


@pytest.mark.skipif(MINGW is None or WINE is None, reason="needs mingw-w64 and wine")
def test_server_end_of_a_connection_under_wine(tmp_path: Path, wine_session: Any) -> None:
    source = tmp_path / "conn_win32_test.c"
    source.write_text(PROGRAM)
    exe = tmp_path / "conn_win32_test.exe"
    cmd = [MINGW or "", *STRICT, "-I", str(EXT), "-o", str(exe), str(source),
           str(EXT / "owner_win32.c"), str(EXT / "owner_common.c"), str(EXT / "xbind_win32.c"),
           str(EXT / "addr.c"), "-liphlpapi", "-ladvapi32", "-lws2_32"]
    built = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    out = wine_session.run(exe, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr[-2000:]
    lines = out.stdout.splitlines()
    head = lines[0].split()
    server_port = head[5]
    assert any(line.startswith(f"found established 127.0.0.1 {server_port} ")
               for line in lines), out.stdout
    assert "other none" in lines, out.stdout
