"""Engagement features: message response per channel and the local hour-of-week histogram."""

from __future__ import annotations

import random
import zoneinfo
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import ibis
import numpy as np
import pandas as pd
import pytest

from features.contract import Channel, Col
from features.defs import engagement
from features.defs.engagement import (
    AT,
    BUCKET,
    CHANNELS,
    END,
    ENGAGEMENT,
    FALLBACK_ZONE,
    GROUPS,
    HOUR_OF_WEEK,
    HOW,
    START,
    ZONE,
    customer_zones,
    hour_of_week,
    how_name,
    offsets_table,
)
from features.ingest import ingest
from features.mapping import load_mapping
from features.store import open_tables
from synth import generate_world

T = datetime(2024, 6, 1, tzinfo=UTC)
CUTOFF = ibis.timestamp(T)
MSG_COLS = [
    Col.MESSAGE_ID,
    Col.CUSTOMER_KEY,
    Col.CHANNEL,
    Col.SENT_AT,
    Col.OPENED_AT,
    Col.CLICKED_AT,
    Col.UNSUBSCRIBED_AT,
]
TS_COLS = (
    Col.SENT_AT,
    Col.OPENED_AT,
    Col.CLICKED_AT,
    Col.UNSUBSCRIBED_AT,
    Col.OCCURRED_AT,
    Col.ORDERED_AT,
    Col.CREATED_AT,
)
HOW_NAMES = [how_name(b) for b in range(168)]
ENGAGEMENT_GROUP, HOW_GROUP = GROUPS


def _frame(rows: list[tuple[Any, ...]], columns: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=columns)
    for col in TS_COLS:
        if col in frame:
            frame[col] = pd.to_datetime(frame[col], utc=True, format="ISO8601")
    return frame


def _tables(**frames: pd.DataFrame) -> dict[str, ibis.Table]:
    con = ibis.duckdb.connect()
    return {name: con.create_table(name, frame) for name, frame in frames.items()}


def _run(group: Any, tables: dict[str, ibis.Table], cutoff: datetime = T) -> pd.DataFrame:
    out = group.build(tables, ibis.timestamp(cutoff)).execute()
    return out.sort_values(Col.CUSTOMER_KEY).set_index(Col.CUSTOMER_KEY)


def test_every_feature_is_built_with_its_catalogue_name() -> None:
    names = {f.name for f in ENGAGEMENT}
    for ch in CHANNELS:
        for stem in ("sends_{}_90d", "opens_{}_90d", "clicks_{}_90d", "open_rate_{}", "click_rate_{}"):
            assert stem.format(ch) in names
        assert f"days_since_open_{ch}" in names and f"unsubscribes_{ch}_365d" in names
    assert [f.name for f in HOUR_OF_WEEK] == [f"how_{b:03d}" for b in range(168)]
    assert len(names) == 21 and all(f.description for f in (*ENGAGEMENT, *HOUR_OF_WEEK))
    assert HOUR_OF_WEEK[0].description.endswith("Mondays 00:00-00:59 local time")
    assert HOUR_OF_WEEK[167].description.endswith("Sundays 23:00-23:59 local time")


# --- messages ------------------------------------------------------------------------------------------

MESSAGES = [
    ("m1", "a", "email", "2024-05-20", "2024-05-20 10:00", "2024-05-20 10:05", None),
    ("m2", "a", "email", "2024-01-10", None, None, None),
    ("m3", "b", "email", "2024-05-25", None, None, None),
    ("m4", "b", "email", "2023-09-01", "2023-09-02", None, "2023-09-02 01:00"),
    ("m5", "b", "email", "2024-04-01", None, None, None),
    ("m6", "a", "sms", "2022-01-01", "2022-01-01 05:00", None, None),
    ("m7", "b", "push", "2024-05-31 23:00", "2024-06-01 00:00", None, None),  # opened at the cutoff
    ("m8", "a", "email", "2023-05-01", "2023-05-02", None, None),  # sent more than 365 days ago
]


def _days(when: str) -> float:
    return (T - pd.Timestamp(when, tz="UTC")).total_seconds() / 86_400


def test_message_features_have_the_right_values() -> None:
    f = _run(ENGAGEMENT_GROUP, _tables(messages=_frame(MESSAGES, MSG_COLS)))
    assert list(f.columns) == [x.name for x in ENGAGEMENT]
    a, b = f.loc["a"], f.loc["b"]
    assert (a["sends_email_90d"], a["opens_email_90d"], a["clicks_email_90d"]) == (1, 1, 1)
    assert (b["sends_email_90d"], b["opens_email_90d"], b["clicks_email_90d"]) == (2, 0, 0)
    # e-mails sent in 365 days: m1 (opened, clicked), m2, m3, m4 (opened), m5 -> p_open 2/5, p_click 1/5
    assert a["open_rate_email"] == pytest.approx((1 + 5 * 0.4) / (2 + 5))
    assert a["click_rate_email"] == pytest.approx((1 + 5 * 0.2) / (2 + 5))
    assert b["open_rate_email"] == pytest.approx((1 + 5 * 0.4) / (3 + 5))
    assert b["click_rate_email"] == pytest.approx((0 + 5 * 0.2) / (3 + 5))
    assert a["days_since_open_email"] == pytest.approx(_days("2024-05-20 10:00"))
    assert b["days_since_open_email"] == pytest.approx(_days("2023-09-02"))
    assert (a["unsubscribes_email_365d"], b["unsubscribes_email_365d"]) == (0, 1)
    # SMS: a's only message is older than 365 days: no rate, but the open still dates the last open
    assert np.isnan(a["open_rate_sms"]) and np.isnan(a["click_rate_sms"]) and a["sends_sms_90d"] == 0
    assert a["days_since_open_sms"] == pytest.approx(_days("2022-01-01 05:00"))
    assert np.isnan(b["days_since_open_sms"])
    # push: sent before the cutoff, opened exactly at it: a send, no open; the population rate is 0
    assert (b["sends_push_90d"], b["opens_push_90d"]) == (1, 0)
    assert b["open_rate_push"] == pytest.approx(0.0) and np.isnan(b["days_since_open_push"])
    assert np.isnan(a["open_rate_push"])


def test_population_rate_is_per_channel_and_per_window() -> None:
    # c's e-mails change e-mail's population rate (and so a's smoothed rate), not push's
    more = [
        ("c1", "c", "email", "2024-03-01", "2024-03-01 08:00", None, None),
        ("c2", "c", "email", "2024-03-02", "2024-03-02 08:00", None, None),
        ("c3", "c", "email", "2022-03-02", "2022-03-02 08:00", None, None),  # outside 365 days
    ]
    f = _run(ENGAGEMENT_GROUP, _tables(messages=_frame(MESSAGES + more, MSG_COLS)))
    p_open = 4 / 7
    assert f.loc["a", "open_rate_email"] == pytest.approx((1 + 5 * p_open) / 7)
    assert f.loc["c", "open_rate_email"] == pytest.approx((2 + 5 * p_open) / 7)
    assert f.loc["b", "open_rate_push"] == pytest.approx(0.0)


# --- local hour of week --------------------------------------------------------------------------------

CUSTOMERS = [
    ("r_ny", "ny", "America/New_York", "2020-01-01"),
    ("r_ldn", "ldn", "Europe/London", "2020-01-01"),
    ("r_none", "none", None, "2020-01-01"),
    ("r_mars", "mars", "Mars/Olympus_Mons", "2020-01-01"),
    ("r_kol", "kol", "Asia/Kolkata", None),
    ("r_idle", "idle", "Europe/Paris", "2020-01-01"),
]
CUSTOMER_COLS = [Col.CUSTOMER_ID, Col.CUSTOMER_KEY, Col.TIMEZONE, Col.CREATED_AT]
ORDER_COLS = [Col.ORDER_ID, Col.CUSTOMER_KEY, Col.ORDERED_AT, Col.AMOUNT]
WEB_COLS = [Col.EVENT_ID, Col.CUSTOMER_KEY, Col.SESSION_ID, Col.EVENT_TYPE, Col.OCCURRED_AT]

ORDERS = [
    # New York springs forward at 2024-03-10 07:00 UTC: 01:59:59 EST, then 03:00 EDT (a Sunday)
    ("o1", "ny", "2024-03-10 06:59:59", 1.0),
    ("o2", "ny", "2024-03-10 07:00:00", 1.0),
    ("o3", "ldn", "2024-04-29 00:30", 1.0),  # Monday 01:30 BST
    ("o4", "ldn", "2024-01-08 00:30", 1.0),  # Monday 00:30 GMT
    ("o5", "none", "2024-05-26 23:30", 1.0),  # Sunday 23:30, UTC
    ("o6", "mars", "2024-05-26 23:30", 1.0),  # an unknown zone: UTC
    ("o7", "kol", "2024-05-27 18:45", 1.0),  # Tuesday 00:15 IST (+05:30)
    ("o8", "ldn", "2023-05-01 12:00", 1.0),  # more than 365 days before the cutoff
]
WEB = [
    # one session of ldn: counted once, at its first event, Wednesday 2024-05-29 09:10 BST
    ("w1", "ldn", "s1", "view", "2024-05-29 08:10"),
    ("w2", "ldn", "s1", "add_to_cart", "2024-05-29 09:20"),
    ("w3", None, "s2", "view", "2024-05-29 08:10"),  # anonymous
]
HOW_MESSAGES = [
    ("h1", "ldn", "email", "2024-05-20 06:00", "2024-05-20 07:15", "2024-05-20 07:30", None),  # Mon 08:15, 08:30
]
EXPECTED_BINS = {
    "ny": {6 * 24 + 1: 1, 6 * 24 + 3: 1},
    "ldn": {1: 1, 0: 1, 2 * 24 + 9: 1, 8: 2},
    "none": {167: 1},
    "mars": {167: 1},
    "kol": {24: 1},
}


Rows = list[tuple[Any, ...]]


def _how_tables(
    orders: Rows = ORDERS, web: Rows = WEB, messages: Rows = HOW_MESSAGES, customers: Rows = CUSTOMERS
) -> dict[str, ibis.Table]:
    return _tables(
        customers=_frame(customers, CUSTOMER_COLS),
        orders=_frame(orders, ORDER_COLS),
        web_events=_frame(web, WEB_COLS),
        messages=_frame(messages, MSG_COLS),
    )


def test_hour_of_week_bins_follow_local_time_and_dst() -> None:
    f = _run(HOW_GROUP, _how_tables())
    assert list(f.columns) == HOW_NAMES
    assert sorted(f.index) == sorted(EXPECTED_BINS), "customers without activity are absent (filled later)"
    for key, bins in EXPECTED_BINS.items():
        got = {b: f.loc[key, how_name(b)] for b in range(168) if f.loc[key, how_name(b)] != 0}
        assert got == bins, key
    assert f.dtypes.eq("float64").all()


def test_customers_without_activity_get_zero_in_every_bin() -> None:
    tables = _how_tables()
    built = HOW_GROUP.build(tables, CUTOFF)
    people = tables["customers"].select(Col.CUSTOMER_KEY)
    joined = people.left_join(built, Col.CUSTOMER_KEY).drop(f"{Col.CUSTOMER_KEY}_right")
    filled = joined.mutate(**{f.name: joined[f.name].fill_null(f.fill) for f in HOUR_OF_WEEK})
    idle = filled.execute().set_index(Col.CUSTOMER_KEY).loc["idle", HOW_NAMES]
    assert (idle == 0.0).all() and all(f.fill == 0.0 for f in HOUR_OF_WEEK)


def test_a_record_created_after_the_cutoff_does_not_move_the_zone() -> None:
    later = [*CUSTOMERS, ("r_kol2", "kol", "Pacific/Tongatapu", "2024-07-01")]  # would win the max
    f = _run(HOW_GROUP, _how_tables(customers=later))
    assert f.loc["kol", how_name(24)] == 1


def test_local_hours_match_zoneinfo_on_random_instants_and_at_every_change() -> None:
    zones = [
        "America/New_York",
        "America/St_Johns",
        "America/Santiago",
        "Europe/London",
        "Europe/Moscow",
        "Africa/Casablanca",
        "Asia/Kathmandu",
        "Asia/Tehran",
        "Australia/Lord_Howe",
        "Pacific/Chatham",
        "Pacific/Auckland",
        "UTC",
    ]
    offsets = offsets_table(CUTOFF)
    rows = offsets.to_pyarrow().to_pandas()
    changes = rows[(rows[ZONE].isin(zones)) & (rows[START] % (7 * 86_400) != 0)]
    assert len(changes) >= 14, "the DST zones change in the window"
    rng = random.Random(7)
    lo = int((T - timedelta(days=365)).timestamp())
    events = [(z, t) for z, start in zip(changes[ZONE], changes[START], strict=True) for t in (start - 1, start)]
    events += [(rng.choice(zones), rng.randrange(lo, int(T.timestamp()))) for _ in range(3000)]
    frame = pd.DataFrame(
        {
            Col.CUSTOMER_KEY: [f"k{i}" for i in range(len(events))],
            AT: pd.to_datetime([t for _, t in events], unit="s", utc=True),
        }
    )
    customers = _frame(
        [(k, k, z, None) for k, (z, _) in zip(frame[Col.CUSTOMER_KEY], events, strict=True)], CUSTOMER_COLS
    )
    tables = _tables(customers=customers, events=frame)
    binned = hour_of_week(tables["events"], customer_zones(tables, CUTOFF, offsets), offsets)
    got = binned.execute().set_index(Col.CUSTOMER_KEY)[HOW].astype(int)
    expected = []
    for zone, t in events:
        local = datetime.fromtimestamp(t, zoneinfo.ZoneInfo(zone))
        expected.append(local.weekday() * 24 + local.hour)
    assert got.loc[frame[Col.CUSTOMER_KEY]].tolist() == expected


def test_offsets_table_covers_every_zone_and_week_once() -> None:
    rows = offsets_table(CUTOFF).to_pyarrow().to_pandas()
    assert set(rows[ZONE]) == set(zoneinfo.available_timezones()) | {FALLBACK_ZONE}
    spans = (rows[END] - rows[START]).groupby([rows[ZONE], rows[BUCKET]]).sum()
    assert (spans == 7 * 86_400).all(), "each week is tiled by its intervals"
    first = int((T - timedelta(days=366)).timestamp()) // (7 * 86_400)
    assert rows[BUCKET].min() <= first and rows[BUCKET].max() >= int(T.timestamp()) // (7 * 86_400)


# --- point in time, missing tables ---------------------------------------------------------------------


def test_events_at_or_after_the_cutoff_change_nothing() -> None:
    later_messages = [
        ("m9", "a", "email", "2024-06-01 00:00", "2024-06-01 01:00", "2024-06-01 01:01", "2024-06-02"),
        ("m10", "c", "sms", "2024-06-03", "2024-06-03", None, None),
    ]
    changed = [
        (*m[:4], "2024-06-02", "2024-06-02 00:10", "2024-06-05") if m[0] in ("m3", "m5") else m for m in MESSAGES
    ]
    later_orders = [("o9", "ldn", "2024-06-01 00:00", 1.0), ("o10", "ny", "2024-07-01", 1.0)]
    later_web = [("w4", "ldn", "s1", "view", "2024-06-01 00:00"), ("w5", "kol", "s9", "view", "2024-06-02")]
    base = _how_tables(messages=MESSAGES + HOW_MESSAGES)
    planted = _how_tables(ORDERS + later_orders, WEB + later_web, changed + later_messages + HOW_MESSAGES)
    for group in GROUPS:
        pd.testing.assert_frame_equal(_run(group, base), _run(group, planted), check_exact=False, rtol=1e-12)


def test_groups_work_without_messages_web_events_or_customers() -> None:
    orders_only = _tables(orders=_frame(ORDERS, ORDER_COLS))
    eng = _run(ENGAGEMENT_GROUP, orders_only)
    assert eng.empty and list(eng.columns) == [f.name for f in ENGAGEMENT]
    how = _run(HOW_GROUP, orders_only)
    assert how.loc["ny", how_name(6 * 24 + 6)] == 1 and how.loc["ny", how_name(6 * 24 + 7)] == 1  # UTC
    assert how.loc["kol", how_name(18)] == 1
    nothing = _run(HOW_GROUP, _tables(customers=_frame(CUSTOMERS, CUSTOMER_COLS)))
    assert nothing.empty and list(nothing.columns) == HOW_NAMES


def test_offsets_are_built_once_per_window() -> None:
    offsets_table(CUTOFF)
    before = engagement._offset_rows.cache_info()
    offsets_table(ibis.timestamp(T))
    after = engagement._offset_rows.cache_info()
    assert (after.hits, after.misses) == (before.hits + 1, before.misses)


# --- the synthetic world -------------------------------------------------------------------------------

AS_OF = datetime(2025, 12, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("engagement-world")
    generate_world(800, 3, root / "raw")
    ingest(root / "raw", load_mapping("synthetic"), root / "home", now=datetime(2026, 1, 1, tzinfo=UTC))
    return root


def _planted(world: Path, tables: dict[str, ibis.Table]) -> pd.DataFrame:
    """The planted person of each customer_key (its first record's person)."""
    persons = pd.read_parquet(world / "raw" / "truth" / "persons.parquet").set_index("person_id")
    identities = pd.read_parquet(world / "raw" / "truth" / "identities.parquet")
    keys = tables["customers"].select(Col.CUSTOMER_ID, Col.CUSTOMER_KEY).execute()
    person = keys.merge(identities, on=Col.CUSTOMER_ID).drop_duplicates(Col.CUSTOMER_KEY)
    return persons.loc[person["person_id"]].set_index(person[Col.CUSTOMER_KEY].to_numpy())


def _circular(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.minimum((a - b) % 24, (b - a) % 24)


def test_planted_preferred_hours_show_up(world: Path) -> None:
    tables = open_tables(world / "home")
    truth = _planted(world, tables)
    m = tables["messages"]
    cutoff = ibis.timestamp(AS_OF)
    email_opens = m.filter(
        m[Col.CHANNEL] == Channel.EMAIL.value,
        m[Col.OPENED_AT] < cutoff,
        m[Col.OPENED_AT] >= ibis.timestamp(AS_OF - timedelta(days=365)),
    )
    n_opens = email_opens.group_by(Col.CUSTOMER_KEY).aggregate(n=email_opens.count()).execute()
    keen = n_opens.loc[n_opens["n"] >= 8, Col.CUSTOMER_KEY]
    assert len(keen) >= 50

    how = _run(HOW_GROUP, tables, AS_OF).loc[keen]
    by_hour = how[HOW_NAMES].to_numpy().reshape(-1, 7, 24).sum(axis=1)
    peak = by_hour.argmax(axis=1)
    planted = truth.loc[keen, "pref_hour_email"].to_numpy()
    exact, near = np.mean(peak == planted), np.mean(_circular(peak, planted) <= 1)
    assert exact >= 0.7 and near >= 0.9, (exact, near)

    # in UTC the same peaks miss far more often: local time is what makes them line up
    utc = hour_of_week(
        email_opens.select(Col.CUSTOMER_KEY, **{AT: email_opens[Col.OPENED_AT]}), None, offsets_table(cutoff)
    )
    utc_hours = utc.execute().assign(hour=lambda d: d[HOW] % 24)
    utc_peak = utc_hours.groupby(Col.CUSTOMER_KEY)["hour"].agg(lambda s: s.value_counts().idxmax()).loc[keen]
    assert np.mean(utc_peak.to_numpy() == planted) < exact - 0.2


def test_histogram_counts_every_activity_once_and_rates_are_plausible(world: Path) -> None:
    tables = open_tables(world / "home")
    cutoff = ibis.timestamp(AS_OF)
    how = _run(HOW_GROUP, tables, AS_OF)
    events = engagement.activity_events(tables, cutoff)
    assert events is not None
    per_key = events.group_by(Col.CUSTOMER_KEY).aggregate(n=events.count()).execute().set_index(Col.CUSTOMER_KEY)
    assert how[HOW_NAMES].sum(axis=1).sort_index().tolist() == per_key["n"].sort_index().astype(float).tolist()

    eng = _run(ENGAGEMENT_GROUP, tables, AS_OF)
    assert len(eng) > 400
    for ch in CHANNELS:
        for rate in (f"open_rate_{ch}", f"click_rate_{ch}"):
            values = eng[rate].dropna()
            assert len(values) > 50 and values.between(0, 1).all(), rate
        assert (eng[f"opens_{ch}_90d"] <= eng[f"sends_{ch}_90d"] + 5).all()
        assert (eng[f"days_since_open_{ch}"].dropna() > 0).all()
    # engaged readers (by e-mail) open more than the population
    assert eng["open_rate_email"].corr(eng["opens_email_90d"]) > 0.3
