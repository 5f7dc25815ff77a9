"""The stage benchmark's stopwatch: every stage it names still exists, and it times calls."""

from __future__ import annotations

import asyncio
import importlib

import pytest

from benchmarks import stage_app


@pytest.mark.parametrize(("label", "target"), stage_app.STAGES)
def test_every_stage_names_a_function_of_the_gateway(label: str, target: str) -> None:
    """A renamed or moved function must fail here, not silently drop out of the report."""
    module_name, _, path = target.partition(":")
    owner: object = importlib.import_module(module_name)
    for part in path.split("."):
        owner = getattr(owner, part)
    assert callable(owner), label


def test_the_stopwatch_times_sync_and_async_calls_and_passes_results_through() -> None:
    label = stage_app.STAGES[0][0]
    times = stage_app.TIMES[label]
    before = len(times)

    def plain(x: int) -> int:
        return x + 1

    async def waiting(x: int) -> int:
        await asyncio.sleep(0)
        return x * 2

    assert stage_app._timed(label, plain)(1) == 2
    assert asyncio.run(stage_app._timed(label, waiting)(3)) == 6
    with pytest.raises(ZeroDivisionError):
        stage_app._timed(label, lambda: 1 / 0)()
    assert len(times) == before + 3  # a failing call is timed too
    assert all(t >= 0 for t in times[before:])
    del times[before:]
