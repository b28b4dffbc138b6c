"""gunicorn settings for Cloud Run: the container's CMD is
`gunicorn -c gunicorn.conf.py app.main:app`."""

import os
import sys


def _int_env(name: str, default: int, minimum: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        # Fail fast with the variable's name: gunicorn would otherwise start with a guess.
        sys.exit(f"config error: {name}={raw!r} must be a whole number >= {minimum}")
    return value


bind = [f"0.0.0.0:{_int_env('PORT', 8080, 1)}"]
workers = _int_env("WEB_CONCURRENCY", os.cpu_count() or 1, 1)
worker_class = "app.worker.GatewayWorker"
# Streams may legitimately stay silent for minutes while a model thinks; the
# gunicorn heartbeat timeout must never kill a busy worker.
timeout = 0
# Cloud Run sends SIGKILL 10 s after SIGTERM: finish in-flight requests before that.
graceful_timeout = 9
# Above the Google front end's 600 s idle timeout, so the proxy never reuses a
# connection we already closed.
keepalive = 620
accesslog = None
# No gunicornc control socket: nothing uses it, and it would write under $HOME.
control_socket_disable = True
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
