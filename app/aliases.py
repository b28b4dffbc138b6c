"""Model names: aliases ("flash") to publisher-qualified Vertex ids.

Callers may name a model by alias, by its configured Vertex id, or (for Claude)
by the Anthropic API's own id (`claude-sonnet-4-5-20250929`), which Claude Code
sends by default; all three resolve to one configured Model.

Any other `claude-…` or `gemini-…` id (also `anthropic/claude-…`, `google/gemini-…`) that matches the
operator's MODEL_PASSTHROUGH patterns goes to Vertex as asked: a passed-through Model, named in logs
by the caller's id. Whether Vertex serves it is Vertex's to say (a 404: passthrough_not_found).
"""

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import translate

from app.config import VERTEX_ID_RE
from app.errors import GatewayError

# Anthropic API ids end in -YYYYMMDD; Vertex writes the same model as @YYYYMMDD.
_ANTHROPIC_DATED = re.compile(r"^(claude-.+)-(\d{8})$")

# Claude Code asks for its own newest model ids; its documented switches point each tier at ours.
CLAUDE_CODE_HINT = (
    ". Claude Code users: set ANTHROPIC_DEFAULT_OPUS_MODEL, ANTHROPIC_DEFAULT_SONNET_MODEL and "
    "ANTHROPIC_DEFAULT_HAIKU_MODEL to this gateway's aliases (e.g. ANTHROPIC_DEFAULT_SONNET_MODEL=sonnet)"
)

# The families an unlisted id may belong to, and the Vertex publisher each implies.
PASSTHROUGH_PUBLISHERS = {"claude-": "anthropic", "gemini-": "google"}
_FAMILY_ID = re.compile(r"(claude|gemini)-[A-Za-z0-9]")  # a family's prefix and more than the prefix
# Longest id, as sent, that may pass through (Vertex's own ids are a few dozen characters).
PASSTHROUGH_MAX_ID = 128
MODEL_GARDEN_URL = "https://console.cloud.google.com/vertex-ai/model-garden"
CLAUDE_TIERS = ("opus", "sonnet", "haiku")


@dataclass(frozen=True, slots=True)
class Model:
    alias: str  # a configured alias, or for a passed-through model the id as the caller sent it
    vertex_id: str  # "google/gemini-2.5-flash", "anthropic/claude-sonnet-4-6"
    passthrough: bool = False  # not in the alias table: sent to Vertex as asked (MODEL_PASSTHROUGH)

    @property
    def publisher(self) -> str:
        return self.vertex_id.split("/", 1)[0]

    @property
    def name(self) -> str:
        return self.vertex_id.split("/", 1)[1]

    @property
    def kind(self) -> str:
        """Vertex's embedding models (gemini-embedding-*, text-embedding-*, text-multilingual-embedding-*), which
        turn text into vectors, are "embedding"; the rest are "generative"."""
        return "embedding" if self.publisher == "google" and "embedding" in self.name else "generative"


def _glob(patterns: Iterable[str]) -> re.Pattern[str] | None:
    """One regex for a set of fnmatch patterns (case-sensitive, as fnmatch.fnmatchcase), or None for none."""
    parts = [f"(?:{translate(p)})" for p in patterns]
    return re.compile("|".join(parts)) if parts else None


class ModelTable:
    def __init__(self, aliases: Mapping[str, str], passthrough: Sequence[str] = ()) -> None:
        self.models = tuple(Model(alias, vertex_id) for alias, vertex_id in aliases.items())
        self.passthrough_patterns = tuple(passthrough)
        self._passthrough = _glob(self.passthrough_patterns)
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
        """A configured model by alias, Vertex id or Anthropic API id; never a passed-through one."""
        model = self._by_name.get(name)
        if model is None:
            dated = _ANTHROPIC_DATED.fullmatch(name)
            if dated:
                model = self._by_name.get(f"{dated[1]}@{dated[2]}")
        return model

    def passthrough(self, name: str) -> Model | None:
        """An unlisted claude-/gemini- id the operator lets through (MODEL_PASSTHROUGH), as a Model; else None.

        `claude-x-YYYYMMDD` goes to Vertex as `anthropic/claude-x@YYYYMMDD`, `claude-x` and `gemini-x` as
        `anthropic/claude-x` and `google/gemini-x`; an id already qualified (`anthropic/claude-…`,
        `google/gemini-…`) goes as given. Patterns match the id without that qualifier."""
        if self._passthrough is None or len(name) > PASSTHROUGH_MAX_ID:
            return None
        qualifier, slash, bare = name.rpartition("/")
        publisher = _publisher_of(bare)
        if publisher is None or (slash and qualifier != publisher):
            return None
        if not _FAMILY_ID.match(bare) or not self._passthrough.match(bare):
            return None
        vertex_name = bare
        if not slash and publisher == "anthropic" and (dated := _ANTHROPIC_DATED.fullmatch(bare)):
            vertex_name = f"{dated[1]}@{dated[2]}"
        vertex_id = f"{publisher}/{vertex_name}"
        # The id lands in Vertex's URL path or body: only the characters a configured Vertex id may hold.
        if not VERTEX_ID_RE.fullmatch(vertex_id):
            return None
        # A configured model stays itself however it is reached (its alias, and so the keys naming it, apply).
        return self._by_name.get(vertex_id) or Model(name, vertex_id, passthrough=True)

    def resolve(self, name: object, param: str = "model") -> Model:
        if not isinstance(name, str) or not name:
            raise GatewayError(
                400,
                f"'{param}' is required and must be a string naming a model; valid models: {', '.join(self.aliases)}",
                param=param,
                code="invalid_model",
            )
        model = self.get(name) or self.passthrough(name)
        if model is None:
            raise GatewayError(
                400,
                f"Unknown model {name[:200]!r}. Valid models: {', '.join(self.aliases)} (see GET /v1/models)"
                f"{self._passthrough_hint(name)}{CLAUDE_CODE_HINT if name.startswith('claude-') else ''}",
                param=param,
                code="model_not_found",
            )
        return model

    def _passthrough_hint(self, name: str) -> str:
        """Why an unlisted claude-/gemini- id did not pass, for the caller (and the operator they ask)."""
        qualifier, slash, bare = name.rpartition("/")
        publisher = _publisher_of(bare)
        if publisher is None:
            return ""
        if not self.passthrough_patterns:
            return (
                ". Unlisted claude-/gemini- ids do not pass through to Vertex here "
                "(the operator's MODEL_PASSTHROUGH is empty)"
            )
        if slash and qualifier != publisher:
            bare = bare[:200]
            return (
                f". An unlisted {bare.split('-', 1)[0]} id passes through to Vertex as {bare!r} or {publisher}/{bare}"
            )
        if len(name) > PASSTHROUGH_MAX_ID or not VERTEX_ID_RE.fullmatch(f"{publisher}/{bare}"):
            return (
                f". An unlisted id passes through to Vertex only if it is at most {PASSTHROUGH_MAX_ID} letters, "
                "digits, '.', '_', '@' or '-'"
            )
        return (
            ". Unlisted ids pass through to Vertex only if they match the operator's MODEL_PASSTHROUGH "
            f"({','.join(self.passthrough_patterns)})"
        )


def _publisher_of(bare: str) -> str | None:
    return next((p for family, p in PASSTHROUGH_PUBLISHERS.items() if bare.startswith(family)), None)


def passthrough_not_found(model: Model, aliases: Sequence[str]) -> str:
    """The message for Vertex's 404 on a passed-through model: not enabled (or not in this region), and the fixes."""
    valid = ", ".join(aliases)
    message = (
        f"Model {model.alias!r} (Vertex AI model {model.vertex_id}) is not enabled in this gateway's Google Cloud "
        "project, or does not exist in its region. To use it, the project's operator enables it in Model Garden "
        f"in the Google Cloud console ({MODEL_GARDEN_URL}). "
    )
    if model.publisher != "anthropic":
        return message + f"Or use one of this gateway's models instead: {valid} (GET /v1/models lists them)"
    tier = next((t for t in CLAUDE_TIERS if t in model.name.lower()), None)
    if tier is None:
        return message + (
            f"Or use one of this gateway's models instead ({valid}): Claude Code users set "
            "ANTHROPIC_DEFAULT_OPUS_MODEL, ANTHROPIC_DEFAULT_SONNET_MODEL and ANTHROPIC_DEFAULT_HAIKU_MODEL to "
            "aliases from GET /v1/models"
        )
    example = tier if tier in aliases else "<alias>"
    return message + (
        f"Or map this {tier} model to one of this gateway's models ({valid}): Claude Code users set "
        f"ANTHROPIC_DEFAULT_{tier.upper()}_MODEL={example} (aliases: GET /v1/models)"
    )
