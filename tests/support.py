"""Helpers shared by tests that depend on something outside Python."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

__all__ = ["IN_CI", "skip_or_fail_in_ci"]

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def skip_or_fail_in_ci(reason: str) -> NoReturn:
    """Skip locally when a tool is missing; in CI a missing tool is a failure, never a skip."""
    if IN_CI:
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)
