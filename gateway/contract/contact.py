"""The contact a hazard flag or a warning marker carries: a role and a number or an address.

Never free text: a role from a fixed vocabulary, a UK telephone number and/or a public-sector
email address, each of a strict shape (:mod:`policies.flag_values`), so nothing about the person,
an offence, intelligence or a third party can ride on it. Any other contact is refused with 422
``validation_failed`` naming the field, never the value.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field, StringConstraints, model_validator

from gateway.contract.types import STRICT
from policies.flag_values import EMAIL, TELEPHONE, ContactRole, email_problem, telephone_problem

__all__ = ["Contact", "ContactRole"]


def _telephone(value: str) -> str:
    why = telephone_problem(value)
    if why is not None:
        raise ValueError(why)
    return value


def _email(value: str) -> str:
    why = email_problem(value)
    if why is not None:
        raise ValueError(why)
    return value


Telephone = Annotated[
    str,
    StringConstraints(max_length=17, pattern=TELEPHONE),
    AfterValidator(_telephone),
    Field(description="A UK number: +44 or 0, then digits in groups (020 8359 0000)"),
]
Email = Annotated[
    str,
    StringConstraints(max_length=100, pattern=EMAIL),
    AfterValidator(_email),
    Field(description="A lower-case address on gov.uk, police.uk, nhs.net, nhs.uk or cjsm.net"),
]


class Contact(BaseModel):
    """Whom the recipient calls: a role, with a telephone number and/or an email address."""

    model_config = STRICT

    role: ContactRole
    telephone: Telephone | None = None
    email: Email | None = None

    @model_validator(mode="after")
    def _reachable(self) -> Contact:
        if self.telephone is None and self.email is None:
            raise ValueError("a contact needs a telephone number or an email address")
        return self
