"""The README is the newcomer's only guide: its examples and commands must be true."""

import re
import shlex

import yaml

from bot.commands.cli import main
from tests.conftest import CONVERSATIONS, ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def test_the_example_script_is_the_shipped_file():
    (example,) = [b for b in _blocks("yaml") if b.startswith("id: guide-title")]
    shipped = (CONVERSATIONS / "guide-title.yaml").read_text(encoding="utf-8")
    assert yaml.safe_load(example) == yaml.safe_load(shipped)


def test_the_example_feedback_is_the_shipped_file():
    (example,) = [re.sub(r"(?m)^   ", "", b) for b in _blocks(r"yaml") if "message:" in b]
    shipped = (CONVERSATIONS / "guide-title.feedback.yaml").read_text(encoding="utf-8")
    assert yaml.safe_load(example) == yaml.safe_load(shipped)


def _involve_commands() -> list[list[str]]:
    found = []
    for block in _blocks("sh"):
        for line in block.splitlines():
            line = line.split("#", 1)[0].strip()
            if line.startswith("involve "):
                found.append(shlex.split(line)[1:])
    return found


def test_every_involve_command_in_the_readme_exists_with_those_options():
    from click.testing import CliRunner

    commands = _involve_commands()
    assert len(commands) >= 7, commands
    for args in commands:
        # --help is handled once the command and every option named have been recognised.
        result = CliRunner().invoke(main, [*args, "--help"])
        assert result.exit_code == 0, (args, result.output)


def test_files_the_readme_names_exist():
    for path in re.findall(r"(?:examples|conversations)/[\w.-]+\.(?:csv|yaml)", README):
        assert (ROOT / path).exists(), path
