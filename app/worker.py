"""The gunicorn worker class: uvicorn tuned for a streaming proxy."""

from typing import Any

from uvicorn_worker import UvicornWorker


class GatewayWorker(UvicornWorker):
    CONFIG_KWARGS: dict[str, Any] = {
        "loop": "uvloop",
        "http": "httptools",
        # The app writes its own structured line per request.
        "access_log": False,
        "lifespan": "on",
        # Leaves a margin inside gunicorn's graceful_timeout (9 s) so the worker
        # exits 0 on its own instead of being killed.
        "timeout_graceful_shutdown": 7,
        "server_header": False,
        "date_header": True,
    }
