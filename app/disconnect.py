"""Cancel the request's task when the client hangs up, so the upstream call stops at once."""

import asyncio
from types import TracebackType

from starlette.types import Receive


class CancelOnDisconnect:
    """Cancels the current task when the client hangs up, so the upstream call stops at once.

    Used as `with CancelOnDisconnect(receive) as watch:`; the CancelledError it
    causes is swallowed on exit and `watch.disconnected` tells what happened.
    The watcher task starts only after WATCH_DELAY: most quick requests finish
    before that and never pay for a task, while a hang-up during a slow answer
    is still seen (receive() reports a disconnect whenever it happened).
    """

    WATCH_DELAY = 0.05

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self.disconnected = False
        self._active = False
        self._watcher: asyncio.Task[None] | None = None

    def __enter__(self) -> "CancelOnDisconnect":
        self._task = asyncio.current_task()
        self._active = True
        self._timer = asyncio.get_running_loop().call_later(self.WATCH_DELAY, self._start)
        return self

    def _start(self) -> None:
        if self._active:
            self._watcher = asyncio.ensure_future(self._wait())

    async def _wait(self) -> None:
        while (await self._receive())["type"] != "http.disconnect":
            pass
        # The request may have ended meanwhile; the flag keeps a late wake-up from cancelling anything.
        if self._active and self._task is not None:
            self.disconnected = True
            self._task.cancel()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> bool:
        self._active = False
        self._timer.cancel()
        if self._watcher is not None:
            self._watcher.cancel()
        if self.disconnected and self._task is not None:
            self._task.uncancel()
            return kind is None or issubclass(kind, asyncio.CancelledError)
        return False
