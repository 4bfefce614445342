"""Per-key rate limits (token buckets), in process or shared by every replica through Redis, and the error
the API-key check raises (401 / 403 / 429)."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

log = logging.getLogger("kairos.serving.security")


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

    async def take_async(self, key: str, rate: float | None = None) -> float:
        """:meth:`take`, for callers on the event loop (no I/O here)."""
        return self.take(key, rate)


# One key's bucket, taken atomically on Redis's clock (every replica sees the same time); the wait is a
# string because Redis turns a Lua number into an integer.
_TAKE = """
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local saved = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens, at = tonumber(saved[1]), tonumber(saved[2])
if tokens == nil or at == nil then tokens, at = burst, now end
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('EXPIRE', KEYS[1], ARGV[3])
return tostring(wait)
"""


class SharedRateLimiter:
    """The token buckets of :class:`RateLimiter`, kept in Redis (``<prefix>:rate:<key name>``) so that a key
    gets its rate across all replicas together, not once per replica.

    A call is one round trip, awaited on the event loop, with the store's timeout and no retries. While
    Redis fails, each replica limits with its own bucket (``local``): a degraded limit rather than
    refusing every caller or none; ``on_failure`` is told each time (a metric), and a warning is logged
    at most once a minute.
    """

    def __init__(
        self,
        url: str,
        prefix: str,
        timeout: float,
        local: RateLimiter,
        on_failure: Callable[[], None] = lambda: None,
    ) -> None:
        self.local = local
        self.prefix = prefix
        self.on_failure = on_failure
        self.client = aioredis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0)
        )
        self._take = self.client.register_script(_TAKE)
        self._warned_at = -math.inf

    async def take_async(self, key: str, rate: float | None = None) -> float:
        """0 when the request may go ahead, else the seconds until it could."""
        rate = rate or self.local.rate
        # a bucket refills fully in burst / rate seconds: after that, a missing key is the same as a full one
        ttl = math.ceil(self.local.burst / rate) + 1
        try:
            wait = await self._take(keys=[f"{self.prefix}:rate:{key}"], args=[rate, self.local.burst, ttl])
            return float(wait)
        except (redis.RedisError, OSError) as exc:
            self.on_failure()
            if time.monotonic() - self._warned_at > 60:
                self._warned_at = time.monotonic()
                log.warning("shared rate limits unavailable; limiting per replica", extra={"error": str(exc)[:200]})
            return self.local.take(key, rate)

    async def close(self) -> None:
        await self.client.aclose()


def retry_after(seconds: float) -> str:
    """Retry-After in whole seconds (at least 1)."""
    return str(max(1, math.ceil(seconds)))
