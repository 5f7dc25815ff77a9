"""Stand-in agency systems for tests and the demo: a small JSON document store on disk.

Each stand-in is one JSON file (written atomically, mode 0600) holding collections of records
keyed by the agency system's own references, plus the ids of deliveries already applied, so a
redelivery changes nothing. They are not case systems; they show what an adapter wrote.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

__all__ = ["JsonStore"]


class JsonStore:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        if not self.path.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._write({"collections": {}, "applied": []})

    def _read(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.path.read_text(encoding="utf-8"))
        return data

    def _write(self, data: dict[str, Any]) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".standin-")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, sort_keys=True)
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)

    def get(self, collection: str, key: str) -> dict[str, Any] | None:
        with self._lock:
            value = self._read()["collections"].get(collection, {}).get(key)
        return dict(value) if value is not None else None

    def all(self, collection: str) -> dict[str, dict[str, Any]]:
        with self._lock:
            return dict(self._read()["collections"].get(collection, {}))

    def put(self, collection: str, key: str, value: dict[str, Any]) -> None:
        with self._lock:
            data = self._read()
            data["collections"].setdefault(collection, {})[key] = value
            self._write(data)

    def apply_once(
        self,
        message_id: str,
        collection: str,
        key: str,
        value: dict[str, Any],
        *,
        latest: tuple[str, tuple[int, str]] | None = None,
    ) -> bool:
        """Write ``value`` unless ``message_id`` was applied before; False when it was. With
        ``latest`` (a thing and a delivery's :attr:`~adapters.sdk.Delivery.order`), also not
        when the thing holds a later message (:meth:`superseded`), and record it as the thing's
        latest when written."""
        with self._lock:
            data = self._read()
            if message_id in data["applied"]:
                return False
            held = data.setdefault("latest", {})
            if latest is not None:
                thing, order = latest
                if thing in held and tuple(held[thing]) >= order:
                    return False
                held[thing] = list(order)
            data["collections"].setdefault(collection, {})[key] = value
            data["applied"].append(message_id)
            self._write(data)
        return True

    def latest(self, thing: str) -> tuple[int, str] | None:
        """The order (signed ``iat``, message id) of the message ``thing`` holds, if any."""
        with self._lock:
            held = self._read().get("latest", {}).get(thing)
        return None if held is None else (int(held[0]), str(held[1]))

    def superseded(self, thing: str, order: tuple[int, str]) -> bool:
        """Whether ``thing`` holds a message at or after ``order`` (one signed later, or the
        same second with a greater id)."""
        held = self.latest(thing)
        return held is not None and held >= order

    def applied(self, message_id: str) -> bool:
        with self._lock:
            return message_id in self._read()["applied"]
