"""app.upstream_client against raw HTTP servers on 127.0.0.1, on asyncio's loop and on uvloop.

Each server is a coroutine per accepted connection, so a test scripts exactly what upstream does
(answer, stall, close, reset). Timeouts in the scenarios are the client's own settings under test;
the outer bound of every test only turns a hang into a failure.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import uvloop

from app import upstream_client
from app.upstream import RETRYABLE_ERRORS
from app.upstream_client import (
    MAX_HEAD_BYTES,
    MAX_HEADERS,
    BodyTooLarge,
    ConnectError,
    ConnectTimeout,
    Disconnected,
    HeadersTimeout,
    HeadersTooLarge,
    ProtocolError,
    ReadTimeout,
    UpstreamClient,
    default_ssl_context,
)
from tests.fakes.frontend import write_self_signed

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
BOUND = 20.0  # seconds: a hang guard, never a pass/fail threshold


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Callable[[Callable[[], Awaitable[Any]]], Any]:
    factory = uvloop.new_event_loop if request.param == "uvloop" else None

    def run(scenario: Callable[[], Awaitable[Any]]) -> Any:
        async def bounded() -> Any:
            async with asyncio.timeout(BOUND):
                return await scenario()

        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(bounded())

    return run


class Server:
    """Runs `handler` for every accepted connection; counts connections and requests."""

    def __init__(self, handler: Handler, ssl_context: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.ssl_context = ssl_context
        self.connections = 0
        self.requests: list[tuple[bytes, bytes]] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self.writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> Server:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.ssl_context)
        self.port = self.server.sockets[0].getsockname()[1]
        scheme = "https" if self.ssl_context else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}/v1/chat?x=1"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        for writer in self.writers:
            writer.transport.abort()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        try:
            await self.handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # the end of the test (cancelled) or the client went away
        finally:
            writer.transport.abort()

    async def read_request(self, reader: asyncio.StreamReader) -> tuple[bytes, bytes] | None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        body = await reader.readexactly(length)
        self.requests.append((head, body))
        return head, body


def json_answer(body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s" % (
        len(body),
        extra,
        body,
    )


def keepalive(server_ref: list[Server], answer: bytes = b'{"ok": true}') -> Handler:
    """Answers every request on the connection with the same JSON body."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await server_ref[0].read_request(reader) is not None:
            writer.write(json_answer(answer))
            await writer.drain()

    return handler


async def saw_eof(reader: asyncio.StreamReader) -> bool:
    """True once the peer closed (EOF or reset); anything else it sends is drained."""
    try:
        while await reader.read(65536):
            pass
    except ConnectionError:
        pass
    return True


def client(**kwargs: Any) -> UpstreamClient:
    settings: dict[str, Any] = {"connect_timeout": 2.0, "idle_timeout": 5.0}
    settings.update(kwargs)
    return UpstreamClient(**settings)


async def until(condition: Callable[[], bool]) -> None:
    """Polls a condition on state no event exposes (bounded by the test's BOUND)."""
    while not condition():  # noqa: ASYNC110
        await asyncio.sleep(0.005)


HEADERS = {"Content-Type": "application/json", "Authorization": "Bearer t0ken"}


def test_json_answer_and_request_shape(run: Any) -> None:
    async def scenario() -> None:
        ref: list[Server] = []
        async with Server(keepalive(ref, b'{"answer": 42}')) as server:
            ref.append(server)
            upstream = client()
            response = await upstream.post(server.url, b'{"q": 1}', HEADERS)
            assert response.status == 200
            assert response.headers.get("content-type") == "application/json"
            assert response.headers.get("CONTENT-TYPE") == "application/json"
            assert response.headers.get("Retry-After") is None
            assert not response.at_eof()
            assert await response.read() == b'{"answer": 42}'
            assert response.at_eof()
            response.release()
            head, body = server.requests[0]
            assert body == b'{"q": 1}'
            lines = head.split(b"\r\n")
            assert lines[0] == b"POST /v1/chat?x=1 HTTP/1.1"
            assert f"Host: 127.0.0.1:{server.port}".encode() in lines
            assert b"Content-Length: 8" in lines
            assert b"Authorization: Bearer t0ken" in lines
            assert not any(line.lower().startswith((b"cookie", b"connection")) for line in lines)
            await upstream.close()

    run(scenario)


def test_chunked_stream_arrives_chunk_by_chunk(run: Any) -> None:
    async def scenario() -> None:
        gate = asyncio.Event()

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
            writer.write(b"d\r\ndata: first\n\n\r\n")
            await writer.drain()
            await gate.wait()  # the next event only once the client has the first
            writer.write(b"e\r\ndata: second\n\n\r\n5\r\n[END]\r\n0\r\n\r\n")
            await writer.drain()
            await server.read_request(reader)

        async with Server(handler) as server:
            upstream = client()
            response = await upstream.post(server.url, b"{}", {"Accept": "text/event-stream"})
            assert response.headers.get("Content-Type") == "text/event-stream"
            chunks = aiter(response)
            assert await anext(chunks) == b"data: first\n\n"
            gate.set()
            rest = [chunk async for chunk in chunks]
            assert b"".join(rest) == b"data: second\n\n[END]"
            assert response.at_eof()
            response.release()
            assert sum(len(stack) for stack in upstream._idle.values()) == 1
            await upstream.close()

    run(scenario)


def test_keep_alive_reuses_one_connection(run: Any) -> None:
    async def scenario() -> None:
        ref: list[Server] = []
        async with Server(keepalive(ref)) as server:
            ref.append(server)
            upstream = client()
            for i in range(5):
                response = await upstream.post(server.url, b"%d" % i, {"X-N": str(i)})
                assert await response.read() == b'{"ok": true}'
                response.release()
            assert server.connections == 1
            assert [body for _, body in server.requests] == [b"0", b"1", b"2", b"3", b"4"]
            await upstream.close()

    run(scenario)


@pytest.mark.parametrize("how", ["fin", "rst"])
def test_reused_connection_closed_by_server_is_disconnected_for_the_caller_to_retry(run: Any, how: str) -> None:
    async def scenario() -> None:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            if server.connections == 1:
                await server.read_request(reader)
                writer.write(json_answer(b"one"))
                await writer.drain()
                # The second request arrives as the server gives up on the idle connection.
                await server.read_request(reader)
                if how == "rst":
                    writer.get_extra_info("socket").setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )
                return  # the connection is closed without a byte of answer
            while await server.read_request(reader) is not None:
                writer.write(json_answer(b"two"))
                await writer.drain()

        async with Server(handler) as server:
            upstream = client()
            first = await upstream.post(server.url, b"1", HEADERS)
            assert await first.read() == b"one"
            first.release()
            # A POST is never resent behind the caller's back (as aiohttp does for a POST): the failure is
            # one the caller's retry rules take as "nothing reached the client yet, safe to try again".
            with pytest.raises(Disconnected) as caught:
                await upstream.post(server.url, b"2", HEADERS)
            assert isinstance(caught.value, RETRYABLE_ERRORS)
            assert server.connections == 1
            second = await upstream.post(server.url, b"2", HEADERS)  # the caller's retry: a new connection
            assert await second.read() == b"two"
            second.release()
            assert server.connections == 2
            assert [body for _, body in server.requests] == [b"1", b"2", b"2"]
            await upstream.close()

    run(scenario)


def test_idle_connection_closed_by_server_is_not_used(run: Any) -> None:
    async def scenario() -> None:
        closed = asyncio.Event()

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.read_request(reader)
            writer.write(json_answer(b"x"))
            await writer.drain()
            if server.connections == 1:
                closed.set()
                return
            await server.read_request(reader)

        async with Server(handler) as server:
            upstream = client()
            response = await upstream.post(server.url, b"1", HEADERS)
            await response.read()
            response.release()
            await closed.wait()
            await until(lambda: not upstream._conns)  # the client noticed the close while idle
            response = await upstream.post(server.url, b"2", HEADERS)
            assert await response.read() == b"x"
            response.release()
            assert server.connections == 2
            await upstream.close()

    run(scenario)


@pytest.mark.parametrize("reused", [True, False])
def test_no_retry_once_answer_bytes_arrived_or_on_a_new_connection(run: Any, reused: bool) -> None:
    async def scenario() -> None:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            if reused:
                await server.read_request(reader)
                writer.write(json_answer(b"one"))
            await server.read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Le" if reused else b"")
            await writer.drain()

        async with Server(handler) as server:
            upstream = client()
            if reused:
                first = await upstream.post(server.url, b"1", HEADERS)
                await first.read()
                first.release()
            with pytest.raises(Disconnected):
                await upstream.post(server.url, b"2", HEADERS)
            assert server.connections == 1
            await upstream.close()

    run(scenario)


def test_connect_refused_is_connect_error(run: Any) -> None:
    async def scenario() -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        upstream = client()
        with pytest.raises(ConnectError) as caught:
            await upstream.post(f"http://127.0.0.1:{port}/", b"", HEADERS)
        assert not isinstance(caught.value, ConnectTimeout)
        await upstream.close()

    run(scenario)


def test_unresolvable_host_is_connect_error(run: Any) -> None:
    async def scenario() -> None:
        upstream = client()
        with pytest.raises(ConnectError):
            await upstream.post("http://no-such-host.invalid/", b"", HEADERS)
        await upstream.close()

    run(scenario)


def test_tls_handshake_stall_is_connect_timeout_and_closes_the_socket(run: Any) -> None:
    async def scenario() -> None:
        eof = asyncio.Event()

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await saw_eof(reader)  # accepts, reads the ClientHello, never answers
            eof.set()

        async with Server(handler) as server:
            upstream = client(connect_timeout=0.3, ssl_context=default_ssl_context())
            with pytest.raises(ConnectTimeout) as caught:
                await upstream.post(f"https://127.0.0.1:{server.port}/", b"", HEADERS)
            assert isinstance(caught.value, TimeoutError)  # so `except TimeoutError` code still sees it
            await eof.wait()  # the half-open TLS connection was closed, not leaked
            assert not upstream._conns
            await upstream.close()

    run(scenario)


def test_full_backlog_is_connect_timeout(run: Any) -> None:
    async def scenario() -> None:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        fillers = []
        try:
            # Fill the accept queue (never accepted) so further SYNs are dropped and connect hangs.
            for _ in range(4):
                filler = socket.socket()
                filler.setblocking(False)
                filler.connect_ex(listener.getsockname())
                fillers.append(filler)
            upstream = client(connect_timeout=0.3)
            with pytest.raises(ConnectTimeout):
                await upstream.post(f"http://127.0.0.1:{listener.getsockname()[1]}/", b"", HEADERS)
            await upstream.close()
        finally:
            for filler in fillers:
                filler.close()
            listener.close()

    run(scenario)


def test_no_answer_is_read_timeout_and_closes(run: Any) -> None:
    async def scenario() -> None:
        eof = asyncio.Event()

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.read_request(reader)
            await saw_eof(reader)
            eof.set()

        async with Server(handler) as server:
            upstream = client(idle_timeout=0.3)
            with pytest.raises(ReadTimeout) as caught:
                await upstream.post(server.url, b"", HEADERS)
            assert isinstance(caught.value, TimeoutError)
            await eof.wait()
            await upstream.close()

    run(scenario)


def test_body_stall_is_read_timeout_but_a_slow_reader_is_not(run: Any) -> None:
    async def scenario() -> None:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\none\r\n")
            await writer.drain()
            await saw_eof(reader)  # then nothing more

        async with Server(handler) as server:
            upstream = client(idle_timeout=0.3)
            response = await upstream.post(server.url, b"", HEADERS)
            # A reader busy elsewhere for longer than idle_timeout still gets what arrived.
            await asyncio.sleep(0.6)
            chunks = aiter(response)
            assert await anext(chunks) == b"one"
            with pytest.raises(ReadTimeout):
                await anext(chunks)
            with pytest.raises(ReadTimeout):  # and stays failed
                await response.read()
            response.close()
            await upstream.close()

    run(scenario)


@pytest.mark.parametrize("framing", ["chunked", "length"])
def test_server_dying_mid_body_is_disconnected(run: Any, framing: str) -> None:
    async def scenario() -> None:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.read_request(reader)
            if framing == "chunked":
                writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
            else:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhello")
            await writer.drain()

        async with Server(handler) as server:
            upstream = client()
            response = await upstream.post(server.url, b"", HEADERS)
            received = b""
            with pytest.raises(Disconnected):
                async for chunk in response:
                    received += chunk
            assert received == b"hello"  # what arrived before the end is still delivered
            assert not response.at_eof()
            response.release()  # not reusable: closes
            assert not upstream._idle.get(("http", "127.0.0.1", server.port))
            await upstream.close()

    run(scenario)


def test_close_mid_body_is_seen_by_the_server(run: Any) -> None:
    async def scenario() -> None:
        eof = asyncio.Event()

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
            await writer.drain()
            await saw_eof(reader)
            eof.set()

        async with Server(handler) as server:
            upstream = client()
            response = await upstream.post(server.url, b"", HEADERS)
            assert await response.read(5) == b"hello"
            response.close()
            await eof.wait()
            with pytest.raises(Disconnected):
                await response.read(1)
            await until(lambda: not upstream._conns)
            await upstream.close()

    run(scenario)


def test_release_pools_only_fully_read_answers(run: Any) -> None:
    async def scenario() -> None:
        eofs: list[asyncio.Event] = []

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            eof = asyncio.Event()
            eofs.append(eof)
            while await server.read_request(reader) is not None:
                writer.write(json_answer(b"0123456789"))
                await writer.drain()
            eof.set()

        async with Server(handler) as server:
            upstream = client()
            whole = await upstream.post(server.url, b"", HEADERS)
            assert await whole.read(4) == b"0123"
            assert await whole.read(100) == b"456789"
            whole.release()
            again = await upstream.post(server.url, b"", HEADERS)
            assert server.connections == 1
            assert await again.read(3) == b"012"
            again.release()  # partly read: must not be pooled
            await eofs[0].wait()
            third = await upstream.post(server.url, b"", HEADERS)
            assert await third.read() == b"0123456789"
            third.release()
            assert server.connections == 2
            await upstream.close()
            await eofs[1].wait()  # close() closes pooled connections too
            with pytest.raises(ConnectError):
                await upstream.post(server.url, b"", HEADERS)

    run(scenario)


def test_connection_close_and_http10_answers_are_not_pooled(run: Any) -> None:
    async def scenario() -> None:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.read_request(reader)
            if server.connections == 1:
                writer.write(json_answer(b"closing", b"Connection: close\r\n"))
            else:  # HTTP/1.0 style: no length, the body ends with the connection
                writer.write(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end")
                await writer.drain()
                return
            await writer.drain()
            await saw_eof(reader)

        async with Server(handler) as server:
            upstream = client()
            first = await upstream.post(server.url, b"", HEADERS)
            assert await first.read() == b"closing"
            first.release()
            second = await upstream.post(server.url, b"", HEADERS)
            assert await second.read() == b"until the end"
            assert second.at_eof()
            second.release()
            assert server.connections == 2
            assert not upstream._idle.get(("http", "127.0.0.1", server.port))
            await upstream.close()

    run(scenario)


def test_garbage_answer_is_protocol_error(run: Any) -> None:
    async def scenario() -> None:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.read_request(reader)
            writer.write(b"SPDY/9 what\r\n\r\n")
            await writer.drain()
            await saw_eof(reader)

        async with Server(handler) as server:
            upstream = client()
            with pytest.raises(ProtocolError):
                await upstream.post(server.url, b"", HEADERS)
            await upstream.close()

    run(scenario)


def test_idle_pooled_connections_expire(run: Any) -> None:
    async def scenario() -> None:
        eof = asyncio.Event()

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while await server.read_request(reader) is not None:
                writer.write(json_answer(b"x"))
                await writer.drain()
            eof.set()

        async with Server(handler) as server:
            upstream = client(pool_idle_seconds=0.2)
            response = await upstream.post(server.url, b"", HEADERS)
            await response.read()
            response.release()
            assert upstream._sweeper is not None
            await eof.wait()  # the server sees the idle connection closed
            assert not upstream._idle
            assert upstream._sweeper is None  # nothing left to watch: no timer
            await upstream.close()

    run(scenario)


def test_slow_reader_pauses_the_socket(run: Any) -> None:
    size = 50 * 1024 * 1024

    async def scenario() -> None:
        transports: list[asyncio.WriteTransport] = []

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.read_request(reader)
            transports.append(writer.transport)
            block = bytes(range(256)) * 4096  # 1 MiB
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
            for _ in range(size // len(block)):
                writer.write(block)
            await writer.drain()
            await saw_eof(reader)

        async with Server(handler) as server:
            upstream = client()
            response = await upstream.post(server.url, b"", HEADERS)
            first = await response.read(1)
            # The reader stops; the client must stop reading from the socket, so the data
            # backs up in the server's own buffer instead of in the client's memory.
            await until(lambda: response._paused and transports[0].get_write_buffer_size() > size // 2)
            await asyncio.sleep(0.1)
            assert response._buffered <= upstream_client.HIGH_WATER + 1024 * 1024
            assert transports[0].get_write_buffer_size() > size // 2
            total = len(first)
            async for chunk in response:
                total += len(chunk)
            assert total == size
            response.release()
            await upstream.close()

    run(scenario)


def test_cancelled_reader_closes_the_connection(run: Any) -> None:
    async def scenario() -> None:
        eofs: list[asyncio.Event] = []

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            eof = asyncio.Event()
            eofs.append(eof)
            await server.read_request(reader)
            if server.connections == 2:  # the first waits for its answer forever
                writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\none\r\n")
                await writer.drain()
            await saw_eof(reader)
            eof.set()

        async with Server(handler) as server:
            upstream = client()
            waiting = asyncio.ensure_future(upstream.post(server.url, b"", HEADERS))
            await until(lambda: len(server.requests) == 1)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            await eofs[0].wait()

            response = await upstream.post(server.url, b"", HEADERS)
            got: list[bytes] = []

            async def consume() -> None:
                async for chunk in response:
                    got.append(chunk)

            reading = asyncio.ensure_future(consume())
            await until(lambda: got == [b"one"])
            reading.cancel()
            with pytest.raises(asyncio.CancelledError):
                await reading
            await eofs[1].wait()
            response.release()  # after a cancel: never pooled
            assert not upstream._idle
            await until(lambda: not upstream._conns)
            await upstream.close()

    run(scenario)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_self_signed(tmp_path_factory.mktemp("tls"))


def test_https_with_sni_keep_alive_and_close(run: Any, certificate: tuple[Path, Path]) -> None:
    cert_path, key_path = certificate

    async def scenario() -> None:
        server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_context.load_cert_chain(cert_path, key_path)
        names: list[str | None] = []
        server_context.sni_callback = lambda _sock, name, _ctx: names.append(name)  # type: ignore[assignment,func-returns-value]
        eof = asyncio.Event()

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while (request := await server.read_request(reader)) is not None:
                if request[1] == b"stream":
                    writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\none\r\n")
                    await writer.drain()
                    await saw_eof(reader)
                    eof.set()
                    return
                writer.write(json_answer(b"secure"))
                await writer.drain()

        async with Server(handler, server_context) as server:
            url = f"https://localhost:{server.port}/v1"
            # The default context does not trust a self-signed certificate.
            untrusting = client(ssl_context=default_ssl_context())
            with pytest.raises(ConnectError):
                await untrusting.post(url, b"", HEADERS)
            await untrusting.close()
            plain = client()  # made without a TLS context: never sends in clear what was meant for https
            with pytest.raises(ValueError, match="ssl_context"):
                await plain.post(url, b"", HEADERS)
            await plain.close()

            upstream = client(ssl_context=ssl.create_default_context(cafile=str(cert_path)))
            for _ in range(3):
                response = await upstream.post(url, b"json", HEADERS)
                assert await response.read() == b"secure"
                response.release()
            assert server.connections == 1  # one kept-alive connection (the refused handshake never got here)
            assert "localhost" in names
            response = await upstream.post(url, b"stream", HEADERS)
            assert await response.read(3) == b"one"
            response.close()
            await eof.wait()
            await upstream.close()

    run(scenario)


def test_headers_that_would_break_the_request_are_refused(run: Any) -> None:
    async def scenario() -> None:
        upstream = client()
        for headers in (
            {"X-Evil": "a\r\nHost: elsewhere"},
            {"X-Evil": "a\nb"},
            {"Content-Length": "5"},
            {"host": "other"},
        ):
            with pytest.raises(ValueError):
                await upstream.post("http://127.0.0.1:9/", b"", headers)
        with pytest.raises(ValueError):
            await upstream.post("ftp://127.0.0.1/", b"", {})
        await upstream.close()

    run(scenario)


def test_no_socket_or_task_outlives_the_client(run: Any) -> None:
    async def scenario() -> None:
        ended = {"client": 0, "server": 0}  # who closed each connection

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while (request := await server.read_request(reader)) is not None:
                if request[1] == b"stall":
                    break
                if request[1] == b"die":
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nhalf")
                    await writer.drain()
                    ended["server"] += 1
                    return
                writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\none\r\n")
                if request[1] != b"partial":
                    writer.write(b"0\r\n\r\n")
                await writer.drain()
            await saw_eof(reader)
            ended["client"] += 1

        def open_fds() -> int:
            return len(list(Path("/proc/self/fd").iterdir()))

        async with Server(handler) as server:  # a warm-up, so the loop's own lazily made fds are counted
            warm = client()
            await (await warm.post(server.url, b"ok", HEADERS)).read()
            await warm.close()
        before = open_fds()
        async with Server(handler) as server:
            upstream = client(idle_timeout=0.3)
            for body in (b"ok", b"partial", b"stall", b"die", b"ok", b"cancel", b"ok"):
                try:
                    response = await upstream.post(server.url, body, HEADERS)
                    if body == b"cancel":
                        reading = asyncio.ensure_future(response.read())
                        await until(lambda r=response: bool(r._chunks) or r._complete)  # type: ignore[misc]
                        reading.cancel()
                        await asyncio.gather(reading, return_exceptions=True)
                    elif body == b"partial":
                        await response.read(1)
                    else:
                        await response.read()
                    response.release()
                except (ReadTimeout, Disconnected):
                    pass
            await upstream.close()
            # Every connection the server accepted ends: closed by the client, or by the server ("die").
            await until(lambda: ended["client"] + ended["server"] == server.connections)
            assert ended["server"] == 1
            assert server.connections == 5  # ok+partial, stall, die, ok+cancel, ok
        await until(lambda: open_fds() == before)
        current = asyncio.current_task()
        assert [task for task in asyncio.all_tasks() if task is not current] == []

    run(scenario)


# -- hostile answers: the head and a whole body are bounded, the head has a deadline (issue 16) ----


def test_repeated_headers_are_joined_in_order_and_an_informational_head_is_skipped(run: Any) -> None:
    repeats = MAX_HEADERS - 10

    async def scenario() -> None:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while await server.read_request(reader) is not None:
                lines = b"".join(b"X-Repeat: v%d\r\n" % i for i in range(repeats))
                writer.write(b"HTTP/1.1 100 Continue\r\nX-Repeat: early\r\n\r\n")
                writer.write(json_answer(b"{}", lines + b"Vary: a\r\nvary: b\r\n"))
                await writer.drain()

        async with Server(handler) as server:
            upstream = client()
            for _ in range(2):  # the second on the pooled connection: nothing carried over
                response = await upstream.post(server.url, b"", HEADERS)
                assert response.headers["x-repeat"] == ", ".join(f"v{i}" for i in range(repeats))
                assert response.headers["Vary"] == "a, b"
                assert response.headers["content-type"] == "application/json"
                assert await response.read() == b"{}"
                response.release()
            assert server.connections == 1
            await upstream.close()

    run(scenario)


def test_a_head_near_the_bounds_is_accepted(run: Any) -> None:
    value = b"x" * (MAX_HEAD_BYTES // MAX_HEADERS * 3 // 4)  # 3/4 of the byte bound over MAX_HEADERS - 4 headers

    async def scenario() -> None:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.read_request(reader)
            lines = b"".join(b"X-H%d: %s\r\n" % (i, value) for i in range(MAX_HEADERS - 4))
            writer.write(json_answer(b"ok", lines))
            await writer.drain()
            await saw_eof(reader)

        async with Server(handler) as server:
            upstream = client()
            response = await upstream.post(server.url, b"", HEADERS)
            assert len(response.headers) == MAX_HEADERS - 2
            assert await response.read() == b"ok"
            response.release()
            await upstream.close()

    run(scenario)


def _endless_head_lines(limit: int) -> list[bytes]:
    """Header lines in 8 KiB writes, at most `limit` bytes: a head that would never end."""
    line = b"X-Endless: " + b"e" * 50 + b"\r\n"
    return [line * (8192 // len(line))] * (limit // 8192)


STATUS = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
# Hostile response heads, written block by block (the client's bounds are far below each whole).
HOSTILE_HEADS = {
    "many-repeats": [STATUS + b"X-Repeat: v\r\n" * 4000 + b"Content-Length: 0\r\n\r\n"],  # the case
    "many-names": [STATUS + b"".join(b"X-H%d: v\r\n" % i for i in range(MAX_HEADERS + 1)) + b"\r\n"],
    "huge-value": [STATUS + b"X-Big: " + b"b" * (MAX_HEAD_BYTES + 1) + b"\r\n\r\n"],
    "endless-lines": [STATUS, *_endless_head_lines(4 * MAX_HEAD_BYTES)],
    "endless-value": [STATUS + b"X-Trickle: "] + [b"t" * 4096] * (4 * MAX_HEAD_BYTES // 4096),
    "informational-flood": [b"HTTP/1.1 100 Continue\r\n\r\n" * 8192],
}


@pytest.mark.parametrize("shape", list(HOSTILE_HEADS))
def test_a_head_over_the_bounds_is_refused_and_the_connection_closed(run: Any, shape: str) -> None:
    async def scenario() -> None:
        eof = asyncio.Event()

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.read_request(reader)
            try:
                for block in HOSTILE_HEADS[shape]:  # bounded: at most 4x the head bound in all
                    writer.write(block)
                    await writer.drain()
            except ConnectionError:
                pass  # the client hung up mid-head: what it should do
            await saw_eof(reader)
            eof.set()

        async with Server(handler) as server:
            upstream = client()
            with pytest.raises(HeadersTooLarge) as caught:
                await upstream.post(server.url, b"", HEADERS)
            assert isinstance(caught.value, ProtocolError)  # not Disconnected: never retried by the caller
            assert str(MAX_HEAD_BYTES) in str(caught.value)
            await eof.wait()  # the connection is closed, not left to a hostile peer
            assert not upstream._idle
            await until(lambda: not upstream._conns)
            await upstream.close()

    run(scenario)


@pytest.mark.parametrize("framing", ["declared", "chunked", "until-close"])
def test_read_whole_refuses_a_body_over_its_limit(run: Any, framing: str) -> None:
    limit = 1 << 20

    async def scenario() -> None:
        eof = asyncio.Event()
        sent = [0]

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.read_request(reader)
            head = {
                "declared": b"Content-Length: %d\r\n" % (500 << 20),  # 500 MiB promised, 8 MiB at most sent
                "chunked": b"Transfer-Encoding: chunked\r\n",
                "until-close": b"Connection: close\r\n",
            }[framing]
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + head + b"\r\n")
            block = b"x" * 65536
            try:
                for _ in range(128):  # 8 MiB at most
                    writer.write(b"10000\r\n%s\r\n" % block if framing == "chunked" else block)
                    await writer.drain()
                    sent[0] += len(block)
            except ConnectionError:
                pass
            await saw_eof(reader)
            eof.set()

        async with Server(handler) as server:
            upstream = client()
            response = await upstream.post(server.url, b"", HEADERS)
            with pytest.raises(BodyTooLarge) as caught:
                await response.read_whole(limit)
            assert str(limit) in str(caught.value)
            await eof.wait()  # closed by the client, before the server got everything out
            assert sent[0] < 8 << 20
            if framing == "declared":
                assert "declared" in str(caught.value)
            with pytest.raises(BodyTooLarge):  # and stays failed
                await response.read()
            response.release()
            assert not upstream._idle
            await upstream.close()

    run(scenario)


def test_read_whole_takes_a_body_at_its_limit(run: Any) -> None:
    limit = 1 << 20
    body = bytes(range(256)) * (limit // 256)

    async def scenario() -> None:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while (request := await server.read_request(reader)) is not None:
                if request[1] == b"chunked":
                    writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                    for start in range(0, len(body), 65536):
                        writer.write(b"%x\r\n%s\r\n" % (65536, body[start : start + 65536]))
                    writer.write(b"0\r\n\r\n")
                else:
                    writer.write(json_answer(body))
                await writer.drain()

        async with Server(handler) as server:
            upstream = client()
            for framing in (b"length", b"chunked"):
                response = await upstream.post(server.url, framing, HEADERS)
                assert await response.read_whole(limit) == body
                response.release()
            assert server.connections == 1  # read to its end: pooled
            await upstream.close()

    run(scenario)


@pytest.mark.parametrize(("idle", "deadline"), [(0.6, 0.6), (5.0, 0.6)])
def test_a_trickling_head_meets_its_deadline(run: Any, idle: float, deadline: float) -> None:
    # A header line every 50 ms: the idle clock never runs out, only the head deadline can end it.
    lines = 200  # 10 s of trickle at most

    async def scenario() -> None:
        eof = asyncio.Event()
        sent = [0]

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\n")
            try:
                for i in range(lines):
                    writer.write(b"X-Slow-%d: v\r\n" % i)
                    await writer.drain()
                    sent[0] += 1
                    await asyncio.sleep(0.05)
                writer.write(b"Content-Length: 2\r\n\r\nok")
                await writer.drain()
            except ConnectionError:
                pass
            await saw_eof(reader)
            eof.set()

        async with Server(handler) as server:
            upstream = client(idle_timeout=idle)
            with pytest.raises(HeadersTimeout) as caught:
                await upstream.post(server.url, b"", HEADERS, head_timeout=deadline)
            assert isinstance(caught.value, ReadTimeout) and isinstance(caught.value, TimeoutError)
            assert f"{deadline:g} s" in str(caught.value)
            await eof.wait()
            assert sent[0] < lines, "the head was let to trickle to its end"
            await upstream.close()

    run(scenario)


def test_the_head_deadline_leaves_the_body_to_the_idle_clock(run: Any) -> None:
    async def scenario() -> None:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while await server.read_request(reader) is not None:
                writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                for _ in range(6):  # 0.9 s of body, three times the head deadline
                    writer.write(b"1\r\nx\r\n")
                    await writer.drain()
                    await asyncio.sleep(0.15)
                writer.write(b"0\r\n\r\n")
                await writer.drain()

        async with Server(handler) as server:
            upstream = client(idle_timeout=1.0)
            for _ in range(2):  # each request on the pooled connection has a deadline of its own
                response = await upstream.post(server.url, b"", HEADERS, head_timeout=0.3)
                assert await response.read() == b"xxxxxx"
                response.release()
            assert server.connections == 1
            await upstream.close()

    run(scenario)
