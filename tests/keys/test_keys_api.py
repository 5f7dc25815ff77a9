"""The public surface of keys/ and its architectural rules (layering, hazmat confinement)."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import keys

PACKAGE = Path(keys.__file__).parent


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_all_matches_the_public_names() -> None:
    """__all__ lists exactly the names keys/__init__.py binds that do not start with _."""
    public = {
        name
        for name, value in vars(keys).items()
        if not name.startswith("_") and not inspect.ismodule(value) and name != "annotations"
    }
    assert set(keys.__all__) == public
    assert len(keys.__all__) == len(set(keys.__all__))
    assert keys.__all__ == sorted(keys.__all__, key=lambda n: (not n.isupper(), n))


def test_only_the_hazmat_module_imports_cryptography_hazmat() -> None:
    """Recipes over hazmat: keys/_hazmat.py is the one importer."""
    importers = {
        path.name
        for path in PACKAGE.glob("*.py")
        if any(name.startswith("cryptography.hazmat") for name in _imports(path))
    }
    assert importers == {"_hazmat.py"}


def test_keys_never_imports_the_gateway() -> None:
    """The gateway depends on keys, never the reverse; nor on jwcrypto or python-jose."""
    for path in PACKAGE.glob("*.py"):
        roots = {name.split(".")[0] for name in _imports(path)}
        assert not roots & {"gateway", "policies", "adapters", "jwcrypto", "jose"}, path.name


def test_modules_stay_small() -> None:
    """Modules are kept to a few hundred lines."""
    for path in PACKAGE.glob("*.py"):
        assert len(path.read_text().splitlines()) <= 400, path.name


def test_package_is_typed() -> None:
    """py.typed ships so callers get the annotations."""
    assert (PACKAGE / "py.typed").exists()
