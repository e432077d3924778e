"""format=flowed (RFC 3676) from Apple Mail and Thunderbird reads as the sender wrote it."""

from __future__ import annotations

import email
from email import policy

from hypothesis import given
from hypothesis import strategies as st

from statusmail.inbound.extract import extract_body
from statusmail.inbound.flowed import unflow


def test_soft_breaks_join_into_one_paragraph_and_hard_breaks_stay():
    text = "Finished the migration of the billing \nexport to the new cluster, no \ndowntime.\nNext: reports."
    assert unflow(text) == "Finished the migration of the billing export to the new cluster, no downtime.\nNext: reports."


def test_delsp_yes_removes_the_space_that_marked_the_break():
    # A client that may break inside a word (DelSp=yes) adds the space only as a marker.
    assert unflow("Zusammenarbeit mit dem Ver \ntrieb", delsp=True) == "Zusammenarbeit mit dem Vertrieb"
    assert unflow("Zusammenarbeit mit dem Ver \ntrieb") == "Zusammenarbeit mit dem Ver trieb"


def test_the_signature_separator_is_not_a_soft_break():
    assert unflow("Thanks\n-- \nAlice") == "Thanks\n-- \nAlice"


def test_quoted_flowed_lines_join_within_their_depth_only():
    text = "> Can you ship \n> it today?\nYes, \ntoday."
    assert unflow(text) == "> Can you ship it today?\nYes, today."


def test_space_stuffing_is_removed():
    assert unflow(" From the top\nline") == "From the top\nline"


def test_a_flowed_message_is_posted_without_its_wrapping():
    raw = (b"From: alice@corp.example\r\nSubject: status\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: text/plain; charset=utf-8; format=flowed\r\n\r\n"
           b"Rolled out the new search to all regions, latency is down by a \r\n"
           b"third and nobody noticed the switch.\r\n")
    msg = email.message_from_bytes(raw, policy=policy.default)
    assert extract_body(msg).text == ("Rolled out the new search to all regions, latency is down by a third and "
                                      "nobody noticed the switch.")


@given(st.text(max_size=400), st.booleans())
def test_unflow_never_raises_and_never_invents_text(text, delsp):
    result = unflow(text, delsp)
    assert len(result) <= len(text) + text.count("\n") * 2 + 2
