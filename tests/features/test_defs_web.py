"""Web features: literal events with known answers, point in time, absent tables, the synthetic world."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import ibis
import numpy as np
import pandas as pd
import pytest

from features.contract import Col
from features.defs.common import FeatureGroup, Tables
from features.defs.web import GROUPS
from features.ingest import ingest
from features.mapping import load_mapping
from features.store import open_tables
from synth import generate_world
from tests.features.group_helpers import run_group

T = datetime(2024, 6, 10, tzinfo=UTC)
KEY = Col.CUSTOMER_KEY
V, ADD, REM, OUT, SEARCH = "view", "add_to_cart", "remove_from_cart", "checkout", "search"

# (customer_key, session_id, event_type, occurred_at, category)
Event = tuple[str | None, str, str, str, str | None]
EVENTS: list[Event] = [
    # a: windows and sessions; never ordered
    (None, "sa1", V, "2024-06-09 17:00", "Toys"),  # anonymous: counts for nobody
    ("a", "sa1", V, "2024-06-09 18:00", "Shoes"),
    ("a", "sa1", V, "2024-06-09 18:05", "Shoes"),
    ("a", "sa1", ADD, "2024-06-09 18:06", "Shoes"),  # cart only 6 h old: not judged yet
    ("a", "sa2", V, "2024-06-05 10:00", "Bags"),
    ("a", "sa2", V, "2024-06-05 10:01", "Bags"),
    ("a", "sa2", V, "2024-06-05 10:02", "Shoes"),
    ("a", "sa3", V, "2024-06-02 23:00", "Bags"),  # the session starts 7.04 days ago ...
    ("a", "sa3", V, "2024-06-03 01:00", "Bags"),  # ... this view is 6.96 days old
    ("a", "sa4", V, "2024-04-01 12:00", "Toys"),
    (None, "anon", V, "2024-06-09 20:00", "Toys"),
    (None, "anon", ADD, "2024-06-09 20:01", "Toys"),
    # b: abandoned carts
    ("b", "sb1", ADD, "2024-06-08 23:30", None),  # the order comes exactly 24 h later: too late
    ("b", "sb2", ADD, "2024-06-04 08:00", None),
    ("b", "sb2", ADD, "2024-06-04 09:00", None),  # cart time = last add; ordered 23:59:59 later: saved
    ("b", "sb3", ADD, "2024-05-25 12:00", None),  # the order came a minute before the cart: abandoned
    ("b", "sb4", ADD, "2024-06-09 12:00", None),  # 12 h old: not judged yet
    ("b", "sb5", ADD, "2024-05-01 12:00", None),  # abandoned 39.5 days ago: outside every window
    ("b", "sb6", ADD, "2024-06-02 00:00", None),  # abandoned exactly 7 days ago: inside 7d
    # c: the cart since the last order or checkout
    ("c", "sc1", V, "2024-06-08 12:00", "Toys"),  # before the last order
    ("c", "sc2", ADD, "2024-06-09 05:00", None),  # after the order, before the checkout
    ("c", "sc2", OUT, "2024-06-09 06:00", None),
    ("c", "sc2", ADD, "2024-06-09 07:00", None),
    ("c", "sc2", ADD, "2024-06-09 07:01", None),
    ("c", "sc2", ADD, "2024-06-09 07:02", None),
    ("c", "sc2", REM, "2024-06-09 07:03", None),
    ("c", "sc2", V, "2024-06-09 07:04", "Toys"),
    ("c", "sc2", V, "2024-06-09 07:05", "Toys"),
    ("c", "sc2", SEARCH, "2024-06-09 07:06", None),
    # d: removes more than adds: the cart is empty, not negative
    ("d", "sd1", ADD, "2024-06-09 10:00", None),
    ("d", "sd1", REM, "2024-06-09 10:01", None),
    ("d", "sd1", REM, "2024-06-09 10:02", None),
    # e: a tie between two categories goes to the name that sorts first
    ("e", "se1", V, "2024-06-01 10:00", "Shoes"),
    ("e", "se1", V, "2024-06-01 10:01", "Shoes"),
    ("e", "se1", V, "2024-06-01 10:02", "Bags"),
    ("e", "se1", V, "2024-06-01 10:03", "Bags"),
    ("e", "se1", V, "2024-06-01 10:04", "Toys"),
    ("e", "se1", V, "2024-06-01 10:05", None),
    ("e", "se1", V, "2024-06-01 10:06", None),
    ("e", "se1", V, "2024-06-01 10:07", None),
    ("e", "se0", V, "2024-05-01 10:00", "Zebra"),
    ("e", "se0", V, "2024-05-01 10:01", "Zebra"),
    ("e", "se0", V, "2024-05-01 10:02", "Zebra"),
]

# (customer_key, ordered_at)
ORDERS = [
    ("b", "2024-06-09 23:30"),
    ("b", "2024-06-05 08:59:59"),
    ("b", "2024-05-25 11:59"),
    ("c", "2024-06-09 00:00"),  # also within 24 h of b's cart sb1: another customer's order saves nothing
]

# Events and orders at or after the cutoff: none may change anything.
LATER_EVENTS: list[Event] = [
    ("a", "sa1", V, "2024-06-10 00:00", "Toys"),
    ("a", "sa9", V, "2024-06-10 08:00", "Toys"),
    ("b", "sb1", ADD, "2024-06-10 00:00", None),  # would move sb1's cart time to the cutoff
    ("c", "sc2", REM, "2024-06-10 00:00", None),
    ("c", "sc2", OUT, "2024-06-11 00:00", None),
    ("g", "sg1", ADD, "2024-06-12 00:00", "Toys"),  # known only after the cutoff
]
LATER_ORDERS = [("b", "2024-06-10 00:00"), ("b", "2024-06-10 01:00"), ("a", "2024-06-10 00:00")]


def _tables(events: list[Event], orders: list[tuple[str, str]], *, web: bool = True) -> Tables:
    con = ibis.duckdb.connect()
    o = pd.DataFrame(orders, columns=[KEY, Col.ORDERED_AT])
    o[Col.ORDERED_AT] = pd.to_datetime(o[Col.ORDERED_AT], utc=True, format="ISO8601")
    o[Col.ORDER_ID] = [f"o{i}" for i in range(len(o))]
    o["amount"] = 10.0
    tables = {"orders": con.create_table("orders", o)}
    if web:
        ev = pd.DataFrame(events, columns=[KEY, Col.SESSION_ID, Col.EVENT_TYPE, Col.OCCURRED_AT, Col.CATEGORY])
        ev[Col.OCCURRED_AT] = pd.to_datetime(ev[Col.OCCURRED_AT], utc=True, format="ISO8601")
        ev[Col.EVENT_ID] = [f"e{i}" for i in range(len(ev))]
        tables["web_events"] = con.create_table("web_events", ev.astype({KEY: "string", Col.CATEGORY: "string"}))
    return tables


def _run(group: FeatureGroup, tables: Tables, as_of: datetime = T) -> pd.DataFrame:
    return run_group(group, tables, as_of)


def _all(tables: Tables, as_of: datetime = T) -> pd.DataFrame:
    return pd.concat([_run(g, tables, as_of) for g in GROUPS], axis=1)


def _group(name: str) -> FeatureGroup:
    return next(g for g in GROUPS if g.name == name)


@pytest.fixture(scope="module")
def literal() -> pd.DataFrame:
    return _all(_tables(EVENTS, ORDERS))


def test_anonymous_events_count_for_nobody(literal: pd.DataFrame) -> None:
    assert sorted(literal.index) == ["a", "b", "c", "d", "e"]


def test_views_adds_and_last_visit(literal: pd.DataFrame) -> None:
    a = literal.loc["a"]
    assert (a["views_1d"], a["views_7d"], a["views_30d"], a["views_lifetime"]) == (2, 6, 7, 8)
    assert (a["add_to_carts_1d"], a["add_to_carts_7d"], a["add_to_carts_30d"]) == (1, 1, 1)
    assert a["days_since_last_visit"] == pytest.approx((5 * 60 + 54) / 1440)
    assert literal.loc["b", "views_lifetime"] == 0 and literal.loc["b", "add_to_carts_30d"] == 6


def test_sessions_are_dated_by_their_first_event(literal: pd.DataFrame) -> None:
    a, b = literal.loc["a"], literal.loc["b"]
    assert (a["sessions_1d"], a["sessions_7d"], a["sessions_30d"]) == (1, 2, 3)  # sa3 started 7.04 days ago
    assert (b["sessions_1d"], b["sessions_7d"], b["sessions_30d"]) == (1, 3, 5)


def test_abandoned_carts(literal: pd.DataFrame) -> None:
    b = literal.loc["b"]
    assert (b["abandoned_carts_1d"], b["abandoned_carts_7d"], b["abandoned_carts_30d"]) == (1, 2, 3)
    # a's and c's carts are younger than 24 h: not judged yet
    assert literal.loc[["a", "c"], "abandoned_carts_30d"].tolist() == [0, 0]


def test_cart_size_and_views_since_last_order(literal: pd.DataFrame) -> None:
    assert literal.loc["c", "cart_size"] == 2  # three adds and one remove after the checkout
    assert literal.loc["c", "views_since_last_order"] == 2  # a checkout empties the cart, not the browsing
    assert literal.loc["d", "cart_size"] == 0
    assert literal.loc["a", "cart_size"] == 1 and literal.loc["a", "views_since_last_order"] == 8  # never ordered
    assert literal.loc["b", "cart_size"] == 0  # sb4's add came before b's last order


def test_most_viewed_category(literal: pd.DataFrame) -> None:
    category = literal["most_viewed_category_30d"]
    assert category["a"] == "Bags"  # 4 views against Shoes' 3; the Toys views are old or anonymous
    assert category["e"] == "Bags"  # 2 against 2 with Shoes: the name first in order wins; Zebra is too old
    assert category["c"] == "Toys"
    assert category[["b", "d"]].isna().all()


def test_events_at_or_after_the_cutoff_change_nothing(literal: pd.DataFrame) -> None:
    planted = _all(_tables(EVENTS + LATER_EVENTS, ORDERS + LATER_ORDERS))
    pd.testing.assert_frame_equal(planted, literal)


def test_a_cart_is_judged_once_its_24_hours_are_over() -> None:
    at_24h = datetime(2024, 6, 9, 23, 30, tzinfo=UTC)  # sb1's 24 h end here; the order at this instant is late
    before = _run(_group("web_sessions"), _tables(EVENTS, ORDERS), datetime(2024, 6, 9, 23, 29, tzinfo=UTC))
    after = _run(_group("web_sessions"), _tables(EVENTS, ORDERS), at_24h)
    assert before.loc["b", "abandoned_carts_1d"] == 0 and after.loc["b", "abandoned_carts_1d"] == 1


def test_no_web_events_gives_empty_groups_and_fills() -> None:
    tables = _tables([], ORDERS, web=False)
    for group in GROUPS:
        assert _run(group, tables).empty
    population = tables["orders"].select(KEY).distinct()
    out = population
    for group in GROUPS:
        out = out.left_join(group.build(tables, ibis.timestamp(T)), KEY).drop(f"{KEY}_right")
    frame = out.execute().set_index(KEY).sort_index()
    assert frame.index.tolist() == ["b", "c"]
    assert frame.isna().all().all()  # feature_table then fills the counts with 0


# --- the synthetic world -------------------------------------------------------------------------

WORLD_AS_OF = datetime(2025, 10, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Tables, Path]:
    root = tmp_path_factory.mktemp("web-world")
    generate_world(800, 3, root / "raw")
    ingest(root / "raw", load_mapping("synthetic"), root / "home", now=datetime(2026, 1, 1, tzinfo=UTC))
    return open_tables(root / "home"), root / "raw" / "truth"


def _oracle(tables: Tables, as_of: datetime) -> pd.DataFrame:
    """The same web features computed independently in pandas."""
    cutoff = pd.Timestamp(as_of)
    ev = tables["web_events"].execute()
    ev = ev[ev[KEY].notna() & (ev[Col.OCCURRED_AT] < cutoff)]
    o = tables["orders"].execute()
    o = o[o[KEY].notna() & (o[Col.ORDERED_AT] < cutoff)].sort_values(Col.ORDERED_AT)
    age = (cutoff - ev[Col.OCCURRED_AT]).dt.total_seconds() / 86_400
    kind = ev[Col.EVENT_TYPE]
    out = pd.DataFrame(index=pd.Index(sorted(ev[KEY].unique()), name=KEY))
    for w in (1, 7, 30):
        out[f"views_{w}d"] = ev[(kind == V) & (age <= w)].groupby(KEY).size()
    first = ev.groupby([KEY, Col.SESSION_ID])[Col.OCCURRED_AT].min().reset_index()
    carts = ev[kind == ADD].groupby([KEY, Col.SESSION_ID])[Col.OCCURRED_AT].max().rename("cart_at").reset_index()
    carts = carts[carts["cart_at"] <= cutoff - pd.Timedelta(hours=24)].sort_values("cart_at")
    nxt = pd.merge_asof(
        carts,
        o[[KEY, Col.ORDERED_AT]],
        left_on="cart_at",
        right_on=Col.ORDERED_AT,
        by=KEY,
        direction="forward",
    )
    carts = nxt[nxt[Col.ORDERED_AT].isna() | (nxt[Col.ORDERED_AT] >= nxt["cart_at"] + pd.Timedelta(hours=24))]
    since_abandoned = (cutoff - carts["cart_at"]).dt.total_seconds() / 86_400 - 1
    session_age = (cutoff - first[Col.OCCURRED_AT]).dt.total_seconds() / 86_400
    for w in (1, 7, 30):
        out[f"sessions_{w}d"] = first[session_age <= w].groupby(KEY).size()
        out[f"abandoned_carts_{w}d"] = carts[since_abandoned <= w].groupby(KEY).size()
    last_order = o.groupby(KEY)[Col.ORDERED_AT].max()
    last_checkout = ev[kind == OUT].groupby(KEY)[Col.OCCURRED_AT].max()
    lo, lc = ev[KEY].map(last_order), ev[KEY].map(last_checkout)
    after_order = lo.isna() | (ev[Col.OCCURRED_AT] > lo)
    in_cart = after_order & (lc.isna() | (ev[Col.OCCURRED_AT] > lc))
    out["views_since_last_order"] = ev[(kind == V) & after_order].groupby(KEY).size()
    net = (
        ev[(kind == ADD) & in_cart]
        .groupby(KEY)
        .size()
        .sub(ev[(kind == REM) & in_cart].groupby(KEY).size(), fill_value=0)
    )
    out["cart_size"] = net.clip(lower=0)
    out = out.fillna(0.0).astype("float64")
    views = ev[(kind == V) & ev[Col.CATEGORY].notna() & (age <= 30)]
    counts = views.groupby([KEY, Col.CATEGORY]).size().rename("n").reset_index()
    top = counts.sort_values([KEY, "n", Col.CATEGORY], ascending=[True, False, True]).drop_duplicates(KEY)
    out["most_viewed_category_30d"] = top.set_index(KEY)[Col.CATEGORY]
    return out


def test_synthetic_world_matches_an_independent_pandas_computation(world: tuple[Tables, Path]) -> None:
    tables, _ = world
    ours = _all(tables, WORLD_AS_OF)
    oracle = _oracle(tables, WORLD_AS_OF)
    assert len(ours) > 300 and ours.index.tolist() == oracle.index.tolist()
    for name in oracle.columns:
        if name == "most_viewed_category_30d":
            expected = oracle[name].astype("string").fillna("<none>").tolist()
            assert ours[name].astype("string").fillna("<none>").tolist() == expected
        else:
            np.testing.assert_array_equal(ours[name].to_numpy(np.float64), oracle[name].to_numpy(), err_msg=name)
    assert ours["abandoned_carts_30d"].sum() > 10 and ours["cart_size"].sum() > 10


def test_synthetic_world_values_are_plausible(world: tuple[Tables, Path]) -> None:
    tables, truth = world
    f = _all(tables, WORLD_AS_OF)
    for kind in ("views", "sessions", "add_to_carts", "abandoned_carts"):
        assert (f[f"{kind}_1d"] <= f[f"{kind}_7d"]).all() and (f[f"{kind}_7d"] <= f[f"{kind}_30d"]).all()
    assert (f["views_30d"] <= f["views_lifetime"]).all() and (f["views_since_last_order"] <= f["views_lifetime"]).all()
    assert (f["days_since_last_visit"] > 0).all() and (f["cart_size"] >= 0).all()
    # The category a person prefers by design is the one they view most, far above chance (1 in 19).
    keys = tables["customers"].select(Col.CUSTOMER_ID, KEY).execute()
    persons = pd.read_parquet(truth / "identities.parquet").merge(pd.read_parquet(truth / "persons.parquet"))
    preferred = keys.merge(persons, on=Col.CUSTOMER_ID).drop_duplicates(KEY).set_index(KEY)["category_1"]
    viewed = f["most_viewed_category_30d"].dropna()
    assert len(viewed) > 100
    assert (viewed == preferred.reindex(viewed.index)).mean() > 0.4
