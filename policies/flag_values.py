"""What a hazard flag or a property warning marker may carry beyond codes and dates: the child's
or family's reference, and a contact (whom to call, never what about).

The reference is a reference, not a description: up to two short upper-case letter codes and a
number (``ICS-FAM-55821``, ``ICS/778812``, ``FAM-20931``), optionally a short suffix; no spaces,
no lower case, no word longer than four letters (:data:`CHILD_OR_FAMILY_REF`). It cannot hold a
sentence, a name or an offence, only a code a determined sender could spell in four letters.

A flag or a marker may carry nothing about the person, their offences, intelligence or third
parties, so its contact is not free text: it is a role from a fixed vocabulary
(:class:`ContactRole`) with a UK telephone number and/or a public-sector email address, each of a
strict shape, and nothing else (no name, no sentence, no second line). The contract refuses any
other contact (422 ``validation_failed`` naming the field, never the value), and the policies'
builders withhold one (:func:`contact_problem`): a contact stored before this shape, or one that
reaches a builder some other way, is never sent; the flag or marker goes without it.

What a shape cannot rule out: an email address's mailbox name (before the ``@``) is up to 32
letters, digits and ``.``, ``_`` or ``-``, which a determined sender could spell a few words in.
The address must be on a public-sector domain, which keeps it to a real mailbox there.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from typing import Any

__all__ = [
    "CHILD_OR_FAMILY_REF",
    "CONTACT_FIELDS",
    "EMAIL",
    "EMAIL_DOMAINS",
    "TELEPHONE",
    "ContactRole",
    "contact_of",
    "contact_problem",
    "email_problem",
    "reference_problem",
    "telephone_problem",
]


class ContactRole(enum.StrEnum):
    """Whom the recipient calls about a flag or marker: a role, never a named person."""

    #: The area's MAPPA unit (the co-ordinator's team).
    MAPPA_UNIT = "mappa_unit"
    #: The area's MAPPA co-ordinator.
    MAPPA_COORDINATOR = "mappa_coordinator"
    #: The police public protection unit (the offender managers of registered sex offenders).
    PUBLIC_PROTECTION_UNIT = "public_protection_unit"
    #: The nominal's offender manager (probation practitioner or police offender manager).
    OFFENDER_MANAGER = "offender_manager"
    #: The Responsible Authority's duty desk, out of hours included.
    DUTY_DESK = "duty_desk"


#: A child's or family's reference in the children's services system (ASCII; a JSON Schema and a
#: Python pattern alike).
CHILD_OR_FAMILY_REF = r"^(?:[A-Z]{1,4}[-/]){0,2}[0-9]{1,12}(?:[-/][A-Z0-9]{1,3})?$"
_REFERENCE = re.compile(CHILD_OR_FAMILY_REF, re.ASCII)


def reference_problem(value: object) -> str | None:
    """Why ``value`` is not a child's or family's reference, or None."""
    if not isinstance(value, str) or not _REFERENCE.fullmatch(value):
        return "child_or_family_ref must be a reference: letter codes and a number (ICS-FAM-55821)"
    return None


_ROLES = frozenset(role.value for role in ContactRole)
#: The fields a contact has; ``role`` and one of the other two at least.
CONTACT_FIELDS = ("role", "telephone", "email")
#: Secure public-sector mail domains (and their subdomains) a contact's address may be on.
EMAIL_DOMAINS = ("gov.uk", "police.uk", "nhs.net", "nhs.uk", "cjsm.net")

#: A UK number as written: +44 or 0, then digits in groups of single spaces (a JSON Schema and a
#: Python pattern alike; :func:`telephone_problem` also counts the digits).
TELEPHONE = r"^(?:\+44 ?|0)[0-9]+(?: [0-9]+)*$"
_TELEPHONE = re.compile(TELEPHONE, re.ASCII)
#: The national significant number: 10 digits (9 for a few), starting with 1, 2, 3, 7 or 8
#: (geographic, non-geographic, mobile, freephone; never premium rate).
_NATIONAL = re.compile(r"^[12378][0-9]{8,9}$", re.ASCII)
#: An address: a mailbox of lower-case letters and digits joined by single ``.``, ``_`` or ``-``,
#: on a subdomain of one of :data:`EMAIL_DOMAINS` (a JSON Schema and a Python pattern alike).
EMAIL = (
    r"^[a-z0-9]+(?:[._-][a-z0-9]+)*@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*"
    r"(?:gov\.uk|police\.uk|nhs\.net|nhs\.uk|cjsm\.net)$"
)
_EMAIL = re.compile(EMAIL, re.ASCII)
_MAILBOX_MAX = 32
_EMAIL_MAX = 100


def telephone_problem(value: object) -> str | None:
    """Why ``value`` is not a UK telephone number, or None."""
    if not isinstance(value, str) or len(value) > 17 or not _TELEPHONE.fullmatch(value):
        return "telephone must be a UK number: +44 or 0, then digits (single spaces between)"
    digits = value.replace(" ", "")
    national = digits[3:] if digits.startswith("+44") else digits[1:]
    if not _NATIONAL.fullmatch(national):
        return "telephone must be a UK geographic, non-geographic, mobile or freephone number"
    return None


def email_problem(value: object) -> str | None:
    """Why ``value`` is not a public-sector email address of the allowed shape, or None."""
    if not isinstance(value, str) or len(value) > _EMAIL_MAX or not _EMAIL.fullmatch(value):
        return "email must be one lower-case address on " + ", ".join(EMAIL_DOMAINS)
    if len(value.partition("@")[0]) > _MAILBOX_MAX:
        return f"email's mailbox may be at most {_MAILBOX_MAX} characters"
    return None


def contact_problem(value: object) -> str | None:
    """Why ``value`` is not a contact (a role, a telephone number and/or an email address, and
    nothing else), or None. The reason never repeats the value."""
    if not isinstance(value, Mapping):
        return "contact must be an object: role, telephone and/or email"
    fields: Mapping[str, Any] = value
    if set(fields) - set(CONTACT_FIELDS):
        return "contact may hold only role, telephone and email"
    role = fields.get("role")
    if not isinstance(role, str) or role not in _ROLES:
        return "contact role is not in the vocabulary"
    telephone, email = fields.get("telephone"), fields.get("email")
    if telephone is None and email is None:
        return "contact needs a telephone number or an email address"
    if telephone is not None and (why := telephone_problem(telephone)) is not None:
        return why
    if email is not None and (why := email_problem(email)) is not None:
        return why
    return None


def contact_of(value: object) -> dict[str, str]:
    """``value`` as a contact holding only the fields it has, or ValueError (never naming the
    value)."""
    why = contact_problem(value)
    if why is not None:
        raise ValueError(why)
    assert isinstance(value, Mapping)
    return {name: str(value[name]) for name in CONTACT_FIELDS if value.get(name) is not None}
