"""The adapter SDK: what an agency adapter is, and how installed adapters are found.

An adapter sits beside one agency's case system. It translates that system's records into the
gateway's contract (:meth:`Adapter.to_contract`: the calls to make, each a :class:`Outbound`),
translates contract bodies back into the system's own shape (:meth:`Adapter.from_contract`), and
applies a delivery the gateway pushed or the agency pulled (:meth:`Adapter.receive`). It never
sees keys: sealing and opening are the :class:`~adapters.client.GatewayClient`'s and the
receiver's (:mod:`adapters.receiver`).

A call about an existing nominal that the agency's system knows only by one of its identifiers
(a PNC id, an nDelius CRN, a ViSOR reference) names the identifier in :attr:`Outbound.lookup`
and the nominal as :data:`NOMINAL_ID` in its path: the client first asks
``POST /v1/nominals/lookup`` (the identifier sealed in the body, never in a URL), then makes the
call with the gateway id it found.

Adapters are discovered through the Python entry-point group ``mappa_gateway.adapters``; a
partner's package declares its own in its ``pyproject.toml``::

    [project.entry-points."mappa_gateway.adapters"]
    my-council-housing = "my_council.adapter:HousingAdapter"
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

__all__ = [
    "ENTRY_POINT_GROUP",
    "GATEWAY_KINDS",
    "IDENTIFIER_KINDS",
    "NOMINAL_ID",
    "SUPERSEDED",
    "Adapter",
    "Delivery",
    "MappingRefused",
    "Outbound",
    "Receipt",
    "discover",
    "load_adapter",
]

ENTRY_POINT_GROUP = "mappa_gateway.adapters"
#: Where an Outbound's path (and Idempotency-Key) names the nominal its lookup finds.
NOMINAL_ID = "{nominal_id}"
#: The identifiers a nominal can be looked up by.
IDENTIFIER_KINDS = frozenset({"pnc", "crn", "visor"})
#: Every kind the gateway delivers (its own list is ``gateway.delivery.outbox.KINDS``, copied
#: here so the SDK does not import the gateway's storage layer; a test keeps the two equal). A
#: receiver keeps one of these its adapter does not list for a person, and refuses only a kind
#: not here (a newer gateway's).
GATEWAY_KINDS = frozenset(
    {
        "contributor_decision",
        "erasure",
        "hazard_flag",
        "level_change",
        "minutes",
        "onward_disclosure",
        "owner_notification",
        "record",
        "referral",
        "warning_marker",
        "warning_marker_revocation",
    }
)


class MappingRefused(ValueError):
    """A record cannot be translated safely (an unknown or legacy code, a missing field).

    ``code`` is stable and says why; nothing is sent or written when this is raised. A delivery
    refused so by :meth:`Adapter.receive` is held for a person by the receiver
    (:class:`adapters.receiver.HeldDelivery`), sealed as it came, never dropped.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Outbound:
    """One call the adapter asks the gateway client to make (the body is sealed on sending)."""

    method: str
    path: str
    body: dict[str, Any]
    #: A stable key derived from the source record, so a resend is recognised. It may name
    #: the nominal as :data:`NOMINAL_ID`; it never carries a personal identifier.
    idempotency_key: str | None = None
    #: The identifiers (``{"crn": ..., "pnc": ...}``) to find the nominal by before the call,
    #: tried in this order, one lookup each, until the gateway finds it; the path then names it
    #: as :data:`NOMINAL_ID`.
    lookup: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        if self.lookup is None:
            if NOMINAL_ID in self.path:
                raise ValueError("a path naming {nominal_id} needs a lookup")
            return
        if not self.lookup or not set(self.lookup) <= IDENTIFIER_KINDS:
            raise ValueError("a lookup names one or more of pnc, crn or visor")
        if NOMINAL_ID not in self.path:
            raise ValueError("a lookup is for a path that names {nominal_id}")
        for value in self.lookup.values():
            if not value or value in self.path or value in (self.idempotency_key or ""):
                raise ValueError("an identifier never goes in a path or an Idempotency-Key")

    def resolved(self, nominal_id: str) -> tuple[str, str | None]:
        """The path and Idempotency-Key with the looked-up nominal's gateway id in them."""
        key = self.idempotency_key
        return (
            self.path.replace(NOMINAL_ID, nominal_id),
            key.replace(NOMINAL_ID, nominal_id) if key is not None else None,
        )


@dataclass(frozen=True, slots=True)
class Delivery:
    """A message from the gateway, opened and verified: its id, kind and body, and when the
    gateway signed it.

    Deliveries come at least once and in any order (the relay pushes several at a time and
    retries a failed one while later ones go out), so an adapter never lets an older message
    overwrite a newer one about the same thing: it keeps, per thing it holds (a nominal's level,
    a marker, a hazard flag), the :attr:`order` of the message it holds, and answers an older
    one :data:`SUPERSEDED` without applying it.
    """

    message_id: str
    kind: str
    body: dict[str, Any]
    #: The gateway's issuer that signed it.
    signed_by: str
    #: When the gateway signed it (the signed ``iat``, seconds since the epoch).
    issued_at: int = 0

    @property
    def order(self) -> tuple[int, str]:
        """What orders two messages about one thing: the signed ``iat``, then, for two signed
        in the same second, the message id (the greater is taken as the later), so every
        receiver settles on the same one whatever order they came in."""
        return (self.issued_at, self.message_id)


#: The receipt's action for a message older than the one held about the same thing: not
#: applied, and acknowledged (2xx), so the gateway does not send it again.
SUPERSEDED = "superseded"


@dataclass(frozen=True, slots=True)
class Receipt:
    """What the agency system did with a delivery (what the mock systems record)."""

    message_id: str
    action: str
    references: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())


@runtime_checkable
class Adapter(Protocol):
    """An agency adapter. ``agency_type`` is a :class:`gateway.domain.AgencyType` value."""

    agency_type: ClassVar[str]
    #: Delivery kinds this adapter's :meth:`receive` takes (applies or files). Any other kind
    #: never reaches the adapter: one the gateway sends (:data:`GATEWAY_KINDS`) is kept by the
    #: receiver for a person (held for review, ``kind_not_handled``); one it does not send at
    #: all (a newer gateway's) is 422 ``kind_not_accepted``, so the gateway dead-letters it
    #: where its operator sees it. List only kinds :meth:`receive` handles, whatever their body.
    accepts: ClassVar[frozenset[str]]

    def to_contract(self, record: Mapping[str, Any]) -> Sequence[Outbound]:
        """Translate one record of the agency's system into gateway calls."""
        ...

    def from_contract(self, kind: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Translate a contract body into the agency system's own record shape."""
        ...

    def receive(self, delivery: Delivery) -> Receipt:
        """Apply a delivery to the agency's system; must be idempotent on ``message_id``."""
        ...


def discover() -> dict[str, importlib.metadata.EntryPoint]:
    """Installed adapters by name (not imported until :func:`load_adapter`)."""
    found = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    return {ep.name: ep for ep in found}


def load_adapter(name: str, **options: Any) -> Adapter:
    """Import and build the adapter registered under ``name``; it must satisfy the protocol."""
    entry = discover().get(name)
    if entry is None:
        raise LookupError(f"no adapter named {name!r} is installed")
    factory = entry.load()
    adapter = factory(**options)
    if not isinstance(adapter, Adapter):
        raise TypeError(f"{name!r} does not implement the Adapter protocol")
    return adapter
