"""Local attacks, run from another process, against plain Twisted and against xtcp.

Every attack runs against both.  The plain Twisted column is what the OS
already stops (on Linux, most attacks); an attack that hijacks the plain port
but not ours is one that only twisted-patch stops -- and proves the test can fail.
"""

from __future__ import annotations

import sys
from typing import Any

import pytest
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import Factory, Protocol

from twisted_patch import listen_exclusive
from twisted_patch.cli.attacks import (
    Attack,
    can_switch_uid,
    has_ipv6_loopback,
    preclaim_listener,
    run_attack,
    standard_attacks,
)

LINUX = sys.platform.startswith("linux")

# What the Linux kernel does to a plain Twisted listener (measured; DESIGN.md §1).
PLAIN_TWISTED_LINUX = {
    "same-plain": "refused",
    "same-reuseaddr": "refused",
    "same-reuseport": "refused",
    "same-reuseaddr-reuseport": "refused",
    "wildcard-over-specific": "refused",
    "v6-shadow": "hijacked",
    "v6-wildcard-shadow": "hijacked",
    "specific-over-wildcard": "refused",
    "specific-over-wildcard-reuseaddr": "refused",
    "v6-over-v4-wildcard": "hijacked",
    "other-uid-same": "refused",
    "other-uid-v6-shadow": "hijacked",
}

def _servers(reactor: Any, kind: str) -> tuple[Any, Any]:
    host = "127.0.0.1" if kind == "loopback" else "0.0.0.0"
    factory = Factory.forProtocol(Protocol)
    plain = reactor.listenTCP(0, factory, interface=host)
    ours = listen_exclusive(0, factory, interface=host, reactor=reactor)
    return plain, ours


def _skip_reason(attack: Attack) -> str | None:
    if attack.other_uid and can_switch_uid() is not None:
        return can_switch_uid()
    if attack.family == 6 and not has_ipv6_loopback():
        return "no IPv6 loopback on this host"
    return None


@pytest.mark.skipif(not LINUX, reason="expected outcomes for plain Twisted are Linux's")
@pytest.mark.parametrize("attack", standard_attacks(), ids=lambda a: a.key)
def test_attack_against_plain_twisted_and_xtcp(
    reactor: Any, ports: list[Any], attack: Attack
) -> None:
    reason = _skip_reason(attack)
    if reason:
        pytest.skip(reason)
    plain, ours = _servers(reactor, attack.server)
    ports.extend([plain, ours])

    plain_outcome = run_attack(attack, plain.getHost().port)
    assert plain_outcome.result == PLAIN_TWISTED_LINUX[attack.key], plain_outcome.text
    if plain_outcome.hijacked:
        # The attacker really received a connection meant for the server.
        assert plain_outcome.detail["accepted"], plain_outcome.detail

    ours_outcome = run_attack(attack, ours.getHost().port)
    assert ours_outcome.result == "refused", ours_outcome.text


def test_preclaimed_port_fails_loudly_and_never_moves(reactor: Any, ports: list[Any]) -> None:
    attacker, port = preclaim_listener("127.0.0.1")
    try:
        factory = Factory.forProtocol(Protocol)
        with pytest.raises(CannotListenError) as ours:
            ports.append(listen_exclusive(port, factory, interface="127.0.0.1", reactor=reactor))
        with pytest.raises(CannotListenError):
            ports.append(reactor.listenTCP(port, factory, interface="127.0.0.1"))
    finally:
        attacker.close()
    message = str(ours.value)
    assert f"127.0.0.1:{port} is already in use" in message
    assert "never falls back to another port" in message
    assert ours.value.socketError.stage == "bind"
    assert not ports  # nothing listened anywhere
