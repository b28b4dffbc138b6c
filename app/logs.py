"""Structured logs for Cloud Logging: one JSON object per line on stdout.

Cloud Run's agent turns `severity`, `message`, `httpRequest` and
`logging.googleapis.com/trace` into the entry's own fields, so request lines
show up correlated with their traces. A small formatter of our own costs a few
microseconds a line; the google-cloud-logging package would cost more at import.
"""

import asyncio
import logging
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

# stdlib level names that are also Cloud Logging severities (the rest map to DEFAULT).
_SEVERITIES = frozenset(("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "severity": record.levelname if record.levelname in _SEVERITIES else "DEFAULT",
            "message": record.getMessage(),
            "logger": record.name,
            "time": record.created,
        }
        if record.exc_info:
            entry["stack_trace"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)
    # Libraries log at INFO about things a gateway operator does not need per request.
    for noisy in ("google", "urllib3", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


class LineWriter:
    """Request lines written once per event-loop turn: one syscall for every request that ended in it.

    Outside a running loop (tests, shutdown) a line goes out at once.
    """

    def __init__(self) -> None:
        self._lines: list[str] = []
        self._scheduled = False

    def write(self, line: str) -> None:
        self._lines.append(line)
        if self._scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        self._scheduled = True
        loop.call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        if self._lines:
            data = "".join(self._lines)
            self._lines.clear()
            sys.stdout.write(data)
            sys.stdout.flush()


request_lines = LineWriter()


def parse_trace(headers: dict[bytes, bytes]) -> tuple[str | None, str | None, bool]:
    """(trace id, span id, sampled) from X-Cloud-Trace-Context or W3C traceparent."""
    cloud = headers.get(b"x-cloud-trace-context")
    if cloud:
        text = cloud.decode("latin-1")
        trace, _, rest = text.partition("/")
        span, _, options = rest.partition(";")
        if trace and all(c in "0123456789abcdefABCDEF" for c in trace):
            return trace, span or None, options.strip() == "o=1"
    parent = headers.get(b"traceparent")
    if parent:
        parts = parent.decode("latin-1").split("-")
        if len(parts) == 4 and len(parts[1]) == 32:
            return parts[1], parts[2], parts[3].endswith("1")
    return None, None, False


@dataclass(slots=True)
class RequestLog:
    """Facts gathered along one request, written as one line at its end."""

    method: str
    path: str
    headers: dict[bytes, bytes]
    client: str | None
    started: float = field(default_factory=time.perf_counter)
    status: int = 0
    first_byte: float | None = None
    key_id: str | None = None
    alias: str | None = None
    vertex_model: str | None = None
    stream: bool | None = None
    usage: dict[str, int] | None = None
    outcome: str | None = None
    error: str | None = None
    attempts: int = 0
    response_bytes: int = 0
    response_started: bool = False

    def mark_first_byte(self) -> None:
        if self.first_byte is None:
            self.first_byte = time.perf_counter()

    def emit(self, project: str | None) -> None:
        latency = time.perf_counter() - self.started
        status = self.status
        severity = "ERROR" if status >= 500 or (self.outcome or "").startswith("upstream_") else "INFO"
        if 400 <= status < 500:
            severity = "WARNING"
        entry: dict[str, Any] = {
            "severity": severity,
            "message": f"{self.method} {self.path} {status}" + (f" {self.outcome}" if self.outcome else ""),
            "httpRequest": {
                "requestMethod": self.method,
                "requestUrl": self.path,
                "status": status,
                "responseSize": str(self.response_bytes),
                "userAgent": self.headers.get(b"user-agent", b"").decode("latin-1"),
                "remoteIp": self.headers.get(b"x-forwarded-for", b"").decode("latin-1").split(",")[0].strip()
                or self.client,
                "latency": f"{latency:.6f}s",
                "protocol": "HTTP/1.1",
            },
            "latency_ms": round(latency * 1000, 3),
            "ttfb_ms": round((self.first_byte - self.started) * 1000, 3) if self.first_byte else None,
            "key_id": self.key_id,
            "alias": self.alias,
            "vertex_model": self.vertex_model,
            "stream": self.stream,
            "usage": self.usage,
        }
        if self.outcome:
            entry["outcome"] = self.outcome
        if self.error:
            entry["error"] = self.error
        if self.attempts > 1:
            entry["upstream_attempts"] = self.attempts
        trace, span, sampled = parse_trace(self.headers)
        if trace and project:
            entry["logging.googleapis.com/trace"] = f"projects/{project}/traces/{trace}"
            if span:
                entry["logging.googleapis.com/spanId"] = span
            entry["logging.googleapis.com/trace_sampled"] = sampled
        request_lines.write(orjson.dumps(entry).decode() + "\n")
