"""The public surface of policies/ and its architectural rules (pure, no I/O, no gateway)."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import policies
from policies import errors

PACKAGE = Path(policies.__file__).parent
#: What policies may import beyond the standard library and itself.
ALLOWED_THIRD_PARTY = {"gateway.domain", "structlog"}
FORBIDDEN = {"sqlalchemy", "fastapi", "starlette", "httpx", "psycopg", "aiosqlite", "requests",
             "socket", "subprocess", "keys", "adapters", "urllib", "asyncio"}  # fmt: skip


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
    """__all__ lists exactly the names policies/__init__.py binds that do not start with _."""
    public = {
        name
        for name, value in vars(policies).items()
        if not name.startswith("_") and not inspect.ismodule(value) and name != "annotations"
    }
    assert set(policies.__all__) == public
    assert len(policies.__all__) == len(set(policies.__all__))
    assert policies.__all__ == sorted(policies.__all__, key=lambda n: (not n.isupper(), n))


def test_each_module_all_names_what_it_defines() -> None:
    """Every module's __all__ names attributes that exist."""
    for path in PACKAGE.glob("*.py"):
        if path.name == "__init__.py":
            continue
        module = __import__(f"policies.{path.stem}", fromlist=["__all__"])
        for name in getattr(module, "__all__", ()):
            assert hasattr(module, name), f"{path.name}: {name}"


def test_policies_import_only_the_domain_from_the_gateway() -> None:
    """No database, HTTP, keys or adapters: the only gateway import is gateway.domain."""
    for path in PACKAGE.glob("*.py"):
        for name in _imports(path):
            root = name.split(".")[0]
            assert root not in FORBIDDEN, f"{path.name} imports {name}"
            if root == "gateway":
                assert name == "gateway.domain", f"{path.name} imports {name}"


def test_policies_never_raise_http_exceptions() -> None:
    """Policies raise their own errors; HTTP status codes belong to the gateway."""
    for path in PACKAGE.glob("*.py"):
        text = path.read_text()
        assert "HTTPException" not in text and "status_code" not in text, path.name


def test_every_error_has_a_unique_stable_code() -> None:
    """Each class of the error tree has its own code, and all descend from PolicyError."""
    classes = [
        value
        for value in vars(errors).values()
        if inspect.isclass(value) and issubclass(value, errors.PolicyError)
    ]
    codes = [cls.code for cls in classes]
    assert len(codes) == len(set(codes))
    assert {"lawful_basis_missing", "lawful_basis_unknown", "purpose_not_allowed",
            "role_not_allowed", "basis_not_recorded_for_nominal", "no_need_to_know",
            "redaction_failed"} <= set(codes)  # fmt: skip
    assert set(errors.__all__) == {cls.__name__ for cls in classes}


def test_error_tree_is_drawn_in_the_docstring() -> None:
    """The errors module docstring draws every class of the tree."""
    doc = errors.__doc__ or ""
    for name in errors.__all__:
        assert name in doc, name


def test_modules_stay_small() -> None:
    """Modules of a few hundred lines, split by concept."""
    for path in PACKAGE.glob("*.py"):
        assert len(path.read_text().splitlines()) <= 500, path.name
