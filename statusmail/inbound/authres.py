"""Decide whether the receiving MTA vouched for the sender (``sender_auth = "authres"``).

The company MTA authenticates, the gateway authorizes (DESIGN decision 7). The MTA
records its findings in an ``Authentication-Results`` header (RFC 8601). Anyone can
write such a header into a message, so only the topmost one carrying the configured
authserv-id is trusted (RFC 8601 §5: the border MTA adds its own on top and removes
or ignores others claiming its id). It must show ``dmarc=pass`` for the From domain,
or ``dkim=pass`` with a signing domain aligned with the From domain (RFC 7489 §3.1.1,
relaxed alignment: the same organizational domain, §3.2).

The header is parsed by a small tokenizer written for RFC 8601 §2.2's grammar
(comments, quoted strings, ``;``-separated results, folding), so garbage never raises
and no regular expression can backtrack.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from email.message import Message
from functools import lru_cache

from publicsuffixlist import PublicSuffixList

from statusmail.inbound.memo import remember_short

__all__ = ["authres_verdict", "organizational_domain", "same_organization"]

# A header longer than this is not from a real MTA; cut it instead of scanning it all.
_MAX_HEADER_CHARS = 16_384
_MAX_HEADERS = 100

# RFC 8601 §2.2 separators that end a word; everything else printable belongs to one.
_SEPARATORS = frozenset(';=/"()')


@dataclass(frozen=True)
class _Result:
    method: str
    result: str
    props: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _AuthResults:
    authserv_id: str | None
    results: tuple[_Result, ...]


def authres_verdict(
    msg: Message, from_domain: str, authserv_id: str, *, accept_without_id: bool = False
) -> str | None:
    """Return None when the trusted Authentication-Results header verifies the
    sender of ``from_domain``, else why not.

    ``accept_without_id`` is the allowance for providers (Microsoft 365) whose
    header has no usable authserv-id: the topmost header is then trusted whatever
    its id.
    """
    domain = _normalize_domain(from_domain)
    if not domain:
        return "no From domain to authenticate"
    wanted = authserv_id.strip().lower()
    if not wanted and not accept_without_id:
        return "no authserv_id configured to trust"
    trusted = _trusted_header(msg, wanted, accept_without_id)
    if trusted is None:
        return f"no Authentication-Results from {authserv_id.strip() or 'the topmost MTA'}"
    return _judge(trusted, domain)


def organizational_domain(domain: str) -> str:
    """The registrable domain of ``domain`` per the Public Suffix List (RFC 7489
    §3.2); the domain itself when it is a public suffix or unknown single label."""
    normalized = _normalize_domain(domain)
    return _registrable(normalized) if normalized else ""


# A company's mail comes from a handful of domains; a longer name than a DNS name can
# be (RFC 1035 §2.3.4) is junk, not worth an entry.
@remember_short(253, 1024)
def _registrable(normalized: str) -> str:
    try:
        registrable = _psl().privatesuffix(normalized)
    except Exception:
        registrable = None
    return registrable or normalized


def same_organization(a: str, b: str) -> bool:
    """Whether two domains share an organizational domain (RFC 7489 relaxed alignment)."""
    org_a = organizational_domain(a)
    return bool(org_a) and org_a == organizational_domain(b)


@lru_cache(maxsize=1)
def _psl() -> PublicSuffixList:
    # The package bundles the list; loading it never touches the network.
    return PublicSuffixList()


def _normalize_domain(domain: str) -> str:
    return (domain or "").strip().strip("<>").strip().rstrip(".").lower()


def _trusted_header(msg: Message, wanted: str, accept_without_id: bool) -> _AuthResults | None:
    for raw in _raw_authres_values(msg):
        parsed = _parse_header(raw)
        if accept_without_id:
            return parsed  # topmost header, whatever its id
        if parsed.authserv_id is not None and parsed.authserv_id.lower() == wanted:
            return parsed
    return None


def _raw_authres_values(msg: Message) -> list[str]:
    """Authentication-Results values, topmost first, without header parsing
    (email.policy.default can raise on odd values; this header needs none)."""
    values: list[str] = []
    try:
        items = msg.raw_items()
        for name, value in items:
            if str(name).lower() == "authentication-results":
                values.append(str(value)[:_MAX_HEADER_CHARS])
                if len(values) >= _MAX_HEADERS:
                    break
    except Exception:
        return values
    return values


def _judge(header: _AuthResults, domain: str) -> str | None:
    seen: list[str] = []
    for res in header.results:
        if res.method == "dmarc" and res.result == "pass":
            header_from = _normalize_domain(res.props.get("header.from", domain))
            if header_from == domain:
                return None
            seen.append(f"dmarc=pass header.from={header_from} (not the From domain)")
        elif res.method == "dkim" and res.result == "pass":
            signer = _dkim_domain(res.props)
            if signer and same_organization(signer, domain):
                return None
            seen.append(f"dkim=pass header.d={signer or '?'} (not aligned)")
        elif res.method in ("dmarc", "dkim"):
            seen.append(f"{res.method}={res.result or '?'}")
    who = header.authserv_id or "the topmost MTA"
    detail = "; ".join(seen) if seen else "no dmarc or dkim result"
    return f"Authentication-Results from {who} shows no dmarc=pass or aligned dkim=pass ({detail})"


def _dkim_domain(props: dict[str, str]) -> str:
    # RFC 8601 §2.7.1: header.d is the signing domain; header.i the agent or user
    # identifier, whose domain part is the d= domain or a subdomain of it.
    if props.get("header.d"):
        return _normalize_domain(props["header.d"])
    identity = props.get("header.i", "")
    return _normalize_domain(identity.rsplit("@", 1)[-1]) if identity else ""


# --- RFC 8601 §2.2 tokenizer and parser ------------------------------------------


def _tokenize(value: str) -> list[tuple[str, str]]:
    """Split a header value into ("word"|"quoted"|separator, text) tokens.

    Comments (RFC 5322 §3.2.2, nestable, with quoted pairs) and whitespace are
    dropped; an unterminated comment or quoted string ends at the end of input.
    """
    tokens: list[tuple[str, str]] = []
    i, n = 0, len(value)
    while i < n:
        ch = value[i]
        if ch.isspace():
            i += 1
        elif ch == "(":
            i = _skip_comment(value, i)
        elif ch == '"':
            text, i = _read_quoted(value, i)
            tokens.append(("quoted", text))
        elif ch in ";=/":
            tokens.append((ch, ch))
            i += 1
        elif ch == ")":
            i += 1  # stray close of a comment never opened
        else:
            start = i
            while i < n and not value[i].isspace() and value[i] not in _SEPARATORS:
                i += 1
            tokens.append(("word", value[start:i]))
    return tokens


def _skip_comment(value: str, i: int) -> int:
    depth, n = 0, len(value)
    while i < n:
        ch = value[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return n


def _read_quoted(value: str, i: int) -> tuple[str, int]:
    out: list[str] = []
    i += 1
    n = len(value)
    while i < n:
        ch = value[i]
        if ch == "\\" and i + 1 < n:
            out.append(value[i + 1])
            i += 2
            continue
        if ch == '"':
            return "".join(out), i + 1
        out.append(ch)
        i += 1
    return "".join(out), n


def _parse_header(value: str) -> _AuthResults:
    tokens = _tokenize(value)
    authserv_id: str | None = None
    pos = 0
    is_value = len(tokens) > 0 and tokens[0][0] in ("word", "quoted")
    if is_value and (len(tokens) == 1 or tokens[1][0] != "="):
        # authserv-id [CFWS authres-version] (RFC 8601 §2.2); a header that starts
        # with "method=" has no id (Microsoft 365 writes them so).
        authserv_id = tokens[0][1]
        pos = 1
        if pos < len(tokens) and tokens[pos][0] == "word" and tokens[pos][1].isdigit():
            pos += 1
    results: list[_Result] = []
    for group in _split_on_semicolons(tokens[pos:]):
        parsed = _parse_resinfo(group)
        if parsed is not None:
            results.append(parsed)
    return _AuthResults(authserv_id, tuple(results))


def _split_on_semicolons(tokens: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    groups: list[list[tuple[str, str]]] = [[]]
    for tok in tokens:
        if tok[0] == ";":
            groups.append([])
        else:
            groups[-1].append(tok)
    return [g for g in groups if g]


def _parse_resinfo(group: list[tuple[str, str]]) -> _Result | None:
    """methodspec [reasonspec] *propspec, e.g. ``dkim=pass header.d=corp.example``."""
    if group[0][0] != "word":
        return None  # "none" (no-result) or garbage
    method = group[0][1].lower()
    i = 1
    if i + 1 < len(group) and group[i][0] == "/":
        i += 2  # method-version
    if i >= len(group) or group[i][0] != "=":
        return None
    i += 1
    if i >= len(group) or group[i][0] not in ("word", "quoted"):
        return _Result(method, "", {})
    result = group[i][1].lower()
    i += 1
    props: dict[str, str] = {}
    while i < len(group):
        if (
            group[i][0] == "word"
            and i + 2 < len(group)
            and group[i + 1][0] == "="
            and group[i + 2][0] in ("word", "quoted")
        ):
            props.setdefault(group[i][1].lower(), group[i + 2][1])
            i += 3
        else:
            i += 1
    return _Result(method, result, props)
