"""A token bucket: at most `per_minute` events a minute, in bursts of at most `burst`.

Used on the event loop only (one thread), so it needs no lock.
"""

from __future__ import annotations

import time


class TokenBucket:
    def __init__(self, per_minute: float, burst: int | None = None, clock=time.monotonic):
        self.rate = per_minute / 60.0              # tokens per second
        self.capacity = float(burst or per_minute)
        self.tokens = self.capacity
        self.clock = clock
        self.last = clock()

    def take(self) -> float:
        """0.0 when an event may happen now (and count it), else seconds until one may."""
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate
