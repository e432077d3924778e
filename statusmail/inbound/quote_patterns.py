"""The words mail clients write around quoted, forwarded and signed text.

This module holds the phrase tables (per language) and the small line
classifiers built on them; ``trimming`` decides what to cut. Every test here
looks at one line, or a join of at most three short lines, and uses plain
string operations or regexes without nested quantifiers, so the cost is
linear in the line length and lines longer than ``MAX_ATTRIBUTION_CHARS`` are
rejected before any regex runs.
"""

from __future__ import annotations

import quopri
import re

MAX_ATTRIBUTION_CHARS = 400

# Outlook-style header blocks ("From: … / Sent: … / To: … / Subject: …"), the
# label before the colon, lowercased. A block needs a From-like label plus at
# least one other label nearby (see ``trimming.find_header_block``).
FROM_LABELS = frozenset({
    "from", "von", "de", "van", "od", "fra", "från", "lähettäjä", "da", "от",
    "message du", "expéditeur", "remitente", "mittente", "afzender", "nadawca",
    "avsändare", "差出人", "发件人", "寄件者", "від", "보낸 사람",
})
OTHER_LABELS = frozenset({
    "sent", "date", "to", "subject", "cc", "bcc", "reply-to", "on behalf of",
    "gesendet", "datum", "an", "betreff", "kopie",                 # German
    "envoyé", "envoyé le", "à", "a", "objet", "sujet", "copie à",  # French
    "enviado", "enviado el", "fecha", "para", "asunto",            # Spanish
    "inviato", "data", "oggetto",                                  # Italian
    "verzonden", "aan", "onderwerp",                               # Dutch
    "enviada", "assunto",                                          # Portuguese
    "wysłano", "do", "temat", "dw",                                # Polish
    "sendt", "dato", "til", "emne",                                # Danish, Norwegian
    "skickat", "till", "ämne", "kopia",                            # Swedish
    "lähetetty", "päivämäärä", "vastaanottaja", "aihe", "kopio",   # Finnish
    "отправлено", "дата", "кому", "тема", "копия",                 # Russian
    "надіслано", "копія",                                          # Ukrainian
    "받는 사람", "보낸 날짜", "제목",                                # Korean
    "送信日時", "宛先", "件名", "发送时间", "收件人", "主题", "日期",
})

# "-----Original Message-----" and forward markers, compared after the
# decoration (dashes, underscores, equal signs, stars) is stripped.
SEPARATOR_PHRASES = frozenset({
    "original message", "original-nachricht", "ursprüngliche nachricht",
    "message d'origine", "message d’origine", "mensaje original",
    "messaggio originale", "oorspronkelijk bericht", "oorspronkelijk e-mailbericht",
    "oryginalna wiadomość", "wiadomość oryginalna", "oprindelig meddelelse",
    "oprindelig besked", "opprinnelig melding", "ursprungligt meddelande",
    "alkuperäinen viesti", "mensagem original", "исходное сообщение",
    "forwarded message", "weitergeleitete nachricht", "message transféré",
    "mensaje reenviado", "messaggio inoltrato", "doorgestuurd bericht",
    "wiadomość przekazana dalej", "videresendt meddelelse", "videresendt melding",
    "vidarebefordrat meddelande", "välitetty viesti", "mensagem encaminhada",
    "пересылаемое сообщение",
})
# Apple Mail and friends announce a forward without any decoration.
FORWARD_INTRO_LINES = frozenset({
    "begin forwarded message:", "anfang der weitergeleiteten nachricht:",
    "début du message réexpédié :", "début du message réexpédié:",
    "inicio del mensaje reenviado:", "inizio messaggio inoltrato:",
    "begin doorgestuurd bericht:", "vidarebefordrat brev:",
    "videresendt besked:", "välitetty viesti alkaa:",
})

# "On <date>, <name> wrote:" in the languages senders use. The verb can sit at
# the end (English, French …) or in the middle (Danish "… skrev Name <a@b>:").
_ATTRIBUTION_VERBS = re.compile(
    r"(?<!\w)(?:wrote|writes|schrieb|a écrit|escribió|ha scritto|escreveu|"
    r"schreef|het volgende geschreven|napisał|napisała|napsal|skrev|kirjoitti|írta|"
    r"написал|написала|пишет|пише|написав|написала|a scris|έγραψε|đã viết|menulis|เขียนว่า|"
    r"yazdı)(?!\w)",
    re.IGNORECASE,
)
_CJK_ATTRIBUTION = ("写道", "のメッセージ", "書きました", "寫道", "작성")
# Words that open a wrapped attribution, so a join of lines can start there.
ATTRIBUTION_OPENERS = (
    "on ", "am ", "le ", "el ", "il ", "in data ", "em ", "op ", "den ",
    "w dniu ", "dnia ", "pe ", "ma ", "ti ", "ke ", "to ", "la ", "su ",
    "pada ", "vào ", "στις ", "เมื่อ ", "в ", "у ",
)
# Gmail in German, Turkish, Hungarian … names the sender first: "Alice <a@b> schrieb am …".
_SENDER = re.compile(r"[<(\[]?[^\s<>()@]{1,64}@[^\s<>()@]{1,255}[>)\]]?")
_DATE_OR_TIME = re.compile(r"\d{1,2}[:.h]\d{2}|(?<!\d)(?:19|20)\d{2}(?!\d)|\d日")

# Device and app signatures that end the new text wherever they appear.
STRONG_DEVICE_PREFIXES = (
    "sent from my ", "sent from mail for windows", "sent from outlook",
    "sent from yahoo mail", "sent from samsung", "get outlook for ",
    "download outlook for ", "von meinem ", "gesendet von meinem ",
    "gesendet von outlook", "gesendet mit ", "outlook für ", "envoyé de mon ",
    "envoyé depuis mon ", "envoyé à partir de ", "envoyé avec ", "obtenir outlook pour ",
    "enviado desde mi ", "enviado de mi ", "enviado desde outlook", "obtener outlook para ",
    "enviado do meu ", "enviado de meu ", "enviado do meu ", "inviato da ", "inviato dal mio ",
    "scarica outlook per ", "verzonden vanaf mijn ", "verstuurd vanaf mijn ",
    "verzonden met ", "verstuurd met ", "skickat från min ", "skickat från ",
    "sendt fra min ", "sendt fra ", "wysłane z ", "wysłano z ", "lähetetty ",
    "отправлено с ", "отправлено из ", "发自我的", "從我的",
)
STRONG_DEVICE_SUFFIXES = ("から送信", "gesendet", "gesendet.")
# "Sent from <app>" / "Sent with …" end the text only when nothing but quotes
# or signatures follow, since "Sent from Berlin" could open a real post.
WEAK_DEVICE_PREFIXES = ("sent from ", "sent with ", "sent via ", "sent using ")
MAX_DEVICE_WORDS = 8

DISCLAIMER_HEADINGS = frozenset({
    "disclaimer", "confidentiality notice", "haftungsausschluss", "aviso legal",
    "avertissement", "disclaimer:", "confidentiality notice:",
})
GREETING_WORDS = frozenset({
    "hi", "hello", "hey", "dear", "hallo", "hej", "hei", "bonjour", "salut",
    "hola", "ciao", "buongiorno", "moin", "servus", "ok", "okay", "thanks", "yes",
})

_QP_ESCAPE = re.compile(r"=[0-9A-F]{2}")
_URL_TAIL = re.compile(r"\s*[<(]\s*(?:https?|mailto):[^\s>)]{0,500}[>)]\s*$")


def header_label(line: str) -> str | None:
    """The Outlook header label (``from``, ``betreff`` …) a line starts with."""
    head = line.strip().lstrip("*").lstrip()[:40]
    for colon in (":", "："):
        idx = head.find(colon)
        if idx > 0:
            label = head[:idx].replace("*", "").strip().lower()
            if label in FROM_LABELS or label in OTHER_LABELS:
                return label
    return None


def is_separator_line(line: str) -> bool:
    """True for "-----Original Message-----", forward markers and their kin."""
    stripped = line.strip()
    if len(stripped) > 120:
        return False
    if stripped.lower() in FORWARD_INTRO_LINES:
        return True
    decorated = any(mark in stripped for mark in ("--", "__", "==", "**"))
    phrase = stripped.strip("-_=* ").lower().rstrip(":").strip()
    return decorated and phrase in SEPARATOR_PHRASES


def is_signature_delimiter(line: str) -> bool:
    """RFC 3676 §4.3 "-- " (also without its space), or an em-dash rule."""
    if line.rstrip() == "--":
        return True
    stripped = line.strip()
    return (bool(stripped) and all(c in "—–-" for c in stripped)
            and any(c in "—–" for c in stripped))


def is_rule_line(line: str) -> bool:
    """A line drawn only with dashes, underscores, equal signs or stars."""
    stripped = line.strip()
    return bool(stripped) and all(c in "-_=*—–~#" for c in stripped)


def strip_decoration(line: str) -> str:
    """Zoho writes "---- On … wrote ----": drop the dashes around a phrase."""
    return line.strip().strip("-").strip()


def is_attribution(candidate: str) -> bool:
    """True when ``candidate`` reads like "On <date>, <name> wrote:"."""
    text = strip_decoration(candidate)
    if len(text) < 8 or len(text) > MAX_ATTRIBUTION_CHARS:
        return False
    if _QP_ESCAPE.search(text):
        # Text whose quoted-printable was never undone ("a =C3=A9crit"): read it decoded.
        text = quopri.decodestring(text.encode("utf-8", "surrogateescape")).decode("utf-8", "replace")
    has_colon = text.endswith((":", "："))
    body = text.rstrip(":：").rstrip()
    has_digit_or_address = "@" in text or any(c.isdigit() for c in text)
    if not has_digit_or_address:
        return False
    if any(body.endswith(marker) for marker in _CJK_ATTRIBUTION):
        return True
    if _ATTRIBUTION_VERBS.search(text):
        if has_colon:
            return True
        # Zoho and some Gmail forms drop the colon: only trust an "On …" opener.
        return body.lower().startswith("on ") and body.lower().endswith(("wrote", "writes"))
    # Gmail in Russian, Japanese, and Yandex/Mail.ru: "<date>, Name <a@b>:".
    return has_colon and body.endswith(">") and "@" in body and bool(_DATE_OR_TIME.search(body))


def opens_attribution(line: str) -> bool:
    """Whether the line starts the way attributions start ("On …", "Am …")."""
    return strip_decoration(line).lower().startswith(ATTRIBUTION_OPENERS)


def names_sender_first(line: str) -> bool:
    """Whether the line opens with a name and an address, as some Gmail forms do."""
    head = strip_decoration(line)[:160]
    match = _SENDER.search(head)
    return match is not None and len(head[:match.start()].split()) <= 5


def starts_with_date(line: str) -> bool:
    """Whether a date or time sits near the start of the line."""
    return bool(_DATE_OR_TIME.search(strip_decoration(line)[:25]))


def _device_text(line: str) -> str | None:
    """The line without a trailing link, lowercased, if it is short enough."""
    stripped = line.strip()
    if not stripped or len(stripped) > 200:
        return None
    text = _URL_TAIL.sub("", stripped).strip().lower()
    if any(c in text for c in ",;!?:") or len(text.split()) > MAX_DEVICE_WORDS:
        return None
    return text


def is_strong_device_signature(line: str) -> bool:
    """"Sent from my iPhone", "Get Outlook for iOS" and their translations."""
    text = _device_text(line)
    if text is None:
        return False
    return text.startswith(STRONG_DEVICE_PREFIXES) or (
        text.startswith("von meinem ") and text.endswith(STRONG_DEVICE_SUFFIXES)
    ) or text.endswith("から送信")


def is_weak_device_signature(line: str) -> bool:
    """"Sent from TypeApp", "Sent with Sparrow": a signature if nothing new follows."""
    text = _device_text(line)
    return text is not None and text.startswith(WEAK_DEVICE_PREFIXES)


def is_disclaimer_heading(line: str) -> bool:
    return line.strip().lower() in DISCLAIMER_HEADINGS


def is_external_banner(line: str) -> bool:
    """Gateways stamp "CAUTION: This email originated from outside …" on top."""
    lowered = line.strip().lower()[:300]
    return lowered.startswith(("caution:", "[external]", "external email", "warning:")) and (
        "outside" in lowered or "external" in lowered[9:]
    )


def is_mailing_list_footer_start(line: str) -> bool:
    """Mailman footers read "<list> mailing list" under a rule."""
    return line.strip().lower().endswith("mailing list")


# Contact-card signatures without a "-- " line (trimming.drop_contact_block).
MAX_CONTACT_LINES = 8
_PHONE = re.compile(
    r"^(?:(?:tel|phone|mobile|mob|cell|fax|direct|office|telefon|tél|tel\.|móvil|handy|m|t|p|f|d|o|w)\b\.?\s*[:.]?\s*)?"
    r"\+?\(?\d[\d\s().\-/]{6,}\d$", re.IGNORECASE)
_LINK = re.compile(r"^(?:https?://|www\.)\S+$|^\S+@\S+\.\w+$", re.IGNORECASE)
SIGN_OFFS = frozenset({
    "best", "best regards", "regards", "kind regards", "warm regards", "thanks", "thank you", "cheers",
    "many thanks", "best wishes", "sincerely", "mit freundlichen grüßen", "viele grüße", "beste grüße",
    "liebe grüße", "grüße", "gruß", "cordialement", "bien à vous", "saludos", "un saludo", "cordiali saluti",
    "saluti", "met vriendelijke groet", "groeten", "med vänlig hälsning", "hälsningar", "med venlig hilsen",
    "mvh", "pozdrawiam", "ystävällisin terveisin", "с уважением", "з повагою",
})


def is_sign_off(line: str) -> bool:
    """"Best regards,", "Viele Grüße" …: a closing formula on a line of its own."""
    return line.strip().rstrip(",.!").strip().lower() in SIGN_OFFS


def is_name_line(line: str) -> bool:
    """Two to four words, each capitalised, no sentence punctuation: a person's name."""
    words = line.strip().split()
    return 2 <= len(words) <= 4 and all(w[:1].isupper() and w.replace("-", "").replace(".", "").replace("'", "").isalpha()
                                        for w in words) and not line.strip().endswith((".", ":", "?", "!"))


def contact_kinds(line: str) -> list[str]:
    """What contact data a line holds: "phone" (a number with its label), "link" (a bare
    URL or address); parts split at " | " as Outlook cards write them."""
    text = line.strip()
    if not text or len(text) > 80:
        return []
    kinds = []
    for part in re.split(r"\s[|·•]\s", text):
        if _PHONE.match(part.strip()):
            kinds.append("phone")
        elif _LINK.match(part.strip()):
            kinds.append("link")
    return kinds


def is_contact_card(lines: list[str]) -> bool:
    """A phone number, or two links or addresses: contact data, not a post's link."""
    kinds = [kind for line in lines for kind in contact_kinds(line)]
    return "phone" in kinds or kinds.count("link") >= 2
