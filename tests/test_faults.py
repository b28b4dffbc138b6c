"""Faults upstream and around the gateway, with the gateway running as a gunicorn process (issue 6).

Each test names one row of the "Failure behaviour" table in SPEC.md. Requests are tagged with a
unique marker in the body (to find them at the fake) and a trace id in the
headers (to find their log line).
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Iterator

import pytest

from app.config import load_settings
from tests.conftest import API_KEYS, CHAT_UPSTREAM_PATH, KEY_DOCUMENT, GatewayFactory
from tests.fakes import free_port
from tests.fakes.metadata import FakeMetadata
from tests.fakes.secretmanager import FakeSecretManager
from tests.fakes.vertex import FakeVertex
from tests.faultkit import (
    assert_openai_error,
    chat_body,
    eventually,
    get,
    log_for,
    new_trace,
    open_fds,
    post,
    rss_bytes,
    sse_data,
    the_worker,
    threads,
)
from tests.harness import Gateway, start_gateway

pytestmark = pytest.mark.e2e

# A short first-byte timeout so the timeout test is quick, and a retry cap that
# lets a 1 s Retry-After be honoured while a 30 s one is handed to the client.
FAULT_ENV = {"UPSTREAM_HEADERS_TIMEOUT": "1", "UPSTREAM_RETRY_MAX_WAIT": "2"}


@pytest.fixture(scope="module")
def fault_gw(gateway_env: dict[str, str | None]) -> Iterator[Gateway]:
    gw = start_gateway({**gateway_env, **FAULT_ENV})
    yield gw
    assert gw.stop() == 0


@pytest.fixture
def scripted(fake_vertex: FakeVertex) -> Iterator[FakeVertex]:
    """The session fake, for a test that queues one-shot scripts: none may outlive the test."""
    yield fake_vertex
    if fake_vertex.pending_scripts():
        fake_vertex.clear()  # an unused script would hit the next test's request
        pytest.fail("a pushed script was never used: the gateway made fewer attempts than expected")


def attempts(fake: FakeVertex, marker: str) -> int:
    return len(fake.find(marker))


# -- upstream errors before the first byte ------------------------------------


@pytest.mark.parametrize("status", [429, 500, 503])
def test_upstream_error_relayed_with_retry_after(
    status: int, fault_gw: Gateway, fake_vertex: FakeVertex, marker: str
) -> None:
    # Retry-After above UPSTREAM_RETRY_MAX_WAIT: the client gets it at once, no retry.
    reply = post(fault_gw, chat_body(marker, fake={"status": status, "retry_after": "30"}))
    error = assert_openai_error(reply, status)
    assert reply.headers.get("retry-after") == "30"
    assert error["message"].startswith(f"Vertex AI returned {status}")
    assert attempts(fake_vertex, marker) == 1
    entry = log_for(fault_gw, reply.trace)
    assert entry["httpRequest"]["status"] == status and entry["severity"] in ("WARNING", "ERROR")


@pytest.mark.parametrize("status", [429, 503])
def test_retryable_status_retried_twice_by_default(
    status: int, fault_gw: Gateway, fake_vertex: FakeVertex, marker: str
) -> None:
    reply = post(fault_gw, chat_body(marker, fake={"status": status}))
    assert_openai_error(reply, status)
    assert attempts(fake_vertex, marker) == 3, "default UPSTREAM_RETRIES=2: one attempt and two retries"
    assert log_for(fault_gw, reply.trace)["upstream_attempts"] == 3


def test_upstream_500_is_not_retried(fault_gw: Gateway, fake_vertex: FakeVertex, marker: str) -> None:
    reply = post(fault_gw, chat_body(marker, fake={"status": 500}))
    assert_openai_error(reply, 500)
    assert attempts(fake_vertex, marker) == 1


def test_small_retry_after_is_waited_then_retried(fault_gw: Gateway, scripted: FakeVertex, marker: str) -> None:
    fake_vertex = scripted
    fake_vertex.push({"status": 429, "retry_after": "1"})
    reply = post(fault_gw, chat_body(marker))
    assert reply.status == 200, reply.body
    first, second = fake_vertex.find(marker)
    assert second.received_at - first.received_at >= 1.0, "Retry-After: 1 was not waited"
    assert log_for(fault_gw, reply.trace)["upstream_attempts"] == 2


def test_retries_zero_means_one_attempt(gateway_factory: GatewayFactory, fake_vertex: FakeVertex, marker: str) -> None:
    gw = gateway_factory({"UPSTREAM_RETRIES": "0"})
    reply = post(gw, chat_body(marker, fake={"status": 503}))
    assert_openai_error(reply, 503)
    assert attempts(fake_vertex, marker) == 1


def test_connection_refused_retried_then_502(gateway_factory: GatewayFactory, marker: str) -> None:
    gw = gateway_factory({"VERTEX_BASE_URL": f"http://127.0.0.1:{free_port()}"})
    reply = post(gw, chat_body(marker))
    error = assert_openai_error(reply, 502, "upstream_unreachable")
    assert "could not be reached" in error["message"]
    assert log_for(gw, reply.trace)["upstream_attempts"] == 3


def test_connection_reset_before_first_byte_retried(fault_gw: Gateway, fake_vertex: FakeVertex, marker: str) -> None:
    reply = post(fault_gw, chat_body(marker, fake={"reset": True}))
    assert_openai_error(reply, 502, "upstream_unreachable")
    assert attempts(fake_vertex, marker) == 3


def test_one_reset_then_success_is_invisible(fault_gw: Gateway, scripted: FakeVertex, marker: str) -> None:
    fake_vertex = scripted
    fake_vertex.push({"reset": True})
    reply = post(fault_gw, chat_body(marker))
    assert reply.status == 200, reply.body
    assert reply.json["choices"][0]["message"]["content"] == f"echo: {marker}"
    assert attempts(fake_vertex, marker) == 2


def test_slow_upstream_headers_504(fault_gw: Gateway, fake_vertex: FakeVertex, marker: str) -> None:
    reply = post(fault_gw, chat_body(marker, fake={"header_delay": 4}))
    error = assert_openai_error(reply, 504, "upstream_timeout")
    assert "UPSTREAM_HEADERS_TIMEOUT" in error["message"]
    # A slow model must not be asked twice: timeouts are not retried.
    assert attempts(fake_vertex, marker) == 1


# -- streams ------------------------------------------------------------------


def test_upstream_dies_mid_stream(fault_gw: Gateway, fake_vertex: FakeVertex, marker: str) -> None:
    reply = post(fault_gw, chat_body(marker, stream=True, fake={"chunks": 6, "die_after": 3}))
    assert reply.status == 200
    events = sse_data(reply.body)
    assert len(events) == 3 and "[DONE]" not in events, events
    # Never a retry once bytes went out: the client would see the answer twice.
    assert attempts(fake_vertex, marker) == 1
    entry = log_for(fault_gw, reply.trace)
    assert entry["outcome"] == "upstream_died_mid_stream"
    assert entry["severity"] == "ERROR"


def test_upstream_breaking_off_a_whole_answer_is_a_clean_502(
    fault_gw: Gateway, fake_vertex: FakeVertex, marker: str
) -> None:
    reply = post(fault_gw, chat_body(marker, fake={"truncate": True}))
    error = assert_openai_error(reply, 502, "upstream_broken")
    assert "Traceback" not in reply.body.decode()
    assert attempts(fake_vertex, marker) == 1
    assert log_for(fault_gw, reply.trace)["httpRequest"]["status"] == 502
    lines = [e for e in fault_gw.request_logs() if e.get("logging.googleapis.com/trace", "").endswith(reply.trace)]
    assert len(lines) == 1, "one request line per request"
    assert "broke off" in error["message"]


def test_idle_stream_timeout_is_configurable(gateway_factory: GatewayFactory, marker: str) -> None:
    assert load_settings({}).idle_timeout >= 300, "the default must leave room for a thinking model"
    gw = gateway_factory({"UPSTREAM_IDLE_TIMEOUT": "1"})
    slow = post(gw, chat_body(marker + "-slow", stream=True, fake={"chunks": 4, "delay": 3}))
    assert slow.status == 200
    assert "[DONE]" not in sse_data(slow.body)
    entry = log_for(gw, slow.trace)
    assert entry["outcome"] == "upstream_died_mid_stream"
    # Pauses shorter than the idle timeout are fine, however long the stream lasts.
    paced = post(gw, chat_body(marker + "-paced", stream=True, fake={"chunks": 6, "delay": 0.3}))
    assert sse_data(paced.body)[-1] == "[DONE]"


async def _stream_then_hang_up(port: int, body: dict[str, object], trace: str = "0" * 32) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    data = json.dumps(body).encode()
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {API_KEYS['full']}\r\nX-Cloud-Trace-Context: {trace}/1\r\n".encode()
        + f"Content-Length: {len(data)}\r\n\r\n".encode()
        + data
    )
    await writer.drain()
    seen = b""
    while b"data: " not in seen:
        chunk = await reader.read(65536)
        assert chunk, "stream closed before its first event"
        seen += chunk
    assert seen.startswith(b"HTTP/1.1 200")
    writer.transport.abort()


def test_client_disconnect_cancels_upstream(fault_gw: Gateway, fake_vertex: FakeVertex, marker: str) -> None:
    # The fake sends one event, then waits on a gate nobody opens.
    body = chat_body(marker, stream=True, fake={"gate": marker, "gate_after": 1, "gate_timeout": 30})
    trace = new_trace()
    asyncio.run(asyncio.wait_for(_stream_then_hang_up(fault_gw.port, body, trace), 10))
    (rec,) = fake_vertex.find(marker)
    assert rec.finished.wait(1.0), "the upstream request outlived the client by more than a second"
    assert rec.disconnected
    entry = log_for(fault_gw, trace)
    # The status line (200) was already sent; the outcome says how it ended.
    assert entry["outcome"] == "client_disconnected" and entry["stream"] is True


def test_500_disconnects_leave_nothing_behind(fault_gw: Gateway, fake_vertex: FakeVertex, marker: str) -> None:
    total, concurrency = 500, 20
    worker = the_worker(fault_gw)
    # Warm up the pool and the allocator with complete streams first.
    for i in range(concurrency):
        assert post(fault_gw, chat_body(f"{marker}-warm{i}", stream=True)).status == 200
    fds, rss, nthreads = open_fds(worker), rss_bytes(worker), threads(worker)
    inflight = fake_vertex.inflight

    async def run() -> None:
        limit = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            body = chat_body(f"{marker}-d{i}", stream=True, fake={"gate": marker, "gate_timeout": 30})
            async with limit:
                await _stream_then_hang_up(fault_gw.port, body)

        await asyncio.gather(*(one(i) for i in range(total)))

    asyncio.run(asyncio.wait_for(run(), 90))
    # The marker is hex after "mark-": a bare "-d" would also match every warm-up body when it starts with "d".
    dropped = [r for r in fake_vertex.find(marker) if f"{marker}-d" in r.body.decode()]
    assert len(dropped) == total
    eventually(lambda: all(r.finished.is_set() for r in dropped), 10, "every upstream request cancelled")
    assert all(r.disconnected for r in dropped)
    eventually(lambda: fake_vertex.inflight <= inflight, 10, "the fake has nothing in flight")
    # Tasks are not visible from outside the worker; a leaked task would hold its
    # upstream socket (fds), its buffers (RSS) or a fake handler (inflight).
    eventually(lambda: open_fds(worker) <= fds, 10, f"worker fds back to {fds} (now {open_fds(worker)})")
    assert threads(worker) <= nthreads + 2
    growth = rss_bytes(worker) - rss
    assert growth < 16 << 20, f"worker RSS grew {growth >> 20} MiB over {total} disconnects"
    assert post(fault_gw, chat_body(marker + "-after")).status == 200


# -- the Google access token ----------------------------------------------------


@pytest.fixture
def short_tokens(valid_tokens: set[str]) -> Iterator[FakeMetadata]:
    # 14 s tokens are usable for 4 s (the gateway stops 10 s before expiry), and
    # being inside the 5 min refresh-ahead window, every request starts a refresh.
    with FakeMetadata(valid_tokens, expires_in=14) as fake:
        yield fake


def _token_env(metadata: FakeMetadata) -> dict[str, str | None]:
    return {
        "GCE_METADATA_HOST": metadata.host_port,
        "GCE_METADATA_IP": metadata.host_port,
        "TOKEN_RETRY_SECONDS": "0.5",
        # Cloud Run sets this: a metadata server that fails there is a hiccup, never "no credentials".
        "K_SERVICE": "llm-gateway",
    }


def test_token_refresh_failure_serves_cached_then_503_then_recovers(
    gateway_factory: GatewayFactory, short_tokens: FakeMetadata, fake_vertex: FakeVertex, marker: str
) -> None:
    gw = gateway_factory(_token_env(short_tokens))
    eventually(lambda: short_tokens.token_requests >= 1, 10, "first token fetched")
    short_tokens.set_down("500")
    asked = len(short_tokens.requests)
    cached = post(gw, chat_body(marker + "-cached"))
    assert cached.status == 200, "a valid cached token must keep serving while refresh fails"
    eventually(lambda: len(short_tokens.requests) > asked, 10, "a refresh was attempted")

    replies = []

    def refused() -> bool:
        replies.append(post(gw, chat_body(f"{marker}-late{len(replies)}")))
        return replies[-1].status != 200

    eventually(refused, 40, "503 once the cached token expired", interval=0.5)
    error = assert_openai_error(replies[-1], 503, "upstream_auth_unavailable")
    assert "access token" in error["message"]
    assert replies[-1].headers.get("retry-after")
    assert not fake_vertex.find(f"{marker}-late{len(replies) - 1}"), "no token, so no upstream call"

    short_tokens.set_down(None)
    eventually(lambda: post(gw, chat_body(marker + "-back")).status == 200, 30, "recovery", interval=0.5)


def test_no_token_at_startup_503_until_metadata_returns(
    gateway_factory: GatewayFactory, valid_tokens: set[str], fake_vertex: FakeVertex, marker: str
) -> None:
    with FakeMetadata(valid_tokens) as metadata:
        metadata.set_down("500")
        gw = gateway_factory(_token_env(metadata))
        reply = post(gw, chat_body(marker))
        error = assert_openai_error(reply, 503, "upstream_auth_unavailable")
        assert "metadata server" in error["message"]
        assert not fake_vertex.find(marker)
        metadata.set_down(None)
        eventually(lambda: post(gw, chat_body(marker + "-back")).status == 200, 30, "recovery", interval=0.5)


def test_upstream_401_refreshes_once_and_retries_once(
    gateway_factory: GatewayFactory, valid_tokens: set[str], fake_vertex: FakeVertex, marker: str
) -> None:
    with FakeMetadata(valid_tokens) as metadata:
        gw = gateway_factory(_token_env(metadata))
        assert post(gw, chat_body(marker + "-warm")).status == 200
        before = metadata.token_requests
        metadata.revoke_all()  # the cached token is now refused upstream
        reply = post(gw, chat_body(marker + "-main"))
        assert reply.status == 200, reply.body
        first, second = fake_vertex.find(marker + "-main")
        assert first.status == 401 and second.status == 200
        assert first.header("Authorization") != second.header("Authorization")
        assert metadata.token_requests == before + 1


def test_persistent_upstream_401_is_not_a_loop_nor_the_callers_fault(
    gateway_factory: GatewayFactory, valid_tokens: set[str], fake_vertex: FakeVertex, marker: str
) -> None:
    with FakeMetadata(valid_tokens) as metadata:
        gw = gateway_factory(_token_env(metadata))
        assert post(gw, chat_body(marker + "-warm")).status == 200
        before = metadata.token_requests
        reply = post(gw, chat_body(marker + "-main", fake={"status": 401}))
        assert len(fake_vertex.find(marker + "-main")) == 2, "exactly one retry after a 401"
        assert metadata.token_requests == before + 1, "exactly one token refresh"
        # The caller's key was fine: a 401 would tell its SDK to fix the wrong credential.
        error = assert_openai_error(reply, 502)
        assert "Vertex" in error["message"]


# -- the key source -------------------------------------------------------------


@pytest.fixture
def secret_manager() -> Iterator[FakeSecretManager]:
    with FakeSecretManager() as fake:
        fake.create_secret("gw-keys")
        fake.add_version("gw-keys", json.dumps(KEY_DOCUMENT))
        yield fake


def _secret_env(fake: FakeSecretManager, refresh: str) -> dict[str, str | None]:
    return {
        "API_KEYS_JSON": None,
        "API_KEYS_SECRET": "gw-keys",
        "SECRET_MANAGER_ENDPOINT": fake.url,
        "KEYS_REFRESH_SECONDS": refresh,
    }


def _accesses(fake: FakeSecretManager) -> int:
    return sum(1 for r in fake.requests if r["path"].endswith(":access"))


@pytest.mark.parametrize("fault", ["down", "garbage"])
def test_secret_manager_fault_keeps_last_good_keys(
    fault: str, gateway_factory: GatewayFactory, secret_manager: FakeSecretManager
) -> None:
    gw = gateway_factory(_secret_env(secret_manager, "1"))
    setattr(secret_manager, fault, True)
    seen = _accesses(secret_manager)
    eventually(lambda: _accesses(secret_manager) >= seen + 2, 10, "two refreshes during the fault")
    assert get(gw, "/v1/models", API_KEYS["full"]).status == 200
    assert get(gw, "/healthz").status == 200
    gw.wait_for_log(lambda e: "keeping the last good key set" in str(e.get("message")))

    # Recovery: a new document is picked up at the next refresh.
    new_key = f"gwk-new-{secrets.token_urlsafe(16)}"
    secret_manager.add_version("gw-keys", json.dumps([{"id": "new", "key": new_key, "enabled": True}]))
    setattr(secret_manager, fault, False)
    eventually(lambda: get(gw, "/v1/models", new_key).status == 200, 10, "the new key works")
    assert get(gw, "/v1/models", API_KEYS["full"]).status == 401


def test_startup_without_keys_503_until_loaded(
    gateway_factory: GatewayFactory, secret_manager: FakeSecretManager, fake_vertex: FakeVertex, marker: str
) -> None:
    secret_manager.down = True
    # No first-load wait: this worker starts serving (503s) at once instead of holding back its accept.
    gw = gateway_factory({**_secret_env(secret_manager, "60"), "KEYS_FIRST_LOAD_WAIT_SECONDS": "0"}, wait_healthy=False)
    eventually(lambda: _accesses(secret_manager) >= 1, 10, "a first load was attempted")
    health = get(gw, "/healthz")
    assert health.status == 503 and health.json["ok"] is False
    assert "Secret Manager" in health.json["error"]
    for reply in (get(gw, "/v1/models", API_KEYS["full"]), post(gw, chat_body(marker))):
        error = assert_openai_error(reply, 503, "keys_unavailable")
        assert "API keys" in error["message"]
    assert not fake_vertex.find(marker)

    secret_manager.down = False
    eventually(lambda: get(gw, "/healthz").status == 200, 15, "keys load once Secret Manager is back")
    assert get(gw, "/v1/models", API_KEYS["full"]).status == 200


def test_upstream_path_is_fixed(fault_gw: Gateway, fake_vertex: FakeVertex, marker: str) -> None:
    # Guards the assumption every test above relies on: one upstream route.
    assert post(fault_gw, chat_body(marker)).status == 200
    assert [r.path for r in fake_vertex.find(marker)] == [CHAT_UPSTREAM_PATH]
