"""The policies' exceptions: one tree, each class with a stable machine ``code``.

::

    PolicyError                        root; carries ``rule`` and ``policy_version``
    ├── Refused                        a request the policy does not allow (audited as a refusal)
    │   ├── LawfulBasisRefused           the legal basis and purpose do not fit the call
    │   │   ├── LawfulBasisMissing         no legal basis given
    │   │   ├── LawfulBasisUnknown         a code the register does not hold (or no register)
    │   │   ├── PurposeMissing             no purpose given
    │   │   ├── PurposeNotAllowed          a purpose the basis does not allow
    │   │   ├── RoleNotAllowed             the caller's role or agency type may not use it
    │   │   ├── OperationNotAllowed        an operation of the case API the basis does not serve
    │   │   ├── CategoryNotAllowed         a nominal of a category the basis is not for, or none
    │   │   └── BasisNotRecordedForNominal s.325(4A)(c) without the RA's decision for the nominal
    │   └── NoNeedToKnow                 no rule lets this agency see this nominal or resource
    ├── RedactionFailed                a redaction step failed: send nothing (503)
    └── PolicyDataInvalid              a policy data file does not load (never a silent default)

Every refusal names the ``rule`` that refused and the ``policy_version`` that holds the rule, for
the audit record. ``why`` and ``diagnostics`` are for the audit log and for ``policy explain``;
they carry identifiers and codes, never personal data, and are never sent to the caller, who sees
one opaque error (a 404 for need-to-know, as if the subject did not exist).
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "BasisNotRecordedForNominal",
    "CategoryNotAllowed",
    "LawfulBasisMissing",
    "LawfulBasisRefused",
    "LawfulBasisUnknown",
    "NoNeedToKnow",
    "OperationNotAllowed",
    "PolicyDataInvalid",
    "PolicyError",
    "PurposeMissing",
    "PurposeNotAllowed",
    "RedactionFailed",
    "Refused",
    "RoleNotAllowed",
]


class PolicyError(Exception):
    """Root of every error the policies raise on purpose."""

    code: ClassVar[str] = "policy_error"

    def __init__(
        self,
        why: str,
        *,
        rule: str,
        policy_version: str,
        diagnostics: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(why)
        self.why = why
        self.rule = rule
        self.policy_version = policy_version
        self.diagnostics: dict[str, Any] = dict(diagnostics or {})

    def audit_fields(self) -> dict[str, Any]:
        """What the audit record keeps of this error: code, rule, version, reason, diagnostics."""
        return {
            "reason_code": self.code,
            "rule": self.rule,
            "policy_version": self.policy_version,
            "why": self.why,
            **({"diagnostics": self.diagnostics} if self.diagnostics else {}),
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, rule={self.rule!r})"


class Refused(PolicyError):
    code = "refused"


class LawfulBasisRefused(Refused):
    code = "lawful_basis_refused"


class LawfulBasisMissing(LawfulBasisRefused):
    code = "lawful_basis_missing"


class LawfulBasisUnknown(LawfulBasisRefused):
    code = "lawful_basis_unknown"


class PurposeMissing(LawfulBasisRefused):
    code = "purpose_missing"


class PurposeNotAllowed(LawfulBasisRefused):
    code = "purpose_not_allowed"


class RoleNotAllowed(LawfulBasisRefused):
    code = "role_not_allowed"


class OperationNotAllowed(LawfulBasisRefused):
    code = "operation_not_allowed"


class CategoryNotAllowed(LawfulBasisRefused):
    code = "category_not_allowed"


class BasisNotRecordedForNominal(LawfulBasisRefused):
    code = "basis_not_recorded_for_nominal"


class NoNeedToKnow(Refused):
    code = "no_need_to_know"


class RedactionFailed(PolicyError):
    code = "redaction_failed"


class PolicyDataInvalid(PolicyError):
    """A data file is malformed. ``rule`` names the file, ``why`` the first problem found."""

    code = "policy_data_invalid"
