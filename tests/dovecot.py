"""A throwaway Dovecot on a free loopback port, for the IMAP tests.

Plain IMAP, one passwd-file user, Maildir under a temporary folder. Dovecot refuses to
run its login processes or mail as root, so as root the login processes run as
``dovenull`` and the mail user is ``nobody``; its folder lives under /tmp with modes
that let those users in (pytest's own tmp_path is private to root). As any other user,
everything runs as that user.
"""

from __future__ import annotations

import grp
import imaplib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from email import policy
from email.message import EmailMessage
from pathlib import Path

USER = "statusmail"
PASSWORD = "dovecot-test-secret"
START_SECONDS = 15.0


def find_dovecot() -> str | None:
    """The dovecot binary; /usr/sbin is often not on a non-root user's PATH."""
    return shutil.which("dovecot") or ("/usr/sbin/dovecot" if os.access("/usr/sbin/dovecot", os.X_OK) else None)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def signal_group(group: int, signum: int) -> None:
    try:
        os.killpg(group, signum)
    except ProcessLookupError:
        pass


def group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def dovecot_version(binary: str) -> tuple[int, ...]:
    output = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout
    return tuple(int(part) for part in re.findall(r"\d+", output.split()[0])[:2])


class Dovecot:
    """Start, stop and talk to one Dovecot instance."""

    def __init__(self, binary: str, acl: bool = False) -> None:
        self.binary = binary
        self.acl = acl  # the ACL plugin, so that a test can make INBOX read-only (read_only_inbox)
        self.doveadm = str(Path(binary).with_name("doveadm"))
        self.root = Path(tempfile.mkdtemp(prefix="statusmail-dovecot-"))
        self.root.chmod(0o755)
        self.home = self.root / "home"
        self.home.mkdir()
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.config = self.root / "dovecot.conf"
        self.write_config()

    def write_config(self) -> None:
        me = pwd.getpwuid(os.getuid())
        if os.getuid() == 0:
            mail_user = pwd.getpwnam("nobody")
            login_user, internal_user = "dovenull", "dovecot"
            os.chown(self.home, mail_user.pw_uid, mail_user.pw_gid)
        else:
            mail_user, login_user, internal_user = me, me.pw_name, me.pw_name
        (self.root / "passwd").write_text(
            f"{USER}:{{PLAIN}}{PASSWORD}:{mail_user.pw_uid}:{mail_user.pw_gid}::{self.home}::\n")
        cleartext = ("auth_allow_cleartext = yes" if dovecot_version(self.binary) >= (2, 4)
                     else "disable_plaintext_auth = no")
        self.config.write_text(f"""
protocols = imap
listen = 127.0.0.1
base_dir = {self.root}/run
state_dir = {self.root}/state
log_path = {self.root}/dovecot.log
ssl = no
{cleartext}
auth_mechanisms = plain login
default_login_user = {login_user}
default_internal_user = {internal_user}
default_internal_group = {grp.getgrgid(pwd.getpwnam(internal_user).pw_gid).gr_name}
first_valid_uid = {mail_user.pw_uid}
mail_location = maildir:~/Maildir
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {self.root}/passwd
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {self.root}/passwd
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
""" + ("""
mail_plugins = $mail_plugins acl
protocol imap {
  mail_plugins = $mail_plugins imap_acl
}
plugin {
  acl = vfile:cache_secs=0
}
""" if self.acl else ""))

    def start(self) -> None:
        # Its own process group, so that stop() reaches the imap processes too: they
        # outlive a master that is merely terminated, and keep their clients connected.
        self.process = subprocess.Popen([self.binary, "-F", "-c", str(self.config)], start_new_session=True,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                error = self.process.stderr.read().decode() if self.process.stderr else ""
                self.process.stderr and self.process.stderr.close()
                raise RuntimeError(f"dovecot exited: {error.strip()} {self.log()}")
            try:
                with self.imap():
                    return
            except (OSError, imaplib.IMAP4.error):
                time.sleep(0.1)
        raise RuntimeError(f"dovecot did not answer on port {self.port}: {self.log()}")

    def stop(self) -> None:
        """Stop Dovecot and every process it started; connected clients lose their connection."""
        if self.process is None:
            return
        group = self.process.pid
        signal_group(group, signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            signal_group(group, signal.SIGKILL)
            self.process.wait(5)
        deadline = time.monotonic() + 10
        while group_alive(group) and time.monotonic() < deadline:
            time.sleep(0.05)
        signal_group(group, signal.SIGKILL)
        if self.process.stderr:
            self.process.stderr.close()
        self.process = None

    def read_only_inbox(self, read_only: bool = True) -> None:
        """Let the user read INBOX but not change it (no expunge, so MOVE answers NO
        [NOPERM]), as a shared or misconfigured mailbox does; needs ``acl=True``."""
        assert self.acl, "start Dovecot with acl=True"
        maildir = self.home / "Maildir"
        maildir.mkdir(exist_ok=True)
        path = maildir / "dovecot-acl"
        if read_only:
            path.write_text("owner lrwsi\n")  # lookup, read, flags, seen, insert: no expunge
            os.chmod(path, 0o644)
        else:
            path.unlink(missing_ok=True)

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def log(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def imap(self) -> imaplib.IMAP4:
        client = imaplib.IMAP4("127.0.0.1", self.port, timeout=10)
        try:
            client.login(USER, PASSWORD)
        except BaseException:
            client.shutdown()
            raise
        return client

    def folder(self, configured: str) -> str:
        """The server's name for a configured folder ("/" is the hierarchy delimiter)."""
        with self.imap() as client:
            _, [line] = client.list('""', '""')
        delimiter = re.search(rb'"(.)"', line)
        return configured.replace("/", delimiter.group(1).decode()) if delimiter else configured

    def append(self, message: EmailMessage | bytes, folder: str = "INBOX") -> None:
        raw = message if isinstance(message, bytes) else message.as_bytes(policy=policy.SMTP)
        with self.imap() as client:
            status, detail = client.append(folder, None, None, raw)
            assert status == "OK", detail

    def message_ids(self, folder: str) -> list[str]:
        """Message-IDs in a folder, in UID order; [] when the folder does not exist."""
        with self.imap() as client:
            status, _ = client.select(folder, readonly=True)
            if status != "OK":
                return []
            status, data = client.uid("FETCH", "1:*", "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
            ids = []
            for item in data:
                if isinstance(item, tuple):
                    match = re.search(rb"(?i)message-id:\s*(<[^>]*>)", item[1])
                    ids.append(match.group(1).decode() if match else "")
            return ids

    def uidvalidity(self, folder: str = "INBOX") -> int:
        with self.imap() as client:
            client.select(folder, readonly=True)
            [value] = client.response("UIDVALIDITY")[1]
        return int(value)

    def renumber_inbox(self) -> None:
        """Forget INBOX's UIDs, as a restored or migrated mailbox does: its messages are
        numbered again from 1 under a new UIDVALIDITY (RFC 3501 §2.3.1.1)."""
        old = self.uidvalidity()
        self.stop()
        maildir = self.home / "Maildir"
        for path in [*maildir.glob("dovecot-uidlist*"), *maildir.glob("dovecot.index*"),
                     *maildir.glob("dovecot.list.index*")]:
            path.unlink()
        self.start()
        if self.uidvalidity() == old:
            subprocess.run([self.doveadm, "-c", str(self.config), "mailbox", "update", "-u", USER,
                            "--uid-validity", str(old + 1), "INBOX"], check=True, capture_output=True)
