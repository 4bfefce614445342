"""Per-key rate limits (token buckets) and the API-key check with scopes (401 / 403 / 429)."""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass


class ApiError(Exception):
    """An error answer with a stable body: HTTP status, a machine code, a message, optional headers."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


@dataclass
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    """A token bucket per key: ``rate`` tokens a second, at most ``burst`` saved up.

    :meth:`take` answers 0 when a request may go ahead, else the seconds until it could.
    """

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def take(self, key: str, rate: float | None = None, now: float | None = None) -> float:
        rate = rate or self.rate
        t = time.monotonic() if now is None else now
        with self._lock:
            b = self._buckets.get(key)
            if b is None:
                b = self._buckets[key] = _Bucket(float(self.burst), t)
            b.tokens = min(float(self.burst), b.tokens + (t - b.at) * rate)
            b.at = t
            if b.tokens >= 1.0:
                b.tokens -= 1.0
                return 0.0
            return (1.0 - b.tokens) / rate


def retry_after(seconds: float) -> str:
    """Retry-After in whole seconds (at least 1)."""
    return str(max(1, math.ceil(seconds)))
