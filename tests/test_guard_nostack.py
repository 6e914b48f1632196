"""A host without one address family: the guard logs it and the listen goes on.

Runs in a network namespace of its own (unshare -n, root only) where ::1 (or
127.0.0.1) is removed from the loopback interface.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

SCRIPT = r"""
import json, sys
from twisted.internet import reactor
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import globalLogPublisher
from twisted_patch import listen_exclusive
from twisted_patch import _sockets
from twisted_patch.port import guards as port_module
events = []
globalLogPublisher.addObserver(events.append)
p = listen_exclusive(0, Factory.forProtocol(Protocol), interface=sys.argv[1], reactor=reactor)
nostack = [e for e in events if "no guard for" in e.get("log_format", "")]
outcomes = sorted({(a.target, a.outcome) for a in p.probe_results
                   if a.target in ("sibling", "sibling-other")})
print(json.dumps({
    "listening": p.connected,
    "guards": len(port_module.guard_sockets()),
    "event": {k: nostack[0][k] for k in ("sibling", "errno", "stage", "family_name")}
    if nostack else None,
    "level": nostack[0]["log_level"].name if nostack else None,
    "sibling_outcomes": outcomes,
    "reported": any("absent" in str(e.get("guard")) and "attacks" in e for e in events),
}))
"""

SETUP = {
    "127.0.0.1": "ip link set lo up && sysctl -qw net.ipv6.conf.lo.disable_ipv6=1",
    "::1": "ip link set lo up && ip addr del 127.0.0.1/8 dev lo",
}


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create a network namespace")
@pytest.mark.skipif(shutil.which("unshare") is None, reason="unshare (util-linux) missing")
@pytest.mark.parametrize("ours,family_name", [("127.0.0.1", "IPv6"), ("::1", "IPv4")])
def test_missing_family_is_logged_not_fatal(ours: str, family_name: str) -> None:
    cmd = f'{SETUP[ours]} && exec "$0" -c "$1" "$2"'
    proc = subprocess.run(
        ["unshare", "-n", "sh", "-c", cmd, sys.executable, SCRIPT, ours],
        capture_output=True, text=True, cwd="/", check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["listening"] is True and out["guards"] == 0
    assert out["level"] == "warn"
    assert out["event"]["family_name"] == family_name
    assert out["event"]["errno"] == 99  # EADDRNOTAVAIL
    assert out["event"]["stage"] == "bind"
    # the sibling address itself cannot be bound by anyone here; binds of that
    # family's other addresses (its wildcard) are logged, not fatal
    assert ["sibling", "unavailable"] in out["sibling_outcomes"]
    assert ["sibling", "bound"] not in out["sibling_outcomes"]
    assert out["reported"] is True
