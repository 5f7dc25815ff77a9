"""The public surface of gateway.delivery and the adapter SDK: __all__ matches the modules."""

from __future__ import annotations

import importlib
import inspect

import pytest

MODULES = [
    "gateway.delivery",
    "gateway.delivery.outbox",
    "gateway.delivery.lease",
    "gateway.delivery.dead_letters",
    "gateway.delivery.metrics",
    "gateway.delivery.metrics_listener",
    "gateway.delivery.push",
    "gateway.delivery.backoff",
    "gateway.delivery.relay",
    "gateway.delivery.inbox",
    "gateway.delivery.endpoints",
    "gateway.delivery.operations",
    "gateway.delivery.conformance",
    "gateway.delivery.adapter_conformance",
    "gateway.delivery.service",
    "adapters.sdk",
    "adapters.receiver",
    "adapters.standin",
    "adapters.kit",
    "adapters.demo",
    "adapters.police",
    "adapters.probation",
    "adapters.childrens_services",
    "adapters.housing",
]


@pytest.mark.parametrize("name", MODULES)
def test_all_lists_exactly_the_public_definitions(name: str) -> None:
    """Every name in __all__ exists, and every public class or function defined here is listed."""
    module = importlib.import_module(name)
    for exported in module.__all__:
        assert hasattr(module, exported), exported
    defined = {
        n
        for n, obj in vars(module).items()
        if not n.startswith("_")
        and (inspect.isclass(obj) or inspect.isfunction(obj))
        and getattr(obj, "__module__", None) == name
    }
    assert defined <= set(module.__all__), defined - set(module.__all__)
