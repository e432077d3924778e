"""Replies as real clients write them, for tests that send them over SMTP.

:func:`corpus_reply` takes a reply from the talon corpus (Gmail, Outlook, Apple Mail…:
their own quoting, attributions and MIME structure), puts new text where the sender
wrote "Hello", and addresses it as an answer to one of our mails. Where the corpus is
absent the tests that need it skip.
"""

from __future__ import annotations

import email
import email.utils
from email import policy
from email.message import EmailMessage

import pytest

from tests.conftest import CORPORA

TALON = CORPORA / "talon" / "standard_replies"
CLIENTS = {"gmail": "gmail.eml", "outlook": "outlook.eml", "apple": "apple_mail_2.eml", "iphone": "iphone.eml",
           "thunderbird": "thunderbird.eml", "android": "android.eml"}


def corpus_reply(client: str, answered: EmailMessage, sender: str, new_text: str, to: str = "") -> EmailMessage:
    """``client``'s reply from the corpus with ``new_text`` as what the sender typed,
    sent to ``to`` (else the answered mail's Reply-To) and threaded under ``answered``."""
    path = TALON / CLIENTS[client]
    if not path.exists():
        pytest.skip(f"{path} is absent (reply corpora not checked out)")
    msg = email.message_from_bytes(path.read_bytes(), policy=policy.default)
    assert isinstance(msg, EmailMessage)
    replaced = 0
    for part in msg.walk():
        if part.get_content_maintype() != "text" or part.is_multipart():
            continue
        text = part.get_content()
        if "Hello" in text:
            part.set_content(text.replace("Hello", new_text, 1), subtype=part.get_content_subtype(), charset="utf-8")
            replaced += 1
    assert replaced, f"{client}: no 'Hello' to replace"
    for name in ("From", "To", "Cc", "Subject", "Message-ID", "In-Reply-To", "References", "Date", "Reply-To"):
        del msg[name]
    msg["From"] = sender
    msg["To"] = to or str(answered["Reply-To"])
    msg["Subject"] = ("RE: " if client == "outlook" else "Re: ") + str(answered["Subject"]).removeprefix("Re: ")
    msg["Date"] = email.utils.formatdate()
    msg["Message-ID"] = email.utils.make_msgid(domain="corp.example")
    msg["In-Reply-To"] = answered["Message-ID"]
    msg["References"] = " ".join(filter(None, [answered["References"], answered["Message-ID"]]))
    return msg
