"""The HTTP listener inside ``statusmail serve``: uvicorn on the SMTP listener's loop.

uvicorn's ``Server.serve`` would install its own SIGINT/SIGTERM handlers, which belong to
``serve``'s entry point; so the server is driven through its parts: ``startup`` on a
socket bound here (port 0 in tests), ``main_loop`` as a task (it refreshes the Date
header and watches ``should_exit``), ``shutdown`` on stop, which lets requests in
progress finish.

No access log: sign-in links, feed and unsubscribe tokens are in request paths, and
tokens are never logged. ``proxy_headers`` stays off: ``web.trusted_proxies`` must see
the TCP peer, not an address a client wrote into X-Forwarded-For.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable

import uvicorn
from sqlalchemy import Engine

from statusmail.config import Settings
from statusmail.web.app import create_app

log = logging.getLogger(__name__)

SHUTDOWN_SECONDS = 10


class WebServer:
    def __init__(self, settings: Settings, engine: Engine, on_queued: Callable[[], None] = lambda: None) -> None:
        self.settings = settings
        self.config = uvicorn.Config(create_app(settings, engine, on_queued), lifespan="off", access_log=False,
                                     proxy_headers=False, server_header=False, log_config=None,
                                     timeout_graceful_shutdown=SHUTDOWN_SECONDS)
        self.server = uvicorn.Server(self.config)
        self.port = 0
        self.task: asyncio.Task[None] | None = None

    async def start(self, port: int | None = None) -> None:
        host = self.settings.web.host
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.socket = socket.socket(family, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind((host, self.settings.web.port if port is None else port))
        self.socket.listen(1024)
        self.socket.setblocking(False)
        self.port = self.socket.getsockname()[1]
        self.config.load()
        self.server.lifespan = self.config.lifespan_class(self.config)
        await self.server.startup(sockets=[self.socket])
        self.task = asyncio.create_task(self.server.main_loop(), name="web")
        log.info("HTTP listening on %s:%d (%s)", host, self.port, self.settings.web_url)

    async def stop(self) -> None:
        self.server.should_exit = True
        if self.task is not None:
            await asyncio.gather(self.task, return_exceptions=True)
        await self.server.shutdown(sockets=[self.socket])
