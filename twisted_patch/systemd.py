"""The ``xsystemd`` server endpoint: a socket-activated listener with xtcp's guarantees.

``xsystemd:domain=INET:name=web`` (or ``index=N``) takes over a listening TCP
socket inherited through systemd's protocol (``LISTEN_PID``, ``LISTEN_FDS``,
``LISTEN_FDNAMES``; systemd's socket units, ``systemd-socket-activate``), as
Twisted's ``systemd:`` does, plus what ``xtcp:`` gives a socket of its own:

- the socket is checked (``_sockets.adopt_inherited``): a TCP stream socket of
  the family ``domain=`` names, bound to a port, listening, no ``SO_REUSEPORT``,
  ``IPV6_V6ONLY`` on ``[::]``; made non-inheritable and non-blocking.  What
  cannot be fixed is a ``CannotListenError`` (errback of ``listen``);
- the other family's address on the same port is guarded (``guard=``, as for
  xtcp); if the supervisor passed a listening socket there too, it is checked
  the same way and served as the sibling (guard=serve), or left to hold the
  address (another guard mode, or another xsystemd endpoint serves it);
- the post-listen owner check (another holder of *this* socket -- the
  supervisor -- is accepted, any other socket on the port is not) and the
  self-probe (``probe=``) run as for xtcp.

The descriptors are the ones Twisted's own ``systemd:`` parser read from the
environment (``twisted.internet.endpoints._SystemdParser._sddaemon``, a
``twisted.python.systemd.ListenFDs``; Twisted removes ``LISTEN_PID`` and
``LISTEN_FDS`` from the environment when it reads them); names come from it
where it has them (Twisted 23+), else from ``LISTEN_FDNAMES``.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IStreamServerEndpoint
from twisted.logger import Logger
from zope.interface import implementer

from twisted_patch import _sockets
from twisted_patch.errors import format_address
from twisted_patch.port import port_class_for
from twisted_patch.port.guards import check_guard, sibling_of
from twisted_patch.port.selfprobe import check_probe

log = Logger()

DOMAINS = {"INET": socket.AF_INET, "INET6": socket.AF_INET6}
_KNOWN = ("domain", "index", "name", "backlog", "guard", "probe")

#: inherited descriptors an xsystemd endpoint of this process has taken over, and by whom
_taken: dict[int, str] = {}


def inherited() -> tuple[list[int], list[str] | None]:
    """The descriptors passed to this process (socket activation) and their names
    (None when the supervisor gave none, or not one per descriptor)."""
    from twisted.internet import endpoints
    from twisted.python.systemd import ListenFDs

    parser = getattr(endpoints, "_SystemdParser", None)
    fds: Any = getattr(parser, "_sddaemon", None)
    if fds is None:  # a Twisted without the systemd: parser: read a copy of the environment
        fds = ListenFDs.fromEnvironment(environ=dict(os.environ))
    descriptors = [int(fd) for fd in fds.inheritedDescriptors()]
    names: list[str] | None
    kept: Any = getattr(fds, "_names", None)  # Twisted 23+: read with the descriptors
    if kept is not None:
        names = [str(n) for n in kept] or None
    else:  # Twisted 22.8: ListenFDs has no names; LISTEN_FDNAMES stays in the environment
        text = os.environ.get("LISTEN_FDNAMES", "")
        names = text.split(":") if text else None
    if names is not None and len(names) != len(descriptors):
        names = None
    return descriptors, names


def _describe(descriptors: Sequence[int], names: Sequence[str] | None) -> str:
    if not descriptors:
        return ("this process inherited no sockets (LISTEN_PID is not this process's pid, "
                "or LISTEN_FDS is missing): start it from a systemd socket unit or "
                "systemd-socket-activate")
    if names is None:
        return f"inherited descriptors {', '.join(map(str, descriptors))} (no names)"
    listed = ", ".join(f"{n}={fd}" for n, fd in zip(names, descriptors))
    return f"inherited {listed}"


def _family_of(fd: int) -> int | None:
    found = _sockets.inspect_fd(fd)
    return None if found is None else found.family


def choose_descriptor(index: object, name: object, family: int) -> tuple[int, str]:
    """The inherited descriptor ``index=`` or ``name=`` names, and how to call it.

    A name given to several sockets (one systemd socket unit with two
    ``ListenStream=`` lines, 127.0.0.1 and [::1]) means the one of ``family``."""
    if (index is None) == (name is None):
        raise ValueError("xsystemd: give exactly one of index= and name=")
    descriptors, names = inherited()
    if index is not None:
        try:
            number = int(str(index), 10)
        except ValueError:
            raise ValueError(f"xsystemd: index={index!r} is not a number") from None
        if not 0 <= number < len(descriptors):
            raise ValueError(
                f"xsystemd: no inherited socket index={number}: "
                f"{_describe(descriptors, names)}"
            )
        return descriptors[number], f"xsystemd index={number}"
    text = str(name)
    if names is None or text not in names:
        raise ValueError(
            f"xsystemd: no inherited socket name={text}: {_describe(descriptors, names)}"
        )
    if names.count(text) > 1:
        ours = [fd for fd, n in zip(descriptors, names) if n == text and _family_of(fd) == family]
        if len(ours) == 1:
            domain = "INET6" if family == socket.AF_INET6 else "INET"
            return ours[0], f"xsystemd name={text} domain={domain}"
        raise ValueError(
            f"xsystemd: name={text} names {names.count(text)} inherited sockets: "
            f"{_describe(descriptors, names)}, {len(ours)} of them of this domain; use "
            f"index= or give them distinct names"
        )
    return descriptors[names.index(text)], f"xsystemd name={text}"


@implementer(IStreamServerEndpoint)
class ExclusiveSystemdServerEndpoint:
    """Listen on an inherited (socket-activated) socket, with xtcp's guarantees.

    ``fd``: the descriptor; ``family``: AF_INET or AF_INET6 (``domain=``);
    ``what``: how messages name it.  ``guard`` and ``probe`` as for xtcp.
    """

    def __init__(
        self,
        reactor: Any,
        fd: int,
        family: int,
        what: str = "inherited socket",
        backlog: int = 50,
        guard: str | None = None,
        probe: str | None = None,
    ) -> None:
        self._reactor = reactor
        self._fd = fd
        self._family = family
        self._what = what
        self._backlog = backlog
        self._guard = check_guard(guard)
        self._probe = None if probe is None else check_probe(probe)
        self._used = False

    def listen(self, protocolFactory: IProtocolFactory) -> defer.Deferred[IListeningPort]:
        if self._used:
            from twisted.internet.error import AlreadyListened

            return defer.fail(AlreadyListened(f"{self._what} is already listening"))
        self._used = True
        d: defer.Deferred[IListeningPort] = defer.execute(self._listen, protocolFactory)
        d.addErrback(self._log_failure)
        return d

    def _listen(self, factory: IProtocolFactory) -> Any:
        if self._fd in _taken:
            raise ValueError(
                f"{self._what}: descriptor {self._fd} was taken over already "
                f"({_taken[self._fd]}); each inherited socket serves one listener"
            )
        _taken[self._fd] = f"by {self._what}"  # for good: served or refused, it is closed
        skt, host, port = _sockets.adopt_inherited(self._fd, self._family, self._what)
        sibling: socket.socket | None = None
        try:
            p = port_class_for(self._reactor)(
                port, factory, self._backlog, host, self._reactor,
                guard=self._guard, probe=self._probe,
            )
            found = _sibling_inherited(self._family, host, port, self._fd)
            if found is not None and found[0] not in _taken and p.guard_mode == "serve":
                # The supervisor passed the other family's address too: serve it as
                # the sibling (what guard=serve does with a socket of its own).
                sib_fd, sib_family = found
                _taken[sib_fd] = (f"served as the sibling of {self._what} (guard=serve; "
                                  f"give it guard=no to serve this socket separately)")
                sibling, _, _ = _sockets.adopt_inherited(
                    sib_fd, sib_family, f"the sibling of {self._what} (descriptor {sib_fd})"
                )
            p.adopt(skt, shared=True, sibling=sibling,
                    sibling_held=found is not None and sibling is None)
        except BaseException:
            skt.close()
            if sibling is not None:
                sibling.close()
            raise
        p.startListening()  # closes skt on failure
        log.info(
            "twisted-patch: {what} on {address} adopted (inherited descriptor {fd})",
            what=self._what,
            address=format_address(host, port),
            fd=self._fd,
        )
        return p

    def _log_failure(self, failure: Any) -> Any:
        log.error(
            "twisted-patch: cannot listen on {what}: {reason}",
            what=self._what,
            reason=str(failure.value),
            fd=self._fd,
        )
        return failure

    def __repr__(self) -> str:
        return (f"<ExclusiveSystemdServerEndpoint {self._what} fd={self._fd} "
                f"guard={self._guard or 'default'} probe={self._probe or 'strict'}>")


def _sibling_inherited(family: int, host: str, port: int, fd: int) -> tuple[int, int] | None:
    """(descriptor, family) of another inherited socket listening on the sibling
    address of host:port, or None."""
    sib = sibling_of(family, host)
    if sib is None:
        return None
    descriptors, _ = inherited()
    for other in descriptors:
        if other == fd:
            continue
        found = _sockets.inspect_fd(other)
        if (found is not None and found.family == sib[0] and found.listening
                and found.address == (sib[1], port)):
            return other, found.family
    return None


def parse_server(reactor: Any, *args: object, **kwargs: object) -> ExclusiveSystemdServerEndpoint:
    """``xsystemd:domain=INET:name=web[:backlog=N][:guard=G][:probe=P]`` (or ``index=N``;
    ``domain`` may also be the first positional field, as for ``systemd:``)."""
    from twisted_patch._address import check_backlog

    unknown = sorted(k for k in kwargs if k not in _KNOWN)
    if unknown:
        raise ValueError(
            f"xsystemd: unknown option {', '.join(map(repr, unknown))}; "
            f"known options are {', '.join(_KNOWN)}"
        )
    fields = dict(kwargs)
    for key, value in zip(("domain", "index", "name"), args):
        if key in fields:
            raise ValueError(f"xsystemd: {key} is given twice")
        fields[key] = value
    if len(args) > 3:
        raise ValueError(f"xsystemd: too many positional fields: {', '.join(map(repr, args))}")
    domain = fields.get("domain")
    if domain is None:
        raise ValueError("xsystemd: no domain given; write xsystemd:domain=INET:name=NAME")
    if domain not in DOMAINS:
        raise ValueError(
            f"xsystemd: domain={domain!r} is not INET or INET6 (xsystemd adopts TCP sockets "
            f"only; Twisted's systemd: takes UNIX sockets)"
        )
    try:
        backlog = check_backlog(fields.get("backlog", 50))
        guard = check_guard(fields["guard"]) if "guard" in fields else None
        probe = check_probe(fields["probe"]) if "probe" in fields else None
    except ValueError as e:
        raise ValueError(f"xsystemd: {e}") from None
    fd, what = choose_descriptor(fields.get("index"), fields.get("name"), DOMAINS[str(domain)])
    return ExclusiveSystemdServerEndpoint(
        reactor, fd, DOMAINS[str(domain)], what, backlog, guard, probe
    )
