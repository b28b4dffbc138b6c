"""Request fields that would make Vertex AI read the project's own resources.

Every key shares the gateway's service account, so a `gs://` image, a cached-content name or a
RAG corpus in a request body is read with the project's rights, not the caller's. By default such
fields are refused; a key with `"allow_resources": true` skips this check.

The rule, applied to the parsed body (never raw bytes, so JSON escapes cannot hide anything):

- a string is a resource reference when, after leading whitespace and ignoring ASCII case, it
  starts with `gs:/` (Cloud Storage) or `bq:/` (BigQuery), is a resource name starting with
  `projects/` (cached contents, RAG corpora, Vertex AI Search data stores, endpoints...), or is an
  http(s) URL on Cloud Storage's own hosts (`storage.googleapis.com`, `*.storage.googleapis.com`,
  `storage.cloud.google.com`), which name the same objects;
- a `cachedContent` / `cached_content` key with a non-empty string value is refused whatever the
  value (short names such as `cachedContents/ID` resolve inside the project too);
- prose is never inspected: the values of `text`, `thinking`, `arguments`, `partial_json`,
  `description`, `data` (inline content), and of `content` / `system` when they are strings; the
  `input` of a `tool_use` block; JSON schemas (`parameters`, `input_schema`, `schema`,
  `response_schema`); `metadata`; stop sequences (`stop`, `stop_sequences`).
  Vertex reads none of these as a location, so a user's message that mentions `gs://` passes.

Every reference the walk refuses holds a `/` (a `gs:/` or `bq:/` URI, an http(s) URL, a resource
name), or sits under a key containing `cached`; in the raw bytes a `/` may be escaped as `\\/`
(still a `/` byte) or `\\u002f`, and any ASCII letter as `\\u00XX`. So a body with no `/`, no
`\\u00` and no `cached` cannot hold one, and skips the walk after a memchr and two substring
searches. Otherwise the walk runs: iterative (nesting depth costs no recursion), and cheap per node,
since only strings holding a `/` reach the regular expression.
"""

import re
from typing import Any

_REFERENCE = re.compile(
    r"\s*(?:(?P<scheme>gs|bq):/"
    r"|(?P<name>/?projects/)"
    r"|(?P<gcs>https?://(?:[^/?#@]*@)?(?:[a-z0-9.-]*\.)?storage\.(?:googleapis\.com|cloud\.google\.com)\.?(?:[:/?#\\]|$)))",
    re.IGNORECASE | re.ASCII,
)
_CACHED_KEYS = frozenset(("cachedContent", "cached_content"))
# Values never read as a location, whatever their type.
_SKIP_ANY = frozenset(
    (
        "parameters",
        "input_schema",
        "schema",
        "response_schema",
        "responseSchema",
        "metadata",
        "stop",
        "stop_sequences",
    )
)
# String values that are prose or inline content.
_SKIP_STRING = frozenset(("text", "thinking", "arguments", "partial_json", "description", "data", "content", "system"))
_TOOL_USE_TYPES = frozenset(("tool_use", "server_tool_use"))
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

Path = tuple[Any, ...] | None  # (parent path, key or index), built only for the path in a refusal


def might_reference(raw: bytes) -> bool:
    """False when the body cannot hold a resource reference: the walk can be skipped."""
    # Single bytes first: `in` on one byte is a memchr. JSON spells escapes with a lowercase `u`.
    return b"/" in raw or (b"\\" in raw and b"\\u00" in raw) or b"cached" in raw


def find_reference(body: dict[str, Any]) -> tuple[str, str] | None:
    """The first field that references a project resource, as (field path, what it is), or None."""
    stack: list[tuple[Any, Path]] = [(body, None)]
    while stack:
        node, path = stack.pop()
        if type(node) is dict:
            skip_input = node.get("type") in _TOOL_USE_TYPES
            for key, value in node.items():
                if type(value) is str:
                    if key in _CACHED_KEYS and value:
                        return _render((path, key)), "a cached-content name"
                    if "/" not in value or key in _SKIP_STRING or key in _SKIP_ANY:
                        continue
                    kind = _kind(value)
                    if kind is not None:
                        return _render((path, key)), kind
                elif type(value) in (dict, list):
                    if key in _SKIP_ANY or (skip_input and key == "input"):
                        continue
                    stack.append((value, (path, key)))
        else:  # a list: only containers and strings are pushed
            for index, value in enumerate(node):
                if type(value) is str:
                    if "/" not in value:
                        continue
                    kind = _kind(value)
                    if kind is not None:
                        return _render((path, index)), kind
                elif type(value) in (dict, list):
                    stack.append((value, (path, index)))
    return None


def _kind(value: str) -> str | None:
    match = _REFERENCE.match(value)
    if match is None:
        return None
    if match["scheme"]:
        return "a Cloud Storage URI" if match["scheme"].lower() == "gs" else "a BigQuery URI"
    if match["name"]:
        return "a Google Cloud resource name"
    return "a Cloud Storage URL"


def _render(path: Path) -> str:
    parts: list[str] = []
    while path is not None:
        path, step = path
        if isinstance(step, int):
            parts.append(f"[{step}]")
        elif _IDENTIFIER.fullmatch(step):
            parts.append(f".{step}")
        else:
            parts.append(f"[{step[:60]!r}]")
    text = "".join(reversed(parts)).lstrip(".")
    return text if len(text) <= 300 else "…" + text[-300:]
