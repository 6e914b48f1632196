"""What differs in the test expectations on Windows, and whether this is Wine.

Detected at run time, never assumed: the platform, and Wine through ntdll's
``wine_get_version`` (twisted_patch.cli.attacks.wine_version, itself checked against the
host's ``wine --version`` by tests/test_windows_product.py).
"""

from __future__ import annotations

import sys

from twisted_patch.cli.attacks import wine_version

WINDOWS = sys.platform == "win32"

#: The OS's text for "address in use" in Twisted's CannotListenError: strerror(EADDRINUSE)
#: on POSIX, Winsock's text for WSAEADDRINUSE on Windows.
IN_USE_TEXT = (
    "Only one usage of each socket address" if WINDOWS else "Address already in use"
)


def holder_text(pid: int) -> str:
    """How an error names the holder of a port: by pid where the OS names it.

    Under Wine the owner table reports pid 0 for every listener (the Linux kernel holds
    the sockets for the wineserver): the holder is unknown, and the error says so.
    """
    if WINDOWS and wine_version() is not None:
        return "already in use by a process we cannot see"
    return f"already in use by pid {pid}"
