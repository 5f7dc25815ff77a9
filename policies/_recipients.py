"""The redaction data (``recipients.toml``): caveats, field classification, allow-lists, the flag.

Loaded strictly: an unknown key, an allow-list field that no document classifies, two allow-lists
for the same recipient, a caveat without an effect, or a hazard flag or warning marker field
outside what the engine allows fails to load.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from gateway.domain import AgencyType, RecordKind, Role

from ._data import DataFiles, Table
from .policy import View

__all__ = [
    "DOCUMENTS",
    "HAZARD_FLAG_FIELDS",
    "WARNING_MARKER_FIELDS",
    "WARNING_MARKER_REVOCATION_FIELDS",
    "AllowList",
    "Caveat",
    "HazardFlagRules",
    "RecipientRules",
    "WarningMarkerRules",
]

_FILE = "recipients.toml"
_CODE = re.compile(r"^[a-z][a-z0-9-]{0,63}$")
#: The documents the gateway redacts (a hazard flag is built, not redacted).
DOCUMENTS = ("nominal", "record", "minutes")
#: What a hazard flag may ever be built from; the data file may narrow it, never widen it.
HAZARD_FLAG_FIELDS = ("child_or_family_ref", "relationship", "contact", "review_date")
_HAZARD_FLAG_REQUIRED = frozenset({"child_or_family_ref", "relationship", "contact"})
#: What a housing property warning marker may ever be built from (the file may narrow it).
WARNING_MARKER_FIELDS = ("uprn", "marker", "contact", "review_date")
_WARNING_MARKER_REQUIRED = frozenset({"uprn", "marker", "contact"})
#: What a warning marker revocation may carry at most: the marker's id, the property and the
#: code, which the provider already holds; the first two are needed to find what to remove.
WARNING_MARKER_REVOCATION_FIELDS = ("marker_id", "uprn", "marker")
_WARNING_MARKER_REVOCATION_REQUIRED = frozenset({"marker_id", "uprn"})
_MARKER_CODE = re.compile(r"^[A-Z]{2,8}$")
_ALLOW_VIEWS = (View.FULL, View.MONTHLY_LIST_MINIMAL, View.APPROVED_PARTS)


@dataclass(frozen=True, slots=True)
class Caveat:
    """A handling caveat and when it withholds what carries it."""

    code: str
    summary: str
    withhold_unless_originator: bool = False
    withhold_unless_roles: frozenset[Role] | None = None
    withhold_when_onward: bool = False
    withhold_for_purposes: frozenset[str] = frozenset()

    def withholds(self, *, is_originator: bool, role: Role, onward: bool, purpose: str) -> bool:
        return (
            (self.withhold_unless_originator and not is_originator)
            or (self.withhold_unless_roles is not None and role not in self.withhold_unless_roles)
            or (self.withhold_when_onward and onward)
            or purpose in self.withhold_for_purposes
        )


@dataclass(frozen=True, slots=True)
class AllowList:
    """The fields one kind of recipient receives of one document in one view."""

    id: str
    document: str
    view: View
    agency_types: frozenset[AgencyType]
    #: None: every record kind (and every non-record document).
    record_kinds: frozenset[RecordKind] | None
    fields: frozenset[str]

    @property
    def rule(self) -> str:
        return f"allow-list:{self.id}"


@dataclass(frozen=True, slots=True)
class HazardFlagRules:
    recipient_agency_types: frozenset[AgencyType]
    fields: tuple[str, ...]
    relationships: frozenset[str]


@dataclass(frozen=True, slots=True)
class WarningMarkerRules:
    """Who receives a property warning marker, its fields, and the marker codes allowed."""

    recipient_agency_types: frozenset[AgencyType]
    fields: tuple[str, ...]
    markers: frozenset[str]
    #: What a revocation carries (what the provider already holds of the marker, never the
    #: reason or the person), besides ``revoked: true``.
    revocation_fields: tuple[str, ...] = WARNING_MARKER_REVOCATION_FIELDS
    #: Whether the revocation goes to the provider even when need-to-know no longer lets it
    #: know of the nominal (rule ``warning-marker-revocation``); false: it is then not sent.
    revocation_to_any_recipient: bool = False


_Key = tuple[str, View, AgencyType, RecordKind | None]


@dataclass(frozen=True, slots=True)
class RecipientRules:
    """The loaded redaction data of one policy version."""

    policy_version: str
    caveats: Mapping[str, Caveat]
    documents: Mapping[str, frozenset[str]]
    allow_lists: tuple[AllowList, ...]
    hazard_flag: HazardFlagRules
    _index: Mapping[_Key, AllowList]
    #: Absent from the file: no agency receives warning markers (default deny).
    warning_marker: WarningMarkerRules = WarningMarkerRules(frozenset(), (), frozenset())

    def allow_list(
        self, document: str, view: View, agency_type: AgencyType, record_kind: RecordKind | None
    ) -> AllowList | None:
        """The recipient's allow-list, or None (then everything is withheld)."""
        kind = record_kind if document == "record" else None
        return self._index.get((document, view, agency_type, kind))

    @classmethod
    def from_data(cls, files: DataFiles) -> RecipientRules:
        top = files.table(_FILE)
        top.only({"caveats", "documents", "allow", "hazard_flag", "warning_marker"})
        caveats = _caveats(top.sub("caveats"))
        documents_table = top.sub("documents")
        documents: dict[str, frozenset[str]] = {}
        for name in documents_table.keys():
            if name not in DOCUMENTS:
                raise documents_table.fail(f"unknown document {name!r}")
            sub = documents_table.sub(name)
            sub.only({"fields"}, required={"fields"})
            documents[name] = frozenset(sub.strings("fields"))
        allow_lists: list[AllowList] = []
        index: dict[_Key, AllowList] = {}
        for table in top.tables("allow"):
            entry = _allow_list(table, documents)
            if any(a.id == entry.id for a in allow_lists):
                raise table.fail(f"duplicate allow-list id {entry.id}")
            allow_lists.append(entry)
            kinds: tuple[RecordKind | None, ...] = (None,)
            if entry.document == "record":
                kinds = tuple(entry.record_kinds or RecordKind)
            for agency_type in entry.agency_types:
                for kind in kinds:
                    key = (entry.document, entry.view, agency_type, kind)
                    if key in index:
                        raise table.fail(
                            f"{entry.id} overlaps {index[key].id} for {agency_type}"
                            + (f" ({kind})" if kind else "")
                        )
                    index[key] = entry
        return cls(
            policy_version=files.version,
            caveats=MappingProxyType(caveats),
            documents=MappingProxyType(documents),
            allow_lists=tuple(allow_lists),
            hazard_flag=_hazard_flag(top.sub("hazard_flag")),
            _index=MappingProxyType(index),
            warning_marker=_warning_marker(top.sub("warning_marker")),
        )


def _caveats(table: Table) -> dict[str, Caveat]:
    out = {}
    for code in table.keys():
        if not _CODE.fullmatch(code):
            raise table.fail(f"not a caveat code: {code!r}")
        sub = table.sub(code)
        sub.only(
            {
                "summary",
                "withhold_unless_originator",
                "withhold_unless_roles",
                "withhold_when_onward",
                "withhold_for_purposes",
            },
            required={"summary"},
        )
        caveat = Caveat(
            code=code,
            summary=sub.string("summary"),
            withhold_unless_originator=sub.boolean("withhold_unless_originator", False),
            withhold_unless_roles=(
                frozenset(sub.enums("withhold_unless_roles", Role))
                if sub.has("withhold_unless_roles")
                else None
            ),
            withhold_when_onward=sub.boolean("withhold_when_onward", False),
            withhold_for_purposes=frozenset(sub.strings("withhold_for_purposes", ())),
        )
        if not (
            caveat.withhold_unless_originator
            or caveat.withhold_unless_roles is not None
            or caveat.withhold_when_onward
            or caveat.withhold_for_purposes
        ):
            raise sub.fail("a caveat must withhold in some case")
        out[code] = caveat
    return out


def _allow_list(table: Table, documents: Mapping[str, frozenset[str]]) -> AllowList:
    table.only(
        {"id", "document", "view", "agency_types", "record_kinds", "fields"},
        required={"id", "document", "view", "agency_types", "fields"},
    )
    ident = table.string("id")
    if not _CODE.fullmatch(ident):
        raise table.fail(f"not an allow-list id: {ident!r}")
    document = table.string("document")
    if document not in documents:
        raise table.fail(f"{ident}: document {document!r} is not classified under [documents]")
    try:
        view = View(table.string("view"))
    except ValueError as exc:
        raise table.fail(f"{ident}: unknown view") from exc
    if view not in _ALLOW_VIEWS:
        raise table.fail(f"{ident}: the {view} view has no allow-list")
    fields = frozenset(table.strings("fields"))
    unclassified = sorted(fields - documents[document])
    if unclassified:
        raise table.fail(f"{ident}: fields not classified for {document}: {unclassified}")
    record_kinds = None
    if table.has("record_kinds"):
        if document != "record":
            raise table.fail(f"{ident}: record_kinds is only for records")
        record_kinds = frozenset(table.enums("record_kinds", RecordKind))
    agency_types = frozenset(table.enums("agency_types", AgencyType))
    if not agency_types or not fields:
        raise table.fail(f"{ident}: agency_types and fields must not be empty")
    return AllowList(ident, document, view, agency_types, record_kinds, fields)


def _hazard_flag(table: Table) -> HazardFlagRules:
    if not table:
        return HazardFlagRules(frozenset(), (), frozenset())
    table.only(
        {"recipient_agency_types", "fields", "relationships"},
        required={"recipient_agency_types", "fields", "relationships"},
    )
    fields = _fields(table, "fields", "a hazard flag", HAZARD_FLAG_FIELDS, _HAZARD_FLAG_REQUIRED)
    return HazardFlagRules(
        recipient_agency_types=frozenset(table.enums("recipient_agency_types", AgencyType)),
        fields=fields,
        relationships=frozenset(table.strings("relationships")),
    )


def _fields(
    table: Table,
    key: str,
    what: str,
    allowed: tuple[str, ...],
    required: frozenset[str],
    default: tuple[str, ...] | None = None,
) -> tuple[str, ...]:
    """A built document's field list: within what the engine ``allowed``, with the
    ``required`` ones; a load error otherwise."""
    fields = table.strings(key, default)
    beyond = sorted(set(fields) - set(allowed))
    if beyond:
        raise table.fail(f"{what} may not carry {beyond}")
    missing = sorted(required - set(fields))
    if missing:
        raise table.fail(f"{what} needs {missing}")
    return fields


def _warning_marker(table: Table) -> WarningMarkerRules:
    if not table:
        return WarningMarkerRules(frozenset(), (), frozenset())
    table.only(
        {
            "recipient_agency_types",
            "fields",
            "markers",
            "revocation_fields",
            "revocation_to_any_recipient",
        },
        required={"recipient_agency_types", "fields", "markers"},
    )
    fields = _fields(
        table, "fields", "a warning marker", WARNING_MARKER_FIELDS, _WARNING_MARKER_REQUIRED
    )
    markers = frozenset(table.strings("markers"))
    if not markers or not all(_MARKER_CODE.fullmatch(m) for m in markers):
        raise table.fail("markers are 2 to 8 capital letters, at least one")
    revocation = _fields(
        table,
        "revocation_fields",
        "a warning marker revocation",
        WARNING_MARKER_REVOCATION_FIELDS,
        _WARNING_MARKER_REVOCATION_REQUIRED,
        default=WARNING_MARKER_REVOCATION_FIELDS,
    )
    return WarningMarkerRules(
        recipient_agency_types=frozenset(table.enums("recipient_agency_types", AgencyType)),
        fields=fields,
        markers=markers,
        revocation_fields=revocation,
        revocation_to_any_recipient=table.boolean("revocation_to_any_recipient", False),
    )
