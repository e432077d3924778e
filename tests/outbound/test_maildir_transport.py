"""The Maildir transport: what a local mail client reads."""

from __future__ import annotations

import asyncio
import mailbox
import stat

from statusmail.outbound.transport import MaildirTransport


def test_first_deliveries_at_once_into_a_new_maildir_all_arrive(tmp_path):
    """The outbox worker sends on several lanes; the Maildir does not exist before the
    first mail, and two deliveries creating it at once must both land (they raced in
    mailbox.Maildir(create=True) and one failed about a third of the time)."""
    async def deliver_pairs() -> None:
        for n in range(40):
            transport = MaildirTransport(str(tmp_path / f"box{n}"))
            await asyncio.gather(*(transport.send("status+bounce-x@corp.example", f"u{i}@corp.example",
                                                  f"Subject: {i}\r\n\r\nhi\r\n".encode()) for i in range(2)))

    asyncio.run(deliver_pairs())
    for n in range(40):
        path = tmp_path / f"box{n}"
        assert len(mailbox.Maildir(path, create=False)) == 2
        assert stat.S_IMODE(path.stat().st_mode) == 0o700
