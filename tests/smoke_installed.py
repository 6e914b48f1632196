"""Smoke test of an installed twisted-patch, run against each built artefact.

`make dist` runs it in a fresh virtual environment for the sdist and for the
manylinux wheel; the release workflow (cibuildwheel's test-command) runs it for
every wheel it builds.  Run it with ``python -I`` from outside the source tree:
it checks that what it imports is the installed package, not the checkout.

What it checks, each step failing loudly (exit 1) rather than skipping:

1. the installed package is the one imported, its compiled core loads, and the
   metadata version is ``twisted_patch.__version__``;
2. ``xtcp:0:interface=127.0.0.1`` listens through the core: the endpoint is
   ours, the listening socket has the core's options (not inheritable,
   non-blocking, and on Windows ``SO_EXCLUSIVEADDRUSE``; on POSIX never
   ``SO_REUSEPORT``), a client's bytes come back through Twisted's own
   connection code;
3. ``twisted-patch who`` names this process as the listener (skipped, saying
   so, where the OS has no owner lookup);
4. ``twisted-patch --help`` runs;
5. with ``--probe``: ``twisted-patch probe`` (plain Twisted and xtcp attacked
   from other processes), which exits 0 only when xtcp refused every attack.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path
from typing import Any

SOURCE_TREE = Path(__file__).resolve().parent.parent


def check(ok: bool, what: str) -> None:
    if not ok:
        raise SystemExit(f"smoke: FAILED: {what}")
    print(f"smoke: ok: {what}")


def cli() -> list[str]:
    """The console script pip installed (bin/ or Scripts\\ of this environment)."""
    where = [sysconfig.get_path("scripts"), os.path.dirname(sys.executable)]
    exe = shutil.which("twisted-patch", path=os.pathsep.join(where))
    if exe is None:
        raise SystemExit(f"smoke: FAILED: no twisted-patch script in {where}")
    return [exe]


def under_wine() -> bool:
    """Windows CPython running under Wine (ntdll exports wine_get_version)."""
    if sys.platform != "win32":
        return False
    import ctypes

    return hasattr(ctypes.WinDLL("ntdll"), "wine_get_version")


def installed_package() -> Any:
    import twisted_patch
    from twisted_patch import _native

    where = Path(twisted_patch.__file__).resolve()
    check("site-packages" in where.parts,
          f"twisted_patch imported from the installation ({where.parent})")
    check(metadata.version("twisted-patch") == twisted_patch.__version__,
          f"metadata version {metadata.version('twisted-patch')} == __version__")
    check(bool(_native.PLATFORM_CORE), f"the C core loads ({_native.PLATFORM_CORE}, owner "
                                       f"lookup {_native.OWNER_BACKEND})")
    return _native


def listen_through_core(native: Any) -> None:
    from twisted.internet import endpoints, protocol, reactor, threads
    from twisted.internet.defer import ensureDeferred
    from twisted.internet.task import react

    from twisted_patch import ExclusiveTCPServerEndpoint

    class Echo(protocol.Protocol):
        def dataReceived(self, data: bytes) -> None:
            assert self.transport is not None
            self.transport.write(data)

    def client(port: int) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as c:
            c.sendall(b"smoke")
            return c.recv(5)

    def who(port: int) -> str:
        out = subprocess.run([*cli(), "who", "--json", f"127.0.0.1:{port}"],
                             capture_output=True, text=True, timeout=120)
        return f"{out.returncode}\n{out.stdout}{out.stderr}"

    async def run(_reactor: Any) -> None:
        ep = endpoints.serverFromString(reactor, "xtcp:0:interface=127.0.0.1")
        check(isinstance(ep, ExclusiveTCPServerEndpoint),
              f"serverFromString('xtcp:...') is {type(ep).__name__}")
        port = await ep.listen(protocol.Factory.forProtocol(Echo))
        number = port.getHost().port
        options = native.socket_options(port.fileno())
        # Winsock cannot report whether a socket is non-blocking (-1 there).
        nonblocking = options["nonblocking"] == 1 or (
            sys.platform == "win32" and options["nonblocking"] == -1)
        check(options["listening"] == 1 and options["inheritable"] == 0 and nonblocking,
              f"127.0.0.1:{number} listens with the core's options {options}")
        if sys.platform == "win32":
            check(options["exclusiveaddruse"] == 1, "SO_EXCLUSIVEADDRUSE is set")
        else:
            check(options["reuseport"] == 0, "SO_REUSEPORT is not set")
        echoed = await threads.deferToThread(client, number)
        check(echoed == b"smoke", f"a client's bytes come back through Twisted ({echoed!r})")
        report = await threads.deferToThread(who, number)
        code, _, text = report.partition("\n")
        if native.OWNER_BACKEND == "none":
            print(f"smoke: SKIPPED twisted-patch who: no owner lookup on {sys.platform}")
        else:
            check(code == "0", "twisted-patch who exits 0"
                  + ("" if code == "0" else f" (exit {code}: {text.strip()})"))
            entries = json.loads(text)
            check(any(e["port"] == number for e in entries), f"who lists 127.0.0.1:{number}")
            pids = [pid for entry in entries for pid in entry.get("pids", [])]
            if under_wine():  # docs/owner.rst: Wine reports owning pid 0
                print(f"smoke: SKIPPED the holder's pid under Wine (reported: {pids})")
            else:
                check(os.getpid() in pids,
                      f"twisted-patch who names this process ({os.getpid()}) as the holder")
        await port.stopListening()

    try:
        react(lambda r: ensureDeferred(run(r)))
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise


def main() -> int:
    parser = argparse.ArgumentParser(description="smoke-test an installed twisted-patch")
    parser.add_argument("--probe", action="store_true", help="also run `twisted-patch probe`")
    args = parser.parse_args()
    # Steps 1-3 in a child interpreter: react() ends the process it runs in.
    if os.environ.get("TWISTED_PATCH_SMOKE_CHILD") == "1":
        listen_through_core(installed_package())
        return 0
    env = {**os.environ, "TWISTED_PATCH_SMOKE_CHILD": "1"}
    child = subprocess.run([sys.executable, "-I", __file__], env=env, timeout=300)
    check(child.returncode == 0, "steps 1-3 (child process above)")
    helped = subprocess.run([*cli(), "--help"], capture_output=True, text=True, timeout=120)
    check(helped.returncode == 0 and "probe" in helped.stdout, "twisted-patch --help runs")
    if args.probe:
        probe = subprocess.run([*cli(), "probe"], capture_output=True, text=True, timeout=600)
        print("\n".join(probe.stdout.strip().splitlines()[-3:]))
        check(probe.returncode == 0,
              f"twisted-patch probe: every attack on xtcp refused (exit {probe.returncode})")
    print("smoke: passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
