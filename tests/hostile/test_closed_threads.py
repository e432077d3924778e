"""SPEC §3 Closed threads: a reply into a thread whose root or parent is held, hidden or
deleted is refused 550 5.7.1, nobody is mailed, and nothing of the thread is quoted."""

from __future__ import annotations

import json

import pytest

from statusmail.inbound.outcome import DISPOSITIONS, Reason
from tests.conftest import make_mail, outbox_messages

CLOSED = DISPOSITIONS[Reason.CLOSED_THREAD].smtp  # "550 5.7.1 ..."


def reply(parent_message_id: str, body: str, sender: str = "bob@corp.example", **headers: str):
    return make_mail(body=body, subject="Re: anything", sender=sender, In_Reply_To=parent_message_id,
                     References=parent_message_id, **headers)


def assert_refused_closed(hostile, code: int, text: str, posts_before: int, mailed_before: int) -> None:
    assert (code, text) == (550, CLOSED.removeprefix("550 "))
    assert text.startswith("5.7.1")
    assert len(hostile.posts()) == posts_before, "nothing stored"
    assert len(hostile.outbox()) == mailed_before, "nothing mailed"
    entry = hostile.log()[-1]
    assert (entry.outcome, entry.reason) == ("refused", "closed_thread")


def test_a_reply_by_in_reply_to_into_a_held_thread_is_refused_and_nobody_is_mailed(hostile):
    gw = hostile.start('hold_patterns = ["Confidential"]')
    hostile.cli("users", "add", "carol@corp.example")
    assert gw.send(make_mail(body="numbers attached", subject="Confidential: layoffs in Q1"))[0] == 250
    [root] = hostile.posts()
    assert root.status == "held"
    # An outsider who saw the Message-ID (a Cc, a forwarded copy) answers it and mentions someone.
    code, text = gw.send(reply(root.message_id, "Is this true? @carol"), mail_from="bob@corp.example")
    assert_refused_closed(hostile, code, text, 1, 0)
    gw.flush_outbox()
    assert outbox_messages(hostile.settings) == []


@pytest.mark.parametrize("action", ["hide", "delete"])
def test_a_reply_by_token_into_a_hidden_or_deleted_thread_is_refused(hostile, action):
    gw = hostile.start()
    hostile.cli("users", "add", "bob@corp.example")
    gw.send(make_mail(body="Rollout tonight, @bob", subject="Secret rollout plan"))
    gw.flush_outbox()
    [notification] = outbox_messages(hostile.settings)
    [root] = hostile.posts()
    assert hostile.cli("posts", action, str(root.id), "--reason", "leak").exit_code == 0
    answer = reply(notification["Message-ID"], "Count me in, @alice", to=notification["Reply-To"])
    code, text = gw.send(answer, mail_from="bob@corp.example", to=notification["Reply-To"])
    assert_refused_closed(hostile, code, text, 1, 1)
    assert "Secret" not in text and "rollout" not in text.lower()
    gw.flush_outbox()
    assert len(outbox_messages(hostile.settings)) == 1  # only the first notification, before the hide


def test_a_reply_to_a_hidden_reply_in_a_visible_thread_is_refused(hostile):
    gw = hostile.start()
    gw.send(make_mail(body="Lunch on Friday", subject="status"))
    [root] = hostile.posts()
    assert gw.send(reply(root.message_id, "Salary figures: ..."), mail_from="bob@corp.example")[0] == 250
    _, bad = hostile.posts()
    hostile.cli("posts", "hide", str(bad.id), "--reason", "private data")
    mailed = len(hostile.outbox())
    # Carol answers the hidden reply by References only (no In-Reply-To), as some clients do.
    mail = make_mail(body="Wow, really?", subject="Re: Lunch", sender="carol@corp.example",
                     References=f"{root.message_id} {bad.message_id}")
    code, text = gw.send(mail, mail_from="carol@corp.example")
    assert_refused_closed(hostile, code, text, 2, mailed)
    # The visible root still takes replies.
    assert gw.send(reply(root.message_id, "Count me in", sender="carol@corp.example"),
                   mail_from="carol@corp.example")[0] == 250


def test_mute_of_a_hidden_thread_answers_as_for_an_unknown_thread(hostile):
    gw = hostile.start()
    gw.send(make_mail(body="Acquisition of Initech", subject="status"))
    [root] = hostile.posts()
    hostile.cli("posts", "hide", str(root.id), "--reason", "too early")
    command = make_mail(body="mute", subject="Re: whatever", to="status-request@corp.example",
                        In_Reply_To=root.message_id)
    assert gw.send(command, to="status-request@corp.example")[0] == 250
    gw.flush_outbox()
    [answer] = [m for m in outbox_messages(hostile.settings) if m["In-Reply-To"] == command["Message-ID"]]
    text = answer.get_body(("plain",)).get_content()
    assert "send mute/unmute as a reply to a mail about the thread" in text
    assert f"thread {root.id}" not in text and "Initech" not in text and "Initech" not in answer["Subject"]
    muted = json.loads(hostile.cli("users", "show", "alice@corp.example", "--json").stdout)
    assert muted.get("muted", []) in ([], None, 0)


def test_a_held_reply_approved_after_its_thread_was_hidden_mails_nobody(hostile):
    gw = hostile.start('hold_patterns = ["(?i)budget"]')
    hostile.cli("users", "add", "bob@corp.example")
    gw.send(make_mail(body="Reorg announcement", subject="status"))
    [root] = hostile.posts()
    assert gw.send(reply(root.message_id, "What about the budget?"), mail_from="bob@corp.example")[0] == 250
    _, held = hostile.posts()
    assert held.status == "held"
    hostile.cli("posts", "hide", str(root.id), "--reason", "retracted")
    assert hostile.cli("queue", "approve", str(held.id)).exit_code == 0
    gw.flush_outbox()
    assert [m for m in outbox_messages(hostile.settings) if "Reorg" in str(m["Subject"])] == []
    assert all(o.kind != "notification" for o in hostile.outbox())


def test_posts_show_json_never_prints_the_reply_token_in_the_trimmed_text(hostile):
    gw = hostile.start()
    hostile.cli("users", "add", "bob@corp.example")
    gw.send(make_mail(body="Release 4.2 is out, @bob", subject="Release"))
    gw.flush_outbox()
    [notification] = outbox_messages(hostile.settings)
    token_address = notification["Reply-To"]
    token = token_address.split("+", 1)[1].split("@")[0]
    quoted = notification.get_body(("plain",)).get_content()
    body = (f"Congratulations!\n\nOn Thu, Nov 26, 2026 at 9:14 AM Status <{token_address}> wrote:\n"
            + "".join(f"> {line}\n" for line in quoted.splitlines())
            + f"> <mailto:{token_address.replace('+', '%2B').replace('@', '%40')}>\n")
    mail = reply(notification["Message-ID"], body, to=token_address)
    assert gw.send(mail, mail_from="bob@corp.example", to=token_address)[0] == 250
    _, answer = hostile.posts()
    assert token in answer.trimmed  # kept for moderators in the database...
    shown = hostile.cli("posts", "show", str(answer.id), "--json").stdout
    assert "wrote:" in json.loads(shown)["trimmed"]
    assert token not in shown  # ...never printed
