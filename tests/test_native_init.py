"""The import of twisted_patch._native when the platform's setup fails.

On Windows the module calls WSAStartup() at import; if that fails, the import must raise
BindError (stage "init") and not crash the interpreter (issue 12: the error was raised
before BindError existed, calling PyObject_CallObject(NULL, ...)).  POSIX has nothing to
set up, so the test builds the real extension sources with a stand-in xb_startup() that
fails (tests/native/fault/startup_fails.c) and imports that build in a child process.
"""

from __future__ import annotations

import errno
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from support import hardening as h

EXT = h.ROOT / "ext"

pytestmark = pytest.mark.skipif(
    not h.LINUX or h.c_compiler() is None or not (EXT / "module.c").exists(),
    reason="needs Linux, a C compiler and the source tree (ext/)",
)

CHILD = r"""
import importlib.machinery, importlib.util, sys
path = sys.argv[1]
loader = importlib.machinery.ExtensionFileLoader("twisted_patch._native", path)
spec = importlib.util.spec_from_file_location("twisted_patch._native", path, loader=loader)
try:
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
except OSError as e:
    print(type(e).__module__, type(e).__qualname__, e.errno, e.stage, e.detail, e.address,
          type(e).__mro__[1].__name__)
    sys.exit(0)
print("imported without an error")
sys.exit(3)
"""


@pytest.fixture(scope="module")
def failing_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("native-init")
    include = ["-I", str(EXT), "-I", sysconfig.get_paths()["include"],
               "-DPy_LIMITED_API=0x03090000"]
    posix = h.build_c([EXT / "xbind_posix.c"], out / "xbind_posix.o", "-c", "-fPIC",
                      "-Dxb_startup=xb_startup_replaced_by_the_test", *include)
    sources = [EXT / name for name in ("module.c", "addr.c", "probe.c", "owner_common.c",
                                       "owner_linux.c", "owner_posix.c")]
    sources += [h.TESTS / "native" / "fault" / "startup_fails.c", posix]
    return h.build_c(sources, out / "_native.abi3.so", "-shared", "-fPIC", *include)


def test_failed_platform_setup_raises_bind_error_not_a_crash(failing_build: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", CHILD, str(failing_build)],
                          capture_output=True, text=True, timeout=120)
    # Before the fix: the child died of SIGSEGV (returncode -11) inside PyInit__native.
    assert proc.returncode == 0, (proc.returncode, proc.stdout, proc.stderr)
    module, name, code, stage, detail, address, base = proc.stdout.split()
    assert (module, name, base) == ("twisted_patch._native", "BindError", "OSError")
    assert int(code) == errno.ENOBUFS
    assert (stage, detail, address) == ("init", "WSAStartup", "None")
