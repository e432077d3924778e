"""Decide whether a message carries a valid DKIM signature of its From domain
(``sender_auth = "dkim"``: the gateway verifies DKIM itself, SPEC §5).

A signature counts only when it verifies (RFC 6376 §6) *and* its ``d=`` domain is
aligned with the From domain (RFC 7489 §3.1.1, relaxed: the same organizational
domain); a valid signature of some unrelated mailer vouches for nothing. All
signatures are tried, topmost first, since a message may carry a list's or a
provider's signature beside the author's. dkimpy does the cryptography; its
exceptions and anything a broken message provokes become a refusal reason.
"""

from __future__ import annotations

from collections.abc import Callable

import dkim
from dkim.util import parse_tag_value

from statusmail.inbound.authres import same_organization

__all__ = ["dkim_verdict"]

DnsFunc = Callable[..., bytes | str | None]

# Signatures beyond this many are not tried: each may cost a DNS query.
_MAX_SIGNATURES = 8


def dkim_verdict(raw: bytes, from_domain: str, *, dnsfunc: DnsFunc | None = None) -> str | None:
    """Return None when a DKIM signature aligned with ``from_domain`` verifies,
    else why not. ``dnsfunc(name, timeout=...)`` returns the TXT record of a key
    (dkimpy's resolver when None)."""
    domain = (from_domain or "").strip().rstrip(".").lower()
    if not domain:
        return "no From domain to authenticate"
    try:
        verifier = dkim.DKIM(raw)
        signatures = [value for name, value in verifier.headers if name.lower() == b"dkim-signature"]
    except Exception as exc:
        return f"DKIM: message cannot be parsed ({type(exc).__name__})"
    if not signatures:
        return "no DKIM-Signature"
    failures: list[str] = []
    for idx, value in enumerate(signatures[:_MAX_SIGNATURES]):
        signer = _signing_domain(value)
        if not signer:
            failures.append("signature without d=")
            continue
        if not same_organization(signer, domain):
            # Checked before verifying: no DNS query for a signature that cannot count.
            failures.append(f"d={signer} not aligned")
            continue
        if _verifies(verifier, idx, dnsfunc):
            return None
        failures.append(f"d={signer} does not verify")
    return f"no valid DKIM signature aligned with {domain} ({'; '.join(failures)})"


def _signing_domain(header_value: bytes) -> str:
    try:
        tags = parse_tag_value(header_value)
        return bytes(tags.get(b"d", b"")).decode("ascii").strip().rstrip(".").lower()
    except Exception:
        return ""


def _verifies(verifier: dkim.DKIM, idx: int, dnsfunc: DnsFunc | None) -> bool:
    try:
        if dnsfunc is None:
            return bool(verifier.verify(idx=idx))
        return bool(verifier.verify(idx=idx, dnsfunc=dnsfunc))
    except Exception:
        return False
