"""The inbound pipeline: every message, however it arrived, goes through :func:`commit_batch`.

The stages are data: a tuple of named functions per kind of message, run in order
(Mailman's builtin pipelines are the model). Each stage reads the store and fills in
one :class:`Incoming`, or ends the pipeline by raising a
:class:`~statusmail.inbound.outcome.PipelineStop` with a reason. No stage writes: what a
message decided becomes a :class:`~statusmail.store.record.Decision`, and
:func:`~statusmail.store.record.record_batch` writes the decisions of a whole batch in
one transaction (Mailman's rules decide, its chains act). Only once that transaction has
committed are the outcomes returned, so ``250`` means stored.

Every source takes this path: the SMTP listener hands it the messages of concurrent
sessions as one batch (group commit, ``gateway/batcher.py``, in the writer process of
``gateway/writer.py``); IMAP, ``inject`` and ``reprocess`` hand it batches of one
(:func:`run`). A message the stages cannot handle (a bug) is refused on its own and
logged with its raw bytes; a database failure loses the whole batch, and every message
in it is answered as deferred. Any other failure while recording is retried message by
message, so only the message that causes it is deferred.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlmodel import Session

from statusmail.config import Settings
from statusmail.errors import StoreUnavailable
from statusmail.inbound import checkins, commands, keywords, loops, parse, publish, senders, signatures, text, threads
from statusmail.inbound.envelope import Envelope
from statusmail.inbound.incoming import Incoming
from statusmail.inbound.outcome import Held, Outcome, PipelineStop, Reason
from statusmail.inbound.parse import without_surrogates as clean
from statusmail.inbound.recipients import Kind
from statusmail.logs import redact
from statusmail.store.changes import Change
from statusmail.store.db import begin_immediate, transaction
from statusmail.store.record import Decision, note_decision, record_batch
from statusmail.store.users import preload_users

log = logging.getLogger(__name__)

Stage = Callable[[Incoming], None]
# (raw, envelope) or (raw, envelope, changes): the changes are the source's own writes
# for this message (the IMAP poller's last UID), applied in the batch's transaction
# whatever the outcome, so they commit exactly when the decisions do.
Job = tuple[bytes, Envelope] | tuple[bytes, Envelope, tuple[Change, ...]]

# Stages that need only the bytes: run before the batch's transaction, so no message
# is parsed while the database's write lock is held.
PARSE: tuple[Stage, ...] = (
    parse.refuse_oversized,
    parse.parse_message,
    parse.read_return_path,
)

# Stages every message passes, before we know what kind it is.
INTAKE: tuple[Stage, ...] = (
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
    checkins.find_question,
    commands.answer_bulk_replies,
    threads.find_parent,
    text.extract_text,
    checkins.skip_or_answer,
    keywords.act_on_keyword,
    signatures.cut_learned_signature,
    text.enforce_brevity,
    text.find_tags_and_mentions,
    checkins.tag_answer,
    # Only what is a post by now counts against posts_per_hour: a keyword, a skip, no
    # new text or an over-long update has ended above, posting nothing (SPEC §2, §3).
    publish.limit_posts,
    publish.collect_holds,
    publish.decide_post,
)

PIPELINES: dict[Kind, tuple[Stage, ...]] = {
    Kind.POST: PUBLISH,
    Kind.REPLY: PUBLISH,
    Kind.COMMAND: SENDER + (commands.run_commands,),
    Kind.BOUNCE: (loops.record_bounce,),
}


def run(raw: bytes, envelope: Envelope, settings: Settings, engine: Engine) -> Outcome:
    """One message, a batch of its own (IMAP, ``inject``, ``reprocess``). Never raises."""
    return commit_batch(settings, engine, [(raw, envelope)])[0]


def commit_batch(settings: Settings, engine: Engine, jobs: list[Job],
                 before_commit: Callable[[Session], None] | None = None) -> list[Outcome]:
    """Decide every message, record the decisions in one transaction, and return the
    outcomes once it has committed. Never raises: a lost batch is answered as deferred.
    ``before_commit`` is for tests that inject faults."""
    # Parsing first, outside the transaction: SQLite's write lock is held only for the
    # stages that read the store and for the writes.
    parsed = [prepare(job[0], job[1], settings) for job in jobs]
    try:
        with transaction(engine) as session:
            begin_immediate(session)
            preload_users(session, (mail.envelope.mail_from for mail, _ in parsed))
            decided = [decide(session, mail, stopped) for mail, stopped in parsed]
            record_batch(session, [decision for _, _, decision in decided])
            for job in jobs:
                for change in job[2] if len(job) > 2 else ():
                    change.apply(session)
            if before_commit is not None:
                before_commit(session)
        # The with block has committed: now 250 is true.
        outcomes = [outcome_of(mail, outcome, decision) for mail, outcome, decision in decided]
    except StoreUnavailable as exc:
        log.error("database unavailable, %d message(s) deferred: %s", len(jobs), exc)
        return [Outcome(Reason.STORE_UNAVAILABLE, str(exc))] * len(jobs)
    except Exception:
        if len(jobs) > 1:
            # One message's failure must not defer the others, again at every retry of
            # its sender: each is recorded alone, and only the failing one is deferred.
            log.exception("recording a batch of %d messages failed; each is recorded alone", len(jobs))
            return [commit_batch(settings, engine, [job], before_commit)[0] for job in jobs]
        log.exception("recording a message failed; deferred")
        return [Outcome(Reason.INTERNAL_ERROR, "internal error")]
    for (mail, _, _), outcome in zip(decided, outcomes):
        log_outcome(mail, outcome)
    return outcomes


def prepare(raw: bytes, envelope: Envelope, settings: Settings) -> tuple[Incoming, Outcome | None]:
    """Run the :data:`PARSE` stages, which need no store: the message, and the outcome
    when one of them already decided it."""
    mail = Incoming(raw=raw, envelope=envelope, settings=settings)
    try:
        for stage in PARSE:
            stage(mail)
    except PipelineStop as stop:
        return mail, Outcome(stop.reason, stop.detail)
    except RecursionError:
        return mail, too_deep()
    except Exception:
        return mail, internal_error(envelope)
    return mail, None


def decide(session: Session, mail: Incoming, stopped: Outcome | None = None) -> tuple[Incoming, Outcome, Decision]:
    """Run the stages on one parsed message: its outcome and what to record for it.

    Database trouble propagates (the batch is lost, not this message); any other failure
    of a stage refuses this message alone, keeping its raw bytes for ``reprocess``.
    """
    mail.session = session
    if stopped is not None:
        outcome = stopped
    else:
        try:
            outcome = run_stages(mail)
        except (OperationalError, StoreUnavailable):
            raise
        except DBAPIError as exc:
            if exc.connection_invalidated:
                raise
            outcome = internal_error(mail.envelope)
        except RecursionError:
            outcome = too_deep()
        except Exception:
            outcome = internal_error(mail.envelope)
    decision = mail.decision(outcome)
    note_decision(session, decision)
    return mail, outcome, decision


def run_stages(mail: Incoming) -> Outcome:
    """The stages of the message's kind; the reason one stopped at, or posted."""
    try:
        for stage in INTAKE:
            stage(mail)
        for stage in PIPELINES[mail.kind]:
            stage(mail)
        return Outcome(Reason.REPLIED if mail.parent else Reason.POSTED)
    except Held as stop:
        return Outcome(Reason.HELD, stop.detail)
    except PipelineStop as stop:
        return Outcome(stop.reason, stop.detail, retry_at=stop.retry_at)


def too_deep() -> Outcome:
    """Only a message's structure nests deep enough to exhaust the stack: its fault,
    and final (SPEC §3: 554, never 451)."""
    return Outcome(Reason.UNPARSEABLE, "structure nested too deep to read")


def internal_error(envelope: Envelope) -> Outcome:
    log.exception("pipeline failed on a message from %s", redact(envelope.mail_from))
    return Outcome(Reason.INTERNAL_ERROR, "internal error; raw message kept for reprocessing")


def outcome_of(mail: Incoming, outcome: Outcome, decision: Decision) -> Outcome:
    """The outcome with what recording it produced."""
    if decision.duplicate:
        return Outcome(Reason.DUPLICATE, "stored by another process first", log_id=decision.log_id)
    post_id = mail.post.id if mail.post is not None and decision.stored else None
    return Outcome(outcome.reason, outcome.detail, post_id, decision.log_id, decision.queued, outcome.retry_at)


def log_outcome(mail: Incoming, outcome: Outcome) -> None:
    detail = f" ({redact(outcome.detail)})" if outcome.detail and outcome.detail != outcome.reason.value else ""
    log.log(logging.WARNING if not outcome.accepted else logging.INFO, "%s %s from %s: %s%s", outcome.status,
            mail.message_id or "(no Message-ID)", redact(mail.sender or mail.envelope.mail_from),
            outcome.reason.value, detail)


def record_refusal(engine: Engine, raw: bytes | None, envelope: Envelope, reason: Reason, detail: str, *,
                   message_id: str = "", sender: str = "") -> int | None:
    """Log a refusal made before any message was read (in the SMTP dialogue): a batch
    of one decision that keeps only its log row."""
    decision = Decision(log=refusal_entry(raw, envelope, reason, detail, message_id=message_id, sender=sender),
                        stored=False)
    try:
        with transaction(engine) as session:
            begin_immediate(session)
            record_batch(session, [decision])
        return decision.log_id
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
