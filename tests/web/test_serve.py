"""`statusmail serve` itself with the web on: one process answers SMTP and HTTP, mails the
sign-in link through its own outbox worker, shows what was posted, and stops on SIGTERM."""

from __future__ import annotations

import signal
import smtplib
import socket
import time

import httpx

from tests.conftest import make_mail, outbox_messages
from tests.gateway.test_crash import free_port, start_server
from tests.web.conftest import LINK, web_config


def test_serve_answers_smtp_and_http_in_one_process_and_stops_on_sigterm(tmp_path, sqlite_url):
    web_port = free_port()
    config = web_config(tmp_path, sqlite_url, f"port = {web_port}")
    smtp_port = free_port()
    server = start_server(config, smtp_port)  # waits for SMTP; the web listener follows it
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", web_port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=30) as client:
            client.send_message(make_mail(body="Served by one process", subject="status"),
                                from_addr="alice@corp.example", to_addrs=["status@corp.example"])
        with httpx.Client(base_url=f"http://127.0.0.1:{web_port}", timeout=30) as http:
            assert http.get("/").headers["location"] == "/login"
            assert http.post("/login", data={"email": "alice@corp.example"}).status_code == 200
            from statusmail.config import load_settings

            settings = load_settings(str(config), environ={})
            for _ in range(200):  # serve's outbox worker delivers the link mail
                mails = outbox_messages(settings)
                if mails:
                    break
                time.sleep(0.05)
            [mail] = mails
            token = LINK.search(mail.get_body(("plain",)).get_content()).group(1)
            assert http.get(f"/login/{token}").status_code == 303
            assert "Served by one process" in http.get("/").text
        server.send_signal(signal.SIGTERM)
        assert server.wait(30) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
