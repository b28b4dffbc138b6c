"""The client APIs the gateway speaks to callers, and which ones serve each publisher's models of each kind.

A client API is what the caller speaks: its error shape and the route its models are called on. What
Vertex is called with (the upstream API) is chosen per route and per model publisher in the route
modules (`openai_api.py`, `anthropic_api.py`); where the two differ, a translator sits between them.
"""

from dataclasses import dataclass

from app.aliases import Model
from app.errors import Shape


@dataclass(frozen=True, slots=True)
class ClientApi:
    name: str  # as GET /v1/models reports it
    shape: Shape  # how errors are rendered
    path: str  # where its models are called
    clients: str  # who speaks it, for messages that send a caller elsewhere


OPENAI_CHAT = ClientApi("chat.completions", Shape.OPENAI, "/v1/chat/completions", "an OpenAI-compatible client")
ANTHROPIC_MESSAGES = ClientApi("messages", Shape.ANTHROPIC, "/v1/messages", "the anthropic SDK or Claude Code")
OPENAI_EMBEDDINGS = ClientApi(
    "embeddings", Shape.OPENAI, "/v1/embeddings", "an OpenAI-compatible client's embeddings.create"
)

# The client APIs each publisher's models of each kind (Model.kind) are served on, the native one first:
# Gemini is also served on Messages, through a translator (gemini_messages), for Claude Code and the
# anthropic SDK; embedding models only on /v1/embeddings.
_SERVED = {
    ("google", "generative"): (OPENAI_CHAT, ANTHROPIC_MESSAGES),
    ("anthropic", "generative"): (ANTHROPIC_MESSAGES,),
    ("google", "embedding"): (OPENAI_EMBEDDINGS,),
}


def client_api_of(model: Model) -> ClientApi:
    """The API a model is native to, where a caller on the wrong route is sent."""
    return _SERVED[model.publisher, model.kind][0]


def client_apis_of(model: Model) -> tuple[ClientApi, ...]:
    return _SERVED[model.publisher, model.kind]
