"""Gemini thought signatures carried through tool call ids (app/thought_signatures.py, issue 12)."""

from __future__ import annotations

import base64
import copy
import itertools
import os
import re
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.aliases import Model
from app.logs import RequestLog
from app.openai_api import VertexChat
from app.thought_signatures import DUMMY, ChatAnswer, carry, requires_signatures, restore_chat, split

# Real signatures are standard base64 of opaque bytes; these leading bytes put '+' and '/' in it.
SIGNATURE = base64.b64encode(b"\xfb\xff\xfe" + bytes(range(46))).decode()
OTHER_SIGNATURE = base64.b64encode(b"\xff\xef" + os.urandom(30)).decode()
ANTHROPIC_ID = re.compile(r"^[a-zA-Z0-9_-]+$")
ids = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-", max_size=40)


# -- carry and split ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call_id",
    ["call_abc123", "call__with__underscores_", "function-call-1234567890", "toolu_01ABCdef", "", "a__ts_b_4", "_"],
)
@pytest.mark.parametrize(
    "signature",
    [
        SIGNATURE,
        "c2lnbmF0dXJl+/==",  # '+', '/' and padding
        "AQ==",
        "AR==",  # valid base64 with stray bits: not canonical, must still come back as sent
        "AB",  # unpadded
        "not base64 at all!",
        "é ünïcödé ✓",
        DUMMY,
        "",
    ],
)
def test_carry_split_round_trip(call_id: str, signature: str) -> None:
    carried = carry(call_id, signature)
    assert split(carried) == (call_id, signature)
    assert carried.startswith(call_id)
    if call_id:
        assert ANTHROPIC_ID.match(carried), "carried ids must stay valid Anthropic tool_use ids"


def test_carry_twice_splits_one_layer_at_a_time() -> None:
    twice = carry(carry("call_1", SIGNATURE), OTHER_SIGNATURE)
    assert split(twice) == (carry("call_1", SIGNATURE), OTHER_SIGNATURE)
    assert split(split(twice)[0]) == ("call_1", SIGNATURE)


@given(call_id=ids, raw=st.binary(max_size=300))
def test_round_trip_any_base64_signature(call_id: str, raw: bytes) -> None:
    signature = base64.b64encode(raw).decode()
    carried = carry(call_id, signature)
    assert split(carried) == (call_id, signature)
    assert ANTHROPIC_ID.match(carried)


@given(call_id=ids, signature=st.text(max_size=80))
def test_round_trip_any_text_signature(call_id: str, signature: str) -> None:
    assert split(carry(call_id, signature)) == (call_id, signature)


@pytest.mark.parametrize(
    "call_id",
    [
        "call_abc",
        "",
        "__ts_",
        "x__ts_",
        "x__ts__",
        "x__ts_A_1",  # one base64 character cannot be
        "x__ts_!!!!_4",
        "x__ts_AAAA_5",
        "x__ts_AAAA_999999999",
        "x__ts_AAAA_04",
        "x__tx_AAAA_4",
        "x__tu_gA_2",  # not UTF-8
        "x__ts_AAAA_4\n",
        "x__ts_AAAA_-4",
    ],
)
def test_split_leaves_other_ids_alone(call_id: str) -> None:
    assert split(call_id) == (call_id, None)


@given(st.text(max_size=60))
def test_split_never_raises(text: str) -> None:
    original, signature = split(text)
    assert isinstance(original, str) and (signature is None or isinstance(signature, str))
    if signature is None:
        assert original == text


def test_split_tolerates_non_strings() -> None:
    for value in (None, 5, ["x"], {"id": "x"}):
        assert split(value)[1] is None  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "strict"),
    [
        ("gemini-3.1-pro-preview", True),
        ("google/gemini-3.1-pro-preview", True),
        ("gemini-3-flash-preview", True),
        ("gemini-3-pro-image-preview", True),
        ("gemini-3", True),
        ("gemini-4.0-ultra", True),
        ("gemini-10-flash", True),
        ("gemini-2.5-flash", False),
        ("google/gemini-2.5-pro", False),
        ("gemini-2.0-flash-001", False),
        ("gemini-1.5-pro", False),
        ("gemini-30x", False),
        ("gemma-3-27b-it", False),
        ("claude-sonnet-4-6", False),
        ("", False),
    ],
)
def test_requires_signatures(name: str, strict: bool) -> None:
    assert requires_signatures(name) is strict


# -- the request side ---------------------------------------------------------------------------------------


def assistant(*calls: dict[str, Any]) -> dict[str, Any]:
    return {"role": "assistant", "content": None, "tool_calls": list(calls)}


def tool_call(call_id: str, signature: str | None = None) -> dict[str, Any]:
    call: dict[str, Any] = {"id": call_id, "type": "function", "function": {"name": "f", "arguments": "{}"}}
    if signature is not None:
        call["extra_content"] = {"google": {"thought_signature": signature}}
    return call


def tool_result(call_id: str) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": call_id, "content": "ok"}


USER = {"role": "user", "content": "go"}


@pytest.mark.parametrize("model", ["gemini-3.1-pro-preview", "gemini-2.5-flash"])
def test_restore_a_signature_carried_in_the_id(model: str) -> None:
    carried = carry("call_1", SIGNATURE)
    messages = [USER, assistant(tool_call(carried)), tool_result(carried)]
    assert restore_chat(messages, model) == {"restored": 1}
    assert messages == [USER, assistant(tool_call("call_1", SIGNATURE)), tool_result("call_1")]


def test_a_signature_the_client_kept_stays() -> None:
    carried = carry("call_1", SIGNATURE)
    messages = [USER, assistant(tool_call(carried, SIGNATURE)), tool_result(carried)]
    assert restore_chat(messages, "gemini-3.1-pro-preview") is None  # nothing restored, no dummy
    assert messages == [USER, assistant(tool_call("call_1", SIGNATURE)), tool_result("call_1")]


def test_the_clients_own_signature_wins_over_the_carried_one() -> None:
    messages = [USER, assistant(tool_call(carry("call_1", SIGNATURE), OTHER_SIGNATURE))]
    restore_chat(messages, "gemini-3.1-pro-preview")
    assert messages[1]["tool_calls"][0] == tool_call("call_1", OTHER_SIGNATURE)


def test_dummy_only_for_gemini_3_and_only_on_the_first_call() -> None:
    history = [USER, assistant(tool_call("call_a"), tool_call("call_b")), tool_result("call_a"), tool_result("call_b")]
    messages = copy.deepcopy(history)
    assert restore_chat(messages, "gemini-3.1-pro-preview") == {"dummy": 1}
    assert messages[1]["tool_calls"] == [tool_call("call_a", DUMMY), tool_call("call_b")]
    assert messages[2:] == history[2:]
    older = copy.deepcopy(history)
    assert restore_chat(older, "gemini-2.5-flash") is None
    assert older == history


def test_parallel_calls_with_the_signature_on_the_first() -> None:
    first = carry("call_a", SIGNATURE)
    messages = [USER, assistant(tool_call(first), tool_call("call_b")), tool_result(first), tool_result("call_b")]
    assert restore_chat(messages, "gemini-3.1-pro-preview") == {"restored": 1}
    assert messages[1]["tool_calls"] == [tool_call("call_a", SIGNATURE), tool_call("call_b")]
    assert [m["tool_call_id"] for m in messages[2:]] == ["call_a", "call_b"]


def test_every_step_restored_and_counted() -> None:
    one, two = carry("call_1", SIGNATURE), carry("call_2", OTHER_SIGNATURE)
    messages = [USER, assistant(tool_call(one)), tool_result(one), assistant(tool_call(two)), tool_result(two)]
    assert restore_chat(messages, "gemini-3.1-pro-preview") == {"restored": 2}
    assert messages[3]["tool_calls"][0] == tool_call("call_2", OTHER_SIGNATURE)


def test_restored_and_dummy_counted_together() -> None:
    carried = carry("call_1", SIGNATURE)
    messages = [USER, assistant(tool_call("old")), tool_result("old"), assistant(tool_call(carried))]
    assert restore_chat(messages, "gemini-3-flash-preview") == {"restored": 1, "dummy": 1}


def test_null_extra_content_gets_the_signature() -> None:
    call = tool_call(carry("call_1", SIGNATURE))
    call["extra_content"] = None
    messages = [assistant(call)]
    assert restore_chat(messages, "gemini-3.1-pro-preview") == {"restored": 1}
    assert messages[0]["tool_calls"][0] == tool_call("call_1", SIGNATURE)


def test_history_without_tool_calls_is_untouched() -> None:
    history = [{"role": "system", "content": "s"}, USER, {"role": "assistant", "content": "hi"}, USER]
    messages = copy.deepcopy(history)
    assert restore_chat(messages, "gemini-3.1-pro-preview") is None
    assert messages == history


GARBAGE: list[Any] = [
    None,
    1,
    "text",
    ["nested"],
    {},
    {"role": None},
    {"role": "assistant", "tool_calls": "nope"},
    {"role": "assistant", "tool_calls": None},
    {"role": "assistant", "tool_calls": []},
    {"role": "assistant", "tool_calls": [None, 3, "x"]},
    {"role": "assistant", "tool_calls": [{"id": 5}, {"id": None}, {}]},
    {"role": "assistant", "tool_calls": [{"id": carry("c", SIGNATURE), "extra_content": "str"}]},
    {"role": "assistant", "tool_calls": [{"id": carry("c", SIGNATURE), "extra_content": {"google": 7}}]},
    {"role": "assistant", "tool_calls": [{"id": "x", "extra_content": ["list"]}]},
    {"role": "assistant", "tool_calls": [{"id": "x__ts_!!!!_4"}]},
    {"role": "tool", "tool_call_id": None},
    {"role": "tool", "tool_call_id": 12},
    {"role": "tool", "tool_call_id": "x__ts_AAAA_999"},
    {"role": "user", "tool_calls": [{"id": carry("c", SIGNATURE)}]},
]


@pytest.mark.parametrize("model", ["gemini-3.1-pro-preview", "gemini-2.5-flash"])
def test_garbage_shapes_never_raise(model: str) -> None:
    messages = copy.deepcopy(GARBAGE)
    restore_chat(messages, model)
    # Ids that carry a signature still come back, even where the signature has nowhere to go.
    assert messages[11]["tool_calls"][0] == {"id": "c", "extra_content": "str"}
    assert messages[12]["tool_calls"][0] == {"id": "c", "extra_content": {"google": 7}}
    # A user message is not an assistant turn.
    assert messages[18] == GARBAGE[18]


KEYS = st.sampled_from(
    ["role", "tool_calls", "id", "tool_call_id", "extra_content", "google", "thought_signature", "content"]
)
LEAVES = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(max_size=8)
    | st.sampled_from(["assistant", "tool", carry("c", SIGNATURE), "x__ts_AAAA_4"])
)
JSON = st.recursive(
    LEAVES, lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=4), max_leaves=30
)


@given(JSON)
@settings(max_examples=300)
def test_any_json_never_raises(value: Any) -> None:
    messages = value if isinstance(value, list) else [value]
    restore_chat(messages, "gemini-3.1-pro-preview")


def test_not_a_list() -> None:
    assert restore_chat({"role": "assistant"}, "gemini-3.1-pro-preview") is None  # type: ignore[arg-type]


# -- the answer side: whole answers ---------------------------------------------------------------------------

USAGE = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}


def completion(*calls: dict[str, Any], content: str | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = list(calls)
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "google/gemini-3.1-pro-preview",
        "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if calls else "stop"}],
        "usage": USAGE,
    }


WANT_USAGE = {"input_tokens": 11, "output_tokens": 7, "total_tokens": 18}


def test_whole_answer_ids_carry_their_signatures() -> None:
    body = orjson.dumps(completion(tool_call("call_a", SIGNATURE), tool_call("call_b")))
    answer = ChatAnswer()
    out = orjson.loads(answer.whole(body))
    # The signature stays in extra_content too, for clients that keep it.
    assert out == completion(tool_call(carry("call_a", SIGNATURE), SIGNATURE), tool_call("call_b"))
    assert answer.usage == WANT_USAGE


@pytest.mark.parametrize(
    "body",
    [
        orjson.dumps(completion(content="hello")),
        orjson.dumps(completion(tool_call("call_a"))),
        b'{"choices": [{"message": {"content": "pretty"}}],\n  "usage": {"prompt_tokens": 11}}',
        b"not json",
        b'{"broken": "thought_signature"',
        orjson.dumps({"choices": "thought_signature"}),
        orjson.dumps({"choices": [{"message": {"tool_calls": [{"id": 5, "extra_content": SIGNATURE}]}}]}),
        b"",
    ],
)
def test_whole_answer_without_a_signed_call_passes_as_is(body: bytes) -> None:
    assert ChatAnswer().whole(body) is body


def test_whole_answer_usage_without_signatures() -> None:
    answer = ChatAnswer()
    answer.whole(orjson.dumps(completion(content="hi")))
    assert answer.usage == WANT_USAGE


def test_client_that_drops_extra_content_gets_the_signature_back_to_vertex() -> None:
    """The round trip: Vertex's answer -> a client that rebuilds the turn -> the next request."""
    issued = completion(tool_call("call_vertex_1", SIGNATURE))
    seen = orjson.loads(ChatAnswer().whole(orjson.dumps(issued)))["choices"][0]["message"]["tool_calls"][0]
    rebuilt = {"id": seen["id"], "type": "function", "function": seen["function"]}  # extra_content dropped
    messages = [USER, {"role": "assistant", "tool_calls": [rebuilt]}, tool_result(seen["id"])]
    assert restore_chat(messages, "gemini-3.1-pro-preview") == {"restored": 1}
    assert messages[1]["tool_calls"][0] == tool_call("call_vertex_1", SIGNATURE)
    assert messages[2]["tool_call_id"] == "call_vertex_1"


# -- the answer side: streams ---------------------------------------------------------------------------------


def chunk_of(delta: dict[str, Any], finish: str | None = None, usage: dict[str, int] | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {
        "id": "chatcmpl-2",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "google/gemini-3.1-pro-preview",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    if usage:
        event["usage"] = usage
    return event


def opening(call_id: str, signature: str | None, index: int = 0, arguments: str = "") -> dict[str, Any]:
    call = tool_call(call_id, signature)
    call["index"] = index
    call["function"] = {"name": "get_weather", "arguments": arguments}
    return call


def args(fragment: str, index: int = 0, call_id: str | None = None) -> dict[str, Any]:
    call: dict[str, Any] = {"index": index, "function": {"arguments": fragment}}
    if call_id is not None:
        call["id"] = call_id
    return call


def recorded(carried: bool) -> list[dict[str, Any] | str]:
    """A tool-call stream as Vertex sends it; with carried=True, as the client must see it."""
    a = carry("call_a", SIGNATURE) if carried else "call_a"
    return [
        chunk_of({"role": "assistant"}),
        chunk_of({"content": "Let me look."}),
        chunk_of({"tool_calls": [opening(a, SIGNATURE, 0, '{"ci')]}),
        chunk_of({"tool_calls": [args('ty": "Paris"}', 0, a)]}),  # a repeated id follows its rewrite
        chunk_of({"tool_calls": [opening("call_b", None, 1, '{"city": "Rome"}')]}),
        chunk_of({}, "tool_calls", USAGE),
        "[DONE]",
    ]


def encode(events: list[dict[str, Any] | str], sep: bytes = b"\n\n", prefix: bytes = b"data: ") -> bytes:
    lines = [prefix + (e.encode() if isinstance(e, str) else orjson.dumps(e)) for e in events]
    return b"".join(line + sep for line in lines)


def run(answer: ChatAnswer, pieces: list[bytes]) -> bytes:
    return b"".join(answer.chunk(piece) for piece in pieces) + answer.end()


FORMS = pytest.mark.parametrize(
    ("sep", "prefix"), [(b"\n\n", b"data: "), (b"\r\n\r\n", b"data: "), (b"\n\n", b"data:")]
)


@FORMS
def test_stream_split_at_every_byte_gives_the_unsplit_output(sep: bytes, prefix: bytes) -> None:
    stream, want = encode(recorded(False), sep, prefix), encode(recorded(True), sep, prefix)
    usage = WANT_USAGE
    whole = ChatAnswer()
    assert run(whole, [stream]) == want
    assert whole.usage == usage
    # Two pieces cut every few bytes, and one byte at a time (which ends a piece at every offset).
    for cut in range(0, len(stream) + 1, 3):
        answer = ChatAnswer()
        assert run(answer, [stream[:cut], stream[cut:]]) == want, f"cut at {cut}"
        assert answer.usage == usage
    assert run(ChatAnswer(), [stream[i : i + 1] for i in range(len(stream))]) == want


def test_usage_of_a_crlf_stream() -> None:
    answer = ChatAnswer()
    run(answer, [encode(recorded(False), b"\r\n\r\n")])
    assert answer.usage == WANT_USAGE


@given(st.lists(st.integers(min_value=0, max_value=2000), max_size=12))
@settings(max_examples=200)
def test_stream_split_anywhere(cuts: list[int]) -> None:
    stream, want = encode(recorded(False), b"\r\n\r\n"), encode(recorded(True), b"\r\n\r\n")
    points = sorted({0, len(stream), *(c % (len(stream) + 1) for c in cuts)})
    pieces = [stream[a:b] for a, b in itertools.pairwise(points)]
    assert run(ChatAnswer(), pieces) == want


def test_event_per_chunk_without_signature_passes_unparsed() -> None:
    events = [chunk_of({"role": "assistant"}), chunk_of({"content": "hi"}), chunk_of({}, "stop", USAGE), "[DONE]"]
    answer = ChatAnswer()
    for event in events:
        piece = encode([event])
        assert answer.chunk(piece) is piece
    assert answer.end() == b""
    assert answer.usage == WANT_USAGE


@FORMS
def test_stream_without_signature_is_byte_identical_however_split(sep: bytes, prefix: bytes) -> None:
    text = [chunk_of({"role": "assistant"}), chunk_of({"content": "a"}), chunk_of({}, "stop", USAGE), "[DONE]"]
    stream = encode(text, sep, prefix) + b": comment\n\nevent: x\ndata: {}\n\n"
    for cut in range(len(stream) + 1):
        assert run(ChatAnswer(), [stream[:cut], stream[cut:]]) == stream


def test_signed_event_amid_other_lines_keeps_them() -> None:
    event = b"event: message\r\nid: 7\r\ndata: " + orjson.dumps(chunk_of({"tool_calls": [opening("c", SIGNATURE)]}))
    out = run(ChatAnswer(), [event + b"\r\n\r\n"])
    head, _, data = out.partition(b"data: ")
    assert head == b"event: message\r\nid: 7\r\n" and data.endswith(b"\r\n\r\n")
    assert orjson.loads(data)["choices"][0]["delta"]["tool_calls"][0]["id"] == carry("c", SIGNATURE)


def test_end_flushes_a_held_partial_event() -> None:
    answer = ChatAnswer()
    assert answer.chunk(b"data: [DO") == b""
    assert answer.end() == b"data: [DO"


def test_end_rewrites_an_unterminated_signed_event() -> None:
    answer = ChatAnswer()
    event = orjson.dumps(chunk_of({"tool_calls": [opening("c", SIGNATURE)]}))
    assert answer.chunk(b"data: " + event) == b""
    tail = answer.end()
    assert orjson.loads(tail[6:])["choices"][0]["delta"]["tool_calls"][0]["id"] == carry("c", SIGNATURE)


def test_broken_stream_says_nothing_more() -> None:
    answer = ChatAnswer()
    answer.chunk(b"data: {")
    assert answer.broken("Vertex AI broke off its answer") == b""
    assert answer.end() == b""


def test_an_overlong_event_passes_unrewritten_and_the_stream_goes_on() -> None:
    answer = ChatAnswer()
    answer.MAX_PARTIAL = 64
    big = b"data: " + orjson.dumps(chunk_of({"tool_calls": [opening("c", SIGNATURE, 0, "x" * 200)]}))
    after = encode([chunk_of({"tool_calls": [opening("d", OTHER_SIGNATURE)]})])
    pieces = [big[:100], big[100:150], big[150:] + b"\n\n" + after[:10], after[10:]]
    out = run(answer, pieces)
    assert out[: len(big) + 2] == big + b"\n\n"  # not a byte lost, not rewritten
    assert orjson.loads(out[len(big) + 8 :])["choices"][0]["delta"]["tool_calls"][0]["id"] == carry(
        "d", OTHER_SIGNATURE
    )


def test_malformed_signed_events_pass_as_is() -> None:
    stream = b'data: {"thought_signature": \n\ndata: {"choices": "thought_signature"}\n\n'
    for cut in range(len(stream) + 1):
        assert run(ChatAnswer(), [stream[:cut], stream[cut:]]) == stream


# -- VertexChat.prepare -----------------------------------------------------------------------------------------


def prepare(request: dict[str, Any], vertex_id: str = "google/gemini-3.1-pro-preview") -> tuple[Any, RequestLog]:
    line = RequestLog("POST", "/v1/chat/completions", {}, None)
    call = SimpleNamespace(gateway=SimpleNamespace(urls=SimpleNamespace(chat_completions="https://v/chat")), line=line)
    return VertexChat().prepare(call, Model("pro-preview", vertex_id), request), line  # type: ignore[arg-type]


def test_prepare_without_tools_changes_only_the_model() -> None:
    request = {"model": "pro-preview", "messages": [USER], "stream": True, "x_extra": {"keep": [1, None]}}
    target, line = prepare(copy.deepcopy(request))
    assert target.answer is None and target.stream is True
    assert orjson.loads(target.payload) == {**request, "model": "google/gemini-3.1-pro-preview"}
    assert line.thought_signatures is None


def test_prepare_with_tools_restores_and_translates() -> None:
    carried = carry("call_1", SIGNATURE)
    request = {
        "model": "pro-preview",
        "messages": [USER, assistant(tool_call(carried)), tool_result(carried), assistant(tool_call("x"))],
        "tools": [{"type": "function", "function": {"name": "f"}}],
    }
    target, line = prepare(request)
    assert isinstance(target.answer, ChatAnswer) and target.stream is False
    sent = orjson.loads(target.payload)["messages"]
    assert sent[1]["tool_calls"][0] == tool_call("call_1", SIGNATURE) and sent[2]["tool_call_id"] == "call_1"
    assert sent[3]["tool_calls"][0] == tool_call("x", DUMMY)
    assert line.thought_signatures == {"restored": 1, "dummy": 1}


def test_prepare_on_gemini_2_sets_no_dummy() -> None:
    request = {"model": "flash", "messages": [USER, assistant(tool_call("x"))], "tools": []}
    target, line = prepare(request, "google/gemini-2.5-flash")
    assert target.answer is None and line.thought_signatures is None
    assert orjson.loads(target.payload)["messages"][1] == assistant(tool_call("x"))
