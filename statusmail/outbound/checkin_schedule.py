"""When check-in mail is due, and which day or week it belongs to (SPEC §7).

Pure functions: a clock reading, a user's zone and the settings in, a period key out.

- The question belongs to the user's local date (``2026-11-26``): due on a day of
  ``checkins.days`` once their clock reached ``checkins.hour``.
- A round-up belongs to the day whose answers it carries: on a working day, from
  ``checkins.roundup_hour`` on, the previous working day (Monday's round-up carries
  Friday's answers when ``days`` are Monday to Friday).
- The leader's week belongs to the ISO week (``2026-W49``) and is due on
  ``digest.weekly_day`` from ``digest.hour`` on, that day only: a week missed (the
  gateway was down all that day) is not sent late, the next one starts where the last
  one ended (two weeks back at most).

``force`` (``--now``) ignores the hour and the working days, not the period: a forced
run still sends one mail per period at most.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from statusmail.config import DAY_NAMES, WEEKDAYS, Settings


def is_working_day(day: date, settings: Settings) -> bool:
    return DAY_NAMES[day.weekday()] in settings.checkins.days


def previous_working_day(day: date, settings: Settings) -> date:
    """The last working day before ``day`` (a week back at most: ``days`` is never empty)."""
    for back in range(1, 8):
        earlier = day - timedelta(days=back)
        if is_working_day(earlier, settings):
            return earlier
    return day - timedelta(days=7)


def question_day(local: datetime, settings: Settings, *, force: bool = False) -> str | None:
    """The day whose question is due at this local time, or None."""
    if force or (is_working_day(local.date(), settings) and local.hour >= settings.checkins.hour):
        return local.date().isoformat()
    return None


def roundup_day(local: datetime, settings: Settings, *, force: bool = False) -> str | None:
    """The day whose answers a round-up sent at this local time carries, or None."""
    if force or (is_working_day(local.date(), settings) and local.hour >= settings.checkins.roundup_hour):
        return previous_working_day(local.date(), settings).isoformat()
    return None


def rollup_week(local: datetime, settings: Settings, *, force: bool = False) -> str | None:
    """The ISO week a leader's week sent at this local time belongs to, or None."""
    day = WEEKDAYS.index(settings.digest.weekly_day)
    due = local.weekday() == day and local.hour >= settings.digest.hour
    if not (force or due):
        return None
    year, week, _ = local.isocalendar()
    return f"{year}-W{week:02d}"
