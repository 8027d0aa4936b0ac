import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.engine.parsing import Answer, Miss, parse
from bot.scripts.survey import load_text

SURVEY = load_text(
    """
id: p
title: Parsing
questions:
  - id: format
    type: choice
    ask: Which format?
    options:
      - {value: printed, label: Printed}
      - {value: digital, label: Digital}
      - {value: both, label: Both printed and digital}
  - id: ok
    type: yesno
    ask: OK?
  - id: useful
    type: scale
    ask: How useful?
    min: 1
    max: 5
    labels: {1: Not useful, 5: Very useful}
  - id: count
    type: number
    ask: How many?
    min: 0
    max: 20
  - id: note
    type: text
    ask: Anything else?
    max_length: 20
""",
    "p.yaml",
)
Q = {q.id: q for q in SURVEY.questions}


@pytest.mark.parametrize(
    ("typed", "value"),
    [
        ("2", "digital"),
        ("2.", "digital"),
        (" two ", "digital"),
        ("(2)", "digital"),
        ("Two", "digital"),
        ("digital", "digital"),
        ("DIGITAL!", "digital"),
        ("dig", "digital"),
        ("Printed", "printed"),
        ("1", "printed"),
        ("3", "both"),
        ("both printed and digital", "both"),
        ("Both", "both"),
        ("the second one", "digital"),
        ("b", "digital"),
        ("option 3", "both"),
        ("i'd like printed please", "printed"),
    ],
)
def test_choice_is_forgiving(typed, value):
    assert parse(Q["format"], typed) == Answer(value, Q["format"].option(value).label)


@pytest.mark.parametrize("typed", ["4", "0", "pri dig", "", "   ", "p", "12", "maybe", "1 or 2"])
def test_choice_misses_say_what_is_expected(typed):
    assert parse(Q["format"], typed) == Miss("a number from 1 to 3")


@pytest.mark.parametrize(
    "typed",
    ["Yes", "y", "yeah", "yep", "ok", "OK.", "YES PLEASE", " yes ", "Yes!", "1", "sure", "okay"],
)
def test_yes(typed):
    assert parse(Q["ok"], typed) == Answer("yes", "Yes")


@pytest.mark.parametrize("typed", ["No", "n", "nope", "NO THANKS", "nah", "2", "no.", "not really"])
def test_no(typed):
    assert parse(Q["ok"], typed) == Answer("no", "No")


@pytest.mark.parametrize("typed", ["perhaps", "yes and no", "3", ""])
def test_yesno_miss(typed):
    assert parse(Q["ok"], typed) == Miss("YES or NO")


@pytest.mark.parametrize(
    ("typed", "value", "label"),
    [
        ("4", "4", "4"),
        ("4.", "4", "4"),
        ("four", "4", "4"),
        ("5", "5", "Very useful"),
        ("very useful", "5", "Very useful"),
        ("1", "1", "Not useful"),
        ("3 out of 5", "3", "3"),
        ("3/5", "3", "3"),
        (" 2 ", "2", "2"),
    ],
)
def test_scale(typed, value, label):
    assert parse(Q["useful"], typed) == Answer(value, label)


@pytest.mark.parametrize("typed", ["6", "0", "4.5", "lots", "-1"])
def test_scale_miss(typed):
    assert parse(Q["useful"], typed) == Miss("a number from 1 to 5")


@pytest.mark.parametrize(
    ("typed", "value"),
    [("3", "3"), ("about 12", "12"), ("twelve", "12"), ("0", "0"), ("none", "0"), ("2.5", "2.5")],
)
def test_number(typed, value):
    assert parse(Q["count"], typed) == Answer(value, value)


@pytest.mark.parametrize("typed", ["21", "-3", "many", "", "nan", "inf"])
def test_number_miss(typed):
    assert isinstance(parse(Q["count"], typed), Miss)


def test_text_keeps_words_and_limits_length():
    assert parse(Q["note"], "  Bigger print  ") == Answer("Bigger print", "Bigger print")
    assert parse(Q["note"], "x" * 21) == Miss("a short answer in words (up to 20 characters)")
    assert isinstance(parse(Q["note"], "   "), Miss)


@given(st.text())
def test_no_input_crashes_any_parser(typed):
    for question in SURVEY.questions:
        result = parse(question, typed)
        assert isinstance(result, Answer | Miss)
        if isinstance(result, Answer) and question.type in ("choice", "yesno", "scale"):
            assert result.value in {o.value for o in question.choices}


@given(
    st.integers(min_value=1, max_value=3), st.sampled_from(["", " ", ".", "!", "  "]), st.booleans()
)
def test_any_option_number_with_stray_punctuation(number, extra, pad):
    typed = (" " if pad else "") + str(number) + extra
    assert parse(Q["format"], typed).value == SURVEY.question("format").options[number - 1].value
