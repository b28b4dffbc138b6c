"""JSON Schema (as Anthropic tools declare their input) made into the OpenAPI subset Gemini's
`functionDeclarations[].parameters` accepts.

Vertex's `Schema` knows a fixed list of fields and refuses any other name (`$schema`,
`additionalProperties`, `const`, `$ref`, ...) with 400 "Unknown name"; Claude Code's tool schemas
carry all of those. Each keyword is kept, rewritten into what Gemini has (a type list becomes
`nullable` or `anyOf`, `const` an `enum`, a local `$ref` is inlined, `exclusiveMinimum` a `minimum`)
or dropped where Gemini has no equivalent, so the model still sees every property and description.
"""

from typing import Any

# Vertex's Schema fields that survive as they are (SPEC, platform facts).
_KEPT = (
    "description",
    "title",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
    "pattern",
)
_TYPES = {"string", "number", "integer", "boolean", "array", "object"}
# Gemini documents these formats only; any other (uri, email, ...) is refused, so it moves into the description.
_FORMATS = {"string": {"enum", "date-time"}, "number": {"float", "double"}, "integer": {"int32", "int64"}}
# Inlining stops here: a recursive schema becomes a plain object below this depth.
MAX_DEPTH = 12


def gemini_schema(schema: Any) -> dict[str, Any]:
    """Gemini's Schema for one JSON Schema; never raises on odd input."""
    if not isinstance(schema, dict):
        return {"type": "OBJECT"}
    defs = {**_dict(schema.get("definitions")), **_dict(schema.get("$defs"))}
    return _convert(schema, defs, 0)


def is_empty_object(schema: dict[str, Any]) -> bool:
    """An object schema with no properties, which Gemini refuses as function parameters."""
    return schema.get("type") == "OBJECT" and not schema.get("properties") and "anyOf" not in schema


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _resolve(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if not isinstance(ref, str):
        return schema
    name = ref.rsplit("/", 1)[-1]
    target = defs.get(name) if ref.startswith(("#/$defs/", "#/definitions/")) else None
    merged = {k: v for k, v in schema.items() if k != "$ref"}
    return {**target, **merged} if isinstance(target, dict) else merged


def _convert(schema: dict[str, Any], defs: dict[str, Any], depth: int) -> dict[str, Any]:
    if depth > MAX_DEPTH:
        return {"type": "OBJECT"}
    schema = _resolve(schema, defs)
    out: dict[str, Any] = {}
    nullable = False
    kind = schema.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if isinstance(k, str) and k in _TYPES]
        nullable = "null" in kind
        if len(kinds) > 1:
            return _with_nullable(
                {"anyOf": [_convert({**schema, "type": k}, defs, depth + 1) for k in kinds]}, nullable
            )
        kind = kinds[0] if kinds else None
    if kind == "null":
        kind, nullable = None, True

    variants = schema.get("anyOf") or schema.get("oneOf")
    if isinstance(variants, list) and variants:
        kept = [v for v in variants if isinstance(v, dict) and v.get("type") != "null"]
        nullable = nullable or len(kept) < len(variants)
        converted = [_convert(v, defs, depth + 1) for v in kept]
        if len(converted) == 1:
            out.update(converted[0])
        elif converted:
            out["anyOf"] = converted
    all_of = schema.get("allOf")
    if isinstance(all_of, list):
        for part in all_of:
            if isinstance(part, dict):
                _merge(out, _convert(part, defs, depth + 1))

    if not isinstance(kind, str) or kind not in _TYPES:
        kind = _implied_type(schema) if "anyOf" not in out and "type" not in out else None
    if kind:
        out["type"] = kind.upper()

    for name in _KEPT:
        value = schema.get(name)
        if value is not None and not isinstance(value, (dict, list)):
            out[name] = value
    for exclusive, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        value = schema.get(exclusive)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and bound not in out:
            out[bound] = value

    fmt = schema.get("format")
    if isinstance(fmt, str) and kind:
        if fmt in _FORMATS.get(kind, ()):
            out["format"] = fmt
        else:
            out["description"] = f"{out.get('description', '')} (format: {fmt})".strip()

    values = schema.get("enum")
    if "const" in schema and not isinstance(values, list):
        values = [schema["const"]]
    if isinstance(values, list) and values:
        strings = [v for v in values if isinstance(v, str)]
        if len(strings) == len(values):
            out["enum"] = strings
            out["type"] = "STRING"
        elif None in values:
            nullable = True

    properties = schema.get("properties")
    if isinstance(properties, dict):
        converted_props = {
            str(name): _convert(sub, defs, depth + 1) if isinstance(sub, dict) else {"type": "STRING"}
            for name, sub in properties.items()
        }
        if converted_props:
            out["properties"] = converted_props
            required = schema.get("required")
            if isinstance(required, list):
                listed = [r for r in required if isinstance(r, str) and r in converted_props]
                if listed:
                    out["required"] = listed
    items = schema.get("items")
    if isinstance(items, dict):
        out["items"] = _convert(items, defs, depth + 1)
    elif isinstance(items, list) and items and isinstance(items[0], dict):  # tuple form: the first item's type
        out["items"] = _convert(items[0], defs, depth + 1)
    elif out.get("type") == "ARRAY":
        out["items"] = {"type": "STRING"}  # Gemini requires items on an array
    return _with_nullable(out, nullable)


def _implied_type(schema: dict[str, Any]) -> str:
    if "properties" in schema:
        return "object"
    if "items" in schema:
        return "array"
    if isinstance(schema.get("enum"), list) or "const" in schema:
        return "string"
    # Any value at all (`{}`): Gemini has no such type; a string at least carries anything.
    return "string"


def _merge(into: dict[str, Any], other: dict[str, Any]) -> None:
    for key, value in other.items():
        if key == "properties" and isinstance(into.get(key), dict):
            into[key] = {**into[key], **value}
        elif key == "required" and isinstance(into.get(key), list):
            into[key] = list(dict.fromkeys([*into[key], *value]))
        else:
            into.setdefault(key, value)


def _with_nullable(out: dict[str, Any], nullable: bool) -> dict[str, Any]:
    if nullable:
        out["nullable"] = True
    return out
