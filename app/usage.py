"""Token usage, as the request line reports it, from a whole answer or picked out of an SSE stream."""

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


def usage_of_json(body: bytes) -> dict[str, int] | None:
    try:
        return usage_of(orjson.loads(body))
    except orjson.JSONDecodeError:
        return None


def usage_of(data: object) -> dict[str, int] | None:
    if not isinstance(data, dict):
        return None
    usage = data.get("usage")
    if usage is None and isinstance(data.get("message"), dict):
        usage = data["message"].get("usage")  # Anthropic's message_start
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
