"""STARTTLS and SMTP AUTH on the listener, with a throwaway certificate (SPEC §5)."""

from __future__ import annotations

import shutil
import smtplib
import ssl
import subprocess

import pytest

from statusmail.config import load_settings
from statusmail.gateway.smtpauth import hash_password, verify_password
from tests.conftest import make_mail, write_config

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is needed to make a test certificate")


@pytest.fixture
def certificate(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-days", "1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


def client_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the throwaway certificate is self-signed
    return context


def test_require_tls_refuses_mail_until_starttls(gateway_with, certificate):
    cert, key = certificate
    running = gateway_with(smtp=f'tls_cert = "{cert}"\ntls_key = "{key}"\nrequire_tls = true')
    with running.smtp() as client:
        client.ehlo()
        assert client.has_extn("starttls")
        assert client.mail("alice@corp.example")[0] == 530
        client.starttls(context=client_context())
        client.ehlo()
        assert client.mail("alice@corp.example")[0] == 250
        assert client.rcpt("status@corp.example")[0] == 250
        assert client.data(make_mail().as_bytes().replace(b"\n", b"\r\n")) == (250, b"2.0.0 OK: posted")
    from sqlmodel import Session, select

    from statusmail.store.models import InboundLog
    with Session(running.engine) as session:
        assert session.exec(select(InboundLog.reason).where(InboundLog.outcome == "refused")).all() == ["tls_required"]


def test_auth_is_offered_only_over_tls_and_checks_the_hashed_password(gateway_with, tmp_path, certificate):
    cert, key = certificate
    auth_file = tmp_path / "smtp-users"
    auth_file.write_text(f"mta:{hash_password('s3cret', iterations=1000)}\n")
    running = gateway_with(smtp=f'tls_cert = "{cert}"\ntls_key = "{key}"\nauth_file = "{auth_file}"\n'
                                "require_auth = true")
    with running.smtp() as client:
        client.ehlo()
        assert not client.has_extn("auth")
        client.starttls(context=client_context())
        client.ehlo()
        assert client.has_extn("auth")
        assert client.mail("alice@corp.example")[0] == 530  # authentication required
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.login("mta", "wrong")
        assert client.login("mta", "s3cret")[0] == 235
        assert client.mail("alice@corp.example")[0] == 250


def test_password_hashes_verify_only_the_right_password():
    stored = hash_password("correct horse", iterations=1000)
    assert verify_password("correct horse", stored) and not verify_password("Correct horse", stored)
    assert not verify_password("x", "plain-text-password")


def test_auth_without_tls_is_a_configuration_error(tmp_path, sqlite_url):
    from statusmail.errors import ConfigError

    config = write_config(tmp_path, sqlite_url, smtp='auth_file = "x"')
    with pytest.raises(ConfigError, match="smtp.auth_file"):
        load_settings(str(config), environ={})
