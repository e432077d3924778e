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
from statusmail.inbound.threads import answers_bulk_mail, post_answered
from statusmail.outbound.notices import QueueNotice
from statusmail.outbound.notify import first_line
from statusmail.outbound.threadindex import thread_topic
from statusmail.store.follows import (
    FollowChange,
    MuteChange,
    Target,
    UnknownTarget,
    following,
    is_following,
    is_muted,
    resolve_target,
)
from statusmail.store.models import Post
from statusmail.store.posts import thread_closed
from statusmail.store.users import SetUserFields

MAX_LINES = 20
HELP = """\
help                     this text
follow alice@corp.example   follow a person (or @alice, or #tag)
unfollow @alice          stop following
following                what you follow
digest daily|weekly|off  how often you get a digest
timezone Europe/Berlin   your timezone, for the digest hour
mute / unmute            (in a reply to a thread's mail) stop or resume mail about it
unsubscribe              no more digests (replies and mentions still arrive)
checkin on|off           the daily check-in question and your team's round-up"""


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


def thread_of(mail: Incoming) -> Post | None:
    """The root of the thread a command mail answers; None for none, or for a closed one
    (SPEC §3: ``mute`` of a closed thread answers as for an unknown thread)."""
    post = post_answered(mail)
    if post is None or thread_closed(mail.session, post):
        return None
    return mail.session.get(Post, post.thread_id) if post.thread_id else post


def do_help(mail: Incoming, args: str) -> str:
    return HELP


def do_follow(mail: Incoming, args: str) -> str:
    assert mail.user is not None
    try:
        target = resolve_target(mail.session, args)
    except UnknownTarget as exc:
        return f"not done: {exc}"
    if target.user is not None and target.user.email == mail.user.email:
        return "not done: you cannot follow yourself"
    if follows_now(mail, target):
        return f"already following {target}"
    mail.changes.append(FollowChange(mail.user, target, follow=True))
    return f"now following {target}"


def do_unfollow(mail: Incoming, args: str) -> str:
    assert mail.user is not None
    try:
        target = resolve_target(mail.session, args)
    except UnknownTarget as exc:
        return f"not done: {exc}"
    # Recorded even when not followed: an org-chart default must not follow them later.
    was_following = follows_now(mail, target)
    mail.changes.append(FollowChange(mail.user, target, follow=False))
    if not was_following:
        return f"you were not following {target}"
    return f"no longer following {target}"


def do_following(mail: Incoming, args: str) -> str:
    assert mail.user is not None
    targets = following(mail.session, mail.user) if mail.user.id is not None else []
    for change in mail.changes:  # what the earlier lines of this message changed
        if isinstance(change, FollowChange):
            targets = [t for t in targets if t != change.target] + ([change.target] if change.follow else [])
    return "you follow:\n" + "\n".join(f"  {t}" for t in targets) if targets else "you follow no one yet"


def follows_now(mail: Incoming, target: Target) -> bool:
    """Whether the sender follows ``target`` once the earlier lines of this message are done."""
    assert mail.user is not None
    for change in reversed(mail.changes):
        if isinstance(change, FollowChange) and change.target == target:
            return change.follow
    return is_following(mail.session, mail.user, target)


def set_user(mail: Incoming, **values: object) -> None:
    assert mail.user is not None
    mail.changes.append(SetUserFields(mail.user, tuple(values.items())))


def do_digest(mail: Incoming, args: str) -> str:
    choice = args.lower()
    if choice not in ("daily", "weekly", "off"):
        return "not done: digest takes daily, weekly or off"
    set_user(mail, digest=choice)
    return f"digest set to {choice}"


def do_timezone(mail: Incoming, args: str) -> str:
    if not is_timezone(args):
        return f"not done: unknown timezone {args!r} (use a name like Europe/Berlin)"
    set_user(mail, timezone=args)
    return f"timezone set to {args}"


def do_unsubscribe(mail: Incoming, args: str) -> str:
    set_user(mail, digest="off")
    return "unsubscribed: no more digests (replies and mentions still arrive; send 'digest daily' to resume)"


def do_checkin(mail: Incoming, args: str) -> str:
    choice = args.lower()
    if choice not in ("on", "off"):
        return "not done: checkin takes on or off"
    set_user(mail, checkin=choice == "on")
    return f"check-ins turned {choice}"


def mute_command(muted: bool) -> Callable[[Incoming, str], str]:
    def run(mail: Incoming, args: str) -> str:
        assert mail.user is not None
        root = thread_of(mail)
        if root is None or root.id is None:
            return "not done: send mute/unmute as a reply to a mail about the thread"
        thread_id, name = root.id, f'"{first_line(root.body, 80)}"'  # named by its first line, never its id
        state = "muted" if muted else "unmuted"
        earlier = [c.muted for c in mail.changes if isinstance(c, MuteChange) and c.thread == thread_id]
        if (earlier[-1] if earlier else is_muted(mail.session, mail.user, thread_id)) == muted:
            return f"thread {name} was already {state}"
        mail.changes.append(MuteChange(mail.user, thread_id, muted))
        return f"thread {name} {state}"
    return run


COMMANDS: dict[str, Callable[[Incoming, str], str]] = {
    "help": do_help,
    "follow": do_follow,
    "unfollow": do_unfollow,
    "following": do_following,
    "digest": do_digest,
    "timezone": do_timezone,
    "unsubscribe": do_unsubscribe,
    "checkin": do_checkin,
    "mute": mute_command(True),
    "unmute": mute_command(False),
}
NEEDS_ARGUMENT = {"follow", "unfollow", "digest", "timezone", "checkin"}


def answer_bulk_replies(mail: Incoming) -> None:
    """A reply to a digest, an answer or a round-up sent to the status address runs as
    commands (text that is none gets the help answer): it is never a post. An answer to
    the daily question is a post (``checkins.find_question`` recognised it)."""
    if mail.question is None and answers_bulk_mail(mail):
        run_commands(mail)


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
                                    subject="Re: " + (thread_topic(mail.subject) or "your commands"),
                                    context={"results": results, "failed": failed, "help": HELP},
                                    in_reply_to=mail.message_id))
    raise Discarded(Reason.COMMANDS, f"{len(results)} command(s)" + (", one not understood" if failed else ""))
