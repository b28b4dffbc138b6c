"""Issue 10's worker-level facts of a real deploy: every worker is ready before it accepts, a revoked key
stops working on an instance whose CPU was throttled, and missing credentials are said at once."""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import Iterator

import openai
import pytest
from starlette.testclient import TestClient

from app.config import load_settings
from app.key_sources import STALE_GRACE_SECONDS, KeyRefresher
from app.main import create_app
from tests.clock import Clock
from tests.conftest import API_KEYS, GatewayFactory
from tests.fakes import free_port
from tests.fakes.secretmanager import FakeSecretManager
from tests.faultkit import get

pytestmark = pytest.mark.e2e

SECRET = "gw-keys"
ALICE = "sk_live_alice_readiness_key_1"


def doc(*, enabled: bool = True) -> str:
    return json.dumps([{"id": "alice", "key": ALICE, "enabled": enabled}])


@pytest.fixture
def secret_manager() -> Iterator[FakeSecretManager]:
    with FakeSecretManager() as fake:
        fake.create_secret(SECRET)
        fake.add_version(SECRET, doc())
        yield fake


def test_no_worker_answers_503_after_the_first_healthy_answer(
    gateway_factory: GatewayFactory, secret_manager: FakeSecretManager
) -> None:
    # Each worker's first read of the secret takes a different time, as on a busy instance: a worker
    # that accepted before its own read finished would answer 503 beside a healthy sibling.
    secret_manager.access_delays = [0.2, 1.5, 2.5, 3.5]
    env = {
        "API_KEYS_JSON": None,
        "API_KEYS_SECRET": SECRET,
        "SECRET_MANAGER_ENDPOINT": secret_manager.url,
        "KEYS_REFRESH_SECONDS": "600",
    }
    gw = gateway_factory(env, workers=4)  # returns after the first healthy answer
    statuses: list[int] = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and len(statuses) < 200:
        statuses += [get(gw, "/health").status, get(gw, "/v1/models", ALICE).status]
    assert statuses and set(statuses) == {200}, f"{statuses.count(503)} answers of 503 among {len(statuses)}"
    reads = [r for r in secret_manager.requests if r["path"].endswith(":access")]
    # One first read per worker that has booted (on a loaded machine the last may still be importing).
    assert 1 <= len(reads) <= 4, "each worker reads the keys once before serving, never again meanwhile"


@pytest.fixture
def throttled(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cloud Run throttles an idle instance's CPU: the refresh loop never gets to run."""

    async def frozen(self: KeyRefresher) -> None:
        if not self.ring.loaded:  # the first load, wherever the code under test does it
            await self.load_once()
        await asyncio.Event().wait()

    def no_google(self: object) -> None:
        raise RuntimeError("no Vertex calls in this test")

    monkeypatch.setattr(KeyRefresher, "run", frozen)
    monkeypatch.setattr("app.vertex.TokenProvider._discover", no_google)


@pytest.mark.usefixtures("throttled")
def test_revoked_key_stops_working_within_the_interval_on_an_idle_instance(
    secret_manager: FakeSecretManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    interval = 1.0
    clock = Clock()  # the refresher's: time passes when the test says so
    monkeypatch.setattr("app.gateway.KeyRefresher", functools.partial(KeyRefresher, clock=clock))
    settings = load_settings(
        {
            "GOOGLE_CLOUD_PROJECT": "test-project",
            "API_KEYS_SECRET": SECRET,
            "SECRET_MANAGER_ENDPOINT": secret_manager.url,
            "KEYS_REFRESH_SECONDS": f"{interval:g}",
            "VERTEX_BASE_URL": f"http://127.0.0.1:{free_port()}",
        }
    )

    def reads() -> int:
        return sum(1 for r in secret_manager.requests if r["path"].endswith(":access"))

    with TestClient(create_app(settings)) as http:
        models = {"authorization": f"Bearer {ALICE}"}
        deadline = time.monotonic() + 10
        while http.get("/health").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert http.get("/v1/models", headers=models).status_code == 200
        assert http.get("/v1/models", headers=models).status_code == 200
        assert reads() == 1, "a fresh key set is not read again per request"

        secret_manager.add_version(SECRET, doc(enabled=False))
        revoked_at = clock()
        bound = interval + 5  # the promise: KEYS_REFRESH_SECONDS + 5 s after the revoke
        clock.advance(interval + STALE_GRACE_SECONDS + 0.1)
        assert clock() - revoked_at < bound
        statuses = []
        # The rest of the promise is real time, for the read itself (a worker thread, over HTTP).
        deadline = time.monotonic() + bound - (clock() - revoked_at)
        while time.monotonic() < deadline and 401 not in statuses:
            statuses.append(http.get("/v1/models", headers=models).status_code)
        assert statuses[-1] == 401, f"the revoked key still worked {bound:g} s after the revoke: {statuses}"
        assert "revoked" in http.get("/v1/models", headers=models).json()["error"]["message"]
        assert reads() == 2, "the stale set was read again once, by the request that found it stale"


def test_missing_credentials_are_said_at_once_and_sdks_do_not_retry(gateway_factory: GatewayFactory) -> None:
    # No ADC file in the clean HOME, no GOOGLE_APPLICATION_CREDENTIALS, and no metadata server.
    dead = f"127.0.0.1:{free_port()}"
    gw = gateway_factory({"GCE_METADATA_HOST": dead, "GCE_METADATA_IP": dead, "GOOGLE_CLOUD_PROJECT": None})
    with openai.OpenAI(api_key=API_KEYS["full"], base_url=gw.base_url, timeout=30) as sdk:  # the SDK's default retries
        started = len(gw.request_logs())
        with pytest.raises(openai.InternalServerError) as raised:
            sdk.chat.completions.create(model="flash", messages=[{"role": "user", "content": "hi"}])
    error = raised.value
    assert error.status_code == 503
    assert "gcloud auth application-default login" in error.message
    assert "retry-after" not in error.response.headers
    assert error.response.json()["error"]["code"] == "upstream_credentials_missing"
    # Request lines go out once per event-loop turn: wait for this one, then count (retries would come before it).
    gw.wait_for_log(lambda e: e.get("httpRequest", {}).get("requestUrl") == "/v1/chat/completions")
    lines = gw.request_logs()[started:]
    assert len([e for e in lines if e["httpRequest"]["requestUrl"] == "/v1/chat/completions"]) == 1, "no retries"
    health = get(gw, "/health")
    assert health.status == 200 and health.json["upstream_credentials"] == "missing"
