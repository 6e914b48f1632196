"""Foolscap: listen on a Tub and *hear* whether it worked.

``Tub.listenOn(...)`` returns a Foolscap ``Listener`` at once; the real
listen happens later (when the Tub's service starts) through
``endpoint.listen(...)``, and Foolscap adds no errback to that Deferred.  A
port that is already taken therefore leaves the Tub running without it and
publishing FURLs that point at whoever holds the port.

:func:`listen_on` is ``Tub.listenOn`` with the outcome given back::

    from twisted_patch.tub import listen_on

    d = listen_on(tub, "xtcp:34567:interface=127.0.0.1")
    d.addCallback(lambda port: tub.setLocation(f"tcp:127.0.0.1:{port.getHost().port}"))
    d.addErrback(give_up)          # CannotListenError: "... already in use by pid ..."

The Deferred fires with the listening port (``IListeningPort``; its
``factory`` is the Foolscap ``Listener``, for ``tub.stopListeningOn``) or
fails with the listen failure.  Foolscap itself is never handed the failure,
so it cannot end up as an "Unhandled error in Deferred".  If the Tub is not
running yet, the Deferred fires when it starts.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IStreamServerEndpoint
from twisted.python.failure import Failure
from zope.interface import implementer


@implementer(IStreamServerEndpoint)
class ReportingEndpoint:
    """Wraps an endpoint: Foolscap sees only successes, ``result`` sees everything."""

    def __init__(self, inner: Any, result: defer.Deferred[IListeningPort]) -> None:
        self._inner = inner
        self.result = result

    def listen(self, protocolFactory: IProtocolFactory) -> defer.Deferred[IListeningPort]:
        to_foolscap: defer.Deferred[IListeningPort] = defer.Deferred()
        inner: defer.Deferred[IListeningPort] = defer.maybeDeferred(
            self._inner.listen, protocolFactory
        )

        def listening(port: IListeningPort) -> None:
            to_foolscap.callback(port)  # Foolscap records the port first
            if not self.result.called:
                self.result.callback(port)

        def failed(failure: Failure) -> None:
            # Foolscap's Deferred never fires: its Listener stays without a port
            # (stopService copes with that), and the failure goes to our caller.
            if not self.result.called:
                self.result.errback(failure)

        inner.addCallbacks(listening, failed)
        return to_foolscap

    def __repr__(self) -> str:
        return f"<ReportingEndpoint {self._inner!r}>"


def listen_on(tub: Any, what: Any, reactor: Any | None = None) -> defer.Deferred[IListeningPort]:
    """``tub.listenOn(what)`` whose outcome is a Deferred: the port, or the failure.

    ``what`` is an endpoint description (``"xtcp:PORT:interface=ADDR"``) or an
    ``IStreamServerEndpoint``.  A bad description raises ``ValueError`` here,
    as ``Tub.listenOn`` does.
    """
    if isinstance(what, str):
        from twisted.internet.endpoints import serverFromString

        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        endpoint = serverFromString(reactor, what)
    elif IStreamServerEndpoint.providedBy(what):
        endpoint = what
    else:
        raise TypeError(f"listen_on needs an endpoint description or endpoint, not {what!r}")
    result: defer.Deferred[IListeningPort] = defer.Deferred()
    tub.listenOn(ReportingEndpoint(endpoint, result))
    return result
