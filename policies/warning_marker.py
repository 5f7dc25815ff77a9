"""The housing property warning marker: built from its allow-list alone, like the hazard flag.

A warning marker tells a housing provider to take care at a property (its UPRN): a marker code
from a fixed vocabulary (``PWM``), a contact and a review date. It names a property, never a
person: no name, no offence, no intelligence, no third party can reach it whatever the source
holds, because the marker is built from the ``[warning_marker]`` fields of ``recipients.toml``
(within what the engine allows, :data:`WARNING_MARKER_FIELDS`) and every other field of the
source is withheld, recorded with the rule. A value that could smuggle details (a UPRN that is
not a number, a marker code outside the vocabulary) fails the build: nothing is sent; a contact
that is not a role with a number or an address (one stored before contacts had that shape) is
withheld, and the marker goes without it.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._recipients import WARNING_MARKER_FIELDS, RecipientRules
from .errors import RedactionFailed
from .facts import CallerAgency
from .flag_values import contact_of, contact_problem
from .redaction_steps import Withheld

__all__ = [
    "RULE_WARNING_MARKER",
    "RULE_WARNING_MARKER_REVOCATION",
    "WARNING_MARKER_FIELDS",
    "WarningMarker",
    "build_warning_marker",
]

RULE_WARNING_MARKER = "warning-marker-allow-list"
#: The rule under which a revocation goes to a provider need-to-know no longer lets know of the
#: nominal (``revocation_to_any_recipient`` in ``[warning_marker]`` of ``recipients.toml``).
RULE_WARNING_MARKER_REVOCATION = "warning-marker-revocation"
_UPRN = re.compile(r"^[0-9]{1,12}$")


@dataclass(frozen=True, slots=True)
class WarningMarker:
    """A built marker, what of the source was withheld (names and rule), and the version."""

    document: Mapping[str, Any]
    withheld: tuple[Withheld, ...]
    rule: str
    policy_version: str


def _value(name: str, value: object, markers: frozenset[str]) -> Any:
    if name == "contact":  # a role with a number or an address, never text (policies.flag_values)
        return contact_of(value)
    if not isinstance(value, str):
        raise ValueError(f"warning marker {name} must be text")
    if name == "uprn" and not _UPRN.fullmatch(value):
        raise ValueError("uprn must be the property's UPRN (1 to 12 digits)")
    if name == "marker" and value not in markers:
        raise ValueError("marker is not in the vocabulary")
    if name == "review_date":
        try:
            return dt.date.fromisoformat(value).isoformat()
        except ValueError as exc:
            raise ValueError("review_date must be an ISO date") from exc
    return value


def build_warning_marker(
    recipient: CallerAgency,
    source: Mapping[str, Any],
    *,
    rules: RecipientRules | None = None,
) -> WarningMarker:
    """The marker for ``recipient`` from ``source``'s allow-listed fields, or RedactionFailed."""
    if rules is None:
        from .policy_set import default_policy_set  # late: the set imports the rules

        rules = default_policy_set().recipients
    allowed = rules.warning_marker

    def failed(why: str) -> RedactionFailed:
        return RedactionFailed(why, rule=RULE_WARNING_MARKER, policy_version=rules.policy_version)

    if recipient.agency_type not in allowed.recipient_agency_types:
        raise failed(f"{recipient.agency_type} does not receive warning markers")
    if not allowed.fields:
        raise failed("no warning marker allow-list is configured")
    marker: dict[str, Any] = {}
    for name in allowed.fields:
        value = source.get(name)
        if value is None:
            if name == "review_date":
                continue
            raise failed(f"a warning marker needs {name}")
        if name == "contact" and contact_problem(value) is not None:
            # stored before contacts had a shape (free text): withheld, never sent; new ones
            # are refused at the contract
            continue
        try:
            marker[name] = _value(name, value, allowed.markers)
        except ValueError as exc:
            raise failed(str(exc)) from exc
    withheld = tuple(Withheld(name, RULE_WARNING_MARKER) for name in source if name not in marker)
    return WarningMarker(marker, withheld, RULE_WARNING_MARKER, rules.policy_version)
