"""A database of either backend migrated to a given revision, for a migration's own tests."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from gateway.store import upgrade
from tests.conftest import PostgresSchema, require_postgres


@contextlib.contextmanager
def migrated_to(backend: str, tmp_path: Path, revision: str) -> Iterator[str]:
    """The URL of an empty database (``sqlite`` in ``tmp_path``, or ``postgres``: a schema of its
    own, dropped after) migrated to ``revision``."""
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"
        upgrade(url, revision)
        yield url
        return
    require_postgres()
    schema = PostgresSchema()
    try:
        upgrade(schema.url, revision)
        yield schema.url
    finally:
        schema.drop()
