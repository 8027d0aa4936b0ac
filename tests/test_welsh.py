"""Issue 20, Welsh: the words Welsh texts offer (and understand), the organisation's Welsh name
(ORG_NAME_CY) in Welsh sentences, "who is this?" in Welsh, and every reply the engine makes,
with the question after it, sent in texts of at most two segments each, in both languages,
with the longest ORG_NAME and CONTACT_PHONE allowed."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from bot import channels, engine
from bot.channels.sms import SMS
from bot.channels.sms import render as sms
from bot.channels.telegram import render as telegram
from bot.channels.voice.call import Said, Turn
from bot.config import ORG_NAME_MAX, ConfigError, load_settings
from bot.cycle.lint import lint_file
from bot.engine import Ask, Reply, Say
from bot.engine.keywords import Command, classify
from bot.i18n import t
from bot.scripts.gsm import sms_size
from bot.scripts.survey import Question, Survey, discover, load_file, load_text
from tests.conftest import CONVERSATIONS

HEAR_BACK = load_file(CONVERSATIONS / "hear-back.yaml")
LONGEST_ORG = "Age Better Cardiff and the Vale Older People's Involvement Team"[:ORG_NAME_MAX]
LONGEST_CONTACT = "+44 29 2000 0000 00 00 0"  # CONTACT_PHONE's 24 characters
CY = {"name": "Gwen Davies", "org": "Age Better", "language": "cy"}


# --- the words ----------------------------------------------------------------------------


def test_welsh_help_and_skip_offer_the_welsh_words_and_the_english_ones():
    helped = engine.help_text(CY)
    assert "AILADRODD (REPEAT)" in helped and "HEPGOR (SKIP)" in helped and "STOP" in helped
    optional = Question(id="why", type="text", ask="Pam?", optional=True)
    ask = engine.Ask(question=optional, text="Pam?", number=1, total=1, language="cy")
    assert sms.question_text(ask).endswith("Neu atebwch HEPGOR (SKIP) i adael yr un hon allan.")
    # In Telegram the English words are the commands, and say so.
    assert "AILADRODD (/repeat)" in telegram.for_telegram(helped)


def test_the_welsh_stop_text_keeps_start_which_twilio_lifts_its_block_for():
    # Twilio lifts its own block on a number only for START, YES or UNSTOP: someone told to
    # send DECHRAU would stay blocked there, so the stop text says START.
    stopped = engine.stopped_text(CY)
    assert "Atebwch START" in stopped and stopped.startswith("Ni fyddwch yn clywed gan Age")


@pytest.mark.parametrize(
    ("word", "command"),
    [
        ("AILADRODD", Command.REPEAT),
        ("eto", Command.REPEAT),
        ("Hepgor", Command.SKIP),
        ("sgipio", Command.SKIP),
        ("DECHRAU", Command.START),
        ("ailddechrau", Command.START),
        ("cymorth", Command.HELP),
        ("helpu", Command.HELP),
        ("stopio", Command.STOP),
        ("/ailadrodd", Command.REPEAT),
        # The English words keep working for Welsh speakers.
        ("REPEAT", Command.REPEAT),
        ("skip", Command.SKIP),
        ("START", Command.START),
        ("help", Command.HELP),
    ],
)
def test_welsh_words_and_english_ones_are_understood(word, command):
    assert classify(word) is command


def test_the_welsh_words_work_in_a_welsh_survey():
    first = engine.begin(HEAR_BACK, CY)
    repeated = engine.step(HEAR_BACK, first.state, Command.REPEAT, CY)
    assert isinstance(repeated.prompts[0], Ask) and not repeated.answers
    skipped = engine.step(HEAR_BACK, first.state, classify("HEPGOR") or Reply(""), CY)
    # Consent to hear back needs an answer: told so, in Welsh, not skipped.
    assert "Mae angen ateb" in sms.render(skipped.prompts)[0] and not skipped.answers


@pytest.mark.parametrize(
    "asked",
    ["pwy sydd yna?", "Pwy sy'na?", "Helo, pwy ydych chi?", "pwy yw hwn?", "Beth yw hwn?"],
)
def test_who_is_this_in_welsh_is_told_who_we_are_not_a_miss(asked):
    first = engine.begin(HEAR_BACK, CY)
    step = engine.step(HEAR_BACK, first.state, Reply(asked), CY)
    assert step.state.misses == 0 and not step.answers
    assert step.prompts[0].text.startswith("Age Better sydd yma.")
    assert isinstance(step.prompts[1], Ask)


# --- the organisation's Welsh name ----------------------------------------------------------


def test_org_name_cy_is_read_and_checked_like_org_name():
    settings = load_settings({"ORG_NAME": "Age UK Cardiff", "ORG_NAME_CY": " Age Cymru Caerdydd "})
    welsh = {"org": settings.org_name, "language": "cy"}
    english = {"org": settings.org_name, "language": "en"}
    assert engine.who_text(welsh).startswith("Age Cymru Caerdydd sydd yma.")
    assert engine.help_text(english).startswith("This is Age UK Cardiff.")
    assert settings.org_name == "Age UK Cardiff"  # what staff see and English says
    with pytest.raises(ConfigError) as caught:
        load_settings({"ORG_NAME": "Age UK", "ORG_NAME_CY": "A" * 61})
    assert str(caught.value).startswith("ORG_NAME_CY must be at most 60 characters")
    assert "\n" not in str(caught.value)


def test_without_org_name_cy_welsh_says_the_org_name_and_the_default_is_translated():
    named = load_settings({"ORG_NAME": "Age Better"}).org_name
    assert engine.who_text({"org": named, "language": "cy"}).startswith("Age Better sydd yma.")
    default = load_settings({}).org_name
    assert default == "our involvement team"
    assert engine.help_text({"org": default, "language": "cy"}).startswith(
        "ein gwasanaeth ymgysylltu sydd yma."
    )
    assert engine.help_text({"org": default}).startswith("This is our involvement team.")


def test_a_welsh_call_names_the_org_by_its_welsh_name():
    settings = load_settings({"ORG_NAME": "Age UK Cardiff", "ORG_NAME_CY": "Age Cymru Caerdydd"})
    turn = Turn(settings, language="cy")
    turn.say([Said("Hello, this is a call from {org}.", org=settings.org_name)])
    assert "Helo, galwad gan Age Cymru Caerdydd yw hon." in str(turn)
    english = Turn(settings)
    english.say([Said("Hello, this is a call from {org}.", org=settings.org_name)])
    assert "Hello, this is a call from Age UK Cardiff." in str(english)


def test_a_welsh_script_names_the_org_by_its_welsh_name_too():
    survey = load_file(CONVERSATIONS / "hear-back.yaml")
    org = load_settings({"ORG_NAME": "Age UK", "ORG_NAME_CY": "Age Cymru"}).org_name
    ctx = engine._ctx({"org": org, "language": "cy"}, survey)
    assert ctx["org"] == "Age Cymru"


# --- two segments -----------------------------------------------------------------------------


def _surveys() -> Iterator[tuple[Survey, str]]:
    for path in discover(CONVERSATIONS).values():
        survey = load_file(path)
        yield survey, "en"
        if "cy" in survey.translations:
            yield survey, "cy"


def _longest_answers(survey: Survey, before: Question) -> dict[str, str]:
    """An answer to every earlier question, the longest label where there is a choice, so a
    question that pipes one in is as long as it gets."""
    answered = {}
    for question in survey.asked[: survey.asked.index(before)]:
        if question.choices:
            answered[question.id] = max(question.choices, key=lambda o: len(o.label)).value
        elif question.type == "date":
            answered[question.id] = "1948-09-30"
        else:
            answered[question.id] = "x" * 30
    return answered


def _replies(survey: Survey, question: Question, ctx: dict[str, Any]) -> dict[str, list[Any]]:
    """Every kind of reply the engine makes while a question waits, with what follows it (the
    question, or the next one): made by `engine.step` from what a person sends, where a
    message can bring it about, and asked of the engine directly where it cannot."""
    lang = ctx["language"]
    waiting = engine.State(question.id, answered=_longest_answers(survey, question))

    def sent(inbound: Any, state: engine.State = waiting) -> list[Any]:
        return list(engine.step(survey, state, inbound, ctx).prompts)

    replies = {
        "help": sent(Command.HELP),
        "who is this": sent(Reply("pwy sydd yna?" if lang == "cy" else "who is this?")),
        "started": sent(Command.START),
        "repeat": sent(Command.REPEAT),
        "skip": sent(Command.SKIP),
        "no words": sent(Reply("")),
        "thanks": sent(Reply("ok")),
        "confirm stop": sent(Reply("please stop texting me")),
        "carry on": sent(Reply("no"), replace(waiting, stop_asked=True)),
        "miss": sent(Reply("purple elephants")),
        "noted": sent(Reply("purple elephants"), replace(waiting, misses=1)),
        "too long": sent(Reply("x" * 2000)),
        # Said alone: nothing follows a stop, and nothing is waiting after the end.
        "stopped": sent(Command.STOP),
        "idle help": list(engine.after_end(Reply("hello"), ctx).prompts),
        "welcome": list(engine.after_end(Reply("thanks"), ctx).prompts),
        "closed": list(engine.after_end(Reply("2"), ctx, closed=survey).prompts),
    }
    for reason in (*engine.SORRY_FOR, "unreadable"):
        replies[f"re-prompt {reason}"] = [engine.ask_again(survey, question, ctx, "x", reason)]
    for retry in (
        "This one needs an answer, but any answer is fine.",
        "We could not find any words in your message.",
    ):
        replies[retry] = [engine.ask(survey, question, ctx, retry=t(lang, retry))]
    if question.choices:
        answer = engine.parsing.Answer(question.choices[-1].value, question.choices[-1].label)
        replies["did you mean"] = [engine.did_you_mean(survey, question, answer, ctx)]
    return replies


@pytest.mark.parametrize("contact", [None, LONGEST_CONTACT], ids=["no-contact", "contact"])
def test_every_engine_reply_with_the_question_costs_two_segments_in_all(contact):
    """HELP before a question was 2+2 segments with a 60-character ORG_NAME, the Welsh "who
    is this?" 4 (one circumflex made it UCS-2), Welsh HELP before hear-back's question 2+1:
    each text kept to 2, but the person paid for, and read, all of them. Now, for every
    question of every shipped script (all of them lint-clean), in both languages, with the
    longest ORG_NAME and CONTACT_PHONE, all the texts one reply sends cost 2 segments at
    most: the engine's replies in their short wording where the full one leaves no room."""
    checked = shortened = 0
    for survey, language in _surveys():
        ctx = {"name": "Margaret", "org": LONGEST_ORG, "language": language, "contact": contact}
        local = survey.in_language(language)
        for question in survey.asked:
            for kind, prompts in _replies(survey, question, ctx).items():
                texts = SMS.render_replies(prompts, LONGEST_ORG)
                where = (survey.id, language, question.id, kind, texts)
                assert sum(sms_size(text).segments for text in texts) <= 2, where
                said = [p for p in prompts if isinstance(p, Say)]
                for prompt in said:
                    for wording in (prompt.text, *prompt.shorter):
                        assert sms_size(wording).encoding == "GSM-7", (kind, wording)
                if said and prompts[0] is said[0]:
                    wordings = (said[0].text, *said[0].shorter)
                    assert any(texts[0].startswith(w) for w in wordings), where
                    shortened += not texts[0].startswith(said[0].text)
                asked = [p for p in prompts if isinstance(p, Ask)]
                if asked and asked[-1].question.id == question.id and kind != "did you mean":
                    assert local.question(question.id).ask.split("{")[0][:20] in texts[-1]
                checked += 1
    assert checked > 800 and shortened > 20


def test_every_shipped_script_is_lint_clean_in_both_languages():
    # The rule above holds for questions lint accepts: these are all of them.
    for survey, _ in _surveys():
        assert lint_file(survey.path).warnings == [], survey.id


def test_the_short_wording_is_for_texts_only():
    """A text beside a long question says HELP in its fewest words, which still name us; WhatsApp (no segments,
    1,600 characters a message) and Telegram say it all; a short question keeps it all."""
    guide = load_file(CONVERSATIONS / "guide-title.yaml")
    ctx = {"name": "Margaret", "org": LONGEST_ORG, "contact": LONGEST_CONTACT}
    first = engine.begin(guide, ctx)
    prompts = engine.step(guide, first.state, Command.HELP, ctx).prompts
    full = engine.help_text(ctx)
    (text,) = SMS.render_replies(prompts, LONGEST_ORG)
    # Who we are and how to stop, always (the contract's HELP); the way to a person goes first.
    assert text.startswith(f"This is {LONGEST_ORG}. Reply STOP to stop all messages.\n")
    (whatsapp,) = channels.get("whatsapp").render_replies(prompts, LONGEST_ORG)
    assert whatsapp.startswith(full)
    assert channels.get("telegram").render_body(prompts, LONGEST_ORG).count(LONGEST_ORG) == 1
    # Beside a shorter question, HELP still says who we are, in fewer words.
    waiting = engine.State("channel", answered={"recontact": "yes"})
    (named,) = SMS.render_replies(engine.step(HEAR_BACK, waiting, Command.HELP, ctx).prompts, "")
    assert named.startswith(f"This is {LONGEST_ORG}. Reply STOP to stop all messages. To speak")
    # Where the full reply fits beside the question, a text says it all.
    short_org = {**ctx, "org": "Age Better"}
    (beside,) = SMS.render_replies(
        engine.step(
            HEAR_BACK, engine.begin(HEAR_BACK, short_org).state, Command.HELP, short_org
        ).prompts,
        "Age Better",
    )
    assert beside.startswith(engine.help_text(short_org)) and beside.endswith("Reply YES or NO")


def test_a_re_prompt_beside_a_long_question_says_sorry_and_lets_the_question_say_how():
    survey = load_text(
        """id: s
title: t
questions:
  - id: age
    type: number
    ask: "{long}"
    min: 18
    max: 120
""".replace("{long}", "How old are you? " + "Please think about it carefully. " * 6),
        "s.yaml",
    )
    question = survey.question("age")
    again = engine.ask_again(survey, question, {}, "130", "out_of_range")
    (text,) = SMS.render_replies([again], "us")
    assert text.startswith("Sorry, that is outside the range we can take.\nHow old are you?")
    assert "Please reply with" not in text and text.endswith("Reply with a number from 18 to 120")
    # A call and Telegram keep what the question expects, with the sorry.
    assert again.retry and "Please reply with a number from 18 to 120." in again.retry


def test_beside_a_question_with_no_room_left_the_reply_goes_first_in_its_fewest_words():
    # Lint warns of such a question; if it is sent anyway, the reply goes first, whole, in a
    # text of its own, in the fullest wording of those that cost least (1 segment + the
    # question's 2): here, still naming us.
    survey = load_text(
        "id: s\ntitle: t\nquestions:\n  - id: a\n    type: yesno\n"
        f'    ask: "{"Please tell us " + "very " * 50 + "much?"}"\n',
        "s.yaml",
    )
    ctx = {"org": LONGEST_ORG, "contact": LONGEST_CONTACT}
    prompts = engine.step(survey, engine.State("a"), Command.HELP, ctx).prompts
    helped, question = SMS.render_replies(prompts, "")
    assert helped == engine.help_say(ctx).shorter[0] and sms_size(helped).segments == 1
    assert helped.startswith(f"This is {LONGEST_ORG}. Reply STOP to stop all messages.")
    assert question.startswith("Please tell us very") and sms_size(question).segments == 2


def test_a_reply_and_a_short_question_stay_one_text():
    ctx = {"name": "Margaret", "org": LONGEST_ORG, "language": "en", "contact": LONGEST_CONTACT}
    first = engine.begin(HEAR_BACK, ctx)
    for inbound in (Command.HELP, Reply("who is this?"), Reply("purple"), Command.START):
        (text,) = sms.render(engine.step(HEAR_BACK, first.state, inbound, ctx).prompts)
        assert sms_size(text).segments <= 2 and text.endswith("Reply YES or NO")


def test_welsh_who_is_this_with_the_question_is_two_gsm_segments_at_most():
    ctx = {**CY, "org": LONGEST_ORG, "contact": LONGEST_CONTACT}
    first = engine.begin(HEAR_BACK, ctx)
    texts = sms.render(engine.step(HEAR_BACK, first.state, Reply("pwy sydd yna?"), ctx).prompts)
    assert texts[0].startswith(f"{LONGEST_ORG} sydd yma.")
    assert [sms_size(text).encoding for text in texts] == ["GSM-7"] * len(texts)
    assert sum(sms_size(text).segments for text in texts) <= 2


def test_the_services_welsh_for_texts_has_no_circumflex():
    """One `â` or `ô` makes a whole text UCS-2 (67 characters a segment, not 153): every
    Welsh sentence a text can carry is written with GSM-7 words ("gyda chi" for "â chi").
    A call's own sentences are spoken, never counted in segments."""
    import re

    from babel.messages.pofile import read_po

    from bot import i18n
    from bot.scripts.gsm import non_gsm_characters

    # The source outside the call's own modules, with "implicitly " "joined" strings joined.
    written = re.sub(
        r'"\s*\n\s*"',
        "",
        "\n".join(
            p.read_text() for p in i18n.LOCALE_DIR.parent.rglob("*.py") if "voice" not in p.parts
        ),
    )
    with (i18n.LOCALE_DIR / "cy" / "LC_MESSAGES" / "messages.po").open("rb") as f:
        catalogue = [m for m in read_po(f, locale="cy") if m.id and isinstance(m.id, str)]
    texted = [m for m in catalogue if f'"{m.id}"' in written]
    assert len(texted) > 40
    for message in texted:
        assert not non_gsm_characters(message.string), (message.id, message.string)
