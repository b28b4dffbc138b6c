"""The gunicorn worker class: uvicorn tuned for a streaming proxy on the open internet."""

from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn_worker import UvicornWorker

# Generous for any real client (browsers send ~1-2 KiB), small enough that a
# hostile one cannot make a worker hold megabytes of header per connection.
MAX_HEADER_BYTES = 64 * 1024
MAX_HEADER_COUNT = 128


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with bounds on request-line + header size and count.

    httptools buffers a header until it is complete, so the size bound counts raw
    bytes fed while the headers are still incomplete.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._reading_headers = True
        self._header_bytes = 0
        self._headers_completed = 0

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._reading_headers = True
        self._header_bytes = 0

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(self.headers) >= MAX_HEADER_COUNT:
            # Raised inside the parser, this surfaces as uvicorn's own 400 and a closed connection.
            raise httptools.HttpParserError(f"more than {MAX_HEADER_COUNT} headers")
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._reading_headers = False
        self._headers_completed += 1
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._reading_headers = True
        self._header_bytes = 0

    def data_received(self, data: bytes) -> None:
        # Only a chunk that starts and ends inside one message's headers counts; a chunk
        # that completes the headers, or carries body bytes, does not.
        was_reading, completed = self._reading_headers, self._headers_completed
        super().data_received(data)
        still_reading = self._reading_headers and self._headers_completed == completed
        if was_reading and still_reading and not self.transport.is_closing():
            self._header_bytes += len(data)
            if self._header_bytes > MAX_HEADER_BYTES:
                self._refuse_headers()

    def _refuse_headers(self) -> None:
        message = f"Request headers exceed {MAX_HEADER_BYTES} bytes."
        self.logger.warning(message)
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; charset=utf-8\r\n"
            b"content-length: " + str(len(message)).encode() + b"\r\nconnection: close\r\n\r\n" + message.encode()
        )
        self.transport.close()


class GatewayWorker(UvicornWorker):
    CONFIG_KWARGS: dict[str, Any] = {
        "loop": "uvloop",
        "http": BoundedHttpToolsProtocol,
        "ws": "none",
        # The app writes its own structured line per request.
        "access_log": False,
        "lifespan": "on",
        # Leaves a margin inside gunicorn's graceful_timeout (9 s) so the worker
        # exits 0 on its own instead of being killed.
        "timeout_graceful_shutdown": 7,
        "server_header": False,
        # The app reads X-Forwarded-For itself for its log line; uvicorn's middleware would
        # cost every request a pass over the headers to trust only 127.0.0.1 anyway.
        "proxy_headers": False,
        "date_header": True,
    }
