"""Vertex AI's embedding models (`:predict` and `:embedContent` on publishers/google/models), as plain data.

`FakeVertex` routes `EMBED_PATH` here; `answer` decides what Vertex would say, as (status, JSON body):

- `:embedContent` (google/cloud/aiplatform/v1/prediction_service.proto `EmbedContentRequest`): the body is parsed
  as that proto first (tests/fakes/vertex_gemini.py's parser, with the messages registered below), then one
  content is embedded: `{"embedding": {"values"}, "usageMetadata": {"promptTokenCount", "totalTokenCount"},
  "truncated"}`. Served for the gemini-embedding family.
- `:predict` (`instances: [{content, task_type?, title?}]`, `parameters: {outputDimensionality?,
  autoTruncate?}`): `{"predictions": [{"embeddings": {"values", "statistics": {"token_count", "truncated"}}}],
  "metadata": {"billableCharacterCount"}}`. gemini-embedding-001 takes one instance per request, the
  text-embedding models 250 and 20,000 tokens; the gemini-embedding-2 family is refused (Vertex dropped
  `:predict` for it).

Vectors are derived from the model, the task type and the text (`vector`), so tests can compute what the
gateway must return and check order and values: unit length at the model's full size (3072 for gemini-embedding,
768 for the text-embedding models), cut to `outputDimensionality` without rescaling (as Vertex does), each value
a float32 written with 9 significant digits. A token here is a whitespace-separated word; a text is truncated to
2,048 of them unless `autoTruncate` is false, which makes a longer text a 400.

The messages are Vertex's own where public reports quote them (the batch size one: RooCodeInc/Roo-Code#5123;
"Precondition check failed.": vercel/ai#15853, maximhq/bifrost#5003); the others say "assumed wording".
"""

from __future__ import annotations

import functools
import hashlib
import math
import random
import re
import struct
from typing import Any

from tests.fakes.vertex_gemini import BOOL as _BOOL
from tests.fakes.vertex_gemini import ENUMS, MESSAGES, _e, _m, key, model_not_found, parse_problems
from tests.fakes.vertex_gemini import INT as _INT
from tests.fakes.vertex_gemini import STR as _STR

EMBED_PATH = re.compile(
    r"^/(?:v1|v1beta1)/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)"
    r"/publishers/google/models/(?P<model>[^/:]+):(?P<verb>predict|embedContent)$"
)
REFERENCE = "https://cloud.google.com/vertex-ai/generative-ai/docs/model-reference/text-embeddings"

# Model -> (full dimensions, instances per :predict request, or None where :predict is refused).
MODELS: dict[str, tuple[int, int | None]] = {
    "gemini-embedding-001": (3072, 1),
    "gemini-embedding-2": (3072, None),
    "gemini-embedding-2-preview": (3072, None),
    "text-embedding-005": (768, 250),
    "text-embedding-004": (768, 250),
    "text-multilingual-embedding-002": (768, 250),
}
# Served on :embedContent (the text-embedding models are :predict only).
EMBED_CONTENT_MODELS = frozenset(m for m in MODELS if m.startswith("gemini-embedding"))
PREDICT_TOKENS = 20_000  # per :predict request, the text-embedding models
TEXT_TOKENS = 2_048  # per text; longer ones are cut unless autoTruncate is false

# EmbedContentRequest and its config, as google/cloud/aiplatform/v1/prediction_service.proto has them.
MESSAGES.setdefault(
    "EmbedContentRequest",
    {
        "model": _STR,
        "content": _m("Content"),
        "title": _STR,
        "task_type": _e("EmbeddingTaskType"),
        "output_dimensionality": _INT,
        "auto_truncate": _BOOL,
        "embed_content_config": _m("EmbedContentConfig"),
    },
)
MESSAGES.setdefault(
    "EmbedContentConfig",
    {
        "title": _STR,
        "task_type": _e("EmbeddingTaskType"),
        "auto_truncate": _BOOL,
        "output_dimensionality": _INT,
        "document_ocr": _BOOL,
        "audio_track_extraction": _BOOL,
    },
)
ENUMS.setdefault(
    "EmbeddingTaskType",
    (
        "EmbedContentRequest.EmbeddingTaskType",
        (
            "UNSPECIFIED",
            "",  # 1 is not used
            "RETRIEVAL_QUERY",
            "RETRIEVAL_DOCUMENT",
            "SEMANTIC_SIMILARITY",
            "CLASSIFICATION",
            "CLUSTERING",
            "QUESTION_ANSWERING",
            "FACT_VERIFICATION",
            "CODE_RETRIEVAL_QUERY",
        ),
    ),
)
TASK_TYPES = frozenset(ENUMS["EmbeddingTaskType"][1]) - {""}


def error(status: int, message: str, reason: str | None = None) -> tuple[int, dict[str, Any]]:
    names = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND"}
    return status, {"error": {"code": status, "message": message, "status": reason or names.get(status, "UNKNOWN")}}


PRECONDITION = "Precondition check failed."


def tokens(text: str) -> int:
    """The fake's token count: whitespace-separated words, at least one."""
    return max(1, len(text.split()))


@functools.lru_cache(maxsize=4096)
def _full_vector(model: str, task_type: str, text: str) -> tuple[float, ...]:
    dims = MODELS[model][0]
    rng = random.Random(hashlib.sha256(f"{model}\0{task_type}\0{text}".encode()).digest())
    raw = [rng.gauss(0.0, 1.0) for _ in range(dims)]
    norm = math.hypot(*raw)
    # float32 values (Vertex's are), each written with the 9 significant digits that always round-trip one.
    singles = struct.unpack(f"<{dims}f", struct.pack(f"<{dims}f", *(x / norm for x in raw)))
    return tuple(float(f"{x:.9g}") for x in singles)


def vector(model: str, text: str, dimensions: int | None = None, task_type: str | None = None) -> list[float]:
    """The embedding this fake gives `text`: unit length at the model's full size, cut to `dimensions`."""
    full = _full_vector(model, task_type or "", text)
    return list(full[:dimensions] if dimensions else full)


def answer(match: re.Match[str], body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """Vertex's answer to an embedding request on `EMBED_PATH`: the status and the JSON body."""
    model, verb = match["model"], match["verb"]
    if verb == "embedContent":
        version = "v1beta1" if match.string.startswith("/v1beta1/") else "v1"
        parsed = parse_problems(body, "EmbedContentRequest", version)
        if parsed:
            return 400, {"error": {"code": 400, "message": parsed.message, "status": "INVALID_ARGUMENT"}}
    if model not in MODELS:
        return error(404, model_not_found(match["project"], match["location"], "google", model))
    if verb == "embedContent":
        return _embed_content(model, body)
    return _predict(model, body)


def _dimensions_problem(model: str, dimensions: Any) -> str | None:
    full = MODELS[model][0]
    if dimensions is None or (type(dimensions) is int and 1 <= dimensions <= full):
        return None
    # Assumed wording.
    return (
        f"Unable to submit request because outputDimensionality must be between 1 and {full} but the entered value"
        f" was {dimensions}. Update the outputDimensionality value and try again."
    )


def _too_long(count: int) -> str:
    # Assumed wording.
    return (
        f"Unable to submit request because the input token count is {count} but the model supports up to"
        f" {TEXT_TOKENS}. Reduce the input token count and try again. You can also set autoTruncate to true."
    )


def _embed_content(model: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    if model not in EMBED_CONTENT_MODELS:
        return error(400, PRECONDITION, "FAILED_PRECONDITION")  # assumed: as :predict refuses Gemini Embedding 2
    config = key(body, "embed_content_config") or {}
    content = body.get("content")
    parts = content.get("parts") if isinstance(content, dict) else None
    if not parts:
        # Assumed wording.
        return error(
            400, f"Unable to submit request because content must have at least one part. Learn more: {REFERENCE}"
        )
    if not all(isinstance(part, dict) and isinstance(part.get("text"), str) for part in parts):
        # Assumed wording: gemini-embedding-001 embeds text only.
        return error(400, f"Unable to submit request because {model} supports text parts only.")
    text = " ".join(part["text"] for part in parts)
    if not text.strip():
        return error(400, "Unable to submit request because the content is empty.")  # assumed wording
    dimensions = key(config, "output_dimensionality") or key(body, "output_dimensionality")
    problem = _dimensions_problem(model, int(dimensions) if isinstance(dimensions, str) else dimensions)
    if problem:
        return error(400, problem)
    auto_truncate = key(config, "auto_truncate")
    counted = tokens(text)
    if counted > TEXT_TOKENS and auto_truncate is False:
        return error(400, _too_long(counted))
    task_type = key(config, "task_type") or key(body, "task_type")
    values = vector(model, text, int(dimensions) if dimensions else None, _task_name(task_type))
    return 200, {
        "embedding": {"values": values},
        "usageMetadata": {"promptTokenCount": min(counted, TEXT_TOKENS), "totalTokenCount": min(counted, TEXT_TOKENS)},
        "truncated": counted > TEXT_TOKENS,
    }


def _task_name(task_type: Any) -> str | None:
    if isinstance(task_type, int):
        return ENUMS["EmbeddingTaskType"][1][task_type]
    return task_type.upper() if isinstance(task_type, str) else None


def _predict(model: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    per_request = MODELS[model][1]
    if per_request is None:
        return error(400, PRECONDITION, "FAILED_PRECONDITION")
    unknown = set(body) - {"instances", "parameters", "endpoint"}
    if unknown:
        name = sorted(unknown)[0]
        return error(400, f'Invalid JSON payload received. Unknown name "{name}": Cannot find field.')
    instances = body.get("instances")
    if not isinstance(instances, list) or not instances:
        return error(400, f"Unable to submit request because instances are missing. Learn more: {REFERENCE}")  # assumed
    if len(instances) > per_request:
        bound = "be 1" if per_request == 1 else f"be at most {per_request}"  # the second: assumed wording
        return error(
            400,
            "Unable to submit request because it included too many instances. Reduce the number of instances and"
            f" try again. Learn more: {REFERENCE}: Unable to submit request because batchSize must {bound} but the"
            f" entered value was {len(instances)}. Update the batchSize value and try again.",
        )
    parameters = body.get("parameters") or {}
    if not isinstance(parameters, dict):
        return error(400, "Unable to submit request because parameters must be an object.")  # assumed wording
    dimensions = parameters.get("outputDimensionality")
    problem = _dimensions_problem(model, dimensions)
    if problem:
        return error(400, problem)
    auto_truncate = parameters.get("autoTruncate", True)
    predictions, total, characters = [], 0, 0
    for index, instance in enumerate(instances):
        text = instance.get("content") if isinstance(instance, dict) else None
        if not isinstance(text, str) or not text:
            # Assumed wording.
            return error(
                400, f"Unable to submit request because instances[{index}].content must be a non-empty string."
            )
        task_type = instance.get("task_type")
        if task_type is not None and task_type not in TASK_TYPES:
            return error(400, f"Unable to submit request because task_type {task_type!r} is not supported.")  # assumed
        counted = tokens(text)
        if counted > TEXT_TOKENS and auto_truncate is False:
            return error(400, _too_long(counted))
        total += min(counted, TEXT_TOKENS)
        characters += len(text)
        predictions.append(
            {
                "embeddings": {
                    "statistics": {"truncated": counted > TEXT_TOKENS, "token_count": min(counted, TEXT_TOKENS)},
                    "values": vector(model, text, dimensions, task_type),
                }
            }
        )
    if per_request > 1 and total > PREDICT_TOKENS:
        # Assumed wording.
        return error(
            400,
            f"Unable to submit request because the input token count is {total} but the model supports up to"
            f" {PREDICT_TOKENS} tokens per request. Reduce the input and try again.",
        )
    return 200, {"predictions": predictions, "metadata": {"billableCharacterCount": characters}}
