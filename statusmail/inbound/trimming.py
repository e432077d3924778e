"""Decide which lines of a plain-text body are the new text the sender wrote.

What is cut:

* quoted replies: ``>`` lines with their attribution ("On …, X wrote:" in many
  languages, also wrapped over up to three lines), Outlook header blocks
  ("From:/Sent:/To:/Subject:" and translations), "-----Original Message-----"
  and forward markers, and everything below them;
* signatures: the RFC 3676 ``-- `` delimiter (and ``--``, em-dash rules),
  device lines ("Sent from my iPhone", "Get Outlook for iOS" …), long
  underscore rules, mailing-list footers and disclaimer sections.

Top-posted versus interleaved: when the sender wrote something substantive
above the first quote, the quote and everything after it is history and is
cut. When the message opens with a quote (or only a greeting or a lead-in
line ending in ``:`` precedes it), the sender is answering inline: the quoted
lines and their attributions are dropped and the unquoted lines between them
are kept, because that is what the reader would call the new text.

Never cut: colons inside lines, ``>`` inside a sentence, lists, URLs that
contain "wrote", "From:" inside a sentence, and anything inside a fenced
```` ``` ```` code block. The work is one pass over at most ``MAX_CHARS``
characters; see ``quote_patterns`` for why each line test is bounded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from statusmail.inbound import quote_patterns as qp

MAX_CHARS = 200_000
# How far below a From-like label the other labels of a header block may sit
# (Outlook wraps long From and Subject values onto continuation lines).
HEADER_BLOCK_REACH = 5
MAX_ATTRIBUTION_LINES = 3
WRAPPED_ADDRESS_TAILS = frozenset({">:", ">):", "> :", ">,"})

_BLANK_RUNS = re.compile(r"\n{3,}")
# Tracking marks mail extensions append (Mailtrack's U+1427 "ᐧ"), and zero-width
# characters left alone on a line: invisible, never text. U+1427 inside Canadian
# syllabics is a letter and stays.
_TRACKING = re.compile(r"(?<![\u1400-\u167f])\u1427|^[\u200b\u200c\u200d\u2060\ufeff]+$", re.MULTILINE)
INDENT = ("    ", "\t")  # an indented (Markdown) code block: never a quote


@dataclass(frozen=True)
class Trimmed:
    text: str
    removed: str


def trim_reply(text: str) -> Trimmed:
    """Split ``text`` into the sender's new text and what was cut from it."""
    text = text[:MAX_CHARS].replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    text = _TRACKING.sub("", text)
    lines = text.split("\n")
    quoted, code = classify_lines(lines)
    mark_pipe_quotes(lines, quoted, code)
    keep = [True] * len(lines)

    start = skip_preamble(lines, keep)
    cut = find_cut(lines, quoted, code, start)
    first_quote = next((i for i in range(start, cut) if quoted[i]), None)
    if first_quote is not None:
        quote_start = find_attribution_start(lines, quoted, code, first_quote, start)
        if is_top_posted(lines[start:quote_start]):
            cut = quote_start
        else:
            drop_inline_quotes(lines, quoted, code, keep, start, cut)
    for i in range(cut, len(lines)):
        keep[i] = False
    drop_trailing_rules(lines, keep)
    drop_contact_block(lines, keep)

    if not any(k and line.strip() for line, k in zip(lines, keep)):
        keep_unquoted_text(lines, quoted, code, keep)
    kept = "\n".join(line for line, k in zip(lines, keep) if k)
    removed = "\n".join(line for line, k in zip(lines, keep) if not k)
    return Trimmed(text=_BLANK_RUNS.sub("\n\n", kept).strip("\n").rstrip(),
                   removed=removed.strip("\n"))


def classify_lines(lines: list[str]) -> tuple[list[bool], list[bool]]:
    """Mark ``>``-quoted lines and lines inside fenced code blocks."""
    quoted: list[bool] = []
    code: list[bool] = []
    lines_seen: list[str] = []
    in_fence = False
    for line in lines:
        fence = line.lstrip().startswith("```")
        code.append(in_fence or fence)
        if fence:
            in_fence = not in_fence
        stripped = line.strip()
        # ">:" alone is the tail of a wrapped "… <a@b\n>:" attribution, not a quote.
        # An indented ">" is a shell prompt or a code block's comparison, never a quote.
        # Nor is the rest of a line whose quoted-printable soft break ("…example.com=")
        # was never undone: "> a =C3=A9crit :" continues an attribution.
        soft_break = bool(quoted) and not quoted[-1] and lines_seen[-1].rstrip().endswith("=")
        quoted.append(not code[-1] and stripped.startswith(">") and not line.startswith(INDENT)
                      and stripped not in WRAPPED_ADDRESS_TAILS and not soft_break)
        lines_seen.append(line)
    return quoted, code


def mark_pipe_quotes(lines: list[str], quoted: list[bool], code: list[bool]) -> None:
    """``|``-prefixed lines are a quote once a ``|`` run has opened right under an
    attribution (some clients and list archives quote that way), also further down
    between inline answers; otherwise a ``|`` line is a table and stays."""
    piped = False
    for i, line in enumerate(lines):
        if quoted[i] or code[i] or not line.lstrip().startswith("|"):
            continue
        if not piped:
            before = i - 1
            while before >= 0 and not lines[before].strip():
                before -= 1
            piped = before >= 0 and attribution_span(lines, quoted, code, before) is not None
        quoted[i] = piped


def skip_preamble(lines: list[str], keep: list[bool]) -> int:
    """Drop a gateway's "CAUTION: external" banner and a leading header block.

    A header block on the very first line describes this message itself (some
    clients paste it when replying from a web view), so its body is kept.
    """
    start = _next_nonblank(lines, 0)
    if start < len(lines) and qp.is_external_banner(lines[start]):
        end = start
        while end < len(lines) and lines[end].strip():
            keep[end] = False
            end += 1
        start = _next_nonblank(lines, end)
    if start < len(lines) and find_header_block(lines, start) == start:
        end = start
        while end < len(lines) and lines[end].strip():
            keep[end] = False
            end += 1
        start = end
    return start


def find_cut(lines: list[str], quoted: list[bool], code: list[bool], start: int) -> int:
    """Index of the first line from which everything is history or signature."""
    for i in range(start, len(lines)):
        if quoted[i] or code[i]:
            continue
        line = lines[i]
        if not line.strip():
            continue
        if (qp.is_signature_delimiter(line) or qp.is_separator_line(line)
                or qp.is_strong_device_signature(line) or qp.is_disclaimer_heading(line)
                or is_underscore_rule(lines, i)):
            return i
        if (header_start := find_header_block(lines, i)) is not None:
            return max(header_start, start)
        if (span := attribution_span(lines, quoted, code, i)) is not None:
            begin, end = span
            following = _next_nonblank(lines, end + 1)
            if following >= len(lines) or not quoted[following]:
                # An attribution over unquoted text: the original follows as is.
                return max(begin, start)
        if qp.is_weak_device_signature(line) and _only_history_follows(lines, quoted, code, i):
            return i
    return len(lines)


def find_header_block(lines: list[str], i: int) -> int | None:
    """Start of an Outlook header block whose From-like label is on line ``i``."""
    label = qp.header_label(lines[i])
    if label is None or label not in qp.FROM_LABELS:
        return None
    reach = lines[i + 1:i + 1 + HEADER_BLOCK_REACH]
    if not any(qp.header_label(other) for other in reach if other.strip()):
        return None
    begin = i
    # Hotmail puts Date and Subject above From: take the labels above too.
    while begin > 0 and qp.header_label(lines[begin - 1]):
        begin -= 1
    return begin


def is_underscore_rule(lines: list[str], i: int) -> bool:
    """Outlook's "____" reply rule, signature rules and Mailman footer rules."""
    stripped = lines[i].strip()
    if not stripped or stripped.strip("_"):
        return False
    if len(stripped) >= 8:
        return True
    following = _next_nonblank(lines, i + 1)
    return following < len(lines) and qp.is_mailing_list_footer_start(lines[following])


def attribution_span(lines: list[str], quoted: list[bool], code: list[bool],
                     end: int) -> tuple[int, int] | None:
    """The run of at most three lines ending at ``end`` that reads as an attribution.

    Clients wrap long attributions, and the tail alone ("<a@b> wrote:") also
    matches, so prefer the window that starts where an attribution opens
    ("On …", "Am …"), then one that starts with a date, then the smallest.
    """
    matches: list[int] = []
    for size in range(1, MAX_ATTRIBUTION_LINES + 1):
        begin = end - size + 1
        if begin < 0 or quoted[begin] or code[begin] or not lines[begin].strip() \
                or len(lines[begin]) > 300:
            break
        window = lines[begin:end + 1]
        if size > 1 and not (qp.opens_attribution(window[0]) or qp.starts_with_date(window[0])
                             or qp.names_sender_first(window[0])):
            continue
        if qp.is_attribution(join_wrapped(window)):
            matches.append(begin)
    for preferred in (qp.opens_attribution, qp.starts_with_date, qp.names_sender_first):
        for begin in matches:
            if preferred(lines[begin]):
                return begin, end
    return (matches[0], end) if matches else None


def join_wrapped(window: list[str]) -> str:
    """Join lines a client wrapped, undoing quoted-printable soft breaks."""
    joined = window[0].strip()
    for line in window[1:]:
        if joined.endswith("="):
            joined = joined[:-1] + line.strip()
        else:
            joined = joined + " " + line.strip()
    return joined


def find_attribution_start(lines: list[str], quoted: list[bool], code: list[bool],
                           first_quote: int, start: int) -> int:
    """Where the quote that begins at ``first_quote`` is introduced."""
    before = first_quote - 1
    while before >= start and not lines[before].strip():
        before -= 1
    if before >= start and (span := attribution_span(lines, quoted, code, before)):
        return max(span[0], start)
    return first_quote


def is_top_posted(above: list[str]) -> bool:
    """Whether the text above the first quote is a reply of its own.

    A greeting ("Hi,") or a lead-in ending in ":" does not count: the sender
    is about to answer inline.
    """
    for line in above:
        stripped = line.strip()
        if not stripped or stripped.endswith((":", "：")):
            continue
        words = stripped.split()
        if len(words) <= 3 and (stripped[-1] in ",!" or
                                words[0].lower().strip(",!.") in qp.GREETING_WORDS):
            continue
        return True
    return False


def drop_inline_quotes(lines: list[str], quoted: list[bool], code: list[bool],
                       keep: list[bool], start: int, cut: int) -> None:
    """Drop quoted lines, their attributions, and quote lines a client re-wrapped."""
    for i in range(start, cut):
        if not quoted[i]:
            continue
        keep[i] = False
        if i == start or not quoted[i - 1]:
            begin = find_attribution_start(lines, quoted, code, i, start)
            for j in range(begin, i):
                keep[j] = False
    # An unquoted run glued between two quoted lines is a wrapped quote line.
    i = start
    while i < cut:
        if quoted[i] or not lines[i].strip() or i == start or not quoted[i - 1]:
            i += 1
            continue
        end = i
        while end < cut and not quoted[end] and lines[end].strip():
            end += 1
        if end < cut and quoted[end]:
            for j in range(i, end):
                keep[j] = False
        i = end


def drop_trailing_rules(lines: list[str], keep: list[bool]) -> None:
    """Blank lines and bare rules left at the end belong to what was cut."""
    for i in range(len(lines) - 1, -1, -1):
        if not keep[i]:
            continue
        if lines[i].strip() and not qp.is_rule_line(lines[i]):
            return
        keep[i] = False


def keep_unquoted_text(lines: list[str], quoted: list[bool], code: list[bool], keep: list[bool]) -> None:
    """The cut left nothing: keep the lines that are no quote and no mail furniture
    (attributions, header blocks, separators, device lines, rules), so a message that
    had text of its own is never dropped whole. One that is only furniture stays empty."""
    furniture = [False] * len(lines)
    for i, line in enumerate(lines):
        if (span := attribution_span(lines, quoted, code, i)) is not None:
            for j in range(span[0], i + 1):
                furniture[j] = True
        if (qp.header_label(line) is not None or qp.is_separator_line(line) or qp.is_rule_line(line)
                or qp.is_signature_delimiter(line) or qp.is_strong_device_signature(line)
                or qp.is_weak_device_signature(line) or qp.is_external_banner(line)):
            furniture[i] = True
    for i, line in enumerate(lines):
        keep[i] = bool(line.strip()) and not quoted[i] and not furniture[i]


def drop_contact_block(lines: list[str], keep: list[bool]) -> None:
    """Cut a closing block that is a contact card: a name line, then titles, company,
    phone numbers, addresses, links (Outlook signatures carry no ``-- ``). Only a block
    after a blank line, with a name on its first line (after an optional sign-off) and
    a phone number or a link in it, so a sentence or a sign-off alone is never cut."""
    kept = [i for i, k in enumerate(keep) if k]
    if not kept:
        return
    end = kept[-1]
    begin = end
    while begin > 0 and keep[begin - 1] and lines[begin - 1].strip():
        begin -= 1
    if begin == 0 or not any(keep[j] and lines[j].strip() for j in range(begin)):
        return  # the block is the whole text: never drop a whole message
    block = lines[begin:end + 1]
    if not 2 <= len(block) <= qp.MAX_CONTACT_LINES or any(len(line.strip()) > 80 for line in block):
        return
    first = 1 if qp.is_sign_off(block[0]) else 0
    if first >= len(block) - 1 or not qp.is_name_line(block[first]):
        return
    if not qp.is_contact_card(block[first + 1:]):
        return
    for j in range(begin + first, end + 1):
        keep[j] = False


def _only_history_follows(lines: list[str], quoted: list[bool], code: list[bool],
                          i: int) -> bool:
    """True when below line ``i`` there is nothing, a quote, or a cut marker."""
    following = _next_nonblank(lines, i + 1)
    if following >= len(lines) or quoted[following]:
        return True
    line = lines[following]
    return (qp.is_signature_delimiter(line) or qp.is_separator_line(line)
            or find_header_block(lines, following) is not None
            or is_underscore_rule(lines, following)
            or any(attribution_span(lines, quoted, code, j) is not None
                   for j in range(following, min(following + MAX_ATTRIBUTION_LINES,
                                                 len(lines)))))


def _next_nonblank(lines: list[str], i: int) -> int:
    while i < len(lines) and not lines[i].strip():
        i += 1
    return i
