"""Issue 13, languages: a participant's language, script translations, the service's own words
from message catalogues (English and Welsh), Welsh yes/no and commands, and staff-language
storage with the answer's language noted."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from babel.messages.pofile import read_po
from sqlalchemy import select

from bot import engine, i18n
from bot.channels.sms import render as sms
from bot.channels.telegram import render as telegram
from bot.channels.voice import render as voice
from bot.config import load_settings
from bot.conversations import inbox
from bot.cycle.lint import lint_file
from bot.cycle.panel import RowError, clean
from bot.engine import Ask, Reply
from bot.engine.keywords import Command, classify
from bot.scripts.survey import load_file, load_text
from bot.storage.models import Answer, Participant
from tests import people
from tests.conftest import CONVERSATIONS

HEAR_BACK = load_file(CONVERSATIONS / "hear-back.yaml")
CY = {"name": "Gwen Davies", "org": "Age Better", "language": "cy"}
NOW = datetime(2026, 11, 26, 11, 0, tzinfo=UTC)
SETTINGS = load_settings({"DATABASE_URL": "sqlite://", "ORG_NAME": "Age Better"})


def test_every_service_sentence_has_a_welsh_translation_with_the_same_blanks():
    with (i18n.LOCALE_DIR / "messages.pot").open("rb") as f:
        template = read_po(f)
    with (i18n.LOCALE_DIR / "cy" / "LC_MESSAGES" / "messages.po").open("rb") as f:
        welsh = {m.id: m.string for m in read_po(f, locale="cy") if m.id}
    ids = [m.id for m in template if m.id]
    assert len(ids) > 50
    for msgid in ids:
        assert welsh.get(msgid), f"no Welsh for {msgid!r}"
        blanks = sorted(re.findall(r"{\w+}", msgid))
        assert sorted(re.findall(r"{\w+}", welsh[msgid])) == blanks, msgid


def test_the_catalogue_knows_every_sentence_the_code_marks():
    # A sentence added to the code but not extracted would be said in English to Welsh speakers.
    with (i18n.LOCALE_DIR / "messages.pot").open("rb") as f:
        known = {m.id for m in read_po(f) if m.id}
    source = "\n".join(p.read_text() for p in (i18n.LOCALE_DIR.parent).rglob("*.py"))
    # The language may be a call itself: t(_lang(context), "...").
    marked = set(re.findall(r'\b(?:t\((?:[^,()]|\([^()]*\))+,|N_\()\s*"([^"\n]+)"\s*[,)]', source))
    assert marked and marked <= known, sorted(marked - known)


def test_a_survey_in_welsh_with_the_services_words_in_welsh_too():
    first = engine.begin(HEAR_BACK, CY)
    ask = next(p for p in first.prompts if isinstance(p, Ask))
    text = sms.render(first.prompts)[0]
    assert text.startswith("Helo Gwen.")
    assert "A gawn ni anfon neges fer atoch" in text and text.endswith("Atebwch IE neu NA")
    assert [b.text for row in telegram.keyboard(ask).inline_keyboard for b in row] == ["Ie", "Na"]
    assert "Am Ie, pwyswch 1." in voice.question_speech(ask)


def test_welsh_yes_sets_recontact_and_is_stored_in_english_with_its_language():
    first = engine.begin(HEAR_BACK, CY)
    step = engine.step(HEAR_BACK, first.state, Reply("Ydw"), CY)
    (answer,) = step.answers
    assert (answer.value, answer.label, answer.language) == ("yes", "Yes", "cy")
    assert step.consent == ("recontact_yes",)
    options = sms.render(step.prompts)[0]
    assert "1 am Drwy neges destun" in options
    # An English label still counts, and is stored as the script has it.
    last = engine.step(HEAR_BACK, step.state, Reply("by phone call"), CY)
    assert last.answers[0].label == "By phone call" and last.answers[0].language == "cy"
    assert [p.text for p in last.prompts] == ["Diolch. Gallwch ateb STOP ar unrhyw adeg."]


def test_a_miss_is_asked_again_in_welsh():
    first = engine.begin(HEAR_BACK, CY)
    again = engine.step(HEAR_BACK, first.state, Reply("efallai"), CY)
    assert again.prompts[0].retry == (
        "Mae'n ddrwg gennym, ni wnaethom ddeall hynny. Atebwch gyda IE neu NA, os gwelwch yn dda."
    )


def test_cymraeg_switches_without_answering_or_missing():
    context = {"name": "Gwen", "org": "Age Better"}
    first = engine.begin(HEAR_BACK, context)
    switched = engine.step(HEAR_BACK, first.state, Reply("CYMRAEG"), context)
    assert switched.language == "cy" and not switched.answers
    assert switched.state == first.state
    assert switched.prompts[0].text.startswith("A gawn ni")
    back = engine.step(HEAR_BACK, first.state, Reply("english please"), CY)
    assert back.language == "en" and back.prompts[0].text.startswith("May we send you")
    idle = engine.after_end(Reply("Cymraeg"), context)
    assert idle.language == "cy"
    assert idle.prompts[0].text == "Byddwn yn ysgrifennu atoch yn Gymraeg."


def test_welsh_commands():
    assert classify("HEPGOR") is Command.SKIP
    assert classify("cymorth") is Command.HELP
    assert classify("ailadrodd") is Command.REPEAT
    assert classify("stopio") is Command.STOP


def test_lint_reports_a_prompt_with_no_translation(tmp_path):
    source = (CONVERSATIONS / "hear-back.yaml").read_text()
    source = source.replace("          post: Drwy'r post\n", "")
    path = tmp_path / "hear-back.yaml"
    path.write_text(source)
    report = lint_file(path)
    assert report.errors == []
    assert f"{path}: question 'channel': no cy label for option 'post'" in report.warnings
    untranslated = load_text(
        "id: s\ntitle: t\ntranslations: {cy: {}}\nquestions:\n  - {id: a, type: yesno, ask: A}\n",
        "s.yaml",
    )
    path = tmp_path / "s.yaml"
    path.write_text(untranslated.source)
    assert f"{path}: question 'a': no cy translation of ask" in lint_file(path).warnings


def test_translations_are_checked_against_the_script():
    from bot.scripts.survey import SurveyError

    bad = (
        (CONVERSATIONS / "hear-back.yaml").read_text().replace("          post:", "          fax:")
    )
    try:
        load_text(bad.replace("  cy:", "  fr:", 1), "h.yaml")
    except SurveyError as exc:
        joined = "\n".join(exc.problems)
    assert "translations.fr: not a language we can translate into (we have: cy)" in joined
    try:
        load_text(bad, "h.yaml")
    except SurveyError as exc:
        joined = "\n".join(exc.problems)
    assert "no option 'fax' in question 'channel'" in joined


def test_import_takes_a_language_column():
    assert clean(2, {"phone": "07700 900123", "language": "Cymraeg"}).language == "cy"
    assert clean(2, {"phone": "07700 900123", "language": "cy"}).language == "cy"
    try:
        clean(2, {"phone": "07700 900123", "language": "fr"})
    except RowError as exc:
        assert "language must be one of en, cy" in str(exc)
    else:
        raise AssertionError("fr accepted")


def test_texting_cymraeg_keeps_the_language_for_next_time(database):
    from bot.scripts.survey import scan

    keywords = scan(CONVERSATIONS).keywords
    with database.session() as session:
        pid = people.person(session, phone="+447700900123", name="Gwen").id

    def send(text: str):
        received = inbox.Received(channel="sms", text=text, inbound=Reply(text), participant_id=pid)
        return inbox.receive(database, SETTINGS, received, NOW, keywords)

    send("CYMRAEG")  # no survey yet
    with database.session() as session:
        assert session.get(Participant, pid).language == "cy"
    started = send("HEARBACK")
    assert "A gawn ni" in started.replies[0]
    send("ie")
    send("3")
    with database.session() as session:
        rows = session.scalars(select(Answer).order_by(Answer.id)).all()
        assert [(a.label, a.language) for a in rows] == [("Yes", "cy"), ("By post", "cy")]


def test_subject_access_shows_the_language_and_erasure_removes_it(database):
    from bot import privacy

    with database.session() as session:
        person = people.person(session, phone="+447700900124", name="Gwen", language="cy")
        assert privacy.subject_access(session, person)["language"] == "cy"
        privacy.erase(session, load_settings({}), person)
        assert person.language is None


def test_a_language_name_that_answers_the_question_is_an_answer():
    survey = load_text(
        """id: s
title: t
questions:
  - {id: home, type: text, ask: "Which language do you speak at home?"}
  - id: prefer
    type: choice
    ask: Which do you prefer?
    options: [{value: en, label: English}, {value: cy, label: Welsh}]
""",
        "s.yaml",
    )
    context = {"name": "Gwen"}
    first = engine.begin(survey, context)
    said = engine.step(survey, first.state, Reply("Welsh"), context)
    assert said.language is None and said.answers[0].value == "Welsh"
    chose = engine.step(survey, said.state, Reply("english"), context)
    assert chose.language is None and chose.answers[0].value == "en"
    shouted = engine.step(survey, said.state, Reply("CYMRAEG"), context)
    assert shouted.language == "cy" and not shouted.answers


def test_a_survey_with_no_welsh_is_held_in_english_whole_not_half_and_half():
    untranslated = load_text(
        "id: u\ntitle: U\nquestions:\n"
        '  - {id: useful, type: scale, ask: "How useful?", min: 1, max: 5, labels: {1: Not useful}}\n',
        "u.yaml",
    )
    (text,) = sms.render(engine.begin(untranslated, CY).prompts)
    assert "Reply with a number from 1 (Not useful) to 5" in text
    assert "Atebwch" not in text
    # Their Welsh still holds for what the service says outside the survey.
    idle = engine.after_end(Reply("beth?"), CY)
    assert idle.prompts[0].text.startswith("Dyma Age Better")


def test_help_stop_and_their_way_to_a_person_fit_two_texts_in_both_languages():
    """CONTACT_PHONE is said in HELP and after STOP; with none, HELP says how else to reach
    staff. The longest ORG_NAME and CONTACT_PHONE allowed keep each within 2 GSM-7 texts."""
    from bot.scripts.gsm import sms_size

    org = "A" * 60
    for language in ("en", "cy"):
        for contact in ("0300 123 4567", "+44 29 2000 0000 00 00 0", None):
            context = {"name": "Gwen", "org": org, "language": language, "contact": contact}
            helped = engine.help_text(context)
            for text in (helped, engine.idle_help_text(context), engine.stopped_text(context)):
                size = sms_size(text)
                assert (size.encoding, size.segments <= 2) == ("GSM-7", True), (text, size)
            stopped = engine.stopped_text(context)
            if contact:
                assert contact in helped and contact in stopped
                assert contact in engine.idle_help_text(context)
            else:
                assert helped.endswith(
                    "contact us in the usual way."
                    if language == "en"
                    else "cysylltwch gyda ni yn y ffordd arferol."
                )
    welsh = engine.help_text({"org": "Age Better", "language": "cy", "contact": "0300 123 4567"})
    assert welsh.endswith("I siarad gyda pherson, ffoniwch 0300 123 4567.")
