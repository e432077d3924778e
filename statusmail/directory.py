"""Importing the company directory from CSV, with org-chart follows.

Columns: ``email,name,role,team,manager,timezone``. Every row is checked before anything
is written, so a bad row (reported with its line number) leaves nothing half-imported; a
manager may be a row further down, or a user registered before. Existing users are
updated, not duplicated.

Org-chart defaults: a user follows their manager, their direct reports and the members
of their team, unless they unfollowed them (an inactive follow row remembers that).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session, select

from statusmail.config import is_timezone
from statusmail.store.follows import Target, follow
from statusmail.store.models import User
from statusmail.store.users import ROLES, find_user, is_mail_address, normalize_email, register_user

COLUMNS = ("email", "name", "role", "team", "manager", "timezone")


class ImportError_(ValueError):
    """A CSV row that cannot be imported; the message names its line."""


@dataclass(frozen=True)
class Row:
    line: int
    email: str
    name: str
    role: str
    team: str
    manager: str
    timezone: str


def read_rows(text: str, is_user: Callable[[str], bool] = lambda _email: False) -> list[Row]:
    """Every row, checked; a manager is a row of the file or, when ``is_user`` says so,
    someone already registered (one new hire imported alone)."""
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in ("email",) if c not in (reader.fieldnames or [])]
    if missing:
        raise ImportError_(f"line 1: missing column(s): {', '.join(missing)} (expected {','.join(COLUMNS)})")
    rows: list[Row] = []
    seen: set[str] = set()
    for record in reader:
        line = reader.line_num

        def get(key: str, record: dict[str, str | None] = record) -> str:
            return (record.get(key) or "").strip()
        email = normalize_email(get("email"))
        if not is_mail_address(email):
            raise ImportError_(f"line {line}: not a mail address: {get('email')!r}")
        if email in seen:
            raise ImportError_(f"line {line}: {email} appears twice")
        seen.add(email)
        role = get("role").lower() or "staff"
        if role not in ROLES:
            raise ImportError_(f"line {line}: role must be one of {', '.join(ROLES)}, not {role!r}")
        tz = get("timezone")
        if tz and not is_timezone(tz):
            raise ImportError_(f"line {line}: unknown timezone {tz!r}")
        manager = normalize_email(get("manager")) if get("manager") else ""
        rows.append(Row(line, email, get("name"), role, get("team"), manager, tz))
    for row in rows:
        if row.manager and row.manager not in seen and not is_user(row.manager):
            raise ImportError_(f"line {row.line}: manager {row.manager} is neither in the file nor a user")
        if row.manager == row.email:
            raise ImportError_(f"line {row.line}: {row.email} cannot manage themselves")
    return rows


def import_users(session: Session, text: str, progress: Callable[..., Any] | None = None) -> dict[str, Any]:
    """Create or update every row, then add org-chart follows. The caller commits."""
    rows = read_rows(text, is_user=lambda email: find_user(session, email) is not None)
    report: dict[str, Any] = {"created": [], "updated": [], "unchanged": [], "follows_added": 0}
    iterator: Any = rows
    bar = progress(rows, label="importing", file=None) if progress else None
    if bar is not None:
        iterator = bar.__enter__()
    try:
        for row in iterator:
            user = find_user(session, row.email)
            if user is None:
                register_user(session, row.email, name=row.name, role=row.role, team=row.team,
                              manager_email=row.manager, timezone=row.timezone)
                report["created"].append(row.email)
                continue
            changes = {k: v for k, v in (("name", row.name), ("role", row.role), ("team", row.team),
                                         ("manager_email", row.manager), ("timezone", row.timezone))
                       if v and getattr(user, k) != v}
            for key, value in changes.items():
                setattr(user, key, value)
            session.add(user)
            report["updated" if changes else "unchanged"].append(row.email)
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
    session.flush()
    report["follows_added"] = add_orgchart_follows(session, [r.email for r in rows])
    return report


def add_orgchart_follows(session: Session, emails: list[str]) -> int:
    """Each imported user follows their manager, their reports and their team, and they
    follow the imported user back."""
    users = {u.email: u for u in session.exec(select(User))}
    reports: dict[str, list[User]] = {}
    team: dict[str, list[User]] = {}
    for user in users.values():
        if user.manager_email:
            reports.setdefault(user.manager_email, []).append(user)
        if user.team:
            team.setdefault(user.team, []).append(user)
    # Those already registered see a new hire too: their manager, and their team.
    affected = dict.fromkeys(emails)
    for email in emails:
        user = users[email]
        if user.manager_email in users:
            affected[user.manager_email] = None
        affected.update(dict.fromkeys(u.email for u in team.get(user.team, []) if user.team))
    added = 0
    for email in affected:
        user = users[email]
        wanted = [users[user.manager_email]] if user.manager_email in users else []
        wanted += reports.get(email, [])
        wanted += team.get(user.team, []) if user.team else []
        for other in {w.id: w for w in wanted if w.id != user.id}.values():
            added += follow(session, user, Target(user=other), origin="orgchart")
    return added
