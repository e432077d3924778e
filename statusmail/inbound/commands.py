"""Commands by mail to the request address, one per line (SPEC §3 Commands).

Each message is answered by one mail (``Auto-Submitted: auto-replied``) listing what
was done for every line. An unknown command is answered with the help text and the line
that failed. Without a body the subject is the command, which is how the
``List-Unsubscribe`` mailto (subject ``unsubscribe``) works in one mail. ``mute`` and
``unmute`` act on the thread that the message replies to (its In-Reply-To/References).
"""

from __future__ import annotations

from collections.abc import Callable

from statusmail.config import is_timezone
from statusmail.inbound.extract import extract_body
from statusmail.inbound.incoming import Incoming
from statusmail.inbound.outcome import Discarded, Reason
from statusmail.inbound.text import has_reply_prefix
from statusmail.inbound.threads import post_answered
from statusmail.outbound.notices import QueueNotice
from statusmail.store.follows import UnknownTarget, follow, following, resolve_target, set_mute, unfollow

MAX_LINES = 20
HELP = """\
help                     this text
follow alice@corp.example   follow a person (or @alice, or #tag)
unfollow @alice          stop following
following                what you follow
digest daily|weekly|off  how often you get a digest
timezone Europe/Berlin   your timezone, for the digest hour
mute / unmute            (in a reply to a thread's mail) stop or resume mail about it
unsubscribe              no more digests (replies and mentions still arrive)"""


def command_lines(mail: Incoming) -> list[str]:
    """The non-empty lines of the new text; the subject when the body has none."""
    body = extract_body(mail.message).text
    lines = [ln.strip() for ln in body.splitlines() if ln.strip()]
    if not lines:
        subject = mail.subject.strip()
        if subject and not has_reply_prefix(subject):
            lines = [subject]
        elif subject:
            lines = [subject.split(":", 1)[1].strip()]
    return lines[:MAX_LINES]


def thread_of(mail: Incoming) -> int | None:
    post = post_answered(mail)
    return post.thread_id if post else None


def do_help(mail: Incoming, args: str) -> str:
    return HELP


def do_follow(mail: Incoming, args: str) -> str:
    try:
        target = resolve_target(mail.session, args)
    except UnknownTarget as exc:
        return f"not done: {exc}"
    if target.user is not None and target.user.id == mail.user.id:  # type: ignore[union-attr]
        return "not done: you cannot follow yourself"
    return f"now following {target}" if follow(mail.session, mail.user, target) else f"already following {target}"  # type: ignore[arg-type]


def do_unfollow(mail: Incoming, args: str) -> str:
    try:
        target = resolve_target(mail.session, args)
    except UnknownTarget as exc:
        return f"not done: {exc}"
    return f"no longer following {target}" if unfollow(mail.session, mail.user, target) else f"you were not following {target}"  # type: ignore[arg-type]


def do_following(mail: Incoming, args: str) -> str:
    targets = following(mail.session, mail.user)  # type: ignore[arg-type]
    return "you follow:\n" + "\n".join(f"  {t}" for t in targets) if targets else "you follow no one yet"


def do_digest(mail: Incoming, args: str) -> str:
    choice = args.lower()
    if choice not in ("daily", "weekly", "off"):
        return "not done: digest takes daily, weekly or off"
    mail.user.digest = choice  # type: ignore[union-attr]
    mail.session.add(mail.user)
    return f"digest set to {choice}"


def do_timezone(mail: Incoming, args: str) -> str:
    if not is_timezone(args):
        return f"not done: unknown timezone {args!r} (use a name like Europe/Berlin)"
    mail.user.timezone = args  # type: ignore[union-attr]
    mail.session.add(mail.user)
    return f"timezone set to {args}"


def do_unsubscribe(mail: Incoming, args: str) -> str:
    mail.user.digest = "off"  # type: ignore[union-attr]
    mail.session.add(mail.user)
    return "unsubscribed: no more digests (replies and mentions still arrive; send 'digest daily' to resume)"


def mute_command(muted: bool) -> Callable[[Incoming, str], str]:
    def run(mail: Incoming, args: str) -> str:
        thread_id = thread_of(mail)
        if thread_id is None:
            return "not done: send mute/unmute as a reply to a mail about the thread"
        changed = set_mute(mail.session, mail.user, thread_id, muted)  # type: ignore[arg-type]
        state = "muted" if muted else "unmuted"
        return f"thread {thread_id} {state}" if changed else f"thread {thread_id} was already {state}"
    return run


COMMANDS: dict[str, Callable[[Incoming, str], str]] = {
    "help": do_help,
    "follow": do_follow,
    "unfollow": do_unfollow,
    "following": do_following,
    "digest": do_digest,
    "timezone": do_timezone,
    "unsubscribe": do_unsubscribe,
    "mute": mute_command(True),
    "unmute": mute_command(False),
}
NEEDS_ARGUMENT = {"follow", "unfollow", "digest", "timezone"}


def run_commands(mail: Incoming) -> None:
    """Run each line and answer with one mail listing the results."""
    results: list[tuple[str, str]] = []
    failed = False
    for line in command_lines(mail) or ["help"]:
        word, _, args = line.partition(" ")
        handler = COMMANDS.get(word.lower())
        if handler is None or (word.lower() in NEEDS_ARGUMENT and not args.strip()):
            results.append((line, "not understood"))
            failed = True
            break  # the rest is probably a signature or a quote
        results.append((line, handler(mail, args.strip())))
    assert mail.user is not None
    mail.changes.append(QueueNotice(mail.settings, mail.user, "commands", kind="command",
                                    subject="Re: " + (mail.subject.strip() or "your commands"),
                                    context={"results": results, "failed": failed, "help": HELP},
                                    in_reply_to=mail.message_id))
    raise Discarded(Reason.COMMANDS, f"{len(results)} command(s)" + (", one not understood" if failed else ""))
