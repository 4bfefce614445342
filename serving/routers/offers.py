"""Next-best-offer for one customer and for a campaign batch: offer or none, channel, send time, reason.

Channels are consented (the online store: an ``unsubscribe`` counts at once) ∩ allowed by the contact
policy within the send window (caps, quiet hours, offer cooldown) ∩ the channel preference's order.
A customer with no such channel is ``suppressed`` with the reason; never an offer to an opted-out
channel. The send time is the send-time model's best slot once the policy allows the channel, checked
against the policy again.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, replace
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from fastapi import APIRouter, Response

from bundles.sendtime import SendTime
from features.contract import Channel, Col
from features.online import OnlineStoreUnavailable
from models.decisioning.nbo import NextBestOffer, Status
from models.decisioning.policy import ContactState
from serving.contact import consent_columns, state_of
from serving.deps import Campaign, RequestIdDep, ServicesDep, model_of
from serving.routers.common import ERRORS, decision_time, iso, json_response
from serving.schemas import (
    AnswerSource,
    CampaignRequest,
    CampaignResponse,
    ItemStatus,
    NextBestRequest,
    OfferResponse,
)
from serving.security import ApiError
from serving.state import Services

router = APIRouter(prefix="/v1/offers", tags=["offers"])
log = logging.getLogger("kairos.serving.offers")


class _Batch:
    """The customers of one request: their store rows, contact states and usable channels."""

    def __init__(self, services: Services, ids: list[str], now: datetime, window: timedelta) -> None:
        found, names = services.store.lookup(ids, strings=True, now=now)
        self.ids = ids
        self.keys = found.keys
        self.rows = np.flatnonzero(found.found)
        columns = consent_columns(names)
        self.book = services.contacts.view([str(found.keys[i]) for i in self.rows])  # every replica's sends
        self.states: dict[int, ContactState] = {
            int(i): state_of(str(found.keys[i]), found.values[i], columns, self.book) for i in self.rows
        }
        frame = pd.DataFrame(found.values[self.rows], columns=names)
        for name, values in found.strings.items():
            frame[name] = [values[i] for i in self.rows]
        seg_cols = list(services.segments.columns)
        segs = [services.segments.of(found.keys[i]) or {} for i in self.rows]
        for c in seg_cols:
            frame[c] = [s.get(c) for s in segs]
        frame.insert(0, Col.CUSTOMER_KEY, [found.keys[i] for i in self.rows])
        self.frame = frame
        self.usable: dict[str, list[str]] = {}
        self.reasons: dict[str, list[str]] = {}
        self.from_at: dict[tuple[str, str], datetime] = {}
        sendtime = services.bundle("sendtime")
        prefs = sendtime.payload.channels if sendtime is not None else None
        for state in self.states.values():
            key = state.customer_key
            consented = sorted(state.consented(now), key=[c.value for c in Channel].index)
            if prefs is not None and consented:
                consented = [s.channel for s in prefs.scores(key, consented)]
            why: list[str] = []
            for ch in [c.value for c in Channel]:
                p = services.policy.may_contact(state, ch, now, with_offer=True)
                if p.allowed or (p.next_allowed_at is not None and p.next_allowed_at < now + window):
                    self.from_at[(key, ch)] = p.next_allowed_at or now
                else:
                    why += p.reasons
            usable = [ch for ch in consented if (key, ch) in self.from_at]
            self.usable[key] = usable
            self.reasons[key] = why


def _send_at(
    services: Services, state: ContactState, channel: str, start: datetime, window_end: datetime
) -> tuple[datetime, datetime | None, str]:
    """The best slot at or after ``start`` for ``channel`` (the send-time model), that the policy allows."""
    sendtime = services.bundle("sendtime")
    if sendtime is None or start >= window_end:
        return start, None, "policy"
    st: SendTime = sendtime.payload
    choice = st.model.best_slots(
        state.customer_key, channel, start, window_end - start, services.policy.config.quiet_hours
    )
    at = choice.best_at
    if at is None or not services.policy.allowed_at(state, channel, at, with_offer=True):
        return start, None, "policy"
    return at, choice.best_local, choice.source


def _decisions(
    services: Services, nbo: NextBestOffer, batch: _Batch, now: datetime, budget: float | None, campaign: bool
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    summary = None
    if not len(batch.frame):
        decided = pd.DataFrame(columns=[Col.CUSTOMER_KEY])
    elif campaign:
        history = batch.book.offer_history(batch.frame[Col.CUSTOMER_KEY].astype(str).tolist())
        decided, alloc = nbo.allocate(
            batch.frame, now=now, budget=budget, allowed_channels=batch.usable, history=history
        )
        summary = asdict(alloc)
    else:
        history = batch.book.offer_history(batch.frame[Col.CUSTOMER_KEY].astype(str).tolist())
        decided = nbo.decide(batch.frame, now=now, allowed_channels=batch.usable, history=history)
    by_row = dict(zip(batch.rows.tolist(), decided.to_dict("records"), strict=True))
    window_end = now + timedelta(hours=services.settings.offer_window_hours)
    items: list[dict[str, Any]] = []
    for i, cid in enumerate(batch.ids):
        key = batch.keys[i]
        row = by_row.get(i)
        if key is None or row is None:
            items.append({"customer_id": cid, "status": ItemStatus.UNKNOWN_CUSTOMER, "decision": "no_offer"})
            continue
        decision = str(row["status"])
        item: dict[str, Any] = {
            "customer_id": cid,
            "customer_key": key,
            "status": ItemStatus.OK,
            "decision": decision,
            "offer_id": row.get(Col.OFFER_ID),
            "channel": row.get("channel"),
            "reason": row.get("reason"),
            "control_group": decision == Status.CONTROL.value,
            "expected_profit": float(row["expected_profit"]),
            "uplift": float(row["uplift"]),
            "source": str(row["source"]),
        }
        if decision == Status.NOT_CONTACTABLE.value or not batch.usable.get(key):
            why = "; ".join(dict.fromkeys(batch.reasons.get(key) or [])) or "no consented channel"
            item |= {"status": ItemStatus.SUPPRESSED, "decision": Status.NOT_CONTACTABLE.value}
            item |= {"offer_id": None, "channel": None, "reason": f"not contactable in the window: {why}"}
        elif decision == Status.OFFER.value and item["channel"]:
            state = batch.states[i]
            at, local, src = _send_at(
                services, state, item["channel"], batch.from_at[(key, item["channel"])], window_end
            )
            item |= {"send_at": iso(at), "send_at_local": iso(local), "send_time_source": src}
        items.append(item)
    return items, summary


def _respond(
    services: Services,
    rid: str,
    ids: list[str],
    now: datetime,
    budget: float | None,
    campaign: bool,
    allowed: list[str] | None = None,
) -> Response:
    bundle = model_of(services, "offers")
    policy = services.policies.policy
    nbo: NextBestOffer = replace(bundle.payload, control=policy.control)  # the policy file's control group
    window = timedelta(hours=services.settings.offer_window_hours)
    models = [bundle.ref() | {"source": AnswerSource.MODEL}]
    sendtime = services.bundle("sendtime")
    if sendtime is not None:
        models.append(sendtime.ref() | {"source": AnswerSource.MODEL})
    try:
        batch = _Batch(services, ids, now, window)
    except OnlineStoreUnavailable as exc:
        # Without a consent read nobody may be contacted: every item suppressed, labelled.
        services.metrics.fallbacks.labels("offers", "store_unavailable").inc(len(ids))
        log.warning("online store unavailable; no offers", extra={"error": str(exc)[:200]})
        items = [
            {
                "customer_id": cid,
                "status": ItemStatus.SUPPRESSED,
                "decision": "no_offer",
                "reason": "consent unknown: the online store is unavailable; ask again",
            }
            for cid in ids
        ]
        down = {"request_id": rid, "models": models, "degraded": True, "source": AnswerSource.FALLBACK, "items": items}
        return json_response(down)
    if allowed is not None:  # the campaign's channels: no offer ever goes out on another
        batch.usable = {k: [c for c in chans if c in allowed] for k, chans in batch.usable.items()}
        for key, chans in batch.usable.items():
            if not chans:
                batch.reasons[key] = [*batch.reasons.get(key, []), f"no consented channel among {', '.join(allowed)}"]
    items, summary = _decisions(services, nbo, batch, now, budget, campaign)
    payload: dict[str, Any] = {
        "request_id": rid,
        "models": models,
        "degraded": False,
        "source": AnswerSource.MODEL,
        "now": now.isoformat(),
        "policy": policy.describe(),
        "items": items,
    }
    if summary is not None:
        payload["summary"] = summary
    return json_response(payload, numpy=True)


@router.post("/next-best", response_model=OfferResponse, responses=ERRORS)
def next_best(body: NextBestRequest, services: ServicesDep, rid: RequestIdDep, _: Campaign) -> Response:
    """One customer's best offer by expected incremental profit, or ``no_offer`` with the reason.

    ``decision``: ``offer``, ``no_offer``, ``control_group`` (held out, ``control_group: true``) or
    ``not_contactable`` (item status ``suppressed``: no consented channel the policy allows within
    ``offer_window_hours``). With an offer: the channel and the send time (UTC and local).
    """
    allowed = [c.value for c in body.channels] if body.channels else None
    return _respond(
        services,
        rid,
        [body.customer_id],
        decision_time(body.now, clock=services.settings.clock),
        None,
        campaign=False,
        allowed=allowed,
    )


@router.post("/campaign", response_model=CampaignResponse, responses=ERRORS)
def campaign(body: CampaignRequest, services: ServicesDep, rid: RequestIdDep, _: Campaign) -> Response:
    """Offers for a batch within a budget (expected cost), in input order, with the allocation summary.

    Per-offer budgets of the catalogue and ``budget`` both hold; customers past the budget get
    ``over_budget``. Same per-item fields as ``/v1/offers/next-best``.
    """
    if len(body.customer_ids) > services.settings.max_batch:
        raise ApiError(422, "invalid_request", f"body.customer_ids: at most {services.settings.max_batch} ids")
    allowed = [c.value for c in body.channels] if body.channels else None
    return _respond(
        services,
        rid,
        list(body.customer_ids),
        decision_time(body.now, clock=services.settings.clock),
        body.budget,
        campaign=True,
        allowed=allowed,
    )
