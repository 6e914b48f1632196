"""A real Foolscap Tub listening on xtcp, called by a second Tub."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import wait_for

foolscap = pytest.importorskip("foolscap")
from foolscap.api import Referenceable, Tub  # noqa: E402
from twisted.internet import defer  # noqa: E402

from twisted_patch import ExclusivePort  # noqa: E402


class Adder(Referenceable):  # type: ignore[misc]
    def remote_add(self, a: int, b: int) -> int:
        return a + b


def test_tub_listens_on_xtcp_and_serves_calls(reactor: Any) -> None:
    server = Tub()
    server.startService()
    client = Tub()
    client.startService()
    try:
        listener = server.listenOn("xtcp:0:interface=127.0.0.1")
        wait_for(defer.succeed(None))
        assert isinstance(listener._lp, ExclusivePort)
        port = listener._lp.getHost().port
        server.setLocation(f"127.0.0.1:{port}")
        furl = server.registerReference(Adder(), "adder")
        ref = wait_for(client.getReference(furl))
        assert wait_for(ref.callRemote("add", 2, 40)) == 42
    finally:
        wait_for(defer.maybeDeferred(client.stopService))
        wait_for(defer.maybeDeferred(server.stopService))
