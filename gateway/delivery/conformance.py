"""``mappa-gateway conformance``: run a partner's webhook endpoint against the contract.

(The partner's other side, the calls its adapter client makes, is checked by
``mappa-gateway conformance --adapter DIR``: :mod:`gateway.delivery.adapter_conformance`.)

Run by the gateway operator (it seals with the gateway's own payload-signing key, exactly as a
real delivery is sealed, its kind and message id signed in it) against an agency's registered
endpoint, or a URL and CA given on the command line. Each check is pass or fail, with a reason
code:

1. ``sealed_delivery``: a sealed ``conformance`` message is acknowledged with a 2xx;
2. ``idempotent_redelivery``: the same message, same ``Idempotency-Key``, is acknowledged again
   (the partner must apply it once; it cannot be seen from here, so the docs ask for it);
3. ``replay_new_key_not_reapplied``: the same sealed message under a fresh ``Idempotency-Key``
   (a captured delivery replayed) is acknowledged with a 2xx that says ``"status":
   "duplicate"``: the partner dedupes on the signed ``jti``, not on the header;
4. ``kind_mismatch_refused``: a new message whose ``MAPPA-Message-Kind`` header disagrees with
   the kind signed in it gets a 4xx (the partner acts on the signed kind only);
5. ``stale_refused``: a new message signed longer ago than the push window (``iat``) gets a 4xx;
6. ``bad_signature_refused``: a JWE to the partner's key around a JWS by an unknown key gets a
   4xx, never a 2xx;
7. ``plain_json_refused``: a plain JSON body gets a 4xx (case data is never accepted in clear);
8. ``missing_idempotency_key_refused``: a delivery without ``Idempotency-Key`` gets a 4xx;
9. ``backpressure``: if the partner answers 429 or 503 to anything, it carries ``Retry-After``
   (the relay honours it, up to its cap).
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from joserfc import jwe, jws
from joserfc.jwk import ECKey

from gateway.contract.envelope import JOSE_MEDIA_TYPE, SignedBody
from gateway.delivery.push import Endpoint, PushConfig, Pusher, PushResult
from gateway.flow.seal import Sealer
from gateway.flow.signed_push import PUSH_MAX_AGE
from gateway.store.models import Agency

__all__ = ["Check", "run_conformance"]

#: The kind every conformance message signs (and the relay states in its header).
KIND = "conformance"
#: What a mismatched header claims instead: the kind a replayed marker was turned into.
SWAPPED_KIND = "warning_marker_revocation"


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    passed: bool
    detail: str


def _forged(recipient_keys: Sequence[Mapping[str, Any]], agency_id: str, issuer: str) -> str:
    """A well-formed delivery signed by a key the gateway never published."""
    stranger = ECKey.generate_key("P-256", private=True)
    signed = SignedBody.wrap(
        {"conformance": "forged"}, iss=issuer, aud=agency_id, now=dt.datetime.now(dt.UTC)
    )
    inner = jws.serialize_compact(
        {"alg": "ES256", "kid": stranger.thumbprint(), "typ": "mappa-body+jwt"},
        signed.model_dump_json(),
        stranger,
    )
    enc = [k for k in recipient_keys if k.get("use") == "enc"][-1]
    key = ECKey.import_key(dict(enc))
    return jwe.encrypt_compact(
        {"alg": "ECDH-ES+A256KW", "enc": "A256GCM", "cty": "JWT", "kid": enc.get("kid")},
        inner,
        key,
    )


async def _raw(
    pusher: Pusher, endpoint: Endpoint, content: bytes, headers: dict[str, str]
) -> httpx.Response | None:
    client = await pusher._client(endpoint)  # the same TLS policy as the relay
    try:
        return await client.post(endpoint.url, content=content, headers=headers)
    except httpx.TransportError:
        return None


def _status(response: httpx.Response | None) -> int:
    return 0 if response is None else response.status_code


def _refused(name: str, response: httpx.Response | None) -> Check:
    """The check ``name`` passes if the partner refused with a 4xx."""
    status = _status(response)
    return Check(name, 400 <= status < 500, f"status {status}")


def _said_duplicate(response: httpx.Response | None) -> bool:
    if response is None or not 200 <= response.status_code < 300:
        return False
    try:
        answer = response.json()
    except ValueError:
        return False
    return isinstance(answer, dict) and answer.get("status") == "duplicate"


def _headers(kind: str = KIND) -> dict[str, str]:
    return {
        "Content-Type": JOSE_MEDIA_TYPE,
        "Idempotency-Key": str(uuid.uuid4()),
        "MAPPA-Message-Kind": kind,
    }


async def run_conformance(
    *,
    agency_id: str,
    url: str,
    ca_pem: str | None,
    recipient_keys: Sequence[Mapping[str, Any]],
    sealer: Sealer,
    config: PushConfig | None = None,
) -> list[Check]:
    pusher = Pusher(config or PushConfig())
    endpoint = Endpoint(agency_id, url, ca_pem)
    checks: list[Check] = []
    results: list[PushResult] = []
    try:
        now = dt.datetime.now(dt.UTC)

        def sealed(
            content: dict[str, Any], issued_at: dt.datetime | None = None
        ) -> tuple[str, str]:
            """A conformance message sealed exactly as a real push is: its message id and JWE."""
            mid = str(uuid.uuid4())
            jwe_, _ = sealer.seal(
                content,
                recipient=Agency(id=agency_id),
                recipient_keys=recipient_keys,
                now=now,
                kind=KIND,
                jti=mid,
                issued_at=issued_at,
            )
            return mid, jwe_

        mid, body = sealed({"conformance": "ping", "sent_at": now.isoformat()})
        first = await pusher.push(endpoint, message_id=mid, kind=KIND, body=body)
        results.append(first)
        checks.append(Check("sealed_delivery", first.ok, f"{first.code} {first.status or ''}"))
        again = await pusher.push(endpoint, message_id=mid, kind=KIND, body=body)
        results.append(again)
        checks.append(
            Check("idempotent_redelivery", again.ok, f"{again.code} {again.status or ''}")
        )
        replay = await _raw(pusher, endpoint, body.encode(), _headers())
        checks.append(
            Check(
                "replay_new_key_not_reapplied",
                _said_duplicate(replay),
                f"status {_status(replay)}"
                + ("" if _said_duplicate(replay) else ', expected 2xx {"status": "duplicate"}'),
            )
        )
        _, other = sealed({"conformance": "kind", "sent_at": now.isoformat()})
        swapped = await _raw(pusher, endpoint, other.encode(), _headers(SWAPPED_KIND))
        checks.append(_refused("kind_mismatch_refused", swapped))
        # genuinely signed by the gateway, but issued a day before the push window opened
        _, old = sealed({"conformance": "stale"}, now - PUSH_MAX_AGE - dt.timedelta(days=1))
        stale = await _raw(pusher, endpoint, old.encode(), _headers())
        checks.append(_refused("stale_refused", stale))
        forged = _forged(recipient_keys, agency_id, sealer.issuer)
        bad = await pusher.push(endpoint, message_id=str(uuid.uuid4()), kind=KIND, body=forged)
        results.append(bad)
        refused = bad.status is not None and 400 <= bad.status < 500
        checks.append(Check("bad_signature_refused", refused, f"{bad.code} {bad.status or ''}"))
        plain = await _raw(
            pusher,
            endpoint,
            json.dumps({"conformance": "plain"}).encode(),
            {"Content-Type": "application/json", "Idempotency-Key": str(uuid.uuid4())},
        )
        checks.append(_refused("plain_json_refused", plain))
        keyless = await _raw(pusher, endpoint, body.encode(), {"Content-Type": JOSE_MEDIA_TYPE})
        checks.append(_refused("missing_idempotency_key_refused", keyless))
        throttled = [r for r in results if r.status in (429, 503)]
        checks.append(
            Check(
                "backpressure",
                all(r.retry_after is not None for r in throttled),
                "no 429/503 seen"
                if not throttled
                else f"{len(throttled)} answer(s) 429/503, Retry-After on each: "
                + str(all(r.retry_after is not None for r in throttled)),
            )
        )
    finally:
        await pusher.aclose()
    return checks
