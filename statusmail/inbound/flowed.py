"""Undoing format=flowed (RFC 3676), so a soft-wrapped paragraph is one line again.

Apple Mail and Thunderbird send plain text as format=flowed: long lines are wrapped at
about 72 characters and each soft break is marked by a trailing space. Read as it is,
every post from those clients would keep the wrapping. RFC 3676 §4.2: a line ending in
a space (other than the signature separator ``-- ``) flows into the next line of the
same quote depth; a leading space after the quote marks is stuffing and is removed;
with ``DelSp=yes`` the trailing space itself is deleted when joining.
"""

from __future__ import annotations

SIGNATURE_SEPARATOR = "-- "


def split_quote(line: str) -> tuple[int, str]:
    """(quote depth, the line without quote marks and without space-stuffing)."""
    depth = len(line) - len(line.lstrip(">"))
    content = line[depth:]
    if content.startswith(" "):  # §4.4: space-stuffing, and the space after quote marks
        content = content[1:]
    return depth, content


def unflow(text: str, delsp: bool = False) -> str:
    """Join flowed lines into paragraphs; fixed lines stay as they are."""
    out: list[str] = []
    pending: str | None = None  # the paragraph being joined, with its quote prefix
    pending_depth = -1
    for raw_line in text.split("\n"):
        line = raw_line.rstrip("\r")
        depth, content = split_quote(line)
        flowed = content.endswith(" ") and content != SIGNATURE_SEPARATOR
        if pending is not None and depth == pending_depth:
            pending += content
        else:
            if pending is not None:
                out.append(pending)
            pending = (">" * depth + " " if depth else "") + content
            pending_depth = depth
        if flowed:
            if delsp:
                pending = pending[:-1]
            continue
        out.append(pending)
        pending, pending_depth = None, -1
    if pending is not None:
        out.append(pending)
    return "\n".join(out)
