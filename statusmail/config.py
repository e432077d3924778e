"""Configuration: one TOML file, environment overrides, frozen settings.

Where the file comes from (SPEC §2): ``--config PATH``, else ``$STATUSMAIL_CONFIG``, else
``./statusmail.toml`` when it exists, else the built-in defaults. Every key can be
overridden by ``STATUSMAIL_<SECTION>_<KEY>``. Unknown keys and invalid values raise
:class:`ConfigError` with a message that names the key, e.g.
``policy.max_chars: expected an integer, got 'abc'``.

The defaults below are the single source of truth: the README's configuration reference
is checked against them by a test.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import tomllib
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from statusmail.errors import ConfigError

ENV_PREFIX = "STATUSMAIL_"
DEFAULT_FILE = Path("statusmail.toml")


@dataclass(frozen=True)
class GatewaySettings:
    address: str = "status@localhost"
    request_address: str = "status-request@localhost"
    site_name: str = "Status"
    database_url: str = "sqlite:///var/statusmail.db"
    secret_key_file: str = "var/secret.key"
    keep_raw_days: int = 90
    reply_token_days: int = 0  # 0: reply addresses never expire


@dataclass(frozen=True)
class SmtpSettings:
    host: str = "127.0.0.1"
    port: int = 8025
    lmtp: bool = False
    tls_cert: str = ""
    tls_key: str = ""
    require_tls: bool = False
    auth_file: str = ""
    require_auth: bool = False
    max_message_bytes: int = 10485760


@dataclass(frozen=True)
class ImapSettings:
    enabled: bool = False
    host: str = ""
    port: int = 993
    ssl: bool = True
    username: str = ""
    password_file: str = ""
    folder: str = "INBOX"
    processed_folder: str = "statusmail/processed"
    failed_folder: str = "statusmail/failed"
    idle: bool = True
    poll_seconds: int = 60


@dataclass(frozen=True)
class OutboundSettings:
    transport: str = "maildir:var/outbox"
    username: str = ""
    password_file: str = ""
    from_name: str = "Status"


@dataclass(frozen=True)
class PolicySettings:
    max_chars: int = 280
    allowed_domains: tuple[str, ...] = ("localhost",)
    trusted_networks: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    sender_auth: str = "network"
    authserv_id: str = ""
    authres_without_id: bool = False
    auto_register: bool = True
    hold_new_users: bool = False
    hold_patterns: tuple[str, ...] = ()
    posts_per_hour: int = 30
    auto_answers_per_hour: int = 5
    max_mentions: int = 20  # beyond it the post is held (#16)
    thread_replies_per_hour: int = 10  # per sender and thread; beyond it replies are held (#16)
    recipient_delimiter: str = "+"  # alice+x@ is alice@ for identity, bans and limits (#16)


@dataclass(frozen=True)
class DigestSettings:
    default_frequency: str = "daily"
    hour: int = 8
    weekly_day: str = "monday"
    default_timezone: str = "UTC"


@dataclass(frozen=True)
class WebSettings:
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 8080
    base_url: str = ""  # public URL, e.g. https://status.corp.example
    auth: str = "link"  # "link" | "header"
    header_name: str = "X-Remote-User"
    trusted_proxies: tuple[str, ...] = ("127.0.0.1/32", "::1/128")


@dataclass(frozen=True)
class CheckinsSettings:
    """SPEC §7: the daily question, the team round-up, the leader's week."""

    enabled: bool = False
    question: str = "What did you get done today?"
    days: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri")
    hour: int = 16
    roundup_hour: int = 9
    tag: str = "checkin"
    leader_rollup: bool = True


@dataclass(frozen=True)
class Settings:
    gateway: GatewaySettings = GatewaySettings()
    smtp: SmtpSettings = SmtpSettings()
    imap: ImapSettings = ImapSettings()
    outbound: OutboundSettings = OutboundSettings()
    policy: PolicySettings = PolicySettings()
    digest: DigestSettings = DigestSettings()
    web: WebSettings = WebSettings()
    checkins: CheckinsSettings = CheckinsSettings()
    source: str = "built-in defaults"

    @property
    def domain(self) -> str:
        """The gateway's mail domain: where reply, bounce and Message-ID addresses live."""
        return self.gateway.address.rpartition("@")[2]

    @property
    def status_local_part(self) -> str:
        return self.gateway.address.rpartition("@")[0]

    @property
    def web_url(self) -> str:
        """Where readers reach the web: ``web.base_url``, else the listener's own address."""
        if self.web.base_url:
            return self.web.base_url.rstrip("/")
        host = f"[{self.web.host}]" if ":" in self.web.host else self.web.host
        return f"http://{host}:{self.web.port}"


SECTIONS: dict[str, type] = {
    "gateway": GatewaySettings,
    "smtp": SmtpSettings,
    "imap": ImapSettings,
    "outbound": OutboundSettings,
    "policy": PolicySettings,
    "digest": DigestSettings,
    "web": WebSettings,
    "checkins": CheckinsSettings,
}

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # checkins.days
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
FREQUENCIES = ("daily", "weekly", "off")
SENDER_AUTH_MODES = ("network", "authres", "dkim")
WEB_AUTH_MODES = ("link", "header")
TRANSPORT_SCHEMES = ("maildir:", "smtp://", "smtp+starttls://", "smtps://", "memory:")


def find_config_file(explicit: str | None) -> Path | None:
    """The file SPEC §2 says to read, or None for the built-in defaults."""
    if explicit:
        return Path(explicit)
    from_env = os.environ.get("STATUSMAIL_CONFIG")
    if from_env:
        return Path(from_env)
    return DEFAULT_FILE if DEFAULT_FILE.exists() else None


def load_settings(path: str | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read the configuration file (if any), apply environment overrides, validate."""
    environ = os.environ if environ is None else environ
    config_file = find_config_file(path)
    raw: dict[str, Any] = {}
    if config_file is not None:
        try:
            raw = tomllib.loads(config_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{config_file}: no such configuration file") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{config_file}: not valid TOML: {exc}") from None
    for section, value in raw.items():
        if section not in SECTIONS:
            raise ConfigError(f"{section}: unknown section")
        if not isinstance(value, dict):
            raise ConfigError(f"{section}: expected a table")
    sections = {}
    for name, cls in SECTIONS.items():
        values = dict(raw.get(name, {}))
        known = {f.name: f for f in fields(cls)}
        for key in values:
            if key not in known:
                raise ConfigError(f"{name}.{key}: unknown key")
        env_section = f"{ENV_PREFIX}{name.upper()}_"
        for env_name in environ:
            # A mistyped override (STATUSMAIL_POLICY_MAX_CHAR) is an unknown key, as it is
            # in the file; not silently the default (SPEC §2).
            key = env_name[len(env_section):].lower()
            if env_name.startswith(env_section) and key not in known:
                raise ConfigError(f"{name}.{key}: unknown key (from {env_name})")
        for key in known:
            env_name = f"{env_section}{key.upper()}"
            if env_name in environ:
                values[key] = parse_env_value(f"{name}.{key}", environ[env_name], known[key].type)
        converted = {key: coerce(f"{name}.{key}", value, known[key].type) for key, value in values.items()}
        sections[name] = cls(**converted)
    settings = Settings(**sections, source=str(config_file) if config_file else "built-in defaults")
    validate(settings)
    return settings


def parse_env_value(key: str, text: str, type_name: Any) -> Any:
    """Environment values are strings; lists may be JSON arrays or comma-separated."""
    kind = str(type_name)
    if "tuple" in kind:
        text = text.strip()
        if text.startswith("["):
            try:
                return json.loads(text)
            except json.JSONDecodeError:
                raise ConfigError(f"{key}: expected a JSON list, got {text!r}") from None
        return [item.strip() for item in text.split(",") if item.strip()]
    if kind == "bool":
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{key}: expected true or false, got {text!r}")
    if kind == "int":
        try:
            return int(text.strip())
        except ValueError:
            raise ConfigError(f"{key}: expected an integer, got {text!r}") from None
    return text


def coerce(key: str, value: Any, type_name: Any) -> Any:
    """Check a TOML value against the field's type, converting lists to tuples."""
    kind = str(type_name)
    if "tuple" in kind:
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{key}: expected a list of strings, got {value!r}")
        return tuple(value)
    if kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if not isinstance(value, str):
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    return value


def validate(settings: Settings) -> None:
    """Rules a type cannot express. Each message names its key."""
    for key in ("address", "request_address"):
        value = getattr(settings.gateway, key)
        local, _, domain = value.rpartition("@")
        if not local or not domain or "+" in local or any(c.isspace() for c in value):
            raise ConfigError(f"gateway.{key}: expected a plain address like status@corp.example, got {value!r}")
    if settings.gateway.request_address.lower() == settings.gateway.address.lower():
        raise ConfigError("gateway.request_address: must differ from gateway.address")
    if not settings.gateway.database_url.startswith(("sqlite:", "postgresql")):
        raise ConfigError(f"gateway.database_url: expected sqlite:/// or postgresql+psycopg://, got {settings.gateway.database_url!r}")
    positive = {
        "gateway.keep_raw_days": settings.gateway.keep_raw_days,
        "smtp.max_message_bytes": settings.smtp.max_message_bytes,
        "policy.max_chars": settings.policy.max_chars,
        "policy.posts_per_hour": settings.policy.posts_per_hour,
        "policy.auto_answers_per_hour": settings.policy.auto_answers_per_hour,
        "policy.max_mentions": settings.policy.max_mentions,
        "policy.thread_replies_per_hour": settings.policy.thread_replies_per_hour,
        "imap.poll_seconds": settings.imap.poll_seconds,
    }
    for key, value in positive.items():
        if value < 1:
            raise ConfigError(f"{key}: expected a positive integer, got {value}")
    if settings.gateway.reply_token_days < 0:
        raise ConfigError(f"gateway.reply_token_days: expected 0 (never) or a number of days, got {settings.gateway.reply_token_days}")
    for key, port in (("smtp.port", settings.smtp.port), ("imap.port", settings.imap.port),
                      ("web.port", settings.web.port)):
        if not 0 <= port <= 65535:
            raise ConfigError(f"{key}: expected a port number, got {port}")
    if bool(settings.smtp.tls_cert) != bool(settings.smtp.tls_key):
        raise ConfigError("smtp.tls_cert: tls_cert and tls_key go together")
    if settings.smtp.require_tls and not settings.smtp.tls_cert:
        raise ConfigError("smtp.require_tls: needs smtp.tls_cert and smtp.tls_key")
    if settings.smtp.auth_file and not settings.smtp.tls_cert:
        raise ConfigError("smtp.auth_file: SMTP AUTH is offered only over TLS; set smtp.tls_cert and smtp.tls_key")
    if settings.smtp.require_auth and not settings.smtp.auth_file:
        raise ConfigError("smtp.require_auth: needs smtp.auth_file")
    for network in settings.policy.trusted_networks:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise ConfigError(f"policy.trusted_networks: not a network: {network!r}") from None
    if len(settings.policy.recipient_delimiter) > 1 or settings.policy.recipient_delimiter.isalnum():
        raise ConfigError(f"policy.recipient_delimiter: expected one character like \"+\" or \"\", got {settings.policy.recipient_delimiter!r}")
    for pattern in settings.policy.hold_patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ConfigError(f"policy.hold_patterns: bad regex {pattern!r}: {exc}") from None
    if settings.policy.sender_auth not in SENDER_AUTH_MODES:
        raise ConfigError(f"policy.sender_auth: expected one of {', '.join(SENDER_AUTH_MODES)}, got {settings.policy.sender_auth!r}")
    if settings.policy.sender_auth == "authres" and not (settings.policy.authserv_id or settings.policy.authres_without_id):
        raise ConfigError("policy.authserv_id: required when sender_auth = \"authres\"")
    if not settings.outbound.transport.startswith(TRANSPORT_SCHEMES):
        raise ConfigError(f"outbound.transport: expected maildir:PATH or smtp://host:port, got {settings.outbound.transport!r}")
    if settings.digest.default_frequency not in FREQUENCIES:
        raise ConfigError(f"digest.default_frequency: expected daily, weekly or off, got {settings.digest.default_frequency!r}")
    if not 0 <= settings.digest.hour <= 23:
        raise ConfigError(f"digest.hour: expected 0 to 23, got {settings.digest.hour}")
    if settings.digest.weekly_day not in WEEKDAYS:
        raise ConfigError(f"digest.weekly_day: expected a weekday name, got {settings.digest.weekly_day!r}")
    if not is_timezone(settings.digest.default_timezone):
        raise ConfigError(f"digest.default_timezone: unknown timezone {settings.digest.default_timezone!r}")
    validate_checkins(settings.checkins)
    if settings.imap.enabled and not settings.imap.host:
        raise ConfigError("imap.host: required when imap.enabled = true")
    for key in ("processed_folder", "failed_folder"):
        # Moving a message into the folder it is read from would read it again forever.
        if folder_key(getattr(settings.imap, key)) == folder_key(settings.imap.folder):
            raise ConfigError(f"imap.{key}: must differ from imap.folder ({settings.imap.folder!r})")
    validate_web(settings.web)


def folder_key(name: str) -> str:
    """A folder name as the server compares it: INBOX in any case is INBOX (RFC 3501 §5.1)."""
    name = name.strip("/")
    return "INBOX" if name.upper() == "INBOX" else name


def validate_web(web: WebSettings) -> None:
    if web.auth not in WEB_AUTH_MODES:
        raise ConfigError(f"web.auth: expected one of {', '.join(WEB_AUTH_MODES)}, got {web.auth!r}")
    if web.base_url:
        scheme, _, rest = web.base_url.partition("://")
        if scheme not in ("http", "https") or not rest or any(c.isspace() for c in web.base_url) \
                or "?" in rest or "#" in rest:
            raise ConfigError(f"web.base_url: expected a URL like https://status.corp.example, got {web.base_url!r}")
    if not re.fullmatch(r"[A-Za-z0-9-]+", web.header_name):
        raise ConfigError(f"web.header_name: expected an HTTP header name, got {web.header_name!r}")
    for network in web.trusted_proxies:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise ConfigError(f"web.trusted_proxies: not a network: {network!r}") from None


def validate_checkins(checkins: CheckinsSettings) -> None:
    for day in checkins.days:
        if day not in DAY_NAMES:
            raise ConfigError(f"checkins.days: expected day names like {', '.join(DAY_NAMES)}, got {day!r}")
    if not checkins.days:
        raise ConfigError("checkins.days: needs at least one day")
    for key in ("hour", "roundup_hour"):
        value = getattr(checkins, key)
        if not 0 <= value <= 23:
            raise ConfigError(f"checkins.{key}: expected 0 to 23, got {value}")
    if not re.fullmatch(r"\w{1,100}", checkins.tag):
        raise ConfigError(f"checkins.tag: expected one word without '#', got {checkins.tag!r}")
    if not checkins.question.strip():
        raise ConfigError("checkins.question: must not be empty")


def is_timezone(name: str) -> bool:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True


def read_secret_file(key: str, path: str) -> str:
    """Passwords live in files so they never sit in the config or the environment."""
    if not path:
        return ""
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read {path}: {exc.strerror}") from None
