"""Involvement ends: review date passed, deregistered, level changed, need closed; exact clock."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from gateway.domain import ActionStatus, AgencyType, Level, NominalStatus, Participation
from policies import MinutesTarget, NominalTarget, NoNeedToKnow, Target, decide, explain
from policies._rules import Settings, meeting_ended
from tests.policies.policies_support import (
    NOW,
    TODAY,
    action,
    agency,
    disclosure,
    facts,
    meeting,
    nominal,
    referral,
)

HOUSING = agency(AgencyType.HOUSING)
REVIEW = TODAY + dt.timedelta(days=5)
LONDON_MIDNIGHT_UTC = dt.time(0, 0, tzinfo=dt.UTC)
#: The first and last instants the calendar holds.
START_OF_TIME = dt.datetime.min.replace(tzinfo=dt.UTC)
END_OF_TIME = dt.datetime.max.replace(tzinfo=dt.UTC)


def _at(day: dt.date, hour: int = 12) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour), tzinfo=dt.UTC)


def _refusal(row_now: dt.datetime, **kwargs: object) -> NoNeedToKnow:
    with pytest.raises(NoNeedToKnow) as caught:
        decide(facts(HOUSING, now=row_now, **kwargs))  # type: ignore[arg-type]
    return caught.value


@pytest.mark.parametrize("target", [NominalTarget(), MinutesTarget("meet-1")])
def test_meeting_access_lasts_to_the_end_of_the_review_day(target: Target) -> None:
    """On the review date itself the attendee still sees the case and the minutes."""
    row = facts(
        HOUSING,
        target=target,
        now=_at(REVIEW, 22),
        meetings=(meeting(HOUSING, review_date=REVIEW),),
    )
    assert decide(row).view == "full"


@pytest.mark.parametrize("target", [NominalTarget(), MinutesTarget("meet-1")])
def test_meeting_access_ends_when_the_review_date_passes(target: Target) -> None:
    """The day after the review date the next request is refused, token or not."""
    meetings = (meeting(HOUSING, review_date=REVIEW),)
    after = REVIEW + dt.timedelta(days=1)
    with pytest.raises(NoNeedToKnow) as caught:
        decide(facts(HOUSING, target=target, now=_at(after, 0), meetings=meetings))
    assert "review date" in repr(caught.value.diagnostics)


def test_review_day_is_the_london_calendar_day() -> None:
    """At 23:30 UTC in British Summer Time it is already the next day in London: access ended."""
    summer_review = dt.date(2027, 7, 1)
    meetings = (meeting(HOUSING, held_on=dt.date(2027, 6, 1), review_date=summer_review),)
    late = dt.datetime(2027, 7, 1, 23, 30, tzinfo=dt.UTC)
    with pytest.raises(NoNeedToKnow):
        decide(facts(HOUSING, now=late, meetings=meetings))
    assert decide(facts(HOUSING, now=late - dt.timedelta(hours=1), meetings=meetings))


def test_meeting_without_review_date_lasts_the_configured_default() -> None:
    """A meeting that set no review date grants 90 days from the meeting, then ends."""
    held = TODAY - dt.timedelta(days=90)
    meetings = (meeting(HOUSING, held_on=held, review_date=None),)
    assert decide(facts(HOUSING, meetings=meetings)).rule == "involved-meeting"
    with pytest.raises(NoNeedToKnow):
        decide(facts(HOUSING, now=NOW + dt.timedelta(days=1), meetings=meetings))


def test_deregistration_ends_every_involvement() -> None:
    """A deregistered nominal is closed to referral, meeting, action and minutes involvement."""
    gone = nominal(status=NominalStatus.DEREGISTERED)
    for ties in (
        {"referrals": (referral(HOUSING),)},
        {"meetings": (meeting(HOUSING),)},
        {"actions": (action(HOUSING),)},
    ):
        with pytest.raises(NoNeedToKnow):
            decide(facts(HOUSING, gone, **ties))
    with pytest.raises(NoNeedToKnow):
        decide(facts(HOUSING, gone, MinutesTarget("meet-1"), meetings=(meeting(HOUSING),)))


def test_deregistration_ends_the_lead_agency_but_not_the_area_ra() -> None:
    """After deregistration the lead agency's access ends; the area's RA keeps its records."""
    lead = agency(AgencyType.MENTAL_HEALTH)
    with pytest.raises(NoNeedToKnow):
        decide(facts(lead, nominal(lead=lead.id, status=NominalStatus.DEREGISTERED)))
    police = agency(AgencyType.POLICE)
    assert decide(facts(police, nominal(status=NominalStatus.DEREGISTERED))).rule == (
        "responsible-authority-of-area"
    )


def test_level_change_since_the_meeting_ends_its_involvement() -> None:
    """A level 2 meeting's attendee loses access once the nominal moves to level 3."""
    changed = nominal(level=3, level_changed_at=NOW - dt.timedelta(hours=1))
    refusal = _refusal(NOW, nom=changed, meetings=(meeting(HOUSING),))
    assert "level changed" in repr(refusal.diagnostics)


def test_level_changed_and_back_still_ends_the_involvement() -> None:
    """2 -> 3 -> 2 after the meeting: the level is 2 again, but the meeting's need has passed."""
    back = nominal(level=2, level_changed_at=NOW - dt.timedelta(days=1))
    with pytest.raises(NoNeedToKnow):
        decide(facts(HOUSING, back, meetings=(meeting(HOUSING),)))


def test_a_level_change_before_the_meeting_does_not_end_it() -> None:
    """The level set at screening, before the meeting, leaves the meeting's involvement alone."""
    earlier = nominal(level=2, level_changed_at=NOW - dt.timedelta(days=30))
    assert decide(facts(HOUSING, earlier, meetings=(meeting(HOUSING),))).rule == "involved-meeting"


def test_closing_the_meeting_need_ends_access_at_that_instant() -> None:
    """need_closed_at is exact: a second before, access; at that instant, refused."""
    closed_at = NOW + dt.timedelta(minutes=5)
    meetings = (meeting(HOUSING, need_closed_at=closed_at),)
    assert decide(facts(HOUSING, now=closed_at - dt.timedelta(seconds=1), meetings=meetings))
    refusal = _refusal(closed_at, meetings=meetings)
    assert "need closed" in repr(refusal.diagnostics)


def test_minutes_only_recipient_loses_minutes_when_the_need_closes() -> None:
    """Jobcentre Plus's minutes-only access ends with the meeting's need."""
    jcp = agency(AgencyType.JOBCENTRE_PLUS)
    meetings = (meeting(jcp, Participation.MINUTES_ONLY, need_closed_at=NOW),)
    with pytest.raises(NoNeedToKnow):
        decide(facts(jcp, target=MinutesTarget("meet-1"), meetings=meetings))


CONFERENCE = agency(AgencyType.CHILDRENS_SERVICES, agency_id="cp-conference")
MINUTES = MinutesTarget("meet-1")


@pytest.mark.parametrize(
    ("ends", "why"),
    [
        # the meeting's review date passed (to the end of that day, London time)
        ({"now": _at(REVIEW + dt.timedelta(days=1), 0)}, "review date"),
        # no review date set: 90 days after the meeting
        (
            {"grant": {"held_on": TODAY - dt.timedelta(days=91), "review_date": None}},
            "review date",
        ),
        # the nominal's level changed after the meeting
        (
            {"nom": nominal(level=3, level_changed_at=NOW - dt.timedelta(hours=1))},
            "level changed",
        ),
        # changed and back: the meeting's need has passed all the same
        ({"nom": nominal(level=2, level_changed_at=NOW - dt.timedelta(days=1))}, "level changed"),
        # the chair or co-ordinator closed the meeting's need
        ({"grant": {"need_closed_at": NOW}}, "need closed"),
        # a grant that does not say when its meeting was held grants nothing
        ({"grant": {"held_on": None}}, "date is not known"),
    ],
)
def test_onward_disclosure_ends_with_the_meetings_need(ends: dict[str, Any], why: str) -> None:
    """An approved onward disclosure of minutes lasts as long as the meeting's need, as the
    participants' access does (THREATS.md: access granted for a meeting ends when the
    meeting's need ends), however long ago the chair approved it."""
    grant = disclosure(CONFERENCE, **{"review_date": REVIEW, **ends.get("grant", {})})
    live = facts(CONFERENCE, target=MINUTES, now=_at(REVIEW, 22), disclosures=(grant,))
    if "grant" not in ends:
        assert decide(live).rule == "onward-disclosure-approved"
    now = ends.get("now", NOW)
    with pytest.raises(NoNeedToKnow) as caught:
        decide(facts(CONFERENCE, ends.get("nom"), MINUTES, now=now, disclosures=(grant,)))
    assert why in repr(caught.value.diagnostics)
    assert "onward disclosure odr-1 ended" in repr(caught.value.diagnostics)


def test_referral_involvement_ends_when_the_referral_closes() -> None:
    """An open referral ties the referrer; once screened or withdrawn, it no longer does."""
    assert decide(facts(HOUSING, referrals=(referral(HOUSING),))).rule == "involved-referral"
    with pytest.raises(NoNeedToKnow):
        decide(facts(HOUSING, referrals=(referral(HOUSING, closed_at=NOW),)))


@pytest.mark.parametrize(
    ("days_ago", "allowed"),
    [(0, True), (89, True), (90, True), (91, False), (400, False)],
)
def test_an_unscreened_referral_involves_for_ninety_days(days_ago: int, allowed: bool) -> None:
    """A referral never screened (the RA set the level directly) no longer involves the agencies
    it names for ever: to the end of the 90th day after it was made (referral_open_days)."""
    made = NOW - dt.timedelta(days=days_ago)
    involved = facts(HOUSING, referrals=(referral(HOUSING, referred_at=made),))
    if allowed:
        assert decide(involved).rule == "involved-referral"
        return
    with pytest.raises(NoNeedToKnow) as caught:
        decide(involved)
    assert "open more than 90 days unscreened" in repr(caught.value.diagnostics)


@pytest.mark.parametrize(
    ("status", "review", "now", "allowed"),
    [
        # An open action grants to the end of its review day.
        (ActionStatus.OPEN, TODAY, _at(TODAY, 20), True),
        # The day after, it no longer does.
        (ActionStatus.OPEN, TODAY, _at(TODAY + dt.timedelta(days=1)), False),
        # An action in progress is still the owner's to do: it grants like an open one.
        (ActionStatus.IN_PROGRESS, TODAY, _at(TODAY, 20), True),
        # ...and until its review day only.
        (ActionStatus.IN_PROGRESS, TODAY, _at(TODAY + dt.timedelta(days=1)), False),
        # A completed action grants nothing.
        (ActionStatus.DONE, TODAY + dt.timedelta(days=9), NOW, False),
        # Nor a cancelled one.
        (ActionStatus.CANCELLED, TODAY + dt.timedelta(days=9), NOW, False),
    ],
)
def test_action_involvement_ends_with_its_review_or_status(
    status: ActionStatus, review: dt.date, now: dt.datetime, allowed: bool
) -> None:
    """An owned action grants while open and until its review date."""
    row = facts(HOUSING, now=now, actions=(action(HOUSING, status, review=review),))
    if allowed:
        assert decide(row).rule == "involved-action"
    else:
        with pytest.raises(NoNeedToKnow):
            decide(row)


def test_action_without_review_date_ends_at_its_due_date() -> None:
    """With no review date, the action's due date ends the involvement."""
    row = facts(
        HOUSING,
        now=_at(TODAY + dt.timedelta(days=2)),
        actions=(action(HOUSING, due=TODAY + dt.timedelta(days=1), review=None),),
    )
    with pytest.raises(NoNeedToKnow):
        decide(row)


def test_one_live_meeting_is_enough_when_another_has_ended() -> None:
    """An ended meeting does not mask a live one, and explain says which ended and why."""
    ended = meeting(HOUSING, meeting_id="meet-0", review_date=TODAY - dt.timedelta(days=1))
    live = meeting(HOUSING, meeting_id="meet-1")
    row = facts(HOUSING, meetings=(ended, live))
    assert decide(row).why == "attended level_2 meeting meet-1"
    only_ended = facts(HOUSING, meetings=(ended,))
    verdict = {e.rule: e for e in explain(only_ended)}["involved-meeting"]
    assert not verdict.matched
    assert "meet-0" in verdict.why and "review date" in verdict.why


def test_level_at_meeting_differs_from_current_level() -> None:
    """A meeting held at level 3 grants nothing once the nominal is managed at level 2."""
    row = facts(HOUSING, meetings=(meeting(HOUSING, level_at_meeting=Level.SENIOR_MULTI_AGENCY),))
    with pytest.raises(NoNeedToKnow):
        decide(row)


@pytest.mark.parametrize("target", [NominalTarget(), MinutesTarget("meet-1")])
@pytest.mark.parametrize(
    "held_on",
    [
        # the calendar's last day: its default review (90 days on) has no date
        dt.date.max,
        # the first day whose default review falls one day beyond the calendar
        dt.date.max - dt.timedelta(days=89),
    ],
)
def test_a_meeting_that_cannot_end_within_the_calendar_is_not_ended(
    target: Target, held_on: dt.date
) -> None:
    """A meeting stored as held on 31 December 9999 with no review date is a decision like any
    other (never an overflow): its review never comes, so the attendee's involvement lasts."""
    row = facts(
        HOUSING,
        target=target,
        meetings=(meeting(HOUSING, held_on=held_on, review_date=None),),
    )
    allowed = decide(row)
    assert allowed.rule in {"involved-meeting", "minutes-participant"}
    assert {e.rule: e for e in explain(row)}[allowed.rule].matched


def test_a_default_review_beyond_the_calendar_never_ends_the_meeting() -> None:
    """However many days the policy data gives a meeting without a review date, the sum is held
    at the calendar's end instead of overflowing."""
    settings = Settings("test", ZoneInfo("Europe/London"), 10**9)
    row = facts(HOUSING, meetings=(meeting(HOUSING, review_date=None),))
    assert meeting_ended(settings, row, row.involvements.meetings[0]) is None


@pytest.mark.parametrize(
    ("zone", "now", "day"),
    [
        # nine hours east of the calendar's last instant: still its last day
        ("Asia/Tokyo", END_OF_TIME, dt.date.max),
        # five hours west of its first instant: still its first day
        ("America/New_York", START_OF_TIME, dt.date.min),
    ],
)
def test_today_at_the_ends_of_the_calendar_is_the_edge_day(
    zone: str, now: dt.datetime, day: dt.date
) -> None:
    assert Settings("test", ZoneInfo(zone), 90).today(now) == day
