"""``statusmail check``: is the configuration usable, and can we reach what it names?"""

from __future__ import annotations

import asyncio
import os
import shlex
import stat
from pathlib import Path

from sqlalchemy import Engine, text

from statusmail.config import Settings
from statusmail.errors import NoDatabase, StatusmailError
from statusmail.outbound.transport import MaildirTransport, SmtpTransport, make_transport
from statusmail.store.db import current_revision, make_engine, sqlite_path

Check = tuple[str, bool, str]


def check_database(engine: Engine) -> Check:
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        revision = current_revision(engine)
    except Exception as exc:
        return ("database", False, str(exc).splitlines()[0])
    if revision is None:
        return ("database", False, "reachable, but not initialised: run `statusmail init`")
    return ("database", True, f"reachable, schema revision {revision}")


def check_relay(settings: Settings) -> Check:
    try:
        transport = make_transport(settings)
    except StatusmailError as exc:
        return ("relay", False, str(exc))
    if isinstance(transport, MaildirTransport):
        parent = transport.path if transport.path.exists() else transport.path.parent
        while not parent.exists():
            parent = parent.parent
        writable = os.access(parent, os.W_OK)
        return ("relay", writable, f"Maildir {transport.path}" + ("" if writable else f": {parent} is not writable"))
    if isinstance(transport, SmtpTransport):
        try:
            asyncio.run(asyncio.wait_for(transport.check(), 15))
        except Exception as exc:
            return ("relay", False, f"{transport.host}:{transport.port}: {exc}")
        return ("relay", True, f"{transport.host}:{transport.port} answers")
    return ("relay", True, settings.outbound.transport)


def check_database_at(url: str) -> Check:
    """:func:`check_database` for the configured URL; a missing SQLite file is a failure,
    never created (only ``init`` creates a database)."""
    path = sqlite_path(url)
    if path is not None and not path.exists():
        return ("database", False, str(NoDatabase(f"no database at {path.absolute()}; run `statusmail init`")))
    engine = make_engine(url)
    try:
        return check_database(engine)
    finally:
        engine.dispose()


def run_checks(settings: Settings) -> list[Check]:
    checks: list[Check] = [("configuration", True, f"valid ({settings.source})"),
                           check_database_at(settings.gateway.database_url), check_relay(settings)]
    if settings.imap.enabled:
        from statusmail.gateway.imap import check_mailbox

        checks.append(check_mailbox(settings))
    return checks


def who_can(mode: int) -> str:
    """Who besides the owner may read or write, in words: "group can read it, others can
    read and write it". Execute bits are left out: on a folder they let one pass, not list."""
    access = {}
    for who, shift in (("group", 3), ("others", 0)):
        verbs = [verb for verb, bit in (("read", 4), ("write", 2)) if mode >> shift & bit]
        if verbs:
            access[who] = " and ".join(verbs)
    if len(access) == 2 and access["group"] == access["others"]:
        return f"group and others can {access['group']} it"
    return ", ".join(f"{who} can {verbs} it" for who, verbs in access.items())


def database_file_warnings(url: str) -> list[str]:
    """A SQLite database, its -wal and -shm files and its folder open to group or others.

    The database holds every reply token (a token is the right to post as its reader) and
    the raw mail (SPEC §2: the owner's only). ``init`` makes them private, but a copied or
    restored file, or a folder made by hand, keeps whatever mode it had; SQLite gives the
    -wal and -shm files the database file's mode when it creates them, so they can stay
    readable after the database itself was chmod-ed. PostgreSQL keeps its own files."""
    path = sqlite_path(url)
    if path is None:
        return []
    path = path.absolute()  # the fix as a command that works from any folder
    targets = [(path.parent, f"database: the folder {path.parent}", "the database", "700")]
    targets += [(file, f"database: {file}", "reply tokens and raw mail", "600")
                for file in (path, Path(f"{path}-wal"), Path(f"{path}-shm"))]
    # Absent files are passed over: -wal and -shm exist only while the database is open.
    found = (open_to_others(*target) for target in targets)
    return [warning for warning in found if warning]


def secret_file_warnings(settings: Settings) -> list[str]:
    """A file of secrets that group or others may read or write.

    ``init`` and ``serve`` make the gateway's key owner-only, but the credentials files
    are the administrator's, and a key restored from a backup keeps the backup's mode.
    Whoever reads the key can sign any reader's feed and unsubscribe links (``signing.py``);
    the others are passwords and the TLS private key."""
    files = [(settings.gateway.secret_key_file, "gateway.secret_key_file", "the key that signs feed and unsubscribe links"),
             (settings.smtp.tls_key, "smtp.tls_key", "the TLS private key"),
             (settings.smtp.auth_file, "smtp.auth_file", "the SMTP AUTH users' password hashes"),
             (settings.imap.password_file, "imap.password_file", "the mailbox password"),
             (settings.outbound.password_file, "outbound.password_file", "the relay password")]
    # A missing file is passed over: the setting's own check says so where it matters.
    targets = [(Path(path).absolute(), key, holds) for path, key, holds in files if path]
    found = (open_to_others(target, f"{key}: {target}", holds, "600") for target, key, holds in targets)
    return [warning for warning in found if warning]


def open_to_others(target: Path, label: str, holds: str, mode_wanted: str) -> str | None:
    """The warning for a file or folder that group or others may read or write, with
    the ``chmod`` that mends it; None when it is private, or absent."""
    try:
        mode = stat.S_IMODE(target.stat().st_mode)
    except OSError:
        return None
    if not mode & 0o066:
        return None
    return (f"{label} is mode {mode:04o}: {who_can(mode)}, and it holds {holds}; "
            f"chmod {mode_wanted} {shlex.quote(str(target))}")


def config_warnings(settings: Settings) -> list[str]:
    """Set-ups that work but trust more than they should; ``check`` prints them, exit 0."""
    warnings: list[str] = database_file_warnings(settings.gateway.database_url) + secret_file_warnings(settings)
    if settings.imap.enabled and settings.policy.sender_auth == "network":
        # Anyone who can mail the mailbox reaches it, so no network vouches for the sender.
        warnings.append('mailbox: imap.enabled with policy.sender_auth = "network" trusts any From header '
                        'anyone can mail to the mailbox; set sender_auth = "authres" and authserv_id to the '
                        "provider's Authentication-Results name (see README, A hosted mailbox over IMAP)")
    return warnings
