"""Campaign operations: lookalike audiences, campaign plans (asynchronous, with progress) and the
incrementality report of past campaigns. All need the ``campaign`` scope.

- ``POST /v1/lookalikes``: rank the base (the latest snapshot of the data home, with each customer's
  category mix) by similarity to a seed list of customer ids; the seed is left out.
- ``POST /v1/campaigns/plans``: queue a plan (202 with a job id); ``GET /v1/campaigns/plans/{job_id}``
  gives its status and progress, and when done the totals and a page of items (``offset``, ``limit``).
  Consent, contact states and channel preference are the served ones (the online store and the contact
  book: an unsubscribe counts at once), as for ``/v1/offers/campaign``.
- ``POST /v1/campaigns/report``: the incrementality report from the data home's messages and orders
  (JSON, or the self-contained HTML page with ``format: html``).

Jobs live in this process (``app.state``); the last :data:`KEEP_JOBS` are kept. CPU-bound work runs in
a worker thread, never inside ``async def``.
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import orjson
import pandas as pd
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import HTMLResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from features.contract import Channel, Col
from features.errors import InputDataError, KairosError
from features.store import SEGMENTS_FILE, ingested_dir, latest_snapshot
from models.decisioning.incrementality import measure, message_assignment, render_html
from models.decisioning.nbo import NextBestOffer
from models.decisioning.offers import CatalogueError, parse_catalogue
from models.decisioning.plan import CampaignSpec, items_for_export, plan_campaign
from models.lookalike import Lookalike, LookalikeError, category_mix
from serving.deps import Campaign, RequestIdDep, ServicesDep
from serving.routers.common import ERRORS, json_response
from serving.security import ApiError
from serving.state import Services

router = APIRouter(tags=["campaigns"])
KEEP_JOBS = 20
MAX_AUDIENCE = 1_000_000
MAX_SEED = 100_000
_JOBS_LOCK = threading.Lock()  # guards creating the per-app job list and lookalike cache on app.state


# --- schemas ------------------------------------------------------------------------------------------


class LookalikeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    seed_customer_ids: list[str] = Field(min_length=2, max_length=MAX_SEED, description="The seed (retailer ids).")
    size: int | None = Field(None, ge=1, le=MAX_AUDIENCE, description="Audience size (most alike first).")
    threshold: float | None = Field(None, ge=0, le=1, description="Lowest similarity score kept.")
    method: Literal["pu", "embedding"] = "pu"


class PlanRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    customer_ids: list[str] = Field(min_length=1, max_length=MAX_AUDIENCE, description="The audience (retailer ids).")
    channels: list[Channel] = Field(min_length=1, description="Channels the campaign may use.")
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    budget: float | None = Field(None, ge=0, description="Expected cost the offers may spend.")
    name: str = Field("campaign", min_length=1, max_length=128)
    send_without_offer: bool = True
    catalogue: dict[str, Any] | None = Field(
        None, description="An offer catalogue (as the YAML file, in JSON); default: the served offers model's."
    )


class ReportRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    campaign_ids: list[str] = Field(min_length=1, max_length=1000, description="The campaigns to measure.")
    horizon_days: float = Field(30.0, gt=0, le=365)
    format: Literal["json", "html"] = "json"


class LookalikeItem(BaseModel):
    customer_id: str | None = Field(description="The retailer's id (the smallest of the person's ids).")
    customer_key: str
    score: float = Field(description="Similarity to the seed (higher = more alike).")
    rank: int
    reasons: str = Field(description='In words, e.g. "like the seed in: spend band, category mix, city".')


class LookalikeResponse(BaseModel):
    request_id: str
    method: str
    seed: int = Field(description="Seed customers found in the base.")
    unknown_seed_ids: list[str]
    items: list[LookalikeItem]


class PlanAccepted(BaseModel):
    request_id: str
    job_id: str
    status: str
    status_url: str


class PlanStatus(BaseModel):
    request_id: str
    job_id: str
    status: Literal["queued", "running", "done", "failed"]
    progress: float = Field(ge=0, le=1)
    customers: int
    created_at: str
    error: str | None = None
    totals: dict[str, Any] | None = Field(None, description="When done: sums of the items (docs/campaigns.md).")
    offset: int | None = None
    total_items: int | None = None
    items: list[dict[str, Any]] | None = Field(None, description="When done: a page of the plan's rows.")


class ReportResponse(BaseModel):
    request_id: str
    horizon_days: float
    confidence: float
    method: str
    notes: list[str]
    rows: list[dict[str, Any]] = Field(description="One row per campaign, offer and segment (docs/campaigns.md).")


# --- lookalikes ------------------------------------------------------------------------------------------


def _base(services: Services, request: Request) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The latest snapshot with category mix, and key -> customer ids (cached per app and snapshot)."""
    home = services.settings.data_home
    snapshot = latest_snapshot(home)
    with _JOBS_LOCK:
        if not hasattr(request.app.state, "lookalike_base"):
            request.app.state.lookalike_base = {}  # one entry, replaced when a new snapshot appears
    cache: dict[str, tuple[pd.DataFrame, pd.DataFrame]] = request.app.state.lookalike_base
    if str(snapshot.path) in cache:
        return cache[str(snapshot.path)]
    features = snapshot.read()
    tables = ingested_dir(home)
    if (tables / "order_lines.parquet").is_file() and (tables / "items.parquet").is_file():
        lines = pd.read_parquet(tables / "order_lines.parquet", columns=[Col.CUSTOMER_KEY, Col.ITEM_ID, Col.ORDERED_AT])
        lines = lines[pd.to_datetime(lines[Col.ORDERED_AT], utc=True) < pd.Timestamp(snapshot.as_of)]
        features = features.merge(
            category_mix(lines, pd.read_parquet(tables / "items.parquet")), on=Col.CUSTOMER_KEY, how="left"
        )
    ids = (
        pd.read_parquet(tables / "identity_map.parquet", columns=[Col.CUSTOMER_ID, Col.CUSTOMER_KEY])
        .dropna()
        .astype(str)
    )
    cache.clear()
    cache[str(snapshot.path)] = (features, ids)
    return features, ids


@router.post("/v1/lookalikes", response_model=LookalikeResponse, responses=ERRORS)
def lookalikes(
    body: LookalikeRequest, request: Request, services: ServicesDep, rid: RequestIdDep, _: Campaign
) -> Response:
    """Customers most like the seed (the seed left out), with a score, a rank and reasons in words."""
    try:
        base, ids = _base(services, request)
    except KairosError as exc:
        raise ApiError(503, "no_snapshot", f"no feature snapshot to rank: {exc}") from exc
    known = ids[ids[Col.CUSTOMER_ID].isin(body.seed_customer_ids)]
    unknown = sorted(set(body.seed_customer_ids) - set(known[Col.CUSTOMER_ID]))
    seed = sorted(set(known[Col.CUSTOMER_KEY]) & set(base[Col.CUSTOMER_KEY]))
    if len(seed) < 2:
        raise ApiError(422, "invalid_request", f"body.seed_customer_ids: {len(seed)} known customer(s); at least 2")
    try:
        ranked = Lookalike(method=body.method).fit(base, seed).rank(base, size=body.size, threshold=body.threshold)
    except LookalikeError as exc:
        raise ApiError(422, "invalid_request", f"body.seed_customer_ids: {exc}") from exc
    primary = ids.sort_values([Col.CUSTOMER_KEY, Col.CUSTOMER_ID]).drop_duplicates(Col.CUSTOMER_KEY)
    ranked.insert(0, "customer_id", ranked[Col.CUSTOMER_KEY].map(primary.set_index(Col.CUSTOMER_KEY)[Col.CUSTOMER_ID]))
    return json_response(
        {
            "request_id": rid,
            "method": body.method,
            "seed": len(seed),
            "unknown_seed_ids": unknown,
            "items": ranked.to_dict("records"),
        },
        numpy=True,
    )


# --- plans ---------------------------------------------------------------------------------------------


@dataclass
class PlanJob:
    """One queued plan: its status, progress and, when done, its items and totals (or the error)."""

    id: str
    customers: int
    status: str = "queued"
    progress: float = 0.0
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    error: str | None = None
    items: pd.DataFrame | None = None
    totals: dict[str, Any] | None = None


class PlanJobs:
    """The app's plan jobs (the last :data:`KEEP_JOBS`), each run in its own worker thread."""

    def __init__(self) -> None:
        self.jobs: OrderedDict[str, PlanJob] = OrderedDict()
        self.lock = threading.Lock()

    def add(self, job: PlanJob) -> None:
        with self.lock:
            self.jobs[job.id] = job
            while len(self.jobs) > KEEP_JOBS:
                self.jobs.popitem(last=False)

    def get(self, job_id: str) -> PlanJob | None:
        with self.lock:
            return self.jobs.get(job_id)


def _jobs(request: Request) -> PlanJobs:
    state = request.app.state
    with _JOBS_LOCK:
        if not hasattr(state, "plan_jobs"):
            state.plan_jobs = PlanJobs()
    return state.plan_jobs


def _nbo(services: Services, catalogue: dict[str, Any] | None) -> NextBestOffer:
    served = services.bundle("offers")
    if catalogue is not None:
        try:
            parsed = parse_catalogue(catalogue, "body.catalogue")
        except CatalogueError as exc:
            raise ApiError(422, "invalid_request", str(exc)) from exc
        if served is None:
            return NextBestOffer(parsed)
        model: NextBestOffer = served.payload
        return NextBestOffer(parsed, model.uplift, model.control, model.caution, model.fallback_order_value)
    if served is None:
        raise ApiError(422, "invalid_request", "body.catalogue: required when no offers model is served")
    return served.payload


def _run(job: PlanJob, services: Services, body: PlanRequest, spec: CampaignSpec, nbo: NextBestOffer) -> None:
    from serving.routers.offers import _Batch  # the same store rows, contact states and channel order as /offers

    job.status = "running"
    try:
        window = spec.ends_at - spec.starts_at
        batch = _Batch(services, list(body.customer_ids), spec.starts_at, max(window, timedelta(0)))
        states = {s.customer_key: s for s in batch.states.values()}
        sendtime = services.bundle("sendtime")
        # two ids of one person (merged by identity resolution) are one customer: planned once, both listed
        frame = batch.frame.drop_duplicates(Col.CUSTOMER_KEY).reset_index(drop=True)
        first_id: dict[str, str] = {}
        merged: list[str] = []
        for i in batch.rows.tolist():
            key = str(batch.keys[i])
            if key in first_id:
                merged.append(batch.ids[i])
            else:
                first_id[key] = batch.ids[i]
        history = batch.book.offer_history(frame[Col.CUSTOMER_KEY].astype(str).tolist()) if len(frame) else None
        plan = plan_campaign(
            frame,
            nbo,
            spec,
            states=states,
            policy=services.policy,
            preference=sendtime.payload.channels if sendtime is not None else None,
            sendtime=sendtime.payload.model if sendtime is not None else None,
            history=history,
            progress=lambda share: setattr(job, "progress", round(0.95 * share, 3)),
        )
        items = items_for_export(plan.items)
        items.insert(0, "customer_id", items[Col.CUSTOMER_KEY].map(first_id))
        unknown = [cid for i, cid in enumerate(batch.ids) if batch.keys[i] is None or i not in batch.states]
        job.items = items
        job.totals = plan.totals | {"unknown_customer_ids": unknown, "merged_customer_ids": merged}
        job.status, job.progress = "done", 1.0
    except Exception as exc:
        job.status = "failed"
        job.error = str(exc) if isinstance(exc, KairosError | ValueError) else type(exc).__name__


@router.post("/v1/campaigns/plans", status_code=202, response_model=PlanAccepted, responses=ERRORS)
def create_plan(body: PlanRequest, request: Request, services: ServicesDep, rid: RequestIdDep, _: Campaign) -> Response:
    """Queue a campaign plan for ``customer_ids``; poll ``status_url`` for progress and the result."""
    try:
        spec = CampaignSpec(
            name=body.name,
            channels=tuple(body.channels),
            starts_at=body.starts_at,
            ends_at=body.ends_at,
            budget=body.budget,
            send_without_offer=body.send_without_offer,
        )
    except ValueError as exc:
        raise ApiError(422, "invalid_request", f"body: {exc}") from exc
    nbo = _nbo(services, body.catalogue)
    job = PlanJob(uuid.uuid4().hex, len(body.customer_ids))
    _jobs(request).add(job)
    threading.Thread(target=_run, args=(job, services, body, spec, nbo), name=f"plan-{job.id[:8]}", daemon=True).start()
    payload = {"request_id": rid, "job_id": job.id, "status": job.status, "status_url": f"/v1/campaigns/plans/{job.id}"}
    return Response(content=orjson.dumps(payload), status_code=202, media_type="application/json")


@router.get(
    "/v1/campaigns/plans/{job_id}",
    response_model=PlanStatus,
    responses={**ERRORS, 404: {"description": "no such plan job (jobs live in process memory)"}},
)
def plan_status(
    job_id: str,
    request: Request,
    rid: RequestIdDep,
    _: Campaign,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> Response:
    """A plan job's status and progress; when done, its totals and the items ``offset`` .. ``offset + limit``."""
    job = _jobs(request).get(job_id)
    if job is None:
        raise ApiError(404, "not_found", "path.job_id: no such plan job (jobs are kept in memory, the last 20)")
    payload: dict[str, Any] = {
        "request_id": rid,
        "job_id": job.id,
        "status": job.status,
        "progress": job.progress,
        "customers": job.customers,
        "created_at": job.created_at,
    }
    if job.status == "failed":
        payload["error"] = job.error
    if job.status == "done" and job.items is not None:
        page = job.items.iloc[offset : offset + limit]
        payload |= {
            "totals": job.totals,
            "offset": offset,
            "items": page.to_dict("records"),
            "total_items": len(job.items),
        }
    return json_response(payload, numpy=True)


# --- the incrementality report ---------------------------------------------------------------------------------


@router.post("/v1/campaigns/report", response_model=ReportResponse, responses=ERRORS)
def campaign_report(body: ReportRequest, services: ServicesDep, rid: RequestIdDep, _: Campaign) -> Response:
    """Treated vs control per campaign, offer and segment from the data home's message history and orders."""
    tables = ingested_dir(services.settings.data_home)
    if not (tables / "messages.parquet").is_file():
        raise ApiError(422, "invalid_request", "the data has no message history to measure campaigns on")
    messages = pd.read_parquet(
        tables / "messages.parquet", columns=[Col.CUSTOMER_KEY, Col.CAMPAIGN_ID, Col.SENT_AT, Col.OFFER_ID]
    )
    orders = pd.read_parquet(
        tables / "orders.parquet", columns=[Col.CUSTOMER_KEY, Col.ORDERED_AT, Col.AMOUNT, Col.STATUS]
    )
    try:
        assignment = message_assignment(messages, body.campaign_ids)
    except InputDataError as exc:
        raise ApiError(422, "invalid_request", f"body.campaign_ids: {exc}") from exc
    try:
        snapshot = latest_snapshot(services.settings.data_home)
        segments = pd.read_parquet(snapshot.path / SEGMENTS_FILE, columns=[Col.CUSTOMER_KEY, "lifecycle"])
        assignment = assignment.merge(
            segments.rename(columns={"lifecycle": "segment"}), on=Col.CUSTOMER_KEY, how="left"
        )
    except (KairosError, FileNotFoundError, KeyError):
        pass  # no segments: the report has no segment rows, and says nothing about them
    report = measure(assignment, orders, horizon_days=body.horizon_days)
    if body.format == "html":
        return HTMLResponse(render_html(report))
    return json_response({"request_id": rid} | report.to_dict(), numpy=True)
