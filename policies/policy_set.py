"""One policy set: the three data files loaded together, checked against each other, versioned.

:func:`load_policy_set` reads a data directory once, validates every file and the references
between them (a caveat's purposes must be purposes of the legal-basis register), and returns a
:class:`PolicySet` whose parts all carry the same ``policy_version``. :func:`default_policy_set`
is the packaged set, loaded on first use and cached.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from ._data import read_data
from ._recipients import RecipientRules
from .errors import PolicyDataInvalid
from .lawful_basis import LegalBasisRegister
from .need_to_know import NeedToKnowPolicy

__all__ = ["PolicySet", "default_policy_set", "load_policy_set"]


@dataclass(frozen=True, slots=True)
class PolicySet:
    policy_version: str
    legal_bases: LegalBasisRegister
    need_to_know: NeedToKnowPolicy
    recipients: RecipientRules


def load_policy_set(directory: Path | None = None) -> PolicySet:
    """Load and cross-check the policy files of ``directory`` (default: the packaged data)."""
    files = read_data(directory)
    legal_bases = LegalBasisRegister.from_data(files)
    need_to_know = NeedToKnowPolicy.from_data(files)
    recipients = RecipientRules.from_data(files)
    for caveat in recipients.caveats.values():
        unknown = sorted(caveat.withhold_for_purposes - legal_bases.purposes.keys())
        if unknown:
            raise PolicyDataInvalid(
                f"recipients.toml: caveat {caveat.code} names purposes the legal-basis register "
                f"does not define: {', '.join(unknown)}",
                rule="recipients.toml",
                policy_version=files.version,
            )
    return PolicySet(files.version, legal_bases, need_to_know, recipients)


@functools.cache
def default_policy_set() -> PolicySet:
    """The packaged policy set (loaded once; a malformed file fails here, loudly)."""
    return load_policy_set()
