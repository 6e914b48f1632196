"""What a Windows user turns on, in Windows CPython with the installed wheel (make test-windows).

Each test runs the product the way a Windows user would: the IOCP reactor installed in
a fresh Windows Python process, ``twistd --reactor=exclusive`` / ``exclusive-iocp``
serving a page, ``twisted_patch.install()``, the ``twisted-patch`` console script pip
made (``Scripts\\twisted-patch.exe``).  In-process tests use the select reactor (the
default reactor on Windows).  Under Wine (detected through ntdll's ``wine_get_version``)
a listening socket cannot be attacked at all; the attack matrix on bound sockets is
tests/test_windows_matrix.py.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from conftest import say, wait_for
from twisted.internet import endpoints
from twisted.internet.protocol import Factory, Protocol

pytestmark = pytest.mark.skipif(
    sys.platform != "win32",
    reason="Windows CPython only (make test-windows runs it under Wine)",
)

SCRIPTS = Path(sys.executable).parent / "Scripts"


def run_python(code: str, *args: str, timeout: float = 120) -> dict[str, Any]:
    """Run CODE in a new Windows Python process; it prints one JSON object last."""
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args], stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=timeout,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines, proc.stderr
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def free_port(host: str = "127.0.0.1") -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


# --- Wine detection -----------------------------------------------------------------------


def test_wine_detection_is_right() -> None:
    """twisted_patch.cli.attacks.wine_version() against what the harness knows.

    windows/harness.py sets TWISTED_PATCH_WINE_VERSION to the host's ``wine --version``
    when it runs this suite under Wine; on real Windows it is unset and there is no Wine."""
    from twisted_patch.cli.attacks import wine_version

    expected = os.environ.get("TWISTED_PATCH_WINE_VERSION")
    found = wine_version()
    if expected is None:
        assert found is None, f"Wine {found} detected, but the harness did not say Wine"
    else:
        assert found is not None and found in expected, (found, expected)


# --- xtcp on the IOCP reactor, in a process of its own ----------------------------------

IOCP_SERVE = r"""
import json, socket, sys, threading
from twisted.internet import iocpreactor
iocpreactor.install()
from twisted.internet import endpoints, reactor
from twisted.internet.protocol import Factory, Protocol

class Hello(Protocol):
    def connectionMade(self):
        self.transport.write(b"hello from IOCP")
        self.transport.loseConnection()

description = sys.argv[1]
host = sys.argv[2]
result = {"reactor": type(reactor).__name__}

def client(port):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as c:
        c.settimeout(20)
        c.connect((host, port))
        data = b""
        while True:
            chunk = c.recv(100)
            if not chunk:
                break
            data += chunk
    result["received"] = data.decode()
    reactor.callFromThread(reactor.stop)

def listening(port):
    skt = port.socket
    result.update(
        port_class=type(port).__name__,
        exclusiveaddruse=skt.getsockopt(socket.SOL_SOCKET, socket.SO_EXCLUSIVEADDRUSE),
        reuseaddr=skt.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR),
        guard=port.guard_mode,
        sibling=None if port.sibling is None else
            [type(port.sibling).__name__, port.sibling.getHost().host],
        probe=[[a.target, a.options, a.outcome] for a in (port.probe_results or [])],
    )
    threading.Thread(target=client, args=(port.getHost().port,), daemon=True).start()

def failed(f):
    result["error"] = f.getErrorMessage()
    reactor.stop()

endpoints.serverFromString(reactor, description).listen(
    Factory.forProtocol(Hello)).addCallbacks(listening, failed)
reactor.callLater(60, reactor.stop)
reactor.run()
print(json.dumps(result))
"""


@pytest.mark.parametrize(
    ("description", "host"),
    [("xtcp:0:interface=127.0.0.1", "127.0.0.1"), ("xtcp6:0:interface=\\:\\:1", "::1")],
)
def test_iocp_reactor_xtcp_serves_exclusive(description: str, host: str) -> None:
    """The real IOCP reactor (twisted-iocpsupport's compiled module, no stand-in) serves
    xtcp / xtcp6 through IOCPExclusivePort; SO_EXCLUSIVEADDRUSE reads back 1, the guard
    serves the other family's loopback, the self-probe ran and found nothing fatal."""
    got = run_python(IOCP_SERVE, description, host)
    assert "error" not in got, got["error"]
    assert got["reactor"] == "IOCPReactor"
    assert got["port_class"] == "IOCPExclusivePort"
    assert (got["exclusiveaddruse"], got["reuseaddr"]) == (1, 0)
    assert got["received"] == "hello from IOCP"
    assert got["guard"] == "serve"
    assert got["sibling"] == ["IOCPExclusivePort", "::1" if host == "127.0.0.1" else "127.0.0.1"]
    assert got["probe"], "the self-probe did not run"


# --- xtcp on the select reactor, in this process --------------------------------------------


class Hello(Protocol):
    def connectionMade(self) -> None:
        self.transport.write(b"hello")
        self.transport.loseConnection()


def test_select_reactor_xtcp_guard_and_probe(reactor: Any, ports: list[Any]) -> None:
    """This process's reactor (select, Windows' default): guard served, probe run."""
    port = wait_for(endpoints.serverFromString(reactor, "xtcp:0:interface=127.0.0.1").listen(
        Factory.forProtocol(Hello)))
    ports.append(port)
    assert type(reactor).__name__ == "SelectReactor"
    assert type(port).__name__ == "ExclusivePort"
    skt = port.socket
    assert skt.getsockopt(socket.SOL_SOCKET, socket.SO_EXCLUSIVEADDRUSE) == 1
    assert skt.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) == 0
    assert port.guard_mode == "serve" and port.sibling is not None
    assert port.sibling.getHost().host == "::1"
    assert port.probe_results


# --- twistd with the reactor plugins -------------------------------------------------------

TWISTD = "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()"


@pytest.mark.parametrize(("plugin", "reactor_class"),
                         [("exclusive", "reactor.ExclusiveSelectReactor"),
                          ("exclusive-iocp", "iocpreactor.ExclusiveIOCPReactor")])
def test_twistd_reactor_plugin_serves_a_page(tmp_path: Path, plugin: str,
                                             reactor_class: str) -> None:
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "index.html").write_text("served exclusively")
    log = tmp_path / "twistd.log"
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", TWISTD, f"--reactor={plugin}", f"--logfile={log}", "web",
         "--listen", f"tcp:{port}:interface=127.0.0.1", "--path", str(tmp_path / "www")],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        page = None
        deadline = time.monotonic() + 90
        while page is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                    page = r.read().decode()
            except OSError:
                time.sleep(0.5)
        text = log.read_text(errors="replace") if log.exists() else ""
        assert page == "served exclusively", (proc.poll(), text[-3000:])
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    # plain "tcp:" under the exclusive reactor plugin: listenTCP is exclusive
    assert f"reactor class: twisted_patch.{reactor_class}." in text, text
    assert "twisted-patch: exclusive listener on 127.0.0.1:" in text, text[-3000:]


# --- twisted_patch.install() ----------------------------------------------------------------

INSTALL = r"""
import json, socket
import twisted_patch
twisted_patch.install()
from twisted.internet import reactor
from twisted.internet.protocol import Factory, Protocol
port = reactor.listenTCP(0, Factory.forProtocol(Protocol), interface="127.0.0.1")
skt = port.socket
print(json.dumps({
    "installed": twisted_patch.installed(), "class": type(port).__name__,
    "exclusiveaddruse": skt.getsockopt(socket.SOL_SOCKET, socket.SO_EXCLUSIVEADDRUSE)}))
port.stopListening()
"""


def test_install_makes_listen_tcp_exclusive() -> None:
    got = run_python(INSTALL)
    assert got["installed"] is True
    assert "Exclusive" in got["class"], got
    assert got["exclusiveaddruse"] == 1


# --- the console script ----------------------------------------------------------------------


def console(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    exe = SCRIPTS / "twisted-patch.exe"
    assert exe.exists(), f"pip made no console script {exe}"
    return subprocess.run([str(exe), *args], stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=timeout)


def test_console_who_and_verify(reactor: Any, ports: list[Any]) -> None:
    """who lists our listener; verify cannot confirm the owner where the OS names none
    (Wine's table says pid 0 for every listener) and then fails closed, exit 1."""
    from twisted_patch.cli.attacks import wine_version

    port = wait_for(endpoints.serverFromString(reactor, "xtcp:0:interface=127.0.0.1").listen(
        Factory.forProtocol(Hello)))
    ports.append(port)
    real = port.getHost().port
    who = console("who", f"127.0.0.1:{real}", "--json")
    assert who.returncode == 0, who.stdout + who.stderr
    found = json.loads(who.stdout)
    assert [(item["host"], item["port"]) for item in found] == [("127.0.0.1", real)]
    verify = console("verify", f"127.0.0.1:{real}", "--pid", str(os.getpid()))
    if wine_version() is not None:
        assert found[0]["pids"] == [], "under Wine the table names no owner (pid 0)"
        assert verify.returncode == 1, verify.stdout + verify.stderr
        assert "cannot see" in verify.stdout + verify.stderr
    else:
        assert found[0]["pids"] == [os.getpid()]
        assert verify.returncode == 0, verify.stdout + verify.stderr


def test_console_plugin_cache() -> None:
    out = console("plugin-cache")
    assert out.returncode == 0, out.stdout + out.stderr
    import twisted.plugins

    caches = [Path(p) / "dropin.cache" for p in twisted.plugins.__path__]
    assert any(c.exists() for c in caches), caches


AFD_KEY = r"SYSTEM\CurrentControlSet\Services\Afd\Parameters"


def test_console_probe_tells_the_truth_and_reads_afd(request: pytest.FixtureRequest) -> None:
    """Under Wine the probe table says attacks on a listening server are not shown (not
    "refused"); it reports the AFD DisableAddressSharing value, set here in the Wine
    prefix's registry (never on a real Windows machine), and leaves it as it was."""
    import winreg

    from twisted_patch.cli.attacks import afd_address_sharing, wine_version

    version = wine_version()
    if version is None:
        pytest.skip("not under Wine: this test would change the machine's AFD settings")
    assert afd_address_sharing() == (None, (
        f"HKLM\\{AFD_KEY}\\DisableAddressSharing is not set (Windows' default 0: processes "
        f"may share addresses)"))
    with winreg.CreateKeyEx(winreg.HKEY_LOCAL_MACHINE, AFD_KEY, 0, winreg.KEY_SET_VALUE) as key:
        winreg.SetValueEx(key, "DisableAddressSharing", 0, winreg.REG_DWORD, 1)
    try:
        assert afd_address_sharing() is not None and afd_address_sharing()[0] == 1  # type: ignore[index]
        out = console("probe")
    finally:
        with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, AFD_KEY, 0, winreg.KEY_SET_VALUE) as key:
            winreg.DeleteValue(key, "DisableAddressSharing")
    say(request, out.stdout)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "not shown under Wine" in out.stdout
    assert f"under Wine {version} the Linux kernel holds every socket" in out.stdout
    rows = [line for line in out.stdout.splitlines() if line.startswith(("bind ", "IPv6 "))]
    for line in rows:
        # "refused" only where the control shows the attack works under Wine
        if "refused" in line:
            assert "HIJACKED" in line, line
    shadow = next(line for line in rows if line.startswith("IPv6 shadow: bind [::1]:P"))
    assert "HIJACKED (got the client)" in shadow and "refused" in shadow, shadow
    assert "DisableAddressSharing = 1: Windows refuses address sharing" in out.stdout
    assert afd_address_sharing() is not None and afd_address_sharing()[0] is None  # type: ignore[index]
