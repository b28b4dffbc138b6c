import asyncio

import pytest

from app.disconnect import CancelOnDisconnect
from app.upstream import _backoff, _retry_after_seconds
from app.usage import UsageSniffer, normalize_usage


def sse(*events: str) -> bytes:
    return "".join(f"data: {e}\n\n" for e in events).encode()


def test_usage_found_across_chunk_boundaries() -> None:
    stream = sse(
        '{"choices":[{"delta":{"content":"hi"}}]}',
        '{"choices":[],"usage":{"prompt_tokens":11,"completion_tokens":7,"total_tokens":18}}',
        "[DONE]",
    )
    for cut in range(1, len(stream)):
        sniffer = UsageSniffer()
        sniffer.feed(stream[:cut])
        sniffer.feed(stream[cut:])
        assert sniffer.usage == {"input_tokens": 11, "output_tokens": 7, "total_tokens": 18}, cut


def test_anthropic_usage_merges_message_start_and_delta() -> None:
    sniffer = UsageSniffer()
    start = b'{"type":"message_start","message":{"usage":{"input_tokens":25,"output_tokens":1}}}'
    sniffer.feed(b"event: message_start\ndata: " + start + b"\n\n")
    sniffer.feed(b'event: message_delta\ndata: {"type":"message_delta","usage":{"output_tokens":42}}\n\n')
    assert sniffer.usage == {"input_tokens": 25, "output_tokens": 42}


def test_no_usage_no_problem() -> None:
    sniffer = UsageSniffer()
    sniffer.feed(sse('{"choices":[]}', "[DONE]") + b"data: {partial")
    assert sniffer.usage is None


def test_normalize_usage_ignores_nested_and_odd_values() -> None:
    usage = {"prompt_tokens": 3, "completion_tokens": True, "prompt_tokens_details": {"cached_tokens": 1}}
    assert normalize_usage(usage) == {"input_tokens": 3}
    assert normalize_usage("12") is None


@pytest.mark.parametrize(("value", "seconds"), [("7", 7.0), ("0", 0.0), (None, None), ("soon", None)])
def test_retry_after(value: str | None, seconds: float | None) -> None:
    assert _retry_after_seconds(value) == seconds


def test_retry_after_http_date_in_the_past_is_zero() -> None:
    assert _retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


def test_backoff_is_bounded_and_jittered() -> None:
    waits = {round(_backoff(3, 10), 6) for _ in range(50)}
    assert all(1.0 <= w <= 2.0 for w in waits) and len(waits) > 1
    assert all(_backoff(20, 3) <= 3 for _ in range(50))


def test_disconnect_cancels_the_wait_and_is_swallowed() -> None:
    async def scenario() -> tuple[bool, bool]:
        hang_up = asyncio.Event()

        async def receive() -> dict[str, str]:
            await hang_up.wait()
            return {"type": "http.disconnect"}

        reached_end = False
        with CancelOnDisconnect(receive) as watch:
            asyncio.get_running_loop().call_later(0.01, hang_up.set)
            await asyncio.sleep(30)  # stands for a slow upstream read
            reached_end = True
        return watch.disconnected, reached_end

    assert asyncio.run(asyncio.wait_for(scenario(), 5)) == (True, False)


def test_normal_end_is_not_cancelled_later() -> None:
    async def scenario() -> bool:
        async def receive() -> dict[str, str]:
            return {"type": "http.disconnect"}  # as uvicorn answers once the response is complete

        with CancelOnDisconnect(receive) as watch:
            pass
        await asyncio.sleep(0.01)  # a late callback would cancel this sleep
        return watch.disconnected

    assert asyncio.run(scenario()) is False


def test_quick_requests_never_start_a_watcher() -> None:
    async def scenario() -> object:
        async def receive() -> dict[str, str]:
            raise AssertionError("a request that ends before WATCH_DELAY must not listen for a hang-up")

        with CancelOnDisconnect(receive) as watch:
            await asyncio.sleep(0)
        await asyncio.sleep(CancelOnDisconnect.WATCH_DELAY * 2)
        return watch._watcher

    assert asyncio.run(scenario()) is None
