"""trim_reply: the new text of a plain-text reply, quotes and signatures cut.

How the expected texts in tests/data/expected/<corpus>/<fixture>.txt were
written (by reading each fixture, not by running the trimmer):

* keep everything the sender typed above the first quote, attribution,
  forwarded or original message, including greetings and sign-offs
  ("Thanks,\\nAlex", "Regards,\\n\\nJohn Doe\\nCEO @ Acme !");
* drop "-- " (and "--", em-dash) signatures, device lines ("Sent from my
  iPhone", "Sent from a magnificent torch of pixels", "Get Outlook for iOS"),
  mailing-list footers, disclaimers, and gateway "CAUTION: external" banners;
* interleaved replies keep the sender's answers between the quotes and drop
  the quotes (tricky_18, crisp email_2, mpr email_1_8);
* a header block on the first line is this message's own header: its body
  is the text (mpr email_pl_1_*); a message that is only attributions has no
  new text, but trimming never drops a whole message: when the cut leaves
  nothing, the unquoted lines that are no attribution or client furniture are
  the text (mpr multiline_on: "asd", "On this day");
* fixtures with template placeholders ([DATE], [FROM]) are read as they are;
* a closing contact card without "-- " (a name line, then a phone number or two
  links/addresses, after a blank line) is a signature and goes; a sign-off line
  above it ("Mvh,", "Best regards,") is what the sender typed and stays
  (mpr email_sv_anon_1).
Compared after ``normalise`` (whitespace and blank lines collapsed).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from statusmail.inbound.trimming import MAX_CHARS, trim_reply

from .corpora import corpora_present, corpus_params, new_text_of, normalise

needs_corpora = pytest.mark.skipif(
    not corpora_present(), reason="../shared/corpora is absent (reply corpora not checked out)")

NEW = "Deploy is done, all green."


def new_text(body: str) -> str:
    return trim_reply(body).text


# --- corpora -----------------------------------------------------------------

@needs_corpora
@pytest.mark.parametrize("case", corpus_params("crisp"))
def test_crisp_reply_keeps_exactly_the_new_text(case):
    assert normalise(new_text_of(case)) == normalise(case.expected)


@needs_corpora
@pytest.mark.parametrize("case", corpus_params("mail-parser-reply"))
def test_mail_parser_reply_keeps_exactly_the_new_text(case):
    assert normalise(new_text_of(case)) == normalise(case.expected)


@pytest.mark.parametrize("case", corpus_params("github-email-reply-parser"))
def test_github_email_reply_parser_keeps_exactly_the_new_text(case):
    assert normalise(new_text_of(case)) == normalise(case.expected)


# --- Outlook header blocks and separators ------------------------------------

@pytest.mark.parametrize("block", [
    "From: Bob <bob@corp.example>\nSent: Monday, 3 March 2025 10:00\nTo: Team\nSubject: Build",
    "Von: Bob <bob@corp.example>\nGesendet: Montag, 3. März 2025 10:00\nAn: Team\nBetreff: Build",
    "De : Bob <bob@corp.example>\nEnvoyé : lundi 3 mars 2025 10:00\nÀ : Team\nObjet : Build",
    "De: Bob\nEnviado: lunes, 3 de marzo de 2025 10:00\nPara: Team\nAsunto: Build",
    "Da: Bob\nInviato: lunedì 3 marzo 2025 10:00\nA: Team\nOggetto: Build",
    "Van: Bob\nVerzonden: maandag 3 maart 2025 10:00\nAan: Team\nOnderwerp: Build",
    "Od: Bob\nWysłano: poniedziałek, 3 marca 2025 10:00\nDo: Team\nTemat: Build",
    "Fra: Bob\nSendt: 3. marts 2025 10:00\nTil: Team\nEmne: Build",
    "Från: Bob\nSkickat: den 3 mars 2025 10:00\nTill: Team\nÄmne: Build",
    "Lähettäjä: Bob\nLähetetty: maanantai 3. maaliskuuta 2025 10.00\nVastaanottaja: Team\nAihe: Build",
    "*From:* Bob [mailto:bob@corp.example]\n*Sent:* Monday, March 3, 2025 10:00 AM\n*To:* Team",
])
def test_outlook_header_block_is_cut_in_every_language(block):
    trimmed = trim_reply(f"{NEW}\n\n{block}\n\nThe old message.\n")
    assert trimmed.text == NEW
    assert "The old message." in trimmed.removed


def test_outlook_german_header_block_is_cut():
    body = f"{NEW}\n\nVon: Max <max@corp.example>\nGesendet: Montag\nAn: Erika\nBetreff: Test\n\nAlt."
    assert new_text(body) == NEW


def test_outlook_underscore_rule_and_header_are_cut():
    body = f"{NEW}\n________________________________\nFrom: Bob\nSent: Monday\nTo: Team\n\nOld."
    assert new_text(body) == NEW


@pytest.mark.parametrize("separator", [
    "-----Original Message-----", "----- Original Message -----", "-----Ursprüngliche Nachricht-----",
    "-------- Message d'origine --------", "-------- Oprindelig besked --------",
    "---------- Forwarded message ---------", "Begin forwarded message:",
])
def test_original_and_forwarded_message_markers_are_cut(separator):
    assert new_text(f"{NEW}\n\n{separator}\nFrom: Bob\n\nOld text.") == NEW


def test_get_outlook_for_ios_line_is_removed():
    assert new_text(f"{NEW}\n\nGet Outlook for iOS<https://aka.ms/o0ukef>\n") == NEW


# --- attributions ------------------------------------------------------------

@pytest.mark.parametrize("attribution", [
    "On Mon, Apr 2, 2012 at 6:26 PM, Megan <megan@corp.example> wrote:",
    "On Mon, Aug 26, 2019 at 4:37 PM The Hiring Engine <\nhr@corp.example> wrote:",
    "On Dec 16, 2011, at 12:47 PM, Corey Donohoe\n<reply@corp.example>\nwrote:",
    "Am 13.12.2017 um 21:11 schrieb Max <max@corp.example>:",
    "Le lun. 15 nov. 2021 à 19:42, Jean <jean@corp.example> a écrit :",
    "El lun, 15 nov 2021 a las 19:42, Juan (<juan@corp.example>) escribió:",
    "Il giorno lun 15 nov 2021 alle ore 19:42 Gio <gio@corp.example> ha scritto:",
    "Op ma 15 nov. 2021 om 19:42 schreef Jan <jan@corp.example>:",
    "Em seg., 15 de nov. de 2021 às 19:42, Ana <ana@corp.example> escreveu:",
    "W dniu 15.11.2021 o 19:42, Jan <jan@corp.example> pisze napisał:",
    "Den 24. nov. 2025 kl. 10.00 skrev Peter <peter@corp.example>:",
    "pe 20. lokakuuta 2017 klo 17.50 John Coe\n<john@corp.example> kirjoitti:",
    "2022年1月1日(金) 9:00 田中太郎 <taro@corp.example>:",
    "2022年1月1日 9:00 田中太郎 写道：",
    "ср, 30 апр. 2025 г. в 15:19, Иван <ivan@corp.example>:",
    "30.04.2025 15:19, Иван пишет написал(а):",
])
def test_quote_attribution_and_quote_are_cut(attribution):
    trimmed = trim_reply(f"{NEW}\n\n{attribution}\n\n> Older text.\n")
    assert trimmed.text == NEW
    assert "> Older text." in trimmed.removed


def test_attribution_over_unquoted_original_cuts_the_original():
    body = f"{NEW}\n\nOn Nov 26, 2013 you wrote:\n\nThe original, not quoted.\n"
    assert new_text(body) == NEW


def test_apple_mail_attribution_with_at_time_is_cut():
    body = f"{NEW}\n\nOn Apr 3, 2012, at 4:19 PM, bob <bob@corp.example> wrote:\n\n> Hi\n"
    assert new_text(body) == NEW


def test_sentence_starting_with_on_is_kept():
    body = "On the other hand, the build is green.\nOn average it takes 4 minutes."
    assert new_text(body) == body


def test_url_containing_wrote_is_kept():
    body = "Read https://example.com/on-2024-someone-wrote-about-parsing today."
    assert new_text(body) == body


# --- signatures --------------------------------------------------------------

@pytest.mark.parametrize("device", [
    "Sent from my iPhone", "Sent from my iPad", "Sent from Mail for Windows",
    "Sent from my Verizon Wireless BlackBerry", "Sent from my Samsung Galaxy smartphone.",
    "Von meinem iPhone gesendet", "Envoyé de mon iPhone", "Enviado desde mi iPhone",
    "Inviato da iPhone", "Verzonden vanaf mijn iPhone", "Skickat från min iPhone",
    "Sendt fra min iPhone", "Gesendet von Outlook für Android<https://aka.ms/AAb9ysg>",
    "Envoyé à partir de Outlook pour iOS<https://aka.ms/o0ukef>", "iPhoneから送信",
])
def test_device_signature_is_removed(device):
    trimmed = trim_reply(f"{NEW}\n\n{device}\n")
    assert trimmed.text == NEW
    assert device in trimmed.removed


def test_sent_from_in_a_sentence_is_kept():
    body = f"{NEW}\n\nSent from my desk, which is easier than my phone."
    assert new_text(body) == body


def test_dash_dash_space_signature_is_removed():
    trimmed = trim_reply(f"{NEW}\n\n-- \nAlex\nOps team\n")
    assert trimmed.text == NEW
    assert "Ops team" in trimmed.removed


def test_dash_dash_inside_a_line_is_not_a_signature():
    body = "Fixed it -- this is not a signature.\n-- first point\n-- second point"
    assert new_text(body) == body


def test_mailing_list_footer_is_removed():
    body = f"{NEW}\n\n__\nops mailing list\nops@lists.example\n"
    assert new_text(body) == NEW


def test_external_sender_banner_is_removed():
    body = f"CAUTION: This email originated from outside of the organization.\n\n{NEW}"
    assert new_text(body) == NEW


# --- quoting -----------------------------------------------------------------

def test_quoted_block_at_the_end_is_cut():
    trimmed = trim_reply(f"{NEW}\n\n> Is the deploy done?\n> Asking for a friend.\n")
    assert trimmed.text == NEW
    assert "Asking for a friend." in trimmed.removed


def test_interleaved_reply_keeps_the_answers_between_quotes():
    body = ("On Dec 15, 2024, at 2:00 PM, Jane <jane@corp.example> wrote:\n> Option A?\n\n"
            "A is great.\n\n> Option B?\n\nB has drawbacks.\n")
    assert new_text(body) == "A is great.\n\nB has drawbacks."


def test_top_posted_reply_drops_everything_below_the_quote():
    body = (f"{NEW}\nMore detail here.\n\nOn Dec 15, 2024, Jane <jane@corp.example> wrote:\n"
            "> Question?\n\nOld unquoted tail.\n")
    assert new_text(body) == f"{NEW}\nMore detail here."


def test_greater_than_inside_a_sentence_is_kept():
    body = "Latency is now > 200 ms on eu-west.\nWe need it < 100 ms."
    assert new_text(body) == body


def test_header_block_on_the_first_line_keeps_the_body_below_it():
    body = "From: Jan <jan@corp.example>\nSent: Monday\nSubject: Test\n\nHello Anna,\n\nAll good."
    assert new_text(body) == "Hello Anna,\n\nAll good."


# --- real content that looks like mail furniture -----------------------------

@pytest.mark.parametrize("body", [
    "Status: green\nOwner: alice\nNext: ship it",
    "1. Performance improved\n2. Memory reduced\n\n- bullet one\n- bullet two",
    "The data comes From: our database, not From: external sources.",
    "I wanted to talk with regards to billing.\n\nRegards to the team too.",
    "Here is the fix:\n\n```\nreturn '--\\nJohn'\n-- \nSent from my iPhone\n```\n\nPlease review.",
    "## Points\n----\n\n1. One\n\n----\n\nMore text.",
])
def test_real_content_is_never_removed(body):
    assert new_text(body) == body


def test_empty_body_gives_empty_text():
    assert trim_reply("") == trim_reply("\n\n")
    assert trim_reply("").text == ""


# --- robustness --------------------------------------------------------------

@given(st.text(max_size=3000))
@settings(max_examples=300, deadline=None)
def test_trim_reply_never_raises_and_invents_no_lines(body):
    trimmed = trim_reply(body)
    source = {line.rstrip() for line in
              body.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "").split("\n")}
    assert all(line.rstrip() in source for line in trimmed.text.split("\n") if line.strip())


_MAILISH = st.sampled_from([
    ">", "> ", ">>", "On ", "wrote:", "From: ", "Sent: ", "-- ", "--", "__________", "\n",
    "Sent from my iPhone", "<", "@", "2024", " 10:00 ", "```", "=", ":", "a", " ", "—",
    "schrieb", "Von: ", "-----Original Message-----",
])


@given(st.lists(_MAILISH, max_size=400).map("".join))
@settings(max_examples=300, deadline=None)
def test_trim_reply_finishes_on_adversarial_mail_furniture(body):
    assert isinstance(trim_reply(body).text, str)


def test_trim_reply_caps_huge_input():
    huge = ("On " + "1" * 1000 + " wrote:\n> " + "x" * 5000 + "\n") * 200
    trimmed = trim_reply(huge)
    assert len(trimmed.text) + len(trimmed.removed) <= MAX_CHARS + 1000


# --- forms of #17: each its own case -------------------------------------------

@pytest.mark.parametrize("attribution", [
    # Gmail, English, with an ISO date and a GMT offset, wrapped before "wrote:"
    "On 2026-11-26 09:14 GMT+01:00, Alice Anders <alice@corp.example>\nwrote:",
    "On Thu, 26 Nov 2026 at 09:14 GMT+1, Alice Anders <\nalice@corp.example> wrote:",
    # Gmail, German, sender first, wrapped inside the time
    "Alice Anders <alice@corp.example> schrieb am Do., 26. Nov. 2026 um\n09:14 Uhr:",
    "Alice Anders <alice@corp.example> schrieb am Do., 26. Nov. 2026,\n09:14:",
    # Gmail, Ukrainian and Russian
    "чт, 26 лист. 2026 р. о 09:14 Alice Anders <alice@corp.example> пише:",
    "чт, 26 лист. 2026 р. о 09:14 Alice Anders <\nalice@corp.example> пише:",
    "чт, 26 нояб. 2026 г. в 09:14, Alice Anders <alice@corp.example>\nнаписал:",
    "26.11.2026 09:14, Алиса пишет:",
    # Gmail in other languages of Europe and Asia
    "Alice Anders <alice@corp.example>, 26 Kas 2026 Per, 09:14 tarihinde şunu\nyazdı:",
    "Alice Anders <alice@corp.example> ezt írta (időpont: 2026. nov. 26.,\nCs, 9:14):",
    "Pe joi, 26 nov. 2026 la 09:14, Alice Anders <alice@corp.example> a\nscris:",
    "Στις Πέμ 26 Νοε 2026 στις 9:14 π.μ., ο/η Alice Anders <alice@corp.example>\nέγραψε:",
    "Vào Th 5, 26 thg 11, 2026 vào lúc 09:14 Alice Anders <alice@corp.example>\nđã viết:",
    "Pada tanggal Kam, 26 Nov 2026 pukul 09.14 Alice Anders <\nalice@corp.example> menulis:",
    "เมื่อ พฤ. 26 พ.ย. 2026 เวลา 9:14 Alice Anders <alice@corp.example>\nเขียนว่า:",
    "2026년 11월 26일 (목) 오전 9:14, Alice Anders <alice@corp.example>님이 작성:",
    "čt 26. 11. 2026 v 9:14 odesílatel Alice Anders <alice@corp.example>\nnapsal:",
    "czw., 26 lis 2026 o 09:14 Alice Anders <alice@corp.example>\nnapisał(a):",
    "Le jeu. 26 nov. 2026 à 09:14, Alice Anders <alice@corp.example> a\nécrit :",
])
def test_wrapped_and_translated_attribution_and_its_quote_are_cut(attribution):
    trimmed = trim_reply(f"{NEW}\n\n{attribution}\n\n> Older text.\n")
    assert trimmed.text == NEW
    assert "> Older text." in trimmed.removed and attribution.split("\n")[0] in trimmed.removed


def test_ukrainian_outlook_header_block_is_cut():
    body = f"{NEW}\n\nВід: Alice <alice@corp.example>\nНадіслано: 26 листопада 2026 р. 9:14\nКому: Team\nТема: Build\n\nold"
    assert new_text(body) == NEW


def test_attribution_followed_by_a_pipe_quote_is_cut():
    body = f"{NEW}\n\nOn Thu, Nov 26, 2026 at 9:14 AM Alice <alice@corp.example> wrote:\n| Older text.\n| More.\n"
    assert new_text(body) == NEW


def test_inline_answers_under_a_pipe_quote_are_kept():
    body = ("On Thu, Nov 26, 2026 at 9:14 AM Alice <alice@corp.example> wrote:\n| Is it done?\n\nYes.\n\n"
            "| And the docs?\n\nTomorrow.\n")
    assert new_text(body) == "Yes.\n\nTomorrow."


def test_a_markdown_table_is_not_a_quote():
    body = "Numbers:\n\n| region | p99 |\n| eu | 120 ms |"
    assert new_text(body) == body


@pytest.mark.parametrize("body", [f"{NEW}\u1427", f"{NEW}\n\n\u1427", f"{NEW}\n\u200b\n"])
def test_invisible_tracking_characters_are_removed(body):
    assert new_text(body) == NEW


def test_canadian_syllabics_keep_their_final_middle_dot():
    assert new_text("ᐊᐧ ᑲᐧ") == "ᐊᐧ ᑲᐧ"


def test_an_indented_code_block_with_prompts_is_not_a_quote():
    body = "Run this:\n\n    > make test\n    > make run\n\nThanks"
    assert new_text(body) == body


def test_an_indented_code_block_with_a_comparison_is_kept_whole():
    body = "Here is the fix:\n\n    if latency > 200:\n        > alert\n\nPlease review."
    assert new_text(body) == body


@pytest.mark.parametrize("card", [
    "Alice Anders\nSenior Engineer | Payments\nCorp Example GmbH\nPhone: +49 30 1234567",
    "Alice Anders\nSenior Engineer\nM: +1 555 123 4567\nwww.corp.example",
    "Alice Anders\nHead of Ops\nalice@corp.example | https://corp.example",
    "Alice Anders\nT +49 (30) 123-4567 | F +49 (30) 123-4568",
])
def test_a_contact_card_without_dash_dash_is_a_signature(card):
    trimmed = trim_reply(f"{NEW}\n\n{card}\n")
    assert trimmed.text == NEW and card.split("\n")[-1] in trimmed.removed


def test_a_sign_off_above_a_contact_card_stays():
    assert new_text(f"{NEW}\n\nBest regards,\nAlice Anders\nM: +1 555 123 4567") == f"{NEW}\n\nBest regards,"


@pytest.mark.parametrize("body", [
    f"{NEW}\n\nGrafana Dashboard\nhttps://grafana.corp.example/d/42",  # one link: a post's link
    f"{NEW}\n\nCall me at +49 30 1234567 if it breaks.",
    f"{NEW}\n\nThanks,\nAlex",
    "Alice Anders\n+49 30 1234567",  # the whole text: never dropped
])
def test_closing_lines_that_are_not_a_contact_card_stay(body):
    assert new_text(body) == body


def test_a_cut_that_would_leave_nothing_keeps_the_unquoted_text():
    body = "On Mon, Nov 23, 2026 at 9:00 AM Bob <bob@corp.example> wrote:\n\nThe numbers are in.\n"
    assert new_text(body) == "The numbers are in."


def test_a_message_of_only_quotes_and_furniture_has_no_text():
    body = "On Mon, Nov 23, 2026 at 9:00 AM Bob <bob@corp.example> wrote:\n> Old.\n\nSent from my iPhone\n"
    trimmed = trim_reply(body)
    assert trimmed.text == "" and "> Old." in trimmed.removed
