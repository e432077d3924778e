"""Reply tokens are secrets: they never reach a log line in clear (DESIGN decision 5)."""

from __future__ import annotations

import logging

from statusmail.logs import redact, setup_logging


def test_redact_hides_reply_tokens_and_bounce_keys_but_keeps_addresses_readable():
    text = "reply from bob@corp.example to status+k5dq3xw2hz7yplm4ab6cde2fgh@corp.example, bounce status+bounce-1a2b3c4d@x"
    assert redact(text) == ("reply from bob@corp.example to status+[redacted]@corp.example, "
                            "bounce status+[redacted]@x")


def test_log_lines_carry_no_token_whatever_the_arguments(capsys):
    setup_logging(logging.INFO)
    try:
        logging.getLogger("statusmail.test").warning("refused mail to %s", "status+k5dq3xw2hz7yplm4ab6cde2fgh@corp.example")
    finally:
        logging.getLogger().handlers.clear()
    err = capsys.readouterr().err
    assert "status+[redacted]@corp.example" in err and "k5dq3xw2hz7" not in err


def test_the_log_command_shows_recipient_tokens_redacted(gateway, cli):
    gateway.send(b"From: alice@corp.example\r\nSubject: x\r\n\r\nhi\r\n", to="status+k5dq3xw2hz7yplm4ab6cde2fgh@corp.example")
    output = cli("log", "--json").stdout
    assert "k5dq3xw2hz7" not in output and "+[redacted]" in output
