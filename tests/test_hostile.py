"""Bad input and hostile callers, against the gateway as a gunicorn process (issue 6).

The property tests share one running gateway (the session fixture) so a few
hundred examples cost a few seconds; every example is a real request on a real
socket, sent byte for byte so nothing is tidied up by a client library.
"""

from __future__ import annotations

import json
import secrets
import select
import socket
import string
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import API_KEYS, CHAT_UPSTREAM_PATH, KEY_DOCUMENT, GatewayFactory
from tests.fakes.metadata import FakeMetadata
from tests.fakes.secretmanager import FakeSecretManager
from tests.fakes.vertex import FakeVertex
from tests.faultkit import (
    Reply,
    assert_openai_error,
    chat_body,
    get,
    parse_raw,
    post,
    raw_exchange,
    rss_bytes,
    the_worker,
)
from tests.harness import Gateway, start_gateway

pytestmark = pytest.mark.e2e

KEY = API_KEYS["full"]
PROPERTY = settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# Headers a client may not smuggle to Vertex, and that Vertex may not hand back.
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authorization", "proxy-authenticate", "te", "trailer", "upgrade"}
CLIENT_CREDENTIALS = {"cookie", "x-api-key", "authorization", "x-goog-api-key"}
# All the gateway itself sends upstream; anything else came from the caller.
UPSTREAM_HEADER_ALLOWLIST = {
    "host",
    "authorization",
    "content-type",
    "content-length",
    "accept",
    "accept-encoding",
    "user-agent",
}


def raw_request(
    port: int,
    method: str,
    target: str | bytes,
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    timeout: float = 10.0,
) -> tuple[Reply | None, str | None]:
    """Exactly these bytes on the wire; (parsed answer or None, transport error)."""
    target_bytes = target if isinstance(target, bytes) else target.encode("latin-1")
    lines = [method.encode() + b" " + target_bytes + b" HTTP/1.1", b"Host: gateway.test"]
    lines += [f"{k}: {v}".encode("latin-1") for k, v in headers or []]
    lines += [b"Content-Length: %d" % len(body), b"Connection: close"]
    answer, error = raw_exchange(port, b"\r\n".join(lines) + b"\r\n\r\n" + body, timeout)
    return (parse_raw(answer) if answer.startswith(b"HTTP/1.1 ") else None), error


def assert_not_gateway_failure(reply: Reply, path: str) -> None:
    """Never a 500 of the gateway's own, never a traceback, JSON errors on /v1."""
    text = reply.body.decode("utf-8", "replace")
    assert "Traceback" not in text and 'File "' not in text, text[:500]
    if reply.status >= 400 and path.startswith("/v1"):
        assert reply.headers.get("content-type", "").startswith("application/json"), (reply.status, reply.headers)
        error = json.loads(reply.body)["error"]
        assert isinstance(error["message"], str) and error["message"]
    if reply.status == 500:
        # Only Vertex's own 500, relayed, is acceptable.
        assert json.loads(reply.body)["error"]["message"].startswith("Vertex AI returned 500"), text[:300]


def assert_no_unhandled_errors(gw: Gateway) -> None:
    crashes = [e for e in gw.json_logs() if "stack_trace" in e or "unhandled error" in str(e.get("message"))]
    assert not crashes, crashes[:2]
    assert "Traceback" not in "\n".join(gw.lines())


# -- property tests ---------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
messages = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "assistant", "system", "tool", "x"]), "content": json_values}
    ),
    max_size=3,
)
chat_like = st.fixed_dictionaries(
    {"model": st.sampled_from(["flash", "pro-preview", "sonnet", "nope", ""]) | json_values},
    optional={
        "messages": messages | json_values,
        "stream": st.booleans() | json_values,
        "temperature": json_values,
        "max_tokens": json_values,
    },
)
bodies = (
    chat_like.map(lambda d: json.dumps(d).encode())
    | json_values.map(lambda v: json.dumps(v).encode())
    | st.binary(max_size=300)
    | st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass"))
)


@PROPERTY
@given(body=bodies, path=st.sampled_from(["/v1/chat/completions", "/v1/messages", "/v1/messages/count_tokens"]))
def test_any_body_never_crashes_the_gateway(gateway: Gateway, body: bytes, path: str) -> None:
    # A "fake" object would steer the fake Vertex: not the gateway's behaviour under test.
    if b'"fake"' in body:
        return
    reply, error = raw_request(
        gateway.port, "POST", path, [("x-api-key", KEY), ("Content-Type", "application/json")], body
    )
    assert reply is not None, f"no answer ({error}) to {body[:100]!r}"
    assert_not_gateway_failure(reply, path)


header_names = st.text(alphabet=string.ascii_letters + string.digits + "-_.!#$%&'*+^`|~", min_size=1, max_size=30)
header_values = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"))
# Framing headers change how the request is read; they get their own tests below.
FRAMING = {"content-length", "transfer-encoding", "host", "connection", "expect", "upgrade"}


@PROPERTY
@given(
    headers=st.lists(
        st.tuples(header_names.filter(lambda n: n.lower() not in FRAMING), header_values.map(str.strip)),
        max_size=12,
    ),
    with_key=st.booleans(),
    route=st.sampled_from([("GET", "/v1/models"), ("POST", "/v1/chat/completions"), ("GET", "/"), ("GET", "/healthz")]),
)
def test_any_headers_never_crash_the_gateway(
    gateway: Gateway, headers: list[tuple[str, str]], with_key: bool, route: tuple[str, str]
) -> None:
    method, path = route
    sent = [*headers, ("x-api-key", KEY)] if with_key else headers
    body = json.dumps(chat_body("hypothesis")).encode() if method == "POST" else b""
    reply, error = raw_request(gateway.port, method, path, sent, body)
    assert reply is not None, f"no answer ({error}) to headers {headers!r}"
    assert reply.status < 500, reply.body[:300]
    assert_not_gateway_failure(reply, path)


PATH_TRICKS = ["%2F", "%2f", "%2E", "%00", "%25", "%ZZ", "%", "..", "//", "%C3%A9", "%FF", "?", "#", "\\"]
path_chars = st.sampled_from([*string.ascii_letters, *string.digits, *"-._~!$&'()*+,;=:@/", *PATH_TRICKS])
paths = st.lists(path_chars, max_size=25).map("".join)


@PROPERTY
@given(
    prefix=st.sampled_from(["/v1/", "/v1/models/", "/v1/chat/", "/", "/v1/messages/", "//", "/docs/"]),
    rest=paths,
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"]),
)
def test_any_path_never_crashes_the_gateway(
    gateway: Gateway, fake_vertex: FakeVertex, prefix: str, rest: str, method: str
) -> None:
    target = prefix + rest
    marker = f"path-{secrets.token_hex(6)}"
    body = json.dumps(chat_body(marker)).encode() if method == "POST" else b""
    reply, error = raw_request(gateway.port, method, target, [("x-api-key", KEY)], body)
    if reply is None:
        # The HTTP parser may refuse a target outright; that is a closed connection, not a crash.
        assert error is None or error.startswith("recv"), error
        return
    assert reply.status < 500 or reply.status == 502, reply.body[:300]
    assert_not_gateway_failure(reply, target.split("?")[0])
    assert all(r.path == CHAT_UPSTREAM_PATH for r in fake_vertex.find(marker))


def test_property_runs_left_no_unhandled_error(gateway: Gateway) -> None:
    # Runs after the property tests above (file order): their examples are in this log.
    assert get(gateway, "/healthz").status == 200
    assert_no_unhandled_errors(gateway)


# -- headers both ways --------------------------------------------------------------

UPSTREAM_EXTRAS = {
    "Set-Cookie": "vertex-session=upstream-secret; Path=/",
    "WWW-Authenticate": 'Bearer realm="upstream-secret"',
    "Proxy-Authenticate": 'Basic realm="upstream-secret"',
    "Authorization": "Bearer upstream-secret",
    "X-Goog-Upstream-Token": "upstream-secret",
    "Keep-Alive": "timeout=99",
    "Trailer": "X-Upstream-Secret",
    "Alt-Svc": 'h3=":443"; ma=2592000',
    "X-Upstream-Secret": "upstream-secret",
}


class LeakyVertex(FakeVertex):
    """The fake Vertex, plus credential-ish and hop-by-hop headers on every answer."""

    def build_app(self) -> web.Application:
        app = super().build_app()

        async def add_headers(request: web.Request, response: web.StreamResponse) -> None:
            response.headers.update(UPSTREAM_EXTRAS)

        app.on_response_prepare.append(add_headers)
        return app


@pytest.fixture(scope="module")
def leaky(valid_tokens: set[str], fake_metadata: FakeMetadata) -> Iterator[tuple[LeakyVertex, Gateway]]:
    with LeakyVertex(valid_tokens) as fake:
        gw = start_gateway(
            {
                "GOOGLE_CLOUD_PROJECT": "test-project",
                "VERTEX_BASE_URL": fake.url,
                "GCE_METADATA_HOST": fake_metadata.host_port,
                "GCE_METADATA_IP": fake_metadata.host_port,
                "API_KEYS_JSON": json.dumps(KEY_DOCUMENT),
            }
        )
        yield fake, gw
        assert gw.stop() == 0


CLIENT_EXTRAS = [
    ("Keep-Alive", "timeout=5"),
    ("Proxy-Authorization", "Basic Y2xpZW50OnNlY3JldA=="),
    ("TE", "trailers"),
    ("Trailer", "X-Client-Trailer"),
    ("Upgrade", "websocket"),  # without "Connection: upgrade", so the request is still plain HTTP
    ("Cookie", "session=client-secret"),
    ("x-api-key", KEY),
    ("Authorization", f"Bearer {KEY}"),
    ("x-goog-api-key", "client-secret"),
    ("X-Goog-User-Project", "someone-elses-project"),
    ("X-Forwarded-Host", "evil.example"),
    ("X-Client-Note", "client-secret"),
]


@pytest.mark.parametrize(
    "fake", [{}, {"stream": True}, {"fake": {"status": 429, "retry_after": "30"}}], ids=["json", "sse", "error"]
)
def test_headers_stripped_both_ways(leaky: tuple[LeakyVertex, Gateway], fake: dict[str, Any]) -> None:
    upstream, gw = leaky
    marker = f"hdr-{secrets.token_hex(6)}"
    body = {**chat_body(marker, stream=fake.get("stream", False)), **({"fake": fake["fake"]} if "fake" in fake else {})}
    reply, error = raw_request(
        gw.port, "POST", "/v1/chat/completions", [*CLIENT_EXTRAS, ("Content-Type", "application/json")],
        json.dumps(body).encode(),
    )  # fmt: skip
    assert reply is not None, error
    assert reply.status == (429 if "fake" in fake else 200), reply.body[:300]

    (seen,) = upstream.find(marker)
    names = {k.lower() for k, _ in seen.headers}
    assert names <= UPSTREAM_HEADER_ALLOWLIST, f"client headers reached Vertex: {names - UPSTREAM_HEADER_ALLOWLIST}"
    upstream_raw = "\n".join(f"{k}: {v}" for k, v in seen.headers)
    assert "client-secret" not in upstream_raw and KEY not in upstream_raw

    returned = {k.lower() for k, _ in reply.raw_headers}
    leaked = returned & {k.lower() for k in UPSTREAM_EXTRAS}
    assert not leaked, f"upstream headers reached the client: {leaked}"
    assert "upstream-secret" not in "\n".join(f"{k}: {v}" for k, v in reply.raw_headers)
    assert "upstream-secret" not in reply.body.decode("utf-8", "replace")


HOST_AND_PATH_TRICKS: list[tuple[str, list[tuple[str, str]]]] = [
    ("/v1/../v1/chat/completions", []),
    ("/v1/chat/completions/../../../v1/projects/other/locations/x", []),
    ("/v1/chat%2Fcompletions", []),
    ("/v1%2Fchat%2Fcompletions", []),
    ("//v1/chat/completions", []),
    ("/v1/chat/completions?alt=../../other&key=x", []),
    ("/v1/./chat/completions", []),
    ("/v1/chat/completions%00/x", []),
    ("http://evil.example/v1/chat/completions", []),
    ("http://127.0.0.1:1/v1/projects/other-project/locations/us/endpoints/x", []),
    ("/v1/chat/completions", [("X-Forwarded-Host", "evil.example"), ("X-Original-URL", "/v1/projects/other")]),
    ("/v1/chat/completions", [("X-Rewrite-URL", "/admin"), ("Forwarded", "host=evil.example")]),
]


@pytest.mark.parametrize(("target", "extra"), HOST_AND_PATH_TRICKS)
def test_host_and_path_tricks_cannot_move_the_upstream(
    leaky: tuple[LeakyVertex, Gateway], target: str, extra: list[tuple[str, str]]
) -> None:
    upstream, gw = leaky
    marker = f"trick-{secrets.token_hex(6)}"
    data = json.dumps(chat_body(marker)).encode()
    lines = [f"POST {target} HTTP/1.1", "Host: evil.example:8443", f"x-api-key: {KEY}"]
    lines += [f"{k}: {v}" for k, v in extra] + [f"Content-Length: {len(data)}", "Connection: close"]
    answer, _ = raw_exchange(gw.port, "\r\n".join(lines).encode() + b"\r\n\r\n" + data)
    if answer:
        reply = parse_raw(answer)
        assert reply.status < 500
        assert_not_gateway_failure(reply, "/v1")
    for seen in upstream.find(marker):
        assert seen.path == CHAT_UPSTREAM_PATH and seen.raw_path == CHAT_UPSTREAM_PATH and not seen.query
        assert seen.header("Host") == upstream.host_port


# -- keys ------------------------------------------------------------------------------


@pytest.fixture
def secret_gateway(
    gateway_factory: GatewayFactory, fake_metadata: FakeMetadata
) -> Iterator[tuple[Gateway, FakeSecretManager]]:
    with FakeSecretManager() as fake:
        fake.create_secret("gw-keys")
        fake.add_version("gw-keys", json.dumps(KEY_DOCUMENT))
        gw = gateway_factory(
            {
                "API_KEYS_JSON": None,
                "API_KEYS_SECRET": "gw-keys",
                "SECRET_MANAGER_ENDPOINT": fake.url,
                "KEYS_REFRESH_SECONDS": "3600",
            }
        )
        yield gw, fake


def test_bad_key_burst_is_answered_cheaply(
    secret_gateway: tuple[Gateway, FakeSecretManager], fake_vertex: FakeVertex, fake_metadata: FakeMetadata
) -> None:
    gw, secret_manager = secret_gateway
    marker = f"burst-{secrets.token_hex(6)}"
    secret_calls, token_calls = len(secret_manager.requests), fake_metadata.token_requests
    real = API_KEYS["full"]
    # Random keys, and near-misses of a real one (same prefix, same length).
    bad = [f"gwk-{secrets.token_urlsafe(24)}" for _ in range(200)]
    bad += [real[:-2] + secrets.token_urlsafe(2)[:2] for _ in range(50)] + [real[: len(real) // 2]] * 50
    bad = [k for k in bad if k != real]
    body = json.dumps(chat_body(marker)).encode()
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
        stream = sock.makefile("rb")
        for key in bad:
            # One keep-alive connection: a burst from one client.
            sock.sendall(
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
                + f"Authorization: Bearer {key}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            status = stream.readline()
            assert status.startswith(b"HTTP/1.1 401"), status
            length = 0
            while (line := stream.readline()) != b"\r\n":
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            error = json.loads(stream.read(length))["error"]
            assert error["code"] == "invalid_api_key"
    assert not fake_vertex.find(marker), "a bad key reached Vertex"
    assert len(secret_manager.requests) == secret_calls, "a bad key made the gateway call Secret Manager"
    assert fake_metadata.token_requests == token_calls, "a bad key made the gateway fetch a token"


# -- sizes -------------------------------------------------------------------------------

MAX_BODY = 1 << 20


@pytest.fixture(scope="module")
def small_body_gw(gateway_env: dict[str, str | None]) -> Iterator[Gateway]:
    gw = start_gateway({**gateway_env, "MAX_BODY_BYTES": str(MAX_BODY)})
    yield gw
    assert gw.stop() == 0


def _push_huge_body(port: int, chunked: bool) -> tuple[int, bytes]:
    """Offer 1 GiB; stop as soon as the gateway answers or hangs up. (bytes sent, answer)"""
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {1 << 30}"
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {KEY}\r\n{framing}\r\n\r\n"
    ).encode()
    piece = b"[" * 65536
    frame = b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece
    sent, answer = 0, b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)
        while sent < 1 << 30:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            try:
                sock.sendall(frame)
            except OSError:
                break
            sent += len(piece)
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except OSError:
            pass
    return sent, answer


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
def test_huge_body_refused_413_without_buffering(small_body_gw: Gateway, chunked: bool) -> None:
    worker = the_worker(small_body_gw)
    before = rss_bytes(worker)
    sent, answer = _push_huge_body(small_body_gw.port, chunked)
    assert answer, "the gateway hung up without an answer"
    reply = parse_raw(answer)
    error = assert_openai_error(reply, 413, "request_too_large")
    assert "MAX_BODY_BYTES" in error["message"]
    assert sent < 64 * MAX_BODY, f"the client pushed {sent >> 20} MiB before the gateway stopped it"
    growth = rss_bytes(worker) - before
    assert growth < 8 * MAX_BODY, f"worker RSS grew {growth >> 20} MiB"


def test_body_at_the_limit_is_accepted(small_body_gw: Gateway, fake_vertex: FakeVertex, marker: str) -> None:
    body = chat_body(marker)
    raw = json.dumps(body).encode()
    body["pad"] = "x" * (MAX_BODY - len(raw) - len(', "pad": ""'))
    data = json.dumps(body).encode()
    assert len(data) == MAX_BODY
    assert post(small_body_gw, data).status == 200
    assert post(small_body_gw, data + b" ").status == 413


def _headers_request(extra: bytes) -> bytes:
    return b"GET /v1/models HTTP/1.1\r\nHost: gw\r\nx-api-key: " + KEY.encode() + b"\r\n" + extra + b"\r\n"


@pytest.mark.parametrize(
    "extra",
    [
        b"X-Big: " + b"a" * (1 << 20) + b"\r\n",
        b"".join(b"X-H%d: v\r\n" % i for i in range(10_000)),
        b"X-Huge: " + b"a" * (64 << 20) + b"\r\n",
    ],
    ids=["one-1MiB-header", "10000-headers", "one-64MiB-header"],
)
def test_header_size_and_count_bounded(small_body_gw: Gateway, extra: bytes) -> None:
    worker = the_worker(small_body_gw)
    before = rss_bytes(worker)
    answer, error = raw_exchange(small_body_gw.port, _headers_request(extra), timeout=20)
    # With a valid key this request would be a 200: only a refusal shows the bound.
    if answer:
        status = parse_raw(answer).status
        assert 400 <= status < 500, f"got {status}"
    else:
        assert error is not None, "no answer and no error"
    growth = rss_bytes(worker) - before
    # Far less than the 64 MiB offered: the server stops reading, it does not buffer it all.
    assert growth < 32 << 20, f"worker RSS grew {growth >> 20} MiB"
    assert get(small_body_gw, "/healthz").status == 200


# -- pages -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/docs"])
def test_security_headers_on_pages(gateway: Gateway, path: str) -> None:
    reply = get(gateway, path)
    assert reply.status == 200 and reply.headers["content-type"].startswith("text/html")
    csp = reply.headers.get("content-security-policy", "")
    directives = {d.strip().split(" ")[0]: d.strip() for d in csp.split(";") if d.strip()}
    assert directives.get("frame-ancestors") == "frame-ancestors 'none'", csp
    assert directives.get("default-src") == "default-src 'none'", csp
    assert "script-src" not in directives, "the pages have no script"
    assert reply.headers.get("x-content-type-options") == "nosniff"
    assert reply.headers.get("x-frame-options") == "DENY"


def test_sse_has_nothing_that_breaks_streaming(gateway: Gateway, marker: str) -> None:
    reply = post(gateway, chat_body(marker, stream=True))
    assert reply.status == 200
    headers = reply.headers
    assert headers["content-type"].startswith("text/event-stream")
    assert "content-length" not in headers and "content-encoding" not in headers
    assert headers.get("transfer-encoding") == "chunked"
    assert "no-cache" in headers.get("cache-control", "") and headers.get("x-accel-buffering") == "no"
    assert "content-security-policy" not in headers and "x-frame-options" not in headers
