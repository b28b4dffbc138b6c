"""A fake clock for the objects that take one (KeyRing, KeyRefresher, TokenProvider): a test moves time on
instead of waiting for it."""

from __future__ import annotations


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
