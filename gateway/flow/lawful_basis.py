"""The lawful-basis stage: the call's stated basis and purpose against the register.

:func:`check` runs before any case data is read. It holds the caller's ``MAPPA-Legal-Basis``,
``MAPPA-Purpose``, s.325 role and agency type against the legal-basis register
(:func:`policies.check`). A basis whose condition needs the nominal (s.325(4A)(c): the RA
recorded, for this nominal, that other persons may contribute) is held again by
:func:`confirm_for_nominal` once the need-to-know stage has loaded the nominal's facts, before
anything of it is disclosed. A refusal is :class:`gateway.errors.LawfulBasisRefused` (403): its
``diagnostics`` carry the rule, policy version and reason for the audit record, never for the
caller.
"""

from __future__ import annotations

import policies
from gateway import errors
from gateway.domain import AgencyType, Role
from gateway.flow.authenticate import Caller

__all__ = ["check", "confirm_for_nominal", "refused"]


def refused(exc: policies.PolicyError) -> errors.LawfulBasisRefused:
    """The gateway's opaque 403 for a policy refusal, with the full reason for the audit."""
    return errors.LawfulBasisRefused(diagnostics=exc.audit_fields())


def check(caller: Caller, *, concerns_nominal: bool) -> policies.BasisDecision:
    """Allow the call's basis and purpose for this caller, or raise LawfulBasisRefused.

    ``concerns_nominal``: the call is about one nominal. Its nominal-specific conditions are
    taken as holding here and checked by :func:`confirm_for_nominal`; a call about no single
    nominal cannot satisfy them at all.
    """
    try:
        return policies.check(
            caller.legal_basis,
            caller.purpose,
            Role(caller.role),
            AgencyType(caller.agency_type),
            True if concerns_nominal else None,
        )
    except policies.LawfulBasisRefused as exc:
        raise refused(exc) from exc


def confirm_for_nominal(caller: Caller, nominal: policies.NominalFacts) -> policies.BasisDecision:
    """The same check with what the RA recorded for this nominal (s.325(4A)(c))."""
    try:
        return policies.check(
            caller.legal_basis,
            caller.purpose,
            Role(caller.role),
            AgencyType(caller.agency_type),
            nominal.other_contributors_allowed,
        )
    except policies.LawfulBasisRefused as exc:
        raise refused(exc) from exc
