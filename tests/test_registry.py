"""The channel registry: every channel is a plug-in, and the core never names one."""

import re
from pathlib import Path

import pytest

from bot import channels
from bot.channels.base import Channel
from bot.config import load_settings
from bot.storage.models import Participant

ROOT = Path(__file__).resolve().parent.parent
# Any registered channel's name, quoted: a new plug-in is looked for without editing this test.
NAMED = re.compile(rf"""["']({"|".join(map(re.escape, channels.NAMES))})["']""")


def core_modules() -> list[Path]:
    """Everything but the channel plug-ins and migrations: the providers' clients and the thin
    endpoints a channel lists as its own too (they ask the registry which channel they serve,
    `channels.serving`)."""
    found = []
    for path in [*(ROOT / "bot").rglob("*.py"), *(ROOT / "webhooks").rglob("*.py")]:
        relative = path.relative_to(ROOT).as_posix()
        if re.match(r"bot/(channels|storage/migrations)/", relative):
            continue
        found.append(path)
    return found


def test_no_core_module_names_a_channel():
    offenders = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for path in core_modules()
        for n, line in enumerate(path.read_text().splitlines(), start=1)
        if NAMED.search(line) and not line.lstrip().startswith("#")
    ]
    assert offenders == [], "ask bot.channels instead:\n" + "\n".join(offenders)


def test_no_core_module_names_a_channels_address_field():
    """A person's addresses are contact points, whatever the channel: no core module reads or
    writes one by its field (`person.phone`), spells a field out ("telegram_chat_id"), or
    keeps one as a column; the registry says which fields there are (CONTACT_FIELDS)."""
    fields = "|".join(map(re.escape, channels.CONTACT_FIELDS))
    named = re.compile(rf"""\.({fields})\b|["']({fields})["']|\b({fields})=""")
    offenders = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for path in core_modules()
        for n, line in enumerate(path.read_text().splitlines(), start=1)
        if named.search(line) and not line.lstrip().startswith("#")
    ]
    assert offenders == [], "ask bot.channels and bot.storage.contacts:\n" + "\n".join(offenders)
    assert not any(hasattr(Participant, field) for field in channels.CONTACT_FIELDS)


@pytest.mark.parametrize("channel", channels.all_channels(), ids=lambda c: c.name)
def test_every_channel_answers_what_the_core_asks(channel: Channel):
    from bot.engine import Say

    settings = load_settings({})
    assert channel.name in channels.NAMES and channels.get(channel.name) is channel
    assert channel.contact_field in channels.CONTACT_FIELDS
    assert channel in channels.for_field(channel.contact_field)
    assert 0 < channel.max_address_length <= 64  # the contact point's column
    assert channel.render_body([Say("Hello there.")], "us")
    assert channel.simulate_show([Say("Hello there.")], "us")
    reason = channel.off_reason(settings)
    assert reason is None or reason.strip()
    for target in channel.webhooks:
        assert re.fullmatch(r"webhooks\.\w+:\w+", target)


def test_unknown_channel_names_the_ones_there_are():
    with pytest.raises(channels.UnknownChannel, match="there are: sms, voice, telegram"):
        channels.get("pigeon")


def test_the_api_and_the_cli_offer_exactly_the_registered_channels(client):
    from click.testing import CliRunner

    from bot.commands.cli import main

    spec = client.get("/admin/api/openapi.json").json
    text = str(spec)
    for name in channels.NAMES:
        assert f"'{name}'" in text
    help_text = CliRunner().invoke(main, ["simulate", "--help"]).output
    assert "[" + "|".join(channels.NAMES) + "]" in help_text.replace("\n", "").replace(" ", "")


# What a channel package may not import: anything that opens a database session or writes a
# row. It reads its provider's requests, renders, sends, classifies errors and declares
# policies; every write goes through the core (`bot.channels.base.Core`, `bot.sending.delivery`).
WRITERS = re.compile(
    r"^(sqlalchemy|bot\.storage\.(db|models|prepared)|bot\.conversations|bot\.sending\.(?!errors\b)"
    r"|bot\.cycle|bot\.privacy|bot\.commands|webhooks)(\.|$)"
)


def test_channel_packages_never_open_a_session_or_write():
    import ast

    offenders = []
    for path in sorted((ROOT / "bot" / "channels").rglob("*.py")):
        if path.parent == ROOT / "bot" / "channels":
            continue  # the registry and the plug-in interface, not a channel
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            offenders += [
                f"{path.relative_to(ROOT)}:{node.lineno}: {name}"
                for name in names
                if WRITERS.match(name)
            ]
    assert offenders == [], "a channel asks the core instead:\n" + "\n".join(offenders)


def test_every_job_enqueued_by_name_is_an_entry_point_in_the_one_jobs_module():
    from bot.commands import jobs

    named = {
        name
        for path in [*(ROOT / "bot").rglob("*.py"), *(ROOT / "webhooks").rglob("*.py")]
        for name in re.findall(r"""["']bot\.commands\.jobs\.(\w+)["']""", path.read_text())
    }
    assert {"send_messages", "retry_inbound", "fan_out", "send_reminders"} <= named
    assert [name for name in sorted(named) if not callable(getattr(jobs, name, None))] == []
    # Nothing else in the code base is an rq job: the entry points are all in that module.
    elsewhere = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in [*(ROOT / "bot").rglob("*.py"), *(ROOT / "webhooks").rglob("*.py")]
        if path != ROOT / "bot" / "commands" / "jobs.py"
        for n, line in enumerate(path.read_text().splitlines(), start=1)
        if re.match(r"\s*def \w+_job\(", line)
    ]
    assert elsewhere == []


def test_the_import_layers_hold():
    """pyproject.toml's [tool.importlinter] contracts (`./dev lint` runs them too): no module
    imports upward, no channel package writes, and only the registry names a channel."""
    import subprocess
    import sys

    lint_imports = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(lint_imports), "--no-cache"], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert result.returncode == 0, result.stdout[-3000:]


def test_one_twilio_messaging_endpoint_serves_every_channel_that_lists_it(app):
    """A channel on Twilio Messaging declares it and gets `/webhooks/twilio/<name>`, checked
    by its own limits; no webhooks module names it."""
    from bot.channels.twilio_messaging import ENDPOINT, TwilioMessagingChannel

    served = channels.served_by(ENDPOINT.split(":")[0])
    assert channels.get("sms") in served
    rules = {rule.rule: rule for rule in app.url_map.iter_rules()}
    for channel in served:
        assert isinstance(channel, TwilioMessagingChannel)
        assert channel.webhook_path() in rules
        assert "POST" in (rules[channel.webhook_path()].methods or set())


class _PigeonPost(Channel):
    """A channel with a setting of its own, to show a plug-in adds one without bot/config.py."""

    name = "pigeon"
    title = "pigeon post"
    contact_field = "loft"

    def read_settings(self, env, settings):
        from bot.config import ConfigError

        loft = env.get("PIGEON_LOFT")
        if loft is not None and not loft.isdigit():
            raise ConfigError(f"PIGEON_LOFT must be the loft's number, got {loft!r}")
        return {"loft": loft}


def test_a_channel_reads_its_own_settings_and_a_bad_one_fails_at_start(monkeypatch):
    from bot.config import ConfigError

    pigeon = _PigeonPost()
    monkeypatch.setattr(channels, "_PLUGINS", (*channels.all_channels(), pigeon))
    settings = channels.load_settings({"PIGEON_LOFT": "12"})
    assert pigeon.own_settings(settings) == {"loft": "12"}
    assert channels.get("sms").own_settings(settings) is None
    with pytest.raises(ConfigError, match=r"^PIGEON_LOFT must be the loft's number, got 'x'$"):
        channels.load_settings({"PIGEON_LOFT": "x"})


def test_no_module_outside_the_registry_imports_a_channel_package():
    """Whatever channels are registered (a new one needs no line in pyproject.toml's
    `channels-are-plug-ins` contract for this to hold): only `bot/channels/` imports one."""
    import ast

    packages = {
        ".".join(type(channel).__module__.split(".")[:3]) for channel in channels.all_channels()
    }
    assert all((ROOT / p.replace(".", "/") / "__init__.py").exists() for p in packages)
    offenders = []
    for path in [*(ROOT / "bot").rglob("*.py"), *(ROOT / "webhooks").rglob("*.py")]:
        if path.is_relative_to(ROOT / "bot" / "channels"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            offenders += [
                f"{path.relative_to(ROOT)}:{node.lineno}: {name}"
                for name in names
                if any(name == p or name.startswith(p + ".") for p in packages)
            ]
    assert offenders == [], "ask the registry (bot.channels) instead:\n" + "\n".join(offenders)


def test_the_plug_in_contract_protects_every_registered_channel_package():
    """`./dev lint` (import-linter) guards the packages it lists; keep the list the registry's."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (contract,) = [c for c in config["contracts"] if c["id"] == "channels-are-plug-ins"]
    packages = {
        ".".join(type(channel).__module__.split(".")[:3]) for channel in channels.all_channels()
    }
    assert set(contract["protected_modules"]) == packages


def test_every_channel_name_fits_every_channel_column():
    """Messages, answers, conversations and invitations keep the channel's name in a column."""
    from sqlalchemy import String

    from bot.storage.models import Base

    widths = {
        f"{table.name}.{column.name}": column.type.length
        for table in Base.metadata.tables.values()
        for column in table.columns
        if column.name == "channel" and isinstance(column.type, String)
    }
    assert widths
    too_long = [
        (name, column)
        for name in channels.NAMES
        for column, width in widths.items()
        if width is not None and len(name) > width
    ]
    assert too_long == []


def _own_imports_inside_functions(path: Path) -> list[int]:
    import ast

    lines = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for inner in ast.walk(node):
            if isinstance(inner, ast.ImportFrom) and inner.level == 0:
                names = [inner.module or ""]
            elif isinstance(inner, ast.Import):
                names = [alias.name for alias in inner.names]
            else:
                continue
            if any(n.split(".")[0] in ("bot", "webhooks") for n in names):
                lines.append(inner.lineno)
    return sorted(set(lines))


def test_every_function_local_import_of_our_own_modules_says_why():
    """Python runs an import inside a function when the function runs, which hides a layer's
    arrows: each one needs a comment (on its line or within the three above) saying why."""
    offenders = []
    for path in [*(ROOT / "bot").rglob("*.py"), *(ROOT / "webhooks").rglob("*.py")]:
        if path.is_relative_to(ROOT / "bot" / "storage" / "migrations"):
            continue
        text = path.read_text().splitlines()
        for lineno in _own_imports_inside_functions(path):
            around = text[max(0, lineno - 4) : lineno]
            if not any("#" in line for line in around):
                offenders.append(f"{path.relative_to(ROOT)}:{lineno}: {text[lineno - 1].strip()}")
    assert offenders == [], "say why it is not at the top:\n" + "\n".join(offenders)
