"""The one table from pipeline reasons to SMTP replies.

Basic and enhanced status codes agree in class (RFC 3463 §2: a 4xx reply carries 4.x.x).
Outages and rate limits are 4xx so the sender's MTA retries; policy refusals are 5xx.
Refusals are answered here, in the dialogue, and never by a mail (no backscatter).
Tests import these constants rather than repeating the strings.
"""

from __future__ import annotations

from statusmail.inbound.outcome import Reason

OK_POSTED = "250 2.0.0 OK: posted"
OK_REPLIED = "250 2.0.0 OK: reply posted"
OK_HELD = "250 2.0.0 OK: held for moderation"
OK_COMMANDS = "250 2.0.0 OK: commands answered by mail"
OK_DUPLICATE = "250 2.0.0 OK: already received"
OK_NOTED = "250 2.0.0 OK"
OK_TOO_LONG = "250 2.0.0 OK: not posted, too long; the sender was told by mail"

REFUSED_POLICY = "550 5.7.1"
REFUSED_RECIPIENT = "550 5.1.1 No such recipient here"
REFUSED_TOO_LARGE = "552 5.3.4 Message too big for this gateway"
# RFC 5321 §4.5.3.1.6: a text line is at most 1000 octets with its CRLF; §4.2.2 gives 500.
REFUSED_LINE_TOO_LONG = "500 5.5.2 Line too long (RFC 5321 4.5.3.1.6)"
REFUSED_UNPARSEABLE = "554 5.6.0 Message cannot be parsed"
REFUSED_EMPTY = "550 5.6.0 No status text found in the message"
DEFERRED_RATE = "451 4.7.1 Too many posts this hour, try again later"
DEFERRED_STORE = "451 4.3.0 Database unavailable, try again later"
DEFERRED_ERROR = "451 4.3.0 Temporary failure, try again later"

REPLIES: dict[Reason, str] = {
    Reason.POSTED: OK_POSTED,
    Reason.REPLIED: OK_REPLIED,
    Reason.COMMANDS: OK_COMMANDS,
    Reason.DUPLICATE: OK_DUPLICATE,
    Reason.BOUNCE: OK_NOTED,
    Reason.HELD: OK_HELD,
    Reason.TOO_LONG: OK_TOO_LONG,
    # RFC 3834 §2: never answer automatic mail; accepting and dropping it answers no one.
    Reason.ROBOT: OK_NOTED,
    Reason.UNTRUSTED_PEER: f"{REFUSED_POLICY} Not a trusted peer for this gateway",
    Reason.TLS_REQUIRED: "530 5.7.0 Must issue a STARTTLS command first",
    Reason.AUTH_REQUIRED: "530 5.7.0 Authentication required",
    Reason.UNKNOWN_RECIPIENT: REFUSED_RECIPIENT,
    Reason.UNKNOWN_TOKEN: REFUSED_RECIPIENT,
    Reason.DOMAIN_NOT_ALLOWED: f"{REFUSED_POLICY} Sender domain may not post here",
    Reason.UNKNOWN_SENDER: f"{REFUSED_POLICY} Sender is not a registered user",
    Reason.BANNED: f"{REFUSED_POLICY} Sender may not post here",
    Reason.NOT_AUTHENTICATED: f"{REFUSED_POLICY} Sender could not be authenticated",
    Reason.WRONG_REPLIER: f"{REFUSED_POLICY} This reply address belongs to someone else",
    Reason.TOO_LARGE: REFUSED_TOO_LARGE,
    Reason.LINE_TOO_LONG: REFUSED_LINE_TOO_LONG,
    Reason.UNPARSEABLE: REFUSED_UNPARSEABLE,
    Reason.EMPTY: REFUSED_EMPTY,
    Reason.RATE_LIMITED: DEFERRED_RATE,
    Reason.STORE_UNAVAILABLE: DEFERRED_STORE,
    Reason.INTERNAL_ERROR: DEFERRED_ERROR,
}


def smtp_reply(reason: Reason) -> str:
    """The SMTP reply line for a pipeline reason."""
    return REPLIES[reason]
