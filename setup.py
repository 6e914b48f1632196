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

if sys.platform == "win32":
    PLATFORM = ["ext/xbind_win32.c"]
    LIBRARIES = ["ws2_32"]
else:
    PLATFORM = ["ext/xbind_posix.c"]
    LIBRARIES = []


# Owner lookup (who holds a port): one file per OS, "none" elsewhere.
if sys.platform == "win32":
    OWNER = ["ext/owner_win32.c"]
    LIBRARIES += ["iphlpapi", "advapi32"]
elif sys.platform.startswith("linux"):
    OWNER = ["ext/owner_linux.c"]
elif sys.platform == "darwin":
    OWNER = ["ext/owner_darwin.c"]
else:
    OWNER = ["ext/owner_none.c"]
OWNER = ["ext/owner_common.c", *OWNER]


def compile_args() -> list[str]:
    args: list[str] = []
    if sys.platform != "win32":
        args += ["-std=c11"]
    args += shlex.split(os.environ.get("TWISTED_PATCH_CFLAGS", ""))
    return args


def link_args() -> list[str]:
    return shlex.split(os.environ.get("TWISTED_PATCH_LDFLAGS", ""))


native = Extension(
    "twisted_patch._native",
    sources=COMMON + PLATFORM + OWNER,
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
