"""The one error hierarchy of statusmail.

::

    StatusmailError(Exception)
    ├── ConfigError            a configuration key is unknown or its value invalid
    ├── StoreUnavailable       the database cannot be reached or is locked/full (4xx, retry)
    ├── NoDatabase             the configured database was never created (`statusmail init`)
    ├── ListenError            a listener cannot bind its address (port taken, no permission)
    ├── TransportError         the relay or Maildir could not take a message (outbox retries)
    │   └── PermanentTransportError   the relay refused for good (5xx): no retry
    └── PipelineStop           a pipeline stage decided the message's fate
        ├── Refused            not accepted; answered in the SMTP dialogue (5xx)
        ├── Deferred           try again later (4xx): rate limits, outages
        ├── Held               stored, waiting in the moderation queue
        └── Discarded          accepted and dropped on purpose (robots, bounces, too long)

The ``PipelineStop`` family is defined in :mod:`statusmail.inbound.outcome`, beside the
reasons it carries.
"""

from __future__ import annotations


class StatusmailError(Exception):
    """Base of every error statusmail raises on purpose."""


class ConfigError(StatusmailError):
    """A configuration problem; the message names the key."""


class StoreUnavailable(StatusmailError):
    """The database is down, locked beyond the timeout, or out of space."""


class NoDatabase(StatusmailError):
    """The configured database does not exist (or has no schema): only ``init`` creates one."""


class ListenError(StatusmailError):
    """A listener could not bind its address; the message names it."""


class TransportError(StatusmailError):
    """A message could not be handed on now; the outbox will try again."""


class PermanentTransportError(TransportError):
    """The relay refused the message for good.

    ``status`` is the reply's RFC 3463 enhanced code (``5.1.1``; ``5.0.0`` when the relay
    gave none) and ``refused_recipient`` says whether the refusal was of the recipient:
    a 5xx to RCPT or to DATA (one recipient per transaction). Such a refusal is scored
    like a DSN's hard bounce (SPEC §5); one at MAIL, AUTH or the greeting is about us,
    not the address, and is not.
    """

    def __init__(self, message: str, *, status: str = "5.0.0", refused_recipient: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.refused_recipient = refused_recipient
