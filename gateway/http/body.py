"""Reading request bodies safely: size, media type, UTF-8, JSON shape, then the schema.

The standard library's JSON parser accepts ``NaN``, ``Infinity``, numbers of any length and
nesting deep enough to exhaust the stack; every one of those is refused here with a 4xx problem
before the body reaches a model. Models are pydantic with ``extra="forbid"``: unknown fields are
an error, not silently dropped.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from gateway.errors import BodyTooDeep, MalformedBody, UnsupportedMediaType, ValidationFailed

__all__ = ["MAX_NUMBER_DIGITS", "media_type", "parse_json", "read_body", "validate"]

MAX_NUMBER_DIGITS = 30
M = TypeVar("M", bound=BaseModel)


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def read_body(request: Request, *, accept: tuple[str, ...]) -> bytes:
    """The raw body, if its media type is one of ``accept`` (the size limit is the edge's)."""
    if media_type(request) not in accept:
        raise UnsupportedMediaType(f"Send one of: {', '.join(accept)}")
    return await request.body()


def _reject_constant(name: str) -> Any:
    raise MalformedBody(f"{name} is not valid JSON")


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_NUMBER_DIGITS:
        raise MalformedBody("A number is too long")
    return int(text)


def _parse_float(text: str) -> float:
    if len(text) > MAX_NUMBER_DIGITS:
        raise MalformedBody("A number is too long")
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise MalformedBody("A number is out of range")
    return value


def _depth(raw: str, limit: int) -> None:
    """Refuse nesting beyond ``limit`` with a linear scan, before the recursive parser runs."""
    depth = 0
    in_string = False
    escaped = False
    for ch in raw:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > limit:
                raise BodyTooDeep(f"Nesting deeper than {limit} levels")
        elif ch in "]}":
            depth -= 1


def parse_json(raw: bytes, *, max_depth: int) -> Any:
    """Strict JSON: UTF-8 only, no NaN or Infinity, bounded numbers and depth, no duplicate keys."""
    try:
        text = raw.decode("utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        raise MalformedBody("The body is not valid UTF-8") from exc
    _depth(text, max_depth)

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in pairs:
            if key in result:
                raise MalformedBody("A key appears twice in one object")
            result[key] = value
        return result

    try:
        return json.loads(
            text,
            parse_constant=_reject_constant,
            parse_int=_parse_int,
            parse_float=_parse_float,
            object_pairs_hook=no_duplicates,
        )
    except json.JSONDecodeError as exc:
        raise MalformedBody(f"Invalid JSON at line {exc.lineno} column {exc.colno}") from exc
    except RecursionError as exc:  # pragma: no cover - the depth scan prevents it
        raise BodyTooDeep() from exc


def validate(model: type[M], data: Any) -> M:
    """Build ``model`` from parsed JSON; report where it failed, never the input itself."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        details = [
            {"loc": [str(p) for p in err["loc"]], "type": err["type"]} for err in exc.errors()[:20]
        ]
        raise ValidationFailed(errors=details) from exc
