import pytest

from app.aliases import CLAUDE_CODE_HINT, Model, ModelTable, passthrough_not_found
from app.apis import client_api_of
from app.config import DEFAULT_ALIASES, DEFAULT_PASSTHROUGH
from app.errors import GatewayError

TABLE = ModelTable(DEFAULT_ALIASES)


def test_alias_and_vertex_id_resolve_to_the_same_model() -> None:
    flash = TABLE.resolve("flash")
    assert flash.vertex_id == "google/gemini-2.5-flash"
    assert TABLE.resolve("google/gemini-2.5-flash") is flash
    assert (
        client_api_of(flash).name == "chat.completions"
        and flash.publisher == "google"
        and flash.name == "gemini-2.5-flash"
    )


def test_anthropic_api_ids_map_to_vertex_ids() -> None:
    haiku = TABLE.resolve("claude-haiku-4-5-20251001")
    assert haiku.alias == "haiku" and haiku.name == "claude-haiku-4-5@20251001"
    assert TABLE.resolve("claude-haiku-4-5@20251001") is haiku
    assert TABLE.resolve("claude-sonnet-4-6").alias == "sonnet"
    assert client_api_of(haiku).name == "messages"


@pytest.mark.parametrize("name", ["gpt-4o", "claude-sonnet-4-5-20250929", "FLASH", ""])
def test_unknown_names_list_the_valid_aliases(name: str) -> None:
    with pytest.raises(GatewayError) as info:
        TABLE.resolve(name)
    assert info.value.status == 400
    assert "flash, pro-preview" in info.value.message


@pytest.mark.parametrize("name", [None, 3, ["flash"]])
def test_model_must_be_a_string(name: object) -> None:
    with pytest.raises(GatewayError, match="must be a string"):
        TABLE.resolve(name)


# -- passthrough: unlisted claude-/gemini- ids go to Vertex as asked (issue 12) ------------------------------

PASSING = ModelTable(DEFAULT_ALIASES, DEFAULT_PASSTHROUGH)


@pytest.mark.parametrize(
    ("name", "vertex_id"),
    [
        # Anthropic's -YYYYMMDD is Vertex's @YYYYMMDD; an undated id goes as it is.
        ("claude-sonnet-4-5-20250929", "anthropic/claude-sonnet-4-5@20250929"),
        ("claude-sonnet-5", "anthropic/claude-sonnet-5"),
        ("claude-opus-5-5", "anthropic/claude-opus-5-5"),
        ("claude-sonnet-4-5@20250929", "anthropic/claude-sonnet-4-5@20250929"),
        ("claude-3-5-haiku-20241022", "anthropic/claude-3-5-haiku@20241022"),
        ("claude-x-2025092", "anthropic/claude-x-2025092"),  # seven digits: not a date
        # Qualified ids go as given.
        ("anthropic/claude-sonnet-5", "anthropic/claude-sonnet-5"),
        ("anthropic/claude-sonnet-4-5@20250929", "anthropic/claude-sonnet-4-5@20250929"),
        ("anthropic/claude-sonnet-4-5-20250929", "anthropic/claude-sonnet-4-5-20250929"),
        ("gemini-3-pro-preview", "google/gemini-3-pro-preview"),
        ("google/gemini-2.5-flash-lite", "google/gemini-2.5-flash-lite"),
        ("gemini-2.0-flash-001", "google/gemini-2.0-flash-001"),
    ],
)
def test_unlisted_claude_and_gemini_ids_pass_through(name: str, vertex_id: str) -> None:
    model = PASSING.resolve(name)
    assert model == Model(name, vertex_id, passthrough=True)
    # The caller's id is what logs show; publisher and name still split the Vertex id.
    assert model.alias == name and model.passthrough
    assert f"{model.publisher}/{model.name}" == vertex_id
    assert client_api_of(model).name == ("messages" if model.publisher == "anthropic" else "chat.completions")
    assert PASSING.get(name) is None, "get() answers for configured models only"


@pytest.mark.parametrize(
    ("name", "alias"),
    [
        ("flash", "flash"),
        ("sonnet", "sonnet"),
        ("claude-sonnet-4-6", "sonnet"),
        ("anthropic/claude-sonnet-4-6", "sonnet"),
        ("claude-haiku-4-5-20251001", "haiku"),
        ("claude-haiku-4-5@20251001", "haiku"),
        ("gemini-2.5-flash", "flash"),
        ("google/gemini-2.5-flash", "flash"),
    ],
)
def test_configured_models_win_over_passthrough(name: str, alias: str) -> None:
    model = PASSING.resolve(name)
    assert model.alias == alias and not model.passthrough
    assert model in PASSING.models


def test_an_alias_shaped_like_a_model_id_still_wins() -> None:
    table = ModelTable({"claude-sonnet-5": "anthropic/claude-sonnet-4-6"}, DEFAULT_PASSTHROUGH)
    model = table.resolve("claude-sonnet-5")
    assert model.vertex_id == "anthropic/claude-sonnet-4-6" and not model.passthrough


@pytest.mark.parametrize(
    ("patterns", "name", "passes"),
    [
        (("claude-opus-*",), "claude-opus-5-5", True),
        (("claude-opus-*",), "claude-sonnet-5", False),
        (("claude-opus-*",), "anthropic/claude-opus-5", True),  # matched without the qualifier
        (("claude-opus-*",), "gemini-3-pro", False),
        (("gemini-2.5-*", "gemini-3-?ro*"), "gemini-3-pro-preview", True),
        (("gemini-2.5-*",), "google/gemini-2.5-pro", True),
        (("gemini-2.5-*",), "gemini-3-pro", False),
        (("claude-[!o]*",), "claude-sonnet-5", True),
        (("claude-[!o]*",), "claude-opus-5", False),
        # The pattern sees the id as sent: a dated id matches its dashed form.
        (("claude-*-20250929",), "claude-sonnet-4-5-20250929", True),
        (("claude-*@20250929",), "claude-sonnet-4-5-20250929", False),
        # Case counts (fnmatchcase), as Vertex's ids are lower case.
        (("claude-*",), "Claude-sonnet-5", False),
        (("CLAUDE-*",), "claude-sonnet-5", False),
    ],
)
def test_patterns_decide_what_passes(patterns: tuple[str, ...], name: str, passes: bool) -> None:
    table = ModelTable(DEFAULT_ALIASES, patterns)
    if passes:
        assert table.resolve(name).passthrough
        return
    with pytest.raises(GatewayError) as info:
        table.resolve(name)
    assert info.value.status == 400 and info.value.code == "model_not_found"


@pytest.mark.parametrize(
    "name",
    [
        "gpt-4o",
        "FLASH",
        "claude",  # no family prefix: "claude-" is
        "gemini",
        "claude-",  # the bare prefix is no model
        "llama-3",
        "claude-sonnet 5",
        "claude-sonnet-5\n",
        "claude-sonnet-5:streamRawPredict",
        "claude-sonnet-5/../../x",
        "claude-sonnet-5?x=1",
        "claude-sonnet-5#x",
        "claude-sonnet-%35",
        "claude-sønnet-5",
        "gemini-3\x00",
        "claude-" + "x" * 122,  # 129 characters
        "google/claude-sonnet-5",  # the publisher must fit the family
        "anthropic/gemini-3-pro",
        "vertex/claude-sonnet-5",
        "/claude-sonnet-5",
        "anthropic//claude-sonnet-5",
        "anthropic/anthropic/claude-sonnet-5",
        "publishers/anthropic/models/claude-sonnet-5",
        "Anthropic/claude-sonnet-5",
    ],
)
def test_other_names_stay_unknown(name: str) -> None:
    with pytest.raises(GatewayError) as info:
        PASSING.resolve(name)
    assert info.value.status == 400 and info.value.code == "model_not_found"
    assert "flash, pro-preview" in info.value.message


def test_the_longest_id_that_passes() -> None:
    name = "claude-" + "x" * 121
    assert len(name) == 128 and PASSING.resolve(name).vertex_id == f"anthropic/{name}"
    assert PASSING.resolve(f"anthropic/{name[:-10]}").passthrough


@pytest.mark.parametrize("name", ["claude-sonnet-5", "claude-sonnet-4-5-20250929", "gemini-3-pro", "google/gemini-3"])
def test_passthrough_disabled_keeps_the_old_answer(name: str) -> None:
    for table in (TABLE, ModelTable(DEFAULT_ALIASES, ())):
        with pytest.raises(GatewayError) as info:
            table.resolve(name)
        message = info.value.message
        assert info.value.code == "model_not_found" and message.startswith(f"Unknown model {name!r}. Valid models:")
        assert "MODEL_PASSTHROUGH is empty" in message
        assert (CLAUDE_CODE_HINT in message) == name.startswith("claude-")


@pytest.mark.parametrize(
    ("patterns", "name", "needle"),
    [
        (("claude-opus-*",), "claude-sonnet-5", "match the operator's MODEL_PASSTHROUGH (claude-opus-*)"),
        (("claude-opus-*", "gemini-3-*"), "gemini-2.5-pro", "MODEL_PASSTHROUGH (claude-opus-*,gemini-3-*)"),
        (DEFAULT_PASSTHROUGH, "claude-sonnet 5", "at most 128 letters, digits, '.', '_', '@' or '-'"),
        (DEFAULT_PASSTHROUGH, "google/claude-sonnet-5", "as 'claude-sonnet-5' or anthropic/claude-sonnet-5"),
        (DEFAULT_PASSTHROUGH, "gpt-4o", None),
    ],
)
def test_a_refused_id_says_why(patterns: tuple[str, ...], name: str, needle: str | None) -> None:
    with pytest.raises(GatewayError) as info:
        ModelTable(DEFAULT_ALIASES, patterns).resolve(name)
    message = info.value.message
    if needle is None:
        assert "MODEL_PASSTHROUGH" not in message and "pass through" not in message
    else:
        assert needle in message
    assert (CLAUDE_CODE_HINT in message) == name.startswith("claude-")


ALIASES = list(DEFAULT_ALIASES)


@pytest.mark.parametrize(
    ("name", "needles"),
    [
        ("claude-opus-5-5", ["ANTHROPIC_DEFAULT_OPUS_MODEL=opus", "map this opus model"]),
        (
            "claude-sonnet-4-5-20250929",
            ["anthropic/claude-sonnet-4-5@20250929", "ANTHROPIC_DEFAULT_SONNET_MODEL=sonnet"],
        ),
        ("anthropic/claude-3-5-haiku@20241022", ["ANTHROPIC_DEFAULT_HAIKU_MODEL=haiku"]),
        ("claude-mystery-1", ["ANTHROPIC_DEFAULT_OPUS_MODEL, ANTHROPIC_DEFAULT_SONNET_MODEL and"]),
        ("gemini-3-ultra", ["google/gemini-3-ultra", "Or use one of this gateway's models instead", "GET /v1/models"]),
    ],
)
def test_passthrough_not_found_names_the_model_and_the_fixes(name: str, needles: list[str]) -> None:
    model = PASSING.resolve(name)
    message = passthrough_not_found(model, ALIASES)
    assert message.startswith(f"Model {name!r} (Vertex AI model {model.vertex_id}) is not enabled in")
    assert "does not exist in its region" in message
    assert "Model Garden" in message and "(https://console.cloud.google.com/vertex-ai/model-garden)" in message
    assert "flash, pro-preview, sonnet, opus, haiku" in message
    for needle in needles:
        assert needle in message, needle


def test_passthrough_not_found_without_a_matching_alias_says_alias() -> None:
    message = passthrough_not_found(Model("claude-opus-9", "anthropic/claude-opus-9", True), ["flash", "big"])
    assert "ANTHROPIC_DEFAULT_OPUS_MODEL=<alias>" in message and "(flash, big)" in message
