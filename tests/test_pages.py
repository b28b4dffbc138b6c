"""In-process checks of the HTML pages and /healthz (fast; the e2e tests cover the rest)."""

import orjson
import pytest
from starlette.testclient import TestClient

from app.config import load_settings
from app.main import create_app

KEYS = orjson.dumps([{"id": "dev", "key": "sk_test_pages_key"}]).decode()


@pytest.fixture(autouse=True)
def no_google(monkeypatch: pytest.MonkeyPatch) -> None:
    # These tests never reach Vertex; keep google-auth from probing for a metadata server.
    def no_credentials(self: object) -> None:
        raise RuntimeError("no credentials in page tests")

    monkeypatch.setattr("app.vertex.TokenProvider._discover", no_credentials)


def client(**env: str) -> TestClient:
    settings = load_settings({"GOOGLE_CLOUD_PROJECT": "test-project", "VERTEX_BASE_URL": "http://127.0.0.1:9", **env})
    return TestClient(create_app(settings), base_url="https://gw.example.com")


def test_runbook_renders_the_live_alias_table_and_base_url() -> None:
    aliases = '{"quick": "google/gemini-2.5-flash-lite", "deep": "anthropic/claude-opus-4-6"}'
    with client(API_KEYS_JSON=KEYS, MODEL_ALIASES=aliases) as http:
        page = http.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    text = page.text
    assert "<code>quick</code></td><td><code>google/gemini-2.5-flash-lite</code>" in text
    assert "<code>deep</code></td><td><code>anthropic/claude-opus-4-6</code></td><td>/v1/messages" in text
    assert "https://gw.example.com/v1" in text
    for section in (
        "curl",
        "Python",
        "Node",
        "Agents SDK",
        "pi coding agent",
        "Claude Code",
        "scripts/keys rotate",
        "deploy.sh",
        "gcloud logging read",
        "Rollback",
        "Teardown",
        "Cost",
    ):
        assert section in text, section
    assert "$" + "{" not in text and "$base_url" not in text


def test_pages_carry_security_headers_and_escape_the_host() -> None:
    with client(API_KEYS_JSON=KEYS) as http:
        for path in ("/", "/docs"):
            page = http.get(path, headers={"host": "evil.example<script>"})
            assert "<script>" not in page.text
            csp = page.headers["content-security-policy"]
            assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
            assert page.headers["x-content-type-options"] == "nosniff"
        assert http.head("/").status_code == 200


@pytest.mark.parametrize("path", ["/health", "/healthz"])
def test_health_is_503_without_keys_and_200_with_them(path: str) -> None:
    with client() as http:
        down = http.get(path)
    assert down.status_code == 503 and down.json()["ok"] is False
    assert "API_KEYS_SECRET" in down.json()["error"]
    with client(API_KEYS_JSON=KEYS) as http:
        up = http.get(path)
    assert up.status_code == 200
    assert up.json() == {
        "ok": True,
        "models": ["flash", "pro-preview", "sonnet", "opus", "haiku", "embed"],
        "keys": 1,
        # Reported, never a reason to fail readiness (a metadata hiccup must not take a revision down).
        "upstream_credentials": "failing",
    }


def test_health_names_missing_credentials_without_failing(monkeypatch: pytest.MonkeyPatch) -> None:
    import google.auth.exceptions

    def no_adc(self: object) -> None:
        raise google.auth.exceptions.DefaultCredentialsError("Your default credentials were not found.")

    monkeypatch.setattr("app.vertex.TokenProvider._discover", no_adc)
    with client(API_KEYS_JSON=KEYS) as http:
        up = http.get("/health")
    assert up.status_code == 200
    assert up.json()["upstream_credentials"] == "missing"
    assert "gcloud auth application-default login" in up.json()["hint"]


def test_api_without_keys_is_503_in_the_callers_shape() -> None:
    with client() as http:
        openai = http.post("/v1/chat/completions", json={"model": "flash"}, headers={"x-api-key": "k" * 12})
        anthropic = http.post("/v1/messages", json={"model": "sonnet"}, headers={"x-api-key": "k" * 12})
    assert openai.status_code == 503 and openai.json()["error"]["code"] == "keys_unavailable"
    assert anthropic.status_code == 503 and anthropic.json()["type"] == "error"
