"""Lazy package exports: every public name still imports, from the module that defines it, and
importing a package loads none of its submodules until a name is used."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

import tlswatch

PACKAGES = ("tlswatch.capture", "tlswatch.probe", "tlswatch.quic", "tlswatch.tls")
ROOT = Path(tlswatch.__file__).resolve().parent


def _type_checking_imports(package: str) -> dict[str, str]:
    """name -> module, from the package's ``if TYPE_CHECKING:`` imports (what it used to
    import eagerly)."""
    tree = ast.parse((ROOT / package.split(".")[1] / "__init__.py").read_text())
    names: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for imp in node.body:
                assert isinstance(imp, ast.ImportFrom) and imp.module is not None
                module = importlib.util.resolve_name("." * imp.level + imp.module, package)
                names.update((a.asname or a.name, module) for a in imp.names)
    return names


def _run(code: str) -> object:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    return json.loads(out.stdout)


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_name_resolves_to_its_definition(package: str) -> None:
    pkg = importlib.import_module(package)
    where = _type_checking_imports(package)
    assert set(pkg.__all__) == set(where)
    for name in pkg.__all__:
        assert name in dir(pkg)
        assert getattr(pkg, name) is getattr(importlib.import_module(where[name]), name)
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        pkg.no_such_name  # noqa: B018


@pytest.mark.parametrize("package", PACKAGES)
def test_importing_a_package_loads_no_submodule(package: str) -> None:
    loaded = _run(f"import json, sys, {package}; "
                  f"print(json.dumps([m for m in sys.modules if m.startswith('{package}.')]))")
    assert loaded == []


def test_a_function_named_like_its_module_stays_the_function() -> None:
    # tlswatch.probe.measure is the function even after its module was imported first.
    kinds = _run("import json, tlswatch.probe.measure as m\n"
                 "from tlswatch.probe import measure\n"
                 "import tlswatch.probe as p\n"
                 "print(json.dumps([type(m).__name__, type(measure).__name__, "
                 "type(p.measure).__name__]))")
    assert kinds == ["function", "function", "function"]


def test_probe_names_moved_to_small_modules_are_the_same_objects() -> None:
    from tlswatch import bogons, html_title
    from tlswatch.probe import DEFAULT_BOGONS, LAB_BOGONS, BogonKind, bogon_kind, http_fetch
    from tlswatch.probe import dns as probe_dns

    assert (DEFAULT_BOGONS, LAB_BOGONS, BogonKind, bogon_kind) == (
        bogons.DEFAULT_BOGONS, bogons.LAB_BOGONS, bogons.BogonKind, bogons.bogon_kind)
    assert probe_dns.routable_policy is bogons.routable_policy
    assert probe_dns.BogonPolicy is bogons.BogonPolicy
    assert http_fetch.extract_title is html_title.extract_title
    assert http_fetch.MAX_TITLE == html_title.MAX_TITLE
