"""From a message to a post's text: subject rules, brevity, tags and mentions (SPEC §3).

The body's new text comes from :func:`statusmail.inbound.extract.extract_body` (quotes,
signatures and markup removed). A meaningful subject becomes the post's first line; a
generic one (``status``, ``update``…) or one with a reply or forward prefix does not,
and a reply's subject never does.
"""

from __future__ import annotations

import re

from sqlmodel import col, select

from statusmail.inbound.brevity import count_chars, normalize
from statusmail.inbound.extract import extract_body
from statusmail.inbound.incoming import Incoming
from statusmail.inbound.outcome import Discarded, Reason, Refused
from statusmail.inbound.tags import find_handles, find_tags
from statusmail.outbound.notices import QueueNotice
from statusmail.store.models import User
from statusmail.store.record import users_registered_in_batch

GENERIC_SUBJECTS = {"", "status", "update", "post", "fyi", "(no subject)", "no subject", "status update"}
# Reply and forward prefixes of the clients people use, in their languages: Re, Aw (de),
# Sv (sv/da/no), Vs (fi), Antw (nl), Odp (pl), Ynt (tr), Fwd/Fw, Wg (de), Tr (fr),
# Rv/Rif/R (it/es), Enc (pt), Vb (sv), Doorst (nl), Pd (pl).
PREFIX = re.compile(
    r"^\s*(?:re|aw|sv|vs|antw|antwort|odp|ynt|res|ref|rif|r|fwd?|wg|tr|rv|enc|vb|doorst|pd|i)\s*(?:\[\d{1,4}\])?\s*[:：]",
    re.IGNORECASE)


def has_reply_prefix(subject: str) -> bool:
    return PREFIX.match(subject) is not None


def meaningful_subject(subject: str) -> str:
    """The subject as a post's first line, or "" when it says nothing."""
    flat = " ".join(subject.split())
    if flat.lower().strip(" .:!-") in GENERIC_SUBJECTS or has_reply_prefix(flat):
        return ""
    return flat


def compose_text(subject: str, body: str, *, is_reply: bool) -> str:
    """The post: subject line, a blank line, the body; the subject alone when no body."""
    first = "" if is_reply else meaningful_subject(subject)
    body = body.strip()
    if first and body:
        return f"{first}\n\n{body}"
    return first or body


def extract_text(mail: Incoming) -> None:
    """Set the post's text from subject and body; refuse a message with neither."""
    body = extract_body(mail.message)
    mail.removed = body.removed
    # The one normalization: what is counted is what is stored and mailed (SPEC §3).
    mail.text = normalize(compose_text(mail.subject, body.text,
                                       is_reply=mail.parent is not None or mail.question is not None))
    if not mail.text and body.removed.strip():
        refuse_nothing_new(mail, body.removed)
    if not mail.text:
        raise Refused(Reason.EMPTY, "no text in the body and no meaningful subject")


def refuse_nothing_new(mail: Incoming, removed: str) -> None:
    """Everything was quote or signature: not posted, and the sender is told what was
    taken out (SPEC §3), unless the sender may be forged."""
    detail = f"no new text; {len(removed.splitlines())} line(s) of quotes and signatures removed"
    if mail.unauthenticated or mail.user is None:
        raise Discarded(Reason.NOTHING_NEW, detail + "; unauthenticated, not answered")
    mail.changes.append(QueueNotice(mail.settings, mail.user, "nothing_new",
                                    subject="Not posted: no new text in your mail",
                                    context={"removed": removed[:2000]}, in_reply_to=mail.message_id))
    raise Discarded(Reason.NOTHING_NEW, detail)


def enforce_brevity(mail: Incoming) -> None:
    """Over ``policy.max_chars``: no post, and the sender is told how long it was."""
    limit = mail.settings.policy.max_chars
    length = count_chars(mail.text)
    if length <= limit:
        return
    assert mail.user is not None
    if mail.unauthenticated:
        # The sender may be forged: tell no one (no backscatter), just do not post.
        raise Discarded(Reason.TOO_LONG, f"{length} characters, the limit is {limit}; unauthenticated, not answered")
    mail.changes.append(QueueNotice(mail.settings, mail.user, "too_long",
                                    subject=f"Not posted: your update is {length} characters (the limit is {limit})",
                                    context={"length": length, "limit": limit, "text": quoted(mail.text, limit)},
                                    in_reply_to=mail.message_id))
    raise Discarded(Reason.TOO_LONG, f"{length} characters, the limit is {limit}")


def quoted(text: str, limit: int) -> str:
    """The sender's text as a too-long notice quotes it: enough to recognise, never the
    150,000-character "URL" back to them."""
    keep = max(4 * limit, 1000)
    return text if len(text) <= keep else text[:keep] + "…"


def find_tags_and_mentions(mail: Incoming) -> None:
    """Record ``#tags`` and resolve ``@handles`` to users (unknown handles are plain text)."""
    mail.tags = find_tags(mail.text)
    handles = find_handles(mail.text)
    if handles:
        users = [*mail.session.exec(select(User).where(col(User.handle).in_(handles))).all(),
                 *users_registered_in_batch(mail.session, handles)]
        by_handle = {u.handle: u for u in users}
        mail.mentioned = [by_handle[h] for h in handles if h in by_handle]
