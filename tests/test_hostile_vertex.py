"""Hostile paths under /vertex (issue 13): the native passthrough serves model calls and nothing else.

Every refused shape (other resources, methods, verbs and query parameters, percent-escapes, dot and empty
segments, trailing slashes), and paths hypothesis derives from served ones by a change that makes them not
served, go to one gateway process as raw bytes on a socket (so no client library tidies an encoding up).
Each must be answered 404, 405 or 400 in Google's error shape, and none may reach the fake Vertex, which
records every request it gets.
"""

from __future__ import annotations

import json
import secrets
import string
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import API_KEYS
from tests.fakes.vertex import FakeVertex
from tests.faultkit import Reply, parse_raw, raw_exchange
from tests.harness import Gateway, start_gateway

pytestmark = pytest.mark.e2e

KEY = API_KEYS["full"]
PROPERTY = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# Paths the passthrough serves; every mutation below turns one into a path it does not.
SERVED = (
    "/vertex/v1/publishers/google/models/flash:generateContent",
    "/vertex/v1beta1/projects/p/locations/global/publishers/google/models/gemini-2.5-flash:streamGenerateContent",
    "/vertex/v1/projects/any/locations/us-east5/publishers/anthropic/models/haiku:rawPredict",
    "/vertex/v1/publishers/anthropic/models/count-tokens:rawPredict",
    "/vertex/v1beta1/publishers/google/models/gemini-2.5-flash:computeTokens",
)
FIXED_SEGMENTS = {"v1", "v1beta1", "projects", "locations", "publishers", "google", "anthropic", "models"}
GOOGLE_METHODS = {"generateContent", "streamGenerateContent", "countTokens", "computeTokens", "embedContent", "predict"}
ANTHROPIC_METHODS = {"rawPredict", "streamRawPredict"}
# Printable ASCII the HTTP parser lets through, less what a model id or project may hold, `#` (a fragment
# is not part of the path) and `?` (queries are their own mutation); space, DEL and bytes >= 0x80 end at the
# server (test below).
HOSTILE_CHARS = "".join(c for c in string.punctuation if c not in "#?._@-:")
VERBS = ("POST", "GET", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD")
BODY = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}], "max_tokens": 8, "messages": []}


@pytest.fixture(scope="module")
def hostile_gateway(gateway_env: dict[str, str | None]) -> Iterator[Gateway]:
    gw = start_gateway(gateway_env)
    yield gw
    assert gw.stop() == 0, f"gateway log: {gw.log_path}"


def send(gw: Gateway | Port, method: str, target: bytes, marker: str, body: bytes | None = None) -> Reply | None:
    """Exactly these bytes on the wire, a body tagged with `marker`; the parsed answer, if any."""
    body = body if body is not None else json.dumps({**BODY, "marker": marker}).encode()
    head = [
        method.encode() + b" " + target + b" HTTP/1.1",
        b"Host: gateway.test",
        b"x-goog-api-key: " + KEY.encode(),
        b"Content-Type: application/json",
        b"Content-Length: %d" % len(body),
        b"Connection: close",
    ]
    answer, _ = raw_exchange(gw.port, b"\r\n".join(head) + b"\r\n\r\n" + body)
    return parse_raw(answer) if answer.startswith(b"HTTP/1.1 ") else None


def assert_refused(reply: Reply | None, method: str, target: bytes) -> None:
    """404, 405 (valid path, other verb) or 400, as Google's error envelope."""
    assert reply is not None, f"no answer to {method} {target!r}"
    assert reply.status in (400, 404, 405), (method, target, reply.status, reply.body[:300])
    assert reply.headers.get("content-type", "").startswith("application/json"), (target, reply.headers)
    if method == "HEAD":
        return  # no body to a HEAD
    error = json.loads(reply.body)["error"]
    assert error["code"] == reply.status and error["status"] in ("NOT_FOUND", "UNIMPLEMENTED", "INVALID_ARGUMENT")
    assert isinstance(error["message"], str) and error["message"], error
    if reply.status == 405:
        assert reply.headers.get("allow") == "POST" and method != "POST"
    elif reply.status == 404 and target.startswith(b"/vertex/"):
        assert "serves model calls only" in error["message"], error["message"]


@pytest.fixture
def untouched(fake_vertex: FakeVertex) -> Iterator[str]:
    """A marker for the test's requests; afterwards, the fake must have seen none of them (nor any other)."""
    marker = f"hostile-{secrets.token_hex(6)}"
    before = len(fake_vertex.requests)
    yield marker
    assert fake_vertex.find(marker) == [] and len(fake_vertex.requests) == before


REFUSED: list[tuple[str, bytes]] = [
    # Other resources the service account could reach.
    *[
        ("POST", b"/vertex/v1/projects/p/locations/global/" + tail)
        for tail in (
            b"endpoints/123:predict",
            b"endpoints/openapi/chat/completions",
            b"tuningJobs",
            b"tuningJobs/1:cancel",
            b"operations/42",
            b"cachedContents",
            b"datasets/7",
            b"ragCorpora/1",
            b"batchPredictionJobs",
            b"models/123:predict",
            b"publishers/google/models",
            b"publishers/google/models/gemini-2.5-flash",
            b"reasoningEngines/1:query",
        )
    ],
    ("POST", b"/vertex/v1/models/gemini-2.5-flash:generateContent"),
    ("POST", b"/vertex/v1/endpoints/openapi/chat/completions"),
    ("POST", b"/vertex/v1/publishers/meta/models/llama-4:rawPredict"),
    ("POST", b"/vertex/v1/publishers/google/models/flash"),
    ("POST", b"/vertex/v2/publishers/google/models/flash:generateContent"),
    ("POST", b"/vertex/publishers/google/models/flash:generateContent"),
    ("POST", b"/vertex/"),
    ("POST", b"/vertex"),
    # Other methods.
    *[
        ("POST", b"/vertex/v1/publishers/google/models/flash:" + m)
        for m in (b"predictLongRunning", b"batchEmbedContents", b"rawPredict", b"streamRawPredict", b"fetch", b"x")
    ],
    *[
        ("POST", b"/vertex/v1/publishers/anthropic/models/haiku:" + m)
        for m in (b"generateContent", b"countTokens", b"predict", b"")
    ],
    ("POST", b"/vertex/v1/publishers/anthropic/models/count-tokens:streamRawPredict"),
    # Other verbs on a served path.
    *[(verb, SERVED[0].encode()) for verb in VERBS if verb != "POST"],
    ("GET", b"/vertex/v1/projects/p/locations/l/operations/1"),
    # Percent-escapes anywhere, even of harmless characters.
    ("POST", b"/%76ertex/v1/publishers/google/models/flash:generateContent"),
    ("POST", b"/vertex%2Fv1/publishers/google/models/flash:generateContent"),
    ("POST", b"/vertex/v1/publishers/google/models/flash%3AgenerateContent"),
    ("POST", b"/vertex/v1/publishers/google/models/fl%61sh:generateContent"),
    ("POST", b"/vertex/v1/publishers/google/models/%2e%2e/%2e%2e/endpoints/1:predict"),
    ("POST", b"/vertex/v1/publishers/google/models/flash%2F..%2F..%2Fendpoints%2F1:predict"),
    ("POST", b"/vertex/v1/publishers/anthropic/models/claude-haiku-4-5%4020251001:rawPredict"),
    ("POST", b"/vertex/v1/publishers/google/models/flash%252F:generateContent"),
    ("POST", b"/vertex/v1/publishers/google/models/flash%00:generateContent"),
    # Dot and empty segments, trailing slashes.
    ("POST", b"/vertex/v1/publishers/google/models/../../projects/p/locations/l/endpoints/1:predict"),
    ("POST", b"/vertex/v1/./publishers/google/models/flash:generateContent"),
    ("POST", b"/vertex/v1/projects/../locations/global/publishers/google/models/flash:generateContent"),
    ("POST", b"/vertex/../v1/chat/completions"),
    ("POST", b"/vertex//v1/publishers/google/models/flash:generateContent"),
    ("POST", b"/vertex/v1/publishers//google/models/flash:generateContent"),
    ("POST", b"/vertex/v1/publishers/google/models/flash:generateContent/"),
    ("POST", b"/vertex/v1/publishers/google/models/flash:generateContent/.."),
    # Query parameters.
    *[
        ("POST", b"/vertex/v1/publishers/google/models/flash:" + tail)
        for tail in (
            b"generateContent?alt=sse",
            b"generateContent?key=AIzaFAKE",
            b"streamGenerateContent?alt=json",
            b"streamGenerateContent?alt=sse&alt=sse",
            b"streamGenerateContent?alt=SSE",
            b"streamGenerateContent?alt=sse&",
            b"streamGenerateContent?$alt=json;enum-encoding=int",
            b"streamGenerateContent?uploadType=media",
        )
    ],
    # Odd characters and shapes.
    ("POST", b"/vertex/v1/publishers/google/models/flash:generateContent;x=1"),
    ("POST", b"/vertex/v1/publishers/google/models/fla\\sh:generateContent"),
    ("POST", b"/vertex/v1/publishers/google/models/" + b"m" * 129 + b":generateContent"),
    ("POST", b"/vertex/v1/projects/p/locations/global/publishers/google/models/flash:generateContent:x"),
    ("POST", b"/vertex/V1/publishers/google/models/flash:generateContent"),
    ("POST", b"/vertex/v1/Publishers/google/models/flash:generateContent"),
    ("POST", b"/vertex/v1/publishers/Google/models/flash:generateContent"),
    ("POST", b"/vertex/v1/publishers/google/models/flash:GenerateContent"),
]


@pytest.mark.parametrize(("method", "target"), REFUSED, ids=[f"{m} {t.decode()[:90]}" for m, t in REFUSED])
def test_refused_before_vertex_in_googles_shape(
    hostile_gateway: Gateway, untouched: str, method: str, target: bytes
) -> None:
    assert_refused(send(hostile_gateway, method, target, untouched), method, target)


def test_the_served_paths_do_reach_vertex(hostile_gateway: Gateway, fake_vertex: FakeVertex) -> None:
    """The control: the bodies and paths the mutations start from are served, so a refusal is the path's."""
    marker = f"served-{secrets.token_hex(6)}"
    body = json.dumps({"contents": [{"role": "user", "parts": [{"text": marker}]}]}).encode()
    reply = send(hostile_gateway, "POST", SERVED[0].encode(), marker, body)
    assert reply is not None and reply.status == 200, reply
    (rec,) = fake_vertex.find(marker)
    assert (
        rec.path
        == "/v1/projects/test-project/locations/global/publishers/google/models/gemini-2.5-flash:generateContent"
    )


def test_bytes_the_http_parser_refuses_never_reach_the_app(hostile_gateway: Gateway, untouched: str) -> None:
    """A non-ASCII byte, DEL or a space in the target is refused by the HTTP server itself (plain 400)."""
    for target in (b"/vertex/v1/publishers/google/models/fl\xc3\xa9sh:generateContent", b"/vertex/v1/x\x7fy"):
        reply = send(hostile_gateway, "POST", target, untouched)
        assert reply is None or reply.status == 400, (target, reply)


# -- hypothesis: served paths, changed so they are not -------------------------------------------------------


def _segments(path: str) -> list[str]:
    return path.split("/")


@st.composite
def unserved(draw: st.DrawFn) -> tuple[str, bytes]:
    """(verb, target): a served path with one change that takes it out of the grammar, and any verb."""
    path = draw(st.sampled_from(SERVED))
    kind = draw(
        st.sampled_from(
            ["escape", "dots", "empty", "trailing", "segment", "method", "query", "insert", "verb", "extra"]
        )
    )
    verb = "POST"
    if kind == "escape":  # percent-encode one character, or (past the prefix) put a stray escape anywhere
        at = draw(st.integers(1, len(path) - 1))
        codes = [f"%{ord(path[at]):02X}", f"%{ord(path[at]):02x}"]
        if at >= len("/vertex/"):  # before it, only escapes that still decode to /vertex/ keep the path under it
            codes += ["%2F", "%2e", "%25", "%"]
        path = path[:at] + draw(st.sampled_from(codes)) + path[at + 1 :]
    elif kind in ("dots", "empty"):  # a `.`, `..` or empty segment at a slash
        slashes = [i for i, c in enumerate(path) if c == "/" and i > 0]
        at = draw(st.sampled_from(slashes))
        path = path[:at] + draw(st.sampled_from(["/.", "/..", "/"] if kind == "dots" else ["/"])) + path[at:]
    elif kind == "trailing":
        path += draw(st.sampled_from(["/", "/.", "/..", "//", "/x", "/:generateContent"]))
    elif kind == "segment":  # a fixed segment becomes something else
        parts = _segments(path)
        fixed = [i for i, p in enumerate(parts) if p in FIXED_SEGMENTS]
        i = draw(st.sampled_from(fixed))
        other = draw(st.text(string.ascii_letters + string.digits + "._-", min_size=0, max_size=12))
        if other in FIXED_SEGMENTS or other == parts[i]:
            other += "x"
        if parts[i] in ("google", "anthropic") and other in ("google", "anthropic"):
            other += "x"
        parts[i] = other
        path = "/".join(parts)
    elif kind == "method":  # a method not served for the path's publisher
        head, _, _ = path.rpartition(":")
        publisher = "anthropic" if "/anthropic/" in path else "google"
        served = ANTHROPIC_METHODS if publisher == "anthropic" else GOOGLE_METHODS
        if "count-tokens" in path:
            served = {"rawPredict"}
        other = draw(st.text(string.ascii_letters, min_size=0, max_size=24) | st.sampled_from(sorted(GOOGLE_METHODS)))
        if other in served:
            other += "X"
        path = f"{head}:{other}"
    elif kind == "query":
        pairs = draw(
            st.lists(
                st.tuples(
                    st.text(string.ascii_letters + "$_.", min_size=1, max_size=8),
                    st.text(string.ascii_letters + string.digits + "-;", max_size=8),
                ),
                min_size=1,
                max_size=3,
            )
        )
        query = "&".join(f"{k}={v}" for k, v in pairs)
        if query == "alt=sse":
            query += "&x=1"
        path += "?" + query
    elif kind == "insert":  # a character no id or fixed segment holds, anywhere after the prefix
        at = draw(st.integers(len("/vertex/"), len(path)))
        path = path[:at] + draw(st.text(HOSTILE_CHARS, min_size=1, max_size=3)) + path[at:]
    elif kind == "verb":  # a served path, another verb
        verb = draw(st.sampled_from([v for v in VERBS if v != "POST"]))
    else:  # a resource other than a publisher model, under the client's project
        resource = draw(st.sampled_from(["endpoints", "tuningJobs", "operations", "cachedContents", "datasets"]))
        tail = draw(st.text(string.ascii_letters + string.digits + ":", min_size=0, max_size=16))
        path = f"/vertex/v1/projects/p/locations/global/{resource}" + (f"/{tail}" if tail else "")
    if kind != "verb" and draw(st.booleans()):
        verb = draw(st.sampled_from(VERBS))
    return verb, path.encode()


@dataclass(frozen=True)
class Port:
    """The gateway as the property test sees it: a short repr for hypothesis's reports."""

    port: int


@pytest.fixture
def port(hostile_gateway: Gateway) -> Port:
    return Port(hostile_gateway.port)


@PROPERTY
@given(case=unserved())
def test_unserved_paths_never_reach_vertex(port: Port, untouched: str, case: tuple[str, bytes]) -> None:
    verb, target = case
    assert_refused(send(port, verb, target, untouched), verb, target)


def test_no_request_line_says_the_gateway_crashed(hostile_gateway: Gateway) -> None:
    crashes: list[Any] = [
        e for e in hostile_gateway.json_logs() if "stack_trace" in e or "unhandled" in str(e.get("message"))
    ]
    assert not crashes, crashes[:2]
