"""Structured logs for Cloud Logging: one JSON object per line on stdout.

Cloud Run's agent turns `severity`, `message`, `httpRequest` and
`logging.googleapis.com/trace` into the entry's own fields, so request lines
show up correlated with their traces. A small formatter of our own costs a few
microseconds a line; the google-cloud-logging package would cost more at import.
"""

import asyncio
import logging
import re
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from app.redact import redact

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


# X-Cloud-Trace-Context: TRACE_ID/SPAN_ID;o=OPTIONS, a 32-hex trace id and a decimal span id.
_CLOUD_TRACE = re.compile(rb"^([0-9a-fA-F]{32})(?:/([0-9]{1,20}))?(?:;o=([01]))?$")
# W3C traceparent: version-traceid-parentid-flags, lowercase hex, ids not all zero.
_TRACEPARENT = re.compile(rb"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def parse_trace(headers: dict[bytes, bytes]) -> tuple[str | None, str | None, bool]:
    """(trace id, span id, sampled) from X-Cloud-Trace-Context or W3C traceparent.

    Both come from the client, so only values of the documented shape reach a log field.
    """
    cloud = headers.get(b"x-cloud-trace-context")
    if cloud and (match := _CLOUD_TRACE.match(cloud.strip())):
        span = match[2].decode() if match[2] else None
        return match[1].decode().lower(), span, match[3] == b"1"
    parent = headers.get(b"traceparent")
    if parent and (match := _TRACEPARENT.match(parent.strip())):
        version, trace, span, flags = (group.decode() for group in match.groups())
        if version != "ff" and trace.strip("0") and span.strip("0"):
            return trace, span, int(flags, 16) & 1 == 1
    return None, None, False


# A conversation's id, as clients send it: X-Proxy-Chat-Session (set by the caller, e.g. an SDK's default
# headers) or Claude Code's own X-Claude-Code-Session-Id. Only the log sees it: upstream headers are built,
# never copied.
SESSION_HEADERS = (b"x-proxy-chat-session", b"x-claude-code-session-id")
SESSION_MAX = 128
_SESSION_UNSAFE = re.compile(r"[^A-Za-z0-9._:@/+=-]")


def session_of(headers: dict[bytes, bytes]) -> str | None:
    """The request's conversation id, cut to SESSION_MAX and with anything but a safe set replaced by `_`."""
    for name in SESSION_HEADERS:
        value = headers.get(name)
        if value:
            text = value[:SESSION_MAX].decode("latin-1").strip()
            if text:
                return _SESSION_UNSAFE.sub("_", text)
    return None


def client_address(headers: dict[bytes, bytes], peer: str | None) -> str | None:
    """The address Google's front end saw: the last X-Forwarded-For entry, which it appends.
    Entries before it are whatever the client sent, so they are never taken as the caller's address."""
    forwarded = headers.get(b"x-forwarded-for")
    if forwarded:
        last = forwarded.rpartition(b",")[2].strip().decode("latin-1")
        if last:
            return last[:64]
    return peer


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
    # Set where the gateway translates between APIs: the upstream API called ("gemini"), tools it could
    # not offer the model, and how Gemini 3 thought signatures were supplied ({"restored": n, "dummy": n}).
    upstream_api: str | None = None
    dropped_tools: list[str] | None = None
    thought_signatures: dict[str, int] | None = None

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
                "remoteIp": client_address(self.headers, self.client),
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
            entry["error"] = redact(self.error)
        if self.attempts > 1:
            entry["upstream_attempts"] = self.attempts
        session = session_of(self.headers)
        if session:
            entry["session"] = session
        if self.upstream_api:
            entry["upstream_api"] = self.upstream_api
        if self.dropped_tools:
            entry["dropped_tools"] = self.dropped_tools
        if self.thought_signatures:
            entry["thought_signatures"] = self.thought_signatures
        trace, span, sampled = parse_trace(self.headers)
        if trace and project:
            entry["logging.googleapis.com/trace"] = f"projects/{project}/traces/{trace}"
            if span:
                entry["logging.googleapis.com/spanId"] = span
            entry["logging.googleapis.com/trace_sampled"] = sampled
        request_lines.write(orjson.dumps(entry).decode() + "\n")
