"""twisted-patch: Twisted TCP listening ports that no other local process can
take over, shadow or silently pre-claim.

The exclusive-bind logic is the C core (``twisted_patch._native``); this
package wires it into Twisted:

- endpoint strings ``xtcp:PORT:interface=ADDR`` and ``xtcp6:PORT`` (Tahoe's
  ``web.port`` / ``tub.port``, Foolscap's ``Tub.listenOn``, ``serverFromString``);
- :class:`ExclusivePort`, :class:`ExclusiveTCPServerEndpoint` and
  :func:`listen_exclusive` for library code;
- :func:`who` and :func:`verify`: which processes listen on a port, and
  whether they are the ones expected (``twisted-patch who`` / ``verify``).
"""

from __future__ import annotations

from twisted_patch.endpoint import ExclusiveTCPServerEndpoint, listen_exclusive
from twisted_patch.errors import ExclusiveListenError
from twisted_patch.owner import Listener, OwnerLookupError, VerifyResult, verify, who
from twisted_patch.port import ExclusivePort

__version__ = "0.1.0"

__all__ = [
    "ExclusiveListenError",
    "ExclusivePort",
    "ExclusiveTCPServerEndpoint",
    "Listener",
    "OwnerLookupError",
    "VerifyResult",
    "__version__",
    "listen_exclusive",
    "verify",
    "who",
]
