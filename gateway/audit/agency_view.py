"""What an agency's audit reader (a MAPPA co-ordination unit with ``audit:read``) sees of the log.

The stored entry is complete, and an IG officer's console reads it whole. An agency reading
through the API sees an entry about a nominal (its ``nominal_ref``) only if need-to-know
(`gateway.flow.need_to_know.decide`, category 4 included) lets it know of that nominal now, at
the moment of the read; a reference to a nominal that does not exist is one it may not know.
Of the entries about a nominal it may not know, it sees only its own refusals that answered
404. Every one of its own refusals that answered 404 (``detail.code`` ``not_found``), whatever
the nominal, even one it may know (a caveat refusal: to it, the document does not exist; a
disclosure or action it may not read), reads as its refusal about a nominal that does not exist
reads to it: no nominal, rule ``resource-exists``, reason ``not_found``, the detail only what it
was answered (problem code and route), no leaf hash, no inclusion proof. So a 404 about a hidden
nominal, a hidden record and an unknown id are the same bytes. The stored refusal's detail holds
a secret salt (`gateway.flow.audit.SALT_KEY`) the reshaped form leaves out: every leaf hash is
public (consistency and inclusion proofs hold leaves), and without the salt the agency could
rebuild the entry a guess would have stored, hash it and find it among them. Everything else
about a nominal it may not know is left out.

An entry about several nominals (a page of the level 1 list: no ``nominal_ref``, the nominals'
ids in ``record_refs``) is seen whole only if the agency may know every nominal it lists.
Otherwise it is seen without the ids of those it may not know (a category 4 nominal on the
police's list, to a unit not named for category 4), and with no leaf hash, no inclusion proof
and no evidence of origin, as the entry it sees is not the one stored, and without its salt
(every entry that names records has one), which would let it test a suspected id by putting it
back and hashing the entry.

An entry that names an information record (in ``record_refs``: a read, a list, a write, a push
of it) is seen whole only if the agency may know that record exists: need-to-know for the record
(its kind, its nominal) and none of the record's handling caveats withholding the whole record
from it (for no purpose in particular: a caveat that withholds it for some purposes only does
not hide that it exists). Otherwise it is seen without that record's id (nor the rule a list
records for it, nor the fields withheld from it), with no leaf hash and no inclusion proof; an
entry that names it anywhere else (a refusal's route) is left out. Limit: only information
records are decided so; other ids an entry names (a meeting's, an action's, a message's) are
shown as stored.

An entry that names no nominal is seen as the area scope (`gateway.audit.search.of_area`)
allows.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

import policies
from gateway import errors
from gateway.audit.log import entry_record
from gateway.audit.verify import LEAF_HASH_KEY
from gateway.cases import level1
from gateway.cases.context import answered_fields
from gateway.flow import need_to_know
from gateway.flow.audit import SALT_KEY, Outcome
from gateway.store.models import AuditEntry, InformationRecord, Nominal

__all__ = ["AgencyView"]

#: The problem code of a 404, as a refusal's detail records it.
_NOT_FOUND: Final = errors.NotFound.code


@dataclass(slots=True)
class AgencyView:
    """One agency's reading of the audit log at one moment (decisions kept for the request)."""

    agency: policies.CallerAgency
    now: dt.datetime
    _knows: dict[str, bool] = field(default_factory=dict)
    #: The nominals each entry about several lists, by entry id (read by `_decide_rows`).
    _listed: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: Whether the agency may know of each information record an entry names, by record id.
    _records: dict[str, bool] = field(default_factory=dict)
    #: The nominals read by `decide`, by id (their records are decided against them).
    _nominals: dict[str, Nominal] = field(default_factory=dict)

    async def decide(self, session: AsyncSession, refs: Iterable[str | None]) -> None:
        """Decide need-to-know once for each nominal of ``refs`` not decided yet: one read of
        those nominals, then the engine for each (involvements only where it needs them)."""
        wanted = {ref for ref in refs if ref is not None and ref not in self._knows}
        if not wanted:
            return
        found = (await session.scalars(select(Nominal).where(Nominal.id.in_(wanted)))).all()
        for nominal in found:
            self._nominals[nominal.id] = nominal
            try:
                await need_to_know.decide(
                    session, self.agency, nominal, policies.NominalTarget(), self.now
                )
            except errors.NotFound:
                self._knows[nominal.id] = False
            else:
                self._knows[nominal.id] = True
        for ref in wanted:
            self._knows.setdefault(ref, False)

    def knows(self, ref: str) -> bool:
        """Whether the agency may know of nominal ``ref`` (decided by :meth:`decide`)."""
        return self._knows[ref]

    async def seen(
        self, session: AsyncSession, rows: Sequence[AuditEntry]
    ) -> list[dict[str, object] | None]:
        """Each row as this agency sees it, or None where it sees nothing of it."""
        await self._decide_rows(session, rows)
        return [self._seen(row) for row in rows]

    async def sees_whole(self, session: AsyncSession, row: AuditEntry) -> bool:
        """Whether the agency sees ``row`` as stored, its nominals decided first (one entry:
        an inclusion proof, evidence of origin)."""
        await self._decide_rows(session, (row,))
        return self.in_full(row)

    async def _decide_rows(self, session: AsyncSession, rows: Sequence[AuditEntry]) -> None:
        """Decide the nominal of each row, each nominal a page of the level 1 list names, and
        each information record a row names."""
        for row in rows:
            if row.nominal_ref is None and row.rule == level1.RULE:  # its refs are nominals'
                refs = row.record_refs or ()
                self._listed[row.entry_id] = tuple(ref for ref in refs if isinstance(ref, str))
        refs = [row.nominal_ref for row in rows]
        refs += [ref for row in rows for ref in self._listed.get(row.entry_id, ())]
        await self.decide(session, refs)
        await self._decide_records(session, rows)

    async def _decide_records(self, session: AsyncSession, rows: Sequence[AuditEntry]) -> None:
        """Decide once each information record the rows name: whether the agency may know it."""
        named = {ref for row in rows for ref in row.record_refs or () if isinstance(ref, str)}
        unread = named - self._records.keys()
        if not unread:
            return
        found = (
            await session.scalars(
                select(InformationRecord).where(InformationRecord.id.in_(sorted(unread)))
            )
        ).all()
        await self.decide(session, {record.nominal_id for record in found})
        tied: dict[str, policies.Involvements] = {}
        for record in found:
            self._records[record.id] = await self._may_know_record(session, record, tied)
        for ref in unread:
            self._records.setdefault(ref, True)  # no information record: not decided here

    async def _may_know_record(
        self,
        session: AsyncSession,
        record: InformationRecord,
        tied: dict[str, policies.Involvements],
    ) -> bool:
        if not self.knows(record.nominal_id):
            return False
        nominal = self._nominals[record.nominal_id]
        if nominal.id not in tied:
            tied[nominal.id] = await need_to_know.involvements(session, self.agency.id, nominal.id)
        target = policies.RecordTarget(record.id, record.owner_agency_id, record.kind)
        try:
            decision = need_to_know.decide_with(
                self.agency, nominal, target, self.now, tied[nominal.id]
            )
        except errors.NotFound:
            return False
        context = policies.RedactionContext.for_decision(
            decision,
            self.agency,
            "",  # no purpose: a caveat for some purposes only does not hide that it exists
            originator_agency_id=record.owner_agency_id,
            record_kind=record.kind,
        )
        return policies.document_caveat_rule(context, record.caveats or ()) is None

    def _hidden(self, row: AuditEntry) -> set[str]:
        """The ids the entry names that the agency may not know: nominals it lists, records."""
        hidden = {ref for ref in self._listed.get(row.entry_id, ()) if not self.knows(ref)}
        hidden.update(ref for ref in row.record_refs or () if self._records.get(ref) is False)
        return hidden

    def in_full(self, row: AuditEntry) -> bool:
        """Whether the agency sees the entry as stored (and so may have its inclusion proof)."""
        if self._own_not_found(row):
            return False
        ref = row.nominal_ref
        if ref is not None and not self.knows(ref):
            return False
        return not self._hidden(row)

    def _own_not_found(self, row: AuditEntry) -> bool:
        detail = row.detail or {}
        return (
            row.agency_id == self.agency.id
            and row.outcome == Outcome.REFUSED
            and detail.get("code") == _NOT_FOUND
        )

    def _seen(self, row: AuditEntry) -> dict[str, object] | None:
        if self._own_not_found(row):
            return _as_not_found(row)
        if row.nominal_ref is not None and not self.knows(row.nominal_ref):
            return None
        record = entry_record(row)
        hidden = self._hidden(row)
        if not hidden:
            return record
        # Not the entry stored: without those ids, and no leaf hash to prove it by. A list's
        # entry names its records in two more places: the rule that let each be seen, by id,
        # and the fields withheld from each (``records[<id>].field``).
        record["record_refs"] = [ref for ref in row.record_refs if ref not in hidden]
        detail = {k: v for k, v in (row.detail or {}).items() if k != SALT_KEY}
        rules = detail.get("rules")
        if isinstance(rules, dict):
            detail["rules"] = {k: v for k, v in rules.items() if k not in hidden}
        record["detail"] = detail
        record["withheld"] = [
            w for w in row.withheld or () if not any(ref in str(w) for ref in hidden)
        ]
        record[LEAF_HASH_KEY] = None
        text = json.dumps(record, default=str)
        if any(ref in text for ref in hidden):  # anywhere else (a refusal's route): left out
            return None
        return record


def _as_not_found(row: AuditEntry) -> dict[str, object]:
    """The agency's own 404 refusal as a refusal about a nominal that does not exist reads to
    it (built from `need_to_know.not_found`, through the refusal's own audit fields)."""
    record = entry_record(row)
    route = str((row.detail or {}).get("route", ""))
    record.update(answered_fields(need_to_know.not_found("nominal"), route))
    record.update(nominal_ref=None, record_refs=[], recipients=[], withheld=[])
    record[LEAF_HASH_KEY] = None
    return record
