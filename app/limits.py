"""Per-key limits: requests in flight (`max_concurrent`) and requests per minute (`rpm`).

State lives in this process's memory, so each gunicorn worker enforces the limits on its own:
the effective limit is the key's value x workers per instance (WEB_CONCURRENCY) x instances.
State is keyed by the record's id, so it survives key reloads and rotations (same id, new digest).

`rpm` is a sliding window of 60 one-second slots: a request is refused when the key's admitted
requests in the current second and the 59 before it have reached `rpm`. Unlike a token bucket
refilled at rpm/60 per second, this never lets more than `rpm` through in one minute-long window
of whole seconds, which is how Vertex counts its own per-minute quota. Memory is 60 counters a key.
"""

import math
import time
from collections.abc import Callable

from app.errors import GatewayError
from app.key_ring import KeyRecord

WINDOW = 60  # seconds, one slot each

# Answered when a key is at its max_concurrent: nobody knows when a slot frees, and a
# streaming answer may run for minutes, so clients are told to try again soon.
CONCURRENCY_RETRY_AFTER = 1


class _Window:
    __slots__ = ("second", "slots", "total")

    def __init__(self, second: int) -> None:
        self.slots = [0] * WINDOW
        self.second = second  # the newest second counted in slots
        self.total = 0

    def advance(self, second: int) -> None:
        """Forget the slots that fell out of the window by `second`."""
        gap = second - self.second
        if gap <= 0:
            return
        if gap >= WINDOW:
            self.slots = [0] * WINDOW
            self.total = 0
        else:
            for s in range(self.second + 1, second + 1):
                index = s % WINDOW
                self.total -= self.slots[index]
                self.slots[index] = 0
        self.second = second

    def retry_after(self, now: float, limit: int) -> int:
        """Whole seconds until enough of the oldest slots leave the window to admit one more."""
        excess = self.total - limit + 1
        for age in range(WINDOW - 1, -1, -1):  # oldest slot first
            second = self.second - age
            excess -= self.slots[second % WINDOW]
            if excess <= 0:
                # That slot leaves the window when `second + WINDOW` begins.
                return max(1, math.ceil(second + WINDOW - now))
        return WINDOW  # not reached: the slots sum to total


class Lease:
    """One admitted request's hold on its key's concurrency slot; released exactly once."""

    __slots__ = ("_key_id", "_limits")

    def __init__(self, limits: "KeyLimits", key_id: str) -> None:
        self._limits: KeyLimits | None = limits
        self._key_id = key_id

    def release(self) -> None:
        limits, self._limits = self._limits, None
        if limits is not None:
            limits._release(self._key_id)


class KeyLimits:
    """The limits of every key in this worker."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._inflight: dict[str, int] = {}
        self._windows: dict[str, _Window] = {}

    def admit(self, record: KeyRecord) -> Lease | None:
        """Count the request against the key's limits, or raise a 429 GatewayError.

        Returns a Lease to release when the request ends, when the key has `max_concurrent`.
        """
        if record.max_concurrent is not None:
            inflight = self._inflight.get(record.id, 0)
            if inflight >= record.max_concurrent:
                raise GatewayError(
                    429,
                    f"API key {record.id!r} already has {inflight} request(s) in flight, its limit "
                    f"(max_concurrent {record.max_concurrent}, per gateway worker): retry when one finishes, "
                    "or ask the operator to raise it",
                    code="concurrency_limit_exceeded",
                    headers=[(b"retry-after", str(CONCURRENCY_RETRY_AFTER).encode())],
                )
        if record.rpm is not None:
            self._count(record.id, record.rpm)
        if record.max_concurrent is None:
            return None
        # Counted only once both limits admitted the request, so a refusal holds no slot.
        self._inflight[record.id] = self._inflight.get(record.id, 0) + 1
        return Lease(self, record.id)

    def inflight(self, key_id: str) -> int:
        return self._inflight.get(key_id, 0)

    def _count(self, key_id: str, limit: int) -> None:
        now = self._clock()
        second = int(now)
        window = self._windows.get(key_id)
        if window is None:
            window = self._windows[key_id] = _Window(second)
        window.advance(second)
        if window.total >= limit:
            wait = window.retry_after(now, limit)
            raise GatewayError(
                429,
                f"API key {key_id!r} reached its limit of {limit} requests per minute (rpm, per gateway worker): "
                f"retry after {wait} s, or ask the operator to raise it",
                code="rate_limit_exceeded",
                headers=[(b"retry-after", str(wait).encode())],
            )
        window.slots[second % WINDOW] += 1
        window.total += 1

    def _release(self, key_id: str) -> None:
        left = self._inflight.get(key_id, 0) - 1
        if left > 0:
            self._inflight[key_id] = left
        else:
            self._inflight.pop(key_id, None)
