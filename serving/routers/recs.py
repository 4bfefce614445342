"""Recommendations: for a cart, for a customer, similar to an item, buy again. Each item says why.

The storefront's hot path, the cart, answers on the event loop when the work is small and touches no
network: at most :data:`INLINE_MAX_CART` cart items (each has a bounded neighbour list, so the answer
is a few numpy calls over a few hundred candidates, about 0.1-0.3 ms) and either no customer or the
in-process online store. A thread hop would cost about as much as the answer itself. Anything else (a
big cart, a customer looked up in Redis, the other recommenders, whose work grows with the
catalogue) runs in the threadpool.

The cart and next-basket answers come from the model the training job's gate chose for them (Kairos's own,
or the best baseline when Kairos did not beat it with the interval above zero): ``models[0].kind`` and
``baseline`` say which (``baseline: gp_topfreq``, say).

A known customer's answers fold in their item events since the snapshot (views, carts, orders posted to
``/v1/events``), read from the online store with the data's clock (:meth:`serving.store.StoreGateway.recent_events`):
the next call after an event already answers with it (docs/recommenders.md, "Today's events").
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from bundles.recs import Filters, RecsAnswer, RecsModel, baseline_of
from features.online import OnlineStoreUnavailable
from models.recs.personal import RecentActivity
from serving.deps import RequestIdDep, ServicesDep, Storefront, model_of
from serving.lean import LeanRoute
from serving.observability import request_id_var
from serving.routers.common import ERRORS, json_response
from serving.schemas import (
    AnswerSource,
    CartRequest,
    CustomerRecRequest,
    ModelKind,
    RecFilters,
    RecResponse,
    SimilarRequest,
)
from serving.state import Services

router = APIRouter(prefix="/v1/recommendations", tags=["recommendations"])
log = logging.getLogger("kairos.serving.recs")

RESPONSES = {**ERRORS, 422: {"description": "invalid request, e.g. an unknown category in the filters"}}
INLINE_MAX_CART = 20


def _filters(f: RecFilters) -> Filters:
    return Filters(
        include_categories=frozenset(f.include_categories) if f.include_categories is not None else None,
        exclude_categories=frozenset(f.exclude_categories),
        min_price=f.min_price,
        max_price=f.max_price,
        exclude=frozenset(f.exclude),
    )


Ask = Callable[[RecsModel, str | None, RecentActivity | None], RecsAnswer]


def _customer(
    services: Services, customer_id: str | None, events: bool = True
) -> tuple[str | None, RecentActivity | None, bool]:
    """(customer_key or None, their events since the snapshot (when ``events``), degraded): an unavailable
    store means "unknown, degraded"."""
    if customer_id is None:
        return None, None, False
    try:
        key = services.store.resolve([customer_id])[0]
        if key is None or not events:
            return key, None, False
        recent = services.store.recent_events(key)
    except OnlineStoreUnavailable as exc:
        log.warning("online store unavailable; answering without the customer", extra={"error": str(exc)[:200]})
        return None, None, True
    return key, RecentActivity.from_events(key, recent.events, recent.clock), False


def _respond(
    services: Services, rid: str, endpoint: str, answer: RecsAnswer, degraded: bool, model: RecsModel, ref: dict
) -> Response:
    described = model.describe_items([r.item_id for r in answer.items])
    items = [
        # orjson writes the RecSource (a StrEnum) as its value
        {
            "item_id": r.item_id,
            "score": r.score,
            "source": r.source,
            "reason": r.reason,
            "name": n,
            "category": c,
            "price": p,
        }
        for r, (n, c, p) in zip(answer.items, described, strict=True)
    ]
    if answer.served is not None:  # the model the gate chose for this answer: Kairos's own, or a baseline
        baseline = baseline_of(answer.served)
        ref = {**ref, "kind": ModelKind.BASELINE if baseline else ModelKind.KAIROS, "baseline": baseline}
    fallback = answer.cold_start or degraded
    if fallback:
        services.metrics.fallbacks.labels(endpoint, "store_unavailable" if degraded else "cold_start").inc()
    payload = {
        "request_id": rid,
        "models": [ref],
        "degraded": degraded,
        "source": AnswerSource.FALLBACK if fallback else AnswerSource.MODEL,
        "cold_start": answer.cold_start,
        "items": items,
    }
    return json_response(payload)


def _run(
    services: Services,
    rid: str,
    endpoint: str,
    customer_id: str | None,
    ask: Ask,
    on_degraded: Callable[[RecsModel], RecsAnswer] | None = None,
    events: bool = True,
) -> Response:
    bundle = model_of(services, "recs")
    model: RecsModel = bundle.payload
    key, recent, degraded = _customer(services, customer_id, events)
    answer = on_degraded(model) if degraded and on_degraded is not None else ask(model, key, recent)
    return _respond(services, rid, endpoint, answer, degraded, model, bundle.ref())


async def _run_small(
    request: Request,
    endpoint: str,
    customer_id: str | None,
    seeds: int,
    ask: Ask,
) -> Response:
    """:func:`_run` on the event loop when the work is small and local (see the module), else in a thread."""
    services: Services = request.app.state.services
    rid = request_id_var.get()
    if seeds <= INLINE_MAX_CART and (customer_id is None or services.store.in_process):
        return _run(services, rid, endpoint, customer_id, ask)
    return await run_in_threadpool(_run, services, rid, endpoint, customer_id, ask)


async def cart(body: CartRequest, request: Request, _: Storefront) -> Response:
    """Items bought together with the cart's, never a cart item, an excluded one or (for a known customer)
    one they already bought; topped up to ``k`` from popular items. Anonymous carts are fine."""
    f = _filters(body.filters)
    return await _run_small(
        request,
        "recs_cart",
        body.customer_id,
        len(body.cart),
        lambda m, key, recent: m.cart(body.cart, key, body.k, f, recent),
    )


# the storefront's hot path: valid requests skip FastAPI's general handler (serving/lean.py)
router.add_api_route(
    "/cart", cart, methods=["POST"], response_model=RecResponse, responses=RESPONSES, route_class_override=LeanRoute
)


@router.post("/customer", response_model=RecResponse, responses=RESPONSES)
def for_customer(body: CustomerRecRequest, services: ServicesDep, rid: RequestIdDep, _: Storefront) -> Response:
    """The customer's next basket: their own items by recency-weighted frequency, then new personal picks.
    An unknown customer gets popular items (``cold_start: true``); a store outage, the same, degraded."""
    f = _filters(body.filters)
    return _run(
        services,
        rid,
        "recs_customer",
        body.customer_id,
        lambda m, key, recent: m.for_customer(key, body.k, f, recent),
        lambda m: m.fallback(body.k, f),
    )


@router.post("/similar", response_model=RecResponse, responses=RESPONSES)
def similar(body: SimilarRequest, services: ServicesDep, rid: RequestIdDep, _: Storefront) -> Response:
    """Items like ``item_id`` (purchase factors and category); popular ones for an item the model does not know."""
    f = _filters(body.filters)
    return _run(
        services,
        rid,
        "recs_similar",
        body.customer_id,
        lambda m, key, _recent: m.similar_items(body.item_id, key, body.k, f),
        events=False,  # similar items do not fold today's events in: no read for them
    )


@router.post("/buy-again", response_model=RecResponse, responses=RESPONSES)
def buy_again(body: CustomerRecRequest, services: ServicesDep, rid: RequestIdDep, _: Storefront) -> Response:
    """The customer's items that are due again by their own purchase interval (may be fewer than ``k``;
    empty for an unknown customer or when the store is down: nothing else is a "buy again")."""
    f = _filters(body.filters)
    return _run(
        services,
        rid,
        "recs_buy_again",
        body.customer_id,
        lambda m, key, recent: m.buy_again(key, body.k, f, recent),
        lambda m: RecsAnswer([], cold_start=True),
    )
