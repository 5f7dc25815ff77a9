"""The conformance echo: a sealed write that stores no case data, for checking an adapter.

``POST /v1/conformance/echo`` is what ``mappa-gateway conformance --adapter`` drives a partner's
adapter client against: it needs everything a real write needs (a DPoP-bound token from
``private_key_jwt``, a fresh DPoP proof, the ``MAPPA-*`` context headers, a body signed by the
agency and encrypted to the gateway, an ``Idempotency-Key``) and answers sealed to the agency.
It keeps only what every write keeps (the idempotency key and an audit entry), so a retry with
the same key and body gets the same answer and the same key with another body is 422.
"""

from __future__ import annotations

from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from gateway.audit.commit import Audited
from gateway.cases.context import WRITE, Call, Written, inbound, write
from gateway.contract import AckOut
from gateway.contract.types import STRICT
from gateway.flow import lawful_basis
from gateway.flow.audit import Outcome
from gateway.store.models import new_id

__all__ = ["ECHOED", "EchoIn", "echo"]

ECHOED = "echoed"


class EchoIn(BaseModel):
    """A conformance probe: a marker and a nonce, nothing else (no case data)."""

    model_config = STRICT

    conformance: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$")
    nonce: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")


async def echo(call: Call) -> Response:
    """POST /v1/conformance/echo: open, check and acknowledge a sealed probe (audited)."""
    call.require_scope(WRITE)
    call.basis = lawful_basis.check(call.caller, concerns_nominal=False)
    async with call.db.read() as session:
        body = await inbound(call, session, EchoIn)
        if body.replay is not None:
            return body.replay
    probe = body.body

    async def act(session: AsyncSession) -> Audited[Written]:
        ack = AckOut(id=new_id(), status=ECHOED, kind=probe.conformance)
        event = call.event(
            Outcome.ALLOWED,
            reason_code="conformance_echo",
            detail={"resource": "conformance_echo", "probe": probe.conformance},
        )
        return Audited(Written(ack, 200), event)

    return await write(call, body, act)
