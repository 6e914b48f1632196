"""Build the core's C tests (tests/native/c/) natively and for Windows, and run the Windows build
under Wine.  Used by tests/test_windows_wine.py; also a small command line for people:

    python tests/wine.py matrix      # print the Windows attack matrices, measured under Wine
    python tests/wine.py selftest    # run the C self-tests (native, then under Wine)

Wine rules (see docs/windows.rst): Wine applies Windows' bind-time rules only while the
victim socket is bound and not yet listening; once it listens, the Linux kernel refuses any
overlap first.  So every victim here is bound and never listens.

Every process started here is ended by its pid: the persistent ``wineserver -f -p`` is our
child; at the end we kill it, then every process that still carries our WINEPREFIX in its
environment, and check that none is left.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The Wine session is windows/winesession.py's (stdlib only, shared with windows/harness.py).
if str(ROOT / "windows") not in sys.path:
    sys.path.insert(0, str(ROOT / "windows"))
import winesession  # noqa: E402
from winesession import wine_loader, wineserver  # noqa: E402

EXT = ROOT / "ext"
CSRC = ROOT / "tests" / "native" / "c"
STRICT = ["-std=c11", "-Wall", "-Wextra", "-Werror"]
MINGW_CC = "x86_64-w64-mingw32-gcc"
WINDOWS_LIBS = ["-lws2_32"]

WSAEACCES = 10013
WSAEADDRINUSE = 10048

# ---------------------------------------------------------------------------------------
# Tools


def native_cc() -> str | None:
    for name in (os.environ.get("CC", ""), "gcc", "cc", "clang"):
        if name and shutil.which(name):
            return name
    return None


def mingw_cc() -> str | None:
    return shutil.which(MINGW_CC)


def missing_windows_tools() -> str | None:
    """None if the Windows build can be made and run here, else the reason it cannot."""
    if os.environ.get("TWISTED_PATCH_NO_WINE"):
        return "disabled by TWISTED_PATCH_NO_WINE"
    missing = []
    if mingw_cc() is None:
        missing.append(f"{MINGW_CC} (Debian package gcc-mingw-w64-x86-64)")
    if wine_loader() is None or wineserver() is None:
        missing.append("wine64 / wineserver (Debian packages wine, wine64)")
    if missing:
        return "not installed: " + ", ".join(missing) + "; `make test` as root installs them"
    return None


# ---------------------------------------------------------------------------------------
# Builds

CORE_COMMON = [EXT / "addr.c"]


def build(out_dir: Path, windows: bool, program: str = "xbtest") -> Path:
    """Compile tests/native/c/<program>.c with the core; return the executable's path."""
    sources = [CSRC / f"{program}.c", *CORE_COMMON]
    if windows:
        cc = mingw_cc()
        sources.append(EXT / "xbind_win32.c")
        out = out_dir / f"{program}.exe"
        libs = WINDOWS_LIBS
    else:
        cc = native_cc()
        sources.append(EXT / "xbind_posix.c")
        out = out_dir / program
        libs = []
    if cc is None:
        raise RuntimeError("no C compiler found")
    cmd = [cc, *STRICT, f"-I{EXT}", "-o", str(out), *map(str, sources), *libs]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"build failed: {' '.join(cmd)}\n{proc.stdout}{proc.stderr}")
    return out


def compile_core_for_windows(out_dir: Path) -> subprocess.CompletedProcess[str]:
    """What the foundation issue asks: the Windows core compiles warning-free with mingw-w64."""
    cc = mingw_cc()
    assert cc is not None
    cmd = [cc, *STRICT, f"-I{EXT}", "-c", str(EXT / "xbind_win32.c"), "-o",
           str(out_dir / "xbind_win32.o")]
    first = subprocess.run(cmd, capture_output=True, text=True)
    if first.returncode != 0:
        return first
    cmd = [cc, *STRICT, f"-I{EXT}", "-c", str(EXT / "addr.c"), "-o", str(out_dir / "addr.o")]
    return subprocess.run(cmd, capture_output=True, text=True)


# ---------------------------------------------------------------------------------------
# Wine session: windows/winesession.py's, with what the tests add


class WineSession(winesession.WineSession):
    """One throwaway WINEPREFIX with a persistent wineserver, for one test session; its
    programs are started here and ended by pid at stop()."""

    def __init__(self, base: Path | None = None) -> None:
        super().__init__(base, prefix_name="twisted-patch-wine-")
        self.started: list[subprocess.Popen[bytes]] = []

    @classmethod
    def start(cls, base: Path | None = None) -> WineSession:
        session = cls(base)
        session.boot()
        return session

    def run(  # type: ignore[override]  # the tests' run: captured, not streamed
        self, exe: Path, *args: str, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.loader, str(exe), *args], env=self.env, stdin=subprocess.DEVNULL,
            capture_output=True, text=True, timeout=timeout,
        )

    def popen(self, exe: Path, *args: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [self.loader, str(exe), *args], env=self.env, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        self.started.append(proc)
        return proc

    def stop(self) -> list[int]:
        for proc in self.started:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        return super().stop()


# ---------------------------------------------------------------------------------------
# The attack matrix

VICTIM_ADDRESSES = ("0.0.0.0", "127.0.0.1")
ATTACKER_OPTIONS = ("none", "SO_REUSEADDR", "SO_EXCLUSIVEADDRUSE")

Cell = tuple[str, str, str]  # (victim address, attacker address, attacker option)


def cells() -> list[Cell]:
    return [
        (victim, attacker, option)
        for victim in VICTIM_ADDRESSES
        for attacker in VICTIM_ADDRESSES
        for option in ATTACKER_OPTIONS
    ]


def describe_cell(victim: str, attacker: str) -> str:
    if victim == attacker:
        return "same address"
    if attacker == "127.0.0.1":
        return "specific over wildcard"
    return "wildcard over specific"


# Microsoft, "Sharing Transport Addresses" (Windows Server 2003 and later), second bind
# (rows) against a first bind (victim) made with no option or with SO_EXCLUSIVEADDRUSE.
# INUSE = WSAEADDRINUSE, DENIED = WSAEACCES, CHECK = allowed after an access check (the
# same user passes it), SUCCESS = allowed.  Keyed by (victim kind, victim address type,
# attacker address type, attacker option).
MICROSOFT: dict[tuple[str, str, str, str], str] = {}


def _ms(victim_kind: str, victim_type: str, rows: dict[tuple[str, str], str]) -> None:
    for (attacker_type, option), result in rows.items():
        MICROSOFT[(victim_kind, victim_type, attacker_type, option)] = result


_ms("plain", "wildcard", {
    ("wildcard", "none"): "INUSE", ("specific", "none"): "CHECK",
    ("wildcard", "SO_REUSEADDR"): "DENIED", ("specific", "SO_REUSEADDR"): "CHECK",
    ("wildcard", "SO_EXCLUSIVEADDRUSE"): "INUSE", ("specific", "SO_EXCLUSIVEADDRUSE"): "CHECK",
})
_ms("plain", "specific", {
    ("wildcard", "none"): "SUCCESS", ("specific", "none"): "INUSE",
    ("wildcard", "SO_REUSEADDR"): "SUCCESS", ("specific", "SO_REUSEADDR"): "DENIED",
    ("wildcard", "SO_EXCLUSIVEADDRUSE"): "INUSE", ("specific", "SO_EXCLUSIVEADDRUSE"): "INUSE",
})
_ms("core", "wildcard", {
    ("wildcard", "none"): "INUSE", ("specific", "none"): "DENIED",
    ("wildcard", "SO_REUSEADDR"): "DENIED", ("specific", "SO_REUSEADDR"): "DENIED",
    ("wildcard", "SO_EXCLUSIVEADDRUSE"): "INUSE", ("specific", "SO_EXCLUSIVEADDRUSE"): "DENIED",
})
_ms("core", "specific", {
    ("wildcard", "none"): "SUCCESS", ("specific", "none"): "INUSE",
    ("wildcard", "SO_REUSEADDR"): "SUCCESS", ("specific", "SO_REUSEADDR"): "DENIED",
    ("wildcard", "SO_EXCLUSIVEADDRUSE"): "INUSE", ("specific", "SO_EXCLUSIVEADDRUSE"): "INUSE",
})


def microsoft(victim_kind: str, cell: Cell) -> str:
    victim, attacker, option = cell
    vt = "wildcard" if victim == "0.0.0.0" else "specific"
    at = "wildcard" if attacker == "0.0.0.0" else "specific"
    return MICROSOFT[(victim_kind, vt, at, option)]


MS_CODE = {"INUSE": WSAEADDRINUSE, "DENIED": WSAEACCES, "CHECK": 0, "SUCCESS": 0}

# What Wine 8 returns, measured (tests/test_windows_wine.py asserts every cell).  Wine
# answers WSAEACCES where Microsoft documents WSAEADDRINUSE in two cells (a plain or an
# exclusive bind of the same wildcard over an exclusive wildcard): refused either way.
WINE_CORE: dict[Cell, int] = {
    ("0.0.0.0", "0.0.0.0", "none"): WSAEACCES,
    ("0.0.0.0", "0.0.0.0", "SO_REUSEADDR"): WSAEACCES,
    ("0.0.0.0", "0.0.0.0", "SO_EXCLUSIVEADDRUSE"): WSAEACCES,
    ("0.0.0.0", "127.0.0.1", "none"): WSAEACCES,
    ("0.0.0.0", "127.0.0.1", "SO_REUSEADDR"): WSAEACCES,
    ("0.0.0.0", "127.0.0.1", "SO_EXCLUSIVEADDRUSE"): WSAEACCES,
    ("127.0.0.1", "0.0.0.0", "none"): 0,
    ("127.0.0.1", "0.0.0.0", "SO_REUSEADDR"): 0,
    ("127.0.0.1", "0.0.0.0", "SO_EXCLUSIVEADDRUSE"): WSAEADDRINUSE,
    ("127.0.0.1", "127.0.0.1", "none"): WSAEADDRINUSE,
    ("127.0.0.1", "127.0.0.1", "SO_REUSEADDR"): WSAEACCES,
    ("127.0.0.1", "127.0.0.1", "SO_EXCLUSIVEADDRUSE"): WSAEADDRINUSE,
}
WINE_PLAIN: dict[Cell, int] = {
    ("0.0.0.0", "0.0.0.0", "none"): WSAEADDRINUSE,
    ("0.0.0.0", "0.0.0.0", "SO_REUSEADDR"): WSAEACCES,
    ("0.0.0.0", "0.0.0.0", "SO_EXCLUSIVEADDRUSE"): WSAEADDRINUSE,
    ("0.0.0.0", "127.0.0.1", "none"): 0,
    ("0.0.0.0", "127.0.0.1", "SO_REUSEADDR"): 0,
    ("0.0.0.0", "127.0.0.1", "SO_EXCLUSIVEADDRUSE"): 0,
    ("127.0.0.1", "0.0.0.0", "none"): 0,
    ("127.0.0.1", "0.0.0.0", "SO_REUSEADDR"): 0,
    ("127.0.0.1", "0.0.0.0", "SO_EXCLUSIVEADDRUSE"): WSAEADDRINUSE,
    ("127.0.0.1", "127.0.0.1", "none"): WSAEADDRINUSE,
    ("127.0.0.1", "127.0.0.1", "SO_REUSEADDR"): WSAEACCES,
    ("127.0.0.1", "127.0.0.1", "SO_EXCLUSIVEADDRUSE"): WSAEADDRINUSE,
}


def is_hijack(cell: Cell) -> bool:
    """A successful bind in this cell takes traffic meant for the victim.

    Specific over wildcard: connections to 127.0.0.1:P go to the more specific socket,
    the attacker's.  Same address: the two share the port.  Wildcard over specific is
    not a hijack: connections to 127.0.0.1:P still reach the victim (the more specific
    binding), the attacker only gets addresses the victim never served.
    """
    victim, attacker, _ = cell
    return describe_cell(victim, attacker) != "wildcard over specific"


def run_matrix(session: WineSession, exe: Path, victim_kind: str) -> dict[Cell, int]:
    """For each victim address: a Wine process binds it (no listen), a second Wine
    process tries every attacker bind.  Returns the attacker's bind result per cell."""
    results: dict[Cell, int] = {}
    for victim in VICTIM_ADDRESSES:
        proc = session.popen(exe, "victim", victim_kind, victim)
        try:
            assert proc.stdout is not None and proc.stdin is not None
            line = proc.stdout.readline().decode().strip()
            if not line.startswith("READY "):
                err = proc.stderr.read().decode() if proc.stderr else ""
                raise RuntimeError(f"victim {victim_kind} {victim} failed: {line!r} {err}")
            port = int(line.split()[1])
            for attacker in VICTIM_ADDRESSES:
                out = session.run(exe, "attack", attacker, str(port))
                if out.returncode != 0:
                    raise RuntimeError(f"attacker failed: {out.stdout} {out.stderr}")
                for row in out.stdout.splitlines():
                    option, code = row.split()
                    results[(victim, attacker, option)] = int(code)
            proc.stdin.close()
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return results


def code_name(code: int) -> str:
    return {0: "bound", WSAEACCES: "WSAEACCES 10013", WSAEADDRINUSE: "WSAEADDRINUSE 10048"}.get(
        code, f"error {code}"
    )


def format_matrix(title: str, victim_kind: str, results: dict[Cell, int]) -> str:
    header = ("victim (bound, not listening)", "attacker bind", "attacker option",
              "under Wine", "Microsoft documents", "verdict")
    rows = []
    for cell in cells():
        victim, attacker, option = cell
        code = results.get(cell)
        ms = microsoft(victim_kind, cell)
        if code is None:
            verdict = "not run"
        elif code == 0 and is_hijack(cell):
            verdict = "HIJACKED"
        elif code == 0:
            verdict = "allowed (not a hijack)"
        else:
            verdict = "refused"
        rows.append((f"{victim}:P", f"{attacker}:P ({describe_cell(victim, attacker)})", option,
                     code_name(code) if code is not None else "-", ms, verdict))
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def fmt(r: tuple[str, ...]) -> str:
        return "| " + " | ".join(str(v).ljust(w) for v, w in zip(r, widths)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([title, "", fmt(header), sep, *map(fmt, rows)])


# ---------------------------------------------------------------------------------------
# Command line


def main(argv: list[str]) -> int:
    what = argv[1] if len(argv) > 1 else "matrix"
    if what not in ("matrix", "selftest"):
        print(__doc__)
        return 2
    reason = missing_windows_tools()
    with tempfile.TemporaryDirectory(prefix="twisted-patch-cbuild-") as tmp:
        out = Path(tmp)
        if what == "selftest":
            native = build(out, windows=False)
            print(f"== native ({native_cc()})")
            rc = subprocess.run([str(native), "selftest"]).returncode
            if reason:
                print(f"== Windows build skipped: {reason}")
                return rc
        if reason:
            print(f"cannot run the Windows matrix: {reason}")
            return 1
        exe = build(out, windows=True)
        session = WineSession.start()
        try:
            print(f"(Wine prefix initialised in {session.init_seconds:.1f} s)")
            if what == "selftest":
                print("== Windows build under Wine")
                proc = session.run(exe, "selftest")
                print(proc.stdout, end="")
                return rc or proc.returncode
            core = run_matrix(session, exe, "core")
            plain = run_matrix(session, exe, "plain")
        finally:
            left = session.stop()
            if left:
                print(f"WARNING: wine processes left: {left}")
    print(format_matrix("Victim = twisted-patch core socket (SO_EXCLUSIVEADDRUSE), under Wine",
                        "core", core))
    print()
    print(format_matrix("Control: victim = plain socket, no option (Twisted on Windows today), "
                        "under Wine", "plain", plain))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
