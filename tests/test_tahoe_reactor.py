"""Tahoe-LAFS through the reactor plugin: ``python -m twisted_patch.tahoe run NODEDIR``.

One node made by plain ``tahoe create-node`` (its default ``tcp:`` strings:
``web.port = tcp:W:interface=127.0.0.1``, ``tub.port = tcp:Q`` on all
interfaces; plus ``[sftpd]port = tcp:S:interface=127.0.0.1``), no introducer.
tahoe.cfg is never changed between the runs.  Started by the launcher, every
listener of the node comes from the C core (the ``exclusive`` reactor for
``listenTCP``, the adopted core socket for the log Tub), [::1] is guarded and
the attacks are refused; started by plain ``tahoe run`` (the control) the IPv6
shadows hijack it.
"""

from __future__ import annotations

import hashlib
import re
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from support.tahoe_grid import require_tahoe

pytestmark = [
    pytest.mark.tahoe,
    pytest.mark.skipif(
        not sys.platform.startswith("linux"),
        reason="reads listeners with ss and /proc (Linux)",
    ),
]

require_tahoe()

from support.tahoe_grid import (  # noqa: E402
    Node,
    enable_sftpd,
    exclusive_listener_lines,
    free_port,
    has_ipv6,
    listeners_of,
    logport,
    remove_tree,
    run_tahoe,
    set_config,
    stop_all,
)

from twisted_patch.cli.attacks import Attack, run_attack, standard_attacks  # noqa: E402

LAUNCHER = [sys.executable, "-I", "-m", "twisted_patch.tahoe"]
CLI = [str(Path(sys.executable).with_name("twisted-patch")), "tahoe"]


def _attacks(*keys: str) -> list[Attack]:
    by_key = {a.key: a for a in standard_attacks()}
    return [by_key[k] for k in keys if k in by_key]


def _reuse(attacks: list[Attack]) -> list[Attack]:
    # SO_REUSEADDR on the attacker: a TIME_WAIT left by an earlier hijack must not
    # pass for a refusal (see tests/test_tahoe.py).
    return [replace(a, key=f"{a.key}+reuseaddr", options=tuple(sorted({*a.options, "reuseaddr"})))
            for a in attacks]


LOOPBACK_ATTACKS = _attacks("same-plain", "same-reuseaddr", "same-reuseport",
                            "same-reuseaddr-reuseport", "wildcard-over-specific",
                            "other-uid-same")
SHADOWS = _reuse(_attacks("v6-shadow", "v6-wildcard-shadow", "other-uid-v6-shadow"))
WILDCARD_ATTACKS = _attacks("specific-over-wildcard", "specific-over-wildcard-reuseaddr")
WILDCARD_SHADOW = _reuse(_attacks("v6-over-v4-wildcard"))


@dataclass
class Plain:
    node: Node
    web: int
    tub: int
    sftp: int
    cfg_digest: str

    def unchanged(self) -> bool:
        return hashlib.sha256(self.node.cfg.read_bytes()).hexdigest() == self.cfg_digest

    def start(self, command: list[str] | None) -> Node:
        self.node.stop()
        self.node.start(command=command)
        self.node.wait_for_file("node.url")
        self.node.wait_for_file("private/logport.furl")
        if command is not None:
            # the log Tub's listener is the last one a node starts
            self.node.wait_for_listener(_log_tub(self.node))
        return self.node


def _log_tub(node: Node) -> int:
    port = logport(node)
    assert port is not None
    return port


@pytest.fixture(scope="module")
def plain() -> Iterator[Plain]:
    tmp = Path(tempfile.mkdtemp(prefix="twisted-patch-tahoe-reactor-"))
    node = Node(tmp / "plain", tmp)
    web, sftp = free_port(), free_port()
    try:
        # Plain `tahoe create-node`: its own tub port (tcp:Q, all interfaces); the web
        # port given in the form create-node writes by default (only the number chosen).
        run_tahoe(["create-node", "--hostname=127.0.0.1", "--nickname=plain",
                   f"--webport=tcp:{web}:interface=127.0.0.1", str(node.basedir)], tmp)
        enable_sftpd(node)
        set_config(node.cfg, "sftpd", {"port": f"tcp:{sftp}:interface=127.0.0.1"})
        cfg = node.cfg.read_text()
        assert "xtcp" not in cfg, cfg
        assert f"web.port = tcp:{web}:interface=127.0.0.1" in cfg, cfg
        m = re.search(r"^tub\.port = tcp:(\d+)$", cfg, re.M)
        assert m, cfg
        yield Plain(node, web, int(m.group(1)), sftp, hashlib.sha256(cfg.encode()).hexdigest())
    finally:
        stop_all([node])
        remove_tree(tmp)


@pytest.fixture(scope="module")
def launched(plain: Plain) -> Plain:
    plain.start(LAUNCHER)
    return plain


def _expected(p: Plain, node: Node) -> dict[tuple[str, int], str]:
    log_tub = _log_tub(node)
    expected = {
        ("127.0.0.1", p.web): "web.port",
        ("0.0.0.0", p.tub): "tub.port",
        ("127.0.0.1", p.sftp): "[sftpd]port",
        ("127.0.0.1", log_tub): "the log Tub",
    }
    if has_ipv6():
        # guard=serve on the loopback listeners; the wildcard's [::] guard (refuse)
        # is bound, never listening, so ss -l does not list it
        expected |= {("::1", p.web): "guard", ("::1", p.sftp): "guard",
                     ("::1", log_tub): "guard"}
    return expected


def test_every_listener_is_made_by_the_core(launched: Plain) -> None:
    node = launched.node
    assert node.running()
    out = node.stdout()
    assert "reactor class: twisted_patch.reactor.ExclusiveEPollReactor" in out, out
    seen = {(item.host, item.port) for item in listeners_of(node.pid)}
    expected = _expected(launched, node)
    assert seen == set(expected), (seen, expected)
    made = exclusive_listener_lines(out)
    for (host, port), what in expected.items():
        if what != "guard":
            address = f"{host}:{port}"
            assert address in made, (what, address, made)
    assert launched.unchanged()  # tahoe.cfg as `tahoe create-node` wrote it


def test_node_serves_through_the_hardened_web_port(launched: Plain) -> None:
    status = launched.node.status()
    assert "introducer" in status or "servers" in status, status


@pytest.mark.parametrize("attack", LOOPBACK_ATTACKS + SHADOWS, ids=lambda a: a.key)
def test_loopback_attacks_are_refused(launched: Plain, attack: Attack) -> None:
    node = launched.node
    for port in (launched.web, launched.sftp, _log_tub(node)):
        outcome = run_attack(attack, port)
        if outcome.result == "n/a":
            pytest.skip(outcome.text)
        assert outcome.result == "refused", (port, outcome.text)
    assert node.running()


@pytest.mark.parametrize("attack", WILDCARD_ATTACKS + WILDCARD_SHADOW, ids=lambda a: a.key)
def test_wildcard_tub_port_attacks_are_refused(launched: Plain, attack: Attack) -> None:
    outcome = run_attack(attack, launched.tub)
    if outcome.result == "n/a":
        pytest.skip(outcome.text)
    assert outcome.result == "refused", outcome.text


def test_cli_subcommand_is_the_same_launcher(plain: Plain) -> None:
    """``twisted-patch tahoe run NODEDIR``: the same node, the same hardened listeners."""
    node = plain.start(CLI)
    seen = {(item.host, item.port) for item in listeners_of(node.pid)}
    assert seen == set(_expected(plain, node)), seen
    assert "twisted_patch.reactor.ExclusiveEPollReactor" in node.stdout()
    assert plain.unchanged()


@pytest.mark.skipif(not has_ipv6(), reason="no IPv6 loopback on this host")
def test_control_plain_tahoe_run_is_shadowed(plain: Plain) -> None:
    """The same node, the same tahoe.cfg, under plain ``tahoe run``: [::1]:W and
    [::]:Q are free, and the IPv6 shadows take them."""
    node = plain.start(None)
    node.wait_for_listener(plain.web)
    assert "twisted_patch" not in node.stdout()
    shadow = run_attack(SHADOWS[0], plain.web)
    assert shadow.result == "hijacked", shadow.text
    wildcard = run_attack(WILDCARD_SHADOW[0], plain.tub)
    assert wildcard.result == "hijacked", wildcard.text
    assert plain.unchanged()
    node.stop()
