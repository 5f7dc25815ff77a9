"""Case data at rest: sealed columns and blind indexes, from one place.

Every column that holds personal data (a nominal's details, a referral's details, a record's
body, minutes, an action's description, a hazard flag's details, a disclosure request's
details, a stored idempotent answer) holds the canonical JSON of its value sealed with
:class:`keys.Envelope` under a fresh data key per value, the data key wrapped by the gateway's
KEK. The associated data names the table, the row id and the column, so a sealed value copied
into another row or column does not open. Identifiers partners search by (PNC, CRN, ViSOR) are
stored as :class:`keys.BlindIndex` hashes only.

:class:`CaseSealer` is built once in the app's lifespan (:func:`install_case_store`) from the
same KEK and key directory as the key rings, and shared by every request.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from gateway import errors
from gateway.keyring import KeyRepositoryUnavailable, open_envelope_for
from gateway.logs import get_logger
from gateway.settings import Settings
from keys import BlindIndex, Envelope, KeysError, load_blind_index

if TYPE_CHECKING:
    from gateway.state import GatewayState

__all__ = ["CaseSealer", "canonical_json", "install_case_store", "open_case_sealer"]

log = get_logger("gateway.store")


def canonical_json(value: Mapping[str, Any]) -> bytes:
    """Sorted keys, no insignificant whitespace, UTF-8: the same value gives the same bytes."""
    return json.dumps(
        value, ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False
    ).encode("utf-8")


def _aad(table: str, row_id: str, column: str) -> bytes:
    return b"\x00".join((b"mappa-case/v1", table.encode(), row_id.encode(), column.encode()))


class CaseSealer:
    """Seals and opens case-data columns; computes blind indexes of identifiers."""

    __slots__ = ("_blind", "_envelope")

    def __init__(self, envelope: Envelope, blind_index: BlindIndex) -> None:
        self._envelope = envelope
        self._blind = blind_index

    def __repr__(self) -> str:
        return f"CaseSealer(kek_id={self._envelope.kek_id!r})"

    def seal(self, table: str, row_id: str, column: str, value: Mapping[str, Any]) -> bytes:
        """The sealed canonical JSON of ``value`` for this table, row and column."""
        return self._envelope.seal(canonical_json(value), _aad(table, row_id, column))

    def unseal(self, table: str, row_id: str, column: str, blob: bytes | None) -> dict[str, Any]:
        """Open a sealed column; a value moved from elsewhere or tampered with does not open,
        and neither does one erased (None: the nominal's case data was erased, and nothing
        should have asked for it)."""
        if blob is None:
            raise errors.CaseDataUnreadable(
                diagnostics={"table": table, "column": column, "reason": "erased"}
            )
        try:
            value = json.loads(self._envelope.unseal(bytes(blob), _aad(table, row_id, column)))
        except (KeysError, ValueError) as exc:
            raise errors.CaseDataUnreadable(
                diagnostics={"table": table, "row_id": row_id[:64], "column": column}
            ) from exc
        if not isinstance(value, dict):
            raise errors.CaseDataUnreadable(diagnostics={"table": table, "column": column})
        return value

    def index(self, kind: str, value: str) -> str:
        """The blind index of identifier ``value`` of ``kind`` (``pnc``, ``crn``, ``visor``)."""
        return self._blind.index(kind, value)


def open_case_sealer(settings: Settings) -> CaseSealer:
    """The case sealer over the configured KEK and the key directory's blind-index secret.

    Values are sealed under the current KEK and opened under it or any previous KEK
    (``MAPPA_PREVIOUS_KEKS``, ``_KEK_FILES``), while ``mappa-gateway db rewrap-case-data``
    moves them.

    The secret is generated when missing in the ``development`` profile only, like every other
    key (:mod:`gateway.keyring`). Elsewhere a missing or unreadable secret is an error (the
    production profile refuses to start, others answer 503 for case data), never a new secret:
    a new one would match no stored PNC/CRN/ViSOR index, so lookups would miss and a known
    subject would be registered a second time.
    """
    try:
        envelope = open_envelope_for(settings)
        blind_index = load_blind_index(
            settings.keys_dir, envelope, create=settings.profile == "development"
        )
        return CaseSealer(envelope, blind_index)
    except KeysError as exc:
        raise KeyRepositoryUnavailable(f"case sealer: {exc.code}: {exc.reason}") from exc


def install_case_store(state: GatewayState) -> None:
    """Build the case sealer and the group committer once; without the sealer no case data is
    stored or read (503)."""
    from gateway.flow.group_commit import GroupCommitter

    state.commits = GroupCommitter(state.db)
    try:
        state.case_sealer = open_case_sealer(state.settings)
    except KeyRepositoryUnavailable as exc:
        if state.settings.profile == "production":
            raise
        log.warning("case_sealer_unavailable", reason=str(exc)[:300])
        return
    state.loaded_key_purposes.add("case_data")
