"""A throwaway Postfix on a free loopback port, configured from the README's guide.

Its own config_directory, queue_directory and data_directory under a temporary folder,
``inet_interfaces = 127.0.0.1``, an smtpd on a free port and no other listener: the
system's Postfix, its queue and its mail are never touched. Postfix runs as root here
(as the tests do in CI): ``postfix start-fg`` as the master, its daemons as the Debian
package's ``postfix`` user (``mail_owner``) and ``postdrop`` group, so the queue folder
and the data folder belong to that user and the temporary folder is world-searchable.

Mailboxes: each staff address gets an alias to a Maildir the local(8) agent writes as
``nobody`` (``default_privs``). Everything about statusmail comes from the README: the
snippets of its "Behind Postfix" section, parsed by :func:`readme_snippets`, with only
the ports and the paths of this temporary instance put in.
"""

from __future__ import annotations

import json
import mailbox
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
POSTFIX = "/usr/sbin/postfix"
SBIN = Path(POSTFIX).parent  # postmap, postalias, postqueue: not on every PATH
START_SECONDS = 20.0

# The services this instance needs (master.cf(5) columns: service type private unpriv
# chroot wakeup maxproc command). No chroot: the queue is not under /var/spool/postfix.
MASTER_SERVICES = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000    0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def postfix_missing() -> str:
    if not os.access(POSTFIX, os.X_OK):
        return f"{POSTFIX} is not installed (apt-get install postfix)"
    if os.getuid() != 0:
        return "a private Postfix needs root here (its daemons run as the postfix user)"
    try:
        pwd.getpwnam("postfix")
    except KeyError:
        return "the postfix user does not exist"
    return ""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --- the README's snippets -----------------------------------------------------------------


@dataclass(frozen=True)
class Snippet:
    path: str  # /etc/postfix/main.cf
    note: str  # what follows the path on its header line: "(LMTP, ...)"
    text: str


def readme_section(title: str = "### Behind Postfix", readme: Path = README) -> str:
    text = readme.read_text(encoding="utf-8")
    start = text.index(title)
    following = text.find("\n### ", start + len(title))
    return text[start:following if following >= 0 else len(text)]


def readme_snippets(section: str | None = None) -> list[Snippet]:
    """Every file the section's code blocks show: a block holds one or more files, each
    starting with a ``# /etc/...`` line that names it."""
    section = readme_section() if section is None else section
    snippets: list[Snippet] = []
    for block in re.findall(r"^```[a-z]*\n(.*?)^```", section, re.MULTILINE | re.DOTALL):
        current: tuple[str, str] | None = None
        lines: list[str] = []
        for line in block.splitlines():
            header = re.match(r"# (/etc/\S+)\s*(.*)$", line)
            if header:
                if current:
                    snippets.append(Snippet(current[0], current[1], "\n".join(lines).strip() + "\n"))
                current, lines = (header.group(1), header.group(2)), []
            elif current:
                lines.append(line)
        if current:
            snippets.append(Snippet(current[0], current[1], "\n".join(lines).strip() + "\n"))
    return snippets


def snippet(path: str, *, lmtp: bool = False, snippets: list[Snippet] | None = None) -> str:
    """The one snippet for ``path``; where the guide shows an SMTP and an LMTP version
    (the transport map), the one for ``lmtp``."""
    found = [s for s in (snippets or readme_snippets()) if s.path == path]
    if len(found) > 1:
        found = [s for s in found if ("LMTP" in s.note) == lmtp]
    if len(found) != 1:
        raise AssertionError(f"README's Postfix guide shows {len(found)} versions of {path}")
    return found[0].text


# --- the instance -------------------------------------------------------------------------


class Postfix:
    """One private Postfix: ``main_cf`` lines (the README's) over a base that puts its
    folders, listener and mailboxes in a temporary folder."""

    def __init__(self, *, mailboxes: list[str], aliases: dict[str, str] | None = None,
                 domain: str = "corp.example") -> None:
        self.root = Path(tempfile.mkdtemp(prefix="statusmail-postfix-"))
        self.root.chmod(0o755)
        self.etc = self.root / "etc"
        self.queue = self.root / "queue"
        self.data = self.root / "data"
        self.mail = self.root / "mail"
        for folder in (self.etc, self.queue, self.data, self.mail):
            folder.mkdir()
        owner = pwd.getpwnam("postfix")
        os.chown(self.data, owner.pw_uid, owner.pw_gid)
        self.domain = domain
        self.port = free_port()
        self.mailboxes = mailboxes
        self.aliases = aliases or {}  # local part -> an aliases(5) target of the site's own
        self.process: subprocess.Popen[bytes] | None = None

    def maildir(self, local_part: str) -> Path:
        return self.mail / local_part

    def base_config(self) -> str:
        """What a test instance needs and the README leaves to the site."""
        return f"""\
compatibility_level = 3.6
queue_directory = {self.queue}
data_directory = {self.data}
mail_owner = postfix
setgid_group = postdrop
maillog_file = {self.root}/maillog
maillog_file_prefixes = {self.root}
syslog_name = statusmail-test-postfix
myhostname = mx.{self.domain}
mydomain = {self.domain}
myorigin = $mydomain
mydestination = {self.domain}
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.1/32
relayhost =
alias_maps = hash:{self.etc}/aliases
alias_database = hash:{self.etc}/aliases
default_privs = nobody
smtputf8_enable = no
biff = no
"""

    def configure(self, main_cf: str, files: dict[str, str]) -> None:
        """Write main.cf (base, then ``main_cf``), master.cf, the aliases and ``files``
        (name -> text, postmapped when main.cf names them as hash: tables)."""
        nobody = pwd.getpwnam("nobody")
        aliases = []
        for local_part in self.mailboxes:
            box = self.maildir(local_part)
            box.mkdir()
            os.chown(box, nobody.pw_uid, nobody.pw_gid)
            aliases.append(f"{local_part}: {box}/")
        aliases += [f"{local_part}: {target}" for local_part, target in self.aliases.items()]
        (self.etc / "aliases").write_text("\n".join(aliases) + "\n")
        (self.etc / "main.cf").write_text(self.base_config() + "\n# The README's lines\n" + main_cf)
        (self.etc / "master.cf").write_text(
            f"127.0.0.1:{self.port} inet n - n - - smtpd\n" + MASTER_SERVICES)
        self.postconf_run([str(SBIN / "postalias"), "-c", str(self.etc), f"hash:{self.etc}/aliases"])
        for name, text in files.items():
            (self.etc / name).write_text(text)
            if f"hash:{self.etc}/{name}" in main_cf:
                self.postconf_run([str(SBIN / "postmap"), "-c", str(self.etc), f"hash:{self.etc}/{name}"])

    def postconf_run(self, command: list[str]) -> str:
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)}: {done.stderr.strip()}")
        return done.stdout

    def check(self) -> str:
        """``postfix check``'s warnings (an empty string when the configuration is clean)."""
        done = subprocess.run([POSTFIX, "-c", str(self.etc), "check"], capture_output=True, text=True)
        return (done.stdout + done.stderr).strip()

    def start(self) -> None:
        # start-fg: the master stays our child, in its own process group, so stop() can
        # reach every daemon it started even if `postfix stop` does not.
        self.process = subprocess.Popen([POSTFIX, "-c", str(self.etc), "start-fg"], start_new_session=True,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                error = self.process.stderr.read().decode() if self.process.stderr else ""
                raise RuntimeError(f"postfix exited: {error.strip()} {self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as probe:
                    if probe.recv(100).startswith(b"220"):
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"postfix did not answer on port {self.port}: {self.log()}")

    def stop(self) -> None:
        if self.process is None:
            return
        subprocess.run([POSTFIX, "-c", str(self.etc), "stop"], capture_output=True)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            pass
        group = self.process.pid
        try:
            os.killpg(group, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(5)
        if self.process.stderr:
            self.process.stderr.close()
        self.process = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def log(self) -> str:
        path = self.root / "maillog"
        return path.read_text(errors="replace") if path.exists() else ""

    def queued(self) -> list[dict[str, object]]:
        """Every message in the queue (``postqueue -j``): incoming, active, deferred, hold."""
        output = self.postconf_run([str(SBIN / "postqueue"), "-c", str(self.etc), "-j"])
        return [json.loads(line) for line in output.splitlines() if line.strip()]

    def delivered(self, local_part: str) -> list[EmailMessage]:
        """The messages in a mailbox, oldest first ([] before local(8) made its Maildir)."""
        if not all((self.maildir(local_part) / sub).is_dir() for sub in ("tmp", "new", "cur")):
            return []
        box = mailbox.Maildir(self.maildir(local_part), create=False)
        messages = []
        for key in sorted(box.keys()):
            with box.get_file(key) as handle:
                messages.append(message_from_bytes(handle.read(), policy=policy.default))
        return messages  # type: ignore[return-value]
