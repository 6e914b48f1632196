"""One throwaway Wine prefix with one persistent wineserver, for one harness run or test session.

Used by windows/harness.py (make win-python, make test-windows) and, through
tests/support/wine.py, by the Linux tests that run C programs under Wine (the harness runs
without the test dependencies: stdlib only here).  Rules (docs/windows.rst):

- a fresh WINEPREFIX under build/windows/ per run, removed at the end;
- WINEDEBUG=-all, no display, no Mono/Gecko installers;
- one ``wineserver -f -p`` started here (so the pid we hold is the server's) and ended
  by that pid at the end, then every process that still carries our WINEPREFIX in its
  environment is killed by pid; the run fails if any is left;
- Windows CPython needs a stdin that is not closed and a pipe or a file as stdout
  ("init_sys_streams: Invalid handle" otherwise): every program gets /dev/null as stdin
  and a pipe as stdout/stderr.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path


def _first_executable(candidates: Sequence[str]) -> str | None:
    """The first candidate that is an executable: a name looked up on PATH, or a path."""
    for candidate in candidates:
        path = shutil.which(candidate) if "/" not in candidate else candidate
        if path and os.access(path, os.X_OK):
            return path
    return None


def wine_loader() -> str | None:
    """The 64-bit Wine loader: wine64 on PATH, Debian's /usr/lib/wine/wine64, or wine."""
    return _first_executable(("wine64", "/usr/lib/wine/wine64", "wine"))


def wineserver() -> str | None:
    return _first_executable(("wineserver", "/usr/lib/wine/wineserver",
                              "/usr/lib/wine/wineserver64"))


def windows_path(path: Path) -> str:
    r"""The path as a Windows program under Wine sees it (Wine's Z: drive is /)."""
    return "Z:" + str(path.resolve()).replace("/", "\\")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


class WineSession:
    """A WINEPREFIX and its wineserver; use as a context manager (or boot(), then stop()).

    The prefix is a fresh directory named `prefix_name`* under `base` (the system's temporary
    directory when None)."""

    def __init__(self, base: Path | None = None, prefix_name: str = "prefix-") -> None:
        loader, server = wine_loader(), wineserver()
        if loader is None or server is None:
            raise RuntimeError("wine is not installed (Debian packages wine, wine64)")
        if base is not None:
            base.mkdir(parents=True, exist_ok=True)
        self.loader = loader
        self.server = server
        self.prefix = Path(tempfile.mkdtemp(prefix=prefix_name, dir=base))
        self.server_proc: subprocess.Popen[bytes] | None = None
        self.init_seconds = 0.0

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            WINEPREFIX=str(self.prefix),
            WINEDEBUG="-all",
            # No Mono / Gecko installer, no desktop menus, no display.
            WINEDLLOVERRIDES="mscoree,mshtml=;winemenubuilder.exe=d",
            WINEARCH="win64",
        )
        # make test-asan preloads libasan for the extension; Wine's loader fails with it.
        # The host's Python settings name Linux paths.
        for name in ("DISPLAY", "WAYLAND_DISPLAY", "LD_PRELOAD", "PYTHONPATH", "PYTHONHOME",
                     "VIRTUAL_ENV"):
            env.pop(name, None)
        # The host's pip settings (find-links, certificates) name Linux paths.
        for name in [n for n in env if n.startswith("PIP_")]:
            del env[name]
        return env

    def boot(self) -> WineSession:
        """Start the wineserver and initialise the prefix (wineboot -i); stop() on failure."""
        t0 = time.monotonic()
        # -f: stay in the foreground, so the pid we hold is the server's; -p: persistent.
        self.server_proc = subprocess.Popen(
            [self.server, "-f", "-p"], env=self.env, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        try:
            # To a file, not a pipe: wineboot leaves Wine's service processes running
            # (until the server stops) and they inherit its output handles.
            with tempfile.TemporaryFile() as log:
                proc = subprocess.run(
                    [self.loader, "wineboot", "-i"], env=self.env, stdin=subprocess.DEVNULL,
                    stdout=log, stderr=log, timeout=300,
                )
                if proc.returncode != 0:
                    log.seek(0)
                    raise RuntimeError(f"wineboot -i failed ({proc.returncode}): {log.read()!r}")
        except BaseException:
            self.stop()
            raise
        self.init_seconds = time.monotonic() - t0
        return self

    def __enter__(self) -> WineSession:
        self.boot()
        server = self.server_proc.pid if self.server_proc is not None else "?"
        print(f"[wine] prefix {self.prefix} ready in {self.init_seconds:.1f} s "
              f"(wineserver pid {server})", flush=True)
        return self

    def __exit__(self, *exc: object) -> None:
        left = self.stop()
        if left:
            raise SystemExit(f"wine processes still running after the run: {left}")

    def run(self, args: Sequence[str | Path], *, cwd: Path | None = None,
            extra_env: dict[str, str] | None = None, timeout: float = 600,
            echo: bool = True) -> tuple[int, str]:
        """Run a Windows program; stream its output (when echo) and return (rc, output)."""
        env = self.env
        if extra_env:
            env.update(extra_env)
        proc = subprocess.Popen(
            [self.loader, *map(str, args)], env=env, cwd=cwd, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        assert proc.stdout is not None
        stdout = proc.stdout
        lines: list[str] = []

        def pump() -> None:
            for raw in iter(stdout.readline, b""):
                line = raw.decode("utf-8", "replace").replace("\r\n", "\n")
                lines.append(line)
                if echo:
                    sys.stdout.write(line)
                    sys.stdout.flush()

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            print(f"[wine] {args[0]} ran longer than {timeout:.0f} s: killed (pid {proc.pid})",
                  flush=True)
            proc.kill()
            proc.wait()
            rc = -1
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        # Children of the program (Wine processes) may hold the pipe open: bounded.
        reader.join(timeout=10)
        return rc, "".join(lines)

    def _our_pids(self) -> list[int]:
        """Processes (other than us) whose environment names our WINEPREFIX."""
        marker = f"WINEPREFIX={self.prefix}".encode()
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                environ = (entry / "environ").read_bytes()
            except OSError:
                continue
            if marker in environ.split(b"\0"):
                pids.append(int(entry.name))
        return pids

    def stop(self) -> list[int]:
        """End the wineserver by its pid, then any process of this prefix; remove it.

        Returns the pids still alive afterwards (empty when all is clean).
        """
        if self.server_proc is not None and self.server_proc.poll() is None:
            self.server_proc.terminate()
            try:
                self.server_proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.server_proc.kill()
                self.server_proc.wait()
        left: list[int] = []
        if Path("/proc/self/environ").exists():
            # Wine's helper processes (services.exe, winedevice.exe, ...) lose their
            # server and exit; kill by pid any that did not.
            deadline = time.monotonic() + 10
            while True:
                left = [p for p in self._our_pids() if _alive(p)]
                if not left or time.monotonic() > deadline:
                    break
                for pid in left:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                time.sleep(0.05)
        shutil.rmtree(self.prefix, ignore_errors=True)
        return left


@contextlib.contextmanager
def session(base: Path) -> Iterator[WineSession]:
    with WineSession(base) as s:
        yield s
