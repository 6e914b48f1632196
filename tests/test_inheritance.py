"""The listening socket is not inherited by child processes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from typing import Any

import pytest
from twisted.internet.protocol import Factory, Protocol

from twisted_patch import _native, listen_exclusive

CHILD = """\
import os, sys
try:
    os.fstat(int(sys.argv[1]))
    print('inherited')
except OSError:
    print('absent')
"""


def child_sees(fd: int) -> str:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(fd)], close_fds=False, capture_output=True, text=True,
        timeout=30, check=True,
    )
    return out.stdout.strip()


@pytest.mark.skipif(sys.platform == "win32", reason="fd numbers are a POSIX notion")
def test_child_process_does_not_inherit_the_listener(reactor: Any, ports: list[Any]) -> None:
    port = listen_exclusive(0, Factory.forProtocol(Protocol), interface="127.0.0.1",
                            reactor=reactor)
    ports.append(port)
    assert child_sees(port.fileno()) == "absent"
    assert _native.socket_options(port.fileno())["inheritable"] == 0

    # Control: the same check does see an inheritable socket, so it can fail.
    with socket.socket() as s:
        os.set_inheritable(s.fileno(), True)
        assert child_sees(s.fileno()) == "inherited"


def test_core_socket_is_cloexec_from_creation() -> None:
    handle = _native.open_socket(socket.AF_INET)
    try:
        opts = _native.socket_options(handle)
        assert opts["inheritable"] == 0 and opts["listening"] == 0
        if sys.platform == "win32":
            # Winsock cannot report FIONBIO (-1); the exclusive option instead of
            # SO_REUSEADDR, and no SO_REUSEPORT at all
            assert opts["nonblocking"] == -1 and opts["reuseport"] == -1
            assert opts["exclusiveaddruse"] == 1 and opts["reuseaddr"] == 0
        else:
            assert opts["nonblocking"] == 1
            assert opts["reuseaddr"] == 1 and opts["reuseport"] in (0, -1)
    finally:
        _native.close(handle)
