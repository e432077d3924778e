"""A running gateway with the web on: SMTP and HTTP on ephemeral loopback ports of one
event loop, mail written to the test's Maildir, and helpers to post, hide and sign in."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import Session, col, select

from statusmail.config import load_settings
from statusmail.store.db import transaction
from statusmail.store.models import Post
from statusmail.store.users import register_user
from tests.conftest import RunningGateway, initialised_engine, make_mail, outbox_messages, write_config

LINK = re.compile(r"https?://\S+/login/([a-z2-7]+)")


class WebGateway(RunningGateway):
    def __init__(self, settings: Any, engine: Any) -> None:
        super().__init__(settings, engine)  # web.enabled: HTTP on an ephemeral port too
        self.web_port = self.gateway.web.port
        self.url = f"http://127.0.0.1:{self.web_port}"
        self.clients: list[httpx.Client] = []

    def client(self, **kwargs: Any) -> httpx.Client:
        """An HTTP client that does not follow redirects; closed when the gateway stops."""
        self.clients.append(httpx.Client(base_url=self.url, follow_redirects=False, timeout=30, **kwargs))
        return self.clients[-1]

    def stop(self) -> None:
        for client in self.clients:
            client.close()
        super().stop()

    def post(self, body: str, subject: str = "status", sender: str = "Alice Anders <alice@corp.example>",
             **headers: str) -> Post:
        mail = make_mail(body=body, subject=subject, sender=sender, **headers)
        code, reply = self.send(mail, mail_from=sender.rpartition("<")[2].rstrip(">"))
        assert code == 250, reply
        with Session(self.engine) as session:
            return session.exec(select(Post).order_by(col(Post.id).desc())).first()  # type: ignore[return-value]

    def reply(self, parent: Post, body: str, sender: str = "Bob Berg <bob@corp.example>") -> Post:
        return self.post(body, subject="Re: x", sender=sender, In_Reply_To=parent.message_id)

    def sign_in_link(self, client: httpx.Client, email: str) -> str:
        """POST /login, deliver the outbox, and find the link in the newest mail to ``email``."""
        answer = client.post("/login", data={"email": email})
        assert answer.status_code == 200, answer.text
        self.flush_outbox()
        mails = [m for m in outbox_messages(self.settings) if m["To"].addresses[0].addr_spec == email
                 and m["Subject"].startswith("Sign in")]
        assert mails, f"no sign-in mail to {email}"
        text = mails[-1].get_body(("plain",)).get_content()
        match = LINK.search(text)
        assert match, text
        return f"/login/{match.group(1)}"

    def signed_in(self, email: str = "carol@corp.example") -> httpx.Client:
        client = self.client()
        answer = client.get(self.sign_in_link(client, email))
        assert answer.status_code == 303 and answer.headers["location"] == "/"
        return client


def web_config(tmp_path: Path, database_url: str, web: str = "") -> Path:
    config = write_config(tmp_path, database_url)
    config.write_text(config.read_text() + f"""
[web]
enabled = true
{web}
""")
    return config


@pytest.fixture
def web_with(tmp_path: Path, database_url: str, kept_running: Any) -> Any:
    """Start a gateway serving the web with these [web] lines and these users; stopped after the test."""
    def start(web: str = "", users: tuple[str, ...] = ("alice", "bob", "carol")) -> WebGateway:
        settings = load_settings(str(web_config(tmp_path, database_url, web)), environ={})
        engine = initialised_engine(settings.gateway.database_url)
        with transaction(engine) as session:
            for name in users:
                register_user(session, f"{name}@corp.example", name=f"{name.title()} Example")
        return kept_running(WebGateway(settings, engine))
    return start


@pytest.fixture
def web(web_with: Any) -> Any:
    return web_with()
