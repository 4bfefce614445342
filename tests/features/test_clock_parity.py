"""One clock, as a property: random event streams after a snapshot and random read instants, both backends.

For every stream and instant ``T`` (hypothesis draws them; a failure shrinks to a small case):

- with the events replayed, every real-time feature (``Feature.live`` in the definitions) of every customer
  equals the batch build (the Ibis definitions) as of ``T`` over the tables with those events added: events
  at or after ``T`` are ignored, windows drop the snapshot's events that left them;
- for every customer without an event, the whole feature row equals the export's at ``T``
  (``batch.score._Instant``: what ``kairos score --all --now T`` scores), which is what makes their scores
  equal (the API and the export feed the same float32 row to the same model).

The world is tiny and literal (a few customers, a year of orders, views, carts, sessions and opens before
the snapshot), so one example costs one batch build.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime, timedelta

import ibis
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batch.score import _Instant
from features import definitions
from features.contract import Col
from features.online import InMemoryOnlineStore, OnlineStore, RedisOnlineStore, SnapshotParts
from features.realtime import LIVE_FEATURES, REALTIME_FEATURES, Event, EventKind, recent_sessions, snapshot_history
from tests.features.test_online_redis import redis_store_or_skip

S = datetime(2025, 6, 1, tzinfo=UTC)  # the snapshot's as-of
DAY = timedelta(days=1)
KEYS = [f"ck_{i}" for i in range(6)]
NEW = "ck_new"  # first seen through an event
LIFETIME_SUMS = {f.name for f in LIVE_FEATURES if f.live is not None and f.live.rule == "sum" and not f.window_days}
GROUPS = [g for g in definitions.GROUPS if any(f.name in REALTIME_FEATURES for f in g.features)]
FEATURES = [f for g in GROUPS for f in g.features]
NUMERIC = [f.name for f in FEATURES if f.dtype == "float32"]


def _at(t: datetime) -> pd.Timestamp:
    return pd.Timestamp(t).tz_convert("UTC")


def _history(seed: int) -> dict[str, list[dict[str, object]]]:
    """Rows of the tables before the snapshot: a year and a bit of orders, web events and opens."""
    rng = random.Random(seed)
    rows: dict[str, list[dict[str, object]]] = {"orders": [], "web_events": [], "messages": [], "customers": []}
    for key in KEYS:
        rows["customers"].append({Col.CUSTOMER_KEY: key, Col.CREATED_AT: _at(S - 500 * DAY)})
        for _ in range(rng.randint(0, 8)):
            rows["orders"].append(
                {
                    Col.CUSTOMER_KEY: key,
                    Col.ORDER_ID: uuid.UUID(int=rng.getrandbits(128)).hex,
                    Col.ORDERED_AT: _at(S - timedelta(seconds=rng.randint(60, 420 * 86_400))),
                    Col.AMOUNT: rng.randint(1, 400) / 4,  # quarters: sums are exact in binary
                }
            )
        for _ in range(rng.randint(0, 12)):
            kind = rng.choice(["view", "view", "add_to_cart", "remove_from_cart", "checkout", "search"])
            rows["web_events"].append(_web(key, S - timedelta(seconds=rng.randint(60, 40 * 86_400)), kind, rng))
        for _ in range(rng.randint(0, 3)):
            sent = S - timedelta(seconds=rng.randint(3600, 100 * 86_400))
            rows["messages"].append(_message(key, sent, sent + timedelta(minutes=rng.randint(1, 600))))
    return rows


def _web(key: str, t: datetime, kind: str, rng: random.Random) -> dict[str, object]:
    return {
        Col.CUSTOMER_KEY: key,
        Col.EVENT_ID: uuid.UUID(int=rng.getrandbits(128)).hex,
        Col.OCCURRED_AT: _at(t),
        Col.EVENT_TYPE: kind,
        Col.SESSION_ID: f"{key}-s{rng.randint(0, 5)}",
        Col.ITEM_ID: f"i{rng.randint(0, 3)}",
        Col.CATEGORY: "c1",
    }


def _message(key: str, sent: datetime, opened: datetime | None) -> dict[str, object]:
    return {
        Col.CUSTOMER_KEY: key,
        Col.MESSAGE_ID: uuid.uuid4().hex,
        Col.CHANNEL: "email",
        Col.SENT_AT: _at(sent),
        Col.OPENED_AT: _at(opened) if opened is not None else pd.NaT,
        Col.CLICKED_AT: pd.NaT,
        Col.UNSUBSCRIBED_AT: pd.NaT,
    }


def _tables(rows: dict[str, list[dict[str, object]]]) -> dict[str, ibis.Table]:
    schemas = {
        "orders": {Col.CUSTOMER_KEY: "string", Col.ORDER_ID: "string", Col.ORDERED_AT: "timestamp('UTC')",
                   Col.AMOUNT: "float64"},
        "web_events": {Col.CUSTOMER_KEY: "string", Col.EVENT_ID: "string", Col.OCCURRED_AT: "timestamp('UTC')",
                       Col.EVENT_TYPE: "string", Col.SESSION_ID: "string", Col.ITEM_ID: "string",
                       Col.CATEGORY: "string"},
        "messages": {Col.CUSTOMER_KEY: "string", Col.MESSAGE_ID: "string", Col.CHANNEL: "string",
                     Col.SENT_AT: "timestamp('UTC')", Col.OPENED_AT: "timestamp('UTC')",
                     Col.CLICKED_AT: "timestamp('UTC')", Col.UNSUBSCRIBED_AT: "timestamp('UTC')"},
        "customers": {Col.CUSTOMER_KEY: "string", Col.CREATED_AT: "timestamp('UTC')"},
    }  # fmt: skip
    con = ibis.duckdb.connect()
    out = {}
    for name, schema in schemas.items():
        frame = pd.DataFrame(rows[name], columns=list(schema))
        out[name] = con.create_table(
            name, pa.Table.from_pandas(frame, preserve_index=False), schema=ibis.schema(schema)
        )
    return out


def _batch(tables: dict[str, ibis.Table], as_of: datetime) -> pd.DataFrame:
    """The groups holding a real-time feature, as of ``as_of`` (as :func:`features.definitions.feature_table`)."""
    cutoff = ibis.timestamp(as_of)
    out = definitions.population(tables, cutoff)
    for group in GROUPS:
        out = out.left_join(group.build(tables, cutoff), Col.CUSTOMER_KEY).drop(f"{Col.CUSTOMER_KEY}_right")
    out = out.mutate(**{f.name: out[f.name].fill_null(f.fill) for f in FEATURES if f.fill is not None})
    frame = out.select(Col.CUSTOMER_KEY, *NUMERIC).order_by(Col.CUSTOMER_KEY).execute()
    return frame.astype({n: np.float32 for n in NUMERIC})


# --- the random stream of events after the snapshot ----------------------------------------------------

KINDS = ("view", "add_to_cart", "remove_from_cart", "checkout", "search", "order", "open")


@st.composite
def streams(draw: st.DrawFn) -> tuple[list[tuple[str, str, int, int]], int, int]:
    """(kind, customer, seconds after the snapshot, a small number for ids and amounts) per event, the read
    instant in seconds after the snapshot, and a seed for the world before it."""
    event = st.tuples(
        st.sampled_from(KINDS),
        st.sampled_from([*KEYS[:4], NEW]),  # KEYS[4:] never get an event: the export's parity is on them
        st.integers(0, 40 * 86_400),
        st.integers(0, 7),
    )
    events = draw(st.lists(event, max_size=25))
    at = draw(st.one_of(st.just(0), st.integers(1, 60 * 86_400), st.sampled_from([e[2] for e in events] or [0])))
    return events, at, draw(st.integers(0, 3))


def _events(stream: list[tuple[str, str, int, int]]) -> tuple[list[Event], dict[str, list[dict[str, object]]]]:
    """The events as the API receives them (order lines share their order id) and as table rows."""
    out: list[Event] = []
    rows: dict[str, list[dict[str, object]]] = {"orders": [], "web_events": [], "messages": []}
    totals: dict[str, list[object]] = {}
    rng = random.Random(len(stream))
    for n, (kind, key, seconds, small) in enumerate(stream):
        t = S + timedelta(seconds=seconds)
        if kind == "order":
            order_id = f"o{small % 3}-{key}"  # a few lines per order: one order, however many events
            amount = (small + 1) / 4
            first = totals.setdefault(order_id, [t, 0.0, key])
            first[0] = min(first[0], t)  # type: ignore[type-var]
            first[1] = float(first[1]) + amount  # type: ignore[arg-type]
            out.append(Event(EventKind.ORDER, t, customer_key=key, order_id=order_id, amount=amount, event_id=f"e{n}"))
        elif kind == "open":
            rows["messages"].append(_message(key, t - timedelta(minutes=5), t))
            out.append(Event(EventKind.OPEN, t, customer_key=key, channel="email", event_id=f"e{n}"))  # type: ignore[arg-type]
        else:
            row = _web(key, t, kind, rng) | {Col.SESSION_ID: f"{key}-n{small % 3}", Col.EVENT_ID: f"e{n}"}
            rows["web_events"].append(row)
            out.append(
                Event(
                    EventKind(kind),
                    t,
                    customer_key=key,
                    session_id=str(row[Col.SESSION_ID]),
                    item_id=str(row[Col.ITEM_ID]),
                    event_id=f"e{n}",
                )
            )
    for order_id, (t, amount, key) in totals.items():
        rows["orders"].append(
            {Col.CUSTOMER_KEY: key, Col.ORDER_ID: order_id, Col.ORDERED_AT: _at(t), Col.AMOUNT: amount}
        )  # type: ignore[arg-type]
    rng.shuffle(out)  # received in any order: every rule reads the event times
    return out, rows


# --- the two backends ------------------------------------------------------------------------------------


@contextmanager
def _memory(parts: SnapshotParts) -> Iterator[InMemoryOnlineStore]:
    yield InMemoryOnlineStore.from_parts(parts)


@contextmanager
def _redis(parts: SnapshotParts) -> Iterator[RedisOnlineStore]:
    with redis_store_or_skip() as store:
        store.publish(parts)
        yield store


_WORLDS: dict[int, tuple[dict[str, list[dict[str, object]]], pd.DataFrame, SnapshotParts]] = {}


def _world(seed: int) -> tuple[dict[str, list[dict[str, object]]], pd.DataFrame, SnapshotParts]:
    """The world before the snapshot, its snapshot and the store's parts (built once per seed)."""
    if seed not in _WORLDS:
        rows = _history(seed)
        tables = _tables(rows)
        snapshot = _batch(tables, S)
        keys = snapshot[Col.CUSTOMER_KEY].astype(str).tolist()
        ages = [f.name for f in FEATURES if f.ages]
        fills = {f.name: f.fill for f in FEATURES if f.fill is not None}
        parts = SnapshotParts(
            snapshot,
            NUMERIC,
            ages,
            [],
            {},
            S,
            fills,
            recent_sessions(tables, S),
            snapshot_history(tables, S, keys),
        )
        _WORLDS[seed] = (rows, snapshot, parts)
    return _WORLDS[seed]


@pytest.mark.parametrize(
    "backend", [_memory, pytest.param(_redis, marks=pytest.mark.integration)], ids=["memory", "redis"]
)
@settings(max_examples=6, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(drawn=streams())
def test_live_features_equal_the_batch_at_any_instant(
    backend: Callable[[SnapshotParts], AbstractContextManager[OnlineStore]],
    drawn: tuple[list[tuple[str, str, int, int]], int, int],
) -> None:
    stream, seconds, seed = drawn
    before, snapshot, parts = _world(seed)
    events, added = _events(stream)
    now = S + timedelta(seconds=seconds)
    after = {name: [*before.get(name, []), *added.get(name, [])] for name in before}
    want = _batch(_tables(after), now).set_index(Col.CUSTOMER_KEY)
    with backend(parts) as store:
        for event in events:
            store.apply_event(event)
        keys = want.index.tolist()
        got = store.lookup(keys, now=now)
    assert got.found.all(), [k for k, f in zip(keys, got.found, strict=True) if not f]
    for name in REALTIME_FEATURES:
        have, expected = got.values[:, NUMERIC.index(name)], want[name].to_numpy(np.float32)
        if name in LIFETIME_SUMS:  # the snapshot's float32 total plus the new amounts (quarters: exact)
            np.testing.assert_array_equal(have, expected, err_msg=name)
        elif any(f.name == name and f.ages for f in FEATURES):
            # "days since": exact when an event set it; a snapshot value aged in float32 (one rounding)
            np.testing.assert_allclose(have, expected, rtol=1e-6, atol=1e-6, err_msg=name)
        else:
            np.testing.assert_array_equal(have, expected, err_msg=name)
    # customers without events: the API's whole row is the export's at the same instant
    quiet = [k for k in snapshot[Col.CUSTOMER_KEY] if k not in {e.customer_key for e in events}]
    with backend(parts) as fresh:
        api = fresh.lookup(quiet, now=now).values
    export = _export_rows(parts, quiet, now)
    np.testing.assert_array_equal(api, export)


def _export_rows(parts: SnapshotParts, keys: list[str], now: datetime) -> np.ndarray:
    """What ``kairos score --all --now`` feeds the models for ``keys``: the snapshot in batches of 4 rows,
    each brought to ``now`` (:class:`batch.score._Instant`)."""
    assert parts.history is not None
    instant = _Instant(parts.feature_names, parts.ages, S.timestamp(), parts.history, now.timestamp())
    table = pa.Table.from_pandas(parts.frame[[Col.CUSTOMER_KEY, *parts.feature_names]], preserve_index=False)
    rows = []
    for offset in range(0, table.num_rows, 4):
        batch = instant.bring(table.slice(offset, 4).to_batches()[0], offset)
        rows.append(np.column_stack([batch.column(n).to_numpy(zero_copy_only=False) for n in parts.feature_names]))
    frame = pd.DataFrame(np.vstack(rows), index=parts.frame[Col.CUSTOMER_KEY].astype(str))
    return frame.loc[keys].to_numpy(np.float32)
