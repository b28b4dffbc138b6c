"""Gemini's native API on Vertex AI (generateContent, streamGenerateContent, countTokens, computeTokens), as
plain data.

`FakeVertex` routes and delivers (paced, gated, cut short); this module decides what Vertex would say:

1. `parse_problems`: Vertex first turns the JSON body into its protobuf request (google/cloud/aiplatform/
   {v1,v1beta1}/*.proto in googleapis/googleapis). Unknown names, lists where one value goes, values of
   the wrong type and two members of a oneof are refused with protobuf's own words, all of them at once
   ("Invalid JSON payload received. Unknown name ... Cannot find field.").
2. `request_problem`: then Gemini's own checks (contents, roles, parts, function declarations and their
   schemas), in Vertex's words ("Unable to submit request because ...").
3. `check_signatures`: Gemini 3's thought-signature rule (tests/fakes/vertex_chat.py has the words).
4. `plan_gemini`: the answer, whole and as stream chunks, each a full GenerateContentResponse.

The messages are Vertex's own, as quoted in public reports (SPEC.md's platform-facts table cites them);
the few this fake had to word itself say "assumed wording" where they are made.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tests.fakes.vertex_chat import (
    GEMINI_REFERENCE,
    SignatureCheck,
    arguments_for,
    count_words,
    is_dummy,
    is_gemini_3,
    judge_signature,
    new_signature,
    signature_bytes,
)

FUNCTION_CALLING_DOCS = "https://cloud.google.com/vertex-ai/generative-ai/docs/multimodal/function-calling"
MODEL_VERSIONS_DOCS = "https://cloud.google.com/vertex-ai/generative-ai/docs/learn/model-versions"

# The Gemini models a fake project may use (FakeVertex.gemini_models): app/config.py's DEFAULT_ALIASES and
# the current family. Anything else is answered 404, as Vertex answers a model the project cannot see.
DEFAULT_GEMINI_MODELS = frozenset(
    {
        "gemini-2.5-flash",
        "gemini-2.5-flash-lite",
        "gemini-2.5-pro",
        "gemini-3-pro-preview",
        "gemini-3-flash-preview",
        "gemini-3.1-pro-preview",
    }
)


def model_not_found(project: str, location: str, publisher: str, model: str) -> str:
    return (
        f"Publisher Model `projects/{project}/locations/{location}/publishers/{publisher}/models/{model}` was not"
        " found or your project does not have access to it. Please ensure you are using a valid model version."
        f" For more information, see: {MODEL_VERSIONS_DOCS}"
    )


# -- 1. the JSON-to-protobuf parse ----------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    kind: str  # string bool int float double bytes enum message struct value
    ref: str = ""  # the message or enum
    repeated: bool = False
    map: bool = False
    only: str | None = None  # the one API version that has the field


def _f(kind: str, ref: str = "", *, repeated: bool = False, map: bool = False, only: str | None = None) -> Field:
    return Field(kind, ref, repeated, map, only)


STR, BOOL, INT, FLOAT, DOUBLE, BYTES, ANY = (
    _f(k) for k in ("string", "bool", "int", "float", "double", "bytes", "value")
)
LS = _f("string", repeated=True)
LV = _f("value", repeated=True)


def _m(ref: str, *, repeated: bool = False, map: bool = False) -> Field:
    return Field("message", ref, repeated, map)


def _e(ref: str, *, repeated: bool = False) -> Field:
    return Field("enum", ref, repeated)


# Fields as google/cloud/aiplatform/v1/*.proto has them (v1beta1 differs where `only` says). Messages this
# fake never looks into are `value`: any JSON passes.
MESSAGES: dict[str, dict[str, Field]] = {
    "GenerateContentRequest": {
        "model": STR,
        "contents": _m("Content", repeated=True),
        "system_instruction": _m("Content"),
        "cached_content": STR,
        "tools": _m("Tool", repeated=True),
        "tool_config": _m("ToolConfig"),
        "labels": _f("string", map=True),
        "safety_settings": _m("SafetySetting", repeated=True),
        "model_armor_config": ANY,
        "generation_config": _m("GenerationConfig"),
    },
    "CountTokensRequest": {
        "endpoint": STR,
        "model": STR,
        "instances": LV,
        "contents": _m("Content", repeated=True),
        "system_instruction": _m("Content"),
        "tools": _m("Tool", repeated=True),
        "generation_config": _m("GenerationConfig"),
    },
    # google/cloud/aiplatform/v1/llm_utility_service.proto
    "ComputeTokensRequest": {"endpoint": STR, "instances": LV, "model": STR, "contents": _m("Content", repeated=True)},
    "Content": {"role": STR, "parts": _m("Part", repeated=True)},
    "Part": {
        "text": STR,
        "inline_data": _m("Blob"),
        "file_data": _m("FileData"),
        "function_call": _m("FunctionCall"),
        "function_response": _m("FunctionResponse"),
        "executable_code": ANY,
        "code_execution_result": ANY,
        "thought": BOOL,
        "thought_signature": BYTES,
        "video_metadata": ANY,
        "media_resolution": _f("value", only="v1"),
    },
    "Blob": {"mime_type": STR, "data": BYTES},
    "FileData": {"mime_type": STR, "file_uri": STR},
    # v1 has no `id` on function calls and responses; v1beta1 has.
    "FunctionCall": {
        "id": _f("string", only="v1beta1"),
        "name": STR,
        "args": _f("struct"),
        "partial_args": LV,
        "will_continue": BOOL,
    },
    "FunctionResponse": {"id": _f("string", only="v1beta1"), "name": STR, "response": _f("struct"), "parts": LV},
    "Tool": {
        "function_declarations": _m("FunctionDeclaration", repeated=True),
        **dict.fromkeys(
            (
                "retrieval",
                "google_search",
                "google_search_retrieval",
                "google_maps",
                "enterprise_web_search",
                "parallel_ai_search",
                "exa_ai_search",
                "code_execution",
                "url_context",
                "computer_use",
            ),
            ANY,
        ),
    },
    "FunctionDeclaration": {
        "name": STR,
        "description": STR,
        "parameters": _m("Schema"),
        "parameters_json_schema": ANY,
        "response": _m("Schema"),
        "response_json_schema": ANY,
    },
    # Vertex's OpenAPI subset: no $schema, $ref, $defs, const, exclusiveMinimum, oneOf, allOf, examples...
    # (`ref` and `defs` are spelled without the dollar; additionalProperties is in v1 and v1beta1 now).
    "Schema": {
        "type": _e("Type"),
        "format": STR,
        "title": STR,
        "description": STR,
        "nullable": BOOL,
        "default": ANY,
        "items": _m("Schema"),
        "min_items": INT,
        "max_items": INT,
        "enum": LS,
        "properties": _m("Schema", map=True),
        "property_ordering": LS,
        "required": LS,
        "min_properties": INT,
        "max_properties": INT,
        "minimum": DOUBLE,
        "maximum": DOUBLE,
        "min_length": INT,
        "max_length": INT,
        "pattern": STR,
        "example": ANY,
        "any_of": _m("Schema", repeated=True),
        "additional_properties": ANY,
        "ref": STR,
        "defs": _m("Schema", map=True),
    },
    "ToolConfig": {"function_calling_config": _m("FunctionCallingConfig"), "retrieval_config": ANY},
    "FunctionCallingConfig": {
        "mode": _e("Mode"),
        "allowed_function_names": LS,
        "stream_function_call_arguments": BOOL,
    },
    "GenerationConfig": {
        "temperature": FLOAT,
        "top_p": FLOAT,
        "top_k": FLOAT,
        "candidate_count": INT,
        "max_output_tokens": INT,
        "stop_sequences": LS,
        "response_logprobs": BOOL,
        "logprobs": INT,
        "presence_penalty": FLOAT,
        "frequency_penalty": FLOAT,
        "seed": INT,
        "response_mime_type": STR,
        "response_schema": _m("Schema"),
        "response_json_schema": ANY,
        "routing_config": ANY,
        "audio_timestamp": BOOL,
        "response_modalities": _e("Modality", repeated=True),
        "media_resolution": _e("MediaResolution"),
        "speech_config": ANY,
        "thinking_config": _m("ThinkingConfig"),
        "model_config": _f("value", only="v1beta1"),
        "image_config": ANY,
    },
    "ThinkingConfig": {"include_thoughts": BOOL, "thinking_budget": INT, "thinking_level": _e("ThinkingLevel")},
    "SafetySetting": {
        "category": _e("HarmCategory"),
        "threshold": _e("HarmBlockThreshold"),
        "method": _e("HarmBlockMethod"),
    },
}
ONEOFS = {
    "Part": (
        "data",
        frozenset(
            (
                "text",
                "inline_data",
                "file_data",
                "function_call",
                "function_response",
                "executable_code",
                "code_execution_result",
            )
        ),
    )
}
# (the enum's name in error messages, its values in number order). Vertex reads enum names in any case.
ENUMS: dict[str, tuple[str, tuple[str, ...]]] = {
    "Type": ("Type", ("TYPE_UNSPECIFIED", "STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT")),
    "Mode": ("FunctionCallingConfig.Mode", ("MODE_UNSPECIFIED", "AUTO", "ANY", "NONE", "", "VALIDATED")),
    "ThinkingLevel": (
        "GenerationConfig.ThinkingConfig.ThinkingLevel",
        ("THINKING_LEVEL_UNSPECIFIED", "LOW", "MEDIUM", "HIGH", "MINIMAL"),
    ),
    "Modality": ("GenerationConfig.Modality", ("MODALITY_UNSPECIFIED", "TEXT", "IMAGE", "AUDIO")),
    "MediaResolution": (
        "GenerationConfig.MediaResolution",
        ("MEDIA_RESOLUTION_UNSPECIFIED", "MEDIA_RESOLUTION_LOW", "MEDIA_RESOLUTION_MEDIUM", "MEDIA_RESOLUTION_HIGH"),
    ),
    "HarmCategory": (
        "HarmCategory",
        (
            "HARM_CATEGORY_UNSPECIFIED",
            "HARM_CATEGORY_HATE_SPEECH",
            "HARM_CATEGORY_DANGEROUS_CONTENT",
            "HARM_CATEGORY_HARASSMENT",
            "HARM_CATEGORY_SEXUALLY_EXPLICIT",
            "HARM_CATEGORY_CIVIC_INTEGRITY",
            "HARM_CATEGORY_JAILBREAK",
        ),
    ),
    "HarmBlockThreshold": (
        "SafetySetting.HarmBlockThreshold",
        (
            "HARM_BLOCK_THRESHOLD_UNSPECIFIED",
            "BLOCK_LOW_AND_ABOVE",
            "BLOCK_MEDIUM_AND_ABOVE",
            "BLOCK_ONLY_HIGH",
            "BLOCK_NONE",
            "OFF",
        ),
    ),
    "HarmBlockMethod": ("SafetySetting.HarmBlockMethod", ("HARM_BLOCK_METHOD_UNSPECIFIED", "SEVERITY", "PROBABILITY")),
}
SCALAR_TYPES = {
    "string": "TYPE_STRING",
    "bool": "TYPE_BOOL",
    "int": "TYPE_INT64",
    "float": "TYPE_FLOAT",
    "double": "TYPE_DOUBLE",
    "bytes": "TYPE_BYTES",
}
_INTEGER = re.compile(r"-?[0-9]+")


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word.title() for word in rest)


def key(data: dict[str, Any], name: str) -> Any:
    """A field of a parsed request, under its JSON name (camelCase) or its proto name (snake_case)."""
    value = data.get(camel(name))
    return data.get(name) if value is None else value


def valid_bytes(value: str) -> bool:
    """Whether protobuf's JSON parser decodes this bytes value (standard or URL-safe base64, padded or not)."""
    return signature_bytes(value) is not None


@dataclass
class Problem:
    """A 400 as Vertex writes it: the message, and google.rpc.BadRequest field violations when it has them."""

    message: str
    violations: list[dict[str, str]] = field(default_factory=list)

    @classmethod
    def of(cls, found: list[tuple[str | None, str]]) -> Problem:
        violations = [{"field": path, "description": text} if path else {"description": text} for path, text in found]
        return cls("\n".join(text for _, text in found), violations)

    def details(self) -> list[dict[str, Any]]:
        if not self.violations:
            return []
        return [{"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": self.violations}]


class _Parser:
    def __init__(self, version: str) -> None:
        self.version = version
        self.found: list[tuple[str | None, str]] = []

    def unknown(self, name: str, at: str, why: str) -> None:
        where = f" at '{at}'" if at else ""
        self.found.append((at or None, f'Invalid JSON payload received. Unknown name "{name}"{where}: {why}'))

    def invalid(self, at: str, what: str, value: Any) -> None:
        shown = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        self.found.append((at, f"Invalid value at '{at}' ({what}), {shown}"))

    def message(self, data: dict[str, Any], name: str, at: str) -> None:
        fields = {
            spelled: proto
            for proto, spec in MESSAGES[name].items()
            if spec.only in (None, self.version)
            for spelled in (proto, camel(proto))
        }
        oneof = ONEOFS.get(name)
        chosen: str | None = None
        for spelled, value in data.items():
            proto = fields.get(spelled)
            if proto is None:
                self.unknown(spelled, at, "Cannot find field.")
                continue
            if value is None:  # null is an unset field
                continue
            if oneof and proto in oneof[1]:
                if chosen is not None:
                    self.found.append(
                        (
                            at,
                            f"Invalid value at '{at}' (oneof), oneof field '{oneof[0]}' is already set."
                            f" Cannot set '{spelled}'",
                        )
                    )
                    continue
                chosen = spelled
            spec = MESSAGES[name][proto]
            path = f"{at}.{proto}" if at else proto
            if spec.repeated:
                if isinstance(value, list):
                    for i, item in enumerate(value):
                        self.value(item, spec, f"{path}[{i}]")
                else:  # assumed wording: protobuf wants a list here
                    self.invalid(path, "list", value)
            elif isinstance(value, list) and spec.kind != "value":
                self.unknown(spelled, at, "Proto field is not repeating, cannot start list.")
            elif spec.map:
                if isinstance(value, dict):
                    for i, item in enumerate(value.values()):
                        self.value(item, spec, f"{path}[{i}].value")
                else:
                    self.invalid(path, "map", value)
            else:
                self.value(value, spec, path)

    def value(self, value: Any, spec: Field, at: str) -> None:
        kind = spec.kind
        if kind == "value":
            return
        if kind == "message":
            if isinstance(value, dict):
                self.message(value, spec.ref, at)
            else:
                self.invalid(at, f"type.googleapis.com/google.cloud.aiplatform.{self.version}.{spec.ref}", value)
        elif kind == "struct":
            if not isinstance(value, dict):
                self.invalid(at, "type.googleapis.com/google.protobuf.Struct", value)
        elif kind == "enum":
            name, values = ENUMS[spec.ref]
            named = isinstance(value, str) and value != "" and value.upper() in values
            numbered = isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(values)
            if not (named or numbered):
                self.invalid(at, f"type.googleapis.com/google.cloud.aiplatform.{self.version}.{name}", value)
        elif kind == "bytes" and isinstance(value, str):
            if not valid_bytes(value):
                self.found.append((at, f"Invalid value at '{at}' (TYPE_BYTES), Base64 decoding failed for \"{value}\""))
        elif not _scalar_fits(kind, value):
            self.invalid(at, SCALAR_TYPES[kind], value)


def _scalar_fits(kind: str, value: Any) -> bool:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "string":
        return isinstance(value, str)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return (number and float(value).is_integer()) or (isinstance(value, str) and bool(_INTEGER.fullmatch(value)))
    if kind in ("float", "double"):
        if isinstance(value, str):
            try:
                float(value)
            except ValueError:
                return False
            return True
        return number
    return False


def parse_problems(body: dict[str, Any], request: str, version: str) -> Problem | None:
    """What protobuf's JSON parser refuses in this body (`request`: GenerateContentRequest, CountTokensRequest or
    ComputeTokensRequest)."""
    parser = _Parser(version)
    parser.message(body, request, "")
    return Problem.of(parser.found) if parser.found else None


# -- 2. Gemini's own checks -------------------------------------------------------------------------------

DATA_FIELDS = ONEOFS["Part"][1]
# Vertex's words: crewAIInc/crewAI#3277 (no contents), blog.wentuo.ai?p=876 (role), pydantic/pydantic-ai#2203
# and genkit-ai/genkit#3690 (no parts), yym68686/uni-api#120 (a part with no data).
NO_CONTENTS = (
    f"Unable to submit request because at least one contents field is required. Learn more: {GEMINI_REFERENCE}"
)
BAD_ROLE = "Please use a valid role: user, model."
NO_PARTS = (
    "Unable to submit request because it must include at least one parts field, which describes the prompt"
    f" input. Learn more: {GEMINI_REFERENCE}"
)
NO_DATA = (
    "Unable to submit request because it must have a text parameter. Add a text parameter and try again."
    f" Learn more: {GEMINI_REFERENCE}"
)
# envoyproxy/ai-gateway#2686 reproduced these two against Gemini 3 on Vertex; which models share them is
# not known, so the fake holds Gemini 3 to them and lets the others pass.
EMPTY_INPUT = "Unable to submit request because Model input cannot be empty."
ENDS_WITH_MODEL = "Requests ending with a model turn are not supported."
FUNCTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]{0,63}")
# cloudflare/agents#406 (Vertex's "proto is invalid" form), kaitranntt/ccs#25 (colons now allowed).
BAD_FUNCTION_NAME = (
    "[FIELD_INVALID] Invalid function name. Must start with a letter or an underscore. Must be a-z, A-Z, 0-9, or"
    " contain underscores (_), dots (.), colons (:), or dashes (-), with a maximum length of 64."
)


def _parts(content: Any) -> list[Any]:
    parts = key(content, "parts") if isinstance(content, dict) else None
    return parts if isinstance(parts, list) else []


def _content_problem(content: dict[str, Any], system: bool) -> str | None:
    if not system and key(content, "role") not in ("user", "model"):
        return BAD_ROLE
    parts = _parts(content)
    if not parts:
        return NO_PARTS
    for part in parts:
        if not any(key(part, name) is not None for name in DATA_FIELDS):
            return NO_DATA
    return None


def _empty_input(content: dict[str, Any]) -> bool:
    """A content of nothing but empty texts (a signed empty text, as Gemini 3 ends answers with, is not)."""
    return all(key(p, "text") == "" and not key(p, "thought_signature") for p in _parts(content))


def declarations(body: dict[str, Any]) -> list[dict[str, Any]]:
    tools = key(body, "tools")
    found = []
    for tool in tools if isinstance(tools, list) else []:
        for declaration in (key(tool, "function_declarations") or []) if isinstance(tool, dict) else []:
            if isinstance(declaration, dict):
                found.append(declaration)
    return found


def _schema_problems(function: str, schema: dict[str, Any], at: str) -> str | None:
    """Vertex's checks of a declaration's parameters beyond the parse.

    Seen in its answers: lambda-alpha-labs/Graphenium#37 (any_of with company), google-gemini/gemini-cli#2282
    (no type), spring-projects/spring-ai#1373 and diegosouzapw/OmniRoute#3357 (parameters not OBJECT). A
    STRING's `format` passes: the Gemini API takes only "enum" and "date-time" (google-gemini/gemini-cli#2237),
    but Vertex's Schema documents "email", "byte", etc. and no Vertex refusal of a format has been reported.
    """
    keys = {camel(k) for k, v in schema.items() if v is not None}
    if "anyOf" in keys and keys != {"anyOf"}:
        return (
            f"Unable to submit request because `{function}` functionDeclaration `{at}` schema specified other fields"
            f" alongside any_of. When using any_of, it must be the only field set. Learn more: {FUNCTION_CALLING_DOCS}"
        )
    if not keys & {"type", "anyOf", "ref"}:
        return (
            f"Unable to submit request because `{function}` functionDeclaration `{at}` schema didn't specify the"
            f" schema type field. Learn more: {FUNCTION_CALLING_DOCS}"
        )
    children: list[tuple[str, Any]] = []
    properties = key(schema, "properties")
    if isinstance(properties, dict):
        children += [(f"{at}.{name}", sub) for name, sub in properties.items()]
    if isinstance(key(schema, "items"), dict):
        children.append((f"{at}.items", key(schema, "items")))
    any_of = key(schema, "any_of")
    if isinstance(any_of, list):
        children += [(f"{at}.any_of[{i}]", sub) for i, sub in enumerate(any_of)]
    for path, sub in children:
        problem = _schema_problems(function, sub, path) if isinstance(sub, dict) else None
        if problem:
            return problem
    return None


def _tools_problem(body: dict[str, Any]) -> str | None:
    bad_names = []
    tools = key(body, "tools")
    for t, tool in enumerate(tools if isinstance(tools, list) else []):
        listed = key(tool, "function_declarations") if isinstance(tool, dict) else None
        for d, declaration in enumerate(listed if isinstance(listed, list) else []):
            name = key(declaration, "name") if isinstance(declaration, dict) else None
            if not isinstance(name, str) or not FUNCTION_NAME.fullmatch(name):
                bad_names.append(f"  * tools[{t}].function_declarations[{d}].name: {BAD_FUNCTION_NAME}")
    if bad_names:
        return "The GenerateContentRequest proto is invalid:\n" + "\n".join(bad_names)
    for declaration in declarations(body):
        name = str(key(declaration, "name"))
        parameters = key(declaration, "parameters")
        if parameters is not None and key(declaration, "parameters_json_schema") is not None:
            # Assumed wording: the proto says only that the two are mutually exclusive.
            return (
                f"Unable to submit request because `{name}` functionDeclaration sets both `parameters` and"
                " `parameters_json_schema`, which are mutually exclusive."
            )
        if not isinstance(parameters, dict):
            continue
        kind = key(parameters, "type")
        if not (isinstance(kind, str) and kind.upper() == "OBJECT") and kind != 6:
            return (
                f"Unable to submit request because `{name}` functionDeclaration `parameters` schema should be of"
                f" type OBJECT. Learn more: {FUNCTION_CALLING_DOCS}"
            )
        problem = _schema_problems(name, parameters, "parameters")
        if problem:
            return problem
    return None


def request_problem(body: dict[str, Any], model: str, generate: bool) -> str | None:
    """Gemini's checks after the parse, in Vertex's words; None if it would answer."""
    contents = key(body, "contents")
    if not contents:
        return NO_CONTENTS
    for content in contents:
        problem = _content_problem(content, system=False)
        if problem:
            return problem
    system = key(body, "system_instruction")
    if system is not None:
        problem = _content_problem(system, system=True)
        if problem:
            return problem
    problem = _tools_problem(body)
    if problem:
        return problem
    if generate and is_gemini_3(model):
        if any(_empty_input(c) for c in contents):
            return EMPTY_INPUT
        if key(contents[-1], "role") == "model":
            return ENDS_WITH_MODEL
    return None


# -- 3. Gemini 3's thought-signature rule ---------------------------------------------------------------


def check_signatures(contents: list[Any], enforce: bool, known: Callable[[str], bool]) -> SignatureCheck:
    """The signatures model contents carry back, and (Gemini 3) Vertex's refusal if the rule is broken.

    The current turn starts after the last user content with standard content (not only function
    responses); in it, the first functionCall part of each model content (a step) needs its
    thoughtSignature. Earlier turns are not checked (tests/fakes/vertex_chat.py SIGNATURE_DOCS).
    """
    check = SignatureCheck()
    start = 0
    for i, content in enumerate(contents):
        if key(content, "role") == "user" and any(key(p, "function_response") is None for p in _parts(content)):
            start = i + 1
    for i, content in enumerate(contents):
        if key(content, "role") != "model":
            continue
        calls = [p for p in _parts(content) if isinstance(key(p, "function_call"), dict)]
        for part in calls:
            signature = key(part, "thought_signature")
            if is_dummy(signature):
                check.dummies.append(signature)
            elif isinstance(signature, str) and signature:
                check.returned.append(signature)
        if enforce and i >= start and calls:
            name = key(key(calls[0], "function_call"), "name")
            judge_signature(key(calls[0], "thought_signature"), str(name or ""), i + 1, known, check)
    return check


# -- 4. the answer ---------------------------------------------------------------------------------------

FINISH_MESSAGES = {"MALFORMED_FUNCTION_CALL": "Malformed function call: the arguments are not valid JSON."}
SAFETY_RATINGS = [
    {
        "category": "HARM_CATEGORY_DANGEROUS_CONTENT",
        "probability": "HIGH",
        "probabilityScore": 0.93,
        "severity": "HARM_SEVERITY_HIGH",
        "severityScore": 0.88,
        "blocked": True,
    },
    {
        "category": "HARM_CATEGORY_HARASSMENT",
        "probability": "NEGLIGIBLE",
        "probabilityScore": 0.02,
        "severity": "HARM_SEVERITY_NEGLIGIBLE",
        "severityScore": 0.01,
    },
]


@dataclass
class GeminiPlan:
    """What the fake will answer to one generateContent: whole, and as the chunks a stream sends."""

    response: dict[str, Any]
    chunks: list[dict[str, Any]]
    signature: str | None = None  # issued on the functionCall part
    text_signature: str | None = None  # Gemini 3 signs the last part of an answer without calls too


def part_text(parts: list[Any], *, thoughts: bool = False) -> str:
    texts = [key(p, "text") for p in parts if isinstance(p, dict) and bool(key(p, "thought")) == thoughts]
    return "".join(t for t in texts if isinstance(t, str))


def last_user_text(contents: list[Any]) -> str:
    for content in reversed(contents):
        if key(content, "role") == "user":
            text = part_text(_parts(content))
            if text:
                return text
    return ""


def response_text(response: Any) -> str:
    """A functionResponse's response as the fake quotes it: the lone string it holds, else its JSON."""
    if isinstance(response, dict) and len(response) == 1:
        (only,) = response.values()
        if isinstance(only, str):
            return only
    return json.dumps(response, ensure_ascii=False)


def function_results(contents: list[Any]) -> list[str]:
    results = []
    for content in contents:
        for part in _parts(content):
            answer = key(part, "function_response") if isinstance(part, dict) else None
            if isinstance(answer, dict):
                results.append(response_text(key(answer, "response")))
    return results


def prompt_tokens(body: dict[str, Any]) -> int:
    """Tokens in what the model reads (contents, system instruction, tools): countTokens says the same."""
    counted = [key(body, "contents"), key(body, "system_instruction"), key(body, "tools")]
    return sum(count_words(x) for x in counted if x)


def _offered(body: dict[str, Any], tools_only_when_named: bool) -> list[dict[str, Any]]:
    """The declarations the fake may call: what the tool config allows, and (make run) only if named."""
    config = key(key(body, "tool_config") or {}, "function_calling_config") or {}
    mode = key(config, "mode")
    if isinstance(mode, str) and mode.upper() == "NONE":
        return []
    offered = declarations(body)
    allowed = key(config, "allowed_function_names")
    if isinstance(allowed, list) and allowed:
        offered = [d for d in offered if key(d, "name") in allowed]
    if tools_only_when_named and offered:
        prompt = last_user_text(key(body, "contents") or []).lower()
        if str(key(offered[0], "name")).lower() not in prompt:
            return []
    return offered


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def plan_gemini(
    model: str, body: dict[str, Any], controls: dict[str, Any], *, tools_only_when_named: bool = False
) -> GeminiPlan:
    contents = key(body, "contents") or []
    gemini_3 = is_gemini_3(model)
    envelope = {"modelVersion": model, "createTime": _now(), "responseId": secrets.token_urlsafe(17)}
    thinking = key(key(body, "generation_config") or {}, "thinking_config") or {}
    thoughts = bool(controls.get("thoughts") or key(thinking, "include_thoughts"))
    prompt = prompt_tokens(body)

    def usage(parts: list[Any]) -> dict[str, Any]:
        said = len(re.findall(r"\S+", part_text(parts)))
        said += sum(count_words(key(p, "function_call")) for p in parts if key(p, "function_call"))
        thought = len(re.findall(r"\S+", part_text(parts, thoughts=True)))
        counts: dict[str, Any] = {"promptTokenCount": prompt, "candidatesTokenCount": said}
        if thought:
            counts["thoughtsTokenCount"] = thought
        counts["totalTokenCount"] = prompt + said + thought
        counts["trafficType"] = "ON_DEMAND"
        counts["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": prompt}]
        counts["candidatesTokensDetails"] = [{"modality": "TEXT", "tokenCount": said}]
        return counts

    def answer(parts: list[Any], finish: str | None, **more: Any) -> dict[str, Any]:
        candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts} if parts else {"role": "model"}}
        if finish:
            candidate["finishReason"] = finish
        candidate.update(more)
        return {"candidates": [candidate], **envelope}

    def final(parts: list[Any], finish: str, counted: list[Any] | None = None, **more: Any) -> dict[str, Any]:
        """The last (or only) response: finishReason, and usage for the whole answer (`counted`)."""
        return {**answer(parts, finish, **more), "usageMetadata": usage(parts if counted is None else counted)}

    if controls.get("block"):  # the prompt itself was blocked: no candidate at all
        blocked = {
            "promptFeedback": {"blockReason": str(controls["block"]), "safetyRatings": SAFETY_RATINGS},
            "usageMetadata": usage([]),
            **envelope,
        }
        return GeminiPlan(blocked, [blocked])

    thought_parts = (
        [{"text": f"Planning an answer to: {last_user_text(contents)}", "thought": True}] if thoughts else []
    )
    lead = [answer(thought_parts, None)] if thought_parts else []
    finish = str(controls.get("finish") or "STOP").upper()

    if finish not in ("STOP", "MAX_TOKENS") or controls.get("empty"):
        more: dict[str, Any] = {}
        if finish == "SAFETY":
            more["safetyRatings"] = SAFETY_RATINGS
        if finish in FINISH_MESSAGES:
            more["finishMessage"] = FINISH_MESSAGES[finish]
        whole = final(thought_parts, finish, **more)
        return GeminiPlan(whole, [*lead, final([], finish, thought_parts, **more)])

    offered = _offered(body, tools_only_when_named)
    last = contents[-1] if contents else {}
    answering_results = any(key(p, "function_response") is not None for p in _parts(last))
    call = controls.get("call")
    if isinstance(call, dict) or (offered and not answering_results):
        if isinstance(call, dict):  # scripted: exactly this function, these arguments
            name, args = str(call.get("name", "tool")), call.get("args") or {}
        else:
            declared = offered[0]
            schema = key(declared, "parameters") or key(declared, "parameters_json_schema")
            name, args = str(key(declared, "name")), arguments_for(schema)
        signature = new_signature()
        # One functionCall part, whole (Gemini does not stream a call's arguments unless asked), signed.
        call_part = {"functionCall": {"name": name, "args": args}, "thoughtSignature": signature}
        whole = final([*thought_parts, call_part], "STOP")
        streamed = final([call_part], "STOP", [*thought_parts, call_part])
        return GeminiPlan(whole, [*lead, streamed], signature=signature)

    results = function_results(contents)
    if isinstance(controls.get("text"), str):
        text = controls["text"]
    elif answering_results and results:
        text = "tool said: " + " | ".join(results)
    else:
        text = "echo: " + last_user_text(contents)
    chunks = controls.get("chunks")
    if isinstance(chunks, int) and chunks > 0:
        pieces = [text] + [f" #{i}" for i in range(1, chunks)]
    else:
        pieces = re.findall(r"\s*\S+", text) or [text]
    if finish == "MAX_TOKENS":  # cut off: about half of it
        pieces = pieces[: max(1, len(pieces) // 2)]
    text_parts: list[dict[str, Any]] = [{"text": piece} for piece in pieces]
    text_signature = None
    if gemini_3:  # "the signature in the last part" of an answer without function calls
        text_signature = new_signature()
        text_parts[-1]["thoughtSignature"] = text_signature
    whole = final(
        [*thought_parts, {"text": "".join(pieces), **({"thoughtSignature": text_signature} if text_signature else {})}],
        finish,
    )
    streamed = [answer([p], None) for p in text_parts[:-1]]
    streamed.append(final(text_parts[-1:], finish, [*thought_parts, *text_parts]))
    return GeminiPlan(whole, [*lead, *streamed], text_signature=text_signature)


def count_tokens(body: dict[str, Any]) -> dict[str, Any]:
    """countTokens's answer (CountTokensResponse): the same count generateContent reports as promptTokenCount."""
    tokens = prompt_tokens(body)
    characters = sum(len(re.sub(r"\s", "", part_text(_parts(c)))) for c in key(body, "contents") or [])
    return {
        "totalTokens": tokens,
        "totalBillableCharacters": characters,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": tokens}],
    }


def compute_tokens(body: dict[str, Any]) -> dict[str, Any]:
    """computeTokens's answer (ComputeTokensResponse): a TokensInfo per content, one token per word of its text,
    each token as bytes (base64 in JSON) and an int64 id (a string in proto3 JSON), and the content's role."""
    infos = []
    for content in key(body, "contents") or []:
        words = [w.encode() for w in re.findall(r"\S+", part_text(_parts(content)))]
        info: dict[str, Any] = {
            "tokens": [base64.b64encode(w).decode() for w in words],
            "tokenIds": [str(int.from_bytes(hashlib.sha256(w).digest()[:3], "big")) for w in words],
        }
        if isinstance(key(content, "role"), str):
            info["role"] = key(content, "role")
        infos.append(info)
    return {"tokensInfo": infos}
