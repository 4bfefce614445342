"""In-process online store: order kept, missing reported as missing (never zeros), aliases resolve,
"days since" features age with the read time, stale rows count as missing, a built home loads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.contract import Col
from features.online import InMemoryOnlineStore, ReadTimeError, load_in_memory
from features.realtime import ApplyResult, Event, EventKind, History, Stream

D = datetime(2025, 3, 1, tzinfo=UTC)


def _store() -> InMemoryOnlineStore:
    frame = pd.DataFrame({"customer_key": ["k1", "k2", "k3"], "a": [1.0, 2.0, np.nan], "b": [10.0, 20.0, 30.0]})
    return InMemoryOnlineStore(frame, ["a", "b"], aliases={"R1": "k1", "R9": "k-gone"})


def test_lookup_keeps_order_and_reports_missing() -> None:
    found = _store().lookup(["k3", "nobody", "k1", "R1", "R9"])
    assert found.keys == ["k3", None, "k1", "k1", None]
    assert found.rows.tolist() == [2, -1, 0, 0, -1]
    assert found.found.tolist() == [True, False, True, True, False]
    assert found.values.dtype == np.float32 and found.values.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(found.values[2], [1.0, 10.0])
    assert np.isnan(found.values[1]).all() and np.isnan(found.values[4]).all()
    assert np.isnan(found.values[0, 0]) and found.values[0, 1] == 30.0  # a real NaN feature stays NaN
    assert np.isnan(found.age_days).all() and found.now is None  # no as-of time: no ages


def test_lookup_does_not_expose_the_store_matrix() -> None:
    store = _store()
    found = store.lookup(["k1"])
    found.values[:] = -1
    assert store.lookup(["k1"]).values[0, 0] == 1.0


def test_empty_and_large_lookups() -> None:
    assert _store().lookup([]).values.shape == (0, 2)
    ids = ["k2", "nobody"] * 5_000
    found = _store().lookup(ids)
    assert found.values.shape == (10_000, 2) and found.found.sum() == 5_000
    np.testing.assert_array_equal(found.values[::2], np.tile([2.0, 20.0], (5_000, 1)).astype(np.float32))


def _dated() -> InMemoryOnlineStore:
    frame = pd.DataFrame(
        {
            Col.CUSTOMER_KEY: ["k1", "k2"],
            "recency_days": [3.0, np.nan],
            "orders_lifetime": [2.0, 0.0],
            "views_1d": [4.0, 0.0],
            "country": ["GB", None],
        }
    )
    names = ["recency_days", "orders_lifetime", "views_1d"]
    return InMemoryOnlineStore(frame, names, {"R2": "k2"}, D, ages=["recency_days"], string_names=["country"])


def test_days_since_features_age_with_the_read_time() -> None:
    store = _dated()
    at_snapshot = store.lookup(["k1", "k2"], now=D)
    assert at_snapshot.now == D and at_snapshot.age_days.tolist() == [0.0, 0.0]
    np.testing.assert_array_equal(at_snapshot.values[0], [3.0, 2.0, 4.0])  # exactly the snapshot
    later = store.lookup(["k1", "k2"], now=D + timedelta(days=2, hours=12))
    assert later.values[0, 0] == pytest.approx(5.5) and np.isnan(later.values[1, 0])  # never stays never
    # counts stay; built without the snapshot's event times (no history), the window keeps the snapshot's count
    assert later.values[0, 1] == 2.0 and later.values[0, 2] == 4.0
    assert later.age_days.tolist() == [2.5, 2.5]
    # without a read time: the server's clock, never the latest event seen (one clock, docs/features.md)
    store.apply_event(Event(EventKind.ORDER, D + timedelta(days=400), customer_key="k2"))
    before = datetime.now(UTC)
    default = store.lookup(["k1"])
    assert default.now is not None and before <= default.now <= datetime.now(UTC)
    assert default.values[0, 0] == pytest.approx(3.0 + (default.now - D).total_seconds() / 86_400, rel=1e-6)


def test_a_read_before_the_snapshot_is_refused() -> None:
    with pytest.raises(ReadTimeError, match="before the online store's snapshot"):
        _dated().lookup(["k1"], now=D - timedelta(seconds=1))


def test_windows_age_from_the_snapshots_event_times() -> None:
    frame = pd.DataFrame({Col.CUSTOMER_KEY: ["k1", "k2"], "views_1d": [3.0, 0.0], "views_7d": [4.0, 0.0]})
    hours = [-30.0, -20.0, -5.0, -1.0]  # four views before the snapshot: three in its last day
    times = np.array([D.timestamp() + h * 3600 for h in hours])
    history = History({"view": Stream(np.array([0, 4, 4]), times)})
    store = InMemoryOnlineStore(frame, ["views_1d", "views_7d"], as_of=D, history=history)
    read = {h: store.lookup(["k1", "k2"], now=D + timedelta(hours=h)).values for h in (0, 5, 19, 23, 24 * 7 - 30)}
    assert read[0][0].tolist() == [3.0, 4.0] and read[0][1].tolist() == [0.0, 0.0]  # the snapshot itself
    assert read[5][0].tolist() == [2.0, 4.0]  # the view of -20 h has left the day, not the week
    assert read[19][0].tolist() == [2.0, 4.0] and read[23][0].tolist() == [1.0, 4.0]  # exactly 1 day old counts
    assert read[24 * 7 - 30][0].tolist() == [0.0, 4.0]  # exactly 7 days old counts too
    store.apply_event(Event(EventKind.VIEW, D + timedelta(hours=2), customer_key="k1"))
    store.apply_event(Event(EventKind.VIEW, D + timedelta(hours=30), customer_key="k1"))  # after the reads below
    assert store.lookup(["k1"], now=D + timedelta(hours=5)).values[0].tolist() == [3.0, 5.0]
    assert store.lookup(["k1"], now=D + timedelta(hours=26, seconds=1)).values[0].tolist() == [0.0, 5.0]


def test_stale_rows_are_reported_as_missing() -> None:
    found = _dated().lookup(["k1", "nobody", "R2"], now=D + timedelta(days=3), max_age_days=2.0)
    assert found.keys == ["k1", None, "k2"]  # known ...
    assert found.stale.tolist() == [True, False, True] and not found.found.any()  # ... but too old to use
    assert np.isnan(found.values).all()
    fresh = _dated().lookup(["k1"], now=D + timedelta(days=1), max_age_days=2.0)
    assert fresh.found.all() and not fresh.stale.any()


def test_string_features_are_held_beside_the_matrix() -> None:
    store = _dated()
    found = store.lookup(["R2", "k1", "nobody"], strings=True)
    assert found.strings == {"country": [None, "GB", None]}
    store.apply_event(Event(EventKind.VIEW, D + timedelta(hours=1), customer_key="k-new"))
    assert store.lookup(["k-new"], strings=True).strings == {"country": [None]}
    assert store.lookup(["k1"]).strings == {}


def test_carry_over_reapplies_only_what_the_new_snapshot_lacks() -> None:
    old = _dated()
    old.apply_event(Event(EventKind.ORDER, D + timedelta(hours=2), customer_key="k1"))
    old.apply_event(Event(EventKind.ORDER, D + timedelta(hours=8), customer_key="k1"))
    frame = pd.DataFrame({Col.CUSTOMER_KEY: ["k1"], "recency_days": [0.125], "orders_lifetime": [3.0]})
    new = InMemoryOnlineStore(frame, ["recency_days", "orders_lifetime"], as_of=D + timedelta(hours=5))
    assert new.carry_over(old) == 1
    got = new.lookup(["k1"], now=D + timedelta(hours=9)).values[0]
    assert got[1] == 4.0 and got[0] == pytest.approx(1 / 24)


def test_a_store_without_an_as_of_takes_no_events() -> None:
    with pytest.raises(ValueError, match="as-of"):
        _store().apply_event(Event(EventKind.VIEW, D, customer_key="k1"))


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from features.ingest import ingest
    from features.mapping import load_mapping
    from features.store import build_snapshot
    from synth import generate_world

    root = tmp_path_factory.mktemp("online")
    generate_world(300, 7, root / "world")
    ingest(root / "world", load_mapping("synthetic"), root / "home", now=datetime(2026, 1, 1, tzinfo=UTC))
    build_snapshot(root / "home")
    return root / "home"


def test_load_in_memory_serves_the_latest_snapshot(home: Path) -> None:
    store, snap = load_in_memory(home)
    frame = snap.read()
    numeric = [f["name"] for f in snap.manifest["features"] if f["dtype"] == "float32"]
    assert store.feature_names == numeric and len(store) == len(frame) and store.as_of == snap.as_of
    id_map = pd.read_parquet(home / "ingested" / "identity_map.parquet")
    ids = id_map[Col.CUSTOMER_ID].astype(str).tolist()
    found = store.lookup(ids, now=snap.as_of)  # at its as-of, the recounted windows are the snapshot's own
    expected = frame.set_index(Col.CUSTOMER_KEY).reindex(id_map[Col.CUSTOMER_KEY].astype(str))[numeric]
    known = expected.index.isin(frame[Col.CUSTOMER_KEY]).tolist()
    assert found.found.tolist() == known
    np.testing.assert_array_equal(found.values[found.found], expected.to_numpy(np.float32)[found.found])
    assert store.apply_event(Event(EventKind.ORDER, snap.as_of, customer_id=ids[0])) is ApplyResult.APPLIED


def test_recent_events_are_a_customers_item_events_since_the_snapshot_with_the_data_clock() -> None:
    from features.online import MAX_RECENT_EVENTS

    store = _dated()
    assert store.recent_events("k1").events == [] and store.recent_events("k1").clock == D

    def ev(kind: str, minutes: float, item: str | None = None, who: str = "k1") -> Event:
        return Event(type=kind, timestamp=D + timedelta(minutes=minutes), customer_key=who, item_id=item)

    posted = [
        ev("add_to_cart", 5, "i2"),
        ev("view", 1, "i1"),  # applied later, happened earlier: read in time order
        ev("view", -60, "i0"),  # before the snapshot: already in it
        ev("view", 7),  # no item
        ev("search", 8, "i9"),  # not an item event a recommender folds in
        ev("checkout", 9),  # closes the cart: kept without an item
        ev("order", 10, "i2"),
        ev("view", 30, "i5", who="k2"),  # another customer's: moves only the clock
    ]
    for e in posted:
        store.apply_event(e)
    recent = store.recent_events("k1")
    assert [(e.type, e.item_id) for e in recent.events] == [
        (EventKind.VIEW, "i1"),
        (EventKind.ADD_TO_CART, "i2"),
        (EventKind.CHECKOUT, None),
        (EventKind.ORDER, "i2"),
    ]
    assert recent.clock == D + timedelta(minutes=30)  # the data's clock: the latest event applied
    assert store.recent_events("nobody").events == []
    for n in range(MAX_RECENT_EVENTS + 5):
        store.apply_event(ev("view", 100 + n, f"v{n}"))
    capped = store.recent_events("k1").events
    assert len(capped) == MAX_RECENT_EVENTS and capped[-1].item_id == f"v{MAX_RECENT_EVENTS + 4}"
    store.erase(["k1"])
    assert store.recent_events("k1").events == []
