"""header_text: free-text headers read without the policy's parse must read the same."""

from __future__ import annotations

import email
from email import policy

from hypothesis import given, settings
from hypothesis import strategies as st

from statusmail.inbound.parse import PARSING, header_text

# Printable ASCII and the whitespace a header may hold; "=?" included, so encoded words
# (and text that only looks like one) are generated too.
ascii_text = st.lists(st.sampled_from([chr(c) for c in range(32, 127)] + ["\t", "=?", "?="]),
                      max_size=120).map("".join)


@settings(max_examples=300, deadline=None)
@given(value=ascii_text, fold_at=st.integers(min_value=0, max_value=120))
def test_a_free_text_header_reads_as_the_standard_policy_reads_it(value: str, fold_at: int) -> None:
    head, tail = value[:fold_at], value[fold_at:]
    folded = head + ("\r\n " + tail if tail and head.strip() else tail)  # RFC 5322 §2.2.3 folding
    raw = f"Subject: {folded}\r\nX-Note: {folded}\r\n\r\nbody\r\n".encode()
    ours = email.message_from_bytes(raw, policy=PARSING)
    standard = email.message_from_bytes(raw, policy=policy.default)
    for name in ("Subject", "X-Note"):
        assert header_text(ours, name) == str(standard[name])


def test_an_encoded_subject_is_still_decoded() -> None:
    raw = b"Subject: =?utf-8?q?R=C3=A9sum=C3=A9_sent?=\r\n\r\nbody\r\n"
    assert header_text(email.message_from_bytes(raw, policy=PARSING), "Subject") == "Résumé sent"


def test_an_address_header_still_goes_through_the_parse() -> None:
    raw = b"From: \"Smith, Ann\" <ann@corp.example>\r\n\r\nbody\r\n"
    msg = email.message_from_bytes(raw, policy=PARSING)
    assert header_text(msg, "From") == str(email.message_from_bytes(raw, policy=policy.default)["From"])


def test_address_and_domain_caches_keep_no_huge_values() -> None:
    """A sender of megabyte headers must not be able to fill the writer's memory."""
    from statusmail.inbound.authres import _registrable, organizational_domain
    from statusmail.inbound.parse import mailboxes

    huge_from = "Someone <" + "x" * 5000 + "@corp.example>"
    huge_domain = "a." * 3000 + "corp.example"
    kept = mailboxes.cache_info().currsize, _registrable.cache_info().currsize
    assert mailboxes(huge_from)[0][1].endswith("@corp.example")
    assert organizational_domain(huge_domain) == "corp.example"
    assert (mailboxes.cache_info().currsize, _registrable.cache_info().currsize) == kept
    ordinary = f"Ann <ann.{id(kept)}@corp.example>"  # seen by no other test
    assert mailboxes(ordinary) == (("Ann", f"ann.{id(kept)}@corp.example"),)
    assert mailboxes.cache_info().currsize == kept[0] + 1  # an ordinary one is kept
