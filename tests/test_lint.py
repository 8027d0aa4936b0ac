from pathlib import Path

import pytest
from click.testing import CliRunner

from bot import channels
from bot.commands.cli import main
from bot.cycle.lint import lint_file, reachable_questions
from bot.scripts import templates
from bot.scripts.survey import load_text
from tests.conftest import CONVERSATIONS

BASE = """id: s
title: t
questions:
  - id: a
    type: yesno
    ask: "A?"
  - id: b
    type: yesno
    ask: "B?"
    when: {a: yes}
  - id: c
    type: text
    ask: "C?"
    when: {a: no, b: yes}
"""


def write(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_never_reachable_question_is_a_warning(tmp_path):
    survey = load_text(BASE, "s.yaml")
    assert reachable_questions(survey) == {"a", "b"}
    report = lint_file(write(tmp_path, BASE))
    assert report.errors == []
    assert report.warnings == [
        f"{tmp_path / 's.yaml'}: question 'c': never asked: no answers lead to it (a=no, b=yes)"
    ]


def test_reachable_follow_ups_are_not_warned(tmp_path):
    report = lint_file(write(tmp_path, BASE.replace("when: {a: no, b: yes}", "when: {b: yes}")))
    assert report.warnings == []


def test_long_text_warns_with_segments(tmp_path):
    long_ask = "Please tell us " + "very " * 70 + "much?"
    report = lint_file(write(tmp_path, BASE.replace('ask: "A?"', f'ask: "{long_ask}"')))
    assert any(
        "question 'a': the text is" in w and "SMS segments (keep it to 2)" in w
        for w in report.warnings
    ), report.warnings


def test_curly_quote_warns_with_character_and_place(tmp_path):
    report = lint_file(write(tmp_path, BASE.replace('ask: "B?"', 'ask: "Isn’t it?"')))
    hits = [w for w in report.warnings if "question 'b'" in w and "outside GSM-7" in w]
    assert hits and "'’' (right single quotation mark, use \"'\")" in hits[0], hits
    assert "line 1, column 4" in hits[0]


def test_gsm_warning_is_one_line_per_prompt_naming_each_character_and_its_stand_in(tmp_path):
    ask = 'ask: "Isn’t it – really – “good”?"'
    report = lint_file(write(tmp_path, BASE.replace('ask: "B?"', ask)))
    hits = [w for w in report.warnings if "question 'b':" in w and "outside GSM-7" in w]
    assert len(hits) == 1, hits  # not one line per character
    (line,) = hits
    assert "\n" not in line
    for named in ("'’' (right single quotation mark, use \"'\")", "'–' (en dash, use '-')"):
        assert named in line, line
    assert "left double quotation mark" in line and line.count("en dash") == 1
    asked_again = [w for w in report.warnings if "question 'b' asked again" in w]
    assert len(asked_again) == 1


def test_readme_lint_command_knows_feedback_files(tmp_path):
    """`involve lint conversations/*.yaml` picked up *.feedback.yaml as surveys: 20 errors."""
    files = sorted(str(p) for p in CONVERSATIONS.glob("*.yaml"))
    assert any(f.endswith(".feedback.yaml") for f in files)
    result = CliRunner().invoke(main, ["lint", "--strict", *files])
    assert result.exit_code == 0, result.output
    assert "error" not in result.output


def test_a_bad_feedback_file_is_checked_against_its_survey(tmp_path):
    write(tmp_path, BASE, "s.yaml")
    bad = write(tmp_path, "message: Hi\noutcomes:\n  nope: {yes: Done}\n", "s.feedback.yaml")
    orphan = write(tmp_path, "message: Hi\n", "gone.feedback.yaml")
    result = CliRunner().invoke(main, ["lint", str(bad), str(orphan)])
    assert result.exit_code == 1
    assert f"error: {bad}: " in result.output and "nope" in result.output, result.output
    assert f"error: {orphan}: no survey 'gone'" in result.output, result.output


def test_lint_with_no_files_checks_scripts_and_feedback_in_conversations_dir(tmp_path, monkeypatch):
    from bot.commands import runtime
    from bot.config import load_settings

    write(tmp_path, BASE.replace("when: {a: no, b: yes}", "when: {b: yes}"), "s.yaml")
    write(tmp_path, "message: Hi\noutcomes:\n  nope: {yes: Done}\n", "s.feedback.yaml")
    monkeypatch.setattr(
        runtime,
        "_settings",
        load_settings({"CONVERSATIONS_DIR": str(tmp_path), "INVOLVE_INSTANCE_PATH": str(tmp_path)}),
    )
    result = CliRunner().invoke(main, ["lint"])
    assert result.exit_code == 1, result.output
    assert f"ok: {tmp_path / 's.yaml'}" in result.output
    assert f"error: {tmp_path / 's.feedback.yaml'}" in result.output


def test_two_scripts_with_one_keyword_are_an_error(tmp_path):
    from bot.scripts.library import SurveyLibrary

    first = write(tmp_path, "keyword: TITLE\n" + BASE, "a.yaml")
    second = write(tmp_path, "keyword: title\n" + BASE.replace("id: s", "id: t"), "b.yaml")
    result = CliRunner().invoke(main, ["lint", str(second)])  # the other one is found beside it
    assert result.exit_code == 1, result.output
    assert f"keyword 'TITLE' is also the keyword of {first}" in result.output, result.output
    library = SurveyLibrary(tmp_path)
    assert library.keywords()["TITLE"].id == "s"  # the first file by name, never by chance
    assert any("keyword 'TITLE'" in p for p in library.check())


def test_warnings_are_shown_beside_the_errors_of_a_script_that_does_not_load(tmp_path):
    broken = BASE.replace("type: text", "type: essay").replace('ask: "B?"', 'ask: "Isn’t it?"')
    result = CliRunner().invoke(main, ["lint", str(write(tmp_path, broken))])
    assert result.exit_code == 1
    assert "error: " in result.output and "type must be one of" in result.output
    assert "warning: " in result.output and "right single quotation mark" in result.output


def test_intro_with_first_question_is_measured_together(tmp_path):
    intro = 'intro: "' + "Hello. " * 45 + '"\n'
    report = lint_file(write(tmp_path, BASE.replace("questions:", intro + "questions:")))
    assert any("question 'a' with the intro" in w for w in report.warnings)


def test_cli_exit_codes(tmp_path):
    runner = CliRunner()
    good = write(tmp_path, BASE.replace("when: {a: no, b: yes}", "when: {b: yes}"), "good.yaml")
    # Each its own id: two scripts with one id in a folder are an error of their own.
    warned = write(tmp_path, BASE.replace("id: s", "id: w"), "warned.yaml")
    broken = write(
        tmp_path, BASE.replace("type: text", "type: essay").replace("id: s", "id: b"), "broken.yaml"
    )
    assert runner.invoke(main, ["lint", str(good)]).exit_code == 0
    result = runner.invoke(main, ["lint", str(warned)])
    assert result.exit_code == 0 and "warning:" in result.output
    assert runner.invoke(main, ["lint", "--strict", str(warned)]).exit_code == 1
    result = runner.invoke(main, ["lint", str(broken)])
    assert result.exit_code == 1
    assert "error: " in result.output and "question 'c': type must be one of" in result.output


def test_example_scripts_are_lint_clean():
    files = sorted(p for p in CONVERSATIONS.glob("*.yaml") if ".feedback." not in p.name)
    assert len(files) >= 4
    for path in files:
        report = lint_file(path)
        assert report.errors == [] and report.warnings == [], (path, report.errors, report.warnings)
    result = CliRunner().invoke(main, ["lint", "--strict", *map(str, files)])
    assert result.exit_code == 0, result.output


# --- issue 13 ------------------------------------------------------------------------------


def test_yaml_booleans_as_labels_or_values_are_errors(tmp_path):
    text = """id: s
title: t
questions:
  - id: a
    type: choice
    ask: "A?"
    options:
      - {value: y, label: Yes}
      - {value: off, label: Off}
      - {value: maybe, label: Maybe}
  - id: b
    type: scale
    ask: "B?"
    labels: {1: No, 5: "Yes"}
"""
    report = lint_file(write(tmp_path, text))
    joined = "\n".join(report.errors)
    assert "option 1 label is read by YAML as true" in joined
    assert "option 2 value is read by YAML as false" in joined
    assert "option 2 label is read by YAML as false" in joined
    assert "label 1 is read by YAML as false" in joined


def test_the_fix_for_an_unquoted_boolean_quotes_the_word_that_was_written(tmp_path):
    text = """id: s
title: t
questions:
  - id: a
    type: choice
    ask: "A?"
    options:
      - {value: on, label: On the day}
      - {value: late, label: off}
      - {value: none, label: No}
  - id: b
    type: scale
    ask: "B?"
    labels: {1: No, 5: "Yes"}
"""
    joined = "\n".join(lint_file(write(tmp_path, text)).errors)
    assert (
        'option 1 value is read by YAML as true, not a word: put it in quotes, value: "on"'
        in joined
    )
    assert (
        'option 2 label is read by YAML as false, not a word: put it in quotes, label: "off"'
        in joined
    )
    assert (
        'option 3 label is read by YAML as false, not a word: put it in quotes, label: "No"'
        in joined
    )
    assert 'label 1 is read by YAML as false, not a word: put it in quotes, 1: "No"' in joined
    assert '"Yes"' not in joined


NUMBER_ROUTE = """id: s
title: t
questions:
  - id: age
    type: number
    ask: "Age?"
  - id: young
    type: end
    say: "This survey is for people over 18."
    when: {age: {max: 17}}
  - id: old
    type: text
    ask: "Tell us more?"
    when: {age: {min: 100}}
  - id: name
    type: text
    ask: "Name?"
  - id: named
    type: text
    ask: "And {{ answers.name }}?"
    when: {name: Bob}
  - id: never
    type: text
    ask: "Never?"
    when: {age: {min: 10, max: 5}}
"""


def test_routes_through_numbers_and_texts_are_followed(tmp_path):
    source = NUMBER_ROUTE.replace(
        "    when: {age: {min: 10, max: 5}}\n",
        "    when: {all: [{age: {max: 5}}, {age: {min: 10}}]}\n",
    )
    survey = load_text(source, "s.yaml")
    assert reachable_questions(survey) == {"age", "young", "old", "name", "named"}
    report = lint_file(write(tmp_path, source))
    assert report.errors == []
    assert report.warnings == [
        f"{tmp_path / 's.yaml'}: question 'never': never asked: no answers lead to it "
        "(age in ..5, age in 10..)"
    ]


def test_min_above_max_in_when_is_an_error(tmp_path):
    report = lint_file(write(tmp_path, NUMBER_ROUTE))
    assert any("min (10) is more than max (5)" in e for e in report.errors)


def test_an_ending_nobody_reaches_is_reported(tmp_path):
    source = (
        BASE
        + """  - id: bye
    type: end
    say: "Bye."
    when: {a: no, b: yes}
"""
    )
    report = lint_file(write(tmp_path, source))
    assert (
        f"{tmp_path / 's.yaml'}: ending 'bye': never reached: no answers lead to it (a=no, b=yes)"
        in report.warnings
    )


def test_piping_needs_an_earlier_answer(tmp_path):
    source = BASE.replace('ask: "A?"', 'ask: "A {{ answers.b }}?"')
    report = lint_file(write(tmp_path, source))
    assert any(
        "question 'a' ask: answers.b: 'b' is not an earlier question" in e for e in report.errors
    ), report.errors
    report = lint_file(write(tmp_path, BASE.replace('ask: "C?"', 'ask: "C {{ answers.colour }}?"')))
    assert any("answers.colour: 'colour' is not an earlier question" in e for e in report.errors)


def test_piping_warns_when_the_answer_can_be_missing(tmp_path):
    source = BASE.replace("    when: {a: no, b: yes}\n", "").replace(
        'ask: "C?"', 'ask: "C {{ answers.b }} {{ answers.a.value }}?"'
    )
    report = lint_file(write(tmp_path, source))
    # 'a' is required, but a reply unreadable after two tries leaves it empty too.
    assert [w for w in report.warnings if "answers." in w] == [
        f"{tmp_path / 's.yaml'}: question 'c': answers.{name} can be empty here ('{name}' may be "
        "skipped, unreadable or not asked on the way); it will read as nothing: give it a "
        f'fallback, {{{{ answers.{name} | default("that") }}}}'
        for name in ("a", "b")
    ]


@pytest.mark.parametrize(
    ("pipe", "empty"),
    [
        ("{{ answers.b | default('that') }}", "C that?"),
        ("{{ answers.b or 'that' }}", "C that?"),
        ("{% if answers.b %}{{ answers.b }}{% endif %}", "C ?"),
        ("{{ answers.b if answers.b else 'that' }}", "C that?"),
    ],
)
def test_a_pipe_with_a_fallback_is_not_warned_and_reads_as_the_fallback(tmp_path, pipe, empty):
    source = BASE.replace("    when: {a: no, b: yes}\n", "").replace(
        'ask: "C?"', f'ask: "C {pipe}?"'
    )
    report = lint_file(write(tmp_path, source))
    assert [w for w in report.warnings if "answers." in w] == []
    ask = load_text(source, "s.yaml").question("c").ask
    assert templates.render(ask, {"answers": {"b": templates.Piped("", "")}}) == empty
    assert templates.render(ask, {"answers": {"b": templates.Piped("Yes", "yes")}}) == "C Yes?"


def test_lint_says_a_long_list_cannot_go_by_keypad(tmp_path):
    options = "".join(f"      - {{value: o{i}, label: Option {i}}}\n" for i in range(10))
    source = f"id: s\ntitle: t\nquestions:\n  - id: q\n    type: choice\n    ask: Pick\n    options:\n{options}"
    report = lint_file(write(tmp_path, source))
    assert report.errors == []
    assert any(
        "10 answers to pick from" in w and "can go by sms, telegram, whatsapp but not by voice" in w
        for w in report.warnings
    ), report.warnings


# --- issue 20 ------------------------------------------------------------------------------


def test_one_word_naming_two_options_is_an_error(tmp_path):
    text = """id: s
title: t
questions:
  - id: colour
    type: choice
    ask: "Which colour?"
    options:
      - {value: blue, label: Blue, synonyms: [navy]}
      - {value: black, label: Black, synonyms: [Navy, dark]}
"""
    report = lint_file(write(tmp_path, text))
    assert report.errors == [
        f"{tmp_path / 's.yaml'}: question 'colour': 'navy' names both 'blue' and 'black'; a "
        "reply 'navy' would always be read as 'blue': keep it on one option"
    ]


SCREEN_OUT = """id: s
title: t
questions:
  - id: age
    type: number
    ask: "How old are you?"
    min: 18
    max: 120
  - id: too-young
    type: end
    say: "Thank you. This survey is for people aged 18 and over."
    when: {age: {max: 17}}
  - id: colour
    type: text
    ask: "Anything else?"
"""


def test_an_ending_for_answers_under_the_minimum_is_reached_straight_after(tmp_path):
    assert lint_file(write(tmp_path, SCREEN_OUT)).warnings == []


def test_an_ending_for_answers_outside_the_range_is_never_reached_after_another_question(tmp_path):
    # With a question between, the age under 18 is asked again, so the ending is never met.
    text = SCREEN_OUT.replace(
        "  - id: too-young", '  - id: name\n    type: text\n    ask: "Name?"\n  - id: too-young'
    )
    assert lint_file(write(tmp_path, text)).warnings == [
        f"{tmp_path / 's.yaml'}: ending 'too-young': never reached: no answers lead to it "
        "(age in ..17); 'age' takes only 18 to 120, and an answer outside that is asked again "
        "unless an ending straight after it takes the answer"
    ]


def test_lint_says_more_than_a_hundred_buttons_cannot_go_by_telegram(tmp_path):
    options = "".join(f"      - {{value: o{i}, label: Option {i}}}\n" for i in range(100))
    source = f"id: s\ntitle: t\nquestions:\n  - id: q\n    type: choice\n    ask: Pick\n    optional: true\n    options:\n{options}"
    report = lint_file(write(tmp_path, source))
    assert (
        f"{tmp_path / 's.yaml'}: question 'q': 101 answers to pick from (Telegram offers at most "
        "100): this survey can go by sms, whatsapp but not by telegram"
    ) in report.warnings
    assert channels.able_to_carry(load_text(source, "s.yaml")) == ("sms", "whatsapp")


@pytest.mark.parametrize("low", [0, 1])
def test_a_scale_to_ten_can_go_by_call(tmp_path, low):
    source = f"id: s\ntitle: t\nquestions:\n  - {{id: q, type: scale, ask: Rate it, min: {low}, max: 10}}\n"
    assert channels.able_to_carry(load_text(source, "s.yaml")) == (
        "sms",
        "voice",
        "telegram",
        "whatsapp",
    )
    assert lint_file(write(tmp_path, source)).warnings == []


def test_a_scripts_channel_options_are_checked_by_the_channel_each_key_names(tmp_path):
    text = BASE + "channels:\n  sms: {colour: blue}\n  pigeon: {loft: 12}\n"
    survey = load_text(text)
    assert survey.channel_options == {"sms": {"colour": "blue"}, "pigeon": {"loft": 12}}
    report = lint_file(write(tmp_path, text))
    path = tmp_path / "s.yaml"
    assert f"{path}: channels.sms: unknown option 'colour' (text message takes none)" in (
        report.errors
    )
    assert any(e.startswith(f"{path}: channels.pigeon: no such channel") for e in report.errors)


def test_channel_options_must_be_a_mapping_of_mappings(tmp_path):
    report = lint_file(write(tmp_path, BASE + "channels: [sms]\n"))
    assert any("channels: must map a channel's name to its options" in e for e in report.errors)
    assert lint_file(write(tmp_path, BASE)).errors == []


# --- issue 20: room beside a question for the engine's replies -------------------------------

ROOM = """id: s
title: t
questions:
  - id: a
    type: yesno
    ask: "{ask}"
"""


def test_a_question_that_leaves_no_room_for_help_in_its_fewest_words_is_warned(tmp_path):
    # Two segments alone, but HELP (or a re-prompt) and it would be three at least, with the
    # longest ORG_NAME and CONTACT_PHONE, even in HELP's short wording.
    long_ask = "Please tell us " + "very " * 45 + "much?"
    report = lint_file(write(tmp_path, ROOM.replace("{ask}", long_ask)))
    assert report.warnings == [
        f"{tmp_path / 's.yaml'}: question 'a': no room for a reply before it: HELP and the "
        "question are 3 SMS segments in all, even in the reply's fewest words (keep them to 2): "
        "shorten the question"
    ]
    fits = "Please tell us " + "very " * 25 + "much?"
    assert lint_file(write(tmp_path, ROOM.replace("{ask}", fits))).warnings == []


def test_a_translation_that_leaves_no_room_is_warned_in_its_language(tmp_path):
    # One circumflex makes the Welsh question UCS-2: two segments alone, none left for HELP.
    text = ROOM.replace("{ask}", "May we phone you?") + (
        "translations:\n  cy:\n    questions:\n      a:\n"
        "        ask: A gawn ni eich ffonio ar y ffôn i ofyn am eich barn am ein gwasanaethau?\n"
    )
    (warning,) = lint_file(write(tmp_path, text)).warnings
    assert "question 'a' in cy: no room for a reply before it: HELP and the question" in warning
    assert warning.endswith("shorten the question (its 'ô' makes the text UCS-2)")
    fixed = text.replace("ar y ffôn ", "")
    assert lint_file(write(tmp_path, fixed)).warnings == []
