"""A fake Vertex AI endpoint: Gemini's OpenAI-compatible chat and Claude's rawPredict.

Tests steer it through a `"fake"` object in the request body (it reaches the fake
only if the gateway passes unknown fields through) or, when the body cannot carry
it, through one-shot scripts queued with `FakeVertex.push()`:

    chunks: int         stream the text in this many content chunks
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
import collections
import json
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes import BackgroundServer
from tests.fakes.vertex_chat import Event, last_user_text, plan_chat, returned_signatures
from tests.fakes.vertex_claude import _last_user_text, body_problem, count_tokens, plan_message

_PREFIX = r"^/(?:v1|v1beta1)/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)"
CHAT_PATH = re.compile(_PREFIX + r"/endpoints/openapi/chat/completions$")
CLAUDE_PATH = re.compile(
    _PREFIX + r"/publishers/anthropic/models/(?P<model>[^/:]+):(?P<verb>rawPredict|streamRawPredict)$"
)

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


def google_error(status: int, message: str) -> dict[str, Any]:
    return {
        "error": {
            "code": status,
            "message": message,
            "status": GOOGLE_STATUS.get(status, "UNKNOWN"),
        }
    }


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
    def __init__(self, valid_tokens: set[str] | None = None) -> None:
        super().__init__()
        # Shared with FakeMetadata: tokens it issues become valid here.
        self.valid_tokens: set[str] = valid_tokens if valid_tokens is not None else set()
        self._lock = threading.Lock()
        self._requests: list[Recorded] = []
        self._scripts: collections.deque[tuple[str | None, dict[str, Any]]] = collections.deque()
        self._gates: dict[str, threading.Event] = {}
        self.signatures_issued: list[str] = []
        self.signatures_returned: list[str] = []
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
        if chat:
            rec.route = "chat"
        elif claude:
            rec.route = "count_tokens" if claude["model"] == "count-tokens" else "claude"

        if controls.get("reset"):
            await self._abort(request)
        if controls.get("header_delay"):
            await asyncio.sleep(float(controls["header_delay"]))
        if controls.get("status"):
            return self._error(int(controls["status"]), "Scripted failure.", controls)

        if chat:
            return await self._chat(request, rec, body, controls)
        if claude and rec.route == "count_tokens" and claude["verb"] == "rawPredict":
            if claude["location"] not in COUNT_TOKENS_LOCATIONS:
                # As Vertex does: count-tokens exists in some regions only, never at `global`.
                return self._error(
                    404,
                    f"Publisher Model `projects/{claude['project']}/locations/{claude['location']}/publishers/"
                    "anthropic/models/count-tokens` was not found or your project does not have access to it.",
                )
            if not isinstance(body.get("model"), str):
                return self._error(400, 'Invalid request: "model" is required for count-tokens.')
            return web.json_response(count_tokens(body))
        if claude and rec.route == "claude":
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
        plan = plan_chat(self._offered_tools(body, "chat"), controls)
        rec.issued_signature = plan.signature
        with self._lock:
            self.signatures_returned.extend(returned_signatures(body["messages"]))
            if plan.signature:
                self.signatures_issued.append(plan.signature)
        if body.get("stream"):
            return await self._stream(request, rec, plan.events, controls)
        if controls.get("truncate"):
            return await self._truncated(request, plan.completion)
        return web.json_response(plan.completion)

    async def _stream(
        self,
        request: web.Request,
        rec: Recorded,
        events: list[Event],
        controls: dict[str, Any],
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
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
            frame = (f"event: {name}\n" if name else "") + f"data: {data}\n\n"
            await response.write(frame.encode())
            rec.events_sent = seq + 1
            if delay and seq < len(events) - 1:
                await asyncio.sleep(delay)
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
    def _error(status: int, message: str, controls: dict[str, Any] | None = None) -> web.Response:
        controls = controls or {}
        body = controls.get("error_body", google_error(status, message))
        if controls.get("error_list"):
            body = [body]
        headers = {}
        if controls.get("retry_after") is not None:
            headers["Retry-After"] = str(controls["retry_after"])
        return web.json_response(body, status=status, headers=headers)
