"""Real-time updates: the event model, each rule on tiny literal cases, and parity with the batch.

The parity test replays one day of a synthetic world through ``apply_event`` (both backends) and
compares with the batch feature table as of the end of that day, built with the registered definitions:
every feature real-time updates, for every customer the store knows, each feature moved by some event.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import ibis
import numpy as np
import pandas as pd
import pytest

from features import definitions
from features.contract import Col, EventType
from features.defs.common import Feature, FeatureGroup, Tables
from features.online import InMemoryOnlineStore, OnlineStore, RedisOnlineStore, SnapshotParts
from features.realtime import (
    CHANNEL_KINDS,
    HISTORY_STREAMS,
    LIVE_FEATURES,
    REALTIME_FEATURES,
    WEB_KINDS,
    WEIGHTED_STREAMS,
    ApplyResult,
    CustomerState,
    Event,
    EventKind,
    History,
    InvalidEventError,
    Stream,
    apply,
    events_from_tables,
    recent_sessions,
    snapshot_history,
)
from tests.features.test_online_redis import redis_store_or_skip

D = datetime(2025, 3, 1, tzinfo=UTC)
LIFETIME_SUMS = {f.name for f in LIVE_FEATURES if f.live is not None and f.live.rule == "sum" and f.window_days is None}
H = timedelta(hours=1)
DAY = timedelta(days=1)

NAMES = [
    "orders_30d",
    "monetary_lifetime",
    "monetary_30d",
    "days_since_last_visit",
    "views_1d",
    "add_to_carts_1d",
    "sessions_1d",
    "cart_size",
    "views_lifetime",
    "views_since_last_order",
    "recency_days",
    "orders_lifetime",
    "tenure_days",
    "days_since_open_email",
    "consent_email",
    "consent_sms",
]
AGES = ["days_since_last_visit", "recency_days", "tenure_days", "days_since_open_email"]


def _store(history: dict[str, list[timedelta]] | None = None, **base: float) -> InMemoryOnlineStore:
    """One customer ``k1`` with the snapshot values ``base`` and the snapshot's own event times ``history``
    (stream -> times relative to the snapshot, all before it; each order weighs 1)."""
    row = {n: 0.0 for n in NAMES} | {n: np.nan for n in AGES} | base
    frame = pd.DataFrame([{Col.CUSTOMER_KEY: "k1", **row}])
    streams = {}
    for stream in HISTORY_STREAMS:
        times = sorted((D + t).timestamp() for t in (history or {}).get(stream, []))
        weights = np.ones(len(times)) if stream in WEIGHTED_STREAMS else None
        streams[stream] = Stream(np.array([0, len(times)]), np.array(times, dtype=np.float64), weights)
    sessions = {"k1": {"s-old": D.timestamp() - 60}}
    return InMemoryOnlineStore(frame, NAMES, {"R1": "k1"}, D, ages=AGES, sessions=sessions, history=History(streams))


def _ev(kind: str, at: timedelta, **kw: str) -> Event:
    return Event(EventKind(kind), D + at, customer_key=kw.pop("customer_key", "k1"), **kw)  # type: ignore[arg-type]


def _read(store: OnlineStore, at: timedelta, key: str = "k1") -> dict[str, float]:
    found = store.lookup([key], now=D + at)
    return dict(zip(store.feature_names, found.values[0].tolist(), strict=True))


# --- the event ---------------------------------------------------------------------------------------


def test_events_are_validated() -> None:
    with pytest.raises(InvalidEventError, match="customer"):
        Event(EventKind.VIEW, D)
    with pytest.raises(InvalidEventError, match="timezone"):
        Event(EventKind.VIEW, datetime(2025, 1, 1), customer_key="k")
    with pytest.raises(InvalidEventError, match="channel"):
        Event(EventKind.OPEN, D, customer_key="k")
    with pytest.raises(InvalidEventError, match="status"):
        Event(EventKind.CONSENT, D, customer_key="k", channel="email")  # type: ignore[arg-type]
    with pytest.raises(InvalidEventError):
        Event("teleport", D, customer_key="k")  # type: ignore[arg-type]
    e = Event("consent", D, customer_key="k", channel="sms", status="opt_out")  # type: ignore[arg-type]
    assert e.type is EventKind.CONSENT and Event.from_json(e.to_json()) == e
    assert e.id == Event.from_json(e.to_json()).id and e.id != _ev("view", H).id


def test_event_kinds_take_the_contracts_web_event_types() -> None:
    """One vocabulary: every web event type of the contract is a real-time kind of the same value, a web kind."""
    assert {t.value for t in EventType} <= {k.value for k in EventKind}
    assert {EventKind(t.value) for t in EventType} | {EventKind.SESSION_START} == WEB_KINDS
    assert not WEB_KINDS & CHANNEL_KINDS


def test_state_round_trips_through_json() -> None:
    state = CustomerState()
    for e in (_ev("view", H, session_id="s"), _ev("order", 2 * H), _ev("unsubscribe", 3 * H, channel="sms")):
        apply(state, e, D.timestamp())
    assert CustomerState.from_json(state.to_json()) == state
    assert CustomerState.from_json(CustomerState().to_json()) == CustomerState()


# --- the rules ----------------------------------------------------------------------------------------


def test_web_events_update_visit_views_carts_sessions() -> None:
    seen = {"view": [-17 * H, -10 * H, -2 * H], "session": [timedelta(seconds=-60)]}  # what the windows hold
    store = _store(seen, views_1d=3, views_lifetime=10, views_since_last_order=4, sessions_1d=1, cart_size=2)
    assert store.apply_event(_ev("view", 2 * H, session_id="s1")) is ApplyResult.APPLIED
    store.apply_event(_ev("view", 3 * H, session_id="s1"))
    store.apply_event(_ev("add_to_cart", 3 * H, session_id="s1"))
    store.apply_event(_ev("remove_from_cart", 4 * H, session_id="s2"))
    store.apply_event(_ev("search", 5 * H, session_id="s-old"))  # a visit under way before the snapshot
    got = _read(store, 6 * H)
    assert got["days_since_last_visit"] == pytest.approx(1 / 24)
    assert got["views_1d"] == 5  # 3 inherited (still inside their day) + 2
    assert got["views_lifetime"] == 12 and got["views_since_last_order"] == 6
    assert got["add_to_carts_1d"] == 1 and got["sessions_1d"] == 1 + 2  # s-old is not a new visit
    assert got["cart_size"] == 2 + 1 - 1
    # a day after the snapshot the inherited window counts have left; the applied ones leave by their own time
    later = _read(store, DAY + 2 * H + timedelta(seconds=30))
    assert later["views_1d"] == 1 and later["add_to_carts_1d"] == 1 and later["sessions_1d"] == 1
    assert later["views_lifetime"] == 12


def test_window_edges_follow_the_batch() -> None:
    store = _store()
    store.apply_event(_ev("view", H))
    assert _read(store, H + DAY)["views_1d"] == 1  # exactly one day old: still inside (age <= 1)
    assert _read(store, H + DAY + timedelta(seconds=1))["views_1d"] == 0
    assert _read(store, DAY - timedelta(seconds=1))["views_1d"] == 1


def test_orders_reset_views_and_cart_and_set_recency_and_tenure() -> None:
    store = _store(orders_lifetime=0.0, views_lifetime=5.0, views_since_last_order=5.0, cart_size=1.0)
    store.apply_event(_ev("add_to_cart", H))
    store.apply_event(_ev("view", H))
    store.apply_event(_ev("order", 2 * H))
    store.apply_event(_ev("view", 2 * H))  # at the very instant of the order: not "since" it (strictly after)
    store.apply_event(_ev("view", 3 * H))
    store.apply_event(_ev("add_to_cart", 3 * H))
    got = _read(store, 4 * H)
    assert got["recency_days"] == pytest.approx(2 / 24) and got["tenure_days"] == pytest.approx(2 / 24)
    assert got["orders_lifetime"] == 1 and got["views_since_last_order"] == 1 and got["views_lifetime"] == 8
    assert got["cart_size"] == 1  # the cart restarted at the order
    store.apply_event(_ev("checkout", 5 * H))
    assert _read(store, 6 * H)["cart_size"] == 0


def test_tenure_of_a_previous_buyer_only_ages() -> None:
    store = _store(tenure_days=100.0, recency_days=10.0, orders_lifetime=3.0)
    store.apply_event(_ev("order", 12 * H))
    got = _read(store, DAY)
    assert got["tenure_days"] == pytest.approx(101.0) and got["recency_days"] == pytest.approx(0.5)
    assert got["orders_lifetime"] == 4


def test_cart_is_floored_at_zero() -> None:
    store = _store(cart_size=0.0)
    store.apply_event(_ev("checkout", H))
    store.apply_event(_ev("remove_from_cart", 2 * H))
    store.apply_event(_ev("add_to_cart", 3 * H))
    assert _read(store, 4 * H)["cart_size"] == 0  # net 0 since the checkout


def test_consents_latest_wins_unsubscribe_is_an_opt_out_and_ties_go_to_opt_out() -> None:
    store = _store(consent_email=1.0, consent_sms=0.0)
    store.apply_event(_ev("unsubscribe", H, channel="email"))
    store.apply_event(_ev("consent", 2 * H, channel="sms", status="opt_in"))
    got = _read(store, 3 * H)
    assert got["consent_email"] == 0 and got["consent_sms"] == 1
    store.apply_event(_ev("consent", 4 * H, channel="email", status="opt_in"))
    store.apply_event(_ev("unsubscribe", 4 * H, channel="email"))
    got = _read(store, 5 * H)
    assert got["consent_email"] == 0 and got["consent_sms"] == 1
    # A late opt-out, dated before the opt-in in force, still takes effect (docs/consent.md).
    store.apply_event(_ev("consent", H, channel="sms", status="opt_out"))
    assert _read(store, 5 * H)["consent_sms"] == 0


def test_opens_set_days_since_open_and_clicks_do_not() -> None:
    store = _store(days_since_open_email=30.0)
    store.apply_event(_ev("click", 2 * H, channel="email"))
    assert _read(store, DAY)["days_since_open_email"] == pytest.approx(31.0)
    store.apply_event(_ev("open", 12 * H, channel="email"))
    store.apply_event(_ev("open", 6 * H, channel="email"))  # out of order: the latest open wins
    assert _read(store, DAY)["days_since_open_email"] == pytest.approx(0.5)


def test_events_before_the_snapshot_duplicates_and_unknown_ids() -> None:
    store = _store(views_lifetime=1.0)
    assert store.apply_event(_ev("view", -H)) is ApplyResult.BEFORE_SNAPSHOT
    view = Event(EventKind.VIEW, D + H, customer_id="R1", event_id="e1")
    assert store.apply_event(view) is ApplyResult.APPLIED
    assert store.apply_event(view) is ApplyResult.DUPLICATE
    assert store.apply_event(Event(EventKind.VIEW, D + H, customer_id="R404")) is ApplyResult.UNKNOWN_CUSTOMER
    assert _read(store, 2 * H)["views_lifetime"] == 2


def test_a_customer_first_seen_through_an_event_gets_a_row() -> None:
    store = _store()
    assert store.lookup(["new"]).found.tolist() == [False]
    assert store.apply_event(_ev("view", H, customer_key="new", session_id="s")) is ApplyResult.CREATED
    got = _read(store, 2 * H, key="new")
    assert got["views_1d"] == 1 and got["views_lifetime"] == 1 and got["sessions_1d"] == 1
    assert got["orders_lifetime"] == 0 and got["consent_email"] == 0 and np.isnan(got["recency_days"])
    assert len(store) == 2


def test_a_read_ignores_the_events_after_its_instant_and_defaults_to_the_servers_clock() -> None:
    store = _store({"order": [-40 * DAY, -10 * DAY]}, recency_days=10.0, orders_lifetime=2.0, orders_30d=1.0)
    assert _read(store, timedelta(0))["recency_days"] == 10.0
    store.apply_event(_ev("order", 6 * H))
    store.apply_event(_ev("view", 8 * H))
    before = _read(store, 5 * H)
    assert before["orders_lifetime"] == 2 and before["orders_30d"] == 1 and before["views_lifetime"] == 0
    assert before["recency_days"] == pytest.approx(10 + 5 / 24)
    after = _read(store, 7 * H)
    assert after["orders_lifetime"] == 3 and after["orders_30d"] == 2 and after["recency_days"] == pytest.approx(1 / 24)
    assert _read(store, 20 * DAY + H)["orders_30d"] == 1  # the order of -10 days has left the 30 days
    # never "the latest event seen": without a read time, the server's clock
    wall = datetime.now(UTC)
    found = store.lookup(["k1"])
    assert found.now is not None and wall <= found.now <= datetime.now(UTC)
    expected = (found.now - (D + 6 * H)).total_seconds() / 86_400
    assert found.values[0, NAMES.index("recency_days")] == pytest.approx(expected, rel=1e-6)


def test_an_order_is_one_order_id_however_many_events_its_lines_come_in() -> None:
    store = _store(orders_lifetime=1.0, monetary_lifetime=10.0)
    for line, amount in enumerate((2.5, 4.0, 1.5)):
        kw = {"order_id": "o-7", "amount": amount, "item_id": f"i{line}"}
        assert store.apply_event(Event(EventKind.ORDER, D + H, customer_key="k1", **kw)) is ApplyResult.APPLIED  # type: ignore[arg-type]
    store.apply_event(Event(EventKind.ORDER, D + 2 * H, customer_key="k1", order_id="o-8", amount=1.0))
    got = _read(store, 3 * H)
    assert got["orders_lifetime"] == 3 and got["orders_30d"] == 2
    assert got["monetary_lifetime"] == 19.0 and got["monetary_30d"] == 9.0
    with pytest.raises(InvalidEventError, match="order_id or amount"):
        Event(EventKind.VIEW, D, customer_key="k1", order_id="o-1")


# --- parity with the batch ------------------------------------------------------------------------------


def _groups() -> list[FeatureGroup]:
    """The registered groups (the definitions training uses) that hold a real-time feature."""
    return [g for g in definitions.GROUPS if any(f.name in REALTIME_FEATURES for f in g.features)]


def _batch(tables: Tables, as_of: datetime, groups: list[FeatureGroup]) -> tuple[pd.DataFrame, list[Feature]]:
    """The feature table of ``groups`` as of ``as_of`` (as :func:`features.definitions.feature_table`)."""
    cutoff = ibis.timestamp(as_of)
    features = [f for g in groups for f in g.features]
    out = definitions.population(tables, cutoff)
    for group in groups:
        out = out.left_join(group.build(tables, cutoff), Col.CUSTOMER_KEY).drop(f"{Col.CUSTOMER_KEY}_right")
    out = out.mutate(**{f.name: out[f.name].fill_null(f.fill) for f in features if f.fill is not None})
    frame = out.select(Col.CUSTOMER_KEY, *(f.name for f in features)).order_by(Col.CUSTOMER_KEY).execute()
    for f in features:
        frame[f.name] = frame[f.name].astype(f.dtype if f.dtype == "float32" else object)
    return frame, features


def _busiest_day(tables: Tables) -> datetime:
    """The day whose events exercise the most real-time rules (the latest such day on a tie)."""
    kinds: list[pd.Series] = []

    def days(frame: pd.DataFrame, ts: str, name: str) -> None:
        when = pd.to_datetime(frame[ts].dropna(), utc=True).dt.floor("D").drop_duplicates()
        kinds.append(pd.Series(name, index=when))

    w = tables["web_events"].execute()
    w = w[w[Col.CUSTOMER_KEY].notna()]
    for kind, part in w.groupby(Col.EVENT_TYPE):
        days(part, Col.OCCURRED_AT, str(kind))
    o = tables["orders"].execute()
    days(o, Col.ORDERED_AT, "order")
    days(o.sort_values(Col.ORDERED_AT).drop_duplicates(Col.CUSTOMER_KEY), Col.ORDERED_AT, "first_order")
    m = tables["messages"].execute()
    for ch, part in m.groupby(Col.CHANNEL):
        days(part, Col.OPENED_AT, f"open_{ch}")
        days(part, Col.UNSUBSCRIBED_AT, f"unsubscribe_{ch}")
    c = tables["consents"].execute()
    for key, part in c.groupby([Col.CHANNEL, Col.STATUS]):
        days(part, Col.CONSENTED_AT, f"consent_{key}")
    coverage = pd.concat(kinds).groupby(level=0).nunique()
    best = coverage[coverage == coverage.max()].index.max()
    return pd.Timestamp(best).to_pydatetime()


@dataclass(frozen=True)
class Replay:
    snapshot: pd.DataFrame
    batch: pd.DataFrame
    features: list[Feature]
    events: list[Event]
    sessions: dict[str, dict[str, float]]
    day: datetime
    history: History


@pytest.fixture(scope="module")
def replay(tmp_path_factory: pytest.TempPathFactory) -> Replay:
    from features.ingest import ingest
    from features.mapping import load_mapping
    from features.store import open_tables
    from synth import generate_world

    root = tmp_path_factory.mktemp("realtime")
    generate_world(800, 3, root / "world")
    ingest(root / "world", load_mapping("synthetic"), root / "home", now=datetime(2026, 1, 1, tzinfo=UTC))
    tables = open_tables(root / "home")
    day = _busiest_day(tables)
    groups = _groups()
    snapshot, features = _batch(tables, day, groups)
    batch, _ = _batch(tables, day + DAY, groups)
    events = events_from_tables(tables, day, day + DAY)
    history = snapshot_history(tables, day, snapshot[Col.CUSTOMER_KEY].astype(str).tolist())
    return Replay(snapshot, batch, features, events, recent_sessions(tables, day), day, history)


def _parts(r: Replay) -> SnapshotParts:
    numeric = [f.name for f in r.features if f.dtype == "float32"]
    strings = [f.name for f in r.features if f.dtype == "string"]
    fills = {f.name: f.fill for f in r.features if f.fill is not None}
    ages = [f.name for f in r.features if f.ages]
    return SnapshotParts(r.snapshot, numeric, ages, strings, {}, r.day, fills, r.sessions, r.history)


@contextmanager
def _memory(parts: SnapshotParts) -> Iterator[InMemoryOnlineStore]:
    yield InMemoryOnlineStore.from_parts(parts)


@contextmanager
def _redis(parts: SnapshotParts) -> Iterator[RedisOnlineStore]:
    with redis_store_or_skip() as store:
        store.publish(parts)
        yield store


@pytest.mark.parametrize(
    "backend", [_memory, pytest.param(_redis, marks=pytest.mark.integration)], ids=["memory", "redis"]
)
def test_a_replayed_day_matches_the_batch_at_its_end(
    replay: Replay, backend: Callable[[SnapshotParts], AbstractContextManager[OnlineStore]]
) -> None:
    parts = _parts(replay)
    # every feature an event updates has a batch definition, and each is compared below
    covered = [n for n in REALTIME_FEATURES if n in parts.feature_names]
    assert covered == list(REALTIME_FEATURES), f"no batch definition: {set(REALTIME_FEATURES) - set(covered)}"
    with backend(parts) as store:
        results = [store.apply_event(e) for e in replay.events]
        assert ApplyResult.UNKNOWN_CUSTOMER not in results and ApplyResult.BEFORE_SNAPSHOT not in results
        end = replay.day + DAY
        keys = replay.batch[Col.CUSTOMER_KEY].tolist()
        got = store.lookup(keys, now=end)
        # compared: everyone the store may know (in the snapshot, or seen in an event): none skipped
        known = set(replay.snapshot[Col.CUSTOMER_KEY]) | {e.customer_key for e in replay.events}
        assert [k for i, k in enumerate(keys) if not got.found[i] and k in known] == []
        with _memory(parts) as plain:
            static = plain.lookup(keys, now=end)  # the snapshot aged, no events
        ok = got.found
        exercised = []
        for name in covered:
            i = parts.feature_names.index(name)
            want = replay.batch[name].to_numpy(np.float32)[ok]
            have, before = got.values[ok, i], static.values[ok, i]
            moved = ~((have == before) | (np.isnan(have) & np.isnan(before)))
            if moved.any():
                exercised.append(name)
            # What an event set is exact; a "days since" value carried from the snapshot is aged in float32, and
            # a lifetime sum adds the new amounts to the snapshot's float32 total: within one float32 step.
            if name in LIFETIME_SUMS:
                np.testing.assert_array_max_ulp(have[moved], want[moved], maxulp=1)
            else:
                np.testing.assert_array_equal(have[moved], want[moved], err_msg=name)
            np.testing.assert_allclose(have, want, rtol=1e-6, atol=0, err_msg=name)
        assert exercised == covered, f"not exercised by the day's events: {sorted(set(covered) - set(exercised))}"


def test_replay_events_come_in_time_order_with_stable_ids(replay: Replay) -> None:
    times = [e.timestamp for e in replay.events]
    assert times == sorted(times) and len({e.id for e in replay.events}) == len(replay.events)
    assert {e.type for e in replay.events} >= {EventKind.VIEW, EventKind.ORDER, EventKind.OPEN}
