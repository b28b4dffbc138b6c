"""Gemini thought signatures carried through the tool call ids that clients echo.

Gemini puts an opaque thought signature on the tool calls it makes (Vertex's OpenAI-compatible endpoint:
`tool_calls[].extra_content.google.thought_signature`) and Gemini 3 refuses a next request whose current
turn lacks it. Clients that rebuild the assistant turn (the OpenAI Agents SDK, pi) drop `extra_content`,
but every client echoes the call's `id` (and the tool message's `tool_call_id`). The gateway keeps no
state, so the answer side writes the signature into the id (`carry`) and the request side takes it back
out (`split`, `restore_chat`), giving Vertex exactly the ids and signatures it issued.

A carried id is `{id}__ts_{payload}_{len(payload)}`: the payload is the signature's bytes in URL-safe
base64 without padding (`__tu_` instead when the signature is not canonical base64: its UTF-8 bytes),
so it holds only `[A-Za-z0-9_-]`, which Anthropic's tool_use ids also allow. The payload's own length
closes the id, so `split` reads it from the right unambiguously whatever the id or the payload holds.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

import orjson

from app.usage import UsageSniffer, usage_of, usage_of_json

# Google's documented signature for function calls the model did not make itself (history from another
# model, calls made by the client): it skips the check. Vertex AI accepts only this value
# (https://docs.cloud.google.com/vertex-ai/generative-ai/docs/thought-signatures, "Using REST or manual
# handling"); the Gemini API also accepts "context_engineering_is_the_way_to_go"
# (https://ai.google.dev/gemini-api/docs/thought-signatures, FAQs).
DUMMY = "skip_thought_signature_validator"

_BASE64 = "__ts_"  # the payload is the signature's bytes
_TEXT = "__tu_"  # the payload is the signature's UTF-8 text (it was not canonical base64)
_PAYLOAD = re.compile(r"[A-Za-z0-9_-]*")
_TAIL = re.compile(r"_(0|[1-9][0-9]{0,8})\Z")
# Gemini 3 and later check signatures (vercel/ai scopes its fallback to /^gemini-3[.-]/).
_STRICT = re.compile(r"^(?:google/)?gemini-(?:[3-9]|[1-9][0-9]+)(?:[.-]|$)")


def _urlsafe(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def carry(call_id: str, signature: str) -> str:
    """`call_id` with `signature` written into it; `split` gives both back exactly."""
    try:
        raw = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        raw = None
    if raw is not None and base64.b64encode(raw).decode("ascii") == signature:
        tag, payload = _BASE64, _urlsafe(raw)
    else:
        tag, payload = _TEXT, _urlsafe(signature.encode("utf-8", "surrogatepass"))
    return f"{call_id}{tag}{payload}_{len(payload)}"


def split(call_id: str) -> tuple[str, str | None]:
    """(the original id, the signature) of a carried id; (call_id, None) for any other string."""
    if not isinstance(call_id, str) or "__t" not in call_id:
        return call_id, None
    tail = _TAIL.search(call_id)
    if tail is None:
        return call_id, None
    size = int(tail[1])
    end = tail.start()
    start = end - size
    head = start - len(_BASE64)
    if head < 0 or size % 4 == 1:
        return call_id, None
    tag, payload = call_id[head:start], call_id[start:end]
    if tag not in (_BASE64, _TEXT) or not _PAYLOAD.fullmatch(payload):
        return call_id, None
    try:
        raw = base64.urlsafe_b64decode(payload + "=" * (-size % 4))
        signature = base64.b64encode(raw).decode("ascii") if tag == _BASE64 else raw.decode("utf-8", "surrogatepass")
    except (binascii.Error, ValueError):
        return call_id, None
    return call_id[:head], signature


def requires_signatures(vertex_name: str) -> bool:
    """Whether the model refuses a current turn whose function calls lack thought signatures (Gemini 3+)."""
    return isinstance(vertex_name, str) and _STRICT.match(vertex_name) is not None


def _signature_of(call: dict[str, Any]) -> str | None:
    extra = call.get("extra_content")
    google = extra.get("google") if isinstance(extra, dict) else None
    signature = google.get("thought_signature") if isinstance(google, dict) else None
    return signature if isinstance(signature, str) and signature else None


def _set_signature(call: dict[str, Any], signature: str) -> bool:
    """Put `signature` in the call's extra_content; False where a client put something else there."""
    extra = call.get("extra_content")
    if extra is None:
        extra = call["extra_content"] = {}
    elif not isinstance(extra, dict):
        return False
    google = extra.get("google")
    if google is None:
        google = extra["google"] = {}
    elif not isinstance(google, dict):
        return False
    google["thought_signature"] = signature
    return True


def restore_chat(messages: list[Any], model_name: str) -> dict[str, int] | None:
    """Give a chat request's history back the ids and signatures Vertex issued, in place.

    A carried id in an assistant message's tool call goes back to Vertex's id and its signature back to
    `extra_content.google.thought_signature` (unless the client kept one there); the tool messages'
    `tool_call_id` go back to the same ids. For Gemini 3 and later, an assistant message whose first tool
    call still has no signature (the client never had one) gets DUMMY. Returns how many signatures were
    restored and how many dummies set, or None when neither happened; never raises on odd shapes.
    """
    if not isinstance(messages, list):
        return None
    restored = dummy = 0
    strict: bool | None = None  # decided at the first tool call: most requests have none
    for message in messages:
        if not isinstance(message, dict):
            continue
        role = message.get("role")
        if role == "tool":
            original, signature = split(message.get("tool_call_id"))  # type: ignore[arg-type]
            if signature is not None:
                message["tool_call_id"] = original
            continue
        calls = message.get("tool_calls") if role == "assistant" else None
        if not isinstance(calls, list) or not calls:
            continue
        for call in calls:
            if not isinstance(call, dict):
                continue
            original, signature = split(call.get("id"))  # type: ignore[arg-type]
            if signature is None:
                continue
            call["id"] = original
            if _signature_of(call) is None and _set_signature(call, signature):
                restored += 1
        if strict is None:
            strict = requires_signatures(model_name)
        first = calls[0]
        if strict and isinstance(first, dict) and _signature_of(first) is None and _set_signature(first, DUMMY):
            dummy += 1
    if not (restored or dummy):
        return None
    return {name: n for name, n in (("restored", restored), ("dummy", dummy)) if n}


def _tool_calls(data: Any) -> list[dict[str, Any]]:
    """The tool calls of a chat answer (`choices[].message`) or chunk (`choices[].delta`)."""
    found: list[dict[str, Any]] = []
    choices = data.get("choices") if isinstance(data, dict) else None
    for choice in choices if isinstance(choices, list) else ():
        if not isinstance(choice, dict):
            continue
        for key in ("message", "delta"):
            message = choice.get(key)
            calls = message.get("tool_calls") if isinstance(message, dict) else None
            if isinstance(calls, list):
                found.extend(call for call in calls if isinstance(call, dict))
    return found


def _carry_ids(data: Any, carried: dict[str, str]) -> bool:
    """Rewrite each tool call id that comes with a signature, and later mentions of an id already rewritten
    (remembered in `carried`). True if anything changed."""
    changed = False
    for call in _tool_calls(data):
        call_id = call.get("id")
        if not isinstance(call_id, str):
            continue
        signature = _signature_of(call)
        if signature is not None:
            carried[call_id] = call["id"] = carry(call_id, signature)
            changed = True
        elif call_id in carried:
            call["id"] = carried[call_id]
            changed = True
    return changed


_MARK = b"thought_signature"
_EVENT = re.compile(rb"(.*?)(\r\n\r\n|\n\n)", re.DOTALL)  # one SSE event and the blank line that ends it
_NEWLINE = re.compile(rb"(\r\n|\n|\r)")


class ChatAnswer:
    """Vertex's chat answer with each signed tool call's id carrying its signature (a relay Translator).

    Everything else passes byte for byte. A stream is cut into SSE events only where it must be: while
    nothing is held, a chunk that ends at an event boundary and holds no signature (nor an id already
    rewritten) goes out as it came, unparsed.
    """

    # An event this long without its end is passed on unrewritten rather than held further.
    MAX_PARTIAL = 8 << 20

    def __init__(self) -> None:
        self.usage: dict[str, int] | None = None
        self._sniffer = UsageSniffer()
        self._partial = b""  # the start of an event whose end has not come yet
        self._raw_until_boundary = False  # the rest of an event given up on (too long) goes out as it comes
        self._carried: dict[str, str] = {}  # Vertex's id -> the carried id, for later chunks that repeat it
        self._needles: tuple[bytes, ...] = ()

    def whole(self, body: bytes) -> bytes:
        if _MARK not in body:
            self.usage = usage_of_json(body)
            return body
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return body
        self.usage = usage_of(data)
        return orjson.dumps(data) if _carry_ids(data, {}) else body

    def chunk(self, data: bytes) -> bytes:
        self._sniffer.feed(data)
        self.usage = self._sniffer.usage
        if (
            not self._partial
            and not self._raw_until_boundary
            and data.endswith((b"\n\n", b"\r\n\r\n"))
            and _MARK not in data
            and not self._mentions_carried(data)
        ):
            return data  # the common case: whole events, nothing to rewrite
        if self._partial:
            data, self._partial = self._partial + data, b""
        out = b""
        if self._raw_until_boundary:
            boundary = _EVENT.search(data)
            if boundary is None:
                return data
            out, data = data[: boundary.end()], data[boundary.end() :]
            self._raw_until_boundary = False
        end = 0
        for event in _EVENT.finditer(data):
            end = event.end()
        complete, rest = data[:end], data[end:]
        if len(rest) > self.MAX_PARTIAL:
            self._raw_until_boundary = True
            return out + self._rewrite(complete) + rest
        self._partial = rest
        return out + self._rewrite(complete)

    def end(self) -> bytes:
        tail, self._partial = self._partial, b""
        if not tail or self._raw_until_boundary or (_MARK not in tail and not self._mentions_carried(tail)):
            return tail
        return self._rewrite_event(tail)  # an unterminated last event

    def broken(self, reason: str) -> bytes:
        # OpenAI streams have no error event: the relay logs the outcome and the stream just ends.
        self._partial = b""
        return b""

    def _mentions_carried(self, data: bytes) -> bool:
        return any(needle in data for needle in self._needles)

    def _rewrite(self, complete: bytes) -> bytes:
        if not complete or (_MARK not in complete and not self._mentions_carried(complete)):
            return complete
        parts = []
        for event in _EVENT.finditer(complete):
            body = event[1]
            if _MARK in body or self._mentions_carried(body):
                body = self._rewrite_event(body)
            parts.append(body + event[2])
        return b"".join(parts)

    def _rewrite_event(self, event: bytes) -> bytes:
        pieces = _NEWLINE.split(event)  # line, newline, line, ..., line
        changed = False
        for i in range(0, len(pieces), 2):
            if pieces[i].startswith(b"data:"):
                line = self._rewrite_data(pieces[i])
                if line is not pieces[i]:
                    pieces[i], changed = line, True
        return b"".join(pieces) if changed else event

    def _rewrite_data(self, line: bytes) -> bytes:
        payload = line[5:]
        try:
            data = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return line
        known = len(self._carried)
        if not _carry_ids(data, self._carried):
            return line
        if len(self._carried) != known:
            self._needles = tuple(orjson.dumps(call_id) for call_id in self._carried)
        return (b"data: " if payload.startswith(b" ") else b"data:") + orjson.dumps(data)
