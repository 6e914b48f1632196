"""``xb_owner_connection`` (ext/owner_linux.c) on its own, under ASan/UBSan and valgrind.

A C program (written here) makes a real connection on 127.0.0.1 and on [::1],
looks up its server end before and after accept() (inode 0, then ours), with
and without the pid hint, with XB_OWNER_NO_PROCESSES, and a 4-tuple nobody
has; every answer is checked and the program exits 0 only if all are right.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXT = ROOT / "ext"
GCC = shutil.which("gcc")
VALGRIND = shutil.which("valgrind")
STRICT = ["-std=c11", "-Wall", "-Wextra", "-Werror", "-g"]
SOURCES = [EXT / n for n in ("owner_linux.c", "owner_posix.c", "owner_common.c", "addr.c",
                            "xbind_posix.c") if (EXT / n).exists()]

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux") or GCC is None
                                or not (EXT / "owner_linux.c").exists(),
                                reason="Linux, gcc and the source tree")

PROGRAM = r"""
#define _GNU_SOURCE 1
#include "xbind.h"
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <errno.h>
#include <sys/stat.h>

static int failures;
#define CHECK(c) \
    do { if (!(c)) { printf("FAIL line %d: %s\n", __LINE__, #c); failures++; } } while (0)

static void one(const char *host)
{
    xb_addr any, mine, peer, other;
    xb_sock l, c = -1, a;
    xb_error err = {XB_STAGE_NONE, 0, NULL};
    xb_connection conn;
    struct stat st;

    if (xb_addr_parse(host, 0, AF_UNSPEC, &any, &err) != 0 || xb_listen(&any, 5, &l, &err) != 0 ||
        xb_socket_name(l, &peer, &err) != 0) {
        printf("setup failed: %s %d\n", err.detail, err.code);
        failures++;
        return;
    }
    c = socket(peer.ss.ss_family, SOCK_STREAM, 0);
    CHECK(c >= 0 && connect(c, (struct sockaddr *)&peer.ss, peer.len) == 0);
    mine.len = (socklen_t)sizeof(mine.ss);
    CHECK(getsockname(c, (struct sockaddr *)&mine.ss, &mine.len) == 0);

    /* before accept(): established, uid known, no inode, no holder */
    CHECK(xb_owner_connection(&mine, &peer, 0, 0, &conn, &err) == 0);
    CHECK(conn.state == XB_CONN_ESTABLISHED && conn.server.inode == 0 && conn.server.npids == 0);
    CHECK(conn.server.uid == (long long)getuid() && conn.server.port == xb_addr_port(&peer));

    a = accept(l, NULL, NULL);
    CHECK(a >= 0 && fstat(a, &st) == 0);
    CHECK(xb_owner_connection(&mine, &peer, (long)getpid(), 0, &conn, &err) == 0);
    CHECK(conn.state == XB_CONN_ESTABLISHED && conn.server.inode == (unsigned long long)st.st_ino);
    CHECK(conn.server.npids == 1 && conn.server.pids[0] == (long)getpid());
    CHECK(xb_owner_connection(&mine, &peer, 0, 0, &conn, &err) == 0); /* full walk */
    CHECK(conn.server.npids == 1 && conn.server.pids[0] == (long)getpid());
    CHECK(xb_owner_connection(&mine, &peer, 1, XB_OWNER_NO_PROCESSES, &conn, &err) == 0);
    CHECK(conn.state == XB_CONN_ESTABLISHED && conn.server.npids == 0);

    /* nobody has this 4-tuple (the kernel falls back to the listener: not it) */
    other = mine;
    if (other.ss.ss_family == AF_INET)
        ((struct sockaddr_in *)&other.ss)->sin_port ^= htons(1);
    else
        ((struct sockaddr_in6 *)&other.ss)->sin6_port ^= htons(1);
    CHECK(xb_owner_connection(&other, &peer, 0, 0, &conn, &err) == 0);
    CHECK(conn.state == XB_CONN_NONE && conn.os_state == -1);

    /* the server end closed: closing */
    CHECK(close(a) == 0);
    CHECK(xb_owner_connection(&mine, &peer, 0, 0, &conn, &err) == 0);
    CHECK(conn.state == XB_CONN_CLOSING);

    /* bad input */
    CHECK(xb_owner_connection(NULL, &peer, 0, 0, &conn, &err) == -1 && err.code == EAFNOSUPPORT);
    CHECK(xb_owner_connection(&mine, &peer, 0, 0, NULL, &err) == -1);
    close(c);
    close(l);
}

int main(int argc, char **argv)
{
    int i;
    for (i = 1; i < argc; i++)
        one(argv[i]);
    printf("%d failures\n", failures);
    return failures ? 1 : 0;
}
"""


def _hosts() -> list[str]:
    from twisted_patch.cli.attacks import has_ipv6_loopback

    return ["127.0.0.1", *(["::1"] if has_ipv6_loopback() else [])]


def _build(tmp: Path, extra: list[str]) -> Path:
    src = tmp / "conn_test.c"
    src.write_text(PROGRAM)
    exe = tmp / "conn_test"
    out = subprocess.run([GCC or "gcc", *STRICT, "-I", str(EXT), "-o", str(exe), str(src),
                          *map(str, SOURCES), *extra], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return exe


def test_connection_lookup_under_sanitizers(tmp_path: Path) -> None:
    exe = _build(tmp_path, ["-fsanitize=address,undefined", "-fno-sanitize-recover=all"])
    out = subprocess.run([str(exe), *_hosts()], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 failures" in out.stdout


@pytest.mark.skipif(VALGRIND is None, reason="valgrind is not installed")
def test_connection_lookup_under_valgrind(tmp_path: Path) -> None:
    exe = _build(tmp_path, [])
    # make test-asan preloads libasan, which valgrind's own start-up cannot take.
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    out = subprocess.run([VALGRIND or "valgrind", "--error-exitcode=9", "--leak-check=full",
                          "-q", str(exe), *_hosts()],
                         capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 failures" in out.stdout
