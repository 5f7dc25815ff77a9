"""The public surface of gateway.audit: __all__ lists exactly what the modules export."""

from __future__ import annotations

import importlib
import inspect

import pytest

import gateway.audit

MODULES = ["canonical", "checkpoint", "errors", "merkle", "verify"]


def test_package_all_is_the_union_of_its_modules() -> None:
    """The package re-exports every module's public names and nothing else."""
    exported: set[str] = set()
    for name in MODULES:
        exported |= set(importlib.import_module(f"gateway.audit.{name}").__all__)
    assert sorted(gateway.audit.__all__) == sorted(exported)
    assert len(gateway.audit.__all__) == len(set(gateway.audit.__all__))


@pytest.mark.parametrize("name", MODULES)
def test_module_all_names_exist_and_public_definitions_are_listed(name: str) -> None:
    """Every name in a module's __all__ exists, and every public class or function is listed."""
    module = importlib.import_module(f"gateway.audit.{name}")
    for exported in module.__all__:
        assert hasattr(module, exported), exported
    defined = {
        attr
        for attr, value in vars(module).items()
        if not attr.startswith("_")
        and (inspect.isclass(value) or inspect.isfunction(value))
        and value.__module__ == module.__name__
    }
    assert defined <= set(module.__all__)


def test_audit_modules_import_nothing_else_from_the_gateway() -> None:
    """gateway.audit stands alone: pure modules that any part of the gateway can use."""
    for name in MODULES:
        source = inspect.getsource(importlib.import_module(f"gateway.audit.{name}"))
        for line in source.splitlines():
            if line.startswith(("import gateway", "from gateway")):
                assert line.startswith("from gateway.audit."), line
