"""The signed body inside every ``application/jose`` message.

A case-data body travels as a compact JWE (to the recipient's key) around a compact JWS (by the
sender's key) whose payload is this JSON object::

    {"iss": "<sender>", "aud": "<recipient>", "iat": 1763888400, "jti": "<uuid>", "body": {...}}

``typ`` of the inner JWS is ``mappa-body+jwt``. ``iss`` names the sending agency (or the
gateway's issuer URL), ``aud`` the recipient (the gateway's issuer URL, or an agency id), so a
sealed body captured on one hop cannot be replayed to another recipient or credited to another
sender; ``iat`` bounds how long it stays acceptable. The gateway keeps the JWS as evidence of
origin.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["BODY_MAX_AGE", "BODY_TYP", "JOSE_MEDIA_TYPE", "SignedBody"]

JOSE_MEDIA_TYPE = "application/jose"
BODY_TYP = "mappa-body+jwt"
#: How old (or how far ahead, for clock skew) a signed body may be when it is opened.
BODY_MAX_AGE = dt.timedelta(minutes=5)


def _new_jti() -> str:
    return str(uuid.uuid4())


class SignedBody(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    iss: str = Field(min_length=1, max_length=200)
    aud: str = Field(min_length=1, max_length=200)
    iat: int
    jti: str = Field(default_factory=_new_jti, min_length=8, max_length=64)
    body: dict[str, Any]

    @classmethod
    def wrap(
        cls,
        body: dict[str, Any],
        *,
        iss: str,
        aud: str,
        now: dt.datetime,
        jti: str | None = None,
        **claims: Any,
    ) -> Self:
        """``body`` from ``iss`` to ``aud``, issued at ``now``, under ``jti`` (a new id unless
        given), with a subclass's own ``claims`` (a push's ``kind``): built and validated once."""
        return cls(
            iss=iss,
            aud=aud,
            iat=int(now.timestamp()),
            jti=_new_jti() if jti is None else jti,
            body=body,
            **claims,
        )

    def fresh_at(self, now: dt.datetime, max_age: dt.timedelta = BODY_MAX_AGE) -> bool:
        """Issued at most ``max_age`` before ``now`` (a push allows more:
        :data:`gateway.flow.signed_push.PUSH_MAX_AGE`) and at most :data:`BODY_MAX_AGE` after it
        (clock skew)."""
        # Compared as numbers, never turned into a datetime: an ``iat`` beyond the calendar (the
        # sender's to choose) is simply not fresh.
        earliest = (now - max_age).timestamp()
        latest = (now + BODY_MAX_AGE).timestamp()
        return earliest <= self.iat <= latest
