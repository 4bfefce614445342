"""Audiences: the customers for whom a condition holds, as a count with a sample, pages, or a streamed file.

Every customer is scored by the function ``POST /v1/scores`` uses (:mod:`serving.audiences`), so an audience
holds exactly the customers a campaign engine would pick from the scores at the same instant.
"""

from __future__ import annotations

import io
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from fastapi import APIRouter, Response
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask

from features.audience import AD_FORMATS, Audience, AudienceError, AudienceFormat, AudienceWriter, Sample
from features.errors import DataNotFoundError
from features.online import OnlineStoreUnavailable
from serving.audiences import ModelNotLoaded, Universe, audience_of, plain, scan
from serving.deps import Campaign, RequestIdDep, ServicesDep
from serving.keys import Scope
from serving.routers.common import ERRORS, decision_time, json_response
from serving.schemas import (
    AnswerSource,
    AudienceCountRequest,
    AudienceCountResponse,
    AudienceExportRequest,
    AudienceListRequest,
    AudienceListResponse,
    AudienceQuery,
)
from serving.security import ApiError
from serving.state import Services

router = APIRouter(prefix="/v1/audiences", tags=["audiences"])
log = logging.getLogger("kairos.serving.audiences")
_MEDIA = {AudienceFormat.PARQUET: "application/vnd.apache.parquet"}


class CsvResponse(Response):
    media_type = "text/csv"


def _prepared(services: Services, body: AudienceQuery) -> tuple[Audience, Universe]:
    try:
        audience = audience_of(services, body.condition)
    except AudienceError as exc:
        raise ApiError(422, "invalid_request", f"body.condition: {exc}") from exc
    try:
        universe = services.audiences.universe()
    except (DataNotFoundError, OSError) as exc:
        raise ApiError(503, "unavailable", "no feature snapshot to read customers from") from exc
    return audience, universe


def _unavailable(exc: Exception) -> ApiError:
    """The error answer of a scan that could not finish: the store down or a model not loaded (503), or
    the data lacking what the condition names (422)."""
    if isinstance(exc, AudienceError):
        return ApiError(422, "invalid_request", f"body.condition: {exc}")
    if isinstance(exc, ModelNotLoaded):
        return ApiError(503, "model_unavailable", str(exc), {"Retry-After": "5"})
    log.warning("online store unavailable; no audience answered", extra={"error": str(exc)[:200]})
    return ApiError(503, "unavailable", "the online store cannot answer now; retry", {"Retry-After": "5"})


def _envelope(services: Services, rid: str, audience: Audience, universe: Universe, now: str) -> dict[str, object]:
    models = [b.ref() | {"source": AnswerSource.MODEL} for k in services.slots if (b := services.bundle(k)) is not None]
    return {
        "request_id": rid,
        "models": models,
        "degraded": False,
        "source": AnswerSource.MODEL,
        "condition": audience.text,
        "now": now,
        "snapshot_as_of": universe.snapshot.as_of.isoformat(),
    }


@router.post("/count", response_model=AudienceCountResponse, responses=ERRORS)
def count(body: AudienceCountRequest, services: ServicesDep, rid: RequestIdDep, _: Campaign) -> Response:
    """How many customers the condition holds for, with a fixed, uniform sample of them (the members with the
    smallest hash of their key). A bad condition: 422 naming ``body.condition`` and why. The online store
    down: 503 (an audience is never answered from priors)."""
    now = decision_time(body.now, clock=services.settings.clock)
    audience, universe = _prepared(services, body)
    sample = Sample(body.sample_size)
    members = 0
    columns: list[str] | None = None
    try:
        for _stop, chunk in scan(services, universe, audience, now):
            columns = columns if columns is not None else _columns(audience, chunk.columns)
            members += len(chunk)
            sample.offer(chunk, columns)
    except (OnlineStoreUnavailable, ModelNotLoaded, AudienceError) as exc:
        raise _unavailable(exc) from exc
    payload = _envelope(services, rid, audience, universe, now.isoformat())
    payload |= {"scanned": len(universe), "count": members, "sample": sample.rows()}
    return json_response(payload, numpy=True)


@router.post("/list", response_model=AudienceListResponse, responses=ERRORS)
def members(body: AudienceListRequest, services: ServicesDep, rid: RequestIdDep, _: Campaign) -> Response:
    """One page of members in the snapshot's order, each with the retailer's ``customer_id``, the
    ``customer_key`` and the columns the condition names; ``next_cursor`` continues (null: the last page).
    A page reads customers until it is full, so a rare audience's page can read much of the base."""
    now = decision_time(body.now, clock=services.settings.clock)
    audience, universe = _prepared(services, body)
    start = int(body.cursor or 0)
    if start > len(universe):
        raise ApiError(422, "invalid_request", "body.cursor: beyond the last customer (start again without one)")
    items: list[dict[str, object]] = []
    next_cursor: int | None = None
    scanned = 0
    try:
        for stop, chunk in scan(services, universe, audience, now, start=start):
            columns = _columns(audience, chunk.columns)
            room = body.page_size - len(items)
            items += plain(chunk.head(room), columns)
            scanned = stop - start
            if len(chunk) > room:  # the page is full inside this chunk: continue at the first member left
                next_cursor = int(chunk["position"].iloc[room])
                scanned = next_cursor - start
                break
            if len(items) == body.page_size:
                next_cursor = stop if stop < len(universe) else None
                break
    except (OnlineStoreUnavailable, ModelNotLoaded, AudienceError) as exc:
        raise _unavailable(exc) from exc
    payload = _envelope(services, rid, audience, universe, now.isoformat())
    payload |= {"scanned": scanned, "items": items, "next_cursor": None if next_cursor is None else str(next_cursor)}
    return json_response(payload, numpy=True)


@router.post(
    "/export",
    response_class=CsvResponse,
    responses={**ERRORS, 200: {"description": "The file (Parquet: application/vnd.apache.parquet)."}},
)
def export(body: AudienceExportRequest, services: ServicesDep, _: RequestIdDep, principal: Campaign) -> Response:
    """Every member as a file, streamed chunk by chunk: ``csv`` / ``parquet`` (``customer_id``, ``customer_key``
    and the named columns) or an advertising platform's upload file (``google``, ``meta``, ``yandex``,
    ``vk_email``, ``vk_phone``: normalised, hashed e-mails and phones of the members whose consent covers
    advertising; these need the ``pii`` scope). Headers ``X-Kairos-Now`` and ``X-Kairos-Snapshot`` give the
    instant. The store failing mid-stream ends the body early (the connection closes without a last chunk)."""
    now = decision_time(body.now, clock=services.settings.clock)
    fmt = AudienceFormat(body.format)
    if fmt in AD_FORMATS and not principal.allows(Scope.PII):
        raise ApiError(403, "forbidden", "body.format: upload files carry hashed e-mails and phones: the pii scope")
    audience, universe = _prepared(services, body)
    contacts = services.audiences.contacts() if fmt in AD_FORMATS else None
    # the first chunk is scored before the answer starts, so a store already down is a 503, not a cut stream
    chunks = scan(services, universe, audience, now)
    try:
        first = next(chunks, None)
    except (OnlineStoreUnavailable, ModelNotLoaded, AudienceError) as exc:
        raise _unavailable(exc) from exc
    columns = _columns(audience, first[1].columns) if first is not None else []
    headers = {"X-Kairos-Now": now.isoformat(), "X-Kairos-Snapshot": universe.snapshot.as_of.isoformat()}
    if fmt is AudienceFormat.PARQUET:  # Parquet's footer comes last: staged in a temporary file, then streamed
        fd, name = tempfile.mkstemp(suffix=".parquet")
        os.close(fd)
        path = Path(name)
        try:
            writer = AudienceWriter(fmt, path, columns)
            for _stop, chunk in [first, *chunks] if first is not None else []:
                writer.write(chunk)
            writer.close()
        except (OnlineStoreUnavailable, ModelNotLoaded, AudienceError) as exc:
            path.unlink(missing_ok=True)
            raise _unavailable(exc) from exc
        headers["Content-Disposition"] = 'attachment; filename="audience.parquet"'
        return StreamingResponse(
            _file(path), media_type=_MEDIA[fmt], headers=headers, background=BackgroundTask(path.unlink, True)
        )

    def stream() -> Iterator[bytes]:
        buffer = io.BytesIO()
        writer = AudienceWriter(fmt, buffer, columns, contacts)
        try:
            for _stop, chunk in [first, *chunks] if first is not None else []:
                writer.write(chunk)
                yield _drain(buffer)
        except (OnlineStoreUnavailable, ModelNotLoaded, AudienceError) as exc:  # the status is sent: end early
            log.warning("audience export cut short", extra={"error": str(exc)[:200]})
            return
        writer.close()
        yield _drain(buffer)

    suffix = "txt" if fmt in (AudienceFormat.VK_EMAIL, AudienceFormat.VK_PHONE) else "csv"
    headers["Content-Disposition"] = f'attachment; filename="audience-{fmt.value}.{suffix}"'
    return StreamingResponse(stream(), media_type="text/csv", headers=headers)


def _columns(audience: Audience, have: object) -> list[str]:
    present = set(have)  # type: ignore[call-overload]
    return [n for n in sorted(audience.names) if n in present]


def _drain(buffer: io.BytesIO) -> bytes:
    data = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return data


def _file(path: Path, block: int = 1 << 16) -> Iterator[bytes]:
    with path.open("rb") as f:
        while data := f.read(block):
            yield data
