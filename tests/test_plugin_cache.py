"""Twisted's plugin cache (dropin.cache) after pip install, and ``twisted-patch plugin-cache``.

The real cache next to the installed plugin file is removed (what a fresh
``pip install`` leaves) and the plugins are looked up as a user who cannot
write there; the test then regenerates the cache, so it leaves it as it was
(a valid, up-to-date cache).
"""

from __future__ import annotations

import importlib.util
import os
import pickle
import shlex
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.enabling import run_python, summary

NOBODY = 65534

LOOKUP_AS_SERVICE_USER = textwrap.dedent(
    """
    import sys
    from twisted.logger import globalLogBeginner, textFileLogObserver
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)])
    from twisted.plugin import getPlugins
    from twisted.application.reactors import IReactorInstaller
    print("found:", sorted(r.shortName for r in getPlugins(IReactorInstaller)))
    """
)


def plugin_directory() -> Path:
    spec = importlib.util.find_spec("twisted.plugins.twisted_patch_plugins")
    assert spec is not None and spec.origin, "twisted_patch_plugins.py is not installed"
    return Path(spec.origin).parent


@pytest.fixture
def fresh_install_cache() -> Iterator[Path]:
    """The installed plugin directory with its dropin.cache removed; put back afterwards."""
    cache = plugin_directory() / "dropin.cache"
    saved = cache.read_bytes() if cache.exists() else None
    cache.unlink(missing_ok=True)
    try:
        yield cache
    finally:
        if not cache.exists() and saved is not None:
            cache.write_bytes(saved)


def cli(*args: str, user: int | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "twisted_patch.cli.plugin_cache", *args]
    if user is not None:
        cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd="/")


@pytest.mark.root
@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                    reason="needs root: runs the lookup as uid 65534 through setpriv")
def test_unwritable_cache_still_works_with_a_log_line(fresh_install_cache: Path,
                                                      tmp_path: Path) -> None:
    cache = fresh_install_cache
    os.chmod(tmp_path, 0o755)
    # The venv must be readable by that uid (a checkout in a 0700 folder is not).
    probe = run_python("import twisted_patch", tmp_path, user=NOBODY)
    if probe.returncode != 0:
        pytest.skip(f"uid {NOBODY} cannot run this Python with twisted_patch: "
                    f"{probe.stderr.strip()[-200:]}")
    # A service user cannot write site-packages: the lookup works and says why it is slow.
    result = run_python(LOOKUP_AS_SERVICE_USER, tmp_path, user=NOBODY)
    assert result.returncode == 0, summary(result)
    assert "'exclusive'" in result.stdout, summary(result)
    assert f"Unable to write to plugin cache {cache}: error number 13" in result.stdout, (
        summary(result))
    assert not cache.exists()

    # The CLI as that user: finds our plugins, says the cache is not written, exits 1.
    out = cli(user=NOBODY)
    assert out.returncode == 1, out.stdout + out.stderr
    assert f"{cache}: NOT written (Permission denied)" in out.stdout, out.stdout
    assert "reactor  exclusive " in out.stdout and "endpoint xtcp:" in out.stdout
    assert "endpoint xtcp6:" in out.stdout
    assert not cache.exists()

    # As the owner: written, and it holds our plugin module.
    out = cli()
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"{cache}: written" in out.stdout, out.stdout
    with cache.open("rb") as f:
        assert "twisted_patch_plugins" in pickle.load(f)
    out = cli("--quiet")
    assert out.returncode == 0 and out.stdout == "", out.stdout
    assert f"{cache}: up to date" in cli().stdout

    # Now the service user's lookup is silent and finds the same plugins.
    result = run_python(LOOKUP_AS_SERVICE_USER, tmp_path, user=NOBODY)
    assert result.returncode == 0, summary(result)
    assert "'exclusive'" in result.stdout and "Unable to write" not in result.stdout


def test_documented_one_liner_regenerates_the_cache(fresh_install_cache: Path) -> None:
    from twisted_patch.cli.plugin_cache import REGENERATE_COMMAND

    cache = fresh_install_cache
    argv = shlex.split(REGENERATE_COMMAND)
    assert argv[0] == "python"
    out = subprocess.run([sys.executable, *argv[1:]], capture_output=True, text=True,
                         timeout=120, cwd="/")
    assert out.returncode == 0, out.stderr
    assert cache.exists()
    with cache.open("rb") as f:
        assert "twisted_patch_plugins" in pickle.load(f)


def test_plugin_cache_is_a_subcommand_of_the_cli() -> None:
    from twisted_patch.cli import SUBCOMMANDS

    entries = [s for s in SUBCOMMANDS if s[0] == "plugin-cache"]
    assert entries == [("plugin-cache", "twisted_patch.cli.plugin_cache", entries[0][2])]
    missing = [m for _, m, _ in SUBCOMMANDS if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"other subcommand modules are not on this branch yet: {missing}")
    out = subprocess.run([sys.executable, "-m", "twisted_patch", "plugin-cache"],
                         capture_output=True, text=True, timeout=120, cwd="/")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "reactor  exclusive " in out.stdout
