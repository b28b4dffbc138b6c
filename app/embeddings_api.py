"""POST /v1/embeddings: OpenAI's embeddings request to Vertex AI's embedding models, answered in OpenAI's shape.

Vertex embeds fewer texts per call than OpenAI takes per request: gemini-embedding-* one per `:embedContent`
call, the text-embedding models up to 250 texts and 20,000 tokens per `:predict` call. So one request becomes
as many upstream calls as the model's limits need, run a few at a time through the worker's upstream client;
the vectors come back in input order and the usage summed, or the first call that fails answers for the
request (nothing is sent before every call has succeeded).

The request: `input` (a string, or a list of up to 2,048 non-empty strings; token-id arrays are refused, since
Vertex embeds text), `dimensions` (Vertex's outputDimensionality; the shortened vector is scaled back to unit
length, as OpenAI's are), `encoding_format` (`float`, the default, or `base64`: the vector's little-endian
float32 bytes, which the OpenAI SDKs ask for by default), `task_type` (Vertex's, such as `RETRIEVAL_QUERY`; not
OpenAI's), `user` (ignored). Other fields are ignored: Vertex's body is built from these alone.
"""

import asyncio
import base64
import math
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from app.aliases import Model, passthrough_not_found
from app.apis import OPENAI_EMBEDDINGS
from app.disconnect import CancelOnDisconnect
from app.errors import JSON_HEADERS, GatewayError
from app.gateway import Gateway
from app.logs import RequestLog
from app.pipeline import Call, ModelRoute
from app.relay import MAX_WHOLE_BODY, error_answer, read_answer
from app.upstream_call import UpstreamCall
from app.usage import normalize_usage

# OpenAI's own bound on the texts in one request (its API reference: "any array must be 2048 dimensions or less").
MAX_INPUTS = 2048
# Upstream calls one request has open at once. Each is a connection to Vertex: enough to embed a list of texts
# on a one-text-per-call model in seconds, few enough that one request cannot open hundreds of sockets or use
# the project's whole per-minute quota in a burst.
PARALLEL_CALLS = 8
# Vertex's EmbeddingTaskType names (RETRIEVAL_QUERY, RETRIEVAL_DOCUMENT, ...); Vertex checks the value itself.
TASK_TYPE = re.compile(r"[A-Z][A-Z_]{0,63}")
# A streamed answer (one over MAX_WHOLE_BODY) goes out in pieces of about this size.
STREAM_PIECE = 1 << 20


@dataclass(frozen=True, slots=True)
class Method:
    """How a family of Vertex embedding models is called, and how much one call may carry."""

    verb: str  # the model's method: `embedContent` or `predict`
    max_texts: int
    max_tokens: int | None  # per call, counted by `token_bound`


# gemini-embedding-*: one content per call (and :predict is refused for the gemini-embedding-2 family).
EMBED_CONTENT = Method("embedContent", 1, None)
# text-embedding-005, text-multilingual-embedding-002, ...: Vertex's documented limits per request.
PREDICT = Method("predict", 250, 20_000)


def method_of(model: Model) -> Method:
    return EMBED_CONTENT if model.name.startswith("gemini-embedding") else PREDICT


@dataclass(frozen=True, slots=True)
class EmbeddingsRequest:
    texts: list[str]
    dimensions: int | None
    base64: bool
    task_type: str | None


def _invalid(message: str, param: str) -> GatewayError:
    return GatewayError(400, message, param=param, code="invalid_request")


TOKEN_IDS = (
    "{where} holds token ids (integers), which this gateway cannot embed: Vertex AI embeds text, and ids from "
    "OpenAI's tokenizer mean nothing to it. Send the text itself, as a string or a list of strings (LangChain's "
    "OpenAIEmbeddings sends token ids unless it is created with check_embedding_ctx_length=False)"
)


def parse_request(request: dict[str, Any]) -> EmbeddingsRequest:
    """The fields of an OpenAI embeddings request this gateway reads, checked; a GatewayError (400) names the
    field that is wrong and how to fix it."""
    texts = _texts(request.get("input"))
    dimensions = request.get("dimensions")
    if dimensions is not None and (type(dimensions) is not int or dimensions < 1):
        raise _invalid(
            f"'dimensions' must be a whole number of at least 1, not {str(dimensions)[:50]!r}; it becomes Vertex's "
            "outputDimensionality (gemini-embedding-001 gives up to 3072)",
            "dimensions",
        )
    encoding = request.get("encoding_format")
    if encoding not in (None, "float", "base64"):
        raise _invalid(f"'encoding_format' must be 'float' or 'base64', not {str(encoding)[:50]!r}", "encoding_format")
    task_type = request.get("task_type")
    if task_type is not None and not (isinstance(task_type, str) and TASK_TYPE.fullmatch(task_type)):
        raise _invalid(
            f"'task_type' must be one of Vertex's task types, such as RETRIEVAL_QUERY or RETRIEVAL_DOCUMENT, not "
            f"{str(task_type)[:70]!r}",
            "task_type",
        )
    return EmbeddingsRequest(texts, dimensions, encoding == "base64", task_type)


def _texts(value: object) -> list[str]:
    if isinstance(value, str):
        texts: list[Any] = [value]
    elif isinstance(value, list) and value:
        texts = value
    elif value is None:
        raise _invalid("'input' is required: the text to embed, as a string or a list of strings", "input")
    elif isinstance(value, list):
        raise _invalid("'input' is an empty list: send at least one text to embed", "input")
    else:
        raise _invalid("'input' must be a string or a list of strings", "input")
    if len(texts) > MAX_INPUTS:
        raise _invalid(
            f"'input' has {len(texts)} texts; one request takes at most {MAX_INPUTS} (as on OpenAI): send them "
            "in several requests",
            "input",
        )
    for index, text in enumerate(texts):
        if isinstance(text, str):
            if not text:
                raise _invalid(
                    f"input[{index}] is an empty string, which Vertex AI cannot embed: leave it out", f"input[{index}]"
                )
            continue
        if type(text) is int and all(type(t) is int for t in texts):  # `input` is one list of token ids
            raise _invalid(TOKEN_IDS.format(where="'input'"), "input")
        if isinstance(text, list) and text and all(type(t) is int for t in text):
            raise _invalid(TOKEN_IDS.format(where=f"input[{index}]"), f"input[{index}]")
        raise _invalid(f"input[{index}] must be a string (the text to embed)", f"input[{index}]")
    return texts


def token_bound(text: str) -> int:
    """At least as many tokens as Vertex counts for `text`: a token covers one or more bytes of its UTF-8, and a
    tokenizer adds at most a start and an end marker."""
    return len(text.encode("utf-8", "surrogatepass")) + 2


def batches(texts: Sequence[str], method: Method) -> list[range]:
    """The texts in consecutive runs, each within one call's limits (a text over the token limit goes alone, and
    Vertex says what it thinks of it)."""
    runs: list[range] = []
    start, tokens = 0, 0
    for index, text in enumerate(texts):
        cost = token_bound(text) if method.max_tokens is not None else 0
        full = index - start >= method.max_texts
        if index > start and (full or (method.max_tokens is not None and tokens + cost > method.max_tokens)):
            runs.append(range(start, index))
            start, tokens = index, 0
        tokens += cost
    runs.append(range(start, len(texts)))
    return runs


def upstream_body(method: Method, texts: Sequence[str], ask: EmbeddingsRequest) -> bytes:
    """What one call sends Vertex: an EmbedContentRequest, or a predict request for the text embedding models."""
    if method.verb == "embedContent":
        assert len(texts) == 1, "embedContent takes one content"
        body: dict[str, Any] = {"content": {"parts": [{"text": texts[0]}]}}
        config: dict[str, Any] = {}
        if ask.dimensions is not None:
            config["outputDimensionality"] = ask.dimensions
        if ask.task_type is not None:
            config["taskType"] = ask.task_type
        if config:
            body["embedContentConfig"] = config
        return orjson.dumps(body)
    extra = {"task_type": ask.task_type} if ask.task_type is not None else {}
    body = {"instances": [{"content": text, **extra} for text in texts]}
    if ask.dimensions is not None:
        body["parameters"] = {"outputDimensionality": ask.dimensions}
    return orjson.dumps(body)


def _unreadable(what: str) -> GatewayError:
    return GatewayError(
        502, f"Vertex AI's embedding answer is not what the gateway reads ({what}); retry", code="upstream_invalid"
    )


def read_vectors(method: Method, body: bytes, count: int) -> tuple[list[list[float]], int]:
    """The vectors of one call's answer, in order, and the tokens Vertex counted for them."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise _unreadable("not JSON") from None
    if not isinstance(data, dict):
        raise _unreadable("not a JSON object")
    if method.verb == "embedContent":
        embedding = data.get("embedding")
        usage = data.get("usageMetadata")
        values = embedding.get("values") if isinstance(embedding, dict) else None
        tokens = usage.get("promptTokenCount", 0) if isinstance(usage, dict) else 0
        found: list[Any] = [values]
    else:
        predictions = data.get("predictions")
        if not isinstance(predictions, list):
            raise _unreadable("no predictions")
        found, tokens = [], 0
        for prediction in predictions:
            embeddings = prediction.get("embeddings") if isinstance(prediction, dict) else None
            embeddings = embeddings if isinstance(embeddings, dict) else {}
            statistics = embeddings.get("statistics")
            found.append(embeddings.get("values"))
            counted = statistics.get("token_count", 0) if isinstance(statistics, dict) else 0
            tokens += int(counted) if isinstance(counted, int | float) else 0
    if len(found) != count:
        raise _unreadable(f"{len(found)} embeddings for {count} texts")
    for values in found:
        if not isinstance(values, list) or not values:
            raise _unreadable("an embedding without values")
    return found, tokens if type(tokens) is int else 0


def encode(values: list[float], unit: bool, as_base64: bool) -> bytes:
    """One vector as the JSON value OpenAI's answer carries: an array of numbers, or a base64 string of its
    little-endian float32 bytes. `unit` scales it to length 1 (Vertex shortens a vector by cutting it)."""
    try:
        if unit:
            norm = math.hypot(*values)
            if norm > 0:
                values = [x / norm for x in values]
        else:
            math.fsum(values)  # every value is a number
        if as_base64:
            return b'"' + base64.b64encode(struct.pack(f"<{len(values)}f", *values)) + b'"'
    except (TypeError, OverflowError, struct.error):
        raise _unreadable("an embedding value that is not a float32 number") from None
    return orjson.dumps(values)


class UpstreamFailed(Exception):
    """A call Vertex answered with an error: the answer the caller gets, already in OpenAI's shape."""

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes, logged: str) -> None:
        super().__init__(logged)
        self.status, self.headers, self.body, self.logged = status, headers, body, logged


class Embeddings(ModelRoute):
    """POST /v1/embeddings: Vertex's embedding models, in as many upstream calls as their limits need."""

    forwards_body = False  # Vertex gets texts and numbers read here, never the caller's own fields

    def __init__(self, gateway: Gateway) -> None:
        super().__init__(gateway, OPENAI_EMBEDDINGS, {})

    def serves(self, model: Model) -> bool:
        return model.kind == "embedding"

    async def handle(self, call: Call) -> None:
        model, request = await self.model_request(call)
        ask = parse_request(request)
        method = method_of(model)
        url = self.gateway.urls.model_method(model, method.verb)
        # Vertex's own 404 would only say "not found": say how to enable the model or map it to an alias.
        not_found = passthrough_not_found(model, self.gateway.models.aliases) if model.passthrough else None
        runs = batches(ask.texts, method)
        targets = [
            UpstreamCall(url, upstream_body(method, ask.texts[run.start : run.stop], ask), False, not_found=not_found)
            for run in runs
        ]
        line = call.line
        line.stream, line.upstream_api = False, method.verb
        vectors: list[bytes] = [b""] * len(ask.texts)
        tokens = 0
        try:
            with CancelOnDisconnect(call.receive) as watch:
                tokens = await self.embed(line, method, ask, runs, targets, vectors)
        except UpstreamFailed as failed:
            line.error = failed.logged
            line.mark_first_byte()
            await call.out.whole(failed.status, failed.headers, failed.body)
            return
        if watch.disconnected:
            line.outcome = "client_disconnected"
            return
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        line.usage = normalize_usage(usage)
        await answer(call, vectors, request["model"], usage)

    async def embed(
        self,
        line: RequestLog,
        method: Method,
        ask: EmbeddingsRequest,
        runs: list[range],
        targets: list[UpstreamCall],
        vectors: list[bytes],
    ) -> int:
        """Run every call, at most PARALLEL_CALLS at once, filling `vectors`; the tokens counted. The first call
        that fails ends the others (their responses are closed) and raises."""
        upstream = self.gateway.upstream
        assert upstream is not None, "the lifespan starts the upstream before the first request"
        unit = ask.dimensions is not None
        shape = self.client_api.shape
        pending = iter(range(len(runs)))
        counted = [0]

        async def work() -> None:
            for index in pending:  # shared by the workers: each call is taken once
                run, target = runs[index], targets[index]
                async with upstream.exchange(target.url, target.payload, False, line) as response:
                    if response.status >= 400:
                        raise UpstreamFailed(*await error_answer(response, target, shape))
                    body = await read_answer(response)
                found, tokens = read_vectors(method, body, len(run))
                for position, values in zip(run, found, strict=True):
                    vectors[position] = encode(values, unit, ask.base64)
                counted[0] += tokens

        workers = min(PARALLEL_CALLS, len(runs))
        if workers == 1:
            await work()
            return counted[0]
        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(workers):
                    group.create_task(work())
        except ExceptionGroup as failures:
            raise failures.exceptions[0] from None
        return counted[0]


async def answer(call: Call, vectors: list[bytes], model_name: str, usage: dict[str, int]) -> None:
    """OpenAI's list of embeddings: whole, or (over MAX_WHOLE_BODY, Cloud Run's limit for a whole HTTP/1
    answer) sent in pieces as a chunked stream of the same JSON."""
    for index, vector in enumerate(vectors):
        vectors[index] = b'{"object":"embedding","index":%d,"embedding":%b}' % (index, vector)
    head = b'{"object":"list","data":['
    tail = b'],"model":%b,"usage":%b}' % (orjson.dumps(model_name), orjson.dumps(usage))
    size = len(head) + sum(map(len, vectors)) + len(vectors) - 1 + len(tail)
    line = call.line
    line.mark_first_byte()
    if size <= MAX_WHOLE_BODY:
        await call.out.whole(200, JSON_HEADERS, head + b",".join(vectors) + tail)
        return
    await call.out.start_stream(200, JSON_HEADERS)
    piece: list[bytes] = [head]
    held = len(head)
    for index, item in enumerate(vectors):
        piece.append(item if index == 0 else b"," + item)
        held += len(item) + 1
        if held >= STREAM_PIECE:
            await call.out.chunk(b"".join(piece))
            piece, held = [], 0
    piece.append(tail)
    await call.out.chunk(b"".join(piece))
    await call.out.end_stream()
