from bot import engine
from bot.channels.sms import render as sms
from bot.channels.telegram import render as telegram
from bot.channels.voice import render as voice
from bot.engine import Reply
from bot.engine.keywords import Command
from bot.scripts.survey import load_text

SURVEY = load_text(
    """
id: c
title: Channels
intro: "Hello {{ name }}. Reply STOP to opt out."
questions:
  - id: format
    type: choice
    ask: Which format?
    options:
      - {value: printed, label: Printed}
      - {value: digital, label: Digital}
      - {value: both, label: Both}
  - id: useful
    type: scale
    ask: How useful?
    min: 1
    max: 5
    labels: {1: Not useful, 5: Very useful}
  - id: why
    type: text
    ask: Why?
    optional: true
  - id: ok
    type: yesno
    ask: May we tell you?
  - id: many
    type: number
    ask: How many?
""",
    "c.yaml",
)
CTX = {"name": "Ann", "org": "Age Better"}


def ask(qid, retry=None):
    return engine.ask(SURVEY, SURVEY.question(qid), CTX, retry)


def test_sms_choice_is_one_short_line():
    (text,) = sms.render([ask("format")])
    assert text == "Which format?\nReply 1 for Printed, 2 for Digital, 3 for Both"


def test_sms_scale_yesno_and_optional_text():
    assert sms.render([ask("useful")]) == [
        "How useful?\nReply with a number from 1 (Not useful) to 5 (Very useful)"
    ]
    assert sms.render([ask("ok")]) == ["May we tell you?\nReply YES or NO"]
    assert sms.render([ask("why")]) == ["Why?\nOr reply SKIP to leave this one out."]


def test_sms_step_is_one_message_in_order():
    step = engine.begin(SURVEY, CTX)
    (text,) = sms.render(step.prompts)
    assert text.startswith("Hello Ann. Reply STOP to opt out.\n\nWhich format?")


def test_sms_parse():
    assert sms.parse(" stop ") is Command.STOP
    assert sms.parse("2") == Reply("2")


def test_voice_choice_is_spoken_question_first_one_idea_a_sentence():
    turn = voice.render([ask("format")])
    assert turn.say == [
        "Which format?",
        "For Printed, press 1.",
        "For Digital, press 2.",
        "For Both, press 3.",
        "You can also say your answer.",
        "To hear this again, press star.",
    ]
    assert turn.gather == voice.Gather(num_digits=1, finish_on_key="")


def test_voice_text_question_is_recorded_and_skippable_with_zero():
    turn = voice.render([ask("why")])
    assert turn.gather.record
    assert "Or wait 10 seconds for the tone, then say your answer." in turn.say
    assert "To skip this question, press 0." in turn.say
    assert voice.parse("0", SURVEY.question("why")) is Command.SKIP
    assert voice.parse("0", SURVEY.question("format")) == Reply(
        "0"
    )  # not optional: an ordinary miss


def test_voice_number_waits_for_hash_and_no_key_at_a_question_stops():
    assert voice.render([ask("many")]).gather == voice.Gather(num_digits=None, finish_on_key="#")
    assert voice.parse("*", SURVEY.question("format")) is Command.REPEAT
    # Hash ends an entry; on its own it is a miss, never "stop everything".
    assert voice.parse("#", SURVEY.question("format")) == Reply("")
    assert voice.parse("#", SURVEY.question("many")) == Reply("")
    assert voice.parse("9", SURVEY.question("many")) == Reply("9")
    assert voice.parse("12#", SURVEY.question("many")) == Reply("12")


def test_voice_skip_key_is_never_an_answer():
    scored = load_text(
        """
id: z
title: Z
questions:
  - {id: score, type: scale, ask: "Score?", min: 0, max: 10, optional: true}
""",
        "z.yaml",
    )
    zero_to_ten = scored.question("score")
    assert voice.skip_key(zero_to_ten) == "#"
    assert voice.parse("0#", zero_to_ten) == Reply("0")  # 0 is an answer here
    assert voice.parse("#", zero_to_ten) is Command.SKIP
    said = voice.question_speech(engine.ask(scored, zero_to_ten, CTX))
    assert "To skip this question, press hash on its own." in said
    assert "To skip this question, press 0." not in said


def test_voice_speech_is_read_by_the_same_parser():
    assert voice.parse("", SURVEY.question("format"), speech="the second one") == Reply(
        "the second one"
    )
    assert voice.parse("", SURVEY.question("why"), speech="skip") is Command.SKIP
    assert voice.parse("", SURVEY.question("format"), speech="say that again") is Command.REPEAT


def test_voice_intro_drops_text_only_sentences_whole():
    turn = voice.render(engine.begin(SURVEY, CTX).prompts, org="Age Better")
    assert turn.say[0] == "Hello Ann."
    assert voice.spoken("Thank you. You can reply STOP at any time.") == "Thank you."
    assert voice.spoken("Opt out any time by replying STOP. Thanks!") == "Thanks!"
    assert voice.spoken("Reply SKIP to leave it out. Reply STOP to opt out.") == ""
    assert voice.spoken("We will text you a short update.") == "We will text you a short update."


def test_voice_outro_ends_the_call():
    assert voice.render([engine.Say("Thank you.", "outro")]).gather is None


def test_telegram_buttons_for_closed_questions():
    (message,) = telegram.render([ask("format")])
    rows = message.keyboard.inline_keyboard
    # Each button names its question, so one left on an old message answers nothing later.
    assert [[(b.text, b.callback_data) for b in row] for row in rows] == [
        [("Printed", "format:1")],
        [("Digital", "format:2")],
        [("Both", "format:3")],
    ]
    (yesno,) = telegram.render([ask("ok")])
    assert [(b.text, b.callback_data) for b in yesno.keyboard.inline_keyboard[0]] == [
        ("Yes", "ok:1"),
        ("No", "ok:2"),
    ]
    (free,) = telegram.render([ask("many")])
    assert free.keyboard is None
    (optional,) = telegram.render([ask("why")])
    assert optional.keyboard.inline_keyboard[-1][0].callback_data == "why:skip"


def test_telegram_words_become_commands():
    (intro, _) = telegram.render(engine.begin(SURVEY, CTX).prompts)
    assert intro.text == "Hello Ann. Send /stop to opt out."
    assert telegram.parse(text="/stop") is Command.STOP
    question = SURVEY.question("why")
    assert telegram.Press.read("why:skip")(question) is Command.SKIP
    assert telegram.Press.read("why:2")(question) == Reply("2")
    stale = telegram.Press.read("format:2")
    assert stale(question) is Command.REPEAT and stale.stale


def test_telegram_stored_body_reads_as_words_and_rebuilds_the_keyboard():
    (message,) = telegram.render([ask("format")])
    body = telegram.to_body(message)
    assert body.split("\n\n")[0] == message.text
    assert telegram.from_body(body) == message
    assert telegram.from_body("Just words") == telegram.TelegramMessage("Just words")
    # Something that only looks like ours is sent as the words it is.
    odd = "Words\n\n" + telegram.KEYBOARD_MARK + "not json"
    assert telegram.from_body(odd).text == odd


def test_telegram_callback_data_fits_for_the_longest_question_id():
    data = telegram.callback("q" * 100, "10")
    assert len(data.encode()) <= 64 and telegram.Press.read(data).value == "10"


def test_voice_reprompts_say_press_never_reply():
    for qid, wrong in (("format", "9"), ("many", "99999"), ("why", "")):
        question = SURVEY.question(qid)
        prompt = engine.ask_again(SURVEY, question, CTX, wrong)
        spoken = " ".join(voice.render([prompt]).say)
        assert "reply" not in spoken.casefold(), spoken
        assert "Sorry" in spoken
    sms_text = sms.render([engine.ask_again(SURVEY, SURVEY.question("format"), CTX, "9")])[0]
    assert sms_text.startswith("Sorry, we didn't quite catch that. Please reply with")
