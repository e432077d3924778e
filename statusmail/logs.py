"""Logging set-up: to stderr, with reply tokens redacted.

A reply token is a bearer secret bound to one recipient (DESIGN decision 5); anyone who
reads a log line with ``status+<token>@`` could not post with it (the sender must match)
but could learn who talks to whom about what, so tokens never reach a log in clear.
"""

from __future__ import annotations

import logging
import logging.handlers
import re
import sys

# Also URL-encoded, as a mailto: link quoted from an HTML notification carries it.
TOKEN_IN_ADDRESS = re.compile(r"(?:\+|%2[bB])(?:bounce-)?[A-Za-z0-9]{6,}(?=@|%40)")
REDACTED = "+[redacted]"


def redact(text: str) -> str:
    """``text`` with every ``+token`` of an address replaced by ``+[redacted]``."""
    return TOKEN_IN_ADDRESS.sub(REDACTED, text)


class RedactingFilter(logging.Filter):
    """Redacts the fully formatted message, so no argument can slip a token through."""

    def filter(self, record: logging.LogRecord) -> bool:
        # Formatted once here; the handler's formatter then finds no arguments left.
        record.msg, record.args = redact(record.getMessage()), None
        return True


def setup_logging(level: int = logging.INFO, buffered: bool = False) -> None:
    """Log to stderr. ``buffered`` holds INFO lines until :func:`flush_logs` (or 1,000
    of them) and writes warnings at once: the writer process logs a line per message,
    and a write per line showed in its profile (bench/ingest.py)."""
    handler: logging.Handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    if buffered:
        handler = logging.handlers.MemoryHandler(1000, flushLevel=logging.WARNING, target=handler)
    # Our format shows none of these, and gathering them for every record (the caller's
    # file and line walk the stack) is a quarter of a line's cost: 8.2 -> 6.3 us, and the
    # writer process logs a line per message. The logging HOWTO's "Optimization"
    # section names these switches.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd's per-line chatter
    logging.getLogger("alembic").setLevel(logging.WARNING)


def flush_logs() -> None:
    for handler in logging.getLogger().handlers:
        handler.flush()
