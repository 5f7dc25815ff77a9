"""The app's start-up: what it does to the process beyond serving."""

from __future__ import annotations

import gc

import pytest

from gateway.app import create_app
from gateway.settings import Settings


@pytest.mark.parametrize("freeze", [True, False])
async def test_start_up_freezes_what_it_built_out_of_the_collectors_reach(
    settings: Settings, freeze: bool
) -> None:
    """What start-up built lives as long as the process: frozen, a collection under load walks
    only what requests allocate (the default; off for the test suite, which starts many apps)."""
    gc.unfreeze()
    app = create_app(settings.model_copy(update={"freeze_heap_at_start": freeze}))
    try:
        async with app.router.lifespan_context(app):
            frozen = gc.get_freeze_count()
            assert (frozen > 10_000) is freeze  # the modules, the app, its state
    finally:
        gc.unfreeze()
