"""Reading the reviewed policy data files: location, strict TOML tables, the policy version.

The data files live in ``policies/data/`` (package data). Each non-empty file opens with a
header::

    version = "2026-11-23"          # the date of the rule set, ISO 8601
    reviewed_by = "..."             # who reviewed this version
    reviewed_on = 2026-11-23        # when

A missing or empty file is an empty rule set (which denies everything); anything else that is
malformed fails to load with :class:`~policies.errors.PolicyDataInvalid`, never a silent default.

The policy version is ``<newest version date>+<first 12 hex of SHA-256 over every file>``, so any
edit to any rule, even a comment, changes the version that decisions record.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from .errors import PolicyDataInvalid

__all__ = [
    "DATA_FILES",
    "DataFiles",
    "Table",
    "default_data_dir",
    "read_data",
]

#: The files that make up one policy set, in the order they are hashed.
DATA_FILES = ("legal_bases.toml", "need_to_know.toml", "recipients.toml")
_HEADER = frozenset({"version", "reviewed_by", "reviewed_on"})
_NO_VERSION = "0000-00-00"
E = TypeVar("E")


def default_data_dir() -> Path:
    """The data directory shipped inside the package."""
    return Path(__file__).resolve().parent / "data"


@dataclass(frozen=True, slots=True)
class DataFiles:
    """The raw bytes of one policy set and the version derived from them."""

    directory: Path
    raw: Mapping[str, bytes | None]
    version: str

    def table(self, name: str) -> Table:
        """The parsed body of ``name`` without its header; empty if the file is missing or empty."""
        data = self.raw.get(name)
        if data is None:
            return Table({}, name, self.version, name)
        body = _parse(name, data, self.version)
        return Table({k: v for k, v in body.items() if k not in _HEADER}, name, self.version, name)


def read_data(directory: Path | None = None) -> DataFiles:
    """Read every policy file of ``directory`` (default: the packaged data) and version them."""
    directory = default_data_dir() if directory is None else Path(directory)
    raw: dict[str, bytes | None] = {}
    digest = hashlib.sha256()
    dates: list[str] = []
    for name in DATA_FILES:
        path = directory / name
        data = path.read_bytes() if path.is_file() else None
        raw[name] = data
        digest.update(name.encode() + b"\0")
        digest.update(b"-" if data is None else str(len(data)).encode() + b"\0" + data)
        if data is not None:
            dates.append(_header_version(name, _parse(name, data, _NO_VERSION)))
    version = f"{max(dates, default=_NO_VERSION)}+{digest.hexdigest()[:12]}"
    return DataFiles(directory, raw, version)


def _parse(name: str, data: bytes, version: str) -> dict[str, Any]:
    try:
        return tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise PolicyDataInvalid(
            f"{name}: not valid UTF-8 TOML: {exc}", rule=name, policy_version=version
        ) from exc


def _header_version(name: str, body: Mapping[str, Any]) -> str:
    if not body:
        return _NO_VERSION
    missing = sorted(_HEADER - body.keys())
    if missing:
        raise PolicyDataInvalid(
            f"{name}: header lacks {', '.join(missing)}", rule=name, policy_version=_NO_VERSION
        )
    version, by, on = body["version"], body["reviewed_by"], body["reviewed_on"]
    try:
        if not isinstance(version, str):
            raise ValueError(version)
        dt.date.fromisoformat(version)
    except ValueError as exc:
        raise PolicyDataInvalid(
            f"{name}: version must be an ISO date string", rule=name, policy_version=_NO_VERSION
        ) from exc
    if not isinstance(by, str) or not by.strip():
        raise PolicyDataInvalid(
            f"{name}: reviewed_by must name the reviewer", rule=name, policy_version=_NO_VERSION
        )
    if not isinstance(on, dt.date) or isinstance(on, dt.datetime):
        raise PolicyDataInvalid(
            f"{name}: reviewed_on must be a TOML date", rule=name, policy_version=_NO_VERSION
        )
    return version


class Table:
    """A TOML table read strictly: unknown keys and wrong types fail to load, naming the place."""

    __slots__ = ("_data", "_file", "_version", "where")

    def __init__(self, data: Mapping[str, Any], file: str, version: str, where: str) -> None:
        self._data = data
        self._file = file
        self._version = version
        self.where = where

    def fail(self, why: str) -> PolicyDataInvalid:
        return PolicyDataInvalid(
            f"{self.where}: {why}", rule=self._file, policy_version=self._version
        )

    def keys(self) -> list[str]:
        return list(self._data)

    def __bool__(self) -> bool:
        return bool(self._data)

    def only(self, allowed: Iterable[str], required: Iterable[str] = ()) -> None:
        """Refuse keys outside ``allowed`` and require ``required``."""
        allowed_set = set(allowed)
        unknown = sorted(set(self._data) - allowed_set)
        if unknown:
            raise self.fail(f"unknown key(s) {', '.join(unknown)}")
        missing = sorted(set(required) - set(self._data))
        if missing:
            raise self.fail(f"missing key(s) {', '.join(missing)}")

    def has(self, key: str) -> bool:
        return key in self._data

    def sub(self, key: str) -> Table:
        value = self._data.get(key, {})
        if not isinstance(value, dict):
            raise self.fail(f"{key} must be a table")
        return Table(value, self._file, self._version, f"{self.where}.{key}")

    def tables(self, key: str) -> list[Table]:
        """An array of tables (``[[key]]``)."""
        value = self._data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise self.fail(f"{key} must be an array of tables")
        return [
            Table(v, self._file, self._version, f"{self.where}.{key}[{i}]")
            for i, v in enumerate(value)
        ]

    def string(self, key: str) -> str:
        value = self._data.get(key)
        if not isinstance(value, str) or not value.strip():
            raise self.fail(f"{key} must be a non-empty string")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self._data.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(f"{key} must be true or false")
        return value

    def integer(self, key: str, default: int) -> int:
        value = self._data.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise self.fail(f"{key} must be a non-negative integer")
        return value

    def strings(self, key: str, default: tuple[str, ...] | None = None) -> tuple[str, ...]:
        """A list of distinct non-empty strings."""
        if key not in self._data:
            if default is None:
                raise self.fail(f"missing key {key}")
            return default
        value = self._data[key]
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.fail(f"{key} must be a list of non-empty strings")
        if len(set(value)) != len(value):
            raise self.fail(f"{key} lists a value twice")
        return tuple(value)

    def enums(
        self, key: str, kind: Callable[[str], E], default: tuple[E, ...] | None = None
    ) -> tuple[E, ...]:
        """A list of distinct values of an enumeration (or any parser raising ValueError)."""
        out: list[E] = []
        for text in self.strings(key, None if default is None else ()):
            try:
                out.append(kind(text))
            except ValueError as exc:
                raise self.fail(f"{key}: unknown value {text!r}") from exc
        if not out and default is not None and key not in self._data:
            return default
        return tuple(out)
