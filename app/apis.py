"""The client APIs the gateway speaks to callers, and which one serves each publisher's models.

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

# The client APIs each publisher's models are served on, the native one first: Gemini is also served on
# Messages, through a translator (gemini_messages), for Claude Code and the anthropic SDK.
_BY_PUBLISHER = {"google": (OPENAI_CHAT, ANTHROPIC_MESSAGES), "anthropic": (ANTHROPIC_MESSAGES,)}


def client_api_of(model: Model) -> ClientApi:
    """The API a model is native to, where a caller on the wrong route is sent."""
    return _BY_PUBLISHER[model.publisher][0]


def client_apis_of(model: Model) -> tuple[ClientApi, ...]:
    return _BY_PUBLISHER[model.publisher]
