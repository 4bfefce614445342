"""What the routers share: the error answers every keyed endpoint documents, the JSON answer, times."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pandas as pd
from fastapi import Response

from serving.security import ApiError

ERRORS: dict[int | str, dict[str, str]] = {
    401: {"description": "missing or invalid API key"},
    403: {"description": "the key lacks the scope"},
    413: {"description": "body too large"},
    429: {"description": "rate limit; see Retry-After"},
    503: {"description": "no model loaded yet"},
}

_EARLIEST, _LATEST = datetime(1970, 1, 1, tzinfo=UTC), datetime(2200, 1, 1, tzinfo=UTC)


def json_response(payload: Any, numpy: bool = False) -> Response:
    """``payload`` written by orjson (a StrEnum as its value, NaN as null; NumPy values when ``numpy``).

    Routes return it as it is: FastAPI then neither validates against the response model (which documents
    the body) nor encodes the body a second time.
    """
    option = orjson.OPT_SERIALIZE_NUMPY if numpy else None
    return Response(orjson.dumps(payload, option=option), media_type="application/json")


def iso(t: Any) -> str | None:
    """An instant (``datetime``, ``pd.Timestamp``, NumPy) as ISO 8601; None for None, NaN or NaT."""
    if t is None or (isinstance(t, float) and t != t) or t is pd.NaT:
        return None
    return pd.Timestamp(t).isoformat()


def decision_time(given: datetime | None, field: str = "body.now", clock: datetime | None = None) -> datetime:
    """The request's decision time in UTC (default: the configured ``clock``, else the server's); 422 without a
    timezone or outside 1970-2199."""
    if given is None:
        return clock.astimezone(UTC) if clock is not None else datetime.now(UTC)
    if given.tzinfo is None:
        raise ApiError(422, "invalid_request", f"{field}: give a timezone (e.g. 2026-01-02T10:00:00Z)")
    try:
        now = given.astimezone(UTC)
    except (OverflowError, ValueError) as exc:
        raise ApiError(422, "invalid_request", f"{field}: {exc}") from exc
    if not _EARLIEST <= now < _LATEST:
        raise ApiError(422, "invalid_request", f"{field}: must lie between 1970 and 2200")
    return now
