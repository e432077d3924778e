"""SMTP AUTH for the listener: a credentials file of hashed passwords (RFC 4954).

One ``user:hash`` per line; the hash is ``pbkdf2_sha256$<iterations>$<salt>$<digest>``
(hashlib, no plain text on disk; ``statusmail hash-password`` writes one). AUTH is only
offered after STARTTLS (aiosmtpd's ``auth_require_tls``), so a password never crosses the
network in clear.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
from pathlib import Path

from aiosmtpd.smtp import AuthResult, LoginPassword

from statusmail.errors import ConfigError

log = logging.getLogger(__name__)

ITERATIONS = 200_000


def hash_password(password: str, iterations: int = ITERATIONS) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return f"pbkdf2_sha256${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, iterations, salt, digest = stored.split("$")
        if scheme != "pbkdf2_sha256":
            return False
        computed = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(salt), int(iterations))
        return hmac.compare_digest(computed, base64.b64decode(digest))
    except (ValueError, TypeError):
        return False


def load_credentials(path: str) -> dict[str, str]:
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"smtp.auth_file: cannot read {path}: {exc.strerror}") from None
    credentials = {}
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        user, sep, stored = line.strip().partition(":")
        if not sep or not stored.startswith("pbkdf2_sha256$"):
            raise ConfigError(f"smtp.auth_file: line {number} is not user:pbkdf2_sha256$… (use statusmail hash-password)")
        credentials[user] = stored
    return credentials


class Authenticator:
    """aiosmtpd authenticator over the credentials file (PLAIN and LOGIN)."""

    def __init__(self, path: str) -> None:
        self.credentials = load_credentials(path)

    def __call__(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        user = auth_data.login.decode("utf-8", "replace")
        stored = self.credentials.get(user)
        ok = stored is not None and verify_password(auth_data.password.decode("utf-8", "replace"), stored)
        if not ok:
            log.warning("SMTP AUTH failed for %r from %s", user, session.peer)
        return AuthResult(success=ok, handled=False)
