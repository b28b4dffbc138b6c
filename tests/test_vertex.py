import asyncio
import ssl
from collections.abc import Callable
from datetime import UTC, datetime

import google.auth.exceptions
import pytest

from app.aliases import ModelTable
from app.config import DEFAULT_ALIASES, load_settings
from app.errors import GatewayError
from app.vertex import MIN_TOKEN_LIFE_SECONDS, REFRESH_AHEAD_SECONDS, TokenProvider, VertexUrls, make_client
from tests.clock import Clock

MODELS = ModelTable(DEFAULT_ALIASES)


def test_urls_follow_the_location_and_publisher() -> None:
    urls = VertexUrls(load_settings({"VERTEX_LOCATION": "us-east5"}), "proj-1")
    prefix = "https://us-east5-aiplatform.googleapis.com/v1/projects/proj-1/locations/us-east5"
    assert urls.chat_completions == f"{prefix}/endpoints/openapi/chat/completions"
    assert urls.raw_predict(MODELS.resolve("haiku"), stream=False) == (
        f"{prefix}/publishers/anthropic/models/claude-haiku-4-5@20251001:rawPredict"
    )
    assert urls.raw_predict(MODELS.resolve("sonnet"), stream=True).endswith("claude-sonnet-4-6:streamRawPredict")
    assert urls.count_tokens == f"{prefix}/publishers/anthropic/models/count-tokens:rawPredict"


@pytest.mark.parametrize(("base", "tls"), [(None, True), ("http://127.0.0.1:9", False)])
def test_tls_context_is_ready_before_the_first_request(base: str | None, tls: bool) -> None:
    settings = load_settings({"VERTEX_BASE_URL": base} if base else {})
    context = make_client(settings)._ssl
    assert isinstance(context, ssl.SSLContext) is tls
    if context is not None:
        assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


@pytest.mark.parametrize(
    ("env", "url"),
    [
        # Claude's count-tokens is not served at `global`: the default region stands in for it.
        ({}, "https://us-east5-aiplatform.googleapis.com/v1/projects/p-1/locations/us-east5"),
        (
            {"CLAUDE_COUNT_TOKENS_LOCATION": "europe-west1"},
            "https://europe-west1-aiplatform.googleapis.com/v1/projects/p-1/locations/europe-west1",
        ),
        # A regional deploy counts where it runs; the override is only for `global`.
        (
            {"VERTEX_LOCATION": "europe-west4", "CLAUDE_COUNT_TOKENS_LOCATION": "us-east5"},
            "https://europe-west4-aiplatform.googleapis.com/v1/projects/p-1/locations/europe-west4",
        ),
        # An explicit endpoint (a private one, a local fake) serves every location itself.
        ({"VERTEX_BASE_URL": "https://vertex.internal"}, "https://vertex.internal/v1/projects/p-1/locations/us-east5"),
    ],
)
def test_count_tokens_goes_to_a_region_that_serves_it(env: dict[str, str], url: str) -> None:
    urls = VertexUrls(load_settings(env), "p-1")
    assert urls.count_tokens == f"{url}/publishers/anthropic/models/count-tokens:rawPredict"
    # Everything else stays where VERTEX_LOCATION says.
    assert f"/locations/{env.get('VERTEX_LOCATION', 'global')}/" in urls.chat_completions


# -- the access token, on a fake clock ------------------------------------------------------------------


class FakeCredentials:
    """The service account's credentials: each refresh is a new token good for `life` seconds, or fails."""

    def __init__(self, clock: Clock, life: float = 3600.0) -> None:
        self.clock, self.life = clock, life
        self.down = False
        self.refreshes = 0
        self.token: str | None = None
        self.expiry: datetime | None = None

    def refresh(self, request: object) -> None:
        self.refreshes += 1
        if self.down:
            raise google.auth.exceptions.RefreshError("the metadata server answered 500")
        self.token = f"token-{self.refreshes}"
        self.expiry = datetime.fromtimestamp(self.clock() + self.life, UTC).replace(tzinfo=None)  # google-auth's way


@pytest.fixture
def credentials(monkeypatch: pytest.MonkeyPatch) -> FakeCredentials:
    fake = FakeCredentials(Clock())
    monkeypatch.setattr("google.auth.default", lambda scopes: (fake, "proj-1"))
    return fake


async def until(condition: Callable[[], bool]) -> None:
    """A refresh runs in a worker thread: poll for its outcome (a bound on a hang, not a deadline under test)."""
    for _ in range(2000):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the condition never held")


def unavailable(raised: pytest.ExceptionInfo[GatewayError]) -> bool:
    error = raised.value
    return error.status == 503 and error.code == "upstream_auth_unavailable" and "access token" in error.message


def test_a_failing_refresh_serves_the_cached_token_then_503_then_recovers(credentials: FakeCredentials) -> None:
    clock, retry = credentials.clock, 5.0

    async def scenario() -> None:
        tokens = TokenProvider(retry, clock)
        assert await tokens.token() == "token-1"
        expiry = clock() + credentials.life
        credentials.down = True
        clock.now = expiry - REFRESH_AHEAD_SECONDS - 1
        assert await tokens.token() == "token-1" and credentials.refreshes == 1, "nothing to refresh yet"
        clock.now = expiry - REFRESH_AHEAD_SECONDS + 1  # refreshed ahead of expiry, in the background
        assert await tokens.token() == "token-1"
        await until(lambda: tokens.status == "failing")
        assert credentials.refreshes == 2
        clock.advance(retry - 1)  # a failed refresh is not tried again before `retry` seconds
        assert await tokens.token() == "token-1" and credentials.refreshes == 2
        clock.now = expiry - MIN_TOKEN_LIFE_SECONDS  # too close to expiry to send: one more try, then 503
        with pytest.raises(GatewayError) as raised:
            await tokens.token()
        assert unavailable(raised) and credentials.refreshes == 3
        assert (b"retry-after", b"5") in raised.value.headers
        with pytest.raises(GatewayError) as raised:  # at once, without a refresh: it just failed
            await tokens.token()
        assert unavailable(raised) and credentials.refreshes == 3
        credentials.down = False
        clock.advance(retry)
        assert await tokens.token() == "token-4"
        assert tokens.status == "ok"

    asyncio.run(scenario())


def test_no_token_at_startup_is_503_until_the_metadata_server_answers(credentials: FakeCredentials) -> None:
    clock, retry = credentials.clock, 5.0
    credentials.down = True

    async def scenario() -> None:
        tokens = TokenProvider(retry, clock)
        assert tokens.status == "unknown"
        with pytest.raises(GatewayError) as raised:
            await tokens.token()
        assert unavailable(raised) and credentials.refreshes == 1 and tokens.status == "failing"
        clock.advance(retry - 0.1)
        with pytest.raises(GatewayError) as raised:  # no caller waits for a refresh that just failed
            await tokens.token()
        assert unavailable(raised) and credentials.refreshes == 1
        credentials.down = False
        clock.advance(0.1)
        assert await tokens.token() == "token-2"
        assert tokens.status == "ok" and tokens.project == "proj-1"

    asyncio.run(scenario())
