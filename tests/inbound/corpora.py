"""Where the reply corpora live and what each fixture's new text is.

Shared by the corpus tests and ``bench/trimming.py`` so both judge alike.
The corpora are read in place from ``../shared/corpora`` (next to the repo, as
in CI); expected texts we wrote ourselves live in ``tests/data/expected``.
"""

from __future__ import annotations

import email
import email.policy
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CORPORA = (REPO / "../shared/corpora").resolve()
EXPECTED = REPO / "tests" / "data" / "expected"

TALON_HTML_TEXT = "Hi. I am fine.\n\nThanks,\nAlex"
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class Case:
    corpus: str
    name: str
    path: Path
    expected: str

    @property
    def id(self) -> str:
        return f"{self.corpus}/{self.name}"


def normalise(text: str) -> str:
    """Compare texts by words and lines, not by spacing.

    Strips every line, collapses runs of whitespace inside lines, drops blank
    lines and invisible format characters (BOM, bidi marks).
    """
    text = "".join(c for c in unicodedata.normalize("NFC", text)
                   if unicodedata.category(c) != "Cf")
    lines = (_SPACES.sub(" ", line).strip() for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def _expected_override(corpus: str, name: str) -> str | None:
    path = EXPECTED / corpus / f"{name}.txt"
    return path.read_text(encoding="utf-8") if path.exists() else None


def _talon_standard() -> list[Case]:
    folder = CORPORA / "talon" / "standard_replies"
    cases = []
    for path in sorted(folder.glob("*.eml")):
        # Our own file wins over talon's <name>_reply_text: talon keeps device
        # and "-- " signatures in its reply text, SPEC §3 removes them.
        expected = _expected_override("talon-standard", path.stem)
        reply_text = folder / f"{path.stem}_reply_text"
        if expected is None and reply_text.exists():
            expected = reply_text.read_text(encoding="utf-8")
        cases.append(Case("talon-standard", path.stem, path, expected or "Hello"))
    return cases


def _talon_html() -> list[Case]:
    folder = CORPORA / "talon" / "html_replies"
    return [Case("talon-html", p.stem, p, TALON_HTML_TEXT) for p in sorted(folder.glob("*.html"))]


def _plain(corpus: str, folder: Path) -> list[Case]:
    cases = []
    for path in sorted(folder.glob("*.txt")):
        expected = _expected_override(corpus, path.stem)
        if expected is None:
            raise FileNotFoundError(f"no expected text for {corpus}/{path.stem}")
        cases.append(Case(corpus, path.stem, path, expected))
    return cases


CORPUS_LOADERS: dict[str, Callable[[], list[Case]]] = {
    "talon-standard": _talon_standard,
    "talon-html": _talon_html,
    "crisp": lambda: _plain("crisp", CORPORA / "crisp" / "fixtures"),
    "mail-parser-reply": lambda: _plain("mail-parser-reply",
                                        CORPORA / "mail-parser-reply" / "emails"),
    # Ours to carry (MIT, licence beside it), so it is there with or without ../shared.
    "github-email-reply-parser": lambda: _plain("github-email-reply-parser",
                                                REPO / "tests" / "data" / "corpora" / "github-email-reply-parser" / "emails"),
}


def corpora_present() -> bool:
    return CORPORA.is_dir()


def load_cases(corpus: str) -> list[Case]:
    if corpus == "github-email-reply-parser":
        return CORPUS_LOADERS[corpus]()
    return CORPUS_LOADERS[corpus]() if corpora_present() else []


def new_text_of(case: Case) -> str:
    """Run the gateway's extraction the way a message of this kind arrives."""
    from statusmail.inbound.extract import extract_body
    from statusmail.inbound.htmltext import html_to_text
    from statusmail.inbound.trimming import trim_reply

    raw = case.path.read_bytes()
    if case.path.suffix == ".eml":
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        return extract_body(msg).text  # type: ignore[arg-type]
    text = raw.decode("utf-8", errors="replace")
    if case.path.suffix == ".html":
        return trim_reply(html_to_text(text)).text
    return trim_reply(text).text


def is_correct(case: Case) -> bool:
    return normalise(new_text_of(case)) == normalise(case.expected)


# The one list of corpus cases we know we get wrong, with why. Tests mark these
# xfail(strict=True) so a fix shows up; the bench counts them as misses.
KNOWN_MISSES: dict[str, str] = {
    "github-email-reply-parser/email_no_signature_deliminator":
        "a name | title / company block with no phone or links: only a learned signature removes it",
    "github-email-reply-parser/email_no_signature_deliminator_adds_a_middle_initial":
        "a name | title / company block with no phone or links: only a learned signature removes it",
}


def corpus_params(corpus: str) -> list:
    """pytest parameters, one id per fixture, known misses marked xfail."""
    import pytest

    params = []
    for case in load_cases(corpus):
        marks = ()
        if case.id in KNOWN_MISSES:
            marks = (pytest.mark.xfail(strict=True, reason=KNOWN_MISSES[case.id]),)
        params.append(pytest.param(case, id=case.name, marks=marks))
    return params
