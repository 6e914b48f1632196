"""Build the C core (ext/) into twisted_patch._native.

setup.py only chooses the platform's C files and flags; all metadata lives in
pyproject.toml.  Extra compiler flags (warnings as errors, sanitizers) come
from the environment variable TWISTED_PATCH_CFLAGS, so that `make test` and
`make test-asan` build the same sources with stricter settings.
"""

from __future__ import annotations

import os
import shlex
import sys

from setuptools import Extension, setup

COMMON = ["ext/module.c", "ext/addr.c", "ext/probe.c"]


def c_sources(platform: str) -> tuple[list[str], list[str]]:
    """The C files and libraries of the extension for a ``sys.platform`` value.

    A function so that `make test-cross` (tests/native/cross/check.py) compiles,
    for macOS and FreeBSD, exactly the files a build there would.
    """
    if platform == "win32":
        return COMMON + ["ext/xbind_win32.c", "ext/owner_common.c", "ext/owner_win32.c"], [
            "ws2_32", "iphlpapi", "advapi32"]
    # Owner lookup (who holds a port): one file per OS, "none" elsewhere; owner_posix.c
    # (uid -> user name) is shared by the POSIX backends.
    if platform.startswith("linux"):
        owner = ["ext/owner_linux.c", "ext/owner_posix.c"]
    elif platform == "darwin":
        owner = ["ext/owner_darwin.c", "ext/owner_posix.c"]
    else:
        owner = ["ext/owner_none.c"]
    return COMMON + ["ext/xbind_posix.c", "ext/owner_common.c", *owner], []


def compile_args() -> list[str]:
    args: list[str] = []
    if sys.platform != "win32":
        args += ["-std=c11"]
    args += shlex.split(os.environ.get("TWISTED_PATCH_CFLAGS", ""))
    return args


def link_args() -> list[str]:
    return shlex.split(os.environ.get("TWISTED_PATCH_LDFLAGS", ""))


if __name__ == "__main__":  # setuptools' build backend runs this file as __main__
    SOURCES, LIBRARIES = c_sources(sys.platform)
    native = Extension(
        "twisted_patch._native",
        sources=SOURCES,
        include_dirs=["ext"],
        depends=["ext/xbind.h"],
        libraries=LIBRARIES,
        define_macros=[("Py_LIMITED_API", "0x03090000")],
        py_limited_api=True,
        extra_compile_args=compile_args(),
        extra_link_args=link_args(),
    )

    setup(
        ext_modules=[native],
        packages=["twisted_patch", "twisted_patch.port", "twisted_patch.cli", "twisted.plugins"],
        package_data={"twisted_patch": ["py.typed", "_native.pyi"]},
        options={"bdist_wheel": {"py_limited_api": "cp39"}},
    )
