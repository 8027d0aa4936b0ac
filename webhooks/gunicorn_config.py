"""gunicorn settings for every web process: the Procfile's `web` and `involve serve` both run
gunicorn with `--config python:webhooks.gunicorn_config`. gunicorn ignores settings it does not
know, so an older gunicorn reads this file too."""

# gunicorn 25.1 on opens a control socket at one path per user ($XDG_RUNTIME_DIR/gunicorn.ctl
# or ~/.gunicorn/gunicorn.ctl): two services on one machine, or two `involve serve`, take it
# over from each other, and the first one to stop removes the other's. Nothing here uses it.
control_socket_disable = True
