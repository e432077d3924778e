"""authres_verdict and organizational alignment (SPEC §5, RFC 8601, RFC 7489)."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from statusmail.inbound.authres import authres_verdict, organizational_domain, same_organization

MTA = "mx.corp.example"


def mail_with(*authres: str) -> EmailMessage:
    """A message whose Authentication-Results headers are ``authres``, topmost first."""
    head = "".join(f"Authentication-Results: {value}\r\n" for value in authres)
    raw = (head + "From: Alice <alice@corp.example>\r\nSubject: hi\r\n\r\nbody\r\n").encode()
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def test_dmarc_pass_from_the_trusted_mta_is_accepted() -> None:
    msg = mail_with(f"{MTA}; dmarc=pass header.from=corp.example")
    assert authres_verdict(msg, "corp.example", MTA) is None


def test_dmarc_pass_without_header_from_is_accepted() -> None:
    assert authres_verdict(mail_with(f"{MTA}; dmarc=pass"), "corp.example", MTA) is None


def test_dmarc_pass_for_another_from_domain_is_refused() -> None:
    msg = mail_with(f"{MTA}; dmarc=pass header.from=evil.example")
    reason = authres_verdict(msg, "corp.example", MTA)
    assert reason is not None and "evil.example" in reason


def test_dmarc_fail_is_refused() -> None:
    reason = authres_verdict(mail_with(f"{MTA}; dmarc=fail header.from=corp.example"), "corp.example", MTA)
    assert reason is not None and "dmarc=fail" in reason


def test_authserv_id_matches_case_insensitively() -> None:
    msg = mail_with("MX.Corp.Example; dmarc=pass header.from=corp.example")
    assert authres_verdict(msg, "corp.example", MTA) is None


def test_header_from_another_authserv_id_is_ignored() -> None:
    msg = mail_with("mx.evil.example; dmarc=pass header.from=corp.example")
    assert authres_verdict(msg, "corp.example", MTA) == f"no Authentication-Results from {MTA}"


def test_message_without_authentication_results_is_refused() -> None:
    assert authres_verdict(mail_with(), "corp.example", MTA) == f"no Authentication-Results from {MTA}"


def test_forged_authres_below_the_trusted_one_is_ignored() -> None:
    msg = mail_with(
        f"{MTA}; dmarc=fail header.from=corp.example",
        f"{MTA}; dmarc=pass header.from=corp.example",  # written by the sender, lower down
    )
    assert '(dmarc=fail)' in (authres_verdict(msg, "corp.example", MTA) or "")


def test_other_ids_above_the_trusted_header_do_not_hide_it() -> None:
    msg = mail_with(
        "filter.corp.example; dmarc=fail",
        f"{MTA}; dmarc=pass header.from=corp.example",
    )
    assert authres_verdict(msg, "corp.example", MTA) is None


@pytest.mark.parametrize(
    "signer",
    ["corp.example", "mail.corp.example", "CORP.EXAMPLE", "sales.corp.example"],
)
def test_aligned_dkim_pass_is_accepted(signer: str) -> None:
    msg = mail_with(f"{MTA}; spf=fail smtp.mailfrom=x@y.example; dkim=pass header.d={signer} header.s=sel")
    assert authres_verdict(msg, "corp.example", MTA) is None


def test_dkim_pass_for_subdomain_from_address_is_aligned() -> None:
    msg = mail_with(f"{MTA}; dkim=pass header.d=corp.example")
    assert authres_verdict(msg, "eu.corp.example", MTA) is None


def test_dkim_pass_by_an_unrelated_domain_is_refused() -> None:
    msg = mail_with(f"{MTA}; dkim=pass header.d=mailer.example; dmarc=none")
    reason = authres_verdict(msg, "corp.example", MTA)
    assert reason is not None and "not aligned" in reason


def test_dkim_pass_sharing_only_a_public_suffix_is_refused() -> None:
    msg = mail_with(f"{MTA}; dkim=pass header.d=attacker.co.uk")
    assert 'header.d=attacker.co.uk (not aligned)' in (authres_verdict(msg, "corp.co.uk", MTA) or "")


def test_dkim_identity_header_i_is_used_when_header_d_is_absent() -> None:
    msg = mail_with(f"{MTA}; dkim=pass header.i=@corp.example")
    assert authres_verdict(msg, "corp.example", MTA) is None


def test_dkim_fail_next_to_spf_pass_is_refused() -> None:
    msg = mail_with(f"{MTA}; spf=pass smtp.mailfrom=corp.example; dkim=fail header.d=corp.example")
    assert '(dkim=fail)' in (authres_verdict(msg, "corp.example", MTA) or "")


def test_comments_quoted_strings_version_and_folding_are_understood() -> None:
    msg = mail_with(
        f'{MTA} 1 (a comment; with dmarc=fail inside (nested)) ;\r\n'
        '\tspf=pass (sender "is" ok) smtp.mailfrom=alice@corp.example;\r\n'
        '  dkim=pass (2048-bit key; unprotected) reason="signature ok; fine"\r\n'
        '   header.d="corp.example" header.s=s1 header.b="AbC=";\r\n'
        "  dmarc=none"
    )
    assert authres_verdict(msg, "corp.example", MTA) is None


def test_a_result_hidden_in_a_comment_does_not_count() -> None:
    msg = mail_with(f"{MTA}; dkim=fail (dmarc=pass header.from=corp.example) header.d=corp.example")
    assert '(dkim=fail)' in (authres_verdict(msg, "corp.example", MTA) or "")


def test_no_result_header_is_refused() -> None:
    assert '(no dmarc or dkim result)' in (authres_verdict(mail_with(f"{MTA}; none"), "corp.example", MTA) or "")


def test_microsoft_365_header_without_id_is_trusted_only_when_allowed() -> None:
    value = (
        "spf=pass (sender IP is 40.107.0.1) smtp.mailfrom=corp.example; "
        "dkim=pass (signature was verified) header.d=corp.example;dmarc=pass action=none "
        "header.from=corp.example;compauth=pass reason=100"
    )
    assert 'no Authentication-Results from mx.corp.example' in (authres_verdict(mail_with(value), "corp.example", MTA) or "")
    assert authres_verdict(mail_with(value), "corp.example", MTA, accept_without_id=True) is None


def test_without_id_allowance_only_the_topmost_header_counts() -> None:
    msg = mail_with("spf=pass smtp.mailfrom=corp.example; dmarc=fail", "x; dmarc=pass")
    assert 'topmost MTA shows no dmarc=pass or aligned dkim=pass (dmarc=fail)' in (authres_verdict(msg, "corp.example", "", accept_without_id=True) or "")


def test_empty_authserv_id_without_allowance_trusts_nothing() -> None:
    msg = mail_with("; dmarc=pass")
    assert authres_verdict(msg, "corp.example", "") == "no authserv_id configured to trust"


def test_programmatically_built_header_is_read_too() -> None:
    msg = EmailMessage()
    msg["Authentication-Results"] = f"{MTA}; dmarc=pass header.from=corp.example"
    assert authres_verdict(msg, "corp.example", MTA) is None


@pytest.mark.parametrize(
    ("domain", "org"),
    [
        ("a.b.corp.co.uk", "corp.co.uk"),
        ("corp.example", "corp.example"),
        ("mail.corp.example", "corp.example"),
        ("MAIL.Corp.Example.", "corp.example"),
        ("co.uk", "co.uk"),
        ("localhost", "localhost"),
        ("", ""),
    ],
)
def test_organizational_domain_uses_the_public_suffix_list(domain: str, org: str) -> None:
    assert organizational_domain(domain) == org


def test_same_organization_is_true_within_and_false_across_registrable_domains() -> None:
    assert same_organization("bounces.corp.example", "corp.example")
    assert same_organization("eu.corp.example", "us.corp.example")
    assert not same_organization("corp.example", "corp-example.example")
    assert not same_organization("alice.github.io", "bob.github.io")
    assert not same_organization("", "")


@settings(max_examples=300, deadline=None)
@given(
    values=st.lists(
        st.text(alphabet=st.sampled_from(list('abc.@=;/()"\\ \t\r\n-1dkimpassfromheader')), max_size=120),
        max_size=4,
    ),
    accept=st.booleans(),
)
def test_authres_verdict_never_raises_on_garbage(values: list[str], accept: bool) -> None:
    msg = EmailMessage()
    for value in values:
        msg["Authentication-Results"] = " ".join(value.split()) or "x"
    result = authres_verdict(msg, "corp.example", "a", accept_without_id=accept)
    assert result is None or isinstance(result, str)


@settings(max_examples=200, deadline=None)
@given(raw=st.binary(max_size=400))
def test_authres_verdict_never_raises_on_arbitrary_header_bytes(raw: bytes) -> None:
    msg = email.message_from_bytes(b"Authentication-Results: " + raw + b"\r\n\r\n", policy=email.policy.default)
    result = authres_verdict(msg, "corp.example", MTA)
    assert result is None or isinstance(result, str)
