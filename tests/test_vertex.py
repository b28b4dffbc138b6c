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
