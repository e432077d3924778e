"""How long a normal post waits while hostile mail is being refused (#16, SPEC §3).

Why: one sender's message must never hold up other sessions for more than about a
second. A real ``statusmail serve`` (listener, batcher and writer process) gets ordinary
posts from one client while two hostile sessions send worst-case messages back to back:
866,000 empty MIME parts (8.7 MB), multipart nested 2,000 deep, a Content-Type with
5,000 nested comments, an encoded-word From in ``unicode_escape``, 100,000 ideographic
spaces, a 150,000-character URL. The yardstick is the same run: the same posts sent
first with nothing else going on. Printed: the normal posts' median and worst latency
alone and beside the hostile mail, the ratio worst-beside / worst-alone, each hostile
message's answer and time, and the peak memory of serve and its writer child.

Run: .venv/bin/python bench/hostile.py [--posts 100]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.imap import start_serve  # noqa: E402
from bench.ingest import (  # noqa: E402
    DOMAIN,
    Tally,
    close_session,
    drive,
    free_port,
    open_session,
    percentile,
    reply,
    stop,
    wait_for_port,
    write_config,
)

HEAD = (f"From: Mallory <mallory@{DOMAIN}>\r\nTo: status@{DOMAIN}\r\nSubject: hi\r\n"
        f"Message-ID: <%s@{DOMAIN}>\r\n").encode()


def fold(value: bytes) -> bytes:
    return b"\r\n ".join(value[i:i + 500] for i in range(0, len(value), 500))


def base64_body(text: str) -> bytes:
    encoded = base64.encodebytes(text.encode()).replace(b"\n", b"\r\n")
    return b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n" + encoded


def hostile_messages() -> dict[str, bytes]:
    return {
        "866000 empty parts": HEAD + b"Content-Type: multipart/mixed; boundary=ab\r\n\r\n"
                              + b"--ab\r\n\r\n\r\n" * 866_000 + b"--ab--\r\n",
        "multipart 2000 deep": HEAD + b"".join(b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i)
                                               for i in range(2000)) + b"Content-Type: text/plain\r\n\r\nhi\r\n",
        "5000 nested comments": HEAD + b"Content-Type: text/plain " + fold(b"(" * 5000 + b")" * 5000)
                                + b"\r\n\r\nhello\r\n",
        "unicode_escape From": (f"From: =?unicode_escape?q?M\\u000aBcc:_x?= <mallory@{DOMAIN}>\r\n"
                                f"Message-ID: <%s@{DOMAIN}>\r\nSubject: hi\r\n\r\nbody\r\n").encode(),
        "100000 ideographic spaces": HEAD + base64_body("Shipped" + "\u3000" * 100_000 + "it"),
        "150000-char URL": HEAD + base64_body("See https://x.example/" + "a" * 150_000 + " @user1 @user2"),
    }


async def send_one(port: int, sender: str, raw: bytes) -> tuple[str, float]:
    """One session, one message: the reply to DATA (or the first refusal) and its wait."""
    reader, writer = await open_session(port)
    try:
        for command in (f"MAIL FROM:<{sender}>\r\n", f"RCPT TO:<status@{DOMAIN}>\r\n", "DATA\r\n"):
            writer.write(command.encode())
            line = await reply(reader)
            if line[:1] not in (b"2", b"3"):
                return line.decode(errors="replace").strip(), 0.0
        writer.write(raw.replace(b"\r\n.", b"\r\n..") + b"\r\n.\r\n")
        started = time.perf_counter()
        line = await reply(reader)
        return line.decode(errors="replace").strip(), time.perf_counter() - started
    finally:
        await close_session(reader, writer)


async def beside_hostile(port: int, posts: int, run_id: str,
                         names: list[str]) -> tuple[Tally, dict[str, list[tuple[str, float]]]]:
    answers: dict[str, list[tuple[str, float]]] = {}
    done = asyncio.Event()

    async def hostile(offset: int) -> None:
        messages = [(name, raw) for name, raw in hostile_messages().items() if name in names]
        n = offset
        while not done.is_set():
            name, raw = messages[n % len(messages)]
            answers.setdefault(name, []).append(
                await send_one(port, f"mallory@{DOMAIN}", raw.replace(b"%s", f"{run_id}-h{offset}-{n}".encode())))
            n += 1

    async def normal() -> Tally:
        await asyncio.sleep(0.2)  # let the hostile sessions start first
        tally, _ = await drive(port, list(range(posts)), run_id + "-beside", 1, False)
        done.set()
        return tally

    results = await asyncio.gather(normal(), hostile(0), hostile(3))
    return results[0], answers


def peak_memory_kib(pid: int) -> int:
    """VmHWM (peak resident set) of a process and its children, from /proc."""
    total = 0
    pids = [pid]
    try:
        pids += [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=100, help="normal posts per phase (example: --posts 100)")
    parser.add_argument("--hostile", default=",".join(hostile_messages()),
                        help="which hostile messages, comma-separated (example: --hostile '866000 empty parts')")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.hostile.split(",") if n.strip()]
    with tempfile.TemporaryDirectory(prefix="statusmail-hostile-") as folder:
        tmp = Path(folder)
        port = free_port()
        serve = start_serve(tmp, write_config(tmp, port))
        try:
            wait_for_port(port, serve)
            run_id = uuid.uuid4().hex[:8]
            asyncio.run(drive(port, list(range(500)), run_id + "-warm", 4, False))  # registers the senders
            alone, _ = asyncio.run(drive(port, list(range(args.posts)), run_id + "-alone", 1, False))
            memory_before = peak_memory_kib(serve.pid)
            beside, answers = asyncio.run(beside_hostile(port, args.posts, run_id, names))
            memory_after = peak_memory_kib(serve.pid)
        finally:
            stop(serve)
    worst_alone, worst_beside = max(alone.latencies), max(beside.latencies)
    print(f"normal posts alone:          {alone.ok}/{args.posts} ok, median {percentile(alone.latencies, 50) * 1000:.1f} ms,"
          f" worst {worst_alone * 1000:.1f} ms")
    print(f"normal posts beside hostile: {beside.ok}/{args.posts} ok, median {percentile(beside.latencies, 50) * 1000:.1f} ms,"
          f" worst {worst_beside * 1000:.1f} ms")
    print(f"ratio worst beside / worst alone: {worst_beside / worst_alone:.1f} (SPEC: the wait stays about a second: "
          f"{'yes' if worst_beside < 1.5 else 'NO'})")
    for name, results in answers.items():
        codes = sorted({a for a, _ in results})
        print(f"  {name:28s} x{len(results):3d}  {'; '.join(c[:60] for c in codes)}  "
              f"worst {max(t for _, t in results) * 1000:.0f} ms")
    print(f"peak memory, serve + writer: {memory_before / 1024:.0f} MiB before, {memory_after / 1024:.0f} MiB after")
    return 0 if beside.ok == alone.ok == args.posts else 1


if __name__ == "__main__":
    raise SystemExit(main())
