"""Issue 20's replies that used to be stored as the opposite of what was meant, and what each
channel must answer instead: one survey, and for each wording the question it is sent to."""

from __future__ import annotations

from pathlib import Path

READINGS = """
id: readings
title: Read as meant
keyword: MEANT
questions:
  - id: grammar
    type: yesno
    ask: Was the grammar good?
  - id: breakfast
    type: choice
    ask: What did you like best at breakfast?
    options:
      - {value: sausage, label: Sausage}
      - {value: eggs, label: Eggs}
      - {value: na, label: Not applicable}
  - id: visit
    type: choice
    ask: How was your visit?
    options:
      - {value: very-good, label: Very good}
      - {value: good, label: Good}
      - {value: poor, label: Poor}
  - id: food
    type: scale
    ask: How was the food?
    min: 1
    max: 5
    labels: {1: Very good, 5: Very poor}
  - id: age
    type: number
    ask: How old are you?
    min: 0
    max: 120
  - id: comments
    type: text
    ask: Anything else?
    max_length: 160
outro: Thank you.
"""
# Answers that bring the survey to each question.
BEFORE = {
    "grammar": [],
    "breakfast": ["yes"],
    "visit": ["yes", "1"],
    "food": ["yes", "1", "1"],
    "age": ["yes", "1", "1", "1"],
    "comments": ["yes", "1", "1", "1", "70"],
}
DID_YOU_MEAN_NO = "Did you mean No?"
YES_OR_NO = "Sorry, we could not tell if that means yes or no."
WHICH = "Sorry, we could not tell which answer you meant."
IN_YEARS = "Sorry, please give your age in years."
WHAT_YOU_MEANT = "Sorry, we could not tell what you meant."
# (question, what the person wrote, words the answer must hold). Nothing is stored.
WORDINGS = [
    ("grammar", "n/a", DID_YOU_MEAN_NO),
    ("grammar", "N/A", DID_YOU_MEAN_NO),
    ("grammar", "NA", DID_YOU_MEAN_NO),
    ("grammar", "no mistakes", YES_OR_NO),
    ("grammar", "no complaints", YES_OR_NO),
    ("grammar", "no errors at all", YES_OR_NO),
    ("grammar", "never seen better", YES_OR_NO),
    ("grammar", "no, it is fine", YES_OR_NO),
    ("breakfast", "na", "Did you mean Not applicable?"),
    ("breakfast", "everything but sausage", WHICH),
    ("breakfast", "all except sausage", WHICH),
    ("visit", "anything but poor", WHICH),
    ("visit", "better than poor", WHICH),
    ("visit", "3 out of 10", "Please reply with a number from 1 to 3."),
    ("food", "5 stars", "Did you mean 1 (Very good)?"),
    ("age", "18 months", IN_YEARS),
    ("age", "6 weeks", IN_YEARS),
    ("age", "18 mths", IN_YEARS),
    ("age", "18 mos", IN_YEARS),
    ("age", "18m", IN_YEARS),  # months, metres or minutes: never 18 years
    ("age", "I'm 72 next month", WHAT_YOU_MEANT),
    ("age", "72 in May", WHAT_YOU_MEANT),
    ("age", "80ish", WHAT_YOU_MEANT),
    ("comments", "x" * 359, "Please send a shorter message, about two lines."),
]

# (question, what the person wrote, the value stored): read as meant, never cut short.
STORED = [
    ("age", "12 and a half", "12.5"),
    ("age", "12 and a half years old", "12.5"),
    ("age", "72 and a half years", "72.5"),
]


def conversations_with_readings(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "readings.yaml").write_text(READINGS, encoding="utf-8")
    return folder
