"""Mail from robots, and bounces of our own mail (SPEC §3 Loops).

A robot's mail is never posted and never answered (RFC 3834 §2): it is accepted and
dropped, with the marker that gave it away in the log. Delivery status notifications
(RFC 3464) arrive at the VERP address of the message that bounced, so each is tied to
its outbox row and recipient; repeated hard bounces suspend mail to that address.
"""

from __future__ import annotations

from sqlmodel import select

from statusmail.inbound.bounces import parse_dsn
from statusmail.inbound.incoming import Incoming
from statusmail.inbound.outcome import Discarded, Reason
from statusmail.inbound.robots import robot_reason
from statusmail.store.bounces import BounceFact, RecordBounces
from statusmail.store.models import Outbox


def refuse_robots(mail: Incoming) -> None:
    """Drop automatic mail: auto-replies, lists, reports, daemons (never answered)."""
    reason = robot_reason(mail.message, mail.envelope.mail_from)
    if reason:
        raise Discarded(Reason.ROBOT, reason)


def record_bounce(mail: Incoming) -> None:
    """Record a DSN against the outbox row its VERP address names; never posted."""
    row = mail.session.exec(select(Outbox).where(Outbox.bounce_key == mail.token)).first()
    reports = parse_dsn(mail.message)
    if row is None:
        raise Discarded(Reason.BOUNCE, "bounce for an unknown message")
    if not reports:
        raise Discarded(Reason.BOUNCE, "mail to a bounce address that is not a delivery report")
    facts = tuple(BounceFact(r.status, r.hard, r.diagnostic) for r in reports)
    mail.changes.append(RecordBounces(row.id, row.to_addr, facts))
    hard = any(r.hard for r in reports)
    kind = "hard" if hard else "soft"
    raise Discarded(Reason.BOUNCE, f"{kind} bounce for outbox {row.id} ({reports[0].status})")
