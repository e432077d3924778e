"""statusmail deployed behind a real Postfix exactly as the README's guide says (#18).

Every statusmail and Postfix setting here is a snippet of README.md's "Behind Postfix"
section, read out of the file (tests/postfix.py); the test puts in only this run's ports
and temporary paths, the folders and mailboxes of a private Postfix, and digests off (so
the mailboxes hold only what the test causes). Over SMTP and over LMTP: mail from inside
the company reaches the gateway through Postfix on its port, the gateway's own mail goes
back through Postfix into the staff's Maildirs, an outside sender is refused by Postfix
at RCPT with nothing queued, and Postfix's refusal of a departed colleague is a hard
bounce. Skips only where Postfix is not installed (CI installs it).
"""

from __future__ import annotations

import re
import smtplib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, col, select

from statusmail.config import Settings, load_settings
from statusmail.store.db import make_engine, upgrade
from statusmail.store.models import Bounce, InboundLog, Outbox, Post, User
from tests.conftest import RunningGateway
from tests.postfix import Postfix, postfix_missing, readme_section, snippet

pytestmark = [pytest.mark.postfix, pytest.mark.skipif(bool(postfix_missing()), reason=postfix_missing() or "-")]

WAIT_SECONDS = 30.0
INSIDE = "127.0.0.1"  # the company's network: Postfix's mynetworks
OUTSIDE = "127.0.0.2"  # anyone else on the internet


def wait_until(condition: Callable[[], Any], seconds: float = WAIT_SECONDS) -> Any:
    deadline = time.monotonic() + seconds
    value = condition()
    while not value and time.monotonic() < deadline:
        time.sleep(0.1)
        value = condition()
    return value


def gateway_config(tmp_path: Path, database_url: str, relay_port: int, lmtp: bool) -> Path:
    """The README's statusmail.toml with this run's database, key file and relay port."""
    text = snippet("/etc/statusmail/statusmail.toml")
    assert 'transport = "smtp://127.0.0.1:25"' in text  # back through Postfix's port 25
    text = text.replace("smtp://127.0.0.1:25", f"smtp://127.0.0.1:{relay_port}")
    text = re.sub(r'(?m)^database_url = ".*"$', f'database_url = "{database_url}"', text)
    text = re.sub(r'(?m)^secret_key_file = ".*"$', f'secret_key_file = "{tmp_path}/secret.key"', text)
    if lmtp:
        text = text.replace("[smtp]\n", "[smtp]\nlmtp = true\n")
    config = tmp_path / "statusmail.toml"
    config.write_text(text + '\n[digest]\ndefault_frequency = "off"\n')
    return config


def configure_postfix(postfix: Postfix, gateway_port: int, lmtp: bool) -> None:
    """The README's main.cf lines and maps, with this instance's folder and the gateway's port."""
    here = f"{postfix.etc}/"
    main_cf = snippet("/etc/postfix/main.cf").replace("/etc/postfix/", here)
    transport = snippet("/etc/postfix/transport", lmtp=lmtp)
    gateway = re.compile(r"(127\.0\.0\.1\]?):8025\b")
    assert gateway.search(transport)
    transport = gateway.sub(rf"\g<1>:{gateway_port}", transport)
    postfix.configure(main_cf, {"transport": transport, "statusmail_access": snippet("/etc/postfix/statusmail_access")})


@dataclass
class Deployment:
    settings: Settings
    engine: Any
    gateway: RunningGateway
    postfix: Postfix
    lmtp: bool

    def send(self, message: EmailMessage, *, to: str, sender: str = "", source: str = INSIDE) -> tuple[int, str]:
        """One SMTP transaction with Postfix's port 25 (this run's port), from ``source``;
        the reply to RCPT when refused, else to DATA."""
        with smtplib.SMTP("127.0.0.1", self.postfix.port, timeout=30, source_address=(source, 0)) as client:
            client.ehlo("client.example")
            code, reply = client.mail(sender or message["From"].addresses[0].addr_spec)
            assert code == 250, reply
            code, reply = client.rcpt(to)
            if code != 250:
                return code, reply.decode()
            code, reply = client.data(message.as_bytes())
            return code, reply.decode()

    def posts(self) -> list[Post]:
        with Session(self.engine) as session:
            return list(session.exec(select(Post).order_by(col(Post.id))))

    def user(self, email: str) -> User:
        with Session(self.engine) as session:
            return session.exec(select(User).where(User.email == email)).one()


def mail(sender: str, subject: str, body: str, **headers: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = "status@corp.example"
    message["Subject"] = subject
    message["Message-ID"] = make_msgid(domain="corp.example")
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(body)
    return message


@pytest.fixture(params=["smtp", "lmtp"])
def deployment(request: pytest.FixtureRequest, tmp_path: Path, sqlite_url: str) -> Iterator[Deployment]:
    lmtp = request.param == "lmtp"
    # Dave has left the company: Postfix does not know him. Carol has left too, but her
    # address is kept: Postfix accepts her mail and its delivery fails (sysexits
    # EX_NOUSER), so Postfix writes a delivery report to the mail's VERP sender.
    postfix = Postfix(mailboxes=["alice", "bob"],
                      aliases={"carol": "\"|/bin/sh -c 'echo Carol Cole has left the company; exit 67'\""})
    settings = load_settings(str(gateway_config(tmp_path, sqlite_url, postfix.port, lmtp)), environ={})
    engine = make_engine(sqlite_url)
    upgrade(engine)
    with Session(engine) as session:
        for handle, name in (("alice", "Alice Archer"), ("bob", "Bob Baker"), ("dave", "Dave Departed"),
                             ("carol", "Carol Cole")):
            session.add(User(email=f"{handle}@corp.example", name=name, handle=handle))
        session.commit()
    gateway = RunningGateway(settings, engine)
    try:
        configure_postfix(postfix, gateway.port, lmtp)
        postfix.start()
        yield Deployment(settings, engine, gateway, postfix, lmtp)
    finally:
        postfix.cleanup()
        gateway.stop()
        engine.dispose()


def test_the_guide_is_one_postfix_accepts_without_a_warning(deployment):
    assert deployment.postfix.check() == ""
    section = readme_section()
    assert "lmtp = true" in section and "statusmail_staff_only" in section


def test_a_post_and_a_reply_arrive_through_postfix_and_the_gateways_mail_reaches_the_mailboxes(deployment):
    code, reply = deployment.send(mail("Alice Archer <alice@corp.example>", "status",
                                       "Launch checklist is ready, @bob please review"), to="status@corp.example")
    assert code == 250, reply  # Postfix took it: the status address is a known recipient on port 25
    [post] = wait_until(deployment.posts) or [None]
    assert post is not None, deployment.postfix.log()[-3000:]
    assert post.body.startswith("Launch checklist is ready")

    # The mention goes out through Postfix (the gateway relays to 127.0.0.1:25) into Bob's Maildir.
    [notice] = wait_until(lambda: deployment.postfix.delivered("bob")) or [None]
    assert notice is not None, deployment.postfix.log()[-3000:]
    assert notice["To"].addresses[0].addr_spec == "bob@corp.example"
    assert "by mx.corp.example (Postfix)" in str(notice.get_all("Received")[0])
    assert "Launch checklist is ready" in notice.get_body(("plain",)).get_content()
    reply_to = notice["Reply-To"].addresses[0].addr_spec
    assert re.fullmatch(r"status\+[A-Za-z0-9_-]+@corp\.example", reply_to)

    # Bob answers from his mail client: to the status+<token> address, through Postfix.
    answer = mail("Bob Baker <bob@corp.example>", f"Re: {notice['Subject']}", "Reviewed, two nits inline",
                  In_Reply_To=notice["Message-ID"])
    answer.replace_header("To", reply_to)
    code, reply = deployment.send(answer, to=reply_to)
    assert code == 250, reply
    assert wait_until(lambda: len(deployment.posts()) == 2), deployment.postfix.log()[-3000:]
    first, second = deployment.posts()
    assert (second.parent_id, second.thread_id, second.body) == (first.id, first.id, "Reviewed, two nits inline")
    assert deployment.user("bob@corp.example").id == second.author_id

    # Alice hears of the reply in her Maildir, again through Postfix.
    [told] = wait_until(lambda: deployment.postfix.delivered("alice")) or [None]
    assert told is not None, deployment.postfix.log()[-3000:]
    assert "Reviewed, two nits inline" in told.get_body(("plain",)).get_content()
    assert wait_until(lambda: deployment.postfix.queued() == [])
    via = "lmtp" if deployment.lmtp else "smtp"
    assert re.search(rf"to=<status@corp\.example>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:{deployment.gateway.port}"
                     rf".*status=sent", deployment.postfix.log()), via


def test_an_outside_sender_is_refused_by_postfix_at_rcpt_and_nothing_is_queued_or_bounced(deployment):
    forged = mail("Alice Archer <alice@corp.example>", "All hands moved", "All hands moved to 5pm, says the CEO")
    for address in ("status@corp.example", "status+sometoken@corp.example", "status-request@corp.example"):
        code, reply = deployment.send(forged, to=address, source=OUTSIDE)
        assert (code, reply) == (554, f"5.7.1 <{address}>: Recipient address rejected: Access denied")
    # The refusal is Postfix's, in the dialogue: no message queued, so no bounce to the
    # forged sender, and the gateway never saw the attempt.
    assert deployment.postfix.queued() == []
    assert re.search(r"NOQUEUE: reject: RCPT from \S+\[127\.0\.0\.2\]: 554 5\.7\.1 <status@corp\.example>",
                     deployment.postfix.log())
    with Session(deployment.engine) as session:
        assert list(session.exec(select(InboundLog))) == []
    # Only the gateway's addresses are closed to outsiders: the company's mail still arrives.
    code, reply = deployment.send(forged, to="bob@corp.example", source=OUTSIDE)
    assert code == 250, reply
    assert wait_until(lambda: deployment.postfix.delivered("bob"))
    assert wait_until(lambda: deployment.postfix.queued() == [])
    assert deployment.posts() == []
    assert deployment.postfix.delivered("alice") == []  # the forged sender got no backscatter


def test_postfix_refusing_a_departed_colleague_or_bouncing_her_mail_is_a_hard_bounce(deployment):
    code, reply = deployment.send(mail("Alice Archer <alice@corp.example>", "status",
                                       "Handover notes are in the wiki, @dave @carol thanks for everything"),
                                  to="status@corp.example")
    assert code == 250, reply

    def bounces() -> list[Bounce]:
        with Session(deployment.engine) as session:
            return list(session.exec(select(Bounce).order_by(col(Bounce.recipient))))

    assert wait_until(lambda: len(bounces()) == 2), deployment.postfix.log()[-3000:]
    with Session(deployment.engine) as session:
        rows = {row.to_addr: row for row in session.exec(select(Outbox))}
    carols, daves = bounces()
    # Dave: Postfix refuses him at RCPT, in the gateway's own SMTP dialogue with it.
    assert rows["dave@corp.example"].status == "failed"
    assert "550 5.1.1 <dave@corp.example>: Recipient address rejected: User unknown in local recipient table" \
        in rows["dave@corp.example"].last_error
    assert (daves.recipient, daves.status, daves.hard, daves.outbox_id) == (
        "dave@corp.example", "5.1.1", True, rows["dave@corp.example"].id)
    # Carol: Postfix took her mail, then bounced it to the VERP address, through the transport map.
    assert rows["carol@corp.example"].status == "sent"
    assert (carols.recipient, carols.status, carols.hard, carols.outbox_id) == (
        "carol@corp.example", "5.1.1", True, rows["carol@corp.example"].id)
    assert "Carol Cole has left the company" in carols.diagnostic
    for gone in ("dave@corp.example", "carol@corp.example"):
        assert deployment.user(gone).hard_bounces == 1
    assert wait_until(lambda: deployment.postfix.queued() == [])
    assert re.search(r"to=<status\+bounce-[^>]+@corp\.example>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:\d+.*status=sent",
                     deployment.postfix.log())
