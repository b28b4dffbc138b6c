"""What a 404 says: for the usual base-URL slips (a doubled or missing /v1, a trailing slash, the
Responses API, the bare /vertex prefix), which base URL that client should use instead, in the shape that
client reads."""

from app.errors import GatewayError, Shape

SERVED = (
    "this gateway serves /v1/chat/completions, /v1/embeddings, /v1/models, /v1/messages, "
    "/v1/messages/count_tokens and the native Vertex AI passthrough under /vertex/"
)
_ANTHROPIC_TAILS = ("/messages", "/messages/count_tokens")
_OPENAI_TAILS = ("/chat/completions", "/embeddings", "/models")


def shape_for(path: str) -> Shape:
    """Google's error shape under /vertex (the native passthrough), Anthropic's for anything an Anthropic
    client would have sent, OpenAI's otherwise."""
    if path == "/vertex" or path.startswith("/vertex/"):
        return Shape.GOOGLE
    trimmed = path.rstrip("/")
    if trimmed.startswith("/v1/messages") or trimmed.endswith(_ANTHROPIC_TAILS):
        return Shape.ANTHROPIC
    return Shape.OPENAI


def _hint(path: str, base_url: str) -> str:
    trimmed = path.rstrip("/") or "/"
    if trimmed != path and trimmed in ("/v1/chat/completions", "/v1/models", *(f"/v1{t}" for t in _ANTHROPIC_TAILS)):
        # Never a redirect: its Location would come from the client's Host, and SDKs follow it with the key.
        return f"no trailing slash: use {trimmed}"
    if trimmed.startswith("/v1/v1/"):
        if trimmed.endswith(_ANTHROPIC_TAILS):
            return (
                f"the path has /v1 twice: the Anthropic SDK and Claude Code add /v1 themselves, so their base URL "
                f"is {base_url} (ANTHROPIC_BASE_URL={base_url})"
            )
        return f"the path has /v1 twice: an OpenAI SDK's base_url is {base_url}/v1, once"
    if trimmed.endswith(_ANTHROPIC_TAILS) and not trimmed.startswith("/v1/"):
        route = trimmed[trimmed.index("/messages") :]
        return f"the path lacks /v1: use {base_url}/v1{route} (the Anthropic SDK's base URL is {base_url})"
    if trimmed.endswith(_OPENAI_TAILS) and not trimmed.startswith("/v1/"):
        return f"the path lacks /v1: an OpenAI SDK's base_url is {base_url}/v1"
    if trimmed == "/vertex":
        return (
            f"the native Vertex AI passthrough is under /vertex/v1/ and /vertex/v1beta1/: google-genai's base_url is "
            f"{base_url}/vertex, AnthropicVertex's {base_url}/vertex/v1"
        )
    if trimmed in ("/v1/responses", "/responses") or trimmed.startswith("/v1/responses/"):
        return (
            "the Responses API is not served: use Chat Completions (in the OpenAI Agents SDK, "
            f"OpenAIChatCompletionsModel; see {base_url}/docs#agents-sdk)"
        )
    if path != trimmed:
        return f"no trailing slash: use {trimmed[:200]}"
    return ""


def not_found(method: str, path: str, base_url: str) -> GatewayError:
    hint = _hint(path, base_url)
    return GatewayError(
        404,
        f"No route {method} {path[:200]}" + (f" ({hint})" if hint else "") + f": {SERVED} (see {base_url}/docs)",
        code="not_found",
    )
