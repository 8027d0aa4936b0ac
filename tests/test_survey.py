from pathlib import Path

import pytest

from bot import channels
from bot.scripts.survey import SurveyError, load_file, load_text, resolve

GOOD = """
id: guide-title
title: Choose a title
keyword: title
intro: "Hello {{ name }}."
questions:
  - id: title
    type: choice
    ask: Which title?
    options:
      - {value: a, label: Alpha}
      - {value: b, label: Beta}
  - id: why
    type: text
    ask: Why?
    optional: true
    when: {title: a}
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
  - id: recontact
    type: yesno
    ask: May we tell you?
    sets: recontact
outro: Thanks.
"""


def problems(source: str) -> list[str]:
    with pytest.raises(SurveyError) as caught:
        load_text(source, "s.yaml")
    return caught.value.problems


def replace_question(old: str, new: str) -> str:
    assert old in GOOD
    return GOOD.replace(old, new)


def test_loads_every_question_type():
    survey = load_text(GOOD, "s.yaml")
    assert [q.type for q in survey.questions] == ["choice", "text", "scale", "number", "yesno"]
    assert survey.keyword == "TITLE"
    assert survey.question("why").when == {"title": ("a",)}
    assert survey.question("useful").labels == {1: "Not useful", 5: "Very useful"}
    assert survey.question("recontact").sets == "recontact"
    assert survey.question("useful").choices[0].label == "Not useful"
    assert len(survey.content_hash) == 64


def test_when_yes_is_read_as_the_answer_yes():
    # YAML reads a bare `yes` as True; the script means the answer "yes".
    yes = load_text(
        """
id: s
title: t
questions:
  - {id: ok, type: yesno, ask: 'OK?'}
  - {id: more, type: text, ask: 'More?', when: {ok: yes}}
""",
        "s.yaml",
    )
    assert yes.question("more").when == {"ok": ("yes",)}
    listed = load_text(GOOD.replace("when: {title: a}", "when: {title: [a, b]}"), "s.yaml")
    assert listed.question("why").when == {"title": ("a", "b")}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ("when: {title: a}", "when: {nosuch: a}"),
            "s.yaml: question 'why': when refers to unknown question 'nosuch'",
        ),
        (
            ("when: {title: a}", "when: {title: z}"),
            "s.yaml: question 'why': when title: 'z' is not an answer",
        ),
        (("  - id: why\n", "  - id: title\n"), "s.yaml: question 'title': duplicate id"),
        (
            (
                "    options:\n      - {value: a, label: Alpha}\n      - {value: b, label: Beta}\n",
                "",
            ),
            "s.yaml: question 'title': a choice question needs options",
        ),
        (
            ("    min: 1\n    max: 5\n", "    min: 5\n    max: 5\n"),
            "s.yaml: question 'useful': min (5) must be less than max (5)",
        ),
        (
            ("    sets: recontact", "    colour: red"),
            "s.yaml: question 'recontact': unknown key 'colour'",
        ),
        (("ask: Why?", 'ask: "Why {{ name "'), "s.yaml: question 'why' ask: template error"),
        (
            ("ask: Why?", 'ask: "Why {{ surname }}"'),
            "s.yaml: question 'why' ask: template error: unknown name 'surname'",
        ),
        (("type: number", "type: essay"), "s.yaml: question 'count': type must be one of"),
        (
            ("    sets: recontact", "    sets: favourite"),
            "s.yaml: question 'recontact': sets must be one of recontact",
        ),
        (("keyword: title", "keyword: stop"), "s.yaml: keyword 'STOP' is a word participants use"),
        (("outro: Thanks.", "outro: Thanks.\ncolour: blue"), "s.yaml: unknown key 'colour'"),
        (
            ("    labels: {1: Not useful, 5: Very useful}", "    labels: {9: Off the scale}"),
            "s.yaml: question 'useful': label 9 is not a point",
        ),
    ],
)
def test_each_mistake_is_one_clear_line(change, expected):
    found = problems(GOOD.replace(*change))
    assert any(line.startswith(expected) for line in found), found
    assert all("\n" not in line for line in found)


def test_all_mistakes_are_reported_together():
    source = GOOD.replace("when: {title: a}", "when: {nosuch: a}").replace(
        "type: number", "type: essay"
    )
    assert len(problems(source)) == 2


def test_when_must_refer_to_an_earlier_question():
    source = GOOD.replace("when: {title: a}", "when: {useful: 3}")
    assert any("unknown question 'useful' (it must come earlier)" in p for p in problems(source))


def test_not_yaml_names_the_line():
    found = problems("id: x\ntitle: [unclosed\n")
    assert found[0].startswith("s.yaml (line")


def test_more_options_than_keys_on_a_phone_load_but_not_for_a_keypad():
    # Issue 13: a list over 9 is fine by text and Telegram; lint says a call cannot carry it.
    options = "".join(f"      - {{value: o{i}, label: Option {i}}}\n" for i in range(10))
    source = f"id: s\ntitle: t\nquestions:\n  - id: q\n    type: choice\n    ask: Pick\n    options:\n{options}"
    survey = load_text(source, "s.yaml")
    assert channels.able_to_carry(survey) == ("sms", "telegram", "whatsapp")
    nine = source.replace("      - {value: o9, label: Option 9}\n", "")
    assert channels.able_to_carry(load_text(nine, "s.yaml")) == (
        "sms",
        "voice",
        "telegram",
        "whatsapp",
    )


def test_missing_file_and_resolve_by_id(tmp_path: Path):
    with pytest.raises(SurveyError, match="no such file"):
        load_file(tmp_path / "nope.yaml")
    (tmp_path / "s.yaml").write_text(GOOD)
    assert resolve("guide-title", tmp_path).id == "guide-title"
    with pytest.raises(SurveyError, match="there are: guide-title"):
        resolve("other", tmp_path)


WHEN_BASE = """id: s
title: t
questions:
  - id: age
    type: number
    ask: Age?
  - id: note
    type: text
    ask: Note?
  - id: colour
    type: choice
    ask: Colour?
    options:
      - {value: red, label: Red}
      - {value: blue, label: Blue}
  - id: q
    type: text
    ask: Q?
    when: WHEN
"""


@pytest.mark.parametrize(
    ("when", "problem"),
    [
        ("{note: {min: 3}}", "when note: min and max are for number and scale questions"),
        ("{age: {min: x}}", "when age: min must be a number"),
        ("{age: {above: 3}}", "when age: use a value, a list, {not: ...} or {min: ..., max: ...}"),
        ("{colour: {not: green}}", "when colour: 'green' is not an answer to 'colour'"),
        ("{any: {colour: red}}", "when any: needs a list of conditions"),
        ("{any: [{colour: red}, {size: big}]}", "unknown question 'size'"),
        ("{age: {not: 3, min: 1}}", "not and min/max cannot be mixed"),
    ],
)
def test_when_forms_are_checked(when, problem):
    found = problems(WHEN_BASE.replace("WHEN", when))
    assert any(problem in p for p in found), found


@pytest.mark.parametrize(
    "when",
    [
        "{colour: red}",
        "{colour: [red, blue]}",
        "{colour: {not: red}}",
        "{age: {min: 18, max: 64}}",
        "{any: [{colour: red}, {age: {max: 17}}]}",
        "{not: {colour: red}}",
        "{all: [{note: hello}, {age: {min: 1}}]}",
    ],
)
def test_when_forms_load(when):
    survey = load_text(WHEN_BASE.replace("WHEN", when), "s.yaml")
    assert survey.question("q").condition is not None


def test_the_simple_form_keeps_its_mapping():
    survey = load_text(WHEN_BASE.replace("WHEN", "{colour: red, age: 3}"), "s.yaml")
    assert survey.question("q").when == {"colour": ("red",), "age": ("3",)}
    complex_ = load_text(WHEN_BASE.replace("WHEN", "{colour: {not: red}}"), "s.yaml")
    assert complex_.question("q").when == {}


def test_new_kinds_are_checked():
    base = "id: s\ntitle: t\nquestions:\n"
    found = problems(
        base + "  - {id: a, type: statement}\n  - {id: b, type: text, ask: B, say: x}\n"
    )
    assert any("question 'a': say is missing" in p for p in found)
    assert any("say is for statement and end" in p for p in found)
    found = problems(base + "  - {id: a, type: text, ask: A, dont_know: true}\n")
    assert any("dont_know is for choice, multi and scale questions" in p for p in found)
    found = problems(base + "  - {id: a, type: end, say: Bye}\n")
    assert any("at least one question that asks something" in p for p in found)
    found = problems(base + "  - {id: a, type: text, ask: '{{ survey.service }}'}\n")
    assert any("survey.service: no such field" in p for p in found)
