import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.engine.parsing import Answer, Miss, Unsure, parse
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
        assert isinstance(result, Answer | Miss | Unsure)
        if isinstance(result, Unsure):  # asked about: the likelier answer must be a real one
            result = result.answer
        if isinstance(result, Answer) and question.type in ("choice", "yesno", "scale"):
            assert result.value in {o.value for o in question.choices}


@given(
    st.integers(min_value=1, max_value=3), st.sampled_from(["", " ", ".", "!", "  "]), st.booleans()
)
def test_any_option_number_with_stray_punctuation(number, extra, pad):
    typed = (" " if pad else "") + str(number) + extra
    assert parse(Q["format"], typed).value == SURVEY.question("format").options[number - 1].value


# --- issue 13: replies read as meant ------------------------------------------------------

ISSUE = load_text(
    """
id: i13
title: Replies as meant
questions:
  - id: experience
    type: scale
    ask: How was your visit?
    min: 1
    max: 5
    labels: {1: Very poor, 5: Very good}
    dont_know: true
  - id: rating
    type: choice
    ask: How was it?
    options:
      - {value: vp, label: Very poor}
      - {value: p, label: Poor}
      - {value: g, label: Good}
      - {value: vg, label: Very good}
  - id: age
    type: number
    ask: How old are you?
    min: 18
    max: 120
  - id: count
    type: number
    ask: How many?
    min: 0
    max: 20
  - id: colours
    type: multi
    ask: Which colours?
    options:
      - {value: red, label: Red}
      - {value: blue, label: Blue, synonyms: [navy]}
      - {value: green, label: Green}
    dont_know: true
  - id: when
    type: date
    ask: When?
  - id: fft
    type: choice
    ask: Overall?
    options:
      - {value: "1", label: Very good}
      - {value: "2", label: Good}
      - {value: "3", label: Neither good nor poor}
      - {value: "4", label: Poor}
      - {value: "5", label: Very poor}
      - {value: "6", label: "Don't know", synonyms: [dk]}
""",
    "i13.yaml",
)
IQ = {q.id: q for q in ISSUE.questions}


@pytest.mark.parametrize(
    ("typed", "value"),
    [
        ("5 stars", "5"),
        ("five stars", "5"),
        ("★★★★", "4"),
        ("4 out of 5", "4"),
        ("Very poor", "1"),
        ("it was very good", "5"),
        ("Don't know", "dont-know"),
        ("dk", "dont-know"),
    ],
)
def test_a_scale_reads_stars_words_and_its_own_labels(typed, value):
    parsed = parse(IQ["experience"], typed)
    assert isinstance(parsed, Answer) and parsed.value == value, parsed


@pytest.mark.parametrize("typed", ["not poor", "not very good", "wasn't good"])
def test_a_negated_option_is_asked_again_not_guessed(typed):
    parsed = parse(IQ["rating"], typed)
    assert isinstance(parsed, Miss) and parsed.reason == "negated", parsed


@pytest.mark.parametrize("typed", ["good and poor", "Poor, Good", "1,3", "1,5"])
def test_two_different_options_in_one_reply_are_asked_again(typed):
    assert isinstance(parse(IQ["rating"], typed), Miss)


def test_a_longer_label_is_not_two_options():
    # "very poor" contains "poor": one option, the longer one.
    assert parse(IQ["rating"], "I'd say very poor") == Answer("vp", "Very poor")


def test_labels_with_their_own_negations_are_read():
    assert parse(IQ["fft"], "neither good nor poor") == Answer("3", "Neither good nor poor")
    assert parse(IQ["fft"], "dk") == Answer("6", "Don't know")
    assert parse(IQ["fft"], "Don't know") == Answer("6", "Don't know")


@pytest.mark.parametrize(
    ("typed", "value"),
    [
        ("seventy two", "72"),
        ("seventy-two", "72"),
        ("I am 72 years old", "72"),
        ("a hundred and five", "105"),
        ("eighty", "80"),
    ],
)
def test_numbers_in_words(typed, value):
    assert parse(IQ["age"], typed) == Answer(value, value)


@pytest.mark.parametrize("typed", ["1,5", "1, 5", "1 or 5", "not 5", "two three"])
def test_two_numbers_are_not_one(typed):
    assert isinstance(parse(IQ["count"], typed), Miss)


def test_thousands_still_read():
    big = load_text(
        "id: b\ntitle: b\nquestions:\n  - {id: n, type: number, ask: 'How many?'}\n", "b.yaml"
    )
    assert parse(big.questions[0], "1,000") == Answer("1000", "1000")


def test_out_of_range_and_too_long_say_why():
    assert parse(IQ["age"], "16").reason == "out_of_range"
    assert parse(Q["note"], "x" * 21).reason == "too_long"


@pytest.mark.parametrize(
    ("typed", "value"),
    [
        ("1 3", "red;green"),
        ("1,3", "red;green"),
        ("13", "red;green"),
        ("1 and 3", "red;green"),
        ("red and navy", "red;blue"),
        ("Green, Red", "red;green"),
        ("navy", "blue"),
        ("dk", "dont-know"),
    ],
)
def test_several_answers(typed, value):
    parsed = parse(IQ["colours"], typed)
    assert isinstance(parsed, Answer) and parsed.value == value, parsed


@pytest.mark.parametrize("typed", ["1 7", "purple", "not red", ""])
def test_several_answers_misses(typed):
    assert isinstance(parse(IQ["colours"], typed), Miss)


@pytest.mark.parametrize(
    ("typed", "value"),
    [
        ("3/4/1948", "1948-04-03"),
        ("03.04.48", "1948-04-03"),
        ("3rd April 1948", "1948-04-03"),
        ("April 3 1948", "1948-04-03"),
        ("3 Ebrill 1948", "1948-04-03"),
        ("03041948", "1948-04-03"),
        ("1948-04-03", "1948-04-03"),
        ("1/2/05", "2005-02-01"),
    ],
)
def test_dates_the_uk_way(typed, value):
    parsed = parse(IQ["when"], typed)
    assert isinstance(parsed, Answer) and parsed.value == value, parsed
    assert parse(IQ["when"], "3/4/1948").label == "3 April 1948"


@pytest.mark.parametrize("typed", ["31/2/1948", "April 1948", "yesterday", "3/4", "13/13/2000"])
def test_dates_that_are_not(typed):
    assert isinstance(parse(IQ["when"], typed), Miss)


@pytest.mark.parametrize("typed", ["ie", "Ydw", "oes", "ie plis"])
def test_welsh_yes(typed):
    assert parse(Q["ok"], typed) == Answer("yes", "Yes")


@pytest.mark.parametrize("typed", ["na", "Nac ydw", "naddo", "dim diolch"])
def test_welsh_no(typed):
    # From someone who writes in Welsh; "na" from anyone else is asked about (NA, n/a).
    assert parse(Q["ok"], typed, "cy") == Answer("no", "No")


# --- replies found to be stored wrongly or missed (QA round, 2026-11-26) ---------------------

_QA = load_text(
    """
id: qa
title: QA
questions:
  - {id: travel, type: number, ask: "How many minutes does it take you?", min: 0, max: 180}
  - {id: age, type: number, ask: "How old are you?"}
  - {id: useful, type: scale, ask: "How useful?", min: 1, max: 5}
  - id: rating
    type: choice
    ask: "How was it?"
    options:
      - {value: very-good, label: Very good}
      - {value: good, label: Good}
      - {value: poor, label: Poor}
      - {value: very-poor, label: Very poor}
  - id: how
    type: choice
    ask: "How would you like to hear from us?"
    options:
      - {value: sms, label: By text message}
      - {value: voice, label: By phone call}
      - {value: online, label: The internet}
  - id: days
    type: multi
    ask: "Which days?"
    options:
      - {value: mon, label: Monday}
      - {value: fri, label: Friday}
""",
    "qa.yaml",
)


def _parsed(question_id: str, text: str):
    return parse(_QA.question(question_id), text)


def test_a_number_in_another_unit_is_asked_again_never_stored():
    for text in ("1 hour", "2 hours", "1hr", "half an hour"):
        assert isinstance(_parsed("travel", text), Miss), text
    for text, value in (("20 minutes", "20"), ("twenty minutes", "20"), ("ten mins", "10")):
        assert _parsed("travel", text) == Answer(value, value), text
    # A question that names no unit takes one: "72 years old" is an age.
    assert _parsed("age", "72 years old") == Answer("72", "72")


def test_a_score_out_of_another_total_is_asked_again():
    for text in ("3 out of 10", "3/10", "three out of ten"):
        miss = _parsed("useful", text)
        assert isinstance(miss, Miss) and miss.reason == "out_of_range", text
    assert _parsed("useful", "3 out of 5") == Answer("3", "3")


def test_a_score_out_of_another_total_on_a_list_is_outside_its_range():
    # "3 out of 10" to four options: a score, not option 3, and said like a scale's.
    for text in ("3 out of 10", "3/10", "three out of ten"):
        miss = _parsed("rating", text)
        assert isinstance(miss, Miss) and miss.reason == "out_of_range", text
    assert _parsed("rating", "3") == Answer("poor", "Poor")


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("12 and a half", "12.5"),
        ("12 and a half years old", "12.5"),
        ("I'm 72 and a half years", "72.5"),
        ("twelve and a half years old", "12.5"),
        ("12\u00bd years", "12.5"),
    ],
)
def test_a_fraction_before_a_unit_is_kept(text, value):
    assert _parsed("age", text) == Answer(value, value)


@pytest.mark.parametrize("text", ["12 and a half or 13", "12 and a half months"])
def test_a_fraction_with_more_after_it_is_never_the_whole_number(text):
    assert isinstance(_parsed("age", text), Miss)


@pytest.mark.parametrize(
    "text", ["18 mths", "18 mos", "18 mo", "18mths", "18 mnths", "18m", "18 M"]
)
def test_an_age_in_months_however_short_is_asked_in_years(text):
    miss = _parsed("age", text)
    assert isinstance(miss, Miss) and miss.reason == "age_unit", text


def test_m_after_a_number_is_minutes_only_where_the_question_asks_in_minutes():
    assert _parsed("travel", "20m") == Answer("20", "20")
    assert _parsed("age", "I m 72") == Answer("72", "72")  # "I'm", typed apart
    hours = load_text(
        'id: h\ntitle: H\nquestions:\n  - {id: h, type: number, ask: "How many hours?"}\n',
        "h.yaml",
    ).question("h")
    assert isinstance(parse(hours, "3m"), Miss)


@pytest.mark.parametrize(
    "text",
    [
        "80ish",
        "80 ish",
        "80-ish",
        "eightyish",
        "80 something",
        "72 in May",
        "72 on my birthday",
        "72 this summer",
        "72 on Tuesday",
    ],
)
def test_a_hedged_age_is_asked_again_never_stored(text):
    miss = _parsed("age", text)
    assert isinstance(miss, Miss) and miss.reason == "unclear", text


def test_a_month_the_question_names_is_no_hedge():
    may = load_text(
        "id: m\ntitle: M\nquestions:\n"
        '  - {id: m, type: number, ask: "How many times did you come in May?"}\n',
        "m.yaml",
    ).question("m")
    assert parse(may, "3 in May") == Answer("3", "3")
    assert isinstance(parse(may, "3 in June"), Miss)
    birthday = load_text(
        "id: b\ntitle: B\nquestions:\n"
        '  - {id: b, type: number, ask: "How old will you be on your birthday?"}\n',
        "b.yaml",
    ).question("b")
    assert parse(birthday, "72 on my birthday") == Answer("72", "72")
    assert parse(_QA.question("age"), "I'm 72 today") == Answer("72", "72")
    assert parse(_QA.question("travel"), "something like 20") == Answer("20", "20")


def test_words_people_use_for_an_option():
    assert _parsed("rating", "v good").value == "very-good"
    assert _parsed("rating", "good").value == "good"
    assert isinstance(_parsed("rating", "very"), Miss)  # in two labels: no guess
    assert _parsed("how", "internet").value == "online"
    assert _parsed("how", "text").value == "sms" and _parsed("how", "phone").value == "voice"
    assert _parsed("days", "Fridays").value == "fri"
    assert _parsed("days", "Mondays and Fridays").value == "mon;fri"


def test_single_words_do_not_map_on_scales_or_through_a_no():
    scale = load_text(
        'id: s\ntitle: S\nquestions:\n  - {id: food, type: scale, ask: "Food?", min: 1, max: 5,'
        " labels: {1: Very poor, 5: Very good}}\n",
        "s.yaml",
    ).question("food")
    assert isinstance(parse(scale, "good"), Miss) and isinstance(parse(scale, "poor"), Miss)
    for text in ("no phone please", "no text", "not the internet"):
        assert isinstance(_parsed("how", text), Miss), text


def test_no_problem_is_no_answer_to_a_yes_no_question():
    question = load_text(
        'id: y\ntitle: Y\nquestions:\n  - {id: ok, type: yesno, ask: "May we?"}\n', "y.yaml"
    ).question("ok")
    for text in ("no problem", "No worries"):
        assert isinstance(parse(question, text), Miss), text
    assert parse(question, "no").value == "no"


def test_a_no_in_front_of_an_option_does_not_pick_it():
    for text in ("no text message", "no internet please"):
        assert isinstance(_parsed("how", text), Miss), text
    useful = load_text(
        'id: u\ntitle: U\nquestions:\n  - {id: u, type: scale, ask: "Useful?", min: 1, max: 5,'
        " labels: {1: Not useful, 5: Very useful}}\n",
        "u.yaml",
    ).question("u")
    assert isinstance(parse(useful, "very"), Miss) and isinstance(parse(useful, "not"), Miss)
    assert parse(useful, "very useful").value == "5"


def test_an_options_names_are_remembered_with_its_synonyms():
    # Options are equal by value and label alone; the names remembered for one must not
    # answer for another that has other synonyms.
    from bot.engine.parsing import _names
    from bot.scripts.survey import Option

    plain = Option("walk", "Walking")
    with_synonyms = Option("walk", "Walking", synonyms=("On foot",))
    assert plain == with_synonyms
    assert _names(plain) == ("walking", "walk")
    assert _names(with_synonyms) == ("walking", "walk", "on foot")
