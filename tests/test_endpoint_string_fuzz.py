"""Property tests of the ``xtcp:`` / ``xtcp6:`` endpoint-string parser.

For any description string, ``serverFromString`` must either raise ``ValueError``
(naming what is wrong) or return a working ``ExclusiveTCPServerEndpoint``: valid
port, backlog and a numeric interface; on a loopback interface, listening then
either succeeds or fails with ``CannotListenError`` -- never another exception.

Thousands of examples from two strategies: structured descriptions (the fields a
user writes, mixed with hostile values) and arbitrary text after the prefix.

Twisted's own tokenizer (``endpoints._parse``, run before any plugin) raises
RuntimeError on a trailing backslash; the property holds for every string that
tokenizer accepts, and each string it rejects is checked to fail identically
with Twisted's built-in ``tcp:`` type (Twisted's limitation, not this parser's).
(Also Twisted's: a description with no ':' at all, like ``xtcp=``, raises
IndexError in serverFromString, before any plugin is chosen.)
"""

from __future__ import annotations

import ipaddress
import os
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet import endpoints
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure

from twisted_patch import _native
from twisted_patch._plugins import xtcp, xtcp6
from twisted_patch.endpoint import ExclusiveTCPServerEndpoint

# serverFromString scans Twisted's plugins on every call (~5 ms): the full path gets
# a thousand examples per strategy; the plugin's own parser, fed exactly what
# serverFromString would feed it, gets three thousand more.
# TWISTED_PATCH_FUZZ_SCALE=10 (environment) multiplies both for a longer run.
SCALE = max(1, int(os.environ.get("TWISTED_PATCH_FUZZ_SCALE", "1") or "1"))
FULL_EXAMPLES = 1000 * SCALE
PARSER_EXAMPLES = 3000 * SCALE


def examples(n: int) -> settings:
    return settings(max_examples=n, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def escape(text: str) -> str:
    """Twisted's escaping of ':' '=' and '\\' inside a field."""
    return text.replace("\\", "\\\\").replace(":", "\\:").replace("=", "\\=")


# Built from integers: much cheaper to generate than st.ip_addresses().
octet = st.integers(0, 255)
ipv4 = st.tuples(octet, octet, octet, octet).map(lambda t: ".".join(map(str, t)))
ipv6 = st.tuples(*[st.integers(0, 0xFFFF)] * 8).map(
    lambda t: str(ipaddress.IPv6Address(":".join(f"{x:x}" for x in t))))
loopback = st.sampled_from(["127.0.0.1", "::1", "127.3.4.5"])
numbers = st.one_of(
    st.integers(min_value=-10, max_value=70000),
    st.integers(),
    st.sampled_from([0, 1, 80, 443, 1023, 1024, 3456, 65535, 65536, 2**31, 2**63]),
).map(str)
hostile = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["", " ", "localhost", "[::1]", "::1%lo", "fe80::1%1", "127.1", "0x7f.1",
                     "1.2.3.4.5", "١٢٣", "²", " 80 ", "+80", "-1", "8\x000", "\\", "\\\\",
                     "::", "0.0.0.0", "::ffff:127.0.0.1", "1e3", "0b1", "80.0"]),
)
value = st.one_of(numbers, ipv4, ipv6, loopback, hostile)
keys = st.one_of(st.sampled_from(["port", "interface", "backlog"]), st.text(max_size=10))


@st.composite
def field(draw: Any) -> str:
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return str(draw(value))  # positional, as written
    if kind == 1:
        return escape(draw(value))  # positional, escaped
    key = draw(keys)
    val = draw(value)
    return f"{key}={escape(val) if kind == 2 else val}"


descriptions = st.builds(
    lambda prefix, fields: ":".join([prefix, *fields]),
    st.sampled_from(["xtcp", "xtcp6"]),
    st.lists(field(), max_size=5),
)
arbitrary = st.builds(
    lambda prefix, rest: prefix + rest,
    st.sampled_from(["xtcp:", "xtcp6:"]),
    st.text(max_size=60),
)


def is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def twisted_tokenizer_fails(description: str) -> bool:
    """True if Twisted's own description tokenizer (shared by every endpoint type,
    run before any plugin is called) cannot take the string -- e.g. a trailing
    backslash makes it raise RuntimeError (a StopIteration inside a generator).
    Shown to be Twisted's by the same failure with the built-in ``tcp:`` type."""
    try:
        endpoints._parse(description)
    except ValueError:
        return False  # serverFromString will raise ValueError: within the property
    except Exception as e:  # noqa: BLE001 -- which exception is the point
        prefix, _, rest = description.partition(":")
        try:
            serverFromString(MemoryReactorClock(), "tcp:" + rest)
        except Exception as same:  # noqa: BLE001
            assert type(same) is type(e), (description, e, same)
            return True
        raise AssertionError(f"only xtcp fails on {description!r}: {e!r}") from e
    return False


def check_endpoint(description: str, endpoint: object, reactor: MemoryReactorClock) -> None:
    assert isinstance(endpoint, ExclusiveTCPServerEndpoint), (description, endpoint)
    assert 0 <= endpoint.port <= 65535
    assert 0 <= endpoint._backlog <= 2**31 - 1
    family, host, _ = _native.parse_address(endpoint.interface, 0)
    assert host == endpoint.interface  # already normalised
    if description.startswith("xtcp6"):
        assert ":" in endpoint.interface
    if not is_loopback(endpoint.interface):
        return  # loopback only: a wildcard or foreign address is not listened on here
    results: list[Any] = []
    endpoint.listen(Factory.forProtocol(Protocol)).addBoth(results.append)
    result = results[0]
    if isinstance(result, Failure):
        assert result.check(CannotListenError), (description, result)
        return
    result.stopListening()
    reactor.advance(0)


def check_description(description: str) -> None:
    """The whole path: serverFromString finds the plugin and calls it."""
    if twisted_tokenizer_fails(description):
        return
    reactor = MemoryReactorClock()
    try:
        endpoint = serverFromString(reactor, description)
    except ValueError:
        return
    check_endpoint(description, endpoint, reactor)


PLUGINS = {"xtcp": xtcp, "xtcp6": xtcp6}


def check_parser(description: str) -> None:
    """What serverFromString does once it has found the plugin, without the scan."""
    if twisted_tokenizer_fails(description):
        return
    try:
        args, kwargs = endpoints._parse(description)
    except ValueError:
        return
    reactor = MemoryReactorClock()
    try:
        endpoint = PLUGINS[args[0]].parseStreamServer(reactor, *args[1:], **kwargs)
    except ValueError:
        return
    check_endpoint(description, endpoint, reactor)


@examples(FULL_EXAMPLES)
@given(descriptions)
def test_structured_descriptions(description: str) -> None:
    check_description(description)


@examples(FULL_EXAMPLES)
@given(arbitrary)
def test_arbitrary_text(description: str) -> None:
    check_description(description)


@examples(PARSER_EXAMPLES)
@given(st.one_of(descriptions, arbitrary))
def test_plugin_parser(description: str) -> None:
    check_parser(description)


def test_valid_descriptions_do_work() -> None:
    """The property above is not vacuous: well-formed strings give endpoints."""
    reactor = MemoryReactorClock()
    for text, port, interface in [
        ("xtcp:0:interface=127.0.0.1", 0, "127.0.0.1"),
        ("xtcp:port=3456:backlog=7", 3456, "0.0.0.0"),
        ("xtcp6:0:interface=\\:\\:1", 0, "::1"),
        ("xtcp6:80", 80, "::"),
    ]:
        endpoint = serverFromString(reactor, text)
        assert isinstance(endpoint, ExclusiveTCPServerEndpoint)
        assert (endpoint.port, endpoint.interface) == (port, interface), text
