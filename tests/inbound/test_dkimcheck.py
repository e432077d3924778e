"""dkim_verdict: the gateway's own DKIM check (SPEC §5, RFC 6376, RFC 7489 alignment).

A throwaway RSA key is generated in pure Python for the test session (no openssl
binary, no network), written as PKCS#1 PEM for dkimpy's signer, and published to
the verifier through a test ``dnsfunc``.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable

import dkim
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from statusmail.inbound.dkimcheck import dkim_verdict

SELECTOR = b"s1"


# --- a throwaway RSA key ----------------------------------------------------------


def _is_probable_prime(n: int, rounds: int = 40) -> bool:
    if n < 2:
        return False
    for p in (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37):
        if n % p == 0:
            return n == p
    d, r = n - 1, 0
    while d % 2 == 0:
        d //= 2
        r += 1
    for _ in range(rounds):
        x = pow(secrets.randbelow(n - 3) + 2, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def _prime(bits: int, e: int) -> int:
    while True:
        candidate = secrets.randbits(bits) | (1 << (bits - 1)) | (1 << (bits - 2)) | 1
        if candidate % e != 1 and _is_probable_prime(candidate):
            return candidate


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _der(tag: int, body: bytes) -> bytes:
    return bytes([tag]) + _der_length(len(body)) + body


def _der_int(n: int) -> bytes:
    return _der(0x02, n.to_bytes(n.bit_length() // 8 + 1, "big"))


def _pem(label: str, der: bytes) -> bytes:
    b64 = base64.b64encode(der).decode()
    lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
    return ("\n".join([f"-----BEGIN {label}-----", *lines, f"-----END {label}-----"]) + "\n").encode()


def make_rsa_key(bits: int = 2048) -> tuple[bytes, bytes]:
    """(PKCS#1 private key PEM, DNS TXT record with the SubjectPublicKeyInfo)."""
    e = 65537
    p = _prime(bits // 2, e)
    q = _prime(bits // 2, e)
    while q == p:
        q = _prime(bits // 2, e)
    n = p * q
    d = pow(e, -1, (p - 1) * (q - 1))
    private = _der(
        0x30,
        b"".join(_der_int(x) for x in (0, n, e, d, p, q, d % (p - 1), d % (q - 1), pow(q, -1, p))),
    )
    rsa_public = _der(0x30, _der_int(n) + _der_int(e))
    algorithm = _der(0x30, _der(0x06, bytes.fromhex("2a864886f70d010101")) + b"\x05\x00")
    spki = _der(0x30, algorithm + _der(0x03, b"\x00" + rsa_public))
    txt = b"v=DKIM1; k=rsa; p=" + base64.b64encode(spki)
    return _pem("RSA PRIVATE KEY", private), txt


@pytest.fixture(scope="module")
def key() -> tuple[bytes, bytes]:
    return make_rsa_key()


def resolver(records: dict[bytes, bytes]) -> Callable[..., bytes | None]:
    def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
        return records.get(name)

    return dnsfunc


MESSAGE = (
    b"From: Alice <alice@corp.example>\r\n"
    b"To: status@corp.example\r\n"
    b"Subject: Shipped the billing export\r\n"
    b"Message-ID: <1@corp.example>\r\n"
    b"Date: Mon, 02 Mar 2026 09:00:00 +0000\r\n"
    b"\r\n"
    b"Done, see #billing\r\n"
)


def signed(message: bytes, private_pem: bytes, domain: bytes) -> bytes:
    return dkim.sign(message, SELECTOR, domain, private_pem, include_headers=[b"from", b"to", b"subject"]) + message


def dns_for(domain: bytes, txt: bytes) -> Callable[..., bytes | None]:
    return resolver({SELECTOR + b"._domainkey." + domain + b".": txt})


# --- behaviour --------------------------------------------------------------------


def test_valid_signature_of_the_from_domain_is_accepted(key: tuple[bytes, bytes]) -> None:
    private, txt = key
    raw = signed(MESSAGE, private, b"corp.example")
    assert dkim_verdict(raw, "corp.example", dnsfunc=dns_for(b"corp.example", txt)) is None


def test_signature_by_a_subdomain_of_the_from_domain_is_aligned(key: tuple[bytes, bytes]) -> None:
    private, txt = key
    raw = signed(MESSAGE, private, b"mail.corp.example")
    assert dkim_verdict(raw, "Corp.Example", dnsfunc=dns_for(b"mail.corp.example", txt)) is None


def test_tampered_body_fails(key: tuple[bytes, bytes]) -> None:
    private, txt = key
    raw = signed(MESSAGE, private, b"corp.example").replace(b"#billing", b"#payroll")
    reason = dkim_verdict(raw, "corp.example", dnsfunc=dns_for(b"corp.example", txt))
    assert reason is not None and "does not verify" in reason


def test_tampered_from_header_fails(key: tuple[bytes, bytes]) -> None:
    private, txt = key
    raw = signed(MESSAGE, private, b"corp.example").replace(b"Alice <alice@", b"Mallory <alice@")
    assert '(d=corp.example does not verify)' in (dkim_verdict(raw, "corp.example", dnsfunc=dns_for(b"corp.example", txt)) or "")


def test_valid_signature_of_an_unaligned_domain_fails(key: tuple[bytes, bytes]) -> None:
    private, txt = key
    raw = signed(MESSAGE, private, b"mailer.example")
    reason = dkim_verdict(raw, "corp.example", dnsfunc=dns_for(b"mailer.example", txt))
    assert reason is not None and "d=mailer.example not aligned" in reason


def test_unsigned_message_fails() -> None:
    assert dkim_verdict(MESSAGE, "corp.example", dnsfunc=resolver({})) == "no DKIM-Signature"


def test_missing_key_record_fails(key: tuple[bytes, bytes]) -> None:
    private, _txt = key
    raw = signed(MESSAGE, private, b"corp.example")
    assert '(d=corp.example does not verify)' in (dkim_verdict(raw, "corp.example", dnsfunc=resolver({})) or "")


def test_a_key_of_another_signer_fails(key: tuple[bytes, bytes]) -> None:
    private, _txt = key
    _other_private, other_txt = make_rsa_key(1024)
    raw = signed(MESSAGE, private, b"corp.example")
    assert '(d=corp.example does not verify)' in (dkim_verdict(raw, "corp.example", dnsfunc=dns_for(b"corp.example", other_txt)) or "")


def test_an_aligned_signature_below_an_unaligned_one_is_found(key: tuple[bytes, bytes]) -> None:
    private, txt = key
    inner = signed(MESSAGE, private, b"corp.example")
    outer = dkim.sign(inner, SELECTOR, b"lists.example", private, include_headers=[b"from", b"subject"]) + inner
    records = {
        SELECTOR + b"._domainkey.corp.example.": txt,
        SELECTOR + b"._domainkey.lists.example.": txt,
    }
    assert dkim_verdict(outer, "corp.example", dnsfunc=resolver(records)) is None


def test_empty_from_domain_fails(key: tuple[bytes, bytes]) -> None:
    private, txt = key
    raw = signed(MESSAGE, private, b"corp.example")
    assert 'no From domain to authenticate' in (dkim_verdict(raw, "", dnsfunc=dns_for(b"corp.example", txt)) or "")


def test_a_resolver_that_raises_is_a_failure_not_a_crash(key: tuple[bytes, bytes]) -> None:
    private, _txt = key
    raw = signed(MESSAGE, private, b"corp.example")

    def broken(name: bytes, timeout: int = 5) -> bytes:
        raise TimeoutError("dns down")

    assert '(d=corp.example does not verify)' in (dkim_verdict(raw, "corp.example", dnsfunc=broken) or "")


@settings(max_examples=200, deadline=None)
@given(raw=st.binary(max_size=800))
def test_dkim_verdict_never_raises_on_arbitrary_bytes(raw: bytes) -> None:
    result = dkim_verdict(raw, "corp.example", dnsfunc=resolver({}))
    assert result is None or isinstance(result, str)


@settings(max_examples=200, deadline=None)
@given(sig=st.binary(max_size=300))
def test_dkim_verdict_never_raises_on_a_garbage_signature_header(sig: bytes) -> None:
    raw = b"DKIM-Signature: " + sig.replace(b"\r", b"").replace(b"\n", b"") + b"\r\n" + MESSAGE
    result = dkim_verdict(raw, "corp.example", dnsfunc=resolver({}))
    assert result is None or isinstance(result, str)
