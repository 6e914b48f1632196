"""twisted-patch: Twisted TCP listening ports that no other local process can
take over, shadow or silently pre-claim.

The exclusive-bind logic is the C core (``twisted_patch._native``); this
package wires it into Twisted:

- endpoint strings ``xtcp:PORT:interface=ADDR`` and ``xtcp6:PORT`` (Tahoe's
  ``web.port`` / ``tub.port``, Foolscap's ``Tub.listenOn``, ``serverFromString``);
- the reactor plugins ``exclusive`` / ``exclusive-iocp``
  (``twistd --reactor=exclusive``);
- :func:`install` / :func:`uninstall`: every ``listenTCP`` in the process;
- :class:`ExclusivePort`, :class:`ExclusiveTCPServerEndpoint` and
  :func:`listen_exclusive` for library code;
- :func:`who` and :func:`verify`: which processes listen on a port, and
  whether they are the ones expected (``twisted-patch who`` / ``verify``).

Importing the package is light: the names below are loaded on first use, so
that Twisted's plugin scan (which imports ``twisted_patch._plugins``) never
loads the C extension or the reactor.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from twisted_patch.endpoint import ExclusiveTCPServerEndpoint, listen_exclusive
    from twisted_patch.errors import ExclusiveListenError
    from twisted_patch.owner import Listener, OwnerLookupError, VerifyResult, verify, who
    from twisted_patch.patch import install, installed, uninstall
    from twisted_patch.port import ExclusivePort
    from twisted_patch.systemd import ExclusiveSystemdServerEndpoint

__version__ = "0.1.0"

# public name -> module that defines it (imported on first attribute access)
_LAZY = {
    "ExclusiveListenError": "twisted_patch.errors",
    "ExclusivePort": "twisted_patch.port",
    "ExclusiveSystemdServerEndpoint": "twisted_patch.systemd",
    "ExclusiveTCPServerEndpoint": "twisted_patch.endpoint",
    "Listener": "twisted_patch.owner",
    "OwnerLookupError": "twisted_patch.owner",
    "VerifyResult": "twisted_patch.owner",
    "install": "twisted_patch.patch",
    "installed": "twisted_patch.patch",
    "listen_exclusive": "twisted_patch.endpoint",
    "uninstall": "twisted_patch.patch",
    "verify": "twisted_patch.owner",
    "who": "twisted_patch.owner",
}

__all__ = [
    "ExclusiveListenError",
    "ExclusivePort",
    "ExclusiveSystemdServerEndpoint",
    "ExclusiveTCPServerEndpoint",
    "Listener",
    "OwnerLookupError",
    "VerifyResult",
    "__version__",
    "install",
    "installed",
    "listen_exclusive",
    "uninstall",
    "verify",
    "who",
]


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'twisted_patch' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
