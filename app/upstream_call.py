"""What one request asks of Vertex (an UpstreamCall: URL, body, stream or not) and, where the client speaks
another API than the one Vertex answers in, the Translator that turns Vertex's answer into the client's."""

from dataclasses import dataclass
from typing import Protocol


class Translator(Protocol):
    """Turns one successful Vertex answer into the client API's answer (one object per request).

    `whole` takes a complete JSON answer; `chunk` takes stream bytes as they arrive (split anywhere) and
    returns what to send now (maybe nothing); `end` the bytes that close a stream that ended cleanly;
    `broken` those that close one Vertex broke off. A GatewayError from `whole` becomes the answer.
    """

    usage: dict[str, int] | None

    def whole(self, body: bytes) -> bytes: ...

    def chunk(self, data: bytes) -> bytes: ...

    def end(self) -> bytes: ...

    def broken(self, reason: str) -> bytes: ...


@dataclass(frozen=True, slots=True)
class UpstreamCall:
    """What to send Vertex for one request, and how to turn its answer into the client API's."""

    url: str
    payload: bytes
    stream: bool
    # None where Vertex already answers in the client's API: its bytes pass through untouched.
    answer: Translator | None = None
    # Said instead of Vertex's own message when it answers 404 (a passed-through model it does not serve).
    not_found: str | None = None
