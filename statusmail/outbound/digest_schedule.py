"""When each user's digest is due, and which period it belongs to (SPEC §3 Digests).

A digest belongs to a *period* of the recipient's own calendar: the local date for a
daily digest (``2026-11-26``), the ISO week for a weekly one (``2026-W48``). The period
key is what makes a second digest impossible: ``digests`` is unique on (user, period).
A period is due once the user's local clock has reached ``digest.hour`` on its day
(the ``weekly_day`` of the ISO week for weekly digests); ``--now`` ignores the hour.
A period that was missed (the gateway was down all day) is not sent late: the next
digest starts where the last one ended, so nothing is lost, only merged.

Everything here is pure: a clock reading and settings in, decisions out.
"""

from __future__ import annotations

import functools
import zoneinfo
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

from statusmail.config import WEEKDAYS, Settings

SENDING = ("daily", "weekly")
PERIOD_LENGTH = {"daily": timedelta(days=1), "weekly": timedelta(days=7)}
# How far back a digest looks at most. A user who switched digests off for a month
# and on again gets a digest of the last days, not a month's backlog.
MAX_LOOKBACK = {"daily": timedelta(days=7), "weekly": timedelta(days=14)}


@dataclass(frozen=True)
class Recipient:
    """The few columns of a user that digests need (loading full ORM rows for 10,000
    users is most of the cost of a tick)."""

    id: int
    email: str
    name: str
    frequency: str  # daily | weekly | off, the setting's default already applied
    zone: tzinfo
    suspended: bool  # banned, or mail suspended after hard bounces

    @property
    def display_name(self) -> str:
        return self.name or self.email


def frequency_of(digest: str, settings: Settings) -> str:
    return digest or settings.digest.default_frequency


@functools.lru_cache(maxsize=1024)
def zone_named(name: str) -> tzinfo | None:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return None


def zone_of(timezone_name: str, settings: Settings) -> tzinfo:
    """The user's zone; an unknown name (set before validation existed) falls back to
    the default rather than costing the user their digest."""
    zone = zone_named(timezone_name) if timezone_name else None
    return zone or zone_named(settings.digest.default_timezone) or zoneinfo.ZoneInfo("UTC")


def period_key(frequency: str, local: datetime) -> str:
    """``2026-11-26`` for a daily digest, ``2026-W48`` (ISO 8601 week) for a weekly one."""
    if frequency == "weekly":
        year, week, _ = local.isocalendar()
        return f"{year}-W{week:02d}"
    return local.date().isoformat()


def is_due(frequency: str, local: datetime, settings: Settings) -> bool:
    """Has the local clock reached the sending hour of the current period?"""
    reached_hour = local.hour >= settings.digest.hour
    if frequency == "weekly":
        day = WEEKDAYS.index(settings.digest.weekly_day)
        return local.weekday() > day or (local.weekday() == day and reached_hour)
    return reached_hour


def current_period(recipient: Recipient, now: datetime, settings: Settings, *, force: bool = False) -> str | None:
    """The period a digest sent ``now`` belongs to, or None when none is due yet."""
    if recipient.frequency not in SENDING or recipient.suspended:
        return None
    local = now.astimezone(recipient.zone)
    if not force and not is_due(recipient.frequency, local, settings):
        return None
    return period_key(recipient.frequency, local)


def window_start(frequency: str, previous_until: datetime | None, now: datetime) -> datetime:
    """Where this digest's news begins: the end of the previous digest, or one period
    back for a first digest; never further back than :data:`MAX_LOOKBACK`."""
    length = PERIOD_LENGTH.get(frequency, PERIOD_LENGTH["daily"])
    if previous_until is None:
        return now - length
    return max(previous_until, now - MAX_LOOKBACK.get(frequency, MAX_LOOKBACK["daily"]))
