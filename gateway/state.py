"""What one gateway process holds while it runs: the database and the key rings."""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.settings import Settings
from gateway.store import Database

__all__ = ["GatewayState"]


@dataclass
class GatewayState:
    settings: Settings
    db: Database
    loaded_key_purposes: set[str] = field(default_factory=set)

    def keys_ready(self) -> bool:
        return bool(self.loaded_key_purposes)
