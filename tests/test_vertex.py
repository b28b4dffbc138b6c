import ssl

import pytest

from app.aliases import ModelTable
from app.config import DEFAULT_ALIASES, load_settings
from app.vertex import VertexUrls, make_client

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
