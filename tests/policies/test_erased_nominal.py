"""An erased nominal is known to no one: the engine refuses it before any rule is asked.

Not a rule of ``need_to_know.toml`` (which could be left out of it), but what erasure means: the
case data is gone, and the nominal is to everyone as an id that does not exist. The lead agency,
the Responsible Authority of the area (which sees a deregistered nominal), a record's owner and
an agency involved through a meeting are all refused, with the rule ``nominal-erased``.
"""

from __future__ import annotations

import pytest

from gateway.domain import AgencyType, NominalStatus, RecordKind
from policies import (
    NOMINAL_ERASED,
    CallerAgency,
    MeetingInvolvement,
    NominalTarget,
    NoNeedToKnow,
    RecordTarget,
    Target,
    decide,
    decide_first,
    explain,
)
from tests.policies.policies_support import LEAD_ID, agency, facts, meeting, nominal

RA = agency(AgencyType.POLICE)
LEAD = agency(AgencyType.PROBATION, agency_id=LEAD_ID)
HOUSING = agency(AgencyType.HOUSING)


@pytest.mark.parametrize(
    ("caller", "target", "meetings"),
    [
        (LEAD, NominalTarget(), ()),  # the lead agency
        (RA, NominalTarget(), ()),  # the RA of the area, which sees a deregistered nominal
        (RA, RecordTarget("rec-1", RA.id, RecordKind.CASE_NOTE), ()),  # the record's owner
        (HOUSING, NominalTarget(), (meeting(HOUSING),)),  # at a meeting about it
    ],
)
def test_an_erased_nominal_is_refused_to_every_agency_that_saw_it(
    caller: CallerAgency, target: Target, meetings: tuple[MeetingInvolvement, ...]
) -> None:
    for status in (NominalStatus.ACTIVE, NominalStatus.DEREGISTERED):
        if status is NominalStatus.DEREGISTERED and caller is not RA:
            continue
        seen = facts(caller, nominal(status=status), target, meetings=meetings)
        assert decide(seen).rule
    erased = facts(caller, nominal(status=NominalStatus.ERASED), target, meetings=meetings)
    with pytest.raises(NoNeedToKnow) as refused:
        decide(erased)
    assert refused.value.rule == NOMINAL_ERASED
    assert decide_first(erased, frozenset({"lead-agency", "responsible-authority-of-area"})) is None
    [explanation] = explain(erased)
    assert explanation.rule == NOMINAL_ERASED and not explanation.matched
