"""The inbound pipeline: every message, however it arrived, goes through :func:`run`.

The stages are data: a tuple of named functions per kind of message, run in order
(Mailman's builtin pipelines are the model). Each stage reads and annotates one
:class:`Incoming` and may end the pipeline by raising a
:class:`~statusmail.inbound.outcome.PipelineStop`. The whole run is one transaction: the
log entry, the post and every outbox row it causes commit together, or not at all; only
then is the message accepted (``250`` means stored).

A refused or deferred message rolls back what the stages did (an auto-registered user,
say) and is logged on its own, with its raw bytes, so nothing that reached the gateway
is lost from view.

:func:`process` runs the stages for one message inside a transaction the caller owns,
in a SAVEPOINT of its own: the SMTP listener batches the messages of concurrent sessions
into one commit that way (group commit, ``gateway/batcher.py``), and :func:`run` is the
same with a transaction of one message (IMAP, ``inject``, ``reprocess``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import SessionTransaction
from sqlmodel import Session

from statusmail.config import Settings
from statusmail.errors import StoreUnavailable
from statusmail.inbound import commands, loops, parse, publish, senders, text, threads
from statusmail.inbound.envelope import Envelope
from statusmail.inbound.incoming import Incoming
from statusmail.inbound.outcome import Deferred, Discarded, Held, Outcome, Reason, Refused
from statusmail.inbound.parse import without_surrogates as clean
from statusmail.inbound.recipients import Kind, classify_recipient
from statusmail.logs import redact
from statusmail.store.db import begin_immediate, insert_values, transaction
from statusmail.store.direct import DriverSavepoint
from statusmail.store.models import InboundLog

log = logging.getLogger(__name__)

Stage = Callable[[Incoming], None]

# Stages every message passes, before we know what kind it is.
INTAKE: tuple[Stage, ...] = (
    parse.parse_message,
    parse.refuse_duplicate,
    parse.classify,
)

# Who may speak: shared by posts, replies and commands.
SENDER: tuple[Stage, ...] = (
    loops.refuse_robots,
    senders.require_one_sender,
    senders.check_sender_domain,
    senders.check_envelope_sender,
    senders.authenticate_sender,
    senders.identify_user,
    senders.refuse_banned,
)

# A post or a reply: the same stages; find_parent tells them apart (by token or headers).
PUBLISH: tuple[Stage, ...] = SENDER + (
    threads.find_parent,
    senders.limit_rate,
    text.extract_text,
    text.enforce_brevity,
    text.find_tags_and_mentions,
    publish.collect_holds,
    publish.store_post,
    publish.notify,
)

PIPELINES: dict[Kind, tuple[Stage, ...]] = {
    Kind.POST: PUBLISH,
    Kind.REPLY: PUBLISH,
    Kind.COMMAND: SENDER + (commands.run_commands,),
    Kind.BOUNCE: (loops.record_bounce,),
}


def run(raw: bytes, envelope: Envelope, settings: Settings, engine: Engine) -> Outcome:
    """Decide and store the fate of one message in a transaction of its own (IMAP,
    ``inject``, ``reprocess``). Never raises for a bad message."""
    try:
        with transaction(engine) as session:
            begin_immediate(session)
            return process(session, raw, envelope, settings)
    except StoreUnavailable as exc:
        log.error("database unavailable for message from %s: %s", redact(envelope.mail_from), exc)
        return Outcome("refused", Reason.STORE_UNAVAILABLE, str(exc))
    except IntegrityError:
        # Another session stored the same Message-ID between our check and our commit.
        log.info("duplicate delivery raced and lost; the first one is stored")
        return Outcome("accepted", Reason.DUPLICATE, "already received")


def decide(mail: Incoming) -> Outcome:
    """Run the stages on one message and say what to store; Refused and Deferred propagate.

    A duplicate comes back as ``accepted``/``DUPLICATE`` and must not be logged again.
    """
    try:
        for stage in INTAKE:
            stage(mail)
        for stage in PIPELINES[mail.kind]:
            stage(mail)
        return Outcome("accepted", Reason.REPLIED if mail.parent else Reason.POSTED)
    except Held as stop:
        return Outcome("held", stop.reason, stop.detail)
    except Discarded as stop:
        if stop.reason is Reason.DUPLICATE:
            log.info("duplicate %s from %s: already stored", mail.message_id,
                     redact(mail.sender or mail.envelope.mail_from))
            return Outcome("accepted", Reason.DUPLICATE, stop.detail)
        status = "accepted" if stop.reason in (Reason.COMMANDS, Reason.BOUNCE) else "refused"
        return Outcome(status, stop.reason, stop.detail)


def store_outcome(mail: Incoming, outcome: Outcome) -> Outcome:
    """Add the log row (its dedupe key makes a redelivery a no-op) and return the outcome with ids."""
    log_id = insert_values(mail.session, InboundLog, **mail.log_entry(outcome))
    return Outcome(outcome.status, outcome.reason, outcome.detail, mail.post_id, log_id, mail.queued)


def log_outcome(mail: Incoming, outcome: Outcome) -> None:
    log.info("%s %s from %s: %s%s", outcome.status, mail.message_id or "(no Message-ID)", redact(mail.sender or mail.envelope.mail_from),
             outcome.reason.value, f" ({redact(outcome.detail)})" if outcome.detail and outcome.detail != outcome.reason.value else "")


def process(session: Session, raw: bytes, envelope: Envelope, settings: Settings) -> Outcome:
    """One message inside the caller's open transaction: group commit (``gateway/batcher.py``).

    The same stages as :func:`run`, but the caller commits, once for many messages. This
    message's work runs in a SAVEPOINT, so a refusal, a duplicate that raced in, or a bug
    rolls back this message only; its refusal row is then written in the caller's
    transaction, so it is as durable as the others' posts. Database outages propagate:
    the whole transaction is lost and every message in it must be answered 4xx.
    """
    mail = Incoming(raw=raw, envelope=envelope, settings=settings, session=session)
    savepoint = begin_savepoint(session, envelope, settings)
    try:
        outcome = decide(mail)
        if outcome.reason is not Reason.DUPLICATE:
            for change in mail.changes:
                mail.queued = change.apply(session) or mail.queued
            outcome = store_outcome(mail, outcome)
        savepoint.commit()
    except (Refused, Deferred) as stop:
        savepoint.rollback()
        log.warning("refused %s from %s: %s", mail.message_id or "(no Message-ID)",
                    redact(mail.sender or envelope.mail_from), redact(stop.detail))
        return add_refusal(session, raw, envelope, stop.reason, stop.detail, message_id=mail.message_id,
                           sender=mail.sender)
    except IntegrityError:
        savepoint.rollback()
        log.info("duplicate delivery raced and lost; the first one is stored")
        return Outcome("accepted", Reason.DUPLICATE, "already received")
    except (OperationalError, StoreUnavailable):
        raise  # the connection or the file is in trouble: the batch is lost, not this message
    except DBAPIError as exc:
        if exc.connection_invalidated:
            raise
        savepoint.rollback()
        return internal_error(session, raw, envelope)
    except Exception:
        savepoint.rollback()
        return internal_error(session, raw, envelope)
    if outcome.reason is not Reason.DUPLICATE:
        log_outcome(mail, outcome)
    return outcome


# The kinds whose stages write only plain INSERTs, never through the ORM's flush (a test
# holds them to it): posts and replies, nearly every message.
DRIVER_SAVEPOINT_KINDS = frozenset({Kind.POST, Kind.REPLY})


def begin_savepoint(session: Session, envelope: Envelope, settings: Settings) -> DriverSavepoint | SessionTransaction:
    """The message's SAVEPOINT: the driver's own when it can only be a post or a reply
    (``store/direct.py``: 1 us against the ORM's 0.2 ms), the ORM's for commands and
    bounces, which change users through the ORM. INTAKE picks the kind from the same
    recipients, commands and bounces first."""
    kinds = {r.kind if r else None for r in (classify_recipient(a, settings) for a in envelope.rcpt_tos)}
    if envelope.rcpt_tos and kinds - {None} <= DRIVER_SAVEPOINT_KINDS:
        return DriverSavepoint(session)
    return session.begin_nested()


def internal_error(session: Session, raw: bytes, envelope: Envelope) -> Outcome:
    log.exception("pipeline failed on a message from %s", redact(envelope.mail_from))
    add_refusal(session, raw, envelope, Reason.INTERNAL_ERROR, "internal error; raw message kept for reprocessing")
    return Outcome("refused", Reason.INTERNAL_ERROR, "internal error")


def add_refusal(session: Session, raw: bytes | None, envelope: Envelope, reason: Reason, detail: str, *,
                message_id: str = "", sender: str = "") -> Outcome:
    """A refused log row in the caller's transaction; the refusal's outcome with its id."""
    entry = refusal_entry(raw, envelope, reason, detail, message_id=message_id, sender=sender)
    return Outcome("refused", reason, detail, None, insert_values(session, InboundLog, **entry))


def record_refusal(engine: Engine, raw: bytes | None, envelope: Envelope, reason: Reason, detail: str, *,
                   message_id: str = "", sender: str = "") -> int | None:
    """Write a refused log entry; a refusal is still logged when the pipeline never ran."""
    try:
        with transaction(engine) as session:
            entry = refusal_entry(raw, envelope, reason, detail, message_id=message_id, sender=sender)
            return insert_values(session, InboundLog, **entry)
    except StoreUnavailable as exc:
        log.error("could not log refusal (%s): %s", reason.value, exc)
        return None


def refusal_entry(raw: bytes | None, envelope: Envelope, reason: Reason, detail: str, *,
                  message_id: str = "", sender: str = "") -> dict[str, Any]:
    """The values of a refused log row."""
    return dict(message_id=clean(message_id), sender=clean(sender or envelope.mail_from),
                recipients=clean(", ".join(envelope.rcpt_tos)), peer=envelope.peer,
                source=envelope.source, outcome="refused", reason=reason.name.lower(),
                detail=clean(detail[:1000]), raw=raw)
