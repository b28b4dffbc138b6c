"""A fake Vertex AI endpoint: Gemini's OpenAI-compatible chat, Gemini's native API and Claude's rawPredict.

Routes (v1 and v1beta1, under /projects/{p}/locations/{l}), recorded as `Recorded.route`:

    chat                 /endpoints/openapi/chat/completions
    gemini               /publishers/google/models/{m}:generateContent, :streamGenerateContent
                         (`?alt=sse`: SSE, each event `data: {json}\r\n\r\n`; without: one JSON array)
    gemini_count_tokens  /publishers/google/models/{m}:countTokens
    gemini_compute_tokens /publishers/google/models/{m}:computeTokens
    claude               /publishers/anthropic/models/{m}:rawPredict, :streamRawPredict
    count_tokens         /publishers/anthropic/models/count-tokens:rawPredict
    embed                /publishers/google/models/{m}:predict, :embedContent (tests/fakes/vertex_embed.py)

It refuses what Vertex refuses: models the project cannot see (`gemini_models`, `claude_models`), native
bodies protobuf cannot parse or Gemini would not take (tests/fakes/vertex_gemini.py), and on Gemini 3
(both Gemini endpoints) a current turn whose function calls lack the thought signatures it issued.

Tests steer it through a `"fake"` object in the request body (it reaches the fake
only if the gateway passes unknown fields through) or, when the body cannot carry
it, through one-shot scripts queued with `FakeVertex.push()`:

    chunks: int         stream the text in this many content chunks
    call: dict          call this function: {"name": ..., "args": {...}} (chat and native), whatever the tools
    text: str           (native) answer this text
    thoughts: bool      (native) a leading thought part, as with thinkingConfig.includeThoughts
    finish: str         (native) end so: "MAX_TOKENS" cuts the text; "SAFETY" (with safetyRatings),
                        "RECITATION", "MALFORMED_FUNCTION_CALL"... leave the candidate without parts
    empty: bool         (native) a candidate with no parts, finishReason STOP
    block: str          (native) the prompt is blocked: promptFeedback.blockReason, no candidates
    delay: float        seconds between stream events
    stamp: bool         add "fake_seq" and "fake_sent_at" to each streamed payload
    gate: str           after `gate_after` events (default 1) wait for `open_gate(name)`,
                        at most `gate_timeout` seconds (default 60)
    die_after: int      abort the connection after this many stream events
    header_delay: float wait this long before sending the status line
    reset: bool         close the connection without any response
    truncate: bool      (non-stream) send headers and half the JSON body, then cut the connection
    status: int         answer with this error status ...
    error_body: any     ... and this exact JSON body (default: a Google envelope)
    error_list: bool    ... wrapped in a list, as Vertex sometimes does
    retry_after: str    ... and this Retry-After header
"""

from __future__ import annotations

import asyncio
import base64
import collections
import json
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes import BackgroundServer
from tests.fakes.vertex_chat import (
    Event,
    SignatureCheck,
    check_chat_signatures,
    is_gemini_3,
    last_user_text,
    plan_chat,
    signature_bytes,
)
from tests.fakes.vertex_claude import _last_user_text, body_problem, count_tokens, plan_message
from tests.fakes.vertex_embed import EMBED_PATH
from tests.fakes.vertex_embed import answer as embedding_answer
from tests.fakes.vertex_gemini import (
    DEFAULT_GEMINI_MODELS,
    check_signatures,
    model_not_found,
    parse_problems,
    plan_gemini,
    request_problem,
)
from tests.fakes.vertex_gemini import compute_tokens as gemini_compute_tokens
from tests.fakes.vertex_gemini import count_tokens as gemini_count_tokens

_PREFIX = r"^/(?:v1|v1beta1)/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)"
CHAT_PATH = re.compile(_PREFIX + r"/endpoints/openapi/chat/completions$")
CLAUDE_PATH = re.compile(
    _PREFIX + r"/publishers/anthropic/models/(?P<model>[^/:]+):(?P<verb>rawPredict|streamRawPredict)$"
)
GEMINI_PATH = re.compile(
    _PREFIX
    + r"/publishers/google/models/(?P<model>[^/:]+)"
    + r":(?P<verb>generateContent|streamGenerateContent|countTokens|computeTokens)$"
)
# The Claude models a fake project may use (FakeVertex.claude_models): app/config.py's DEFAULT_ALIASES, the
# ids the tests name (Claude Code's pinned default among them) and their predecessors on Vertex.
DEFAULT_CLAUDE_MODELS = frozenset(
    {
        "claude-opus-5-5",
        "claude-sonnet-5-5",
        "claude-haiku-5-5",
        "claude-opus-4-8",
        "claude-opus-4-7",
        "claude-opus-4-6",
        "claude-sonnet-4-6",
        "claude-opus-4-5@20251101",
        "claude-sonnet-4-5@20250929",
        "claude-haiku-4-5@20251001",
        "claude-opus-4-1@20250805",
        "claude-opus-4@20250514",
        "claude-sonnet-4@20250514",
        "claude-3-7-sonnet@20250219",
        "claude-3-5-haiku@20241022",
    }
)
# The request message each Gemini method's body is parsed into (generateContent's otherwise).
_REQUESTS = {"countTokens": "CountTokensRequest", "computeTokens": "ComputeTokensRequest"}
# Signatures the fake remembers having issued (Gemini 3 refuses others), beyond `clear()`.
KNOWN_SIGNATURES = 100_000

# Google's "Count tokens for Claude models" page lists these regions, and `global` is not one of them.
COUNT_TOKENS_LOCATIONS = frozenset(
    ("us-east5", "europe-west1", "asia-east1", "asia-southeast1", "us-central1", "europe-west4")
)

GOOGLE_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


class _Aborted(Exception):
    """The fake closed the connection on purpose."""


def google_error(status: int, message: str, details: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": status, "message": message, "status": GOOGLE_STATUS.get(status, "UNKNOWN")}
    if details:
        error["details"] = details
    return {"error": error}


@dataclass
class Recorded:
    """One request as the fake saw it, and how its answer went."""

    method: str
    path: str
    raw_path: str
    query: str
    headers: list[tuple[str, str]]
    body: bytes
    received_at: float
    route: str = "other"
    status: int | None = None
    events_sent: int = 0
    disconnected: bool = False  # the peer hung up before the fake had finished
    aborted: bool = False  # the fake cut the connection on purpose (reset, die_after)
    issued_signature: str | None = None  # thought signature put in this reply's tool call
    finished: threading.Event = field(default_factory=threading.Event)

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    @property
    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None


class FakeVertex(BackgroundServer):
    def __init__(
        self,
        valid_tokens: set[str] | None = None,
        *,
        gemini_models: set[str] | frozenset[str] | None = None,
        claude_models: set[str] | frozenset[str] | None = None,
    ) -> None:
        super().__init__()
        # The models this fake project may use (ids as in the URL); any other is answered 404 NOT_FOUND.
        self.gemini_models: set[str] = set(DEFAULT_GEMINI_MODELS if gemini_models is None else gemini_models)
        self.claude_models: set[str] = set(DEFAULT_CLAUDE_MODELS if claude_models is None else claude_models)
        # Shared with FakeMetadata: tokens it issues become valid here.
        self.valid_tokens: set[str] = valid_tokens if valid_tokens is not None else set()
        self._lock = threading.Lock()
        self._requests: list[Recorded] = []
        self._scripts: collections.deque[tuple[str | None, dict[str, Any]]] = collections.deque()
        self._gates: dict[str, threading.Event] = {}
        self.signatures_issued: list[str] = []  # on function calls, both Gemini endpoints
        self.signatures_returned: list[str] = []  # found on function calls in requests (dummies aside)
        self.signatures_dummy: list[str] = []  # the documented dummy, found where a signature goes
        self._known: collections.OrderedDict[bytes, None] = collections.OrderedDict()  # issued, as bytes
        self.inflight = 0
        self.peak_inflight = 0
        # The tests' fake calls the first tool whenever tools are offered. The `make run` stand-in sets this,
        # so an agent's "Say hi" gets text and a tool is called only when the prompt names it.
        self.tools_only_when_named = False

    # -- test-side API -------------------------------------------------------

    @property
    def requests(self) -> list[Recorded]:
        with self._lock:
            return list(self._requests)

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()
            self._scripts.clear()
            self.signatures_issued.clear()
            self.signatures_returned.clear()
            self.signatures_dummy.clear()
            self.peak_inflight = self.inflight

    def push(self, controls: dict[str, Any], path_contains: str | None = None) -> None:
        """Queue controls for the next matching request, used once."""
        with self._lock:
            self._scripts.append((path_contains, dict(controls)))

    def pending_scripts(self) -> int:
        with self._lock:
            return len(self._scripts)

    def gate(self, name: str) -> threading.Event:
        with self._lock:
            return self._gates.setdefault(name, threading.Event())

    def open_gate(self, name: str) -> None:
        self.gate(name).set()

    def find(self, marker: str) -> list[Recorded]:
        """Requests whose body contains `marker` (tests tag bodies with a unique string)."""
        needle = marker.encode()
        return [r for r in self.requests if needle in r.body]

    def issued(self, signature: str) -> bool:
        """Whether this fake issued `signature`, in any base64 spelling (remembered past `clear()`)."""
        raw = signature_bytes(signature)
        with self._lock:
            return raw is not None and raw in self._known

    def _remember(self, signature: str | None, *, on_call: bool) -> None:
        if signature is None:
            return
        with self._lock:
            self._known[base64.b64decode(signature)] = None
            while len(self._known) > KNOWN_SIGNATURES:
                self._known.popitem(last=False)
            if on_call:
                self.signatures_issued.append(signature)

    def _record_returned(self, check: SignatureCheck) -> None:
        with self._lock:
            self.signatures_returned.extend(check.returned)
            self.signatures_dummy.extend(check.dummies)

    # -- server --------------------------------------------------------------

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    def _take_script(self, path: str) -> dict[str, Any]:
        with self._lock:
            for i, (needle, controls) in enumerate(self._scripts):
                if needle is None or needle in path:
                    del self._scripts[i]
                    return controls
        return {}

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        rec = Recorded(
            method=request.method,
            path=request.path,
            raw_path=request.raw_path.split("?", 1)[0],
            query=request.query_string,
            headers=list(request.headers.items()),
            body=body,
            received_at=time.time(),
        )
        with self._lock:
            self._requests.append(rec)
            self.inflight += 1
            self.peak_inflight = max(self.peak_inflight, self.inflight)
        try:
            response = await self._answer(request, rec)
            rec.status = response.status
            return response
        except _Aborted:
            rec.aborted = True
            # The transport is gone; aiohttp has nothing left to send.
            raise asyncio.CancelledError from None
        except (asyncio.CancelledError, ConnectionError):
            rec.disconnected = True
            raise
        finally:
            with self._lock:
                self.inflight -= 1
            rec.finished.set()

    async def _answer(self, request: web.Request, rec: Recorded) -> web.StreamResponse:
        auth = request.headers.get("Authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else None
        if token is None or token not in self.valid_tokens:
            return self._error(401, "Request had invalid authentication credentials.")

        if request.method != "POST":
            return self._error(404, f"The requested URL {rec.path} was not found on this server.")
        try:
            body = json.loads(rec.body)
        except ValueError:
            return self._error(400, "Invalid JSON payload received.")
        if not isinstance(body, dict):
            return self._error(400, "Invalid JSON payload received. Expected an object.")
        controls = body.get("fake") if isinstance(body.get("fake"), dict) else {}
        controls = {**controls, **self._take_script(rec.path)}

        chat = CHAT_PATH.match(rec.raw_path)
        claude = CLAUDE_PATH.match(rec.raw_path)
        gemini = GEMINI_PATH.match(rec.raw_path)
        embed = EMBED_PATH.match(rec.raw_path)
        if chat:
            rec.route = "chat"
        elif claude:
            rec.route = "count_tokens" if claude["model"] == "count-tokens" else "claude"
        elif gemini:
            rec.route = "gemini_count_tokens" if gemini["verb"] == "countTokens" else "gemini"
        elif embed:
            rec.route = "embed"

        if controls.get("reset"):
            await self._abort(request)
        if controls.get("header_delay"):
            await asyncio.sleep(float(controls["header_delay"]))
        if controls.get("status"):
            return self._error(int(controls["status"]), "Scripted failure.", controls)

        if chat:
            return await self._chat(request, rec, body, controls)
        if gemini:
            return await self._gemini(request, rec, gemini, body, controls)
        if embed:
            status, answer = embedding_answer(embed, body)
            return web.json_response(answer, status=status)
        if claude and rec.route == "count_tokens" and claude["verb"] == "rawPredict":
            if claude["location"] not in COUNT_TOKENS_LOCATIONS:
                # As Vertex does: count-tokens exists in some regions only, never at `global`.
                return self._error(
                    404, model_not_found(claude["project"], claude["location"], "anthropic", "count-tokens")
                )
            if not isinstance(body.get("model"), str):
                return self._error(400, 'Invalid request: "model" is required for count-tokens.')
            return web.json_response(count_tokens(body))
        if claude and rec.route == "claude":
            if claude["model"] not in self.claude_models:
                return self._error(
                    404, model_not_found(claude["project"], claude["location"], "anthropic", claude["model"])
                )
            problem = body_problem(body)
            if problem:
                return self._error(400, problem)
            message, events = plan_message(claude["model"], self._offered_tools(body, "claude"))
            if claude["verb"] == "streamRawPredict":
                return await self._stream(request, rec, events, controls)
            return web.json_response(message)
        return self._error(404, f"The requested URL {rec.path} was not found on this server.")

    def _offered_tools(self, body: dict[str, Any], api: str) -> dict[str, Any]:
        tools = body.get("tools")
        if not self.tools_only_when_named or not isinstance(tools, list) or not tools:
            return body
        first = tools[0] if isinstance(tools[0], dict) else {}
        name = first.get("name") if api == "claude" else (first.get("function") or {}).get("name")
        messages = body.get("messages") or []
        prompt = _last_user_text(messages) if api == "claude" else last_user_text(messages)
        if isinstance(name, str) and name and name.lower() in prompt.lower():
            return body
        return {k: v for k, v in body.items() if k != "tools"}

    async def _chat(
        self,
        request: web.Request,
        rec: Recorded,
        body: dict[str, Any],
        controls: dict[str, Any],
    ) -> web.StreamResponse:
        model = body.get("model")
        if not isinstance(model, str) or not model.startswith("google/"):
            return self._error(
                400,
                f"Unsupported model {model!r}: use a publisher-qualified id such as google/gemini-2.5-flash.",
            )
        if "stream" in body and not isinstance(body["stream"], bool):
            return self._error(400, 'Invalid value at "stream" (TYPE_BOOL).')
        if not isinstance(body.get("messages"), list):
            return self._error(400, '"messages" is required.')
        check = check_chat_signatures(body["messages"], is_gemini_3(model), self.issued)
        self._record_returned(check)
        if check.problem:
            # Vertex's OpenAI-compatible endpoint wraps this refusal in a list (openai-agents-python#2137).
            return self._error(400, check.problem, {"error_list": True})
        plan = plan_chat(self._offered_tools(body, "chat"), controls)
        rec.issued_signature = plan.signature
        self._remember(plan.signature, on_call=True)
        if body.get("stream"):
            return await self._stream(request, rec, plan.events, controls)
        if controls.get("truncate"):
            return await self._truncated(request, plan.completion)
        return web.json_response(plan.completion)

    async def _gemini(
        self,
        request: web.Request,
        rec: Recorded,
        match: re.Match[str],
        body: dict[str, Any],
        controls: dict[str, Any],
    ) -> web.StreamResponse:
        model, verb = match["model"], match["verb"]
        version = "v1beta1" if rec.raw_path.startswith("/v1beta1/") else "v1"
        counting = verb in ("countTokens", "computeTokens")
        if verb == "computeTokens":
            rec.route = "gemini_compute_tokens"
        # As Vertex: the body is parsed into the request proto first, then the model is looked up,
        # then Gemini checks what it was given.
        parsed = parse_problems(body, _REQUESTS.get(verb, "GenerateContentRequest"), version)
        if parsed:
            return self._error(400, parsed.message, details=parsed.details())
        if model not in self.gemini_models:
            return self._error(404, model_not_found(match["project"], match["location"], "google", model))
        problem = request_problem(body, model, generate=not counting)
        if problem:
            return self._error(400, problem)
        if verb == "computeTokens":
            return web.json_response(gemini_compute_tokens(body))
        if counting:
            return web.json_response(gemini_count_tokens(body))
        contents = body.get("contents") or []
        check = check_signatures(contents, is_gemini_3(model), self.issued)
        self._record_returned(check)
        if check.problem:
            return self._error(400, check.problem)
        plan = plan_gemini(model, body, controls, tools_only_when_named=self.tools_only_when_named)
        rec.issued_signature = plan.signature
        self._remember(plan.signature, on_call=True)
        self._remember(plan.text_signature, on_call=False)
        if verb == "streamGenerateContent":
            framing = "sse" if request.query.get("alt") == "sse" else "json_array"
            return await self._stream(request, rec, [(None, c) for c in plan.chunks], controls, framing=framing)
        if controls.get("truncate"):
            return await self._truncated(request, plan.response)
        return web.json_response(plan.response)

    async def _stream(
        self,
        request: web.Request,
        rec: Recorded,
        events: list[Event],
        controls: dict[str, Any],
        framing: str = "event_stream",
    ) -> web.StreamResponse:
        """Send `events` one write each, paced and cut as the controls say.

        framing: "event_stream" (chat, Claude: `event: name` lines, events end with a blank line),
        "sse" (Gemini's `alt=sse`: `data: {json}` lines ending "\r\n\r\n", as Vertex sends them), or
        "json_array" (Gemini without alt=sse: the chunks are the elements of one JSON array).
        """
        content_type = "application/json; charset=UTF-8" if framing == "json_array" else "text/event-stream"
        response = web.StreamResponse(headers={"Content-Type": content_type, "Cache-Control": "no-cache"})
        await response.prepare(request)
        delay = float(controls.get("delay", 0))
        die_after = controls.get("die_after")
        gate_name = controls.get("gate")
        gate_after = int(controls.get("gate_after", 1))
        for seq, (name, payload) in enumerate(events):
            if die_after is not None and seq >= int(die_after):
                await self._abort(request)
            if gate_name and seq == gate_after:
                await self._wait_gate(str(gate_name), float(controls.get("gate_timeout", 60)))
            if isinstance(payload, dict) and controls.get("stamp"):
                payload = dict(payload, fake_seq=seq, fake_sent_at=time.time())
            data = payload if isinstance(payload, str) else json.dumps(payload)
            if framing == "sse":
                frame = f"data: {data}\r\n\r\n"
            elif framing == "json_array":
                frame = ("[" if seq == 0 else ",\r\n") + json.dumps(payload, indent=2)
            else:
                frame = (f"event: {name}\n" if name else "") + f"data: {data}\n\n"
            await response.write(frame.encode())
            rec.events_sent = seq + 1
            if delay and seq < len(events) - 1:
                await asyncio.sleep(delay)
        if framing == "json_array":
            await response.write(b"]" if events else b"[]")
        await response.write_eof()
        return response

    async def _wait_gate(self, name: str, limit: float) -> None:
        gate = self.gate(name)
        # A threading.Event, because tests open it from their own thread; polled,
        # and bounded so a test that forgets to open the gate still ends.
        deadline = time.monotonic() + limit
        while not gate.is_set() and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        # Opened by the timeout too, so a test can tell the upstream was released.
        gate.set()

    @classmethod
    async def _truncated(cls, request: web.Request, payload: Any) -> web.StreamResponse:
        data = json.dumps(payload).encode()
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = len(data)
        await response.prepare(request)
        await response.write(data[: len(data) // 2])
        await cls._abort(request)
        return response

    @staticmethod
    async def _abort(request: web.Request) -> None:
        if request.transport is not None:
            request.transport.abort()
        raise _Aborted

    @staticmethod
    def _error(
        status: int,
        message: str,
        controls: dict[str, Any] | None = None,
        details: list[dict[str, Any]] | None = None,
    ) -> web.Response:
        controls = controls or {}
        body = controls.get("error_body", google_error(status, message, details))
        if controls.get("error_list"):
            body = [body]
        headers = {}
        if controls.get("retry_after") is not None:
            headers["Retry-After"] = str(controls["retry_after"])
        return web.json_response(body, status=status, headers=headers)
