"""Model names: aliases ("flash") to publisher-qualified Vertex ids.

Callers may name a model by alias, by its configured Vertex id, or (for Claude)
by the Anthropic API's own id (`claude-sonnet-4-5-20250929`), which Claude Code
sends by default; all three resolve to one configured Model.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass

from app.errors import GatewayError

# Anthropic API ids end in -YYYYMMDD; Vertex writes the same model as @YYYYMMDD.
_ANTHROPIC_DATED = re.compile(r"^(claude-.+)-(\d{8})$")


# Claude Code asks for its own newest model ids; its documented switches point each tier at ours.
CLAUDE_CODE_HINT = (
    ". Claude Code users: set ANTHROPIC_DEFAULT_OPUS_MODEL, ANTHROPIC_DEFAULT_SONNET_MODEL and "
    "ANTHROPIC_DEFAULT_HAIKU_MODEL to this gateway's aliases (e.g. ANTHROPIC_DEFAULT_SONNET_MODEL=sonnet)"
)


@dataclass(frozen=True, slots=True)
class Model:
    alias: str
    vertex_id: str  # "google/gemini-2.5-flash", "anthropic/claude-sonnet-4-6"

    @property
    def publisher(self) -> str:
        return self.vertex_id.split("/", 1)[0]

    @property
    def name(self) -> str:
        return self.vertex_id.split("/", 1)[1]


class ModelTable:
    def __init__(self, aliases: Mapping[str, str]) -> None:
        self.models = tuple(Model(alias, vertex_id) for alias, vertex_id in aliases.items())
        self._by_name: dict[str, Model] = {}
        # Aliases win over ids; a Vertex id also answers with and without publisher.
        for model in self.models:
            self._by_name.setdefault(model.vertex_id, model)
            self._by_name.setdefault(model.name, model)
            if model.publisher == "anthropic":
                self._by_name.setdefault(model.name.replace("@", "-"), model)
        for model in self.models:
            self._by_name[model.alias] = model

    @property
    def aliases(self) -> list[str]:
        return [model.alias for model in self.models]

    def get(self, name: str) -> Model | None:
        model = self._by_name.get(name)
        if model is None:
            dated = _ANTHROPIC_DATED.match(name)
            if dated:
                model = self._by_name.get(f"{dated[1]}@{dated[2]}")
        return model

    def resolve(self, name: object, param: str = "model") -> Model:
        if not isinstance(name, str) or not name:
            raise GatewayError(
                400,
                f"'{param}' is required and must be a string naming a model; valid models: {', '.join(self.aliases)}",
                param=param,
                code="invalid_model",
            )
        model = self.get(name)
        if model is None:
            hint = CLAUDE_CODE_HINT if name.startswith("claude-") else ""
            raise GatewayError(
                400,
                f"Unknown model {name[:200]!r}. Valid models: {', '.join(self.aliases)} (see GET /v1/models){hint}",
                param=param,
                code="model_not_found",
            )
        return model
