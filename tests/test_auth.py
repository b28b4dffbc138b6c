import orjson
import pytest

from app.aliases import ModelTable
from app.auth import authenticate, authorize, presented_key
from app.config import DEFAULT_ALIASES, DEFAULT_PASSTHROUGH, load_settings
from app.errors import GatewayError
from app.gateway import Gateway
from app.key_ring import KeyRing
from tests.clock import Clock

RING = KeyRing()
RING.load_document(
    orjson.dumps(
        [
            {"id": "ok", "key": "sk_live_ok_key_1"},
            {"id": "off", "key": "sk_live_off_key_1", "enabled": False},
            {"id": "old", "key": "sk_live_old_key_1", "expires": "2001-01-01T00:00:00Z"},
            {"id": "narrow", "key": "sk_live_narrow_1", "models": ["flash"]},
            {"id": "claude", "key": "sk_live_claude_1", "models": ["sonnet", "claude-opus-*", "claude-*@2025*"]},
        ]
    )
)
MODELS = ModelTable(DEFAULT_ALIASES, DEFAULT_PASSTHROUGH)


@pytest.mark.parametrize(
    ("headers", "key"),
    [
        ({b"x-api-key": b"abc"}, "abc"),
        ({b"x-goog-api-key": b"abc"}, "abc"),  # google-genai in Vertex express mode
        ({b"x-api-key": b"abc", b"x-goog-api-key": b"xyz"}, "abc"),
        ({b"authorization": b"Bearer abc"}, "abc"),
        ({b"authorization": b"bearer   abc "}, "abc"),
        ({b"authorization": b"Basic abc"}, None),
        ({b"authorization": b"Bearer "}, None),
        ({}, None),
    ],
)
def test_presented_key(headers: dict[bytes, bytes], key: str | None) -> None:
    assert presented_key(headers) == key


@pytest.mark.parametrize(
    ("key", "fragment"),
    [
        (None, "Missing API key"),
        ("sk_live_nope", "Invalid API key"),
        ("sk_live_off_key_1", "revoked"),
        ("sk_live_old_key_1", "expired at 2001-01-01T00:00:00Z"),
    ],
)
def test_refusals_are_401_with_a_reason(key: str | None, fragment: str) -> None:
    headers = {b"x-api-key": key.encode()} if key else {}
    with pytest.raises(GatewayError) as info:
        authenticate(RING, headers)
    assert info.value.status == 401 and fragment in info.value.message
    assert key is None or key not in info.value.message


def test_expiry_takes_effect_at_the_moment() -> None:
    clock = Clock(1893455999.0)  # a second before 2030-01-01T00:00:00Z
    ring = KeyRing(clock)
    ring.load_document(orjson.dumps([{"id": "e", "key": "sk_live_expiring", "expires": "2030-01-01T00:00:00Z"}]))
    headers = {b"x-api-key": b"sk_live_expiring"}
    assert authenticate(ring, headers).id == "e"
    clock.advance(0.999)
    assert authenticate(ring, headers).id == "e"
    clock.advance(0.001)
    with pytest.raises(GatewayError) as info:
        authenticate(ring, headers)
    assert info.value.status == 401 and info.value.code == "expired_api_key"
    assert "expired at 2030-01-01T00:00:00Z" in info.value.message


@pytest.mark.parametrize(
    ("setup", "says"),
    [
        ({}, "the key source is not set up"),
        ({"_key_setup_error": "no key source is configured (API_KEYS_SECRET, ...)"}, "no key source is configured"),
    ],
)
def test_no_keys_loaded_is_503_saying_why(setup: dict[str, str], says: str) -> None:
    gateway = Gateway(load_settings({"GOOGLE_CLOUD_PROJECT": "test-project"}))
    vars(gateway).update(setup)
    with pytest.raises(GatewayError) as info:
        gateway.keys_ready()
    assert info.value.status == 503 and info.value.code == "keys_unavailable" and says in info.value.message
    gateway.ring.replace({})
    gateway.keys_ready()  # a loaded ring, even an empty one: each caller's key is judged on its own


def test_model_allowlist() -> None:
    narrow = authenticate(RING, {b"authorization": b"Bearer sk_live_narrow_1"})
    authorize(narrow, MODELS.resolve("flash"))
    with pytest.raises(GatewayError) as info:
        authorize(narrow, MODELS.resolve("pro-preview"))
    assert info.value.status == 403 and "may use: flash" in info.value.message
    authorize(authenticate(RING, {b"x-api-key": b"sk_live_ok_key_1"}), MODELS.resolve("pro-preview"))


def test_model_allowlist_globs_reach_passed_through_models() -> None:
    claude = authenticate(RING, {b"x-api-key": b"sk_live_claude_1"})
    for allowed in ("sonnet", "claude-sonnet-4-6", "claude-opus-5-5", "anthropic/claude-opus-5", "claude-x-20250101"):
        authorize(claude, MODELS.resolve(allowed))
    for refused in ("opus", "haiku", "claude-sonnet-5", "gemini-3-pro", "flash"):
        with pytest.raises(GatewayError) as info:
            authorize(claude, MODELS.resolve(refused))
        assert info.value.status == 403 and info.value.code == "model_not_allowed"
        assert "it may use: claude-*@2025*, claude-opus-*, sonnet" in info.value.message
    with pytest.raises(GatewayError) as info:
        authorize(claude, MODELS.resolve("claude-sonnet-5"))
    assert "may not use model 'claude-sonnet-5' (anthropic/claude-sonnet-5, passed through)" in info.value.message
    # A key without a list reaches passed-through models too; a key with one reaches only what it names.
    authorize(authenticate(RING, {b"x-api-key": b"sk_live_ok_key_1"}), MODELS.resolve("gemini-3-pro"))
    with pytest.raises(GatewayError):
        authorize(authenticate(RING, {b"x-api-key": b"sk_live_narrow_1"}), MODELS.resolve("gemini-3-pro"))
