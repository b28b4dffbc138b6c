import pytest

from app.config import DEFAULT_ALIASES, DEFAULT_PASSTHROUGH, ConfigError, default_vertex_base_url, load_settings


def test_defaults() -> None:
    settings = load_settings({})
    assert settings.port == 8080
    assert settings.location == "global"
    assert settings.vertex_base_url == "https://aiplatform.googleapis.com"
    assert dict(settings.aliases) == DEFAULT_ALIASES
    assert settings.aliases["flash"] == "google/gemini-2.5-flash"
    assert settings.aliases["pro-preview"] == "google/gemini-3.1-pro-preview"
    assert settings.keys_refresh_seconds == 60
    assert settings.max_body_bytes == 32 * 1024 * 1024
    assert settings.model_passthrough == DEFAULT_PASSTHROUGH == ("claude-*", "gemini-*")


@pytest.mark.parametrize(
    ("location", "url"),
    [
        ("global", "https://aiplatform.googleapis.com"),
        ("us", "https://aiplatform.us.rep.googleapis.com"),
        ("eu", "https://aiplatform.eu.rep.googleapis.com"),
        ("europe-west4", "https://europe-west4-aiplatform.googleapis.com"),
    ],
)
def test_base_url_follows_location(location: str, url: str) -> None:
    assert default_vertex_base_url(location) == url
    assert load_settings({"VERTEX_LOCATION": location}).vertex_base_url == url


def test_model_overrides() -> None:
    settings = load_settings(
        {
            "MODEL_ALIASES": '{"flash": "google/gemini-2.0-flash", "fast": "google/gemini-2.5-flash-lite"}',
            "MODEL_PRO_PREVIEW_ID": "google/gemini-3-pro-preview",
        }
    )
    assert dict(settings.aliases) == {
        "flash": "google/gemini-2.0-flash",
        "fast": "google/gemini-2.5-flash-lite",
        "pro-preview": "google/gemini-3-pro-preview",
    }
    assert load_settings({"MODEL_FLASH_ID": "google/x"}).aliases["flash"] == "google/x"


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"PORT": "eighty"}, "PORT"),
        ({"PORT": "0"}, "PORT"),
        ({"KEYS_REFRESH_SECONDS": "-1"}, "KEYS_REFRESH_SECONDS"),
        ({"MODEL_ALIASES": "{not json"}, "MODEL_ALIASES"),
        ({"MODEL_ALIASES": "[]"}, "MODEL_ALIASES"),
        ({"MODEL_ALIASES": '{"flash": "gemini-2.5-flash"}'}, "MODEL_ALIASES"),
        ({"MODEL_FLASH_ID": "gemini-2.5-flash"}, "MODEL_FLASH_ID"),
        ({"VERTEX_LOCATION": "Mars 1"}, "VERTEX_LOCATION"),
        ({"VERTEX_BASE_URL": "aiplatform.googleapis.com"}, "VERTEX_BASE_URL"),
        ({"GOOGLE_CLOUD_PROJECT": "Bad_Project"}, "GOOGLE_CLOUD_PROJECT"),
        ({"API_KEYS_SECRET": "projects/p/secrets/"}, "API_KEYS_SECRET"),
        ({"LOG_LEVEL": "chatty"}, "LOG_LEVEL"),
        ({"MAX_BODY_BYTES": "12.5"}, "MAX_BODY_BYTES"),
        ({"UPSTREAM_RETRIES": "-2"}, "UPSTREAM_RETRIES"),
        ({"CLAUDE_COUNT_TOKENS_LOCATION": "us east"}, "CLAUDE_COUNT_TOKENS_LOCATION"),
        ({"VERTEX_BASE_URL": "https://aiplatform.googleapis.com/v1"}, "VERTEX_BASE_URL"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], names: str) -> None:
    with pytest.raises(ConfigError, match=names):
        load_settings(env)


def test_settings_are_frozen() -> None:
    settings = load_settings({})
    with pytest.raises(AttributeError):
        settings.port = 1  # type: ignore[misc]


@pytest.mark.parametrize("name", ["VERTEX_BASE_URL", "SECRET_MANAGER_ENDPOINT"])
@pytest.mark.parametrize("url", ["http://vertex.example.com", "http://10.0.0.7:8080", "http://[2001:db8::1]"])
def test_plain_http_to_another_machine_is_refused(name: str, url: str) -> None:
    # The service-account token rides on every call: in clear text only to this machine.
    with pytest.raises(ConfigError, match=f"{name}=.*clear text"):
        load_settings({name: url})


@pytest.mark.parametrize("url", ["http://127.0.0.1:9", "http://localhost:8080", "http://[::1]:80", "https://x.example"])
def test_https_or_loopback_endpoints_are_accepted(url: str) -> None:
    settings = load_settings({"VERTEX_BASE_URL": url + "/", "SECRET_MANAGER_ENDPOINT": url})
    assert settings.vertex_base_url == url and settings.secret_manager_endpoint == url


@pytest.mark.parametrize(
    ("raw", "patterns"),
    [
        ("claude-*,gemini-*", ("claude-*", "gemini-*")),
        (" claude-opus-* , gemini-2.5-* ,", ("claude-opus-*", "gemini-2.5-*")),
        ("claude-[!h]*,gemini-3-?ro*", ("claude-[!h]*", "gemini-3-?ro*")),
        ("claude-sonnet-4-5@20250929,claude-opus-4-1", ("claude-sonnet-4-5@20250929", "claude-opus-4-1")),
        ("claude-*,claude-*", ("claude-*",)),
        ("gemini-" + "x" * 121, ("gemini-" + "x" * 121,)),
        # Empty turns passthrough off.
        ("", ()),
        ("  ", ()),
        (",", ()),
    ],
)
def test_model_passthrough(raw: str, patterns: tuple[str, ...]) -> None:
    assert load_settings({"MODEL_PASSTHROUGH": raw}).model_passthrough == patterns


@pytest.mark.parametrize(
    ("raw", "fix"),
    [
        # Only the two families: their prefix is what says the publisher.
        ("*", "must start with 'claude-' or 'gemini-'"),
        ("claude*", "must start with 'claude-' or 'gemini-'"),
        ("gpt-*", "publisher (anthropic or google) is inferred from that prefix"),
        ("claude-*,llama-*", "'llama-*'"),
        ("anthropic/claude-*", "must start with 'claude-' or 'gemini-'"),
        ("Claude-*", "must start with 'claude-' or 'gemini-'"),
        ("none", "set MODEL_PASSTHROUGH to empty to pass none"),
        # A safe set of characters.
        ("claude-{opus,sonnet}", "glob characters * ? [ ] !"),
        ("gemini-2.5 flash", "'gemini-2.5 flash'"),
        ("claude-*/x", "without google/ or anthropic/"),
        ("claude-\\*", "at most 128 letters"),
        ("gemini-" + "x" * 122, "at most 128 letters"),
    ],
)
def test_bad_model_passthrough_names_the_variable_and_the_fix(raw: str, fix: str) -> None:
    with pytest.raises(ConfigError, match=r"^MODEL_PASSTHROUGH: ") as info:
        load_settings({"MODEL_PASSTHROUGH": raw})
    assert fix in str(info.value)


def test_aliases_and_vertex_ids_are_matched_whole() -> None:
    with pytest.raises(ConfigError, match="MODEL_ALIASES"):
        load_settings({"MODEL_ALIASES": '{"flash": "google/gemini-2.5-flash\\n"}'})
    with pytest.raises(ConfigError, match="MODEL_ALIASES"):
        load_settings({"MODEL_ALIASES": '{"flash\\n": "google/gemini-2.5-flash"}'})
