import asyncio
import io
import json
import sys

import pytest

from app.logs import LineWriter, RequestLog, client_address, parse_trace


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (
            {b"x-cloud-trace-context": b"105445aa7843bc8bf206b12000100000/1;o=1"},
            ("105445aa7843bc8bf206b12000100000", "1", True),
        ),
        (
            {b"traceparent": b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
            ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", True),
        ),
        ({b"x-cloud-trace-context": b"not-hex/1"}, (None, None, False)),
        ({}, (None, None, False)),
        # Client-supplied values that are not of the documented shape never reach a log field.
        ({b"x-cloud-trace-context": b"abc123/9;o=1"}, (None, None, False)),
        ({b"x-cloud-trace-context": b'105445aa7843bc8bf206b12000100000/1;o=1", "x": "y'}, (None, None, False)),
        ({b"x-cloud-trace-context": b"105445aa7843bc8bf206b12000100000/span;o=1"}, (None, None, False)),
        ({b"traceparent": b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"}, (None, None, False)),
        ({b"traceparent": b"00-00000000000000000000000000000000-00f067aa0ba902b7-01"}, (None, None, False)),
        ({b"traceparent": b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"}, (None, None, False)),
        (
            {b"x-cloud-trace-context": b"105445aa7843bc8bf206b12000100000"},
            ("105445aa7843bc8bf206b12000100000", None, False),
        ),
    ],
)
def test_parse_trace(headers: dict[bytes, bytes], expected: tuple[object, ...]) -> None:
    assert parse_trace(headers) == expected


def test_request_line_is_one_json_object(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    headers = {
        b"x-cloud-trace-context": b"105445aa7843bc8bf206b12000100000/9;o=1",
        b"user-agent": b"pytest",
        b"x-api-key": b"sk_live_secret",
        # A client's own X-Forwarded-For first, then the address Google's front end appended.
        b"x-forwarded-for": b"6.6.6.6, 203.0.113.7",
    }
    entry = RequestLog("POST", "/v1/chat/completions", headers, "10.0.0.1")
    entry.status, entry.key_id, entry.alias, entry.stream = 429, "team", "flash", True
    entry.usage = {"input_tokens": 1}
    entry.emit("proj")
    line = out.getvalue()
    assert line.count("\n") == 1 and "sk_live_secret" not in line
    data = json.loads(line)
    assert data["severity"] == "WARNING"
    assert data["logging.googleapis.com/trace"] == "projects/proj/traces/105445aa7843bc8bf206b12000100000"
    assert data["httpRequest"]["remoteIp"] == "203.0.113.7"
    assert data["httpRequest"]["status"] == 429 and data["httpRequest"]["userAgent"] == "pytest"
    assert data["key_id"] == "team" and data["alias"] == "flash" and data["stream"] is True


def test_lines_are_batched_per_loop_turn(monkeypatch: pytest.MonkeyPatch) -> None:
    writes: list[str] = []

    class Recorder(io.StringIO):
        def write(self, text: str) -> int:
            writes.append(text)
            return len(text)

    monkeypatch.setattr(sys, "stdout", Recorder())
    writer = LineWriter()

    async def scenario() -> None:
        writer.write("a\n")
        writer.write("b\n")
        assert writes == [], "nothing is written before the loop turns"
        await asyncio.sleep(0)
        writer.write("c\n")
        await asyncio.sleep(0)

    asyncio.run(scenario())
    assert writes == ["a\nb\n", "c\n"]


@pytest.mark.parametrize(
    ("forwarded", "expected"),
    [
        (None, "10.0.0.9"),
        (b"203.0.113.7", "203.0.113.7"),
        (b"1.2.3.4, 203.0.113.7", "203.0.113.7"),  # the spoofed first entry is never the caller
        (b"1.2.3.4,203.0.113.7 ", "203.0.113.7"),
        (b"", "10.0.0.9"),
    ],
)
def test_client_address_is_what_the_front_end_saw(forwarded: bytes | None, expected: str) -> None:
    headers = {} if forwarded is None else {b"x-forwarded-for": forwarded}
    assert client_address(headers, "10.0.0.9") == expected


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({b"x-proxy-chat-session": b"conv-42"}, "conv-42"),
        (
            {b"x-claude-code-session-id": b"9b1c3e9e-4a57-4d1b-9e44-2f3c8f0f6a11"},
            "9b1c3e9e-4a57-4d1b-9e44-2f3c8f0f6a11",
        ),
        # The caller's own header wins over Claude Code's.
        ({b"x-proxy-chat-session": b"mine", b"x-claude-code-session-id": b"cc"}, "mine"),
        ({b"x-proxy-chat-session": b"  "}, None),
        ({}, None),
        # Sanitised: no quotes, spaces, control or non-ASCII characters reach a log field...
        ({b"x-proxy-chat-session": b'a"b c\n\x00d\xff'}, "a_b_c__d_"),
        # ... and bounded.
        ({b"x-proxy-chat-session": b"x" * 10_000}, "x" * 128),
    ],
)
def test_session_on_the_request_line(
    monkeypatch: pytest.MonkeyPatch, headers: dict[bytes, bytes], expected: str | None
) -> None:
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    RequestLog("POST", "/v1/messages", headers, None).emit(None)
    assert json.loads(out.getvalue()).get("session") == expected
