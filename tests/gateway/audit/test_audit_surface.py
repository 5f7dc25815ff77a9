"""The store-backed audit modules: public surface, and the error boundary mapping every error."""

from __future__ import annotations

import importlib
import inspect

import pytest

from gateway import errors
from gateway.audit import errors as audit_errors
from gateway.audit.boundary import gateway_error
from gateway.http.problems import status_for

STORE_MODULES = [
    "boundary",
    "cli",
    "commit",
    "export",
    "log",
    "search",
    "sequencer",
    "service",
    "signer",
    "subtrees",
    "witness",
]


@pytest.mark.parametrize("name", STORE_MODULES)
def test_store_module_all_lists_its_public_definitions(name: str) -> None:
    """Every name in __all__ exists and every public class or function is listed."""
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


def _subclasses(cls: type[Exception]) -> list[type[Exception]]:
    found = [cls]
    for sub in cls.__subclasses__():
        found.extend(_subclasses(sub))
    return found


@pytest.mark.parametrize("cls", _subclasses(audit_errors.AuditError))
def test_every_audit_error_maps_to_a_503_gateway_error_keeping_its_code(
    cls: type[audit_errors.AuditError],
) -> None:
    """Each AuditError becomes AuditLogInconsistent (503) with its own code for the audit."""
    mapped = gateway_error(cls("x"))
    assert isinstance(mapped, errors.AuditLogInconsistent)
    assert status_for(mapped) == 503
    assert mapped.diagnostics["reason"] == cls.code
