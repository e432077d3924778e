"""Configuration: file, environment overrides, and errors that name the key."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest

from statusmail.config import SECTIONS, load_settings
from statusmail.errors import ConfigError

README = Path(__file__).resolve().parents[2] / "README.md"


def test_defaults_apply_without_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = load_settings(None, environ={})
    assert settings.gateway.address == "status@localhost"
    assert settings.smtp.port == 8025 and settings.policy.max_chars == 280
    assert settings.source == "built-in defaults"


def test_environment_overrides_the_file(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('[policy]\nmax_chars = 100\nallowed_domains = ["a.example"]\n')
    settings = load_settings(str(config), environ={"STATUSMAIL_POLICY_MAX_CHARS": "140",
                                                   "STATUSMAIL_POLICY_ALLOWED_DOMAINS": "b.example, c.example",
                                                   "STATUSMAIL_SMTP_LMTP": "true"})
    assert settings.policy.max_chars == 140
    assert settings.policy.allowed_domains == ("b.example", "c.example")
    assert settings.smtp.lmtp is True


def test_statusmail_config_variable_names_the_file(tmp_path, monkeypatch):
    config = tmp_path / "elsewhere.toml"
    config.write_text('[gateway]\nsite_name = "Pulse"\n')
    monkeypatch.setenv("STATUSMAIL_CONFIG", str(config))
    assert load_settings(None).gateway.site_name == "Pulse"


@pytest.mark.parametrize(("text", "env", "message"), [
    ('[policy]\nmax_chars = "abc"\n', {}, "policy.max_chars: expected an integer, got 'abc'"),
    ("[policy]\nmax_chars = 10\n", {"STATUSMAIL_POLICY_MAX_CHARS": "abc"}, "policy.max_chars: expected an integer, got 'abc'"),
    ("[policy]\ncolour = 1\n", {}, "policy.colour: unknown key"),
    ("[nonsense]\nx = 1\n", {}, "nonsense: unknown section"),
    ("", {"STATUSMAIL_POLICY_MAX_CHAR": "100"}, "policy.max_char: unknown key (from STATUSMAIL_POLICY_MAX_CHAR)"),
    ('[policy]\nsender_auth = "trust-me"\n', {}, "policy.sender_auth: expected one of"),
    ('[policy]\nsender_auth = "authres"\n', {}, "policy.authserv_id: required"),
    ('[policy]\ntrusted_networks = ["not-a-net"]\n', {}, "policy.trusted_networks: not a network"),
    ('[digest]\ndefault_timezone = "Mars/Olympus"\n', {}, "digest.default_timezone: unknown timezone"),
    ("[digest]\nhour = 24\n", {}, "digest.hour: expected 0 to 23"),
    ("[smtp]\nlmtp = \"yes\"\n", {}, "smtp.lmtp: expected true or false"),
    ('[outbound]\ntransport = "carrier-pigeon:"\n', {}, "outbound.transport:"),
    ('[gateway]\naddress = "status+x@corp.example"\n', {}, "gateway.address:"),
    ("[policy\n", {}, "not valid TOML"),
    # Moving mail into the folder it is read from would read it again forever (#21).
    ('[imap]\nprocessed_folder = "INBOX"\n', {}, "imap.processed_folder: must differ from imap.folder"),
    ('[imap]\nfolder = "Status"\nfailed_folder = "Status/"\n', {}, "imap.failed_folder: must differ"),
    ('[imap]\nprocessed_folder = "inbox"\n', {}, "imap.processed_folder: must differ"),
])
def test_a_bad_value_is_an_error_naming_the_key(tmp_path, text, env, message):
    config = tmp_path / "c.toml"
    config.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_settings(str(config), environ=env)
    assert message in str(caught.value)


def test_environment_variables_of_no_section_are_not_keys(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # STATUSMAIL_CONFIG names the file; STATUSMAIL_TEST_* belong to the test suite.
    environ = {"STATUSMAIL_CONFIG": "x.toml", "STATUSMAIL_TEST_DATABASE_URL": "sqlite://", "STATUSMAIL_WEB_PORT": "81"}
    assert load_settings(None, environ=environ).web.port == 81


def test_a_missing_config_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="no such configuration file"):
        load_settings(str(tmp_path / "missing.toml"), environ={})


def test_every_key_is_in_the_readme_configuration_reference():
    readme = README.read_text(encoding="utf-8")
    missing = []
    for section, cls in SECTIONS.items():
        heading = re.search(rf"^### `\[{section}\]`.*?(?=^### |\Z)", readme, re.MULTILINE | re.DOTALL)
        block = heading.group(0) if heading else ""
        missing += [f"{section}.{f.name}" for f in fields(cls) if f"| `{f.name}` |" not in block]
    assert missing == []
