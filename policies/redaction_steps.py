"""The redaction steps and what they work on: context, draft, withheld field.

A :data:`Step` takes the :class:`RedactionContext` (who receives what, in which view, for which
purpose, under which rules) and a :class:`Draft` (the fields so far and what has been withheld),
and returns a draft with no more than it was given, every field it removes recorded as a
:class:`Withheld` (the field's name and the rule, never its value), as structlog's processors
take and return the event dict. A step raises :class:`MalformedDocument` (or anything else) when
it cannot redact safely; :func:`policies.redaction.redact` then fails the whole redaction.

Third-party content is carried in the document's ``sources`` list (each source with
``third_party``, ``released`` and optionally ``originator_agency_id``; a source that does not say
``"third_party": false`` is treated as third party; ``released`` counts only when the source's
originator is the document's author) and in list items that cite a source
(``"source": id`` or ``"sources": [ids]``); an item citing a withheld or unknown source is
withheld with it. Handling caveats sit on the document (``caveats``) or on a list item.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeAlias

from gateway.domain import AgencyType, RecordKind, Role

from ._recipients import RecipientRules
from .facts import APPROVABLE_PARTS, CallerAgency, Resource
from .flag_values import contact_of, contact_problem, reference_problem
from .need_to_know import Decision
from .policy import View

__all__ = [
    "HAZARD_FLAG",
    "HAZARD_STATEMENT",
    "Draft",
    "MalformedDocument",
    "RedactionContext",
    "Step",
    "Withheld",
    "apply_allow_list",
    "build_hazard_flag",
    "document_caveat_rule",
    "honour_caveats",
    "select_approved_parts",
    "withheld_entry",
    "withhold_every_third_party_source",
    "withhold_third_party_sources",
]

RULE_THIRD_PARTY = "third-party-source"
RULE_UNCLASSIFIED = "unclassified-field"
RULE_NO_ALLOW_LIST = "no-allow-list"
RULE_CAVEAT_UNKNOWN = "caveat-unknown"
RULE_HAZARD_FLAG = "hazard-flag-allow-list"
RULE_NOT_APPROVED = "onward-disclosure-approved-parts"
HAZARD_FLAG = "HZD"
HAZARD_STATEMENT = "known to MAPPA"
_DOCUMENT_OF = {
    Resource.NOMINAL: "nominal",
    Resource.LEVEL_1_LIST: "nominal",
    Resource.RECORD: "record",
    Resource.MINUTES: "minutes",
}
_VIEWS = {
    Resource.NOMINAL: {View.FULL},
    Resource.RECORD: {View.FULL},
    Resource.MINUTES: {View.FULL, View.APPROVED_PARTS},
    Resource.HAZARD_FLAG: {View.FULL, View.HAZARD_FLAG_ONLY},
    Resource.LEVEL_1_LIST: {View.MONTHLY_LIST_MINIMAL},
}
#: What the approved view keeps beside the approved parts: the meeting reference and marking.
_APPROVED_VIEW_REFERENCE = ("meeting_id", "held_on", "marking")
_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9/_.-]{0,63}$")


class MalformedDocument(ValueError):
    """A step met a document it cannot redact safely; the message names fields, never values."""


@dataclass(frozen=True, slots=True)
class Withheld:
    """A field withheld from a disclosure and the rule that withheld it (never its value)."""

    field: str
    rule: str


@dataclass(frozen=True, slots=True)
class Draft:
    """A document part-way through the chain: its (frozen) fields and what has been withheld.

    ``origin`` is the document as the chain received it (None: these ``fields`` are it), so
    that a list entry withheld by a later step is named by its place in the sender's document,
    not in a list an earlier step has already shortened."""

    fields: Mapping[str, Any]
    withheld: tuple[Withheld, ...] = ()
    origin: Mapping[str, Any] | None = None

    def reduced(self, fields: Mapping[str, Any], withheld: Iterable[Withheld]) -> Draft:
        """The next draft: ``fields`` kept, ``withheld`` added to the record."""
        origin = self.fields if self.origin is None else self.origin
        return Draft(MappingProxyType(dict(fields)), self.withheld + tuple(withheld), origin)

    def entry_name(self, name: str, item: object, index: int) -> str:
        """The withheld name of ``item``, found at ``index`` of the list ``name`` now: its
        place in the list as the document came in (:func:`withheld_entry`)."""
        original = (self.fields if self.origin is None else self.origin).get(name)
        if isinstance(original, tuple):
            index = next((at for at, entry in enumerate(original) if entry is item), index)
        return withheld_entry(name, index)


def withheld_entry(name: str, index: int) -> str:
    """The audit's name for the entry at ``index`` (from 0) of the document's list ``name``:
    ``sources[#2]`` is the second source, counted from 1 as the sender listed them.

    Never the entry's id: a source's or item's id is text the sender chose (up to 32
    characters, room for an informant's name), and the audit must not hold what it withheld
    nor personal data. A position serves the IG officer better than a keyed hash would: the
    originating agency finds the entry in its own copy of the document by counting, where a
    hash could only be checked by whoever holds the key, and a hash of a short guessable id
    can be confirmed by anyone who can compute it."""
    return f"{name}[#{index + 1}]"


def _default_rules() -> RecipientRules:
    from .policy_set import default_policy_set  # late: the set imports this module

    return default_policy_set().recipients


@dataclass(frozen=True, slots=True)
class RedactionContext:
    """Who receives the document, of which resource, in which view, for which purpose."""

    recipient_agency_id: str
    recipient_agency_type: AgencyType
    recipient_role: Role
    resource: Resource
    view: View
    purpose: str
    #: The agency that supplied the document (a record's owner, the minutes' author).
    originator_agency_id: str | None = None
    record_kind: RecordKind | None = None
    rules: RecipientRules = field(default_factory=_default_rules, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.recipient_agency_type, AgencyType):
            raise ValueError("recipient_agency_type must be an AgencyType")
        if not isinstance(self.recipient_role, Role):
            raise ValueError("recipient_role must be a Role")
        if self.view not in _VIEWS.get(self.resource, set()):
            raise ValueError(f"no {self.view} view of {self.resource}")
        if (self.resource is Resource.RECORD) != (self.record_kind is not None):
            raise ValueError("a record_kind is given for records, and only for records")

    @classmethod
    def for_decision(
        cls,
        decision: Decision,
        caller: CallerAgency,
        purpose: str,
        *,
        originator_agency_id: str | None = None,
        record_kind: RecordKind | None = None,
        rules: RecipientRules | None = None,
    ) -> RedactionContext:
        """The context for disclosing what a need-to-know ``decision`` granted to ``caller``."""
        return cls(
            recipient_agency_id=caller.id,
            recipient_agency_type=caller.agency_type,
            recipient_role=caller.role,
            resource=decision.resource,
            view=decision.view,
            purpose=purpose,
            originator_agency_id=originator_agency_id,
            record_kind=record_kind,
            rules=rules or _default_rules(),
        )

    @property
    def onward(self) -> bool:
        """Whether this is an onward disclosure beyond the meeting's participants."""
        return self.view is View.APPROVED_PARTS

    @property
    def policy_version(self) -> str:
        return self.rules.policy_version


#: A redaction step: ``(context, draft) -> draft``. It returns no more than it was given and
#: records each field it removes as a :class:`Withheld`; it raises to fail the whole redaction.
Step: TypeAlias = Callable[[RedactionContext, Draft], Draft]


# ------------------------------------------------------------------------------- the steps


def withhold_third_party_sources(context: RedactionContext, draft: Draft) -> Draft:
    """Withhold third-party sources from all but their originator, unless it released them."""
    return _third_party(context, draft, strict=False)


def withhold_every_third_party_source(context: RedactionContext, draft: Draft) -> Draft:
    """Withhold every third-party source, released or not (for onward disclosure)."""
    return _third_party(context, draft, strict=True)


def honour_caveats(context: RedactionContext, draft: Draft) -> Draft:
    """Withhold a document, or a list item, whose handling caveats forbid this disclosure."""
    rule = _caveat_rule(context, draft.fields.get("caveats"), context.originator_agency_id)
    if rule is not None:
        return draft.reduced({}, (Withheld(name, rule) for name in draft.fields))
    fields: dict[str, Any] = {}
    withheld: list[Withheld] = []
    for name, value in draft.fields.items():
        if not isinstance(value, tuple):
            fields[name] = value
            continue
        kept = []
        for index, item in enumerate(value):
            if isinstance(item, Mapping) and "caveats" in item:
                originator = item.get("originator_agency_id") or context.originator_agency_id
                item_rule = _caveat_rule(context, item["caveats"], originator)
                if item_rule is not None:
                    withheld.append(Withheld(draft.entry_name(name, item, index), item_rule))
                    continue
            kept.append(item)
        fields[name] = tuple(kept)
    return draft.reduced(fields, withheld)


def apply_allow_list(context: RedactionContext, draft: Draft) -> Draft:
    """Keep only the recipient's allow-listed fields; withhold the rest, unclassified included."""
    rules = context.rules
    document = _DOCUMENT_OF.get(context.resource)
    if document is None:
        raise MalformedDocument(f"no allow-list applies to {context.resource}")
    classified = rules.documents.get(document, frozenset())
    allow = rules.allow_list(
        document, context.view, context.recipient_agency_type, context.record_kind
    )
    fields: dict[str, Any] = {}
    withheld: list[Withheld] = []
    for name, value in draft.fields.items():
        if name not in classified:
            withheld.append(Withheld(name, RULE_UNCLASSIFIED))
        elif allow is None:
            withheld.append(Withheld(name, RULE_NO_ALLOW_LIST))
        elif name not in allow.fields:
            withheld.append(Withheld(name, allow.rule))
        else:
            fields[name] = value
    return draft.reduced(fields, withheld)


def select_approved_parts(approved_parts: Sequence[str]) -> Step:
    """A step keeping the meeting reference and exactly ``approved_parts`` of the minutes."""
    whole: set[str] = set()
    items: dict[str, set[str]] = {}
    for part in approved_parts:
        name, slash, item = part.partition("/")
        if name not in APPROVABLE_PARTS or (slash and not item):
            raise ValueError(f"not an approvable part: {part!r}")
        if slash:
            items.setdefault(name, set()).add(item)
        else:
            whole.add(name)

    def select_approved(context: RedactionContext, draft: Draft) -> Draft:
        fields: dict[str, Any] = {}
        withheld: list[Withheld] = []
        for name, value in draft.fields.items():
            if name in _APPROVED_VIEW_REFERENCE or name in whole:
                fields[name] = value
            elif name in items:
                if not isinstance(value, tuple):
                    raise MalformedDocument(f"{name} must be a list")
                kept = []
                for index, entry in enumerate(value):
                    ident = entry.get("id") if isinstance(entry, Mapping) else None
                    if isinstance(ident, str) and ident in items[name]:
                        kept.append(entry)
                    else:
                        withheld.append(
                            Withheld(draft.entry_name(name, entry, index), RULE_NOT_APPROVED)
                        )
                fields[name] = tuple(kept)
            else:
                withheld.append(Withheld(name, RULE_NOT_APPROVED))
        return draft.reduced(fields, withheld)

    return select_approved


def build_hazard_flag(context: RedactionContext, draft: Draft) -> Draft:
    """Build the children's services ``HZD`` flag from its allow-list alone; withhold the rest."""
    rules = context.rules.hazard_flag
    if (
        context.view is View.HAZARD_FLAG_ONLY
        and context.recipient_agency_type not in rules.recipient_agency_types
    ):
        raise MalformedDocument(f"{context.recipient_agency_type} does not receive hazard flags")
    if not rules.fields:
        raise MalformedDocument("no hazard flag allow-list is configured")
    source = draft.fields
    flag: dict[str, Any] = {}
    for name in rules.fields:
        value = source.get(name)
        if value is None:
            if name == "review_date":
                continue
            raise MalformedDocument(f"a hazard flag needs {name}")
        if name == "contact" and contact_problem(value) is not None:
            # stored before contacts had a shape (free text): withheld, never sent; new ones
            # are refused at the contract
            continue
        flag[name] = _flag_value(name, value, rules.relationships)
    built = {
        "child_or_family_ref": flag["child_or_family_ref"],
        "flag": HAZARD_FLAG,
        "relationship": flag["relationship"],
        "statement": HAZARD_STATEMENT,
        **({"contact": flag["contact"]} if "contact" in flag else {}),
        **({"review_date": flag["review_date"]} if "review_date" in flag else {}),
    }
    withheld = [Withheld(name, RULE_HAZARD_FLAG) for name in source if name not in flag]
    return draft.reduced(built, withheld)


# ------------------------------------------------------------------------------- internals


def _item_id(item: object, index: int) -> str:
    """The id a list item cites a source by, to match citations; never a withheld name."""
    ident = item.get("id") if isinstance(item, Mapping) else None
    return ident if isinstance(ident, str) and _REF.fullmatch(ident) else str(index)


def _flag(source: Mapping[str, Any], key: str, default: bool) -> bool:
    value = source.get(key, default)
    if not isinstance(value, bool):
        raise MalformedDocument(f"source {key} must be true or false")
    return value


def _third_party(context: RedactionContext, draft: Draft, *, strict: bool) -> Draft:
    sources = draft.fields.get("sources", ())
    if not isinstance(sources, tuple):
        raise MalformedDocument("sources must be a list")
    kept_sources = []
    visible: set[str] = set()
    withheld: list[Withheld] = []
    for index, source in enumerate(sources):
        if not isinstance(source, Mapping):
            raise MalformedDocument("each source must be an object")
        ident = _item_id(source, index)
        third_party = _flag(source, "third_party", True)
        released = _flag(source, "released", False)
        own = source.get("originator_agency_id")
        originator = own or context.originator_agency_id
        is_originator = originator is not None and originator == context.recipient_agency_id
        # Only the originator releases its source. The document's author wrote ``released``, so
        # it counts for a source the author brought (no originator of its own, or the author
        # named), never for one the author attributes to another agency (fail closed: also
        # when the author is not known).
        released = released and (own is None or own == context.originator_agency_id)
        if third_party and (strict or not (released or is_originator)):
            withheld.append(Withheld(draft.entry_name("sources", source, index), RULE_THIRD_PARTY))
        else:
            kept_sources.append(source)
            visible.add(ident)
    fields: dict[str, Any] = {}
    for name, value in draft.fields.items():
        if name == "sources":
            fields[name] = tuple(kept_sources)
        elif isinstance(value, tuple):
            kept = []
            for index, item in enumerate(value):
                cited = _cited(item)
                if cited and not cited <= visible:
                    withheld.append(Withheld(draft.entry_name(name, item, index), RULE_THIRD_PARTY))
                else:
                    kept.append(item)
            fields[name] = tuple(kept)
        else:
            fields[name] = value
    return draft.reduced(fields, withheld)


def _cited(item: object) -> set[str]:
    if not isinstance(item, Mapping):
        return set()
    cited: set[str] = set()
    if "source" in item:
        cited.add(str(item["source"]))
    if "sources" in item:
        many = item["sources"]
        if not isinstance(many, tuple):
            raise MalformedDocument("an item's sources must be a list")
        cited.update(str(s) for s in many)
    return cited


def document_caveat_rule(context: RedactionContext, caveats: Sequence[str]) -> str | None:
    """The rule of the first of a whole document's ``caveats`` that withholds it from the
    context's recipient (:func:`honour_caveats` would withhold every field), or None: for
    deciding whether a recipient may know the document exists without unsealing it."""
    return _caveat_rule(context, tuple(caveats), context.originator_agency_id)


def _caveat_rule(context: RedactionContext, caveats: object, originator: object) -> str | None:
    """The rule of the first caveat that withholds, or None."""
    if caveats is None:
        return None
    if not isinstance(caveats, tuple) or not all(isinstance(c, str) for c in caveats):
        raise MalformedDocument("caveats must be a list of codes")
    for code in caveats:
        caveat = context.rules.caveats.get(code)
        if caveat is None:
            return RULE_CAVEAT_UNKNOWN
        if caveat.withholds(
            is_originator=originator is not None and originator == context.recipient_agency_id,
            role=context.recipient_role,
            onward=context.onward,
            purpose=context.purpose,
        ):
            return f"caveat:{code}"
    return None


def _flag_value(name: str, value: object, relationships: frozenset[str]) -> Any:
    if name == "contact":  # a role with a number or an address, never text (policies.flag_values)
        try:
            return contact_of(value)
        except ValueError as exc:
            raise MalformedDocument(str(exc)) from exc
    if not isinstance(value, str):
        raise MalformedDocument(f"hazard flag {name} must be text")
    if name == "child_or_family_ref":
        why = reference_problem(value)
        if why is not None:
            raise MalformedDocument(why)
    elif name == "relationship":
        if value not in relationships:
            raise MalformedDocument("relationship is not in the vocabulary")
    elif name == "review_date":
        try:
            return dt.date.fromisoformat(value).isoformat()
        except ValueError as exc:
            raise MalformedDocument("review_date must be an ISO date") from exc
    return value
