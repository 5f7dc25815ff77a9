"""The store: tables, the database wrapper and migrations."""

from gateway.store.database import Database
from gateway.store.migrate import upgrade

__all__ = ["Database", "upgrade"]
