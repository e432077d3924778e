"""How often the stored text is the new text a reader sees, per reply corpus.

Run: .venv/bin/python bench/trimming.py
Prints, per corpus, the number of fixtures, how many we get right, the
percentage, and each miss with what we kept. Expected texts and the
comparison come from tests/inbound/corpora.py, the same as the tests use.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.inbound.corpora import (
    CORPORA,
    CORPUS_LOADERS,
    KNOWN_MISSES,
    corpora_present,
    is_correct,
    load_cases,
    new_text_of,
    normalise,
)


def main() -> int:
    if not corpora_present():
        print(f"no corpora at {CORPORA}; nothing to measure")
        return 1
    print(f"{'corpus':<26} {'N':>4} {'correct':>8} {'%':>7}")
    misses = []
    for corpus in CORPUS_LOADERS:
        cases = load_cases(corpus)
        wrong = [case for case in cases if not is_correct(case)]
        right = len(cases) - len(wrong)
        share = 100.0 * right / len(cases) if cases else 0.0
        print(f"{corpus:<26} {len(cases):>4} {right:>8} {share:>6.1f}%")
        misses.extend(wrong)
    for case in misses:
        print(f"\nMISS {case.id}" + (f" (known: {KNOWN_MISSES[case.id]})"
                                     if case.id in KNOWN_MISSES else ""))
        print("  got:      " + normalise(new_text_of(case)).replace("\n", " / ")[:300])
        print("  expected: " + normalise(case.expected).replace("\n", " / ")[:300])
    if not misses:
        print("\nno misses")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
