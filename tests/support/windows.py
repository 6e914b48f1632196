"""What differs in the test expectations on Windows, and whether this is Wine.

Detected at run time, never assumed: the platform, and Wine through ntdll's
``wine_get_version`` (twisted_patch.cli.attacks.wine_version, itself checked against the
host's ``wine --version`` by tests/test_windows_product.py).
"""

from __future__ import annotations

import sys

from twisted_patch.cli.attacks import wine_version

WINDOWS = sys.platform == "win32"

#: "Address in use" in Twisted's CannotListenError: strerror(EADDRINUSE) on POSIX; on
#: Windows the code (Wine's FormatMessage has no text for Winsock codes: "[WinError
#: 10048] Windows Error 0x2740"; Windows says "Only one usage of each socket address").
IN_USE_TEXT = r"[WinError 10048]" if WINDOWS else "Address already in use"


def holder_text(pid: int) -> str:
    """How an error names the holder of a port: by pid where the OS names it.

    Under Wine the owner table reports pid 0 for every listener (the Linux kernel holds
    the sockets for the wineserver): the holder is unknown, and the error says so.
    """
    if WINDOWS and wine_version() is not None:
        return "already in use by a process we cannot see"
    return f"already in use by pid {pid}"


def exclusive_refusal_errno(attacker_host: str, reuseaddr: bool) -> int:
    """The errno an attacker's bind of the very address of one of our exclusive sockets
    gets (our guard's address, the attacker's options: none or SO_REUSEADDR).

    POSIX: EADDRINUSE.  Windows: the "same address" cell of Microsoft's table over an
    SO_EXCLUSIVEADDRUSE socket (tests/support/wine.py), as Wine 8 measured it under Wine:
    WSAEACCES (Python's errno EACCES) or WSAEADDRINUSE (errno.EADDRINUSE, 10048).
    """
    import errno

    if not WINDOWS:
        return errno.EADDRINUSE
    from support import wine

    host = "0.0.0.0" if attacker_host in ("0.0.0.0", "::") else "127.0.0.1"
    cell = (host, host, "SO_REUSEADDR" if reuseaddr else "none")
    if wine_version() is not None:
        code = wine.WINE_CORE[cell]
    else:
        code = wine.MS_CODE[wine.microsoft("core", cell)]
    return errno.EACCES if code == wine.WSAEACCES else errno.EADDRINUSE


def no_msvc_under_wine() -> str | None:
    """Why setup.py's C extension cannot be built from source here, or None.

    Under Wine there is no MSVC (the Windows wheel is cross-built with mingw-w64 by
    ``make win-wheel``); on real Windows the build runs (CI has MSVC)."""
    if WINDOWS and wine_version() is not None:
        return ("under Wine there is no MSVC to build setup.py's C extension from source "
                "(the Windows wheel is cross-built with mingw-w64: make win-wheel)")
    return None
