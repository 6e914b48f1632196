"""``twisted_patch/_native.pyi`` describes the compiled extension exactly.

mypy trusts the stub, so a stub that drifts from ``ext/module.c`` hides real
type errors.  These tests compare the stub (parsed with ``ast``, as shipped
in the installed package) with the extension's actual attributes: the same
names, functions where the stub has functions, the same parameter names and
defaults as the C docstrings' signature lines, constants of the stub's type,
and the attributes ``BindError`` really carries.
"""

from __future__ import annotations

import ast
import re
import socket
from pathlib import Path
from typing import Any

import pytest

from twisted_patch import _native

STUB = Path(_native.__file__).with_name("_native.pyi")


def _stub() -> ast.Module:
    assert STUB.is_file(), f"the installed package has no {STUB.name}"
    return ast.parse(STUB.read_text(encoding="utf-8"))


def _stub_names() -> dict[str, ast.stmt]:
    names: dict[str, ast.stmt] = {}
    for node in _stub().body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names[node.name] = node
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names[node.target.id] = node
    return names


def _public(module: Any) -> set[str]:
    return {n for n in dir(module) if not n.startswith("__")}


def test_stub_and_extension_have_the_same_names() -> None:
    stub = set(_stub_names())
    actual = _public(_native)
    assert stub - actual == set(), f"in _native.pyi but not in the extension: {stub - actual}"
    assert actual - stub == set(), f"in the extension but not in _native.pyi: {actual - stub}"


def test_stub_kinds_match() -> None:
    for name, node in _stub_names().items():
        value = getattr(_native, name)
        if isinstance(node, ast.FunctionDef):
            assert callable(value) and not isinstance(value, type), name
        elif isinstance(node, ast.ClassDef):
            assert isinstance(value, type), name
        else:
            assert isinstance(node, ast.AnnAssign)
            annotation = ast.unparse(node.annotation)
            assert type(value).__name__ == annotation, (name, annotation, type(value))


_SIGNATURE = re.compile(r"^(\w+)\((.*?)\)")


def _doc_parameters(doc: str) -> list[tuple[str, bool]]:
    """[(name, has_default)] from a C docstring's first line ``name(a, b, c=0) -> ...``."""
    m = _SIGNATURE.match(doc)
    assert m, f"docstring does not start with a signature line: {doc.splitlines()[0]!r}"
    params = []
    for part in filter(None, (p.strip() for p in m.group(2).split(","))):
        name, _, default = part.partition("=")
        params.append((name.strip(), bool(default)))
    return params


def test_stub_signatures_match_the_c_docstrings() -> None:
    functions = {n: f for n, f in _stub_names().items() if isinstance(f, ast.FunctionDef)}
    assert functions
    for name, node in functions.items():
        doc = getattr(_native, name).__doc__ or ""
        assert doc.startswith(name + "("), f"{name}: C docstring lacks its signature line"
        a = node.args
        positional = a.posonlyargs + a.args
        defaults = [False] * (len(positional) - len(a.defaults)) + [True] * len(a.defaults)
        stub_params = [(p.arg, d) for p, d in zip(positional, defaults)]
        stub_params += [(p.arg, d is not None) for p, d in zip(a.kwonlyargs, a.kw_defaults)]
        assert stub_params == _doc_parameters(doc), name


def test_bind_error_attributes_match_the_stub() -> None:
    cls = _stub_names()["BindError"]
    assert isinstance(cls, ast.ClassDef)
    stub_attrs = {n.target.id for n in cls.body
                  if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)}
    assert issubclass(_native.BindError, OSError)
    # 192.0.2.1 (TEST-NET-1) is not an address of this host: bind fails, nothing is sent.
    with pytest.raises(_native.BindError) as info:
        handle = _native.listen_tcp("192.0.2.1", 0, 5, socket.AF_INET)
        _native.close(handle)  # pragma: no cover - only if the host owns TEST-NET-1
    err = info.value
    assert set(vars(err)) - stub_attrs == set(), "BindError attributes missing from the stub"
    for attr in stub_attrs:
        assert hasattr(err, attr), f"BindError has no .{attr}, but the stub says it has"
    assert err.stage == "bind"


def test_socket_options_keys_are_ints() -> None:
    handle = _native.open_socket(socket.AF_INET)
    try:
        options = _native.socket_options(handle)
    finally:
        _native.close(handle)
    assert options and all(isinstance(k, str) and isinstance(v, int)
                           for k, v in options.items())
