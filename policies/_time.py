"""Time in the need-to-know rules: the policy's calendar (its time zone, days and their ends)
and when a meeting's need ends, for its participants, the owners of its action points and the
recipients of an onward disclosure of its minutes alike."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from gateway.domain import NominalStatus, Participation

from .facts import ActionInvolvement, Facts, MeetingInvolvement, OnwardDisclosureGrant

__all__ = ["END_OF_TIME", "Settings", "action_ended", "days_after", "meeting_ended"]

#: The last representable moment: the end of a day that has no next day.
END_OF_TIME = dt.datetime.max.replace(tzinfo=dt.UTC)


@dataclass(frozen=True, slots=True)
class Settings:
    policy_version: str
    time_zone: ZoneInfo
    meeting_without_review_date_days: int
    #: An open referral's involvement lasts this many days after it was made (screening, which
    #: closes it, normally comes well before).
    referral_open_days: int = 90

    def today(self, now: dt.datetime) -> dt.date:
        try:
            return now.astimezone(self.time_zone).date()
        except OverflowError:  # hours from the calendar's edge: the edge's day
            return dt.date.max if now.year == dt.MAXYEAR else dt.date.min

    def end_of(self, day: dt.date) -> dt.datetime:
        """The first moment after ``day`` in the policy's time zone, in UTC (access "to the end
        of the review day"). The calendar's last day never ends: its end is :data:`END_OF_TIME`."""
        try:
            midnight = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), self.time_zone)
            return midnight.astimezone(dt.UTC)
        except OverflowError:
            return END_OF_TIME


def days_after(day: dt.date, days: int) -> dt.date:
    """``day`` plus ``days``, held at the calendar's ends: a stored date never fails a decision."""
    try:
        return day + dt.timedelta(days=days)
    except OverflowError:
        return dt.date.max if days > 0 else dt.date.min


def meeting_ended(
    settings: Settings, facts: Facts, meeting: MeetingInvolvement | OnwardDisclosureGrant
) -> str | None:
    """Why the caller's involvement in ``meeting`` (as a participant, or as the recipient of an
    approved onward disclosure of its minutes) has ended, or None while it lasts."""
    nominal = facts.nominal
    if nominal.status is not NominalStatus.ACTIVE:
        return "the nominal is deregistered"
    if meeting.held_on is None:
        return "the meeting's date is not known"
    if meeting.need_closed_at is not None and facts.now >= meeting.need_closed_at:
        return f"the meeting's need closed {meeting.need_closed_at.isoformat()}"
    if meeting.level_at_meeting is not None and meeting.level_at_meeting != nominal.level:
        return (
            f"the level changed from {int(meeting.level_at_meeting)} "
            f"to {int(nominal.level)} since the meeting"
        )
    if (
        nominal.level_changed_at is not None
        and settings.today(nominal.level_changed_at) > meeting.held_on
    ):
        return f"the level changed {nominal.level_changed_at.isoformat()}, after the meeting"
    days = settings.meeting_without_review_date_days  # a review beyond the calendar never comes
    review = meeting.review_date or days_after(meeting.held_on, days)
    if settings.today(facts.now) > review:
        return f"the review date {review.isoformat()} has passed"
    return None


def action_ended(facts: Facts, action: ActionInvolvement) -> str | None:
    """Why the meeting of an action point the caller owns no longer involves the caller through
    it (its need closed, or the chair took the caller off it), or None. The action's own dates
    and status are the rule's."""
    closed = action.need_closed_at
    if closed is not None and facts.now >= closed:
        return f"the need of meeting {action.meeting_id} closed {closed.isoformat()}"
    parts = {
        m.participation for m in facts.involvements.meetings if m.meeting_id == action.meeting_id
    }
    if Participation.REMOVED in parts:
        return f"the owner was removed from meeting {action.meeting_id}"
    return None
