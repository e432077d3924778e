"""The read-only web (SPEC §8) as a Starlette application.

Every page is one trip to a worker thread: identify the reader, run the page's queries
and render its template in one transaction, so the event loop that also serves SMTP
only ever parses requests and writes responses. Without a reader every page redirects
to ``/login`` (303). Nothing here posts or moderates; the only writes are sign-in
requests, sessions, the reader's own reply tokens and a digest turned off.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from sqlalchemy import Engine, update
from sqlmodel import Session, col
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from statusmail.config import Settings
from statusmail.errors import StoreUnavailable
from statusmail.outbound.templates import render_html
from statusmail.signing import FEED, UNSUBSCRIBE, feed_url, token_user
from statusmail.store.db import transaction
from statusmail.store.models import User
from statusmail.store.users import find_user
from statusmail.web import atom, auth, queries

log = logging.getLogger(__name__)

STYLE = (Path(__file__).parents[1] / "templates" / "web" / "style.css").read_bytes()
SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
                                 b"frame-ancestors 'none'; base-uri 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),  # sign-in and feed tokens live in URLs
    (b"x-frame-options", b"DENY"),
]


class SecurityHeaders:
    """Adds :data:`SECURITY_HEADERS` to every response, and ``Cache-Control: no-store``
    where the response did not choose (pages are per reader)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(name.lower() == b"cache-control" for name, _ in headers):
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers + SECURITY_HEADERS
            await send(message)

        await self.app(scope, receive, send_with_headers)


def int_param(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() and len(value) < 19 else None


class Web:
    def __init__(self, settings: Settings, engine: Engine, on_queued: Callable[[], None] = lambda: None) -> None:
        self.settings, self.engine, self.on_queued = settings, engine, on_queued
        self.secure = settings.web_url.startswith("https://")

    # --- plumbing ---------------------------------------------------------------------

    def peer(self, request: Request) -> str:
        return request.client.host if request.client else ""

    def reader(self, session: Session, request: Request) -> User | None:
        if self.settings.web.auth == "header":
            return auth.header_user(session, self.settings, self.peer(request),
                                    request.headers.get(self.settings.web.header_name))
        return auth.session_user(session, request.cookies.get(auth.COOKIE, ""))

    def context(self, request: Request, reader: User | None, title: str, **extra: Any) -> dict[str, Any]:
        secret = request.cookies.get(auth.COOKIE, "")
        csrf = auth.csrf_token(self.settings, secret) if reader is not None and secret else ""
        return {"site_name": self.settings.gateway.site_name, "status_address": self.settings.gateway.address,
                "request_address": self.settings.gateway.request_address, "reader": reader, "csrf": csrf,
                "title": title, "q": "", "active": "", **extra}

    def html(self, name: str, context: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
             ) -> HTMLResponse:
        return HTMLResponse(render_html(f"web/{name}", context), status_code=status, headers=headers)

    def message(self, request: Request, reader: User | None, title: str, lines: list[str], status: int = 200,
                back: dict[str, str] | None = None, headers: dict[str, str] | None = None) -> HTMLResponse:
        return self.html("message", self.context(request, reader, title, lines=lines, back=back), status, headers)

    async def in_thread(self, request: Request, work: Callable[[Session], Response]) -> Response:
        def run() -> Response:
            with transaction(self.engine) as session:
                return work(session)
        try:
            return await run_in_threadpool(run)
        except StoreUnavailable as exc:
            log.warning("web: database unavailable: %s", exc)
            return self.message(request, None, "Temporarily unavailable",
                                ["The database cannot be reached just now. Try again in a minute."], 503,
                                headers={"Retry-After": "60"})

    async def page(self, request: Request, work: Callable[[Session, User], Response]) -> Response:
        """A page for signed-in readers only; everyone else goes to /login."""
        def guarded(session: Session) -> Response:
            reader = self.reader(session, request)
            if reader is None:
                return RedirectResponse("/login", status_code=303)
            return work(session, reader)
        return await self.in_thread(request, guarded)

    def listing(self, request: Request, session: Session, reader: User, page: queries.Page, *, title: str,
                empty: str, active: str = "", intro: str = "", atom_url: str = "", q: str = "") -> Response:
        views = queries.post_views(session, self.settings, reader, page.posts)
        next_url = ""
        if page.next_before is not None:
            params = {"q": q} if q else {}
            next_url = f"{request.url.path}?{urlencode({**params, 'before': page.next_before})}"
        return self.html("feed", self.context(request, reader, title, views=views, next_url=next_url, empty=empty,
                                              active=active, intro=intro, atom_url=atom_url, q=q))

    def not_found(self, request: Request, reader: User | None, what: str = "page") -> HTMLResponse:
        return self.message(request, reader, "Not found", [f"There is no such {what}, or it is not shown here."], 404,
                            back={"url": "/", "label": "Back to the feed"})

    # --- pages ------------------------------------------------------------------------

    async def home(self, request: Request) -> Response:
        before = int_param(request.query_params.get("before"))

        def work(session: Session, reader: User) -> Response:
            return self.listing(request, session, reader, queries.feed(session, before), title="Latest updates",
                                empty="No updates yet.", active="feed",
                                atom_url=feed_url(self.settings, reader.id) if reader.id is not None else "")
        return await self.page(request, work)

    async def thread(self, request: Request) -> Response:
        post_id = int(request.path_params["post_id"])

        def work(session: Session, reader: User) -> Response:
            posts = queries.thread(session, post_id)
            if not posts:
                return self.not_found(request, reader, "post")
            views = queries.post_views(session, self.settings, reader, posts)
            return self.html("thread", self.context(request, reader, views[0]["thread_subject"] or "Thread",
                                                    views=views))
        return await self.page(request, work)

    async def tag(self, request: Request) -> Response:
        tag = request.path_params["tag"].lower().lstrip("#")
        before = int_param(request.query_params.get("before"))

        def work(session: Session, reader: User) -> Response:
            return self.listing(request, session, reader, queries.tagged(session, tag, before), title=f"#{tag}",
                                empty=f"No updates tagged #{tag}.",
                                atom_url=feed_url(self.settings, reader.id, tag) if reader.id is not None else "")
        return await self.page(request, work)

    async def person(self, request: Request) -> Response:
        address = request.path_params["address"]
        before = int_param(request.query_params.get("before"))

        def work(session: Session, reader: User) -> Response:
            person = find_user(session, address)
            if person is None:
                return self.not_found(request, reader, "person")
            title = person.name or person.email
            return self.listing(request, session, reader, queries.by_author(session, person, before), title=title,
                                empty="No updates yet.", intro=f"Updates by {person.email}",
                                active="me" if person.id == reader.id else "")
        return await self.page(request, work)

    async def search(self, request: Request) -> Response:
        q = request.query_params.get("q", "")[:200]
        before = int_param(request.query_params.get("before"))

        def work(session: Session, reader: User) -> Response:
            if not queries.search_words(q):
                return self.listing(request, session, reader, queries.Page([], None), title="Search",
                                    empty="Type words to find the updates that contain all of them.", q=q)
            return self.listing(request, session, reader, queries.search(session, q, before),
                                title=f"Search: {q}", empty="No visible update contains all of these words.", q=q)
        return await self.page(request, work)

    async def style(self, _request: Request) -> Response:
        return Response(STYLE, media_type="text/css", headers={"Cache-Control": "public, max-age=3600"})

    # --- sign-in ----------------------------------------------------------------------

    async def login_form(self, request: Request) -> Response:
        def work(session: Session) -> Response:
            if self.reader(session, request) is not None:
                return RedirectResponse("/", status_code=303)
            return self.html("login", self.context(request, None, "Sign in", header_auth=self.settings.web.auth == "header",
                                                   minutes=auth.LINK_MINUTES, email=""))
        return await self.in_thread(request, work)

    async def login_request(self, request: Request) -> Response:
        if self.settings.web.auth != "link":
            return self.message(request, None, "Sign in", ["Sign-in is through the company's single sign-on."], 404)
        form = await request.form(max_files=0, max_fields=5)
        email = str(form.get("email", "")).strip()[:320]
        client = self.peer(request)

        def work(session: Session) -> Response:
            answer = auth.request_link(session, self.settings, email, client)
            if answer.limited:
                return self.message(request, None, "Too many sign-in requests",
                                    ["Too many sign-in links were asked for from here or for this address. "
                                     "Try again in an hour."], 429, headers={"Retry-After": "3600"})
            return self.message(request, None, "Check your mail", [
                f"If {email} belongs to someone here, a sign-in link is on its way to it.",
                f"The link works once, within {auth.LINK_MINUTES} minutes."])
        response = await self.in_thread(request, work)
        self.on_queued()
        return response

    async def login_link(self, request: Request) -> Response:
        token = request.path_params["token"]

        def work(session: Session) -> Response:
            used = auth.use_link(session, token)
            if used is None:
                return self.message(request, None, "This link no longer works",
                                    ["Sign-in links work once, within 15 minutes. Ask for a new one."], 400,
                                    back={"url": "/login", "label": "Sign in"})
            _user, secret = used
            response = RedirectResponse("/", status_code=303)
            response.set_cookie(auth.COOKIE, secret, max_age=auth.SESSION_DAYS * 86400, path="/", httponly=True,
                                samesite="lax", secure=self.secure)
            return response
        return await self.in_thread(request, work)

    async def logout(self, request: Request) -> Response:
        form = await request.form(max_files=0, max_fields=5)
        secret = request.cookies.get(auth.COOKIE, "")

        def work(session: Session) -> Response:
            reader = self.reader(session, request)
            if reader is None or not secret:
                return RedirectResponse("/login", status_code=303)
            if not auth.csrf_ok(self.settings, secret, str(form.get("csrf", ""))):
                return self.message(request, reader, "Not signed out",
                                    ["The form was too old or did not come from this site. Try again."], 403,
                                    back={"url": "/", "label": "Back to the feed"})
            auth.end_session(session, secret)
            response = RedirectResponse("/login", status_code=303)
            response.delete_cookie(auth.COOKIE, path="/", httponly=True, samesite="lax", secure=self.secure)
            return response
        return await self.in_thread(request, work)

    # --- Atom -------------------------------------------------------------------------

    async def atom_feed(self, request: Request) -> Response:
        tag = request.path_params.get("tag", "").lower().lstrip("#")
        user_id = token_user(self.settings, FEED, request.query_params.get("token", ""))

        def work(session: Session) -> Response:
            reader = auth.may_read(session.get(User, user_id)) if user_id is not None else None
            if reader is None:
                return Response("unknown feed\n", status_code=404, media_type="text/plain")
            page = queries.tagged(session, tag, limit=atom.ENTRIES) if tag else queries.feed(session, limit=atom.ENTRIES)
            views = queries.post_views(session, self.settings, reader, page.posts, reply_links=False)
            updated = views[0]["created_iso"] if views else "1970-01-01T00:00:00Z"
            path = f"/tags/{quote(tag, safe='')}.atom" if tag else "/feed.atom"
            title = f"{self.settings.gateway.site_name}: #{tag}" if tag else self.settings.gateway.site_name
            body = atom.render(self.settings, title, path, views, updated)
            return Response(body, media_type="application/atom+xml; charset=utf-8",
                            headers={"Cache-Control": "private, max-age=60"})
        return await self.in_thread(request, work)

    # --- one-click unsubscribe (RFC 8058) ---------------------------------------------

    async def unsubscribe(self, request: Request) -> Response:
        token = request.path_params["token"]
        user_id = token_user(self.settings, UNSUBSCRIBE, token)
        posted = request.method == "POST"
        if posted:
            await request.form(max_files=0, max_fields=5)  # List-Unsubscribe=One-Click; the token decides

        def work(session: Session) -> Response:
            user = session.get(User, user_id) if user_id is not None else None
            if user is None:
                return self.not_found(request, None, "subscription")
            if posted:
                session.execute(update(User).where(col(User.id) == user.id).values(digest="off"))
                log.info("web: digest turned off by one-click unsubscribe (user %s)", user.id)
            return self.html("unsubscribe", self.context(request, None, "Digest off" if posted else "Unsubscribe",
                                                         done=posted, email=user.email,
                                                         action=f"/unsubscribe/{token}"))
        return await self.in_thread(request, work)


def create_app(settings: Settings, engine: Engine, on_queued: Callable[[], None] = lambda: None) -> ASGIApp:
    web = Web(settings, engine, on_queued)
    routes = [
        Route("/", web.home),
        Route("/posts/{post_id:int}", web.thread),
        Route("/tags/{tag}.atom", web.atom_feed),
        Route("/tags/{tag}", web.tag),
        Route("/people/{address}", web.person),
        Route("/search", web.search),
        Route("/feed.atom", web.atom_feed),
        Route("/login", web.login_form, methods=["GET"]),
        Route("/login", web.login_request, methods=["POST"]),
        Route("/login/{token}", web.login_link, methods=["GET"]),
        Route("/logout", web.logout, methods=["POST"]),
        Route("/unsubscribe/{token}", web.unsubscribe, methods=["GET", "POST"]),
        Route("/static/style.css", web.style),
    ]
    return SecurityHeaders(Starlette(routes=routes))

