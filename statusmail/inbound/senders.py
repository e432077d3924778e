"""Who sent this, and may they post? (SPEC §3 SMTP answers, §5 Trust.)

The MTA authenticates; the gateway authorizes (DESIGN decision 7). The sender is the
single From mailbox. ``network`` mode trusts the peer (checked at connection) and the
From domain; ``authres`` also needs the company MTA's Authentication-Results verdict;
``dkim`` verifies the signature itself. Every refusal here is ``550 5.7.1`` in the
dialogue and never a mail to the claimed sender, who may not have sent it.
"""

from __future__ import annotations

from statusmail.inbound.incoming import Incoming
from statusmail.inbound.outcome import Reason, Refused
from statusmail.inbound.parse import header_text, mailboxes
from statusmail.inbound.recipients import Kind
from statusmail.store.users import base_address, find_user, new_user

HOLD_UNAUTHENTICATED = "hold-unauthenticated"  # Envelope.notes flag from transports that cannot refuse


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower()


def domain_allowed(domain: str, allowed: tuple[str, ...]) -> bool:
    return domain.lower() in {d.lower() for d in allowed}


def require_one_sender(mail: Incoming) -> None:
    """Exactly one From mailbox (RFC 5322 §3.6.2 allows several; a post has one author)."""
    from_header = header_text(mail.message, "From")
    found = [(name, address) for name, address in mailboxes(from_header) if address]
    if len(found) != 1 or "@" not in found[0][1]:
        raise Refused(Reason.NOT_AUTHENTICATED, f"need exactly one From mailbox, found {len(found)}")
    name, address = found[0]
    mail.sender = base_address(address, mail.settings.policy.recipient_delimiter)
    mail.sender_name = " ".join(name.split())[:200]


def check_sender_domain(mail: Incoming) -> None:
    """The From domain must be one of ``policy.allowed_domains``."""
    if not domain_allowed(domain_of(mail.sender), mail.settings.policy.allowed_domains):
        raise Refused(Reason.DOMAIN_NOT_ALLOWED, f"From domain {domain_of(mail.sender)} is not in policy.allowed_domains")


def check_envelope_sender(mail: Incoming) -> None:
    """The envelope sender, when there is one, is in the From's organizational domain.

    A header From of ``ceo@corp.example`` on mail whose envelope comes from elsewhere is
    the classic spoof; a company's own MTAs keep both in the company (RFC 7489 §3.2 for
    what "organizational domain" means). Every source is checked: over IMAP, ``inject``
    and ``reprocess`` the envelope sender is the message's Return-Path
    (``parse.read_return_path``). The null sender (a bounce) has nothing to compare.
    """
    from statusmail.inbound.authres import same_organization

    envelope_sender = mail.envelope.mail_from.strip().strip("<>")
    if not envelope_sender:
        return
    if "@" not in envelope_sender or not domain_of(envelope_sender):
        # SPEC §5: a reverse-path without a domain is refused like a foreign one; it
        # used to skip this check and post as anyone in From.
        raise Refused(Reason.NOT_AUTHENTICATED, f"envelope sender {envelope_sender[:100]!r} has no domain")
    if not same_organization(domain_of(envelope_sender), domain_of(mail.sender)):
        raise Refused(Reason.NOT_AUTHENTICATED,
                      f"envelope sender domain {domain_of(envelope_sender)} is not in the organization of {domain_of(mail.sender)}")


def authenticate_sender(mail: Incoming) -> None:
    """Apply ``policy.sender_auth`` beyond the network check."""
    policy = mail.settings.policy
    if policy.sender_auth == "network":
        return
    domain = domain_of(mail.sender)
    if policy.sender_auth == "authres":
        from statusmail.inbound.authres import authres_verdict

        problem = authres_verdict(mail.message, domain, policy.authserv_id,
                                  accept_without_id=policy.authres_without_id)
    else:
        from statusmail.inbound.dkimcheck import dkim_verdict

        problem = dkim_verdict(mail.raw, domain)
    if not problem:
        return
    # Over IMAP nothing can be refused in a dialogue, and the message is already here: a
    # post that fails authentication waits for a moderator instead (SPEC §5).
    if HOLD_UNAUTHENTICATED in mail.envelope.notes and mail.kind in (Kind.POST, Kind.REPLY):
        mail.unauthenticated = True
        mail.holds.append(f"sender not authenticated: {problem}")
        return
    raise Refused(Reason.NOT_AUTHENTICATED, problem)


def identify_user(mail: Incoming) -> None:
    """Find the sender's user; register them when ``policy.auto_register`` is on."""
    user = find_user(mail.session, mail.sender)
    if user is None:
        if not mail.settings.policy.auto_register:
            raise Refused(Reason.UNKNOWN_SENDER, f"{mail.sender} is not registered and auto_register is off")
        user = new_user(mail.session, mail.sender, name=mail.sender_name)
        mail.new_user = True
    mail.user = user


def refuse_banned(mail: Incoming) -> None:
    """A banned user is refused; nothing is mailed to them."""
    assert mail.user is not None
    if mail.user.banned:
        raise Refused(Reason.BANNED, f"{mail.sender} is banned: {mail.user.ban_reason}")
