"""Check-ins end to end (SPEC §7): the question at 16:00 in each reader's zone, answers
over SMTP, the round-up on the next working day, the leader's week over the whole
subtree; with a frozen clock (time-machine) and the mail as it leaves the outbox."""

from __future__ import annotations

import asyncio
import json
import re
import threading
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import time_machine
from sqlmodel import Session, col, select

from statusmail.config import load_settings
from statusmail.outbound.checkins import CheckinScheduler, send_questions, send_rollups, send_roundups
from statusmail.store.models import Checkin, CheckinMail, Outbox, Post, PostTag, ReplyToken, User
from tests.conftest import RunningGateway, initialised_engine, make_mail, outbox_messages, write_config

# Friday 27 November 2026; the Monday after is 30 November.
FRIDAY_TOKYO_16 = datetime(2026, 11, 27, 7, 0, tzinfo=UTC)  # 16:00 JST
FRIDAY_NEW_YORK_16 = datetime(2026, 11, 27, 21, 0, tzinfo=UTC)  # 16:00 EST
CHECKINS = """
[checkins]
enabled = true
"""


def checkin_config(tmp_path: Path, database_url: str, checkins: str = CHECKINS, policy: str = "") -> Path:
    config = write_config(tmp_path, database_url, policy or "posts_per_hour = 1000")
    config.write_text(config.read_text() + checkins)
    return config


@pytest.fixture
def env_with(tmp_path: Path, database_url: str, kept_running: Any) -> Any:
    """Start a check-in gateway with these [policy] lines; stopped after the test."""
    def start(policy: str = "") -> RunningGateway:
        settings = load_settings(str(checkin_config(tmp_path, database_url, policy=policy)), environ={})
        return kept_running(RunningGateway(settings, initialised_engine(database_url)))
    return start


@pytest.fixture
def env(env_with: Any) -> Any:
    return env_with()


def add_user(engine: Any, email: str, name: str = "", **fields: Any) -> int:
    with Session(engine) as session:
        user = User(email=email, name=name, handle=email.split("@")[0], **fields)
        session.add(user)
        session.commit()
        return user.id  # type: ignore[return-value]


def tick(gateway: RunningGateway) -> list[Any]:
    """One look of serve's check-in scheduler at the (frozen) time, then the outbox sent."""
    scheduler = CheckinScheduler(gateway.settings, gateway.engine, on_queued=lambda: None)
    reports = asyncio.run(scheduler.tick())
    deliver(gateway)
    return reports


def deliver(gateway: RunningGateway) -> None:
    """Flush the outbox into the Maildir. Python's Maildir names a file after the clock
    and a counter that is not thread-safe: with the clock frozen, two of the worker's
    lanes can pick the same name ("File exists"), and that mail waits for its retry;
    it is made due again here, as `statusmail outbox retry` would."""
    from statusmail.outbound.outbox import retry

    for _ in range(10):
        gateway.flush_outbox()
        with Session(gateway.engine) as session:
            waiting = session.exec(select(Outbox.id).where(Outbox.status == "queued", col(Outbox.attempts) > 0)).all()
            if not waiting:
                return
            for outbox_id in waiting:
                retry(session, outbox_id)
            session.commit()
    raise AssertionError("mail stayed queued")


def mails(gateway: RunningGateway, kind: str) -> list[EmailMessage]:
    with Session(gateway.engine) as session:
        ids = {row.message_id for row in session.exec(select(Outbox).where(Outbox.kind == kind))}
    return [m for m in outbox_messages(gateway.settings) if m["Message-ID"] in ids]


def text_of(message: EmailMessage) -> str:
    return message.get_body(("plain",)).get_content()  # type: ignore[union-attr]


def html_of(message: EmailMessage) -> str:
    return message.get_body(("html",)).get_content()  # type: ignore[union-attr]


def reply_address(message: EmailMessage) -> str:
    return str(message["Reply-To"])


def answer(gateway: RunningGateway, question: EmailMessage, body: str, sender: str, **headers: str) -> tuple[int, str]:
    """A reply from a mail client: Re: subject, threading headers, the question quoted below."""
    quoted = "\n".join("> " + line for line in text_of(question).splitlines())
    mail = make_mail(body=f"{body}\n\nOn Fri, 27 Nov 2026 at 16:00, Status wrote:\n{quoted}\n",
                     subject="Re: " + str(question["Subject"]), sender=sender, to=reply_address(question),
                     In_Reply_To=str(question["Message-ID"]), **headers)
    return gateway.send(mail, mail_from=sender.split("<")[-1].strip(">"), to=reply_address(question))


def posts(engine: Any) -> list[Post]:
    with Session(engine) as session:
        return list(session.exec(select(Post).order_by(col(Post.id))))


def tags_of(engine: Any, post_id: int) -> list[str]:
    with Session(engine) as session:
        return list(session.exec(select(PostTag.tag).where(PostTag.post_id == post_id)))


# --- the question -------------------------------------------------------------------------


def test_the_question_reaches_tokyo_and_new_york_at_their_own_four_oclock_once(env):
    add_user(env.engine, "kenji@corp.example", "Kenji", timezone="Asia/Tokyo")
    add_user(env.engine, "nora@corp.example", "Nora", timezone="America/New_York")
    add_user(env.engine, "olaf@corp.example", "Olaf", timezone="Asia/Tokyo", checkin=False)
    with time_machine.travel(datetime(2026, 11, 27, 6, 59, tzinfo=UTC)):  # 15:59 in Tokyo
        tick(env)
    assert mails(env, "question") == []
    with time_machine.travel(FRIDAY_TOKYO_16):
        tick(env)
        tick(env)  # the next minute's look sends nothing again
    [tokyo] = mails(env, "question")
    assert tokyo["To"] == "Kenji <kenji@corp.example>" and tokyo["Subject"] == "What did you get done today?"
    with time_machine.travel(datetime(2026, 11, 27, 20, 59, tzinfo=UTC)):  # 15:59 in New York
        tick(env)
    assert len(mails(env, "question")) == 1
    with time_machine.travel(FRIDAY_NEW_YORK_16):
        tick(env)
    tokyo, york = mails(env, "question")
    assert york["To"] == "Nora <nora@corp.example>"
    with Session(env.engine) as session:
        rows = {(session.get(User, c.user_id).email, c.day): c.token for c in session.exec(select(Checkin))}  # type: ignore[union-attr]
    # Each is bound to its reader and their own local day: Friday in both zones.
    assert set(rows) == {("kenji@corp.example", "2026-11-27"), ("nora@corp.example", "2026-11-27")}
    for message, owner in ((tokyo, "kenji@corp.example"), (york, "nora@corp.example")):
        token = rows[(owner, "2026-11-27")]
        assert reply_address(message) == f"status+{token}@corp.example"
        assert message["Auto-Submitted"] == "auto-generated" and message["List-Id"]
        assert "What did you get done today?" in text_of(message) and "#checkin" in text_of(message)
        assert 'href="mailto:status+' in html_of(message) and "max-width:600px" in html_of(message)
    assert token not in text_of(tokyo)  # each mail carries its own reader's token only


def test_no_question_on_days_that_are_not_working_days(env):
    add_user(env.engine, "kenji@corp.example", timezone="Asia/Tokyo")
    with time_machine.travel(datetime(2026, 11, 28, 8, 0, tzinfo=UTC)):  # Saturday 17:00 in Tokyo
        tick(env)
    assert mails(env, "question") == []


# --- the answer ---------------------------------------------------------------------------


def asked(env: Any, email: str = "kenji@corp.example", **fields: Any) -> EmailMessage:
    add_user(env.engine, email, email.split("@")[0].title(), timezone="Asia/Tokyo", **fields)
    with time_machine.travel(FRIDAY_TOKYO_16):
        tick(env)
    return [m for m in mails(env, "question") if email in m["To"]][0]


def test_an_answer_is_a_tagged_post_and_a_second_answer_that_day_replies_to_it(env):
    question = asked(env)
    with time_machine.travel(datetime(2026, 11, 27, 7, 30, tzinfo=UTC)):
        code, reply = answer(env, question, "Shipped the billing export #billing", "Kenji <kenji@corp.example>")
        assert (code, reply) == (250, "2.0.0 OK: posted")
        code, reply = answer(env, question, "Also fixed the flaky deploy", "Kenji <kenji@corp.example>")
        assert (code, reply) == (250, "2.0.0 OK: reply posted")
    first, second = posts(env.engine)
    # The new text only: no quoted question, no subject line.
    assert first.body == "Shipped the billing export #billing" and first.parent_id is None
    assert sorted(tags_of(env.engine, first.id)) == ["billing", "checkin"]
    assert second.body == "Also fixed the flaky deploy" and second.parent_id == first.id
    assert tags_of(env.engine, second.id) == ["checkin"]
    with Session(env.engine) as session:
        [row] = session.exec(select(Checkin))
    assert row.answer_post_id == first.id and not row.skipped


def test_skip_posts_nothing_and_an_out_of_office_answer_is_dropped(env):
    question = asked(env)
    code, reply = answer(env, question, "Out of office until Monday", "Kenji <kenji@corp.example>",
                         Auto_Submitted="auto-replied")
    assert (code, reply) == (250, "2.0.0 OK")
    code, reply = answer(env, question, "Skip!", "Kenji <kenji@corp.example>")
    assert (code, reply) == (250, "2.0.0 OK: check-in skipped, nothing posted")
    assert posts(env.engine) == []
    with Session(env.engine) as session:
        [row] = session.exec(select(Checkin))
    assert row.skipped and row.answer_post_id is None


def test_skip_from_someone_at_the_hourly_post_limit_is_done_and_an_answer_deferred(env_with):
    """``skip`` posts nothing, so posts_per_hour does not defer it; an answer is a post and is."""
    running = env_with("posts_per_hour = 1")
    question = asked(running)
    assert running.send(make_mail(body="Reviewed the vendor contracts", subject="status",
                                  sender="Kenji <kenji@corp.example>"), mail_from="kenji@corp.example")[0] == 250
    code, reply = answer(running, question, "Shipped the billing export", "Kenji <kenji@corp.example>")
    assert (code, reply) == (451, "4.7.1 Too many posts this hour, try again later")
    code, reply = answer(running, question, "skip", "Kenji <kenji@corp.example>")
    assert (code, reply) == (250, "2.0.0 OK: check-in skipped, nothing posted")
    with Session(running.engine) as session:
        [row] = session.exec(select(Checkin))
    assert row.skipped and [p.body for p in posts(running.engine)] == ["Reviewed the vendor contracts"]


def test_an_answer_is_bound_to_its_reader_and_obeys_brevity(env):
    question = asked(env)
    add_user(env.engine, "mallory@corp.example", timezone="Asia/Tokyo")
    code, reply = answer(env, question, "I am Kenji now", "mallory@corp.example")
    assert code == 550 and "belongs to someone else" in reply
    code, reply = answer(env, question, "word " * 100, "Kenji <kenji@corp.example>")
    assert (code, reply) == (250, "2.0.0 OK: not posted, too long; the sender was told by mail")
    deliver(env)
    [notice] = mails(env, "notice")
    assert notice["To"] == "Kenji <kenji@corp.example>" and "the limit is 280" in notice["Subject"]
    assert posts(env.engine) == []


def test_a_held_answer_waits_like_any_post(env_with):
    running = env_with('hold_patterns = ["(?i)secret"]')
    question = asked(running)
    code, reply = answer(running, question, "Worked on the secret merger", "Kenji <kenji@corp.example>")
    assert (code, reply) == (250, "2.0.0 OK: held for moderation")
    [post] = posts(running.engine)
    assert post.status == "held" and tags_of(running.engine, post.id) == ["checkin"]


def test_checkin_off_by_mail_stops_the_question(env):
    add_user(env.engine, "kenji@corp.example", timezone="Asia/Tokyo")
    with time_machine.travel(datetime(2026, 11, 27, 1, 0, tzinfo=UTC)):
        code, reply = env.send(make_mail(body="checkin off", subject="", sender="kenji@corp.example",
                                         to="status-request@corp.example"),
                               mail_from="kenji@corp.example", to="status-request@corp.example")
        deliver(env)  # before the clock jumps: a lease taken now must not expire under it
    assert (code, reply) == (250, "2.0.0 OK: commands answered by mail")
    with time_machine.travel(FRIDAY_TOKYO_16):
        [questions, *_] = tick(env)
    assert mails(env, "question") == []
    assert ("kenji@corp.example", "check-ins turned off") in questions.left_out
    [answer_mail] = mails(env, "command")
    assert "check-ins turned off" in text_of(answer_mail)


# --- the round-up -------------------------------------------------------------------------


def team(env: Any) -> dict[str, int]:
    """Billing: Kenji (Tokyo) and Nora (New York), managed by Mia, who leads the team
    'leads'; Ops: Otto, who does not answer."""
    ids = {"mia": add_user(env.engine, "mia@corp.example", "Mia Manager", team="leads", timezone="Europe/Berlin")}
    for name, tz in (("kenji", "Asia/Tokyo"), ("nora", "America/New_York"), ("ben", "Europe/Berlin")):
        ids[name] = add_user(env.engine, f"{name}@corp.example", name.title(), team="billing", timezone=tz,
                             manager_email="mia@corp.example")
    ids["otto"] = add_user(env.engine, "otto@corp.example", "Otto", team="ops", timezone="Europe/Berlin")
    return ids


def test_the_round_up_comes_on_the_next_working_day_skipping_the_weekend(env):
    team(env)
    for moment in (FRIDAY_TOKYO_16, datetime(2026, 11, 27, 15, 0, tzinfo=UTC), FRIDAY_NEW_YORK_16):
        with time_machine.travel(moment):
            tick(env)
    questions = {m["To"].addresses[0].username: m for m in mails(env, "question")}
    assert set(questions) == {"kenji", "nora", "ben", "mia", "otto"}
    with time_machine.travel(datetime(2026, 11, 27, 22, 0, tzinfo=UTC)):
        assert answer(env, questions["kenji"], "Closed the Q4 books", "kenji@corp.example")[0] == 250
        assert answer(env, questions["nora"], "Reviewed the <b>tax</b> rules", "nora@corp.example")[0] == 250
        assert answer(env, questions["ben"], "skip", "ben@corp.example")[0] == 250
        kenji_post = posts(env.engine)[0]
        # Nora's answer is hidden by a moderator: it must appear nowhere.
        with Session(env.engine) as session:
            hidden = session.get(Post, posts(env.engine)[1].id)
            hidden.status = "hidden"  # type: ignore[union-attr]
            session.add(hidden)
            session.commit()
        assert answer(env, questions["nora"], "Prepared the audit", "nora@corp.example")[0] == 250
        # Mia answers Kenji from her mail client (by In-Reply-To): one reply for the round-up to count.
        assert env.send(make_mail(body="Great work", subject="Re: Closed the Q4 books", sender="mia@corp.example",
                                  In_Reply_To=kenji_post.message_id), mail_from="mia@corp.example")[0] == 250
        # Ben likes it: a like, no post.
        assert env.send(make_mail(body="+1", subject="Re: Closed the Q4 books", sender="ben@corp.example",
                                  In_Reply_To=kenji_post.message_id), mail_from="ben@corp.example")[0] == 250
        deliver(env)
    for saturday in (datetime(2026, 11, 28, 9, 0, tzinfo=UTC), datetime(2026, 11, 29, 23, 0, tzinfo=UTC)):
        with time_machine.travel(saturday):  # Saturday and Sunday: no round-up anywhere
            tick(env)
    assert mails(env, "roundup") == []
    with time_machine.travel(datetime(2026, 11, 30, 8, 0, tzinfo=UTC)):  # Monday 09:00 in Berlin, 17:00 Tokyo
        [_, roundups, *_] = tick(env)
    got = {m["To"].addresses[0].username: m for m in mails(env, "roundup")}
    # Berlin's and Tokyo's Monday 09:00 have come; New York's has not.
    assert set(got) == {"kenji", "ben", "mia"}
    assert ("otto@corp.example", "nothing new: nobody in their teams answered on 2026-11-27") in roundups.left_out
    with time_machine.travel(datetime(2026, 11, 30, 14, 0, tzinfo=UTC)):  # 09:00 in New York
        tick(env)
        tick(env)
    got = {m["To"].addresses[0].username: m for m in mails(env, "roundup")}
    assert set(got) == {"kenji", "ben", "mia", "nora"}  # one each, Otto's team said nothing
    for reader, message in got.items():
        body = text_of(message)
        assert message["Reply-To"] == "status-request@corp.example"
        assert message["Subject"] == "Status round-up for Fri 27 Nov: 2 answers"
        assert "Closed the Q4 books" in body and "Prepared the audit" in body
        assert "tax" not in body and "tax" not in html_of(message)  # hidden: nowhere
        assert "1 reply, 1 like -" in body and "0 replies, 0 likes" in body and "(1 skipped the day.)" in body
        with Session(env.engine) as session:
            own = session.exec(select(ReplyToken.token).where(ReplyToken.user_id == team_id(env, reader),
                                                              ReplyToken.post_id == kenji_post.id)).one()
        assert f"status+{own}@corp.example" in body  # the reader's own token
        assert len(set(re.findall(r"status\+(\w+)@", body))) == 2
    with Session(env.engine) as session:
        periods = {row.period for row in session.exec(select(CheckinMail).where(CheckinMail.kind == "roundup"))
                   if row.outbox_id is not None}
    assert periods == {"2026-11-27"}  # Thursday's round-up (on Friday) was recorded empty: nobody was asked


def team_id(env: Any, name: str) -> int:
    with Session(env.engine) as session:
        return session.exec(select(User.id).where(User.email == f"{name}@corp.example")).one()  # type: ignore[return-value]


def test_user_text_in_the_round_up_html_is_escaped(env):
    team(env)
    with time_machine.travel(datetime(2026, 11, 27, 15, 0, tzinfo=UTC)):
        tick(env)
        [question] = [m for m in mails(env, "question") if "ben" in m["To"]]
        answer(env, question, "Fixed <script>alert(1)</script> & more https://wiki.corp.example/x", "ben@corp.example")
    with time_machine.travel(datetime(2026, 11, 30, 8, 0, tzinfo=UTC)):
        tick(env)
    [mine] = [m for m in mails(env, "roundup") if "ben" in m["To"]]
    html = html_of(mine)
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in html
    assert '<a href="https://wiki.corp.example/x"' in html


# --- the leader's week --------------------------------------------------------------------


def test_a_leader_three_levels_up_sees_the_whole_subtree_by_team_most_discussed_first(env):
    ceo = add_user(env.engine, "cleo@corp.example", "Cleo CEO", team="exec")
    add_user(env.engine, "vic@corp.example", "Vic VP", team="exec", manager_email="cleo@corp.example")
    lead = add_user(env.engine, "lars@corp.example", "Lars Lead", team="platform", manager_email="vic@corp.example")
    dev = add_user(env.engine, "dana@corp.example", "Dana Dev", team="platform", manager_email="lars@corp.example")
    ops = add_user(env.engine, "oleg@corp.example", "Oleg Ops", team="ops", manager_email="vic@corp.example")
    outsider = add_user(env.engine, "sam@corp.example", "Sam Sales", team="sales")
    week = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)

    def post(author: int, body: str, status: str = "visible", parent: int | None = None) -> int:
        with Session(env.engine) as session:
            thread = session.get(Post, parent).thread_id if parent else None  # type: ignore[union-attr]
            row = Post(author_id=author, body=body, created_at=week, status=status, parent_id=parent, thread_id=thread,
                       message_id=f"<{abs(hash(body))}@corp.example>")
            session.add(row)
            session.flush()
            row.thread_id = row.thread_id or row.id
            session.commit()
            return row.id  # type: ignore[return-value]
    quiet = post(dev, "Dana: renamed a variable")
    hot = post(dev, "Dana: the new build farm is live")
    for replier in (lead, ops, outsider):
        post(replier, f"reply {replier}", parent=hot)
    post(ops, "Oleg: rotated the certificates")
    post(dev, "Dana: held draft", status="held")
    post(dev, "Dana: hidden rant", status="hidden")
    post(dev, "Dana: deleted mistake", status="deleted")
    post(outsider, "Sam: closed a deal")
    with time_machine.travel(datetime(2026, 11, 29, 8, 0, tzinfo=UTC)):  # Sunday: not the weekly day
        tick(env)
    assert mails(env, "rollup") == []
    with time_machine.travel(datetime(2026, 11, 30, 8, 0, tzinfo=UTC)):  # Monday 08:00 UTC, digest.hour
        tick(env)
        tick(env)
    got = {m["To"].addresses[0].username: m for m in mails(env, "rollup")}
    assert set(got) == {"cleo", "vic", "lars"}  # those who manage someone, each once
    body = text_of(got["cleo"])
    assert got["cleo"]["Reply-To"] == "status-request@corp.example"
    for seen in ("Dana: the new build farm is live", "Dana: renamed a variable", "Oleg: rotated the certificates",
                 f"reply {lead}", f"reply {ops}"):
        assert seen in body
    for unseen in ("held draft", "hidden rant", "deleted mistake", "Sam: closed a deal", f"reply {outsider}"):
        assert unseen not in body and unseen not in html_of(got["cleo"])
    # Grouped by team, the most discussed first.
    assert body.index("== platform ==") < body.index("== ops ==")
    assert body.index("the new build farm") < body.index("renamed a variable")
    with Session(env.engine) as session:
        token = session.exec(select(ReplyToken.token).where(ReplyToken.user_id == ceo, ReplyToken.post_id == hot)).one()
    assert f"status+{token}@corp.example" in body
    assert "Oleg" not in text_of(got["lars"]) and "build farm" in text_of(got["lars"])
    assert quiet

    # The CEO answers the front line from the inbox: the entry's reply link, from a mail
    # client that quotes the whole week below. It is a reply in Dana's thread, and Dana hears of it.
    quoted = "\n".join("> " + line for line in body.splitlines())
    address = f"status+{token}@corp.example"
    reply = make_mail(body=f"Great work, Dana. Can ops use it too?\n\nOn Mon, 30 Nov 2026, Status wrote:\n{quoted}\n",
                      subject="Re: Dana: the new build farm is live", sender="Cleo CEO <cleo@corp.example>",
                      to=address, In_Reply_To=str(got["cleo"]["Message-ID"]))
    with time_machine.travel(datetime(2026, 11, 30, 9, 0, tzinfo=UTC)):
        assert env.send(reply, mail_from="cleo@corp.example", to=address)[0] == 250
        deliver(env)
    [answered] = [p for p in posts(env.engine) if p.author_id == ceo]
    assert (answered.body, answered.parent_id) == ("Great work, Dana. Can ops use it too?", hot)
    [told] = [m for m in mails(env, "notification") if m["To"].addresses[0].username == "dana"]
    assert "Great work, Dana" in text_of(told) and "Cleo CEO" in text_of(told)


# --- the command line ---------------------------------------------------------------------


def test_checkins_commands_say_why_each_reader_was_left_out(tmp_path, database_url, cli_for):
    cli, settings, engine = cli_for(checkin_config(tmp_path, database_url))
    assert cli("users", "add", "kenji@corp.example", "--team", "billing", "--timezone", "Asia/Tokyo").exit_code == 0
    assert cli("users", "add", "nora@corp.example", "--team", "billing").exit_code == 0
    result = cli("users", "set", "nora@corp.example", "--checkin", "off")
    assert result.exit_code == 0
    assert json.loads(cli("users", "show", "nora@corp.example", "--json").stdout)["checkin"] == "off"
    assert json.loads(cli("users", "show", "kenji@corp.example", "--json").stdout)["checkin"] == "on"
    with time_machine.travel(datetime(2026, 11, 27, 1, 0, tzinfo=UTC)):  # 10:00 in Tokyo
        dry = cli("checkins", "send", "--dry-run")
        assert "left out    nora@corp.example: check-ins turned off" in dry.stdout
        assert "left out    kenji@corp.example: not due yet" in dry.stdout
        assert "nothing changed" in dry.stdout
        sent = cli("checkins", "send", "--user", "kenji@corp.example", "--now")
        assert sent.stdout.strip().endswith("1 question(s) queued")
        again = cli("checkins", "send", "--user", "kenji@corp.example", "--now")
        assert "left out    kenji@corp.example: already sent for 2026-11-27" in again.stdout
        assert again.stdout.strip().endswith("0 question(s) queued, 1 already sent for this period")
    with time_machine.travel(datetime(2026, 11, 30, 8, 0, tzinfo=UTC)):
        roundup = cli("checkins", "roundup", "--team", "billing", "--now")
        assert "left out    kenji@corp.example: nothing new: nobody in their teams answered on 2026-11-27" \
            in roundup.stdout
        rollup = cli("checkins", "rollup", "--user", "kenji@corp.example", "--now")
        assert "left out    kenji@corp.example: manages no one" in rollup.stdout
    with Session(engine) as session:
        assert session.exec(select(Outbox.kind)).all() == ["question"]


def test_dry_runs_name_who_would_get_each_mail_and_queue_nothing(env, cli_for):
    """A dry run counts what each reader's mail would hold; it composes and records nothing."""
    cli, _, _ = cli_for(Path(env.settings.source))
    add_user(env.engine, "lea@corp.example", "Lea", team="billing", timezone="Asia/Tokyo")
    add_user(env.engine, "kenji@corp.example", "Kenji", team="billing", timezone="Asia/Tokyo",
             manager_email="lea@corp.example")
    with time_machine.travel(FRIDAY_TOKYO_16):
        asked = cli("checkins", "send", "--dry-run")
        assert mails(env, "question") == []
        tick(env)  # now the questions really go out
    assert "would send  kenji@corp.example  2026-11-27  the question" in asked.stdout
    assert asked.stdout.strip().splitlines()[-1] == (
        "dry run: 2 would get a question, 0 with nothing to say, 0 already sent; nothing changed")
    [question] = [m for m in mails(env, "question") if "kenji@" in str(m["To"])]
    with time_machine.travel(datetime(2026, 11, 27, 7, 30, tzinfo=UTC)):
        assert answer(env, question, "Shipped the invoice export", "kenji@corp.example")[0] == 250
    with time_machine.travel(datetime(2026, 11, 29, 23, 0, tzinfo=UTC)):  # Monday 08:00 in Tokyo
        roundup = cli("checkins", "roundup", "--now", "--dry-run")
        week = cli("checkins", "rollup", "--now", "--dry-run", "--user", "lea@corp.example")
    assert "would send  kenji@corp.example  2026-11-27  1 item" in roundup.stdout
    assert roundup.stdout.strip().splitlines()[-1].startswith("dry run: 2 would get a round-up, 0 with nothing")
    assert re.search(r"would send  lea@corp\.example  \S+  1 item", week.stdout)
    assert "dry run: 1 would get a leader's week" in week.stdout
    with Session(env.engine) as session:
        assert session.exec(select(Outbox.kind)).all() == ["question", "question"]
        # Only what the real tick recorded: Thursday's round-ups, empty (nobody had been asked).
        assert {(m.kind, m.period, m.item_count) for m in session.exec(select(CheckinMail))} == {
            ("roundup", "2026-11-26", 0)}


def test_a_round_up_for_a_team_nobody_is_in_exits_1_naming_it(tmp_path, database_url, cli_for):
    # Like `--user` naming no user: a typo must not look like a run with nothing to send.
    cli, _, engine = cli_for(checkin_config(tmp_path, database_url))
    assert cli("users", "add", "kenji@corp.example", "--team", "billing").exit_code == 0
    result = cli("checkins", "roundup", "--team", "biling", "--now")
    assert result.exit_code == 1 and result.stderr.strip() == "Error: no such team: biling"
    assert cli("checkins", "roundup", "--team", "billing", "--now").exit_code == 0
    with Session(engine) as session:
        assert session.exec(select(Outbox.kind)).all() == []


def test_checkins_commands_refuse_when_check_ins_are_off(tmp_path, database_url, cli_for):
    cli, _, _ = cli_for(write_config(tmp_path, database_url))
    result = cli("checkins", "send", "--now")
    assert result.exit_code == 1 and "checkins.enabled = true" in result.stderr


@pytest.fixture
def store(tmp_path: Path, database_url: str) -> Any:
    """Check-in settings and their database, without a gateway: the send functions alone."""
    engine = initialised_engine(database_url)
    yield load_settings(str(checkin_config(tmp_path, database_url)), environ={}), engine
    engine.dispose()


def test_send_functions_queue_nothing_without_users(store):
    settings, engine = store
    for send in (send_questions, send_roundups, send_rollups):
        assert send(settings, engine, force=True).queued == 0


def test_the_outbox_worker_is_woken_when_a_batch_commits_not_when_the_next_is_composed(store, monkeypatch):
    """serve's worker sends the first batch while the run composes the rest: the wake-up
    comes from the commit (here a batch is one reader, and composing the second question
    waits for the first one's wake-up; before, it came only after that composing)."""
    from statusmail.outbound import checkins

    settings, engine = store
    add_user(engine, "kenji@corp.example", timezone="Asia/Tokyo")
    add_user(engine, "nora@corp.example", timezone="Asia/Tokyo")
    monkeypatch.setitem(checkins.BATCH, "question", 1)
    woken = threading.Event()
    seen_when_composing: list[bool] = []
    compose = checkins.compose_question

    def composing(*args: Any, **kwargs: Any) -> EmailMessage:
        if args[1].email == "nora@corp.example":
            seen_when_composing.append(woken.wait(5))
        return compose(*args, **kwargs)

    monkeypatch.setattr(checkins, "compose_question", composing)
    report = send_questions(settings, engine, now=FRIDAY_TOKYO_16, force=True, on_queued=woken.set)
    assert report.queued == 2 and seen_when_composing == [True]
