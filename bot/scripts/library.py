"""The survey scripts in CONVERSATIONS_DIR, as the service sees them now."""

from __future__ import annotations

import time
from pathlib import Path

from bot.scripts.survey import Survey, SurveyError, scan

RESCAN_SECONDS = 2.0


class SurveyLibrary:
    """The scripts in CONVERSATIONS_DIR, re-read when a file changes."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self._stamp: tuple = ()
        self._checked_at = float("-inf")
        self._surveys: dict[str, Survey] = {}
        self._keywords: dict[str, Survey] = {}
        self.problems: list[str] = []
        self.broken: dict[str, list[str]] = {}  # file name -> why it did not load

    def _current_stamp(self) -> tuple:
        try:
            return tuple(
                sorted((p.name, p.stat().st_mtime_ns) for p in self.directory.glob("*.y*ml"))
            )
        except OSError:
            return ()

    def _refresh(self) -> None:
        # Look at the folder at most every couple of seconds: this sits on the webhook path.
        if time.monotonic() - self._checked_at < RESCAN_SECONDS:
            return
        self._checked_at = time.monotonic()
        stamp = self._current_stamp()
        if stamp == self._stamp:
            return
        found = scan(self.directory)
        self._surveys, self._keywords, self.problems, self.broken, self._stamp = (
            found.surveys,
            found.keywords,
            found.problems,
            found.broken,
            stamp,
        )

    def surveys(self) -> dict[str, Survey]:
        self._refresh()
        return self._surveys

    def keywords(self) -> dict[str, Survey]:
        self._refresh()
        return self._keywords

    def check(self) -> list[str]:
        """Scripts that did not load and scripts that clash, one line each (re-reads the folder)."""
        self._refresh()
        return self.problems

    def get(self, survey_id: str) -> Survey:
        surveys = self.surveys()
        if survey_id not in surveys:
            raise SurveyError([f"no survey {survey_id!r} in {self.directory}"])
        return surveys[survey_id]
