"""What a /vertex request may ask for: the native Vertex AI passthrough's URL grammar, and nothing else.

    POST /vertex/{v1|v1beta1}[/projects/{p}/locations/{l}]/publishers/{publisher}/models/{model}:{method}

google: generateContent, streamGenerateContent (`?alt=sse`: server-sent events; without it Vertex
streams one JSON array), countTokens, computeTokens, embedContent, predict. anthropic: rawPredict,
streamRawPredict, and Claude's count-tokens (`models/count-tokens:rawPredict`, the model in the body).

The gateway's service account can do far more on Vertex than call models, so this is an allowlist read
from the raw bytes of the request target (ASGI's `path` is percent-decoded): anything else (other
resources, methods or query parameters, percent-escapes, dot or empty segments, a trailing slash) is
a 404 saying what is served. The client's project and location are dropped: the gateway calls its
own. Every value kept is one of a fixed set, except the model id, which is 1-128 letters, digits,
`.`, `_`, `@`, `-` (and then goes through the model table like any other route's).
"""

import re
from dataclasses import dataclass

from app.errors import GatewayError

PREFIX = "/vertex/"
VERSIONS = {b"v1": "v1", b"v1beta1": "v1beta1"}
GOOGLE_METHODS = ("generateContent", "streamGenerateContent", "countTokens", "computeTokens", "embedContent", "predict")
ANTHROPIC_METHODS = ("rawPredict", "streamRawPredict")
METHODS = {
    "google": {m.encode(): m for m in GOOGLE_METHODS},
    "anthropic": {m.encode(): m for m in ANTHROPIC_METHODS},
}
STREAM_METHODS = frozenset(("streamGenerateContent", "streamRawPredict"))
# Claude's token counter is a model of its own on Vertex; the model to count for is named in the body.
CLAUDE_COUNT_TOKENS = "count-tokens"
MODEL_ID_MAX = 128

_PATH = re.compile(
    rb"/vertex/(?P<version>[^/]*)"
    rb"(?:/projects/(?P<project>[A-Za-z0-9][A-Za-z0-9._:-]{0,127})/locations/(?P<location>[A-Za-z0-9][A-Za-z0-9_-]{0,63}))?"
    rb"/publishers/(?P<publisher>google|anthropic)/models/(?P<model>[A-Za-z0-9][A-Za-z0-9._@-]{0,127}):(?P<method>[A-Za-z]{1,64})"
)
_MODEL_SEGMENT = re.compile(rb"/models/(?P<model>[^/:]*)(?::(?P<method>.*))?$")

SERVED = (
    "the /vertex passthrough serves model calls only: POST /vertex/{v1|v1beta1}[/projects/P/locations/L]"
    f"/publishers/google/models/MODEL:{{{'|'.join(GOOGLE_METHODS)}}} (streamGenerateContent may add ?alt=sse), "
    f"/publishers/anthropic/models/MODEL:{{{'|'.join(ANTHROPIC_METHODS)}}}, and Claude's "
    "/publishers/anthropic/models/count-tokens:rawPredict; the project and location are the gateway's own, "
    'whatever the URL says (google-genai: base_url="https://HOST/vertex"; AnthropicVertex: '
    'base_url="https://HOST/vertex/v1")'
)


@dataclass(frozen=True, slots=True)
class NativeCall:
    """What a valid /vertex URL asks for; every field but `model` is one of a fixed set of strings."""

    version: str  # "v1" | "v1beta1"
    publisher: str  # "google" | "anthropic"
    model: str | None  # the model id as the URL names it; None for Claude's count-tokens (named in the body)
    method: str
    sse: bool  # streamGenerateContent?alt=sse

    @property
    def stream(self) -> bool:
        return self.method in STREAM_METHODS


def parse_native(raw_path: bytes, query: bytes) -> NativeCall:
    """The call a /vertex request target names, or a 404 GatewayError saying why it is not served."""
    match = _PATH.fullmatch(raw_path)
    if match is None or match["version"] not in VERSIONS:
        raise _refused(_why(raw_path))
    publisher = match["publisher"].decode()
    method = METHODS[publisher].get(match["method"])
    model = match["model"].decode()
    counter = publisher == "anthropic" and model == CLAUDE_COUNT_TOKENS
    if method is None or (counter and method != "rawPredict"):
        served = "count-tokens:rawPredict" if counter else ", ".join(METHODS[publisher].values())
        raise _refused(f"method {_quote(match['method'])} is not served for {publisher} models (served: {served})")
    sse = False
    if query:
        if query != b"alt=sse" or method != "streamGenerateContent":
            raise _refused(
                f"query parameters are not accepted ({_names(query)}); the only one is alt=sse, on "
                "streamGenerateContent; keys go in a header (x-goog-api-key, Authorization: Bearer or x-api-key)"
            )
        sse = True
    return NativeCall(VERSIONS[match["version"]], publisher, None if counter else model, method, sse)


def _why(raw: bytes) -> str:
    """The first rule a refused path breaks, in words."""
    if b"%" in raw:
        return "percent-encoded characters are not accepted in /vertex paths"
    segments = raw.split(b"/")[1:]
    if raw.endswith(b"/"):
        return "a trailing slash is not accepted"
    if b"" in segments:
        return "empty path segments (//) are not accepted"
    if any(s in (b".", b"..") for s in segments):
        return "'.' and '..' path segments are not accepted"
    if len(segments) < 2 or segments[1] not in VERSIONS:
        return "the path must start /vertex/v1/ or /vertex/v1beta1/"
    if b"publishers" not in segments or b"models" not in segments:
        return (
            "only publisher models are served, not other resources (endpoints, tuningJobs, operations, "
            "cachedContents, datasets, models without publishers/, ...)"
        )
    publisher = segments[segments.index(b"publishers") + 1] if segments[-1] != b"publishers" else b""
    if publisher not in (b"google", b"anthropic"):
        return f"publisher {_quote(publisher)} is not served (google, anthropic)"
    model = _MODEL_SEGMENT.search(raw)
    if model is not None and model["method"] is None:
        return "the method is missing (models/MODEL:method)"
    if model is not None and not re.fullmatch(rb"[A-Za-z0-9][A-Za-z0-9._@-]{0,127}", model["model"]):
        return f"a model id is 1-{MODEL_ID_MAX} letters, digits, '.', '_', '@' or '-', starting with a letter or digit"
    return "the path is not one the passthrough serves"


def _quote(value: bytes) -> str:
    return repr(value[:64].decode("latin-1"))


def _names(query: bytes) -> str:
    """The query's parameter names, never their values (a value may be a key)."""
    names = [part.split(b"=", 1)[0][:32].decode("latin-1") for part in query.split(b"&")[:4]]
    return ", ".join(repr(n) for n in names)


def _refused(why: str) -> GatewayError:
    return GatewayError(404, f"Not served: {why}. {SERVED}", code="not_found")


def method_not_allowed(method: str) -> GatewayError:
    """A valid /vertex URL asked with another verb: every Vertex model method is a POST."""
    return GatewayError(
        405,
        f"Method {method[:16]} is not allowed here: Vertex AI's model methods are called with POST. {SERVED}",
        code="method_not_allowed",
        headers=[(b"allow", b"POST")],
    )
