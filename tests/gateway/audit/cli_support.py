"""Running ``mappa-gateway`` in-process in a test, on a configuration given as environment."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

import pytest

from gateway.cli import main
from gateway.settings import get_settings

#: Runs ``mappa-gateway ARGS...``; returns its exit status and its output (stdout then stderr).
Run = Callable[..., tuple[int, str]]


def in_process_cli(
    environment: Mapping[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Iterator[Run]:
    """For a fixture to ``yield from``: the runner under ``environment``, settings re-read."""
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()

    def run(*args: str) -> tuple[int, str]:
        capsys.readouterr()
        status = main(list(args))
        captured = capsys.readouterr()
        return status, captured.out + captured.err

    yield run
    get_settings.cache_clear()
