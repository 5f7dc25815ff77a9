"""The signed body of a push: :class:`~gateway.contract.envelope.SignedBody` plus its kind.

A message the gateway pushes to an agency (or leaves in its inbox) is signed as::

    {"iss": "<gateway>", "aud": "<agency>", "iat": 1763888400, "jti": "<message id>",
     "body": {...}, "kind": "warning_marker"}

``kind`` is what the recipient routes on, so it is signed with the body: the
``MAPPA-Message-Kind`` header (and the inbox's ``kind``) only repeat it. ``jti`` is the message's
signed unique id: every redelivery of one outbox row carries the same sealed body, so the same
``jti``, and the recipient dedupes on it, never on the unsigned ``Idempotency-Key``. A push is
sealed once, when the act is written, and redelivered as sealed, so a partner accepts a push
whose ``iat`` is up to :data:`PUSH_MAX_AGE` old (the relay's retries and an operator's retry of a
dead letter fit inside it) and remembers each ``jti`` for at least that long.

Answers (a sealed reply to the caller) carry no ``kind``: they are plain ``SignedBody``.
"""

from __future__ import annotations

import datetime as dt

from pydantic import Field

from gateway.contract.envelope import SignedBody

__all__ = ["KIND_PATTERN", "PUSH_MAX_AGE", "SignedPush"]

#: A message kind: a short lower-case code (as the outbox requires).
KIND_PATTERN = r"^[a-z][a-z0-9_]{0,39}$"
#: How old a pushed body may be when the recipient opens it; it keeps each ``jti`` at least
#: this long. Longer than the relay's whole retry schedule, and than a long weekend's outage.
PUSH_MAX_AGE = dt.timedelta(days=7)


class SignedPush(SignedBody):
    """A signed body that may carry the message ``kind`` (every push from this gateway does).

    Also opens a plain :class:`SignedBody` (``kind`` is then ``None``), so one parser serves
    answers and pushes alike; unknown claims are still refused.
    """

    kind: str | None = Field(default=None, pattern=KIND_PATTERN)
