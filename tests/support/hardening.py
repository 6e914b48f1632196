"""Helpers shared by the hardening tests (issue 8): building small C programs,
counting file descriptors and memory, reading who listens on a port from /proc.

Not a test module (no ``test_`` prefix); the tests import it as ``support.hardening``
(pytest puts ``tests/`` on ``sys.path``).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
ROOT = TESTS.parent
FAULT_SHIM_SRC = TESTS / "native" / "fault" / "xbfault.c"

LINUX = sys.platform.startswith("linux")


def c_compiler() -> str | None:
    for name in (os.environ.get("CC", ""), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return name
    return None


def under_asan() -> bool:
    """True when libasan is preloaded (make test-asan)."""
    return "libasan" in os.environ.get("LD_PRELOAD", "")


def build_c(sources: list[Path], output: Path, *flags: str) -> Path:
    """Compile C sources into output; raise with the compiler's message on failure."""
    cc = c_compiler()
    if cc is None:
        raise RuntimeError("no C compiler (cc/gcc/clang) to build a test helper")
    cmd = [cc, "-std=c11", "-O1", "-Wall", "-Wextra", "-Werror", "-o", str(output)]
    cmd += [str(s) for s in sources] + list(flags)
    # A sanitizer runtime preloaded for the tests must not be preloaded into the compiler.
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr}")
    return output


def build_fault_shim(directory: Path) -> Path:
    """tests/native/fault/xbfault.c as a preloadable shared library."""
    return build_c(
        [FAULT_SHIM_SRC],
        directory / "libxbfault.so",
        "-shared",
        "-fPIC",
        "-ldl",
        "-lpthread",
    )


def world_readable_tempdir(prefix: str) -> Path:
    """A directory another uid (setpriv --reuid=65534) can enter and run programs from."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def preload_env(library: Path, **extra: str) -> dict[str, str]:
    """The environment for a child with `library` preloaded after any preload already
    in place (libasan must stay first under make test-asan)."""
    env = dict(os.environ)
    current = env.get("LD_PRELOAD", "")
    env["LD_PRELOAD"] = f"{current} {library}".strip()
    env.update(extra)
    return env


def listening_inodes(port: int) -> dict[int, tuple[str, int]]:
    """Every TCP socket in LISTEN state on `port` (any address, both families):
    {inode: (local address, uid)}.

    Asks the kernel with NETLINK_SOCK_DIAG (a dump of listening sockets only: fast
    however many connections the host has); falls back to /proc/net/tcp{,6}, which
    walks every socket of the host and can take tens of milliseconds.  This is the
    tests' own oracle, independent of the package's owner lookup."""
    try:
        return _listening_netlink(port)
    except OSError:
        return _listening_proc(port)


_NLMSG_ERROR, _NLMSG_DONE, _SOCK_DIAG_BY_FAMILY = 2, 3, 20
_NLM_F_REQUEST, _NLM_F_DUMP = 0x1, 0x300
_TCP_LISTEN = 10


def _listening_netlink(port: int) -> dict[int, tuple[str, int]]:
    import struct

    found: dict[int, tuple[str, int]] = {}
    netlink_sock_diag = 4
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, netlink_sock_diag) as nl:
        for seq, family in enumerate((socket.AF_INET, socket.AF_INET6), start=1):
            # inet_diag_req_v2: family, protocol, ext, pad, states, then a zero sockid.
            req = struct.pack("=BBBxI", family, socket.IPPROTO_TCP, 0, 1 << _TCP_LISTEN)
            req += bytes(48)
            hdr = struct.pack("=IHHII", 16 + len(req), _SOCK_DIAG_BY_FAMILY,
                              _NLM_F_REQUEST | _NLM_F_DUMP, seq, 0)
            nl.sendall(hdr + req)
            done = False
            while not done:
                data = nl.recv(65536)
                offset = 0
                while offset + 16 <= len(data):
                    length, kind, _, _, _ = struct.unpack_from("=IHHII", data, offset)
                    if length < 16:
                        raise OSError("malformed netlink reply")
                    body = data[offset + 16: offset + length]
                    offset += (length + 3) & ~3
                    if kind == _NLMSG_DONE:
                        done = True
                        break
                    if kind == _NLMSG_ERROR:
                        code = -struct.unpack_from("=i", body)[0]
                        raise OSError(code, os.strerror(code))
                    if kind != _SOCK_DIAG_BY_FAMILY or len(body) < 72:
                        continue
                    fam, state = body[0], body[1]
                    sport = struct.unpack_from(">H", body, 4)[0]
                    uid, inode = struct.unpack_from("=II", body, 64)
                    if state != _TCP_LISTEN or sport != port:
                        continue
                    size = 4 if fam == socket.AF_INET else 16
                    address = socket.inet_ntop(fam, body[8: 8 + size])
                    found[inode] = (address, uid)
    return found


def _listening_proc(port: int) -> dict[int, tuple[str, int]]:
    found: dict[int, tuple[str, int]] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                lines = f.read().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            local, state, uid, inode = fields[1], fields[3], fields[7], fields[9]
            address, _, port_hex = local.rpartition(":")
            if state == "0A" and int(port_hex, 16) == port:
                found[int(inode)] = (address, int(uid))
    return found


def own_socket_inodes() -> set[int]:
    """Inodes of every socket this process holds (from /proc/self/fd)."""
    found: set[int] = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
        if link.startswith("socket:["):
            found.add(int(link[8:-1]))
    return found


def socket_inode(fd: int) -> int:
    return os.fstat(fd).st_ino
