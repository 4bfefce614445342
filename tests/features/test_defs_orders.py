"""The orders family: RFM, rhythm, mix and returns, on literal tables with known answers and on data."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.types as ir
import pandas as pd
import pytest

from features.contract import Col
from features.defs import orders
from features.defs.common import FeatureGroup
from features.ingest import ingest
from features.mapping import load_mapping
from features.store import default_as_of, open_tables
from synth import generate_world

T = datetime(2024, 6, 1, tzinfo=UTC)
ORII_SAMPLE = Path(__file__).resolve().parents[1] / "data" / "online_retail_ii"
FEATURES = {f.name: f for g in orders.GROUPS for f in g.features}


def _ago(days: float) -> datetime:
    return T - timedelta(days=days)


# customer, order id, days before T, amount, channel
ORDERS = [
    ("a", "o1", 100, 10.0, "online"),
    ("a", "o2", 70, 20.0, "online"),
    ("a", "o3", 40, 30.0, "offline"),
    ("a", "o4", 20, 40.0, "online"),
    ("a", "o5", 10, 60.0, None),
    ("b", "o6", 400, 50.0, "offline"),
    ("c", "o7", 3, 8.0, "online"),
    ("c", "o8", 1, 2.0, "online"),  # no lines
    ("e", "o9", 30, 5.0, "online"),  # exactly on the 30-day edge: inside
    (None, "o10", 5, 99.0, "online"),  # guest checkout: nobody's
]
# order id, item id, quantity, discount
LINES = [
    ("o1", "i1", 1, 0.0),
    ("o1", "i2", 1, 0.5),
    ("o2", "i1", 2, 0.0),
    ("o3", "i3", 1, 0.0),
    ("o3", "i9", 3, None),  # not in the catalogue, discount unknown
    ("o4", "i1", 2, 1.0),
    ("o5", "i4", 4, 0.0),
    ("o6", "i2", 3, 0.0),
    ("o7", "i1", 3, 0.0),
    ("o9", "i1", 1, 0.0),
    ("o10", "i2", 5, 0.0),
]
# item id, category, brand (both may be unknown)
ITEMS = [("i1", "K", "X"), ("i2", "K", "Y"), ("i3", "L", None), ("i4", None, None)]
# customer, return id, days before T, item id, quantity
RETURNS = [
    ("a", "C1", 30, "i1", 1),
    ("a", "C1", 30, "i2", 1),
    ("a", "C2", 5, "i1", 2),
    ("d", "C3", 50, "i2", 1),  # a cancellation only, no order
]


def _frame(rows: list[tuple[Any, ...]], columns: list[str], **timestamps: str) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=columns)
    for target, source in timestamps.items():
        frame[target] = [_ago(d) for d in frame.pop(source)]
        frame[target] = pd.to_datetime(frame[target], utc=True)
    return frame


def _tables(
    order_rows: list[tuple[Any, ...]] = ORDERS,
    line_rows: list[tuple[Any, ...]] = LINES,
    return_rows: list[tuple[Any, ...]] = RETURNS,
    only: tuple[str, ...] | None = None,
) -> dict[str, ir.Table]:
    con = ibis.duckdb.connect()
    o = _frame(
        order_rows,
        [Col.CUSTOMER_KEY, Col.ORDER_ID, "_ago", Col.AMOUNT, Col.CHANNEL],
        **{Col.ORDERED_AT: "_ago"},
    )
    lines = pd.DataFrame(line_rows, columns=[Col.ORDER_ID, Col.ITEM_ID, Col.QUANTITY, Col.DISCOUNT])
    lines[Col.DISCOUNT] = lines[Col.DISCOUNT].astype("float64")
    items = pd.DataFrame(ITEMS, columns=[Col.ITEM_ID, Col.CATEGORY, Col.BRAND])
    r = _frame(
        return_rows,
        [Col.CUSTOMER_KEY, Col.RETURN_ID, "_ago", Col.ITEM_ID, Col.QUANTITY],
        **{Col.RETURNED_AT: "_ago"},
    )
    frames = {"orders": o, "order_lines": lines, "items": items, "returns": r}
    return {name: con.create_table(name, f) for name, f in frames.items() if only is None or name in only}


def _build(group: FeatureGroup, tables: dict[str, ir.Table]) -> pd.DataFrame:
    out = group.build(tables, ibis.timestamp(T)).execute()
    assert list(out.columns) == [Col.CUSTOMER_KEY, *(f.name for f in group.features)]
    assert out[Col.CUSTOMER_KEY].is_unique and out[Col.CUSTOMER_KEY].notna().all()
    return out.set_index(Col.CUSTOMER_KEY).sort_index()


def _all(tables: dict[str, ir.Table]) -> pd.DataFrame:
    """Every orders-family feature, one row per customer seen by any group (as feature_table joins)."""
    parts = [_build(g, tables) for g in orders.GROUPS]
    joined = pd.concat(parts, axis=1, join="outer")
    fills = {n: f.fill for n, f in FEATURES.items() if f.fill is not None}
    return joined.fillna(fills)


GROUP = {g.name: g for g in orders.GROUPS}


def test_groups_names_and_contract() -> None:
    assert orders.RFM_WINDOWS == (30, 90, 180, 365)
    assert set(GROUP) == {"rfm", "rhythm", "mix", "returns"}
    expected = {
        "recency_days",
        "orders_lifetime",
        "monetary_lifetime",
        "avg_order_value",
        "tenure_days",
        *(f"{kind}_{w}d" for kind in ("orders", "monetary") for w in (30, 90, 180, 365)),
        "items_per_order",
        "gap_mean_days",
        "gap_std_days",
        "overdue_ratio",
        "order_value_trend",
        "basket_size_trend",
        "n_categories",
        "n_brands",
        "top_brand_share",
        "online_share",
        "return_rate",
        "cancel_rate",
        "discount_share",
    }
    assert set(FEATURES) == expected and len(FEATURES) == len(expected)
    assert {n for n, f in FEATURES.items() if f.ages} == {"recency_days", "tenure_days"}
    counts = {n for n, f in FEATURES.items() if f.fill == 0.0}
    assert counts == {n for n in expected if n.startswith(("orders_", "monetary_", "n_"))}
    assert all(f.description and f.dtype == "float32" for f in FEATURES.values())


def test_rfm_values() -> None:
    f = _build(GROUP["rfm"], _tables())
    assert list(f.index) == ["a", "b", "c", "e"]  # the guest order belongs to nobody
    a = f.loc["a"]
    assert a["recency_days"] == pytest.approx(10.0) and a["tenure_days"] == pytest.approx(100.0)
    assert [a[f"orders_{w}d"] for w in (30, 90, 180, 365)] == [2, 4, 5, 5] and a["orders_lifetime"] == 5
    assert [a[f"monetary_{w}d"] for w in (30, 90, 180, 365)] == pytest.approx([100.0, 150.0, 160.0, 160.0])
    assert a["monetary_lifetime"] == pytest.approx(160.0) and a["avg_order_value"] == pytest.approx(32.0)
    b = f.loc["b"]
    assert b["orders_365d"] == 0 and b["orders_lifetime"] == 1 and b["monetary_365d"] == 0.0
    assert f.loc["e", "orders_30d"] == 1  # the window includes its edge


def test_rhythm_values() -> None:
    f = _build(GROUP["rhythm"], _tables())
    a = f.loc["a"]
    # gaps 30, 30, 20, 10 days; the last order was 10 days ago
    assert a["gap_mean_days"] == pytest.approx(22.5)
    assert a["gap_std_days"] == pytest.approx(math.sqrt(275.0 / 3.0))
    assert a["overdue_ratio"] == pytest.approx(10.0 / 22.5)
    # values 10, 20 | 30, 40, 60 and units 2, 2 | 4, 2, 4
    assert a["order_value_trend"] == pytest.approx((130.0 / 3.0) / 15.0 - 1.0)
    assert a["basket_size_trend"] == pytest.approx((10.0 / 3.0) / 2.0 - 1.0)
    assert a["items_per_order"] == pytest.approx(14.0 / 5.0)
    b = f.loc["b"]  # one order: no gap, no spread, no trend
    assert b["items_per_order"] == 3.0
    assert b[["gap_mean_days", "gap_std_days", "overdue_ratio", "order_value_trend"]].isna().all()
    c = f.loc["c"]  # two orders: a mean gap but no spread; the order without lines has 0 units
    assert c["gap_mean_days"] == pytest.approx(2.0) and pd.isna(c["gap_std_days"])
    assert c["overdue_ratio"] == pytest.approx(0.5) and c["items_per_order"] == pytest.approx(1.5)
    assert pd.isna(c["basket_size_trend"])


def test_trend_needs_four_orders_and_breaks_ties_by_order_id() -> None:
    timeline = [(9, 1.0), (5, 3.0), (5, 5.0), (5, 7.0), (2, 9.0)]
    rows = [("f", f"p{i}", d, v, "online") for i, (d, v) in enumerate(timeline)]
    # p1..p3 are tied in time: the later order id counts as the later order, so the last three are
    # p4, p3, p2 (mean 7) and the earlier ones p1, p0 (mean 2), whatever order the rows come in
    for shuffled in (rows, rows[::-1], [rows[2], rows[0], rows[4], rows[1], rows[3]]):
        f = _build(GROUP["rhythm"], _tables(shuffled, only=("orders",)))
        assert f.loc["f", "order_value_trend"] == pytest.approx(7.0 / 2.0 - 1.0)
        assert f.loc["f", "gap_mean_days"] == pytest.approx(7.0 / 2.0)  # purchase days 4 and 3 apart
    three = _build(GROUP["rhythm"], _tables(rows[:3], only=("orders",)))
    assert pd.isna(three.loc["f", "order_value_trend"])
    free_first = [("f", "p0", 9, 0.0, "online"), ("f", "p1", 8, 0.0, "online"), *rows[2:]]
    zero_before = _build(GROUP["rhythm"], _tables(free_first, only=("orders",)))
    assert pd.isna(zero_before.loc["f", "order_value_trend"])  # undefined against a zero mean


def test_mix_values() -> None:
    f = _build(GROUP["mix"], _tables())
    a = f.loc["a"]
    assert a["n_categories"] == 2 and a["n_brands"] == 2  # unknown category/brand and unknown items ignored
    assert a["top_brand_share"] == pytest.approx(5.0 / 6.0)  # X: 1 + 2 + 2 units, Y: 1
    assert a["online_share"] == pytest.approx(3.0 / 4.0)  # the order without a channel is not judged
    assert a["discount_share"] == pytest.approx(2.0 / 6.0)  # of the lines whose discount is known
    b = f.loc["b"]
    assert b["n_brands"] == 1 and b["top_brand_share"] == 1.0 and b["online_share"] == 0.0
    c = f.loc["c"]
    assert c["discount_share"] == 0.0 and c["online_share"] == 1.0


def test_returns_values() -> None:
    f = _build(GROUP["returns"], _tables())
    assert f.loc["a", "return_rate"] == pytest.approx(4.0 / 14.0)
    assert f.loc["a", "cancel_rate"] == pytest.approx(2.0 / 7.0)  # 2 documents, 5 orders
    assert f.loc["b", "return_rate"] == 0.0 and f.loc["b", "cancel_rate"] == 0.0
    assert pd.isna(f.loc["d", "return_rate"]) and f.loc["d", "cancel_rate"] == 1.0  # cancelled, never bought


def test_events_at_or_after_the_cutoff_change_nothing() -> None:
    later_orders = [
        ("a", "o20", 0, 500.0, "offline"),  # exactly at the cutoff
        ("a", "o21", -3, 70.0, "offline"),
        ("b", "o22", -1, 1.0, "online"),
        ("z", "o23", -10, 5.0, "online"),  # a customer known only after the cutoff
    ]
    later_lines = [("o20", "i2", 9, 3.0), ("o21", "i3", 1, 0.0), ("o22", "i1", 1, 1.0), ("o23", "i1", 1, 0.0)]
    later_returns = [("a", "C9", 0, "i1", 5), ("b", "C10", -2, "i2", 3), ("z", "C11", -20, "i1", 1)]
    base = _all(_tables())
    planted = _all(_tables(ORDERS + later_orders, LINES + later_lines, RETURNS + later_returns))
    pd.testing.assert_frame_equal(base, planted)


def test_groups_run_without_lines_items_or_returns() -> None:
    full = _all(_tables())
    bare = _all(_tables(only=("orders",)))
    rfm = [f.name for f in orders.RFM]
    pd.testing.assert_frame_equal(bare.loc[full.index.drop("d"), rfm], full.drop(index="d")[rfm])
    nulls = ["items_per_order", "basket_size_trend", "top_brand_share", "discount_share", "return_rate", "cancel_rate"]
    assert bare[nulls].isna().all().all()
    assert (bare[["n_categories", "n_brands"]] == 0.0).all().all()
    assert bare.loc["a", "gap_mean_days"] == pytest.approx(22.5) and bare.loc["a", "online_share"] == 0.75
    no_items = _all(_tables(only=("orders", "order_lines", "returns")))
    assert no_items.loc["a", "items_per_order"] == pytest.approx(2.8) and no_items["top_brand_share"].isna().all()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    root = tmp_path_factory.mktemp("orders_world")
    generate_world(800, 3, root / "raw")
    ingest(root / "raw", load_mapping("synthetic"), root / "home", now=datetime(2030, 1, 1, tzinfo=UTC))
    tables = open_tables(root / "home")
    cutoff = ibis.timestamp(default_as_of(tables))
    parts = [g.build(tables, cutoff).execute().set_index(Col.CUSTOMER_KEY) for g in orders.GROUPS]
    for part in parts:
        assert part.index.is_unique
    joined = pd.concat(parts, axis=1, join="outer")
    return root, joined[joined["orders_lifetime"].notna()]  # buyers (cancellations alone are in returns only)


def _with_truth(root: Path, f: pd.DataFrame) -> pd.DataFrame:
    """Features joined to the planted person behind each customer_key (keys that are one person only)."""
    keys = pd.read_parquet(root / "home" / "ingested" / "identity_map.parquet")
    persons = pd.read_parquet(root / "raw" / "truth" / "identities.parquet")
    pairs = keys.merge(persons, on=Col.CUSTOMER_ID)[[Col.CUSTOMER_KEY, "person_id"]].drop_duplicates()
    pairs = pairs[~pairs[Col.CUSTOMER_KEY].duplicated(keep=False)].set_index(Col.CUSTOMER_KEY)
    truth = pd.read_parquet(root / "raw" / "truth" / "persons.parquet").set_index("person_id").add_prefix("true_")
    return f.join(pairs, how="inner").join(truth, on="person_id")


def test_synthetic_world_values_are_plausible(world: tuple[Path, pd.DataFrame]) -> None:
    _, f = world
    assert len(f) > 400 and f["orders_lifetime"].min() >= 1
    for share in ("top_brand_share", "online_share", "discount_share", "cancel_rate"):
        assert f[share].between(0.0, 1.0).all(), share
    assert f["gap_std_days"].isna().eq(f["orders_lifetime"] < 3).all()
    assert f["order_value_trend"].isna().eq(f["orders_lifetime"] < 4).all()
    assert (f["orders_30d"] <= f["orders_90d"]).all() and (f["orders_365d"] <= f["orders_lifetime"]).all()
    assert (f["n_brands"] >= 1).all() and (f["items_per_order"] >= 1).all()
    assert f["cancel_rate"].notna().all() and f["return_rate"].notna().all()


def test_synthetic_world_recovers_planted_behaviour(world: tuple[Path, pd.DataFrame]) -> None:
    root, f = world
    t = _with_truth(root, f)
    regular = t[t["orders_lifetime"] >= 5]
    assert regular["online_share"].corr(regular["true_online_share"], method="spearman") > 0.7
    assert regular["gap_mean_days"].corr(regular["true_purchase_rate_per_day"], method="spearman") < -0.5
    loyal_to_brand = t["true_single_brand"].notna()
    assert t.loc[loyal_to_brand, "top_brand_share"].mean() > t.loc[~loyal_to_brand, "top_brand_share"].mean() + 0.1
    overdue = t.groupby("true_lifecycle")["overdue_ratio"].median()
    assert overdue["churned"] > 1.5 > overdue["loyal"]
    # ~3 % of orders are cancelled by a document (planted CANCEL_SHARE)
    docs = (f["cancel_rate"] * f["orders_lifetime"] / (1 - f["cancel_rate"])).sum()
    assert 0.015 < docs / (docs + f["orders_lifetime"].sum()) < 0.05


def test_real_sample_executes(tmp_path: Path) -> None:
    ingest(ORII_SAMPLE, load_mapping("online_retail_ii"), tmp_path, now=datetime(2026, 1, 1, tzinfo=UTC))
    tables = open_tables(tmp_path)
    assert "web_events" not in tables and "messages" not in tables
    cutoff = ibis.timestamp(default_as_of(tables))
    f = pd.concat(
        [g.build(tables, cutoff).execute().set_index(Col.CUSTOMER_KEY) for g in orders.GROUPS], axis=1, join="outer"
    )
    buyers = f[f["orders_lifetime"].notna()]
    assert len(buyers) > 100
    assert (buyers["online_share"] == 1.0).all()  # the mapping sets every order online
    assert buyers[["top_brand_share", "discount_share"]].isna().all().all()  # no brands, no discounts there
    assert (buyers["n_brands"] == 0.0).all() and (buyers["n_categories"] == 0.0).all()
    assert buyers["items_per_order"].notna().all() and buyers["return_rate"].notna().all()
    assert (buyers["cancel_rate"] > 0).any() and buyers["gap_mean_days"].notna().any()
