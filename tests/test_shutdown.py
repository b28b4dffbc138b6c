"""SIGTERM, as Cloud Run sends it, with streams in flight (issue 6).

Cloud Run sends SIGTERM, stops routing new requests, and sends SIGKILL 10 s
later. The gateway must stop accepting, let running streams finish inside
gunicorn's graceful window, and exit 0.
"""

from __future__ import annotations

import signal
import socket
import threading
from collections.abc import Iterator

import pytest

from tests.conftest import GatewayFactory
from tests.fakes.vertex import FakeVertex
from tests.faultkit import Reply, chat_body, eventually, post, sse_data, worker_pids
from tests.harness import Gateway

pytestmark = pytest.mark.e2e

STREAMS = 4


def _refused(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) != 0


@pytest.fixture
def streaming(gateway_factory: GatewayFactory, fake_vertex: FakeVertex, marker: str) -> Iterator[tuple[Gateway, list]]:
    gw = gateway_factory()
    replies: list[Reply | BaseException] = []

    def one(i: int) -> None:
        try:
            # One event, then the fake waits for the test to open the gate.
            body = chat_body(f"{marker}-{i}", stream=True, fake={"chunks": 5, "gate": marker, "gate_timeout": 20})
            replies.append(post(gw, body, timeout=30))
        except BaseException as exc:  # reported by the test, not lost in the thread
            replies.append(exc)

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(STREAMS)]
    for thread in threads:
        thread.start()
    eventually(lambda: len(fake_vertex.find(marker)) == STREAMS, 10, "all streams reached upstream")
    eventually(lambda: all(r.events_sent >= 1 for r in fake_vertex.find(marker)), 10, "all streams started")
    yield gw, replies
    fake_vertex.open_gate(marker)
    for thread in threads:
        thread.join(30)


def test_sigterm_drains_streams_and_exits_zero(
    streaming: tuple[Gateway, list], fake_vertex: FakeVertex, marker: str
) -> None:
    gw, replies = streaming
    workers = worker_pids(gw)
    gw.proc.send_signal(signal.SIGTERM)
    eventually(lambda: _refused(gw.port), 5, "the port stops accepting after SIGTERM")
    assert not replies, "a stream ended before its upstream finished"
    assert all(not r.finished.is_set() for r in fake_vertex.find(marker))

    fake_vertex.open_gate(marker)
    eventually(lambda: len(replies) == STREAMS, 8, "in-flight streams finish inside the graceful window")
    for reply in replies:
        assert isinstance(reply, Reply), reply
        assert reply.status == 200
        events = sse_data(reply.body)
        assert events[-1] == "[DONE]", "stream cut short by shutdown"
    assert gw.stop() == 0
    assert all(not _alive(pid) for pid in workers)
    text = "\n".join(gw.lines())
    assert "Traceback" not in text


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_sigterm_idle_exits_zero_quickly(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory()
    assert gw.stop(timeout=8) == 0


def test_sigterm_stream_outlasting_grace_is_cut_and_exit_is_zero(
    streaming: tuple[Gateway, list], fake_vertex: FakeVertex, marker: str
) -> None:
    # The gate stays shut: these streams would outlive Cloud Run's 10 s SIGKILL.
    gw, replies = streaming
    gw.proc.send_signal(signal.SIGTERM)
    assert gw.stop(timeout=12) == 0, "the worker must give up on streams before gunicorn kills it"
    eventually(lambda: len(replies) == STREAMS, 5, "every client saw its stream end")
    for reply in replies:
        assert not (isinstance(reply, Reply) and "[DONE]" in sse_data(reply.body))
    eventually(lambda: all(r.finished.is_set() for r in fake_vertex.find(marker)), 5, "upstream requests closed")
