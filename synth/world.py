"""The deterministic synthetic CRM world: the default data of the demo and the tests.

:func:`generate_world` writes a retailer's export (customers, consents, orders, order lines, items, web
events, messages, offers) as CSV files whose columns are the contract's (:mod:`features.contract`),
read by the built-in ``synthetic`` mapping, and the planted ground truth beside them in ``truth/``:

- ``identities.parquet``: which customer records are one person (duplicates, spouse traps);
- ``persons.parquet``: lifecycle, purchase rate, churn time, preferred hours, affinities, traits;
- ``complementary_pairs.parquet``: items bought together by design;
- ``offer_uplift.parquet``: each person's true uplift in 30-day purchase probability per offer;
- ``dirt.json``: the count of every planted defect; ``world.json``: seed, parameters and counts.

The same seed gives byte-identical files. Generation is vectorised (a weekly loop over ~105 weeks
and a loop over ~300 campaigns, never over events); the parts live in ``synth/*.py``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from features.contract import INPUT_TABLES, Channel, Col, ConsentStatus, OrderStatus, SalesChannel
from synth.behaviour import DRIFT_DAYS, LAPSE_HAZARD, Behaviour, simulate
from synth.catalog import CATEGORIES, OFFERS, Catalogue, build_catalogue, offers_frame, plant_uplift
from synth.commerce import (
    CANCEL_SHARE,
    EVENT_TYPES,
    GUEST_SHARE,
    SESSION_BEFORE_ORDER,
    Events,
    Sessions,
    build_events,
    build_lines,
    build_orders,
    build_sessions,
    cancel,
)
from synth.common import (
    SECONDS_PER_DAY,
    Clock,
    ZoneTable,
    iso_dates,
    iso_timestamps,
    prefixed_ids,
    random_streams,
    write_table,
    write_table_chunks,
)
from synth.dirt import FUTURE_EVENT_SHARE, FUTURE_ORDER_SHARE, plant_future, plant_line_dirt
from synth.messages import (
    OFFER_SHARE,
    WINDOW_DAYS,
    Messages,
    apply_offers,
    attribute,
    censor,
    consent_rows,
    send,
)
from synth.people import CHANNELS, People, build_people

__all__ = ["GENERATOR", "TABLE_NAMES", "WorldSummary", "generate_world"]

logger = logging.getLogger(__name__)

GENERATOR = "kairos-synth/1"
TABLE_NAMES = ("customers", "consents", "orders", "order_lines", "items", "web_events", "messages", "offers")
_STREAMS = ("catalogue", "people", "behaviour", "messages", "offers", "orders", "lines", "web", "dirt")


@dataclass(frozen=True)
class WorldSummary:
    """What :func:`generate_world` wrote.

    Attributes:
        out_dir: The folder of the export.
        seed: Random seed.
        n_customers: Number of persons (real customers).
        rows: Data rows per written table (the eight CSV files, then the truth tables).
        files: Path of every written file by short name.
        elapsed_seconds: Wall-clock generation time.
    """

    out_dir: Path
    seed: int
    n_customers: int
    rows: dict[str, int]
    files: dict[str, Path]
    elapsed_seconds: float


def generate_world(
    n_customers: int,
    seed: int,
    out_dir: Path,
    *,
    start: date = date(2024, 1, 1),
    end: date = date(2025, 12, 31),
    progress: Callable[[str, float], None] | None = None,
) -> WorldSummary:
    """Generate a synthetic CRM export with its planted ground truth.

    Args:
        n_customers: Number of real persons (there are ~10 % more records: duplicates).
        seed: Random seed; the same seed and arguments give byte-identical files.
        out_dir: Folder to write into (created if missing; files of the same names are replaced).
        start: First day of activity (UTC).
        end: Last day of activity (UTC), included.
        progress: Optional callback ``(step_name, fraction_done)`` for a progress bar.

    Returns:
        A summary of what was written.

    Raises:
        ValueError: On fewer than 10 customers or an end before ``start`` plus eight weeks.
    """
    if n_customers < 10:
        raise ValueError(f"n_customers must be at least 10, got {n_customers}")
    if (end - start).days < 56:
        raise ValueError(f"the world must span at least eight weeks, got {start} .. {end}")
    began = time.perf_counter()
    report = progress or (lambda step, fraction: None)
    out_dir = Path(out_dir)
    truth_dir = out_dir / "truth"
    truth_dir.mkdir(parents=True, exist_ok=True)
    clock = Clock(start, end)
    zones = ZoneTable(clock)
    rng = random_streams(seed, _STREAMS)

    report("people", 0.0)
    catalogue = build_catalogue(rng["catalogue"])
    people = build_people(rng["people"], n_customers, clock, catalogue)
    baseline, uplift = plant_uplift(people.persons)
    report("purchases", 0.1)
    behaviour = simulate(rng["behaviour"], people.persons, clock, zones)
    report("messages", 0.25)
    msgs = send(rng["messages"], people, behaviour, clock, zones)
    purchases = apply_offers(rng["offers"], msgs, behaviour, people, baseline, uplift, clock, zones)
    censor(msgs, float(clock.days))
    report("orders", 0.4)
    orders = build_orders(rng["orders"], people, purchases, msgs.record)
    redeemed = attribute(msgs, orders["person"].to_numpy(), orders["t"].to_numpy(), orders["record"].to_numpy() >= 0)
    redeemed_offer = np.where(redeemed >= 0, msgs.offer[np.maximum(redeemed, 0)], -1)
    lines = build_lines(rng["lines"], orders, redeemed_offer, people, catalogue)
    orders, lines = cancel(rng["orders"], orders, lines, clock)
    report("web", 0.5)
    sessions, cookies = build_sessions(rng["web"], people, behaviour, orders, lines, catalogue, clock, zones)
    events = build_events(rng["web"], sessions, lines, catalogue)

    report("writing", 0.65)
    dirt: dict[str, Any] = dict(people.dirt)
    files: dict[str, Path] = {}
    rows: dict[str, int] = {}

    def put(table: str, columns: dict[str, Any]) -> None:
        files[table], rows[table] = write_table(out_dir, table, columns)

    put("customers", _customer_columns(people, clock))
    put("consents", _consent_columns(people, msgs, clock))
    order_columns, line_columns, order_dirt = _order_columns(
        rng["dirt"], orders, lines, people, catalogue, clock, attributed=msgs.converted
    )
    dirt.update(order_dirt)
    put("orders", order_columns)
    put("order_lines", line_columns)
    put("items", {c: catalogue.items[c] for c in _table_columns("items")})
    report("writing web events", 0.75)
    files["web_events"], rows["web_events"], n_future = _write_events(
        out_dir, rng["dirt"], sessions, events, cookies, people, catalogue, clock
    )
    dirt["future_timestamps"] = {"orders.ordered_at": dirt.pop("future_orders"), "web_events.occurred_at": n_future}
    report("writing messages", 0.9)
    files["messages"], rows["messages"] = _write_messages(out_dir, msgs, people, clock)
    offers = offers_frame(0.0, float(clock.days) - 1.0 / SECONDS_PER_DAY)
    put(
        "offers",
        {
            **{c: offers[c] for c in _table_columns("offers")},
            Col.VALID_FROM: iso_timestamps(clock, offers[Col.VALID_FROM].to_numpy()),
            Col.VALID_TO: iso_timestamps(clock, offers[Col.VALID_TO].to_numpy()),
        },
    )

    report("truth", 0.97)
    truth_rows = _write_truth(truth_dir, people, behaviour, orders, catalogue, baseline, uplift, clock)
    files.update({name: truth_dir / f"{name}.parquet" for name in truth_rows})
    rows.update(truth_rows)
    facts = _facts(people, orders, msgs, sessions, purchases.induced_by)
    _write_json(truth_dir / "dirt.json", dirt)
    _write_json(truth_dir / "world.json", _world_json(seed, n_customers, clock, rows, facts))
    files["dirt"], files["world"] = truth_dir / "dirt.json", truth_dir / "world.json"
    elapsed = time.perf_counter() - began
    report("done", 1.0)
    logger.info("synthetic world of %d customers written in %.1f s", n_customers, elapsed)
    return WorldSummary(out_dir, seed, n_customers, rows, files, elapsed)


def _table_columns(table: str) -> list[str]:
    return INPUT_TABLES[table].column_names


def _take(values: pa.Array | list[str], index: np.ndarray) -> pa.Array:
    """``values[index]`` with -1 as empty, in Arrow (fast for millions of rows)."""
    index = np.asarray(index, dtype=np.int64)
    lookup = values if isinstance(values, pa.Array) else pa.array(values, type=pa.string())
    return lookup.take(pa.array(index, mask=index < 0))


def _customer_columns(people: People, clock: Clock) -> dict[str, Any]:
    r = people.records
    return {
        Col.CUSTOMER_ID: r["customer_id"],
        Col.EMAIL: r["email"],
        Col.PHONE: r["phone"],
        Col.LOYALTY_ID: r["loyalty_id"],
        Col.WEB_CLIENT_ID: r["web_client_id"],
        Col.FIRST_NAME: r["first_name"],
        Col.LAST_NAME: r["last_name"],
        Col.BIRTH_DATE: iso_dates(clock, r["birth_date"].to_numpy()),
        Col.GENDER: r["gender"],
        Col.CITY: r["city"],
        Col.COUNTRY: r["country"],
        Col.TIMEZONE: r["timezone"],
        Col.CREATED_AT: iso_timestamps(clock, r["created"].to_numpy()),
    }


def _consent_columns(people: People, msgs: Messages, clock: Clock) -> dict[str, Any]:
    rows = consent_rows(people, msgs)
    return {
        Col.CUSTOMER_ID: _take(people.records["customer_id"].tolist(), rows["record"].to_numpy()),
        Col.CHANNEL: np.array([str(c) for c in CHANNELS], dtype=object)[rows["channel"].to_numpy()],
        Col.STATUS: np.where(rows["opt_in"], str(ConsentStatus.OPT_IN), str(ConsentStatus.OPT_OUT)),
        Col.CONSENTED_AT: iso_timestamps(clock, rows["t"].to_numpy()),
        Col.SOURCE: rows["source"],
    }


def _order_columns(
    rng: np.random.Generator,
    orders: pd.DataFrame,
    lines: pd.DataFrame,
    people: People,
    catalogue: Catalogue,
    clock: Clock,
    attributed: np.ndarray,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, int]]:
    """Number documents by time ("C" for cancellations), plant order and line dirt, build the columns.

    Far-future order times go to sales no message conversion points at, so conversions stay real orders.
    """
    t = orders["t"].to_numpy()
    rank = np.empty(len(orders), dtype=np.int64)
    by_time = np.argsort(t, kind="stable")
    rank[by_time] = np.arange(len(orders))
    is_cancel = orders["cancels"].to_numpy() >= 0
    number = (500_001 + rank).astype(str).astype(object)
    order_id = np.where(is_cancel, "C" + number, number)
    unattributed = ~np.isin(t, attributed[~np.isnan(attributed)])
    t_out, n_future = plant_future(rng, t, ~is_cancel & unattributed, FUTURE_ORDER_SHARE, 2, clock)

    line_order = lines["order"].to_numpy()
    sort = np.lexsort((lines["line_no"].to_numpy(), rank[line_order]))
    lines = lines.iloc[sort].reset_index(drop=True)
    line_order = lines["order"].to_numpy()
    item = lines["item"].to_numpy()
    lines = lines.assign(
        item_id=catalogue.items[Col.ITEM_ID].to_numpy()[item],
        item_name=catalogue.items[Col.NAME].to_numpy()[item],
        order_id=order_id[line_order],
    )
    lines, line_dirt = plant_line_dirt(rng, lines, ~is_cancel[line_order])

    record = orders["record"].to_numpy()
    order_cols = {
        Col.ORDER_ID: order_id[by_time],
        Col.CUSTOMER_ID: _take(people.records["customer_id"].tolist(), record[by_time]),
        Col.ORDERED_AT: iso_timestamps(clock, t_out[by_time]),
        Col.CHANNEL: np.where(
            orders["online"].to_numpy()[by_time], str(SalesChannel.ONLINE), str(SalesChannel.OFFLINE)
        ),
        Col.STORE_ID: orders["store_id"].to_numpy()[by_time],
        Col.STATUS: np.where(is_cancel[by_time], str(OrderStatus.CANCELLED), str(OrderStatus.COMPLETED)),
        Col.CURRENCY: orders["currency"].to_numpy()[by_time],
        Col.COUNTRY: orders["country"].to_numpy()[by_time],
    }
    line_cols = {
        Col.ORDER_ID: lines["order_id"],
        Col.LINE_NO: lines["line_no"],
        Col.ITEM_ID: lines["item_id"],
        Col.ITEM_NAME: lines["item_name"],
        Col.QUANTITY: lines["quantity"],
        Col.UNIT_PRICE: lines["unit_price"],
        Col.DISCOUNT: lines["discount"],
    }
    return order_cols, line_cols, {**line_dirt, "future_orders": n_future}


def _write_events(
    out_dir: Path,
    rng: np.random.Generator,
    sessions: Sessions,
    events: Events,
    cookies: np.ndarray,
    people: People,
    catalogue: Catalogue,
    clock: Clock,
) -> tuple[Path, int, int]:
    """Write web events in chunks; returns the path, the row count and the far-future timestamps planted."""
    s = events.session
    t, n_future = plant_future(rng, events.t, np.ones(len(s), dtype=bool), FUTURE_EVENT_SHARE, 3, clock)
    category = np.where(events.item >= 0, catalogue.items["category_idx"].to_numpy()[np.maximum(events.item, 0)], -1)
    nouns = [noun.lower() for spec in CATEGORIES.values() for noun in spec[2]]
    per_cat = len(next(iter(CATEGORIES.values()))[2])
    is_search = events.kind == EVENT_TYPES.index("search")
    query = np.where(is_search, sessions.category[s] * per_cat + rng.integers(0, per_cat, len(s)), -1)
    lookups = {
        name: pa.array(values, type=pa.string())
        for name, values in (
            ("customer", people.records["customer_id"].tolist()),
            ("cookie", list(cookies)),
            ("type", list(EVENT_TYPES)),
            ("item", catalogue.items[Col.ITEM_ID].tolist()),
            ("category", list(CATEGORIES)),
            ("query", nouns),
        )
    }

    def columns(rows: slice) -> dict[str, Any]:
        ss = s[rows]
        return {
            Col.EVENT_ID: prefixed_ids("EV", np.arange(rows.start + 1, rows.stop + 1), 9),
            Col.CUSTOMER_ID: _take(lookups["customer"], sessions.record[ss]),
            Col.ANONYMOUS_ID: _take(lookups["cookie"], sessions.cookie[ss]),
            Col.SESSION_ID: prefixed_ids("S", ss + 1, 8),
            Col.EVENT_TYPE: _take(lookups["type"], events.kind[rows]),
            Col.OCCURRED_AT: iso_timestamps(clock, t[rows]),
            Col.ITEM_ID: _take(lookups["item"], events.item[rows]),
            Col.CATEGORY: _take(lookups["category"], category[rows]),
            Col.QUERY: _take(lookups["query"], query[rows]),
        }

    path, n_rows = write_table_chunks(out_dir, "web_events", len(s), columns)
    return path, n_rows, n_future


def _write_messages(out_dir: Path, msgs: Messages, people: People, clock: Clock) -> tuple[Path, int]:
    customers = pa.array(people.records["customer_id"].tolist(), type=pa.string())
    channels = pa.array([str(c) for c in CHANNELS], type=pa.string())
    campaigns = pa.array(msgs.campaigns["campaign_id"].tolist(), type=pa.string())
    offers = pa.array([o[0] for o in OFFERS], type=pa.string())

    def columns(rows: slice) -> dict[str, Any]:
        return {
            Col.MESSAGE_ID: prefixed_ids("M", np.arange(rows.start + 1, rows.stop + 1), 9),
            Col.CUSTOMER_ID: _take(customers, msgs.record[rows]),
            Col.CHANNEL: _take(channels, msgs.channel[rows]),
            Col.CAMPAIGN_ID: _take(campaigns, msgs.campaign[rows]),
            Col.OFFER_ID: _take(offers, msgs.offer[rows]),
            Col.SENT_AT: iso_timestamps(clock, msgs.sent[rows]),
            Col.DELIVERED_AT: iso_timestamps(clock, msgs.delivered[rows]),
            Col.OPENED_AT: iso_timestamps(clock, msgs.opened[rows]),
            Col.CLICKED_AT: iso_timestamps(clock, msgs.clicked[rows]),
            Col.UNSUBSCRIBED_AT: iso_timestamps(clock, msgs.unsubscribed[rows]),
            Col.CONVERTED_AT: iso_timestamps(clock, msgs.converted[rows]),
        }

    return write_table_chunks(out_dir, "messages", len(msgs), columns)


def _utc(clock: Clock, t: np.ndarray) -> pd.Series:
    seconds = clock.seconds(np.asarray(t, dtype=np.float64))
    return pd.Series(pd.to_datetime(seconds, unit="s", utc=True))


def _write_truth(
    truth_dir: Path,
    people: People,
    behaviour: Behaviour,
    orders: pd.DataFrame,
    catalogue: Catalogue,
    baseline: np.ndarray,
    uplift: np.ndarray,
    clock: Clock,
) -> dict[str, int]:
    """Write the ground-truth tables; returns their row counts."""
    p, r = people.persons, people.records
    n = len(p)
    sale = orders["cancels"].to_numpy() < 0
    n_orders = np.bincount(orders["person"].to_numpy()[sale], minlength=n)
    churned = ~np.isnan(behaviour.churn_t)
    kind = p["planted_type"].to_numpy()
    new = p["created"].to_numpy() >= 0
    lapse = behaviour.lapse_t
    lifecycle = np.where(
        (kind == "lead") | ((n_orders == 0) & new),
        "lead",
        np.where(
            churned,
            np.where((n_orders <= 1) & new, "one_and_done", "churned"),
            np.where(np.nan_to_num(lapse, nan=np.inf) <= clock.days - 14, "lapsing", "loyal"),
        ),
    )
    cat_names = np.array(list(CATEGORIES), dtype=object)
    brands = catalogue.items.drop_duplicates("brand_idx").set_index("brand_idx")[Col.BRAND]
    persons = pd.DataFrame(
        {
            "person_id": p["person_id"],
            "planted_type": kind,
            "lifecycle": lifecycle,
            "purchase_rate_per_day": p["rate"],
            "baseline_30d": baseline,
            "n_orders": n_orders,
            "churn_at": _utc(clock, behaviour.churn_t),
            "created_at": _utc(clock, p["created"].to_numpy()),
            "lapse_at": _utc(clock, lapse),
            "country": p["country"],
            "timezone": p["timezone"],
            "city": p["city"],
            **{f"pref_hour_{c}": p[f"pref_hour_{c}"] for c in [*map(str, CHANNELS), "web"]},
            "engagement": p["engagement"],
            "price_sensitivity": p["price_sensitivity"],
            "online_share": p["online_share"],
            "loyalty_member": p["loyalty_member"],
            "basket_value": p["basket_value"],
            **{f"category_{k}": cat_names[p[f"category_{k}"].to_numpy()] for k in (1, 2, 3)},
            **{f"category_weight_{k}": p[f"category_weight_{k}"] for k in (1, 2, 3)},
            "single_brand": p["brand"].map(brands),
            "spouse_person_id": p["spouse_person_id"],
            "n_records": p["n_records"],
        }
    )
    identities = pd.DataFrame(
        {
            Col.CUSTOMER_ID: r["customer_id"],
            "person_id": p["person_id"].to_numpy()[r["person"].to_numpy()],
            "link_type": r["link_type"],
            "is_primary": (r["link_type"] == "primary").to_numpy(),
        }
    )
    ids = catalogue.items[Col.ITEM_ID].to_numpy()
    pairs = pd.DataFrame(
        {
            "item_a": ids[catalogue.pairs["item_a"]],
            "item_b": ids[catalogue.pairs["item_b"]],
            "strength": catalogue.pairs["strength"],
        }
    )
    n_offers = len(OFFERS)
    offer_uplift = pd.DataFrame(
        {
            "person_id": np.repeat(p["person_id"].to_numpy(), n_offers),
            Col.OFFER_ID: np.tile([o[0] for o in OFFERS], n),
            "baseline_30d": np.repeat(baseline, n_offers),
            "uplift_30d": uplift.reshape(-1),
        }
    )
    tables = {"identities": identities, "persons": persons, "complementary_pairs": pairs, "offer_uplift": offer_uplift}
    for name, frame in tables.items():
        frame.to_parquet(truth_dir / f"{name}.parquet", index=False)
    return {name: len(frame) for name, frame in tables.items()}


def _facts(
    people: People, orders: pd.DataFrame, msgs: Messages, sessions: Sessions, induced: np.ndarray
) -> dict[str, int]:
    """Counts of planted features that are not defects (for world.json)."""
    links = people.records["link_type"].value_counts()
    sale = orders["cancels"].to_numpy() < 0
    return {
        "persons": len(people.persons),
        "records": len(people.records),
        "persons_with_duplicates": int((people.persons["n_records"] > 1).sum()),
        **{f"duplicate_records_{k}": int(v) for k, v in sorted(links.items()) if k != "primary"},
        "spouse_pairs": int(people.persons["spouse_person_id"].notna().sum() // 2),
        "guest_orders": int((sale & (orders["record"].to_numpy() < 0)).sum()),
        "cancellation_documents": int((~sale).sum()),
        "orders_induced_by_offers": int((induced >= 0).sum()),
        "messages_with_offer": int((msgs.offer >= 0).sum()),
        "messages_converted": int((~np.isnan(msgs.converted)).sum()),
        "sessions": len(sessions.start),
    }


def _world_json(seed: int, n: int, clock: Clock, counts: dict[str, int], facts: dict[str, int]) -> dict[str, Any]:
    return {
        "generator": GENERATOR,
        "seed": seed,
        "n_customers": n,
        "start": clock.start.isoformat(),
        "end": clock.end.isoformat(),
        "parameters": {
            "offer_assignment": {
                "unit": "message",
                "randomised": True,
                "share_with_offer": OFFER_SHARE,
                "probability_per_offer": {o[0]: OFFER_SHARE / len(OFFERS) for o in OFFERS},
                "note": "each message independently: no offer with 1 - share, else one offer uniformly",
            },
            "uplift_window_days": WINDOW_DAYS,
            "uplift_definition": "additive change in P(order within 30 days of a delivered send) for a buyer "
            "on rhythm; baseline_30d = 1 - exp(-30 * purchase_rate_per_day)",
            "guest_share_of_online_orders": GUEST_SHARE,
            "cancelled_order_share": CANCEL_SHARE,
            "online_orders_with_session": SESSION_BEFORE_ORDER,
            "weekly_lapse_hazard_base": LAPSE_HAZARD,
            "mean_days_from_lapse_to_churn": DRIFT_DAYS,
            "channels": [str(c) for c in (Channel.EMAIL, Channel.SMS, Channel.PUSH)],
            "timestamps": "UTC, ISO 8601 with +00:00; local time via customers.timezone",
        },
        "counts": counts,
        "facts": facts,
    }


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    path.write_text(json.dumps(payload, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
