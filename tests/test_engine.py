from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

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
    kept, not_asked = last.answers
    # The words are kept for staff, flagged unreadable, and never stored as the answer.
    assert (kept.question_id, kept.value, kept.label, kept.raw, kept.unparsed) == (
        "format",
        None,
        None,
        "I like the blue one",
        True,
    )
    # The follow-up that depended on it is skipped knowingly, and the record says why.
    assert (not_asked.question_id, not_asked.skipped, not_asked.label) == (
        "why-printed",
        True,
        "(not asked: no usable answer to format)",
    )
    assert asked(last) == ["useful"]
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


def test_a_text_over_the_length_limit_asks_for_a_shorter_one_and_keeps_the_words():
    # Nobody counts characters ("yours had 359"): say how long in lines, and keep what
    # they wrote for staff until a shorter answer takes its place.
    survey = load_text(
        "id: t\ntitle: T\nquestions:\n  - {id: why, type: text, ask: Why, max_length: 160}\n",
        "t.yaml",
    )
    state = engine.begin(survey, CTX).state
    step = engine.step(survey, state, Reply("x" * 359), CTX)
    (prompt,) = step.prompts
    assert step.answers == (engine.RecordedAnswer("why", None, None, "x" * 359, unparsed=True),)
    assert (
        prompt.retry
        == "Sorry, that is too long for us. Please send a shorter message, about two lines."
    )
    assert "359" not in prompt.retry and "characters" not in prompt.retry
    done = engine.step(survey, step.state, Reply("Short and sweet"), CTX)
    (answer,) = done.answers
    assert (answer.value, answer.replaces_kept, done.state.kept) == ("Short and sweet", True, False)


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


# --- issue 13 ------------------------------------------------------------------------------

from bot.channels.sms import render as sms_render  # noqa: E402
from bot.channels.telegram import render as tg_render  # noqa: E402
from bot.channels.voice import render as voice_render  # noqa: E402
from bot.engine import Done, Toggle  # noqa: E402

SCREENER = load_text(
    """
id: screener
title: Lunch club
fields: {service: the lunch club}
questions:
  - id: age
    type: number
    ask: How old are you?
    min: 18
    max: 120
    reask: "Please tell us your age in years, like 72."
  - id: too-young
    type: end
    say: "Thank you. This survey is for people aged 65 and over, so that is all."
    when: {age: {max: 64}}
  - id: about
    type: statement
    say: "Now a few questions about {{ survey.service }}."
  - id: colour
    type: choice
    ask: Which colour is your card?
    options:
      - {value: red, label: Red}
      - {value: blue, label: Blue, synonyms: [navy]}
  - id: why
    type: text
    ask: "Why {{ answers.colour }} ({{ answers.colour.value }}), {{ name }}?"
    max_length: 20
    when: {colour: {not: red}}
  - id: days
    type: multi
    ask: Which days do you come?
    options:
      - {value: mon, label: Monday}
      - {value: wed, label: Wednesday}
      - {value: fri, label: Friday}
  - id: friday-food
    type: yesno
    ask: Do you stay for lunch on Friday?
    when: {any: [{days: fri}, {age: {min: 90}}]}
outro: Thank you.
""",
    "screener.yaml",
)


def run(survey, *inputs):
    step = engine.begin(survey, CTX)
    steps = [step]
    for item in inputs:
        inbound = item if isinstance(item, Command | Toggle | Done) else Reply(item)
        step = engine.step(survey, step.state, inbound, CTX)
        steps.append(step)
    return steps


def stored(steps):
    return {a.question_id: a for s in steps for a in s.answers}


def test_a_range_is_said_up_front_on_every_channel():
    first = next(p for p in engine.begin(SCREENER, CTX).prompts if isinstance(p, Ask))
    assert "Reply with a number from 18 to 120" in sms_render.question_text(first)
    assert "Type a number from 18 to 120." in tg_render.question_text(first)
    assert "Key in a number from 18 to 120, then press hash." in voice_render.question_speech(first)


def test_out_of_range_is_never_stored_and_the_reask_uses_the_scripts_words():
    # Over the maximum, where no ending takes it (under it, the screen-out below does).
    steps = run(SCREENER, "130", "a hundred and thirty")
    retry = steps[1].prompts[0]
    assert isinstance(retry, Ask) and retry.retry == (
        "Please tell us your age in years, like 72. Please reply with a number from 18 to 120."
    )
    kept = stored(steps)["age"]
    assert (kept.value, kept.label, kept.raw, kept.unparsed) == (
        None,
        None,
        "a hundred and thirty",
        True,
    )
    # The screen-out rests on the age: with no usable age it is not applied, and the
    # question that depends on the age too is skipped knowingly.
    assert asked(steps[-1]) == ["colour"]


def test_too_long_is_never_stored_as_the_answer():
    steps = run(SCREENER, "72", "navy", "x" * 21, "y" * 30)
    first_retry = steps[3].prompts[0]
    assert "Please send a shorter message, about one line." in first_retry.retry
    assert steps[3].answers[0].unparsed and steps[3].answers[0].raw == "x" * 21
    kept = stored(steps)["why"]
    assert (kept.value, kept.unparsed, kept.raw, kept.replaces_kept) == (None, True, "y" * 30, True)


@pytest.mark.parametrize(("age", "value"), [("16", "16"), ("sixteen", "16"), ("64", "64")])
def test_an_age_under_the_minimum_meets_the_ending_for_it_not_the_rule(age, value):
    # min: 18 and an ending for those under 65: the ending's own words, not "from 18 to 120".
    steps = run(SCREENER, age)
    assert steps[-1].prompts == (
        Say("Thank you. This survey is for people aged 65 and over, so that is all.", "outro"),
    )
    assert steps[-1].finished and stored(steps)["age"].value == value


def test_a_number_outside_the_range_with_no_ending_for_it_is_still_asked_again():
    steps = run(SCREENER, "130")
    assert steps[-1].state.question_id == "age" and steps[-1].answers == ()


def test_an_end_screens_out_with_its_own_words_and_no_outro():
    steps = run(SCREENER, "40")
    last = steps[-1]
    assert last.state.status == engine.COMPLETED
    assert [p.text for p in last.prompts] == [
        "Thank you. This survey is for people aged 65 and over, so that is all."
    ]


def test_statement_says_and_piping_uses_labels_codes_name_and_fields():
    steps = run(SCREENER, "seventy two", "navy")
    says = [p.text for p in steps[1].prompts if isinstance(p, Say)]
    assert says == ["Now a few questions about the lunch club."]
    why = steps[2].prompts[0]
    assert why.text == "Why Blue (blue), Margaret?"


def test_not_skips_and_any_of_follows():
    steps = run(SCREENER, "72", "red", "1 3", "yes")
    assert asked(steps[2]) == ["days"]  # why not asked: colour is red
    assert stored(steps)["days"].value == "mon;fri"
    assert stored(steps)["friday-food"].value == "yes"
    steps = run(SCREENER, "95", "red", "2")
    assert asked(steps[-1]) == ["friday-food"]  # by age, not by days
    steps = run(SCREENER, "72", "red", "2")
    assert steps[-1].state.status == engine.COMPLETED


def test_telegram_taps_toggle_then_done_stores_them_together():
    steps = run(SCREENER, "72", "red", Toggle("mon"), Toggle("fri"), Toggle("mon"), Done())
    assert steps[3].state.picked == ("mon",)
    assert steps[5].state.picked == ("fri",)
    assert stored(steps)["days"].value == "fri"
    markup = tg_render.keyboard(steps[4].prompts[0])
    texts = [row[0].text for row in markup.inline_keyboard]
    assert texts[0].startswith(tg_render.TICK) and texts[-1] == "Done"


def test_done_with_nothing_tapped_asks_again():
    steps = run(SCREENER, "72", "red", Done())
    assert steps[-1].state.question_id == "days" and not steps[-1].answers


def test_an_unreadable_gate_skips_its_follow_ups_knowingly():
    steps = run(SCREENER, "72", "purple", "mauve")
    records = stored(steps)
    assert records["colour"].unparsed and records["colour"].value is None
    assert records["why"].skipped
    assert records["why"].label == "(not asked: no usable answer to colour)"


def test_each_channel_shows_the_new_kinds():
    lunch = load_text(
        (Path(__file__).parent.parent / "conversations" / "lunch-club-checklist.yaml").read_text(),
        "l.yaml",
    )
    days = engine.ask(lunch, lunch.question("days"), CTX)
    text = sms_render.question_text(days)
    assert "1 - Monday\n2 - Wednesday\n3 - Friday" in text
    assert "Reply with the numbers of all that apply, like 1 3.\nOr reply Don't know." in text
    speech = voice_render.question_speech(days)
    assert "Press the keys for all that apply, then press hash." in speech
    assert voice_render.gather_for(days.question).finish_on_key == "#"
    assert voice_render.parse("13#", days.question) == Reply("13")
    food = engine.ask(lunch, lunch.question("food"), CTX)
    assert "Reply with a number from 1 (Very poor) to 5 (Very good), or Don't know" in (
        sms_render.question_text(food)
    )
    assert "For Don't know, press 6." in voice_render.question_speech(food)
    assert voice_render.parse("6", food.question) == Reply("Don't know")
    buttons = [b.text for row in tg_render.keyboard(food).inline_keyboard for b in row]
    assert buttons == ["1", "2", "3", "4", "5", "Don't know"]
    when = engine.ask(lunch, lunch.question("last-visit"), CTX)
    assert "Reply with the date, like 3/4/1948" in sms_render.question_text(when)
    assert "Type the date, like 3/4/1948." in tg_render.question_text(when)
    assert any("0 3 0 4 1 9 4 8" in part for part in voice_render.question_speech(when))


# --- what people write that is not an answer (QA round, 2026-11-26) -------------------------


def test_yes_to_do_you_want_us_to_stop_is_a_stop_not_an_answer_or_consent():
    # At the consent question: "yes" there would have recorded consent to be contacted again.
    before = play("2", "4")[-1]
    assert before.state.question_id == "recontact"
    confirm = engine.step(SURVEY, before.state, Reply("don't text me again"), CTX)
    assert confirm.state.stop_asked and confirm.answers == () and confirm.consent == ()
    stopped = engine.step(SURVEY, confirm.state, Reply("Yes please"), CTX)
    assert stopped.state.status == engine.STOPPED
    assert stopped.consent == ("opt_out",) and stopped.answers == ()
    assert engine.meaning(confirm.state, Reply("yes")) is Command.STOP


def test_no_to_do_you_want_us_to_stop_carries_on_with_the_question():
    confirm = play("2", "4", "please stop texting me")[-1]
    carried = engine.step(SURVEY, confirm.state, Reply("No thanks"), CTX)
    assert carried.answers == () and carried.consent == () and not carried.state.stop_asked
    assert carried.prompts[0] == Say("Thank you. We will carry on.", "info")
    assert asked(carried) == ["recontact"]
    # A plain "no" there is no to stopping, not the answer to "May we tell you?".
    declined = engine.step(SURVEY, confirm.state, Reply("no"), CTX)
    assert declined.answers == () and asked(declined) == ["recontact"]
    # Anything else is read as usual, and the stop question is no longer pending.
    other = play("2", "please stop texting me", "3")[-1]
    assert [a.value for a in other.answers] == ["3"] and not other.state.stop_asked


def test_stop_and_help_in_everyday_words():
    from bot.engine.keywords import classify, intent

    for text in ("Stop it", "STOP STOP", "stop please", "Stop it now"):
        assert classify(text) is Command.STOP, text
    assert classify("Help me") is Command.HELP and classify("skip this one") is Command.SKIP
    for text in ("Please can you stop", "Could you stop please", "no more please"):
        assert intent(text) is not None, text
    assert classify("make the pain stop") is None and intent("No more than 10 minutes") is None


def test_a_message_with_no_words_is_not_a_miss():
    first = play("purple")[-1]
    assert first.state.misses == 1
    for empty in ("", "   ", "\n"):
        step = engine.step(SURVEY, first.state, Reply(empty), CTX)
        assert step.answers == () and step.state.misses == 1, repr(empty)
        (prompt,) = step.prompts
        assert prompt.retry == "We could not find any words in your message."


def test_yes_or_ok_to_the_invitation_is_thanked_and_asked_again_once_without_a_miss():
    for said in ("Yes", "Yes of course", "ok", "happy to", "👍", "Thanks"):
        first, second, third = play(said, said, said)[1:]
        assert first.answers == () and first.state.misses == 0, said
        thanks, _again = first.prompts
        assert thanks.text == "Thank you." and asked(first) == ["format"], said
        # Only once: then it is a miss like any other, so nobody goes round and round.
        assert second.state.misses == 1 and second.prompts[0].retry is not None, said
        assert third.answers[0].unparsed and asked(third) == ["useful"], said
    # Where yes is an answer, it is one; and on a yes/no question it is never "thanked".
    assert [a.value for a in play("2", "4", "yes")[-1].answers] == ["yes"]
    assert play("2", "4", "happy to")[-1].prompts[0].retry is not None


def test_greetings_for_names_as_panel_lists_write_them():
    from bot.engine import first_name

    assert first_name("Margaret Jones") == "Margaret"
    assert first_name("Jones, Mary") == "Mary"
    assert first_name("Mrs Margaret Jones") == "Mrs Jones"
    assert first_name("Dr. Patel") == "Dr. Patel"
    assert (
        first_name("Mrs") == "there" and first_name("  ") == "there" and first_name(None) == "there"
    )


def test_while_we_ask_whether_to_stop_a_yes_no_question_stores_nothing():
    confirm = play("2", "4", "stop texting me")[-1]
    for said in ("please do", "definitely", "ydw", "No. Stop.", "yes stop"):
        stopped = engine.step(SURVEY, confirm.state, Reply(said), CTX)
        assert stopped.state.status == engine.STOPPED and stopped.answers == (), said
    for said in ("maybe", "no", "don't stop"):
        carried = engine.step(SURVEY, confirm.state, Reply(said), CTX)
        assert carried.answers == () and carried.consent == (), said
        assert carried.prompts[0].text == "Thank you. We will carry on.", said


def test_a_stop_request_is_only_a_whole_message_aimed_at_us():
    from bot.engine.keywords import classify, intent

    assert intent("Please stop the cuts to the day centre") is None
    assert classify("cancel it") is None and classify("end it") is None
    assert intent("I have enough now") is None


def test_an_option_named_exactly_is_that_option_whatever_else_it_could_mean():
    survey = load_text(
        "id: m\ntitle: M\nquestions:\n  - id: more\n    type: choice\n    ask: How many?\n"
        "    options:\n      - {value: more, label: No more}\n      - {value: same, label: The same}\n",
        "m.yaml",
    )
    step = engine.step(survey, engine.begin(survey, CTX).state, Reply("No more"), CTX)
    assert [a.value for a in step.answers] == ["more"]


def test_a_key_or_a_tapped_1_picks_an_option_even_while_we_ask_whether_to_stop():
    confirm = play("please stop texting me")[-1]
    picked = engine.step(SURVEY, confirm.state, Reply("1"), CTX)
    assert picked.state.status == engine.ACTIVE and [a.value for a in picked.answers] == ["printed"]
    # A second stop request while we ask is asked again, on a yes/no question too.
    at_consent = play("2", "4", "stop texting me")[-1]
    again = engine.step(SURVEY, at_consent.state, Reply("leave me alone"), CTX)
    assert again.prompts[0].kind == "confirm_stop" and again.state.stop_asked
    for said in ("absolutely", "correct"):
        assert engine.step(SURVEY, at_consent.state, Reply(said), CTX).consent == ("opt_out",)


# --- a message that went in something else's place (an approved template) -----------------


def _at(question_id, **answered):
    return State(question_id=question_id, answered=answered)


def test_yes_after_an_invitation_that_showed_nothing_begins_and_stores_nothing():
    start = engine.begin(SURVEY, CTX).state
    marked = engine.not_shown(start, invitation=True)
    assert marked.unseen == engine.UNSEEN_INTRO
    assert State.from_json(marked.to_json()) == marked
    # A reminder's template after it: they have still seen nothing of the survey.
    assert engine.not_shown(marked, invitation=False).unseen == engine.UNSEEN_INTRO
    shown = engine.step(SURVEY, marked, Reply("Yes"), CTX)
    assert shown.answers == () and shown.consent == ()
    assert shown.prompts == engine.begin(SURVEY, CTX).prompts  # the intro, then the question
    assert shown.state.unseen is None and shown.state.question_id == "format"
    answered = engine.step(SURVEY, shown.state, Reply("1"), CTX)
    assert [a.value for a in answered.answers] == ["printed"]


def test_a_consent_question_not_shown_is_not_answered_by_yes():
    waiting = engine.not_shown(_at("recontact", format="digital", useful="4"), invitation=False)
    assert waiting.unseen == engine.UNSEEN_QUESTION  # something was answered: no intro
    shown = engine.step(SURVEY, waiting, Reply("Yes"), CTX)
    assert shown.answers == () and shown.consent == ()
    assert [type(p) for p in shown.prompts] == [Ask] and asked(shown) == ["recontact"]
    consented = engine.step(SURVEY, shown.state, Reply("Yes"), CTX)
    assert consented.consent == ("recontact_yes",)


def test_what_is_acted_on_when_the_question_was_not_shown():
    waiting = engine.not_shown(_at("useful", format="digital"), invitation=False)
    stopped = engine.step(SURVEY, waiting, Command.STOP, CTX)
    assert stopped.consent == ("opt_out",) and stopped.state.status == engine.STOPPED
    helped = engine.step(SURVEY, waiting, Command.HELP, CTX)
    assert asked(helped) == ["useful"] and helped.state.unseen is None  # shown with the help
    confirm = engine.step(SURVEY, waiting, Reply("please stop texting me"), CTX)
    assert confirm.prompts[0].kind == "confirm_stop" and confirm.state.unseen is not None
    skipped = engine.step(SURVEY, waiting, Command.SKIP, CTX)
    assert skipped.answers == () and asked(skipped) == ["useful"]  # nothing to skip yet
    # A message that went as itself marks nothing: the reply is read as ever.
    assert engine.step(SURVEY, _at("useful"), Reply("4"), CTX).answers[0].value == "4"


def test_a_finished_conversation_is_not_marked():
    done = State(question_id=None, status=engine.COMPLETED)
    assert engine.not_shown(done, invitation=False) == done
