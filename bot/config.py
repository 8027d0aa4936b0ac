"""Settings, read once from the environment through tiny helpers that fail loudly.

A bad setting stops the process at start with one line naming the variable and what it needs
(`ConfigError`), never a traceback deep inside a request.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import time, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.i18n import DEFAULT_ORG_NAME, OrgName, t
from bot.phone_numbers import InvalidPhoneNumber, normalise_phone


class ConfigError(Exception):
    """A setting is missing or malformed; the message is one line naming the variable."""


@dataclass(frozen=True)
class QuietWindow:
    start: time
    end: time

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


@dataclass(frozen=True)
class Settings:
    database_url: str
    redis_url: str | None
    admin_token: str | None
    public_base_url: str
    twilio_account_sid: str | None
    twilio_auth_token: str | None
    twilio_from_number: str | None
    twilio_api_base_url: str
    telegram_bot_token: str | None
    telegram_webhook_secret: str | None
    telegram_api_base_url: str
    conversations_dir: Path
    timezone: ZoneInfo
    quiet_hours: tuple[QuietWindow, ...]
    send_rate: float
    instance_path: Path
    # ORG_NAME; its Welsh name (ORG_NAME_CY) rides with it: `bot.i18n.org_name_in`.
    org_name: str = DEFAULT_ORG_NAME
    # A number where a participant can reach a person, as the charity writes it; said in HELP,
    # after a stop and at the end of a call. None: HELP says to contact us the usual way.
    contact_phone: str | None = None
    # Phone calls (the keypad channel): see CONTRACT.md for each.
    inbound_call_survey: str | None = None
    voice_name: str = "Polly.Amy"
    voice_language: str = "en-GB"
    voice_wait_seconds: int = 10
    voice_confidence: float = 0.6
    voice_transcribe: bool = False
    voice_retry: tuple[timedelta, ...] = (
        timedelta(minutes=15),
        timedelta(hours=1),
        timedelta(days=1),
    )
    # Keys the opt-out hashes of erased people (HMAC-SHA256): without it, anyone holding the
    # database could try every UK mobile number against them in minutes. None only where no
    # channel is on; then a key kept in the instance folder is used (bot/cycle/panel.py).
    suppression_key: str | None = None
    # Nobody is invited again within this many days of their last invitation, whatever the
    # campaign or channel; a campaign may say otherwise (`invite_gap_days`, 0: no gap).
    invite_gap_days: int = 14
    retention_days: int | None = None  # message bodies and free text older than this are purged
    # The bot's @username for deep links; asked of Telegram (getMe) when unset.
    telegram_bot_username: str | None = None
    # How many proxies in front of the web process append to X-Forwarded-For (Heroku's router,
    # nginx: 1). Zero trusts no header: a stranger can write one.
    trusted_proxies: int = 0
    # Each channel's own settings, as its plug-in read them from the same environment
    # (`Channel.read_settings`, gathered by `bot.channels.load_settings`): a channel adds its
    # variables without a line here. Keyed by the channel's name; absent: it read none.
    channels: Mapping[str, Any] = field(default_factory=dict)
    # `involve serve --demo`: every provider is a local stand-in and the console says so on
    # every page (bot/commands/demo.py).
    demo: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def twilio_enabled(self) -> bool:
        return bool(self.twilio_account_sid and self.twilio_auth_token)

    @property
    def telegram_enabled(self) -> bool:
        return bool(self.telegram_bot_token)

    def with_overrides(self, **changes: Any) -> Settings:
        return replace(self, **changes)


def _text(env: Mapping[str, str], name: str, default: str | None = None) -> str | None:
    value = env.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip()


def _url(env: Mapping[str, str], name: str, default: str) -> str:
    value = _text(env, name, default) or default
    if not re.match(r"^https?://[^/\s]+", value):
        raise ConfigError(
            f"{name} must be an http(s) URL such as https://example.org, got {value!r}"
        )
    return value.rstrip("/")


def is_local_url(url: str) -> bool:
    """Does this URL name this machine or a private network (localhost, 127.x, ::1, 10.x,
    192.168.x, a `.local` name...), which nobody on the internet can reach?"""
    host = (urlsplit(url).hostname or "").rstrip(".").lower()
    if host in ("", "localhost") or host.endswith((".localhost", ".local", ".internal")):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False  # a name: public as far as we can tell without asking DNS
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return not address.is_global


def unreachable_from_internet(url: str) -> str | None:
    """Why a provider on the internet could not call this URL, or None when it could."""
    reasons = []
    if urlsplit(url).scheme != "https":
        reasons.append("it is not https")
    if is_local_url(url):
        reasons.append("it names this machine or a private network")
    return " and ".join(reasons) or None


def _positive_float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = _text(env, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number greater than 0, got {raw!r}") from None
    if not value > 0:
        raise ConfigError(f"{name} must be a number greater than 0, got {raw!r}")
    return value


MIN_ADMIN_TOKEN = 32


def _secret(env: Mapping[str, str], name: str, minimum: int) -> str | None:
    """A bearer secret: short ones can be guessed, so they stop the process (never echoed)."""
    value = _text(env, name)
    if value is not None and len(value) < minimum:
        raise ConfigError(
            f"{name} must be at least {minimum} characters (it has {len(value)}); "
            "make one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
    return value


# Telegram's own rule for the secret token it echoes in X-Telegram-Bot-Api-Secret-Token.
_TELEGRAM_SECRET_CHARACTERS = re.compile(r"[A-Za-z0-9_-]+")
TELEGRAM_SECRET_MAX = 256  # Telegram refuses a longer one when the webhook is set
# The header is all that tells an update from Telegram from a stranger's forged one (a STOP
# or an answer for any chat id), and the webhook URL is public. Each guess costs a request,
# so 16 characters from Telegram's 64 (96 bits) is out of reach; "a" is not.
TELEGRAM_SECRET_MIN = 16


def _telegram_webhook_secret(env: Mapping[str, str]) -> str | None:
    """Checked at start against what Telegram accepts, never echoed: a bad one would
    otherwise surface only as `involve webhooks set` failing, or every update refused."""
    name = "TELEGRAM_WEBHOOK_SECRET"
    value = _text(env, name)
    if value is None:
        return None
    make = "make one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
    if not _TELEGRAM_SECRET_CHARACTERS.fullmatch(value):
        raise ConfigError(
            f"{name} may hold only the letters A-Z and a-z, digits, _ and - "
            f"(Telegram's rule; no spaces or other characters); {make}"
        )
    if not TELEGRAM_SECRET_MIN <= len(value) <= TELEGRAM_SECRET_MAX:
        raise ConfigError(
            f"{name} must be {TELEGRAM_SECRET_MIN} to {TELEGRAM_SECRET_MAX} characters "
            f"(it has {len(value)}); {make}"
        )
    return value


SUPPRESSION_KEY_MIN = 32


def _suppression_key(env: Mapping[str, str], channels_on: bool) -> str | None:
    key = _text(env, "SUPPRESSION_KEY")
    if key is None and channels_on:
        raise ConfigError(
            "SUPPRESSION_KEY must be set when Twilio or Telegram is on: a random secret of at "
            f"least {SUPPRESSION_KEY_MIN} characters (e.g. from `openssl rand -hex 32`), kept "
            "for good, that keys the opt-out hashes of erased people"
        )
    if key is not None and len(key) < SUPPRESSION_KEY_MIN:
        raise ConfigError(
            f"SUPPRESSION_KEY must be at least {SUPPRESSION_KEY_MIN} characters of random "
            f"secret (e.g. from `openssl rand -hex 32`), got {len(key)}"
        )
    return key


ORG_NAME_MAX = 60  # the name is in every HELP and STOP answer, which keep within 2 texts


def _org_name(env: Mapping[str, str], channels_on: bool) -> OrgName:
    """ORG_NAME, with ORG_NAME_CY for sentences in Welsh (the English name there otherwise;
    with neither set, our default name in each language)."""
    name = _text(env, "ORG_NAME")
    welsh = _text(env, "ORG_NAME_CY")
    for variable, value in (("ORG_NAME", name), ("ORG_NAME_CY", welsh)):
        if value is not None and len(value) > ORG_NAME_MAX:
            raise ConfigError(
                f"{variable} must be at most {ORG_NAME_MAX} characters (it has {len(value)}): "
                "it is in every HELP and STOP text"
            )
    if name is None:
        if channels_on:
            raise ConfigError(
                "ORG_NAME must be set when Twilio or Telegram is on: the name participants "
                "know you by, said in every invitation, HELP and STOP answer "
                "(e.g. ORG_NAME='Age Better Cardiff')"
            )
        return OrgName(DEFAULT_ORG_NAME, cy=welsh or t("cy", DEFAULT_ORG_NAME))
    return OrgName(name, cy=welsh)


CONTACT_PHONE_MAX = 24  # in HELP's answer, which keeps within two segments with a question


def _contact_phone(env: Mapping[str, str]) -> str | None:
    """Kept as the charity writes it ("0300 123 4567"), once we know it is a number."""
    raw = _text(env, "CONTACT_PHONE")
    if raw is None:
        return None
    try:
        normalise_phone(raw)
    except InvalidPhoneNumber as exc:
        raise ConfigError(
            f"CONTACT_PHONE must be a phone number where a participant can reach a person, "
            f"such as 0300 123 4567: {exc}"
        ) from None
    if len(raw) > CONTACT_PHONE_MAX:
        raise ConfigError(
            f"CONTACT_PHONE must be at most {CONTACT_PHONE_MAX} characters, got {len(raw)}"
        )
    return " ".join(raw.split())


def _retention_days(env: Mapping[str, str], name: str) -> int | None:
    raw = _text(env, name)
    if raw is None or raw.lower() == "off":
        return None
    if not (raw.isascii() and raw.isdigit()) or not 0 < int(raw) <= 36500:
        raise ConfigError(
            f"{name} must be a whole number of days from 1 to 36500, or off, got {raw!r}"
        )
    return int(raw)


def _timezone(env: Mapping[str, str], name: str, default: str) -> ZoneInfo:
    raw = _text(env, name, default) or default
    try:
        return ZoneInfo(raw)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"{name} must be an IANA time zone such as Europe/London, got {raw!r}"
        ) from None


def parse_quiet_hours(raw: str, name: str = "QUIET_HOURS") -> tuple[QuietWindow, ...]:
    """`20:00-10:00,15:00-16:00` -> windows; a window may wrap past midnight. Empty means none."""
    windows = []
    for part in (p.strip() for p in raw.split(",")):
        if not part:
            continue
        match = re.fullmatch(r"(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})", part)
        if not match:
            raise ConfigError(f"{name} must be windows like 20:00-10:00,15:00-16:00, got {part!r}")
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59:
            raise ConfigError(f"{name} has a time that does not exist: {part!r}")
        start, end = time(h1, m1), time(h2, m2)
        if start == end:
            raise ConfigError(f"{name} window {part!r} starts and ends at the same time")
        windows.append(QuietWindow(start, end))
    return tuple(windows)


_DURATION = re.compile(r"(\d+)\s*(m|min|h|d)")
_UNITS = {"m": 60, "min": 60, "h": 3600, "d": 86400}


def parse_durations(raw: str, name: str) -> tuple[timedelta, ...]:
    """`15m,1h,1d` -> the delays before each further call; empty means never call again."""
    found = []
    for part in (p.strip() for p in raw.split(",")):
        if not part:
            continue
        match = _DURATION.fullmatch(part)
        if not match or int(match.group(1)) == 0:
            raise ConfigError(f"{name} must be delays like 15m,1h,1d, got {part!r}")
        found.append(timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)]))
    return tuple(found)


def _int_between(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = _text(env, name)
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise ConfigError(f"{name} must be a whole number from {low} to {high}, got {raw!r}")
    return int(raw)


def _fraction(env: Mapping[str, str], name: str, default: float) -> float:
    raw = _text(env, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 1:
        raise ConfigError(f"{name} must be a number from 0 to 1, got {raw!r}")
    return value


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = (_text(env, name) or "no").lower()
    if raw not in ("yes", "true", "1", "no", "false", "0"):
        raise ConfigError(f"{name} must be yes or no, got {raw!r}")
    return raw in ("yes", "true", "1")


def load_settings(
    env: Mapping[str, str] | None = None, instance_path: Path | None = None
) -> Settings:
    env = os.environ if env is None else env
    instance = Path(instance_path or _text(env, "INVOLVE_INSTANCE_PATH") or "instance").absolute()
    database_url = _text(env, "DATABASE_URL") or f"sqlite:///{instance / 'involve.sqlite3'}"
    if not re.match(r"^(sqlite|postgres(ql)?)(\+\w+)?://", database_url):
        raise ConfigError(
            "DATABASE_URL must be a sqlite:/// or postgresql:// URL, "
            f"got {database_url.split('://')[0]!r}"
        )
    if database_url.startswith("postgres://"):
        # Heroku-style URLs; SQLAlchemy wants the full dialect name.
        database_url = "postgresql://" + database_url[len("postgres://") :]
    if database_url.startswith("postgresql://"):
        database_url = "postgresql+psycopg://" + database_url[len("postgresql://") :]
    redis_url = _text(env, "REDIS_URL")
    if redis_url and not re.match(r"^(redis|rediss|unix)://", redis_url):
        raise ConfigError(
            f"REDIS_URL must be a redis://, rediss:// or unix:// URL, got {redis_url!r}"
        )
    sid, token = _text(env, "TWILIO_ACCOUNT_SID"), _text(env, "TWILIO_AUTH_TOKEN")
    if bool(sid) != bool(token):
        missing = "TWILIO_AUTH_TOKEN" if sid else "TWILIO_ACCOUNT_SID"
        raise ConfigError(f"{missing} must be set too: Twilio needs both the account SID and token")
    from_number = _text(env, "TWILIO_FROM_NUMBER")
    if sid and from_number is None:
        raise ConfigError(
            "TWILIO_FROM_NUMBER must be set too: texts and calls need a number to come from"
        )
    if from_number is not None:
        try:
            from_number = normalise_phone(from_number)
        except InvalidPhoneNumber as exc:
            raise ConfigError(f"TWILIO_FROM_NUMBER must be a phone number: {exc}") from None
    channels_on = bool(sid) or bool(_text(env, "TELEGRAM_BOT_TOKEN"))
    suppression_key = _suppression_key(env, channels_on)
    settings = Settings(
        database_url=database_url,
        redis_url=redis_url,
        admin_token=_secret(env, "ADMIN_TOKEN", MIN_ADMIN_TOKEN),
        public_base_url=_url(env, "PUBLIC_BASE_URL", "http://localhost:5000"),
        twilio_account_sid=sid,
        twilio_auth_token=token,
        twilio_from_number=from_number,
        twilio_api_base_url=_url(env, "TWILIO_API_BASE_URL", "https://api.twilio.com"),
        telegram_bot_token=_text(env, "TELEGRAM_BOT_TOKEN"),
        telegram_webhook_secret=_telegram_webhook_secret(env),
        telegram_api_base_url=_url(env, "TELEGRAM_API_BASE_URL", "https://api.telegram.org"),
        conversations_dir=Path(_text(env, "CONVERSATIONS_DIR", "conversations") or "conversations"),
        timezone=_timezone(env, "INVOLVE_TIMEZONE", "Europe/London"),
        quiet_hours=parse_quiet_hours(
            env.get("QUIET_HOURS", "20:00-10:00,15:00-16:00") or "", "QUIET_HOURS"
        ),
        send_rate=_positive_float(env, "SEND_RATE", 1.0),
        instance_path=instance,
        org_name=_org_name(env, channels_on),
        contact_phone=_contact_phone(env),
        inbound_call_survey=_text(env, "INBOUND_CALL_SURVEY"),
        voice_name=_text(env, "VOICE_NAME", "Polly.Amy") or "Polly.Amy",
        voice_language=_text(env, "VOICE_LANGUAGE", "en-GB") or "en-GB",
        # Older callers need time to find the key: never less than 10 seconds.
        voice_wait_seconds=_int_between(env, "VOICE_WAIT_SECONDS", 10, 10, 60),
        voice_confidence=_fraction(env, "VOICE_CONFIDENCE", 0.6),
        voice_transcribe=_flag(env, "VOICE_TRANSCRIBE"),
        voice_retry=parse_durations(env.get("VOICE_RETRY", "15m,1h,1d") or "", "VOICE_RETRY"),
        suppression_key=suppression_key,
        invite_gap_days=_int_between(env, "INVITE_GAP_DAYS", 14, 0, 365),
        retention_days=_retention_days(env, "RETENTION_DAYS"),
        telegram_bot_username=_bot_username(env, "TELEGRAM_BOT_USERNAME"),
        trusted_proxies=_int_between(env, "TRUSTED_PROXIES", 0, 0, 5),
        demo=_flag(env, "INVOLVE_DEMO"),
    )
    if settings.demo:
        _only_local_in_demo(settings)
    return settings


def _only_local_in_demo(settings: Settings) -> None:
    """A demo's providers, and the address they call back, are on this machine: a real
    provider (or a public address) beside INVOLVE_DEMO would show real people's messages
    under a "nothing is sent" banner."""
    for name, url in (
        ("TWILIO_API_BASE_URL", settings.twilio_api_base_url),
        ("TELEGRAM_API_BASE_URL", settings.telegram_api_base_url),
        ("PUBLIC_BASE_URL", settings.public_base_url),
    ):
        if not is_local_url(url):
            raise ConfigError(
                f"{name} must name this machine when INVOLVE_DEMO is set (a demo never "
                f"reaches real providers or people), got {url!r}"
            )


def _bot_username(env: Mapping[str, str], name: str) -> str | None:
    raw = _text(env, name)
    if raw is None:
        return None
    value = raw.removeprefix("@")
    # Telegram's rule for bot usernames: 5-32 letters, digits or underscores.
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{4,31}", value):
        raise ConfigError(f"{name} must be a bot username such as InvolveBot, got {raw!r}")
    return value
