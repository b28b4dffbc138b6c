"""Every error the gateway returns, in the caller's own shape.

OpenAI routes answer `{"error": {"message", "type", "param", "code"}}`; Anthropic
routes answer `{"type": "error", "error": {"type", "message"}}`; the native Vertex
passthrough answers Google's `{"error": {"code", "message", "status"}}`. SDKs pick their
exception class from the status, and show the message, so every message says
what was wrong and how to fix it.
"""

from enum import Enum
from typing import Any

import orjson

from app.redact import redact_bytes

JSON_HEADERS = [(b"content-type", b"application/json")]


class Shape(Enum):
    OPENAI = "openai"
    ANTHROPIC = "anthropic"
    GOOGLE = "google"


# google.rpc.Code names, as Google APIs put them in `error.status`.
GOOGLE_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "UNIMPLEMENTED",
    409: "ABORTED",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}


class GatewayError(Exception):
    """An error the gateway answers itself; rendered in the route's shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.headers = headers or []


def error_type(shape: Shape, status: int) -> str:
    table = _OPENAI_TYPES if shape is Shape.OPENAI else _ANTHROPIC_TYPES
    return table.get(status, "api_error" if status >= 500 else "invalid_request_error")


def error_body(shape: Shape, status: int, message: str, code: str | None = None, param: str | None = None) -> bytes:
    if shape is Shape.GOOGLE:
        # google-genai and AnthropicVertex read `error.message` and `error.status`; our own code goes in `details`
        # as a google.rpc.ErrorInfo `reason`, where Google puts machine-readable reasons.
        error: dict[str, Any] = {"code": status, "message": message, "status": GOOGLE_STATUS.get(status, "UNKNOWN")}
        if code:
            error["details"] = [
                {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": code, "domain": "llm-gateway"}
            ]
        return orjson.dumps({"error": error})
    kind = error_type(shape, status)
    if shape is Shape.ANTHROPIC:
        return orjson.dumps({"type": "error", "error": {"type": kind, "message": message}})
    return orjson.dumps({"error": {"message": message, "type": kind, "param": param, "code": code}})


def render(shape: Shape, error: GatewayError) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    body = error_body(shape, error.status, error.message, error.code, error.param)
    return error.status, JSON_HEADERS + error.headers, body


def _google_error(data: Any) -> dict[str, Any] | None:
    # Vertex sometimes wraps the envelope in a one-element list.
    if isinstance(data, list) and data and isinstance(data[0], dict):
        data = data[0]
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        return data["error"]
    return None


def _already_shaped(shape: Shape, data: Any) -> bool:
    if shape is Shape.GOOGLE:
        return _google_error(data) is not None
    if shape is Shape.ANTHROPIC:
        return isinstance(data, dict) and data.get("type") == "error" and isinstance(data.get("error"), dict)
    error = data.get("error") if isinstance(data, dict) else None
    return isinstance(error, dict) and "type" in error and "status" not in error


def convert_upstream_error(shape: Shape, status: int, body: bytes, status_out: int | None = None) -> bytes:
    """Turn an upstream error body into the caller's shape, keeping its meaning.

    `status_out` is the status the caller will see when it differs from Vertex's.
    """
    body = redact_bytes(body)
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None
    if data is not None and _already_shaped(shape, data):
        return body
    google = _google_error(data)
    if google is not None:
        reason = google.get("status")
        text = google.get("message") or "no message"
        message = f"Vertex AI returned {status}{' ' + reason if isinstance(reason, str) else ''}: {text}"
        code = reason if isinstance(reason, str) else None
    else:
        snippet = body[:300].decode("utf-8", "replace").strip()
        message = f"Vertex AI returned HTTP {status}" + (f": {snippet}" if snippet else " with an empty body")
        code = None
    if status == 429:
        message += " (quota or rate limit: retry after the Retry-After interval, or ask for more Vertex AI quota)"
    if status == 401:
        message += " (Vertex refused the gateway's own Google credentials even after a fresh token: the operator "
        "should check the service account; your API key is fine)"
    return error_body(shape, status_out or status, message, code)


INTERNAL_ERROR = GatewayError(
    500, "The gateway hit an internal error; it is logged. Retry, or report it to the operator."
)
