"""Console sign-in throttling: per officer id, from the audit log; per client address, in memory.

- **Per officer id.** Every failed sign-in is already an audit entry (``console`` / ``refused`` /
  ``bad_credentials``, with the id as typed), so the count of those within
  ``console_login_window_seconds`` is the same on every replica and survives restarts. At
  ``console_login_max_failures`` the id is locked until the oldest counted failure leaves the
  window. Ids that do not exist are counted and locked exactly like real ones, so a lockout
  reveals nothing about which accounts exist. Attempts refused by the lock are audited
  (``login_throttled``) but not counted, so the lock ends on time.
- **Per client address.** A token bucket per address (`gateway.http.ratelimit.RateLimiter`,
  per process) caps how fast one address can guess across many ids.

Either way the answer is the one a wrong password gets (the same page, the same 401); only the
audit entry says why.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.errors import RateLimited
from gateway.http.ratelimit import RateLimiter
from gateway.settings import Settings
from gateway.store.models import AuditEntry

__all__ = ["BAD_CREDENTIALS", "LOGIN_THROTTLED", "LoginThrottle", "recent_failures"]

#: The audit reason codes of a failed sign-in and of one refused by the throttle.
BAD_CREDENTIALS = "bad_credentials"
LOGIN_THROTTLED = "login_throttled"


async def recent_failures(session: AsyncSession, officer_id: str, since: dt.datetime) -> int:
    """Failed console sign-ins recorded for ``officer_id`` (as typed) since ``since``."""
    count = await session.scalar(
        select(func.count(AuditEntry.id)).where(
            AuditEntry.officer_id == officer_id,
            AuditEntry.operation == "console",
            AuditEntry.outcome == "refused",
            AuditEntry.reason_code == BAD_CREDENTIALS,
            AuditEntry.occurred_at >= since,
        )
    )
    return int(count or 0)


class LoginThrottle:
    """The two limits, as the console's sign-in routes ask them."""

    def __init__(self, settings: Settings) -> None:
        self.max_failures = settings.console_login_max_failures
        self.window = dt.timedelta(seconds=settings.console_login_window_seconds)
        self.addresses = RateLimiter(
            rate=settings.console_login_per_address_per_minute / 60.0,
            burst=settings.console_login_address_burst,
        )

    def address_allows(self, address: str) -> bool:
        """Take one attempt from ``address``'s bucket; False when it is empty."""
        try:
            self.addresses.check(address)
        except RateLimited:
            return False
        return True

    async def account_locked(
        self, session: AsyncSession, officer_id: str, now: dt.datetime
    ) -> bool:
        return await recent_failures(session, officer_id, now - self.window) >= self.max_failures
