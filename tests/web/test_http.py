"""The web over real HTTP: the gateway's own uvicorn listener on loopback, httpx as the
client. Redirects, cookies, sign-in links, CSRF, the SSO header, Atom, one-click
unsubscribe, and that nothing hidden is ever served."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from urllib.parse import urlsplit

import feedparser
from click.testing import CliRunner
from sqlalchemy import update
from sqlmodel import Session, select

from statusmail.cli import main
from statusmail.store.db import transaction
from statusmail.store.models import Outbox, SignInToken, User, utcnow
from tests.conftest import make_mail, outbox_messages

CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')


def cli(web, *args):
    result = CliRunner().invoke(main, ["--config", web.settings.source, *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_every_page_sends_a_reader_without_a_session_to_login(web):
    post = web.post("Shipped the export #billing")
    client = web.client()
    for path in ("/", f"/posts/{post.id}", "/tags/billing", "/people/alice@corp.example", "/search?q=export"):
        answer = client.get(path)
        assert (answer.status_code, answer.headers["location"]) == (303, "/login"), path
        assert "Shipped" not in answer.text
    assert client.get("/login").status_code == 200


def test_a_mailed_link_signs_in_once_with_an_httponly_lax_cookie(web):
    web.post("Shipped the export #billing")
    client = web.client()
    link = web.sign_in_link(client, "carol@corp.example")
    answer = client.get(link)
    assert (answer.status_code, answer.headers["location"]) == (303, "/")
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "secure" not in cookie  # plain http here
    page = client.get("/")
    assert page.status_code == 200 and "Shipped the export" in page.text and "Signed in as Carol Example" in page.text
    again = web.client().get(link)  # single use, also from another browser
    assert again.status_code == 400 and "set-cookie" not in again.headers


def test_the_login_page_answers_alike_for_strangers_and_mails_only_users(web):
    client = web.client()
    known = client.post("/login", data={"email": "carol@corp.example"})
    unknown = client.post("/login", data={"email": "mallory@corp.example"})
    assert known.status_code == unknown.status_code == 200
    assert known.text.replace("carol@corp.example", "X") == unknown.text.replace("mallory@corp.example", "X")
    web.flush_outbox()
    assert [m["To"] for m in outbox_messages(web.settings)] == ["Carol Example <carol@corp.example>"]
    [mail] = outbox_messages(web.settings)
    text = mail.get_body(("plain",)).get_content()
    assert "15 minutes" in text and f"{web.settings.web_url}/login/" in text  # web.port: the test's is 0


def test_a_link_older_than_15_minutes_does_not_sign_in(web):
    client = web.client()
    link = web.sign_in_link(client, "carol@corp.example")
    with transaction(web.engine) as session:
        session.execute(update(SignInToken).values(expires_at=utcnow() - timedelta(seconds=1)))
    answer = client.get(link)
    assert answer.status_code == 400 and "set-cookie" not in answer.headers
    assert client.get("/").headers["location"] == "/login"


def test_sign_in_requests_are_limited_per_address_and_per_client(web):
    client = web.client()
    answers = [client.post("/login", data={"email": "nobody@corp.example"}).status_code for _ in range(6)]
    assert answers == [200] * 5 + [429]
    answers = [client.post("/login", data={"email": f"n{i}@corp.example"}).status_code for i in range(16)]
    assert answers == [200] * 15 + [429]  # 20 per client and hour, the 5 above included
    assert client.post("/login", data={"email": "carol@corp.example"}).status_code == 429
    web.flush_outbox()
    assert outbox_messages(web.settings) == []


def test_under_https_the_cookie_is_secure(web_with):
    web = web_with('base_url = "https://status.corp.example"')
    client = web.client()
    link = web.sign_in_link(client, "carol@corp.example")
    [mail] = outbox_messages(web.settings)
    assert "https://status.corp.example/login/" in mail.get_body(("plain",)).get_content()
    answer = client.get(link)
    assert answer.status_code == 303 and "secure" in answer.headers["set-cookie"].lower()


def test_sign_out_is_a_post_with_a_csrf_token_and_ends_the_session(web):
    client = web.signed_in()
    cookie = client.cookies.get("statusmail_session")
    page = client.get("/")
    [token] = CSRF.findall(page.text)
    assert client.get("/logout").status_code == 405  # not by GET
    forged = client.post("/logout", data={"csrf": "0" * 64})
    assert forged.status_code == 403
    assert client.get("/").status_code == 200  # still signed in
    answer = client.post("/logout", data={"csrf": token})
    assert (answer.status_code, answer.headers["location"]) == (303, "/login")
    stolen = web.client(cookies={"statusmail_session": cookie})
    assert stolen.get("/").headers["location"] == "/login"  # the session is gone, not only the cookie


def test_header_auth_trusts_the_header_only_from_trusted_proxies(web_with):
    web = web_with('auth = "header"\ntrusted_proxies = ["127.0.0.1/32"]')
    web.post("Quarterly numbers are in")
    page = web.client().get("/", headers={"X-Remote-User": "carol@corp.example"})
    assert page.status_code == 200 and "Quarterly numbers" in page.text
    assert web.client().get("/").headers["location"] == "/login"
    stranger = web.client().get("/", headers={"X-Remote-User": "nobody@corp.example"})
    assert stranger.headers["location"] == "/login"


def test_header_auth_ignores_the_header_from_other_peers(web_with):
    web = web_with('auth = "header"\ntrusted_proxies = ["10.0.0.0/8"]')
    answer = web.client().get("/", headers={"X-Remote-User": "carol@corp.example"})
    assert (answer.status_code, answer.headers["location"]) == (303, "/login")


def test_pages_show_author_time_tags_replies_and_the_readers_own_reply_link(web):
    root = web.post("Shipped the export #billing")
    web.reply(root, "Nice work")
    client = web.signed_in()
    page = client.get("/").text
    assert "Alice Example" in page and "#billing" in page and "1 reply" in page
    assert re.search(r'<time datetime="\d{4}-\d\d-\d\dT[\d:.]+Z">', page)
    [mailto] = re.findall(r'href="(mailto:status\+[a-z2-7]{32}@corp\.example\?subject=[^"]+)"', page)
    assert "subject=Re%3A%20Shipped%20the%20export" in mailto
    # The address is carol's own: a reply from it lands in the thread as hers.
    address = mailto.removeprefix("mailto:").split("?")[0]
    code, _ = web.send(f"From: carol@corp.example\r\nTo: {address}\r\nSubject: Re: x\r\nMessage-ID: <c1@corp.example>"
                       "\r\n\r\nAgreed\r\n", mail_from="carol@corp.example", to=address)
    assert code == 250
    web.reply(root, "+1", sender="Alice Anders <alice@corp.example>")  # a like, not a post
    thread = client.get(f"/posts/{root.id}").text
    assert "Nice work" in thread and "Agreed" in thread and "2 replies" in thread and "1 like<" in thread
    shown = '<div class="body">Shipped the export'
    assert shown in client.get("/tags/billing").text
    assert shown in client.get("/people/alice@corp.example").text
    bobs = client.get("/people/bob@corp.example").text
    assert shown not in bobs and '<div class="body">Nice work' in bobs


def test_the_feed_is_paged_newest_first(web):
    for n in range(25):
        web.post(f"Update number {n:02d}")
    client = web.signed_in()
    first = client.get("/").text
    shown = re.findall(r"Update number (\d\d)", first)
    assert shown == [f"{n:02d}" for n in range(24, 4, -1)]
    [older] = re.findall(r'<a rel="next" href="([^"]+)"', first)
    second = client.get(older.replace("&amp;", "&")).text
    assert re.findall(r"Update number (\d\d)", second) == [f"{n:02d}" for n in range(4, -1, -1)]
    assert 'rel="next"' not in second


def test_search_finds_every_word_and_takes_any_input(web):
    web.post("Billing export shipped to finance")
    web.post("Export of the wiki postponed")
    client = web.signed_in()
    page = client.get("/search", params={"q": "export billing"}).text
    assert "Billing export shipped" in page and "wiki" not in page
    assert "wiki" in client.get("/search", params={"q": "EXPORT"}).text
    for n in range(22):
        web.post(f"Release note {n:02d} for the export")
    first = client.get("/search", params={"q": "export release"}).text
    assert re.findall(r"Release note (\d\d)", first) == [f"{n:02d}" for n in range(21, 1, -1)]
    [older] = re.findall(r'<a rel="next" href="([^"]+)"', first)
    second = client.get(older.replace("&amp;", "&")).text
    assert re.findall(r"Release note (\d\d)", second) == ["01", "00"] and 'rel="next"' not in second
    for hostile in ('"', "export*", "NEAR(a b)", "a OR", "'; drop table posts; --", "\u202e", "x" * 500):
        answer = client.get("/search", params={"q": hostile})
        assert answer.status_code == 200, hostile


def test_a_hidden_post_is_nowhere(web):
    hidden = web.post("Secret merger plans #deals", subject="status")
    kept = web.post("Public roadmap #deals")
    reply_in_hidden = web.reply(hidden, "Merger reply text")
    cli(web, "posts", "hide", str(hidden.id), "--reason", "confidential")
    client = web.signed_in()
    pages = [client.get(p).text for p in ("/", "/tags/deals", "/people/alice@corp.example",
                                          "/people/bob@corp.example", "/search?q=merger", f"/posts/{kept.id}")]
    assert all("Merger" not in p and "merger plans" not in p for p in pages)
    assert "Public roadmap" in pages[0]
    assert client.get(f"/posts/{hidden.id}").status_code == 404
    assert client.get(f"/posts/{reply_in_hidden.id}").status_code == 404
    user = json.loads(cli(web, "users", "show", "carol@corp.example", "--json"))
    for url in (user["feed_url"], user["feed_url"].replace("/feed.atom", "/tags/deals.atom")):
        text = web.client().get(url.removeprefix(web.settings.web_url)).text
        assert "Public roadmap" in text and "erger" not in text


def test_atom_feeds_are_valid_and_keep_their_entry_ids(web):
    web.post("Shipped the export #billing")
    web.post("Lunch at noon #social")
    user = json.loads(cli(web, "users", "show", "carol@corp.example", "--json"))
    url = urlsplit(user["feed_url"])
    assert (url.path, url.scheme + "://" + url.netloc) == ("/feed.atom", web.settings.web_url)
    client = web.client()  # a feed reader: no session, only the token
    answer = client.get(f"{url.path}?{url.query}")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("application/atom+xml")
    feed = feedparser.parse(answer.content)
    assert not feed.bozo, feed.bozo_exception
    assert feed.version == "atom10"
    assert [e.title for e in feed.entries] == ["Lunch at noon #social", "Shipped the export #billing"]
    assert all(e.id.startswith("tag:corp.example,") for e in feed.entries)
    assert feedparser.parse(client.get(f"{url.path}?{url.query}").content).entries[0].id == feed.entries[0].id
    assert feed.entries[1].tags[0].term == "billing" and feed.entries[1].author_detail.email == "alice@corp.example"
    tagged = feedparser.parse(client.get(f"/tags/billing.atom?{url.query}").content)
    assert not tagged.bozo and [e.id for e in tagged.entries] == [feed.entries[1].id]
    assert client.get("/feed.atom?token=1.aaaaaaaaaaaaaaaaaaaaaaaaaa").status_code == 404
    assert client.get("/feed.atom").status_code == 404


def test_digests_carry_one_click_unsubscribe_that_only_post_acts_on(web_with):
    web = web_with('base_url = "https://status.corp.example"')
    cli(web, "follows", "add", "carol@corp.example", "alice@corp.example")
    web.post("Shipped the export #billing")
    assert "1 digest(s) queued" in cli(web, "digest", "send", "--user", "carol@corp.example", "--now")
    web.flush_outbox()
    [digest] = [m for m in outbox_messages(web.settings) if "digest" in m["Subject"]]
    header = " ".join(str(digest["List-Unsubscribe"]).split())  # folded: it is long
    match = re.fullmatch(r"<(https://status\.corp\.example/unsubscribe/[^>]+)>, <mailto:status-request@corp\.example"
                         r"\?subject=unsubscribe>", header)
    assert match, header
    assert digest["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    path = urlsplit(match.group(1)).path
    client = web.client()
    shown = client.get(path)  # a link scanner: sees a button, changes nothing
    assert shown.status_code == 200 and "<button" in shown.text
    assert json.loads(cli(web, "users", "show", "carol@corp.example", "--json"))["digest"] == "daily"
    done = client.post(path, content=b"List-Unsubscribe=One-Click",
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert done.status_code == 200 and "digest is off" in done.text
    assert json.loads(cli(web, "users", "show", "carol@corp.example", "--json"))["digest"] == "off"
    assert client.post(path.rsplit(".", 1)[0] + ".xxxx", content=b"List-Unsubscribe=One-Click").status_code == 404


def test_reply_notifications_carry_it_too_and_without_base_url_only_the_mailto(web_with):
    web = web_with()
    root = web.post("Shipped the export")
    web.reply(root, "Nice work")
    web.flush_outbox()
    [note] = [m for m in outbox_messages(web.settings) if m["To"].addresses[0].addr_spec == "alice@corp.example"]
    assert note["List-Unsubscribe"] == "<mailto:status-request@corp.example?subject=unsubscribe>"
    assert note["List-Unsubscribe-Post"] is None
    with Session(web.engine) as session:
        assert session.exec(select(User.digest).where(User.email == "alice@corp.example")).one() == ""
        assert session.exec(select(Outbox.kind)).all() == ["notification"]


def test_responses_forbid_framing_sniffing_and_referrers(web):
    answer = web.client().get("/login")
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["referrer-policy"] == "no-referrer"
    assert "default-src 'none'" in answer.headers["content-security-policy"]
    assert answer.headers["cache-control"] == "no-store"


def test_atom_feeds_link_to_the_page_they_are_the_feed_of(web):
    # RFC 4287 §4.2.7.2: rel="alternate" is the HTML version of the feed. The reader's
    # feed is the front page (SPEC §8 `/`), a tag's feed the tag's page; /feed is no page.
    web.post("Shipped the export #billing")
    user = json.loads(cli(web, "users", "show", "carol@corp.example", "--json"))
    url = urlsplit(user["feed_url"])
    client, signed_in = web.client(), web.signed_in()
    for path, page in (("/feed.atom", "/"), ("/tags/billing.atom", "/tags/billing")):
        feed = feedparser.parse(client.get(f"{path}?{url.query}").content)
        assert feed.feed.link == f"{web.settings.web_url}{page}"
        assert signed_in.get(page).status_code == 200


def test_every_mail_to_a_user_carries_their_one_click_unsubscribe(web_with):
    # SPEC §4: every message's List-Unsubscribe has the https one-click URL when
    # web.base_url is set, not only digests and notifications: command answers, the
    # check-in question and the sign-in link too (RFC 8058: Gmail and Yahoo want it on
    # all mail a sender sends in bulk).
    web = web_with('base_url = "https://status.corp.example"\n\n[checkins]\nenabled = true')
    answer = make_mail(body="help", subject="", sender="Alice Example <alice@corp.example>",
                       to="status-request@corp.example")
    assert web.send(answer, to="status-request@corp.example")[0] == 250
    assert web.client().post("/login", data={"email": "bob@corp.example"}).status_code == 200
    assert "1 question(s) queued" in cli(web, "checkins", "send", "--user", "carol@corp.example", "--now")
    web.flush_outbox()
    mails = {m["To"].addresses[0].addr_spec: m for m in outbox_messages(web.settings)}
    assert sorted(mails) == ["alice@corp.example", "bob@corp.example", "carol@corp.example"]
    urls = {}
    for address, mail in mails.items():
        header = " ".join(str(mail["List-Unsubscribe"]).split())
        match = re.fullmatch(r"<(https://status\.corp\.example/unsubscribe/[^>]+)>, "
                             r"<mailto:status-request@corp\.example\?subject=unsubscribe>", header)
        assert match, (address, header)
        assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        urls[address] = urlsplit(match.group(1)).path
    assert len(set(urls.values())) == 3  # each reader's own
    done = web.client().post(urls["carol@corp.example"], content=b"List-Unsubscribe=One-Click",
                             headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert done.status_code == 200
    assert json.loads(cli(web, "users", "show", "carol@corp.example", "--json"))["digest"] == "off"
    assert json.loads(cli(web, "users", "show", "alice@corp.example", "--json"))["digest"] != "off"
