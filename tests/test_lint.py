from pathlib import Path

from click.testing import CliRunner

from bot.cli import main
from bot.lint import lint_file, reachable_questions
from bot.survey import load_text
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
    assert hits and "'’' (right single quotation mark)" in hits[0] and "line 1, column 4" in hits[0]


def test_intro_with_first_question_is_measured_together(tmp_path):
    intro = 'intro: "' + "Hello. " * 45 + '"\n'
    report = lint_file(write(tmp_path, BASE.replace("questions:", intro + "questions:")))
    assert any("question 'a' with the intro" in w for w in report.warnings)


def test_cli_exit_codes(tmp_path):
    runner = CliRunner()
    good = write(tmp_path, BASE.replace("when: {a: no, b: yes}", "when: {b: yes}"), "good.yaml")
    warned = write(tmp_path, BASE, "warned.yaml")
    broken = write(tmp_path, BASE.replace("type: text", "type: essay"), "broken.yaml")
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
