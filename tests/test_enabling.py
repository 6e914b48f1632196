"""The ways to turn twisted-patch on (issue 5): reactor plugins, install(), their options.

Anything that installs a reactor or patches Twisted runs in a fresh
interpreter (a subprocess ended by its pid), so that this process's reactor
and Twisted's classes are never changed behind the other tests' backs.
"""

from __future__ import annotations

import errno
import json
import socket
import sys
import textwrap
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.enabling import (
    Processes,
    fd_flags,
    free_loopback_port,
    listening_inodes,
    run_python,
    socket_fds_of,
    summary,
    tool,
    try_reuseport_bind,
)

LINUX = sys.platform.startswith("linux")


@pytest.fixture
def processes() -> Iterator[Processes]:
    procs = Processes()
    yield procs
    procs.stop_all()




# --- the plugin module ------------------------------------------------------------------


def test_plugin_module_and_plugin_scan_never_import_reactor_or_core(tmp_path: Path) -> None:
    code = textwrap.dedent(
        """
        import sys
        import twisted.plugins.twisted_patch_plugins as m
        bad = [n for n in ("twisted.internet.reactor", "twisted_patch._native",
                           "twisted_patch.reactor", "twisted_patch.port") if n in sys.modules]
        assert not bad, ("plugin module import loaded", bad)
        # Other packages' plugin files may import the reactor (txtorcon's does, and
        # Tahoe-LAFS brings txtorcon): blame the plugin file on the stack, not the scan.
        import importlib.abc, os, traceback
        blamed = []
        class Watch(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name == "twisted.internet.reactor":
                    files = [f.filename.replace(os.sep, "/") for f in traceback.extract_stack()]
                    plugins = [f for f in files if "/twisted/plugins/" in f]
                    blamed.append(plugins[-1] if plugins else "(not a plugin file)")
                return None
        sys.meta_path.insert(0, Watch())
        from twisted.plugin import getPlugins
        from twisted.application.reactors import IReactorInstaller
        from twisted.internet.interfaces import IStreamServerEndpointStringParser
        names = sorted(r.shortName for r in getPlugins(IReactorInstaller))
        prefixes = sorted(p.prefix for p in getPlugins(IStreamServerEndpointStringParser))
        bad = [n for n in ("twisted_patch._native",) if n in sys.modules]
        bad += [f for f in blamed if "twisted_patch" in f or not f.endswith(".py")]
        assert not bad, ("plugin scan loaded", bad)
        print(names, prefixes, m.exclusive.moduleName, m.exclusive_iocp.moduleName)
        """
    )
    result = run_python(code, tmp_path)
    assert result.returncode == 0, summary(result)
    assert "'exclusive'" in result.stdout and "'exclusive-iocp'" in result.stdout
    assert "'xtcp'" in result.stdout
    assert "twisted_patch.reactor twisted_patch.iocpreactor" in result.stdout


def test_help_reactors_lists_exclusive(tmp_path: Path) -> None:
    import subprocess

    out = subprocess.run([tool("twistd"), "--help-reactors"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    usable = [line for line in lines if line.strip().startswith("exclusive")]
    assert usable and "every listenTCP made exclusive" in usable[0], out.stdout
    iocp = [line for line in lines if "exclusive-iocp" in line]
    assert len(iocp) == 1, out.stdout
    if sys.platform != "win32":
        # Listed among the reactors not available on this platform, with the reason.
        assert iocp[0].strip().startswith("!exclusive-iocp"), out.stdout


# --- twistd --reactor=exclusive, for real -------------------------------------------------


@pytest.mark.skipif(not LINUX, reason="reads /proc to inspect the server's socket from outside")
def test_twistd_web_with_exclusive_reactor(tmp_path: Path, processes: Processes) -> None:
    docroot = tmp_path / "docroot"
    docroot.mkdir()
    (docroot / "hello.txt").write_text("served by twistd --reactor=exclusive\n")
    port = free_loopback_port()
    cmd = [tool("twistd"), "--reactor=exclusive", "-n", "--pidfile=", "--logfile=-",
           "web", "--listen", f"tcp:{port}:interface=127.0.0.1", "--path", str(docroot)]
    server = processes.start(cmd, tmp_path)
    server.wait_for_line("installed the exclusive reactor")
    core_line = server.wait_for_line("twisted-patch: exclusive listener on")
    assert core_line.rstrip().endswith(f"127.0.0.1:{port}"), core_line
    server.wait_for_line(f"Site starting on {port}")

    # It serves.
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/hello.txt", timeout=30) as r:
        assert r.read() == b"served by twistd --reactor=exclusive\n"

    # From outside: the listening socket on 127.0.0.1:port is held by that pid,
    # non-inheritable and non-blocking (set atomically by the core).
    listeners = listening_inodes(port)
    assert list(listeners.values()) == [f"0100007F:{port:04X}"], listeners
    (inode,) = listeners
    fds = socket_fds_of(server.pid)
    assert inode in fds, "the twistd process does not hold the listening socket"
    flags = fd_flags(server.pid, fds[inode])
    assert flags & 0o2000000, f"listening fd is inheritable (flags {flags:o})"
    assert flags & 0o4000, f"listening fd is blocking (flags {flags:o})"

    # SO_REUSEPORT is off: a same-user attacker's SO_REUSEPORT bind is refused ...
    err = try_reuseport_bind("127.0.0.1", port)
    assert err is not None and err.errno == errno.EADDRINUSE, err
    # ... and the check can fail: against a listener that set SO_REUSEPORT it succeeds.
    victim = socket.socket()
    try:
        victim.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        victim.bind(("127.0.0.1", 0))
        victim.listen(5)
        assert try_reuseport_bind("127.0.0.1", victim.getsockname()[1]) is None
    finally:
        victim.close()

    # A second server on the same port fails loudly with the core's message.
    second = processes.start(cmd, tmp_path)
    assert second.wait(timeout=120) != 0
    assert "is already in use" in second.output(), second.output()
    assert "never falls back to another port" in second.output()

    server.stop()
    assert listening_inodes(port) == {}


def test_trial_with_exclusive_reactor(tmp_path: Path) -> None:
    import subprocess

    test_file = tmp_path / "test_uses_exclusive.py"
    test_file.write_text(textwrap.dedent(
        """
        from twisted.internet import reactor
        from twisted.internet.protocol import Factory, Protocol
        from twisted.trial.unittest import TestCase
        from twisted_patch.port import ExclusivePort

        class T(TestCase):
            def test_reactor_is_exclusive(self):
                self.assertTrue(type(reactor).__name__.startswith("Exclusive"), type(reactor))
                port = reactor.listenTCP(0, Factory.forProtocol(Protocol), interface="127.0.0.1")
                self.assertIsInstance(port, ExclusivePort)
                return port.stopListening()
        """
    ))
    out = subprocess.run([tool("trial"), "--reactor=exclusive", str(test_file)],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "PASSED (successes=1)" in out.stdout, out.stdout
    # The same test fails under the default reactor: it does check something.
    out = subprocess.run([tool("trial"), str(test_file)],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode != 0 and "FAILED" in out.stdout, out.stdout


def test_exclusive_reactor_options_from_environment(tmp_path: Path) -> None:
    import subprocess

    cmd = [tool("twistd"), "--reactor=exclusive", "--help"]
    # The parsing rules are tested below; here: twistd reports a bad value clearly.
    for value, expected in [
        ("{\"no_such_option\": 1}",
         "unknown option(s) 'no_such_option'; the options a hardened listenTCP accepts are "
         "guard, probe"),
    ]:
        env = dict(__import__("os").environ, TWISTED_PATCH_PORT_OPTIONS=value)
        out = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=120)
        # (twistd before Twisted 23 exits 0 even on a usage error: judge by the message.)
        text = out.stdout + out.stderr
        assert "The specified reactor cannot be used" in text, text
        assert expected in text, (value, text)


def test_exclusive_reactor_install_refused_when_a_reactor_is_installed(tmp_path: Path) -> None:
    code = textwrap.dedent(
        """
        from twisted.internet import reactor
        from twisted.internet.error import ReactorAlreadyInstalledError
        from twisted_patch import reactor as exclusive
        try:
            exclusive.install()
        except ReactorAlreadyInstalledError:
            print("refused")
        """
    )
    result = run_python(code, tmp_path)
    assert result.returncode == 0 and result.stdout.strip() == "refused", summary(result)


def test_default_reactor_class_is_what_twisted_would_install(tmp_path: Path) -> None:
    code = textwrap.dedent(
        """
        from twisted_patch.reactor import default_reactor_class, exclusive_reactor_class
        from twisted.internet import default
        default.install()
        from twisted.internet import reactor
        base = default_reactor_class()
        assert type(reactor) is base, (type(reactor), base)
        cls = exclusive_reactor_class(base)
        assert issubclass(cls, base) and cls is exclusive_reactor_class(base)
        print(base.__name__, cls.__name__)
        """
    )
    result = run_python(code, tmp_path)
    assert result.returncode == 0, summary(result)
    if LINUX:
        assert result.stdout.split() == ["EPollReactor", "ExclusiveEPollReactor"]


# --- twisted_patch.install() / uninstall() -------------------------------------------------

_INSTALL_SCRIPT = textwrap.dedent(
    """
    import json, socket, sys
    from twisted.logger import globalLogPublisher
    events = []
    def observe(e):
        if "twisted-patch: " in (e.get("log_format") or ""):
            events.append(e["log_format"].split(":", 1)[1].split(":")[0].strip())
    globalLogPublisher.addObserver(observe)

    if sys.argv[1] == "reactor-first":
        from twisted.internet import reactor
    import twisted_patch
    from twisted.internet import tcp
    from twisted.internet.error import CannotListenError
    from twisted.internet.posixbase import PosixReactorBase
    from twisted.internet.protocol import Factory, Protocol
    original = PosixReactorBase.__dict__["listenTCP"]
    out = {}
    twisted_patch.install()
    twisted_patch.install()  # idempotent: no second patch, no second log line
    if sys.argv[1] == "reactor-later":
        from twisted.internet import selectreactor
        selectreactor.install()
        from twisted.internet import reactor
    out["reactor"] = type(reactor).__name__
    f = Factory.forProtocol(Protocol)
    p = reactor.listenTCP(0, f, interface="127.0.0.1")
    out["type"] = type(p).__name__
    out["installed"] = twisted_patch.installed()
    # A host name, as tcp.Port accepts it for IPv4.
    p2 = reactor.listenTCP(0, f, interface="localhost")
    out["localhost"] = [type(p2).__name__, p2.getHost().host, p2.interface]
    if hasattr(tcp, "makeBinding"):
        try:
            reactor.listenTCP(tcp.makeBinding("127.0.0.1", 0, reusePort=True), f)
            out["reuseport"] = "listened"
        except CannotListenError as e:
            out["reuseport"] = str(e)
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        ipv6 = True
    except OSError:
        ipv6 = False
    if ipv6:
        p6 = reactor.listenTCP(0, f, interface="::1")
        out["v6only_hardened"] = p6.socket.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY)
    twisted_patch.uninstall()
    twisted_patch.uninstall()  # no-op
    out["restored"] = PosixReactorBase.__dict__["listenTCP"] is original
    out["installed_after"] = twisted_patch.installed()
    p3 = reactor.listenTCP(0, f, interface="127.0.0.1")
    out["type_after"] = type(p3).__name__
    out["plain_is_tcp_port"] = type(p3) is tcp.Port
    out["events"] = events
    print(json.dumps(out))
    """
)


@pytest.mark.parametrize("order", ["reactor-first", "reactor-later"])
def test_install_and_uninstall(tmp_path: Path, order: str) -> None:
    script = tmp_path / "install_script.py"
    script.write_text(_INSTALL_SCRIPT)
    import subprocess

    result = subprocess.run([sys.executable, str(script), order], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, summary(result)
    out = json.loads(result.stdout.strip().splitlines()[-1])
    if order == "reactor-later":
        assert out["reactor"] == "SelectReactor"
    assert out["type"] == "DropInExclusivePort"
    assert out["installed"] is True
    assert out["localhost"] == ["DropInExclusivePort", "127.0.0.1", "localhost"]
    if "reuseport" in out:
        assert "SO_REUSEPORT" in out["reuseport"] and "twisted-patch prevents" in out["reuseport"]
    # Restored exactly: the very same function object, and plain tcp.Port again.
    assert out["restored"] is True and out["installed_after"] is False
    assert out["type_after"] == "Port" and out["plain_is_tcp_port"] is True
    if "v6only_hardened" in out:
        # The core sets IPV6_V6ONLY explicitly.
        assert out["v6only_hardened"] == 1
    # The core made each hardened socket (its log line), none after uninstall.
    listens = 3 if "v6only_hardened" in out else 2
    assert out["events"].count("exclusive listener on {address}") == listens, out["events"]
    # Logged once on install (two calls), once on uninstall (two calls).
    assert out["events"].count("install()") == 1, out["events"]
    assert out["events"].count("uninstall()") == 1, out["events"]


def test_install_rejects_unknown_options_without_patching() -> None:
    from twisted.internet.posixbase import PosixReactorBase

    import twisted_patch

    before = PosixReactorBase.__dict__["listenTCP"]
    with pytest.raises(ValueError, match="unknown option.*'guardd'.*accepts are guard, probe"):
        twisted_patch.install(guardd=True)
    assert not twisted_patch.installed()
    assert PosixReactorBase.__dict__["listenTCP"] is before


def test_install_twice_with_other_options_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from twisted.internet.posixbase import PosixReactorBase

    import twisted_patch

    monkeypatch.delenv("TWISTED_PATCH_PORT_OPTIONS", raising=False)
    before = PosixReactorBase.__dict__["listenTCP"]
    try:
        twisted_patch.install(guard="no")
        twisted_patch.install(guard="no")
        with pytest.raises(ValueError, match="already called with options"):
            twisted_patch.install(guard="refuse")
        assert PosixReactorBase.__dict__["listenTCP"] is not before
    finally:
        twisted_patch.uninstall()
    assert PosixReactorBase.__dict__["listenTCP"] is before


def test_options_from_environment_parsing() -> None:
    from twisted_patch.port.dropin import OPTIONS_ENVIRONMENT_VARIABLE, options_from_environment

    assert options_from_environment({}) is None
    assert options_from_environment({OPTIONS_ENVIRONMENT_VARIABLE: "  "}) is None
    assert options_from_environment({OPTIONS_ENVIRONMENT_VARIABLE: "{}"}) == {}
    with pytest.raises(ValueError, match="not valid JSON"):
        options_from_environment({OPTIONS_ENVIRONMENT_VARIABLE: "guard=1"})
    with pytest.raises(ValueError, match="must be a JSON object, not list"):
        options_from_environment({OPTIONS_ENVIRONMENT_VARIABLE: "[]"})
    with pytest.raises(ValueError, match="'x'"):
        options_from_environment({OPTIONS_ENVIRONMENT_VARIABLE: '{"x": 1}'})


def test_package_import_is_lazy(tmp_path: Path) -> None:
    code = textwrap.dedent(
        """
        import sys
        import twisted_patch
        assert "twisted_patch._native" not in sys.modules
        assert "twisted.internet.reactor" not in sys.modules
        assert callable(twisted_patch.install) and callable(twisted_patch.uninstall)
        assert twisted_patch.ExclusivePort.__name__ == "ExclusivePort"
        assert "twisted.internet.reactor" not in sys.modules
        assert set(twisted_patch.__all__) <= set(dir(twisted_patch))
        try:
            twisted_patch.nope
        except AttributeError as e:
            print("AttributeError", e)
        """
    )
    result = run_python(code, tmp_path)
    assert result.returncode == 0, summary(result)
    assert "has no attribute 'nope'" in result.stdout


def test_why_tahoe_run_cannot_take_reactor_option(tmp_path: Path) -> None:
    """What docs/enabling.rst says: a reactor installed first (tahoe's task.react)
    makes twistd's --reactor=exclusive fail; the endpoint strings are the way."""
    code = textwrap.dedent(
        """
        from twisted.internet import defer, task
        from twisted.python import usage
        from twisted.scripts import twistd

        def main(reactor):
            try:
                twistd.ServerOptions().parseOptions(["--nodaemon", "--reactor=exclusive", "web"])
            except usage.UsageError as e:
                print("refused:", e)
            return defer.succeed(None)

        task.react(main)
        """
    )
    result = run_python(code, tmp_path)
    assert "refused: The specified reactor cannot be used" in result.stdout, summary(result)
    assert "reactor already installed" in result.stdout, summary(result)
