"""Batch scoring, vectorised end to end: one store gather, one LightGBM call and one calibration per model,
one index lookup into the CLV table, then the items in input order.

The calibrated probabilities are exactly ``batch/score.py``'s (``kairos score --all``): the same
LightGBM text, the same float32 features, the same calibrator. Fallbacks are labelled per model:
the store down or a row too old -> the model's training base rate; an optional model that never
loaded -> ``model_priors`` when configured, else null. A customer outside a model's population (churn:
no order in the last year) gets null for it, named in ``not_applicable``: not a score, not a fallback.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from bundles.base import ModelBundle
from bundles.kinds import is_propensity
from bundles.propensity import PropensityModel
from bundles.value import ClvTable, ValueModels
from features.definitions import DESCRIPTIONS
from features.online import Lookup, OnlineStoreUnavailable
from models.reasons import DEFAULT_CURRENCY, ReasonExplainer, band, currency_of
from models.stacking import DESCRIPTIONS as STACKED_DESCRIPTIONS
from serving.schemas import AnswerSource, ItemStatus
from serving.state import Services

log = logging.getLogger("kairos.serving.scores")
REASONS_K = 3


@dataclass(frozen=True)
class Scorer:
    """One propensity model kind as this request sees it: its bundle (or None) and its fallback prior."""

    kind: str
    bundle: ModelBundle | None
    prior: float | None

    @property
    def model(self) -> PropensityModel | None:
        return self.bundle.payload if self.bundle is not None else None

    def ref(self, alias: str, name: str) -> dict[str, Any]:
        if self.bundle is not None:
            return self.bundle.ref() | {"source": AnswerSource.MODEL}
        return {"name": name, "version": None, "alias": alias, "source": AnswerSource.FALLBACK}


def _currency(active: list[Scorer]) -> str:
    """The data's currency as the first loaded model's feature manifest records it (issue 18)."""
    bundle = next((s.bundle for s in active if s.bundle is not None), None)
    return currency_of(bundle.provenance.manifest) if bundle is not None else DEFAULT_CURRENCY


def scorers(services: Services) -> list[Scorer]:
    """Every configured propensity model, in configuration order (the bundle each request holds)."""
    out = []
    for kind in services.slots:
        if not is_propensity(kind):
            continue
        bundle = services.bundle(kind)
        prior = bundle.payload.prior if bundle is not None else services.settings.model_priors.get(kind)
        out.append(Scorer(kind, bundle, prior))
    return out


def _nullable(values: np.ndarray) -> list[float | None]:
    """The values as Python floats, NaN as None (null in the answer)."""
    return [None if v != v else v for v in values.tolist()]  # v != v: NaN, without a call per value


def score_batch(services: Services, ids: Sequence[str], reasons: bool, now: datetime | None = None) -> dict[str, Any]:
    """The body of ``POST /v1/scores`` (without the request id), as of ``now`` (default: the server's clock)."""
    settings = services.settings
    active = scorers(services)
    clv_bundle = services.bundle("clv")
    clv: ClvTable | None = clv_bundle.payload if clv_bundle is not None else None
    value_bundle = services.bundle("value")
    value_model: ValueModels | None = value_bundle.payload if value_bundle is not None else None
    models = [s.ref(settings.model_alias, settings.model_names[s.kind]) for s in active]
    for kind, loaded in (("clv", clv_bundle), ("value", value_bundle)):
        if kind in services.slots:
            models.append(
                loaded.ref() | {"source": AnswerSource.MODEL}
                if loaded is not None
                else {
                    "name": settings.model_names[kind],
                    "version": None,
                    "alias": settings.model_alias,
                    "source": "fallback",
                }
            )
    n = len(ids)
    degraded = False
    try:
        found, names = services.store.lookup(ids, now=now)
    except OnlineStoreUnavailable as exc:
        services.metrics.fallbacks.labels("scores", "store_unavailable").inc(n)
        log.warning("online store unavailable; population priors served", extra={"error": str(exc)[:200]})
        found, names, degraded = _nothing(n), [], True

    ok = found.found
    rows = np.flatnonzero(ok)
    known = np.array([k is not None for k in found.keys], dtype=bool)
    stale = int(found.stale.sum())
    if stale:
        services.metrics.fallbacks.labels("scores", "stale_features").inc(stale)

    probs: dict[str, np.ndarray] = {}
    bands: dict[str, np.ndarray] = {}
    why: dict[str, list[list[dict[str, Any]]]] = {}
    known_rows = found.values if len(rows) == n else found.values[rows]  # one gather for every model
    frame = pd.DataFrame(known_rows, columns=names) if reasons and len(rows) else None
    # reasons (when asked for) print amounts in the data's currency, which the models' manifest records
    explainer = (
        ReasonExplainer({**DESCRIPTIONS, **STACKED_DESCRIPTIONS}, currency=_currency(active))
        if frame is not None
        else None
    )
    not_applicable = np.zeros((n, len(active)), dtype=bool)
    for col, s in enumerate(active):
        m = s.model
        p = np.full(n, s.prior if s.prior is not None else np.nan, dtype=np.float64)
        if m is not None and len(rows):
            p[rows] = m.predict(known_rows, names)
            outside = rows[m.outside(known_rows, names)]
            p[outside] = np.nan
            not_applicable[outside, col] = True
            if explainer is not None and frame is not None:
                why[s.kind] = [
                    [r.as_dict() for r in rs] for rs in explainer.explain(m.model, m.with_derived(frame), k=REASONS_K)
                ]
        probs[s.kind] = p
        good = np.isfinite(p)
        b = np.full(n, None, dtype=object)
        if good.any():
            b[good] = band(p[good], services.policies.cuts(s.kind, m))  # the policy file's cuts
        bands[s.kind] = b

    keys = found.keys
    value: dict[str, np.ndarray] = {}
    in_clv = np.zeros(n, dtype=bool)
    alive_band = np.full(n, None, dtype=object)
    if clv is not None:
        in_clv, value = clv.lookup(keys)
        pa = value["p_alive"]
        has = np.isfinite(pa)
        if has.any():
            alive_band[has] = band(pa[has], services.policies.cuts("p_alive", None))
    # spend and orders over the value model's horizon, from the feature row (Kairos's regressors or a baseline)
    spend = np.full(n, np.nan)
    orders = np.full(n, np.nan)
    if value_model is not None and len(rows):
        at = {f: i for i, f in enumerate(names)}
        spend[rows], orders[rows] = value_model.predict(known_rows[:, [at[f] for f in value_model.features]])
    segments = services.segments
    row_of = {int(r): i for i, r in enumerate(rows)} if why else {}

    items: list[dict[str, Any]] = []
    plists = {k: _nullable(v) for k, v in probs.items()}
    blists = {k: v.tolist() for k, v in bands.items()}
    vlists = {k: _nullable(v) for k, v in value.items()}
    ok_list, known_list, clv_list, alive_bands = ok.tolist(), known.tolist(), in_clv.tolist(), alive_band.tolist()
    spend_list, orders_list = _nullable(spend), _nullable(orders)
    horizon = value_model.horizon_days if value_model is not None else None
    skipped_by_row: list[list[str]] = [[] for _ in range(n)]
    for row, col in zip(*np.nonzero(not_applicable), strict=True):
        skipped_by_row[row].append(active[col].kind)
    for i, cid in enumerate(ids):
        key = keys[i]
        good = ok_list[i]
        skipped = skipped_by_row[i]
        item: dict[str, Any] = {
            "customer_id": cid,
            "status": ItemStatus.OK if (known_list[i] or degraded) else ItemStatus.UNKNOWN_CUSTOMER,
            "source": AnswerSource.MODEL if good else AnswerSource.FALLBACK,
            "customer_key": key,
            "probabilities": {k: v[i] for k, v in plists.items()},
            "bands": {k: v[i] for k, v in blists.items()},
            "not_applicable": skipped,
        }
        in_table = clv is not None and clv_list[i]
        has_spend = spend_list[i] is not None
        if in_table or has_spend:
            item["value"] = {
                "p_alive": vlists["p_alive"][i] if in_table else None,
                "p_alive_band": alive_bands[i],
                "expected_orders_365d": vlists["expected_orders"][i] if in_table else None,
                "clv_365d": vlists["expected_spend"][i] if in_table else None,
                "expected_order_value": vlists["expected_order_value"][i] if in_table else None,
                "next_order_days": vlists["next_order_days"][i] if in_table else None,
                "horizon_days": horizon if has_spend else None,
                "expected_spend": spend_list[i],
                "expected_orders": orders_list[i],
            }
        else:
            item["value"] = None
        if key is not None:
            item["segments"] = segments.headline(key)
        if reasons:
            j = row_of.get(i)
            item["reasons"] = {k: (v[j] if j is not None and k not in skipped else []) for k, v in why.items()}
        items.append(item)
    any_fallback = degraded or bool(stale) or any(s.bundle is None for s in active)
    return {
        "models": models,
        "degraded": degraded or bool(stale),
        "source": AnswerSource.FALLBACK if degraded else AnswerSource.MODEL,
        "fallback_models": [s.kind for s in active if s.bundle is None] if any_fallback else [],
        "items": items,
    }


def _nothing(n: int) -> Lookup:
    """A lookup in which no id was found (the store could not answer)."""
    return Lookup(
        keys=[None] * n,
        rows=np.full(n, -1, dtype=np.int64),
        values=np.empty((n, 0), dtype=np.float32),
        age_days=np.full(n, np.nan),
        stale=np.zeros(n, dtype=bool),
    )
