from datetime import UTC, datetime, timedelta

from bot import engine
from bot.engine import Ask, Reply, Say, State
from bot.engine.keywords import Command
from bot.scripts.survey import load_text

SURVEY = load_text(
    """
id: e
title: Engine
intro: "Hello {{ name }}."
questions:
  - id: format
    type: choice
    ask: Which format?
    options:
      - {value: printed, label: Printed}
      - {value: digital, label: Digital}
  - id: why-printed
    type: text
    ask: Why printed?
    optional: true
    when: {format: printed}
  - id: useful
    type: scale
    ask: How useful?
    min: 1
    max: 5
  - id: recontact
    type: yesno
    ask: May we tell you?
    sets: recontact
outro: Thank you.
""",
    "e.yaml",
)
CTX = {"name": "Margaret Jones", "org": "Age Better"}


def asked(step):
    return [p.question.id for p in step.prompts if isinstance(p, Ask)]


def play(*inputs):
    step = engine.begin(SURVEY, CTX)
    steps = [step]
    for item in inputs:
        inbound = item if isinstance(item, Command) else Reply(item)
        step = engine.step(SURVEY, step.state, inbound, CTX)
        steps.append(step)
    return steps


def test_begin_greets_by_first_name_and_asks_the_first_question():
    step = engine.begin(SURVEY, CTX)
    assert step.prompts[0] == Say("Hello Margaret.", "intro")
    assert asked(step) == ["format"]
    assert step.state == State(question_id="format")


def test_name_missing_reads_naturally():
    assert engine.begin(SURVEY, {}).prompts[0].text == "Hello there."


def test_when_asks_a_follow_up_only_for_matching_answers():
    printed = play("1")
    assert asked(printed[-1]) == ["why-printed"]
    digital = play("2")
    assert asked(digital[-1]) == ["useful"]


def test_a_full_run_completes_with_every_answer_and_consent():
    steps = play("printed", "Easier on my eyes", "5", "yes")
    answers = [a for s in steps for a in s.answers]
    assert [(a.question_id, a.value) for a in answers] == [
        ("format", "printed"),
        ("why-printed", "Easier on my eyes"),
        ("useful", "5"),
        ("recontact", "yes"),
    ]
    assert steps[-1].state.status == engine.COMPLETED
    assert steps[-1].prompts == (Say("Thank you.", "outro"),)
    assert steps[-1].consent == ("recontact_yes",)


def test_a_miss_gets_a_kind_reprompt_saying_what_we_expect():
    step = play("purple")[-1]
    assert step.answers == ()
    (prompt,) = step.prompts
    assert prompt.question.id == "format"
    assert (
        prompt.retry == "Sorry, we didn't quite catch that. Please reply with a number from 1 to 2."
    )
    assert step.state.misses == 1


def test_two_misses_keep_what_they_wrote_and_move_on():
    steps = play("purple", "I like the blue one")
    last = steps[-1]
    (kept,) = last.answers
    assert (kept.question_id, kept.value, kept.raw, kept.unparsed) == (
        "format",
        "I like the blue one",
        "I like the blue one",
        True,
    )
    assert asked(last) == ["useful"]  # an unparsed answer matches no `when`
    assert last.state.misses == 0


def test_misses_reset_for_each_question():
    steps = play("purple", "2", "ten")
    assert steps[-1].state.misses == 1
    assert asked(steps[-1]) == ["useful"]


def test_skip_only_for_optional_questions():
    steps = play("1", Command.SKIP)
    assert steps[-1].answers[0].skipped
    assert asked(steps[-1]) == ["useful"]
    not_optional = play(Command.SKIP)[-1]
    assert not_optional.answers == ()
    assert "needs an answer" in not_optional.prompts[0].retry


def test_repeat_asks_the_same_question_again():
    step = play("2", Command.REPEAT)[-1]
    assert asked(step) == ["useful"] and step.answers == ()


def test_help_says_who_we_are_then_the_question():
    step = play(Command.HELP)[-1]
    assert step.prompts[0].kind == "help" and "Age Better" in step.prompts[0].text
    assert asked(step) == ["format"]


def test_stop_ends_the_conversation_and_opts_out():
    step = play("2", Command.STOP)[-1]
    assert step.state.status == engine.STOPPED
    assert step.consent == ("opt_out",)
    assert step.prompts[0].kind == "stopped"


def test_start_during_a_conversation_opts_in_and_repeats_the_question():
    step = play(Command.START)[-1]
    assert step.consent == ("opt_in",)
    assert asked(step) == ["format"]


def test_recontact_no():
    assert play("2", "3", "no")[-1].consent == ("recontact_no",)


def test_state_round_trips_through_json():
    state = play("1")[-1].state
    assert State.from_json(state.to_json()) == state


def test_after_the_end_the_engine_only_helps():
    done = play("2", "3", "yes")[-1].state
    step = engine.step(SURVEY, done, Reply("hello?"), CTX)
    assert step.prompts[0].kind == "help" and step.answers == ()


def test_expiry_after_seven_idle_days():
    start = datetime(2026, 1, 1, tzinfo=UTC)
    assert not engine.is_expired(start, start + timedelta(days=6, hours=23))
    assert engine.is_expired(start, start + timedelta(days=7))


def test_a_stop_request_in_words_is_asked_to_confirm_not_stored_and_not_a_miss():
    for text in (
        "Please stop texting me",
        "unsubscribe me",
        "don't text me again",
        "Don’t text me again!",
    ):
        step = play("purple", text)[-1]
        assert step.answers == () and step.consent == (), text
        assert step.prompts == (
            Say("Do you want us to stop all messages? Reply STOP to confirm.", "confirm_stop"),
        ), text
        assert step.state.misses == 1, "the earlier miss stands; this one is not counted"
        assert "HELP" not in step.prompts[0].text and "REPEAT" not in step.prompts[0].text


def test_a_stop_request_on_a_text_question_is_not_kept_as_the_answer():
    step = play("1", "Please stop texting me")[-1]
    assert step.answers == () and step.state.question_id == "why-printed"


def test_who_is_this_gets_who_we_are_then_the_question():
    step = play("1", "Hello, who is this?")[-1]
    assert step.answers == () and step.state.misses == 0
    who, again = step.prompts
    assert who.text.startswith("This is Age Better.") and "catch that" not in who.text
    assert isinstance(again, Ask) and again.question.id == "why-printed" and again.retry is None


def test_a_text_over_the_length_limit_is_told_it_is_too_long_and_the_limit():
    survey = load_text(
        "id: t\ntitle: T\nquestions:\n  - {id: why, type: text, ask: Why, max_length: 20}\n",
        "t.yaml",
    )
    state = engine.begin(survey, CTX).state
    step = engine.step(survey, state, Reply("x" * 25), CTX)
    (prompt,) = step.prompts
    assert step.answers == ()
    assert (
        prompt.retry
        == "Sorry, that is too long for us: please keep it to 20 characters (yours had 25)."
    )


def test_thanks_or_a_thumbs_up_after_the_end_gets_no_help_text():
    for text in ("thanks", "Thank you!", "👍", "ok thanks", "Cheers 🙂"):
        step = engine.after_end(Reply(text), CTX)
        assert step.prompts == (Say("You're welcome. Thank you for your help.", "thanks"),), text
    who = engine.after_end(Reply("Hello, who is this?"), CTX)
    assert who.prompts[0].text.startswith("This is Age Better.")
    stop = engine.after_end(Reply("please stop texting me"), CTX)
    assert stop.prompts[0].kind == "confirm_stop" and stop.consent == ()
    assert engine.after_end(Reply("what?"), CTX).prompts[0].kind == "help"


def test_a_retry_is_structured_so_each_channel_can_word_it():
    (prompt,) = play("purple")[-1].prompts
    assert prompt.sorry == "Sorry, we didn't quite catch that."
    assert prompt.expected == "a number from 1 to 2"
