"""The headers that make threads trees (SPEC §4), read from the mail that went out."""

from __future__ import annotations

import base64

from sqlmodel import Session, select

from statusmail.store.models import Post
from tests.conftest import make_mail, outbox_messages
from tests.gateway.clients import corpus_reply


def about(settings, text: str) -> list:
    """The notifications whose post is ``text`` (not those quoting it)."""
    bodies = [(m, m.get_body(("plain",)).get_content()) for m in outbox_messages(settings)]
    return [m for m, body in bodies if text in body and f"> {text}" not in body]


def test_every_copy_of_a_post_threads_under_its_parent_with_one_thread_index(gateway, cli, settings, engine):
    cli("users", "add", "bob@corp.example", "--name", "Bob Boss")
    cli("users", "add", "carol@corp.example", "--name", "Zoë Ünal-Chen")
    gateway.send(make_mail(body="Root @bob @carol", subject="status", sender="Alice Anders <alice@corp.example>"))
    gateway.flush_outbox()
    [to_bob] = [m for m in about(settings, "Root") if m["To"].addresses[0].addr_spec == "bob@corp.example"]
    reply = corpus_reply("gmail", to_bob, "Bob Boss <bob@corp.example>", "B answers @carol")
    gateway.send(reply, mail_from="bob@corp.example", to=str(reply["To"]))
    gateway.flush_outbox()
    [to_carol] = [m for m in about(settings, "B answers") if m["To"].addresses[0].addr_spec == "carol@corp.example"]
    answer = corpus_reply("outlook", to_carol, "Zoë Ünal-Chen <carol@corp.example>", "C answers B")
    gateway.send(answer, mail_from="carol@corp.example", to=str(answer["To"]))
    gateway.flush_outbox()
    with Session(engine) as session:
        a, b, c = session.exec(select(Post).order_by(Post.id)).all()
    assert (b.parent_id, c.parent_id) == (a.id, b.id)

    b_copies = about(settings, "B answers")  # to Alice (the thread) and Carol (mentioned)
    c_copies = about(settings, "C answers B")  # to Alice and Bob
    assert len(b_copies) == 2 and len(c_copies) == 2
    for mail in b_copies:
        assert (mail["Message-ID"], mail["In-Reply-To"], mail["References"]) == (b.message_id, a.message_id,
                                                                                   a.message_id)
    for mail in c_copies:
        assert (mail["Message-ID"], mail["In-Reply-To"]) == (c.message_id, b.message_id)
        assert mail["References"].split() == [a.message_id, b.message_id]  # root to parent, nothing else
    # Outlook: one index per post in every copy; a reply's is its parent's plus one block.
    assert len({m["Thread-Index"] for m in b_copies}) == len({m["Thread-Index"] for m in c_copies}) == 1
    root_index = base64.b64decode(a.thread_index)
    b_index, c_index = (base64.b64decode(copies[0]["Thread-Index"]) for copies in (b_copies, c_copies))
    assert (len(root_index), len(b_index), len(c_index)) == (22, 27, 32)
    assert b_index[:22] == root_index and c_index[:27] == b_index
    # Who wrote it, in the From; a name that is not ASCII is encoded, never raw.
    assert {m["From"].addresses[0].display_name for m in c_copies} == {"Zoë Ünal-Chen via Status"}
    raw_from = [line for line in c_copies[0].as_bytes().split(b"\n") if line.startswith(b"From:")][0]
    assert raw_from.isascii() and b"=?utf-8?" in raw_from and b"<status@corp.example>" in raw_from
