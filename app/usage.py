"""Token usage, as the request line reports it, from a whole answer or picked out of a stream.

OpenAI's `usage` and Anthropic's `usage` (also inside `message_start`) are read as they are; Gemini's
native `usageMetadata` (the /vertex passthrough) becomes input (`promptTokenCount`), output
(`candidatesTokenCount`), `thinking_tokens` (`thoughtsTokenCount`, which scripts/usage prices as output
and takes as not included in `output_tokens`) and total (`totalTokenCount`, which includes them).
"""

import re

import orjson


def normalize_usage(usage: object) -> dict[str, int] | None:
    if not isinstance(usage, dict):
        return None
    out: dict[str, int] = {}
    for name, value in usage.items():
        if isinstance(value, int) and not isinstance(value, bool):
            name = {"prompt_tokens": "input_tokens", "completion_tokens": "output_tokens"}.get(name, name)
            if name in ("input_tokens", "output_tokens", "total_tokens"):
                out[name] = value
    return out or None


_GEMINI_NAMES = {
    "promptTokenCount": "input_tokens",
    "candidatesTokenCount": "output_tokens",
    "thoughtsTokenCount": "thinking_tokens",
    "totalTokenCount": "total_tokens",
}


def gemini_usage(metadata: object) -> dict[str, int] | None:
    """Gemini's `usageMetadata` in the request line's names."""
    if not isinstance(metadata, dict):
        return None
    out: dict[str, int] = {}
    for name, value in metadata.items():
        ours = _GEMINI_NAMES.get(name)
        if ours is not None and isinstance(value, int) and not isinstance(value, bool):
            out[ours] = value
    return out or None


def usage_of_json(body: bytes) -> dict[str, int] | None:
    try:
        return usage_of(orjson.loads(body))
    except orjson.JSONDecodeError:
        return None


def usage_of(data: object) -> dict[str, int] | None:
    if not isinstance(data, dict):
        return None
    usage = data.get("usage")
    if usage is None:
        if isinstance(data.get("message"), dict):
            usage = data["message"].get("usage")  # Anthropic's message_start
        elif "usageMetadata" in data:
            return gemini_usage(data["usageMetadata"])  # Gemini's native answer
    return normalize_usage(usage)


class UsageSniffer:
    """Picks token usage out of an SSE stream without holding more than one partial event."""

    MAX_PARTIAL = 1 << 20

    def __init__(self) -> None:
        self._partial = b""
        self.usage: dict[str, int] | None = None

    def feed(self, chunk: bytes) -> None:
        if not self._partial and chunk.endswith(b"\n\n") and b'"usage"' not in chunk:
            return  # the common case: whole events, none with usage
        data = self._partial + chunk if self._partial else chunk
        if b"\r" in data:  # events may also end in CRLF CRLF (Gemini's native streams do)
            data = data.replace(b"\r\n", b"\n")
        end = data.rfind(b"\n\n")
        if end < 0:
            self._partial = data if len(data) <= self.MAX_PARTIAL else b""
            return
        self._partial = data[end + 2 :] if len(data) - end - 2 <= self.MAX_PARTIAL else b""
        complete = data[:end]
        if b'"usage"' not in complete:
            return
        for event in complete.split(b"\n\n"):
            if b'"usage"' not in event:
                continue
            for line in event.split(b"\n"):
                if line.startswith(b"data:"):
                    try:
                        found = usage_of(orjson.loads(line[5:]))
                    except orjson.JSONDecodeError:
                        continue
                    if found:
                        self.usage = {**(self.usage or {}), **found}


# A JSON string (escapes included) or a brace: enough to find where an object ends.
_OBJECT_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[{}]', re.DOTALL)


class UsageMetadataSniffer:
    """Picks Gemini's `usageMetadata` out of a `:streamGenerateContent` stream, server-sent events (`alt=sse`)
    or one JSON array of responses, arriving in pieces cut anywhere. Each response's counts so far supersede
    the last, so only the newest `"usageMetadata"` object is parsed, and only it (at most MAX_PARTIAL bytes)
    is held; the framing around it does not matter. (UsageSniffer, for the other routes' streams, never looks
    for it: its fast path stays one substring search for `"usage"`.)"""

    MAX_PARTIAL = 1 << 16
    KEY = b'"usageMetadata"'

    def __init__(self) -> None:
        self._held = b""  # from the newest key whose object has not ended yet, or a tail a key may straddle
        self.usage: dict[str, int] | None = None

    def feed(self, chunk: bytes) -> None:
        data = self._held + chunk if self._held else chunk
        tail = len(self.KEY) - 1
        at = data.rfind(self.KEY)
        if at < 0:
            self._held = data[-tail:]
            return
        start = data.find(b"{", at + len(self.KEY))
        end = _object_end(data, start)
        if end is not None:
            self._read(data[start:end])
            self._held = data[end:][-tail:]
            return
        # The newest object goes on in the next piece: hold it, and read the one before it meanwhile (a
        # stream cut off here still has it).
        self._held = data[at:] if len(data) - at <= self.MAX_PARTIAL else b""
        before = data.rfind(self.KEY, 0, at)
        if before >= 0:
            start = data.find(b"{", before + len(self.KEY))
            end = _object_end(data, start)
            if end is not None:
                self._read(data[start:end])

    def _read(self, metadata: bytes) -> None:
        try:
            found = gemini_usage(orjson.loads(metadata))
        except orjson.JSONDecodeError:
            return
        if found:
            self.usage = found


def _object_end(data: bytes, start: int) -> int | None:
    """The offset just past the JSON object that opens at `start`, or None if it does not end in `data`."""
    if start < 0:
        return None
    depth = 0
    for token in _OBJECT_TOKENS.finditer(data, start):
        brace = token[0]
        if brace == b"{":
            depth += 1
        elif brace == b"}":
            depth -= 1
            if depth == 0:
                return token.end()
    return None
