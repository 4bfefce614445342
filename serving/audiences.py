"""Audiences in the API: every customer of the latest snapshot, scored by the function ``POST /v1/scores``
uses (:func:`serving.scoring.score_batch`), chunk by chunk, kept when the condition holds.

A chunk's row per customer carries what an export row carries (:mod:`features.audience`): each model's
probability (as the float32 the export writes, so ``churn > 0.6`` splits customers exactly where the export
does) and band, value, segments and flags, the features and attributes the condition names (from the
online store, real-time events applied), and consent per channel: e-mail, SMS and push from the online
store (an unsubscribe applies at once), the other campaign channels and ``advertising`` from the consent
records before the snapshot's instant.

The customers are the snapshot's (customers first seen through events since then join at the next
snapshot), in its order; a page's cursor is a position in that order. Memory holds the snapshot's keys,
ids and consent columns as Arrow arrays aligned with them, and one chunk of answers, never an audience.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from bundles.kinds import is_propensity
from features.audience import (
    CONSENT_PREFIX,
    SEGMENT_NAMES,
    VALUE_COLUMNS,
    Audience,
    audience_names,
    consent_channels,
)
from features.conditions import BAND_LABEL_SUFFIX
from features.consent import consent_rules
from features.contract import ATTRIBUTE_PREFIX, Col
from features.errors import KairosError
from features.online import OnlineStoreUnavailable
from features.segments import SegCol
from serving.audience_universe import STORE_CHANNELS, Universe
from serving.scoring import score_batch
from serving.state import Services

CHUNK = 2_000  # customers scored per call of score_batch
_VALUE_FIELDS = {  # audience name -> the /v1/scores item's value field
    "p_alive": "p_alive",
    "expected_orders": "expected_orders_365d",
    "expected_spend": "clv_365d",
    "expected_order_value": "expected_order_value",
    "next_order_days": "next_order_days",
    "value_expected_spend": "expected_spend",
    "value_expected_orders": "expected_orders",
}


class ModelNotLoaded(KairosError):
    """The condition names a model the service answers only with its fallback prior: no audience from priors."""


def audience_of(services: Services, condition: str) -> Audience:
    """The condition checked against what this service scores (its propensity models) and the channels.

    Raises:
        AudienceError: a bad condition (the message names what and why).
    """
    kinds = [k for k in services.slots if is_propensity(k)]
    try:
        channels = list(consent_rules(services.settings.data_home))
    except (OSError, KairosError):
        channels = []
    return Audience(condition, audience_names(kinds, consent_channels(channels)))


def _score(services: Services, ids: Sequence[str], now: datetime) -> dict[str, Any]:
    """The body ``POST /v1/scores`` answers for ``ids`` at ``now``: the one scoring function, the one clock
    (the store's features read at the answer's instant, docs/features.md)."""
    body = score_batch(services, ids, False, now=now)
    if body["degraded"]:  # priors are no answer to "who is in the audience"
        raise OnlineStoreUnavailable("the online store could not answer every customer (down or stale rows)")
    return body


def chunk_rows(
    services: Services, universe: Universe, audience: Audience, start: int, stop: int, now: datetime
) -> pd.DataFrame:
    """Rows ``[start, stop)`` of the universe as audience rows (``position`` = the place in the universe)."""
    keys = universe.keys.slice(start, stop - start).to_pylist()
    body = _score(services, keys, now)
    unloaded = [k for k in body["fallback_models"] if k in audience.names or f"{k}_band" in audience.names]
    if unloaded:
        raise ModelNotLoaded(f"the {', '.join(unloaded)} model is not loaded; retry later")
    items = body["items"]
    frame: dict[str, Any] = {
        "position": np.arange(start, stop, dtype=np.int64),
        Col.CUSTOMER_KEY: keys,
        Col.CUSTOMER_ID: universe.ids.slice(start, stop - start).to_pylist(),
    }
    kinds = list(items[0]["probabilities"]) if items else []
    for kind in kinds:
        p = np.array([np.nan if (v := i["probabilities"][kind]) is None else v for i in items], dtype=np.float64)
        frame[kind] = p.astype(np.float32).astype(np.float64)  # the export's float32
        frame[f"{kind}_band"] = [i["bands"][kind] for i in items]
    for name, field in _VALUE_FIELDS.items():
        frame[name] = [np.nan if i["value"] is None or i["value"][field] is None else i["value"][field] for i in items]
    segments = services.segments
    wanted = [c for c in SEGMENT_NAMES if c in audience.names or c in (SegCol.LIFECYCLE, SegCol.RFM_SEGMENT)]
    rows = [segments.of(k) or {} for k in keys]
    for column in wanted:
        frame[column] = pd.Series([r.get(column) for r in rows], dtype=object)
    for column, values in universe.consents.items():
        frame[column] = values.slice(start, stop - start).to_numpy(zero_copy_only=False)
    out = pd.DataFrame(frame)
    # from the online store: consent on its channels (real time), and the features and attributes named
    store_consents = [CONSENT_PREFIX + c for c in STORE_CHANNELS]
    named = [n for n in audience.names if n not in out.columns and n not in store_consents]
    found, names = services.store.lookup(keys, strings=True)
    at = {n: i for i, n in enumerate(names)}
    for name in store_consents:
        out[name] = found.values[:, at[name]] == 1.0 if name in at else False
    for name in named:
        if name in at:
            out[name] = found.values[:, at[name]].astype(np.float64)
        elif name in found.strings:
            out[name] = pd.Series(found.strings[name], dtype=object)
        label = name + BAND_LABEL_SUFFIX  # an ordered band's label beside its position
        if name.startswith(ATTRIBUTE_PREFIX) and label in found.strings:
            out[label] = pd.Series(found.strings[label], dtype=object)
    return out


def scan(
    services: Services,
    universe: Universe,
    audience: Audience,
    now: datetime,
    start: int = 0,
    chunk: int = CHUNK,
) -> Iterator[tuple[int, pd.DataFrame]]:
    """From position ``start`` on, per chunk: where it ended and its members (every column).

    Raises:
        OnlineStoreUnavailable: the store cannot answer (no audience is answered from priors).
        ModelNotLoaded: a model the condition names is not loaded.
        AudienceError: the data lacks what the condition names (an attribute, say).
    """
    n = len(universe)
    position = start
    while position < n:
        stop = min(position + chunk, n)
        rows = chunk_rows(services, universe, audience, position, stop, now)
        keep = audience.evaluate(rows, universe.bands)
        yield stop, rows.loc[keep]
        position = stop


def plain(members: pd.DataFrame, columns: Sequence[str]) -> list[dict[str, Any]]:
    """Members as JSON-ready dicts: the ids and ``columns`` (NaN as null, NumPy scalars as Python)."""
    frame = members[[Col.CUSTOMER_ID, Col.CUSTOMER_KEY, *columns]]
    frame = frame.astype(object).where(frame.notna(), None)
    return [{k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()} for row in frame.to_dict("records")]


__all__ = ["VALUE_COLUMNS", "OnlineStoreUnavailable", "audience_of", "chunk_rows", "scan"]
