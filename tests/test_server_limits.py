"""The HTTP server's own bounds (issue 16, findings 1-4), against the gateway as a gunicorn process.

Raw sockets throughout: the findings are about framing and timing that no client library would
produce. Every loop is bounded in count and in time; only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import json
import secrets
import select
import socket
import time
from collections.abc import Iterator

import pytest

from tests.conftest import API_KEYS
from tests.fakes.vertex import FakeVertex
from tests.faultkit import chat_body, eventually, get, log_for, parse_raw, raw_exchange, rss_bytes, the_worker
from tests.harness import Gateway, start_gateway

pytestmark = pytest.mark.e2e

KEY = API_KEYS["full"]
BAD_KEY = "gwk-not-a-key-" + secrets.token_urlsafe(16)
MAX_BODY = 1 << 20
# The most the worker reads of a request after answering it: MAX_BODY_BYTES + app/asgi.py's 4 MiB
# allowance for a declared length (a chunked body gets less).
DRAIN = MAX_BODY + (4 << 20)
PIECE = 64 * 1024


@pytest.fixture(scope="module")
def limits_gw(gateway_env: dict[str, str | None]) -> Iterator[Gateway]:
    """Default timeouts and cap; a small body limit so the drain budget is small too."""
    gw = start_gateway({**gateway_env, "MAX_BODY_BYTES": str(MAX_BODY)})
    yield gw
    assert gw.stop() == 0


@pytest.fixture(scope="module")
def quick_gw(gateway_env: dict[str, str | None]) -> Iterator[Gateway]:
    """A 1 s headers timeout, so the tests can watch it act."""
    gw = start_gateway({**gateway_env, "CLIENT_HEADERS_TIMEOUT": "1"})
    yield gw
    assert gw.stop() == 0


def _connect(port: int, timeout: float = 10.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def _read_response(sock: socket.socket) -> bytes:
    """One whole response with a Content-Length body (all the server's own answers have one)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed mid-answer: {data[:200]!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(parse_raw(head + b"\r\n\r\n").headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError("connection closed mid-body")
        body += chunk
    return head + b"\r\n\r\n" + body


def _chunked_head(key: str, extra: str = "") -> bytes:
    return (
        "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {key}\r\n{extra}Transfer-Encoding: chunked\r\n\r\n"
    ).encode()


def _push_after_answer(sock: socket.socket, pieces: Iterator[bytes], budget: int) -> tuple[int, bytes]:
    """Keep sending until the server hangs up or `budget` bytes went out; (bytes sent, anything read)."""
    sent, extra = 0, b""
    for piece in pieces:
        if sent >= budget:
            break
        readable, _, _ = select.select([sock], [], [], 0)
        if readable:
            try:
                chunk = sock.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            extra += chunk
        try:
            sock.sendall(piece)
        except OSError:
            break
        sent += len(piece)
    return sent, extra


def _repeat(piece: bytes) -> Iterator[bytes]:
    while True:
        yield piece


def _many_trailers() -> Iterator[bytes]:
    n = 0
    while True:
        yield b"".join(b"X-T%d: v\r\n" % (n + i) for i in range(4096))
        n += 4096


# -- finding 1: endless trailers, and requests read on after their answer -----------------------


@pytest.mark.parametrize("shape", ["one-endless-field", "endless-fields"])
def test_endless_trailers_are_cut_off(limits_gw: Gateway, shape: str) -> None:
    worker = the_worker(limits_gw)
    before = rss_bytes(worker)
    offered = 24 << 20
    with _connect(limits_gw.port) as sock:
        # The last chunk, then a trailer section that never ends; the bad key is answered at once.
        sock.sendall(_chunked_head(BAD_KEY) + b"0\r\n" + (b"X-Endless: " if shape == "one-endless-field" else b""))
        assert parse_raw(_read_response(sock)).status == 401
        pieces = _repeat(b"a" * PIECE) if shape == "one-endless-field" else _many_trailers()
        sent, extra = _push_after_answer(sock, pieces, offered)
    assert sent < 8 << 20, f"the gateway read {sent >> 20} MiB of trailers"
    # The 401 was the request's answer: nothing may follow it on the wire.
    assert b"HTTP/1.1" not in extra, extra[:200]
    growth = rss_bytes(worker) - before
    assert growth < 16 << 20, f"worker RSS grew {growth >> 20} MiB"
    assert get(limits_gw, "/health").status == 200


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
def test_answered_request_is_not_read_forever(limits_gw: Gateway, chunked: bool) -> None:
    """After an early 401, an endless body is read only as far as a near-miss body, then cut."""
    offered = 64 << 20
    if chunked:
        head, piece = _chunked_head(BAD_KEY), b"%x\r\n%s\r\n" % (PIECE, b"[" * PIECE)
    else:
        head = _chunked_head(BAD_KEY).replace(b"Transfer-Encoding: chunked", b"Content-Length: %d" % (1 << 40))
        piece = b"[" * PIECE
    with _connect(limits_gw.port) as sock:
        sock.sendall(head)
        assert parse_raw(_read_response(sock)).status == 401
        sent, _ = _push_after_answer(sock, _repeat(piece), offered)
    assert sent < 3 * DRAIN, f"the gateway read {sent >> 20} MiB after answering"


def test_early_answer_still_drains_a_near_miss_body(limits_gw: Gateway) -> None:
    """A body within the drain budget is read and discarded: the client gets its 401 and keeps the connection."""
    body = b"[" * (2 * MAX_BODY)
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {BAD_KEY}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with _connect(limits_gw.port) as sock:
        sock.sendall(head + body)  # all of it before reading, as http.client does
        assert parse_raw(_read_response(sock)).status == 401
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: gw\r\n\r\n")
        assert parse_raw(_read_response(sock)).status == 200


# -- finding 2: headers timeout and the connection cap -------------------------------------------


def test_idle_connection_is_closed_after_the_headers_timeout(quick_gw: Gateway) -> None:
    with _connect(quick_gw.port) as sock:
        try:
            data = sock.recv(1024)
        except TimeoutError:
            raise AssertionError("an idle connection was still open after 10 s") from None
        except ConnectionResetError:
            data = b""
    assert data == b"", data[:200]


def test_slowloris_head_gets_408(quick_gw: Gateway) -> None:
    with _connect(quick_gw.port) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: gw\r\n")
        answer = b""
        for i in range(50):  # one header line every 0.2 s: 10 s at most
            readable, _, _ = select.select([sock], [], [], 0.2)
            if readable:
                answer = sock.recv(65536)
                break
            try:
                sock.sendall(b"X-Slow-%d: still coming\r\n" % i)
            except OSError:
                break
    assert answer.startswith(b"HTTP/1.1 408"), f"no 408 within 50 slow lines: {answer[:200]!r}"
    assert parse_raw(answer).headers.get("connection") == "close"


def test_keep_alive_idle_is_not_the_headers_timeout(quick_gw: Gateway) -> None:
    """Between requests the connection idles on the keep-alive timeout (620 s), not the headers one."""
    with _connect(quick_gw.port) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: gw\r\n\r\n")
        assert parse_raw(_read_response(sock)).status == 200
        time.sleep(2.5)  # well past the 1 s headers timeout
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: gw\r\n\r\n")
        assert parse_raw(_read_response(sock)).status == 200


def test_slow_drip_after_an_early_answer_is_closed(quick_gw: Gateway) -> None:
    """The rest of an answered request is on the same clock: a drip cannot hold the connection."""
    with _connect(quick_gw.port) as sock:
        sock.sendall(_chunked_head(BAD_KEY))
        assert parse_raw(_read_response(sock)).status == 401
        closed = False
        for _ in range(50):  # a one-byte chunk every 0.2 s: 10 s at most
            readable, _, _ = select.select([sock], [], [], 0.2)
            if readable:
                try:
                    closed = sock.recv(1024) == b""
                except OSError:
                    closed = True
                break
            try:
                sock.sendall(b"1\r\n[\r\n")
            except OSError:
                closed = True
                break
    assert closed, "the gateway kept reading a dripping body after answering"


def test_connection_cap_refuses_politely(gateway_env: dict[str, str | None]) -> None:
    gw = start_gateway({**gateway_env, "MAX_CONNECTIONS": "4"})
    held: list[socket.socket] = []
    try:
        # An idle keep-alive connection counts like a fresh one.
        keep_alive = _connect(gw.port)
        held.append(keep_alive)
        keep_alive.sendall(b"GET /health HTTP/1.1\r\nHost: gw\r\n\r\n")
        assert parse_raw(_read_response(keep_alive)).status == 200
        held += [_connect(gw.port) for _ in range(3)]
        answer, _ = raw_exchange(gw.port, b"GET /health HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")
        reply = parse_raw(answer)
        assert reply.status == 503, answer[:300]
        assert reply.headers.get("retry-after") == "1" and reply.headers.get("connection") == "close"
        # The connections already open still work.
        keep_alive.sendall(b"GET /health HTTP/1.1\r\nHost: gw\r\n\r\n")
        assert parse_raw(_read_response(keep_alive)).status == 200
        held.pop().close()

        def admitted() -> bool:
            answer, _ = raw_exchange(gw.port, b"GET /health HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")
            return answer.startswith(b"HTTP/1.1 200")

        eventually(admitted, 10, "a new connection admitted once one closed", interval=0.1)
    finally:
        for sock in held:
            sock.close()
        assert gw.stop() == 0


@pytest.mark.parametrize(("name", "value"), [("CLIENT_HEADERS_TIMEOUT", "0"), ("MAX_CONNECTIONS", "many")])
def test_bad_server_limit_stops_startup(gateway_env: dict[str, str | None], name: str, value: str) -> None:
    with pytest.raises(RuntimeError, match=f"config error: {name}="):
        start_gateway({**gateway_env, name: value}, timeout=15)


# -- finding 3: trailers never become headers ----------------------------------------------------


def _chunked_with_trailers(header_key: str, trailers: list[tuple[str, str]], extra: str, body: bytes) -> bytes:
    trailer = "".join(f"{k}: {v}\r\n" for k, v in trailers).encode()
    return _chunked_head(header_key, extra) + b"%x\r\n%s\r\n0\r\n%s\r\n" % (len(body), body, trailer)


@pytest.mark.parametrize(
    ("header_key", "trailer_key", "status"),
    [(BAD_KEY, KEY, 401), (KEY, BAD_KEY, 200)],
    ids=["good-key-in-trailer", "bad-key-in-trailer"],
)
def test_trailers_never_become_headers(
    limits_gw: Gateway, fake_vertex: FakeVertex, marker: str, header_key: str, trailer_key: str, status: int
) -> None:
    body = json.dumps(chat_body(marker)).encode()
    # All in one write, so the whole request is parsed before the app reads its headers.
    request = _chunked_with_trailers(
        header_key,
        [("Authorization", f"Bearer {trailer_key}"), ("X-Forwarded-For", "198.51.100.99")],
        f"X-Cloud-Trace-Context: {marker[5:]}0000000000000000/1;o=1\r\nX-Forwarded-For: 203.0.113.7\r\n",
        body,
    )
    with _connect(limits_gw.port) as sock:
        sock.sendall(request)
        reply = parse_raw(_read_response(sock))
    assert reply.status == status, reply.body[:300]
    assert bool(fake_vertex.find(marker)) == (status == 200)
    line = log_for(limits_gw, marker[5:] + "0" * 16)
    assert "198.51.100.99" not in json.dumps(line), line


# -- finding 4: the head is counted per request, whatever the reads ------------------------------


def _models_request(headers_size: int, url_size: int = 0) -> bytes:
    url = b"/v1/models" + (b"?q=" + b"a" * url_size if url_size else b"")
    head = b"GET " + url + b" HTTP/1.1\r\nHost: gw\r\nx-api-key: " + KEY.encode() + b"\r\n"
    head += b"".join(b"X-Pad-%03d: %s\r\n" % (i, b"p" * 1000) for i in range(headers_size // 1000))
    return head + b"\r\n"


@pytest.mark.parametrize(("headers", "url"), [(70 << 10, 0), (0, 70 << 10)], ids=["headers", "url"])
def test_70kib_head_in_one_read_gets_431(limits_gw: Gateway, headers: int, url: int) -> None:
    request = _models_request(headers, url)
    assert len(request) > 70 << 10
    with _connect(limits_gw.port) as sock:
        sock.sendall(request)  # one write: on loopback, usually one read
        answer = _read_response(sock)
    assert parse_raw(answer).status == 431, answer[:300]


def test_heads_under_the_bound_pass_on_one_connection(limits_gw: Gateway) -> None:
    """Near the bound, one read or many, request after request: the count starts again each time."""
    request = _models_request(60 << 10)
    with _connect(limits_gw.port) as sock:
        sock.sendall(request)
        assert parse_raw(_read_response(sock)).status == 200
        for _ in range(3):
            for start in range(0, len(request), 4096):  # in pieces
                sock.sendall(request[start : start + 4096])
            assert parse_raw(_read_response(sock)).status == 200
