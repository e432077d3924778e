"""Every benchmark, one after the other, and one table of their figures (`make bench`).

Each bench is its own script (runnable alone, printing its own figures); this runs each
as a subprocess, so one bench's imports, threads and open files cannot colour the next,
shows their output, and collects the headline lines into a table at the end. Speed is
measured here, never asserted in a test (DESIGN, "How it is tested").

Run: .venv/bin/python bench/run_all.py [--quick]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
PYTHON = BENCH.parent / ".venv" / "bin" / "python"


def benches(quick: bool) -> list[tuple[str, list[str], list[str]]]:
    """(name, arguments, regexes whose first group is a headline figure)."""
    n = "500" if quick else "2000"
    items = [
        ("ingest (new connection per message)", ["ingest.py", "--messages", n],
         [r"^(discard .*)$", r"^(gateway .*)$", r"^(ratio .*)$", r"^(stored: .*)$"]),
        ("ingest (reused connections)", ["ingest.py", "--messages", n, "--reuse"],
         [r"^(discard .*)$", r"^(gateway .*)$", r"^(ratio .*)$", r"^(stored: .*)$"]),
        # What "250 means committed" alone costs here: the ceiling for the two above.
        ("ingest floor (durable append, no pipeline)", ["ingest.py", "--messages", n, "--floor"],
         [r"^(gateway .*)$", r"^(ratio .*)$", r"^(stored: .*)$"]),
        ("outbox drain", ["outbox.py", "--messages", n], [r"^(sent .*)$"]),
        ("trimming", ["trimming.py"], [r"^(\S+\s+\d+\s+\d+\s+[\d.]+%)$"]),
    ]
    if (BENCH / "digest.py").exists():
        users = "2000" if quick else "10000"  # the size the digest target is set for
        items.append(("digest fan-out", ["digest.py", "--users", users], [r"^(.*(?:/s|ratio|MiB).*)$"]))
    return items


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts, for a smoke run")
    args = parser.parse_args(argv)
    table: list[tuple[str, str, float, int]] = []
    for name, arguments, patterns in benches(args.quick):
        print(f"\n=== {name}: bench/{' '.join(arguments)}", flush=True)
        started = time.monotonic()
        result = subprocess.run([str(PYTHON), str(BENCH / arguments[0]), *arguments[1:]], capture_output=True,
                                text=True, cwd=BENCH.parent)
        seconds = time.monotonic() - started
        print(result.stdout, end="")
        if result.returncode != 0:
            print(result.stderr[-2000:], end="", file=sys.stderr)
        figures = [m.group(1).strip() for line in result.stdout.splitlines() for p in patterns
                   if (m := re.match(p, line))]
        table.append((name, " | ".join(figures) or "(no figures)", seconds, result.returncode))
    print("\n=== summary")
    width = max(len(name) for name, *_ in table)
    for name, figures, seconds, code in table:
        status = "ok" if code == 0 else f"exit {code}"
        print(f"{name:<{width}}  {seconds:6.1f}s  {status:<7}  {figures}")
    return 0 if all(code == 0 for *_, code in table) else 1


if __name__ == "__main__":
    sys.exit(main())
