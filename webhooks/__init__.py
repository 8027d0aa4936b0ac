"""The web app: thin blueprints that parse, check signatures, call the core and render."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Mapping
from typing import Any

from flask import Blueprint, Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from bot import channels, logmask
from bot.commands import runtime
from bot.config import ConfigError, Settings
from webhooks import admin, console, health, twilio_status


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app. `test_config` may carry SETTINGS (a bot.config.Settings) and Flask keys."""
    config = dict(test_config or {})
    settings: Settings | None = config.pop("SETTINGS", None)
    if settings is not None:
        runtime.configure(settings)
    try:
        settings = runtime.settings()
    except ConfigError as exc:
        # A bad setting stops the process at start, in one line naming the variable.
        raise SystemExit(f"involve: {exc}") from None

    app = Flask(__name__, instance_path=str(settings.instance_path))
    app.config.from_mapping(JSON_SORT_KEYS=False, MAX_CONTENT_LENGTH=20 * 1024 * 1024)
    app.config.update(config)
    app.extensions["involve.settings"] = settings
    if settings.trusted_proxies:
        # The client's address only, for the admin and sign-in limits. The scheme and host
        # are not taken from headers: signatures are checked against PUBLIC_BASE_URL.
        proxied = ProxyFix(app.wsgi_app, x_for=settings.trusted_proxies, x_proto=0, x_host=0)
        app.wsgi_app = proxied  # type: ignore[method-assign]
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logmask.install()

    app.register_blueprint(admin.bp)
    console.init_app(app, settings)
    app.register_blueprint(health.bp)
    app.register_blueprint(twilio_status.bp)
    for blueprint in channel_blueprints():
        app.register_blueprint(blueprint)
    return app


def channel_blueprints() -> list[Blueprint]:
    """Each channel's endpoints, as its plug-in lists them (two channels may share one)."""
    found: dict[str, Blueprint] = {}
    for channel in channels.all_channels():
        for target in channel.webhooks:
            if target not in found:
                module, attribute = target.split(":")
                found[target] = getattr(importlib.import_module(module), attribute)
    return list(found.values())
