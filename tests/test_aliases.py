import pytest

from app.aliases import ModelTable
from app.apis import client_api_of
from app.config import DEFAULT_ALIASES
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
