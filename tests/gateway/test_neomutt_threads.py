"""Threads look like threads in a real mail client (SPEC §4): neomutt, in tmux, with
``sort=threads``, shows a reader's notifications of a five-post thread as the posts'
tree, with and without the reader's own sent reply in the folder."""

from __future__ import annotations

import mailbox
import shutil
import subprocess
import time
from email import policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.conftest import make_mail
from tests.gateway.clients import corpus_reply

pytestmark = pytest.mark.skipif(not (shutil.which("neomutt") and shutil.which("tmux")),
                                reason="neomutt and tmux (Debian packages) are not installed")

PEOPLE = {"alice": "Alice Anders", "bob": "Bob Boss", "carol": "Carol Chen", "dave": "Dave Dietz"}
MUTTRC = """\
set mbox_type=Maildir
set folder="{folder}"
set spoolfile="{folder}"
set header_cache=""
set sort=threads
set sort_aux=date-received
set strict_threads=yes
set index_format="%-24.24F %s"
set hide_missing=no
set narrow_tree=no
set ascii_chars=yes
set help=no
set status_on_top=no
set mark_old=no
set timeout=1
"""


def mails_to(maildir: Path, address: str) -> list[bytes]:
    box = mailbox.Maildir(maildir, create=False)
    found = []
    for key in box.keys():
        raw = box.get_bytes(key)
        if f"Delivered-To: {address}".encode() in raw.split(b"\r\n\r\n", 1)[0]:
            found.append(raw)
    return found


def folder_of(path: Path, messages: list[bytes]) -> Path:
    box = mailbox.Maildir(path, create=True)
    for raw in messages:
        box.add(raw)
    return path


def neomutt_screen(tmp_path: Path, folder: Path) -> list[str]:
    """The index screen neomutt draws for ``folder``, as tmux captures it."""
    rc = tmp_path / f"muttrc-{folder.name}"
    rc.write_text(MUTTRC.format(folder=folder))
    socket = tmp_path / f"tmux-{folder.name}"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "TERM": "xterm", "LANG": "C.UTF-8"}
    tmux = ["tmux", "-S", str(socket), "-f", "/dev/null"]
    subprocess.run([*tmux, "new-session", "-d", "-x", "100", "-y", "20",
                    f"neomutt -n -F {rc} -f {folder}"], check=True, env=env)
    try:
        screen: list[str] = []
        for _ in range(100):  # neomutt draws once it has read the folder
            screen = subprocess.run([*tmux, "capture-pane", "-p"], check=True, capture_output=True,
                                    text=True, env=env).stdout.splitlines()
            if any(" via Status" in line for line in screen) and not any("Reading" in ln for ln in screen):
                time.sleep(0.2)
                screen = subprocess.run([*tmux, "capture-pane", "-p"], check=True, capture_output=True,
                                        text=True, env=env).stdout.splitlines()
                break
            time.sleep(0.1)
        return [line.rstrip() for line in screen if line.strip()]
    finally:
        subprocess.run([*tmux, "kill-server"], env=env, check=False)


def tree(screen: list[str]) -> list[tuple[str, str]]:
    """(author, parent author) per index line, read from the thread arrows neomutt draws:
    each level indents two columns, and "?" marks a parent missing from the folder."""
    rows: list[tuple[int, str]] = []
    edges = []
    for line in screen:
        if line.startswith("-") or "NeoMutt:" in line:
            continue
        author, subject = line[:24].strip(), line[25:]
        arrow = subject.find("->")
        depth = 0 if arrow < 0 else (arrow + 2) // 2
        missing = "?" in subject[:max(arrow, 0)]
        parent = next((a for d, a in reversed(rows) if d == depth - 1), "") if depth else ""
        edges.append((author, "(missing)" if missing else parent))
        rows.append((depth, author))
    return edges


def test_neomutt_shows_the_notifications_of_a_five_post_thread_as_the_posts_tree(gateway, cli, settings, tmp_path):
    for handle, name in PEOPLE.items():
        if handle != "alice":
            cli("users", "add", f"{handle}@corp.example", "--name", name)
    # A (Alice) mentions everyone; B (Bob) and C (Carol) answer A; D (Dave) answers B;
    # E (Alice) answers D. Bob reads.
    gateway.send(make_mail(body="Q4 billing backlog closed @bob @carol @dave", subject="Billing backlog",
                           sender="Alice Anders <alice@corp.example>"))
    gateway.flush_outbox()
    outbox = Path(settings.outbound.transport.removeprefix("maildir:"))

    def notification(reader: str, text: str) -> EmailMessage:
        for raw in mails_to(outbox, f"{reader}@corp.example"):
            msg = __import__("email").message_from_bytes(raw, policy=policy.default)
            if text in msg.get_body(("plain",)).get_content():
                return msg
        raise AssertionError(f"{reader} got no mail about {text!r}")

    def answer(reader: str, about: str, text: str, client: str) -> bytes:
        reply = corpus_reply(client, notification(reader, about), f"{PEOPLE[reader]} <{reader}@corp.example>", text)
        assert gateway.send(reply, mail_from=f"{reader}@corp.example", to=str(reply["To"]))[0] == 250
        gateway.flush_outbox()
        return reply.as_bytes(policy=policy.SMTP)

    sent_by_bob = answer("bob", "Q4 billing backlog closed", "B: which customers, @dave?", "gmail")
    answer("carol", "Q4 billing backlog closed", "C: well done", "outlook")
    answer("dave", "B: which customers", "D: the EU ones", "apple")
    answer("alice", "D: the EU ones", "E: all of them are done", "thunderbird")

    received = mails_to(outbox, "bob@corp.example")
    assert len(received) == 4  # A (mention), C, D, E: never his own B
    without = neomutt_screen(tmp_path, folder_of(tmp_path / "inbox", received))
    with_sent = neomutt_screen(tmp_path, folder_of(tmp_path / "inbox+sent", [*received, sent_by_bob]))
    (tmp_path.parent / "neomutt-screens.txt").write_text(
        "without the sent reply:\n" + "\n".join(without) + "\n\nwith it:\n" + "\n".join(with_sent) + "\n")
    # With his sent B: B and C under A, D under B, E under D: the posts' tree.
    assert sorted(tree(with_sent)) == sorted([
        ("Alice Anders via Status", ""), ("Carol Chen via Status", "Alice Anders via Status"),
        ("Bob Boss", "Alice Anders via Status"), ("Dave Dietz via Status", "Bob Boss"),
        ("Alice Anders via Status", "Dave Dietz via Status")])
    # Without it, D still sits under B (missing, "?"), never under C; E under D.
    assert sorted(tree(without)) == sorted([
        ("Alice Anders via Status", ""), ("Carol Chen via Status", "Alice Anders via Status"),
        ("Dave Dietz via Status", "(missing)"), ("Alice Anders via Status", "Dave Dietz via Status")])
    assert any("-?->" in line for line in without)
