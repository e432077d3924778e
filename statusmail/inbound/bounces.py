"""Read delivery status notifications (RFC 3464) into per-recipient bounce reports.

A DSN is a ``multipart/report; report-type=delivery-status`` (RFC 6522) whose
``message/delivery-status`` part holds one per-message field block followed by one
block per recipient (RFC 3464 §2.1). Each recipient block that reports a failure
(``Action: failed``) or a delay (``Action: delayed``) becomes a :class:`BounceReport`;
success notices (delivered, relayed, expanded) are not bounces and are left out.
A failure is hard when its status is permanent (class 5, RFC 3463 §3.1), so that
repeated hard bounces can suspend mail to the address (SPEC §3 Loops).

Anything else, including bounces written as plain prose, yields ``[]``: guessing at
free text is not this module's job. Broken input never raises.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import Message

__all__ = ["BounceReport", "parse_dsn"]

_STATUS_PARTS = ("message/delivery-status", "message/global-delivery-status")  # RFC 6533
_BOUNCE_ACTIONS = frozenset({"failed", "delayed"})
_MAX_BLOCK_TEXT = 200_000
_MAX_REPORTS = 1_000


@dataclass(frozen=True)
class BounceReport:
    """One recipient's failure or delay, as the reporting MTA stated it."""

    recipient: str  # address, without angle brackets
    status: str  # RFC 3463 enhanced status code, e.g. "5.1.1"
    hard: bool  # permanent: Action failed with a 5.x.x status
    diagnostic: str  # Diagnostic-Code, unfolded ("" when absent)


def parse_dsn(msg: Message) -> list[BounceReport]:
    """The bounce reports of a DSN, in the order given; [] for anything else."""
    try:
        blocks = _status_blocks(msg)
    except Exception:
        return []
    reports: list[BounceReport] = []
    for fields in blocks:
        try:
            report = _report_from_block(fields)
        except Exception:
            report = None
        if report is not None:
            reports.append(report)
        if len(reports) >= _MAX_REPORTS:
            break
    return reports


def _status_blocks(msg: Message) -> list[dict[str, str]]:
    """Field blocks of the delivery-status parts of a DSN."""
    ctype = msg.get_content_type()
    if ctype in _STATUS_PARTS:
        # A bare delivery-status body whose multipart wrapper was lost; its blocks
        # are unambiguous, so read them.
        return _blocks_of_part(msg)
    if ctype != "multipart/report":
        return []
    report_type = str(msg.get_param("report-type", "delivery-status") or "").strip().lower()
    if report_type not in ("delivery-status", "global-delivery-status"):
        return []  # MDNs (RFC 8098), feedback reports (RFC 5965): not bounces
    payload = msg.get_payload()
    if not isinstance(payload, list):
        return []
    blocks: list[dict[str, str]] = []
    # Only direct children: a DSN quoted inside a forwarded message is not ours.
    for part in payload:
        if isinstance(part, Message) and part.get_content_type() in _STATUS_PARTS:
            blocks.extend(_blocks_of_part(part))
    return blocks


def _blocks_of_part(part: Message) -> list[dict[str, str]]:
    payload = part.get_payload()
    blocks: list[dict[str, str]] = []
    if isinstance(payload, list):
        # The stdlib parser turns each field block into a sub-message; leftover
        # text (seen with message/global-delivery-status) holds further blocks.
        for block in payload:
            if not isinstance(block, Message):
                continue
            blocks.append({str(k).lower(): _unfold(str(v)) for k, v in reversed(list(block.raw_items()))})
            rest = block.get_payload()
            if isinstance(rest, str) and rest.strip():
                blocks.extend(_blocks_of_text(rest))
    elif isinstance(payload, str):
        blocks.extend(_blocks_of_text(payload))
    return blocks


def _blocks_of_text(text: str) -> list[dict[str, str]]:
    """RFC 3464 §2.1: blocks of RFC 822-style fields separated by blank lines."""
    blocks: list[dict[str, str]] = []
    current: dict[str, str] = {}
    last: str | None = None
    for line in text[:_MAX_BLOCK_TEXT].splitlines():
        if not line.strip():
            if current:
                blocks.append(current)
            current, last = {}, None
        elif line[0] in " \t" and last is not None:
            current[last] = _unfold(current[last] + " " + line)
        elif ":" in line:
            name, _, value = line.partition(":")
            last = name.strip().lower()
            current.setdefault(last, _unfold(value))
    if current:
        blocks.append(current)
    return blocks


def _report_from_block(fields: dict[str, str]) -> BounceReport | None:
    action = _first_word(fields.get("action", "")).lower()
    status = _status_code(fields.get("status", "")) or _status_from_diagnostic(fields.get("diagnostic-code", ""))
    if action and action not in _BOUNCE_ACTIONS:
        return None
    if not action and status[:1] not in ("4", "5"):
        return None  # neither an action nor a failure status: not a recipient block
    recipient = _address(fields.get("original-recipient", "")) or _address(fields.get("final-recipient", ""))
    if not recipient:
        return None
    # RFC 3463 §3.1: class 5 is a permanent failure; a delay is never one.
    hard = action == "failed" and status.startswith("5.")
    return BounceReport(recipient, status, hard, fields.get("diagnostic-code", ""))


def _address(value: str) -> str:
    """The address of ``address-type ; generic-address`` (RFC 3464 §2.3.1-2)."""
    addr_type, sep, address = value.partition(";")
    if not sep:
        address, addr_type = addr_type, "rfc822"
    address = address.strip().strip("<>").strip()
    if addr_type.strip().lower() not in ("rfc822", "utf-8") or "@" not in address:
        return ""
    return address


def _first_word(value: str) -> str:
    words = value.split()
    return words[0] if words else ""


def _status_code(value: str) -> str:
    """An RFC 3463 §2 code ``class.subject.detail`` from the start of ``value``."""
    word = _first_word(value).rstrip(";,")
    parts = word.split(".")
    if len(parts) != 3 or parts[0] not in ("2", "4", "5"):
        return ""
    if not all(p.isascii() and p.isdigit() and len(p) <= 3 for p in parts[1:]):
        return ""
    return word


def _status_from_diagnostic(diagnostic: str) -> str:
    """Recover a status from ``smtp; 550 5.1.1 ...`` when Status is missing or bad."""
    _type, _sep, text = diagnostic.partition(";")
    words = (text or diagnostic).replace("-", " ").split()[:4]
    for word in words[1:]:
        code = _status_code(word)
        if code:
            return code
    if words and len(words[0]) == 3 and words[0].isascii() and words[0].isdigit() and words[0][0] in "45":
        return f"{words[0][0]}.0.0"  # RFC 3463 §3.1: only the class is known
    return ""


def _unfold(value: str) -> str:
    return " ".join(value.split())
