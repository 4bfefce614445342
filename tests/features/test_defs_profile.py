"""Profile features: merged records, ages, consents, anniversaries; point in time; absent tables."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import ibis
import pandas as pd
import pytest

from features.contract import Col
from features.defs.common import FeatureGroup, Tables
from features.defs.profile import GROUPS, age_band, age_in_years, days_to_anniversary
from features.ingest import ingest
from features.mapping import load_mapping
from features.store import open_tables
from synth import generate_world
from tests.features.group_helpers import run_group

T = datetime(2024, 6, 10, tzinfo=UTC)
KEY = Col.CUSTOMER_KEY
CUSTOMER_COLUMNS = [
    Col.CUSTOMER_ID,
    KEY,
    Col.CREATED_AT,
    Col.BIRTH_DATE,
    Col.GENDER,
    Col.CITY,
    Col.COUNTRY,
    Col.TIMEZONE,
]
CUSTOMERS = [
    # p: two records merged; each attribute from the newest record that has it
    ("p1", "p", "2020-01-01 09:00", "1990-06-10", "F", "London", "GB", "Europe/London"),
    ("p2", "p", "2023-05-01 09:00", None, None, "Paris", "FR", None),
    # q: two records created at the same instant: the smaller customer_id wins
    ("q2", "q", "2022-01-01 00:00", "2006-06-11", "M", "Leeds", "GB", "Europe/London"),
    ("q1", "q", "2022-01-01 00:00", None, "X", "York", "GB", "Europe/London"),
    # r: born on 29 February; s: nothing known; u: a placeholder birth date
    ("r1", "r", "2021-03-01 00:00", "1960-02-29", "F", "Boston", "US", "America/New_York"),
    ("s1", "s", None, None, None, None, None, None),
    ("u1", "u", "2024-06-09 23:59", "1800-01-01", "M", "Oslo", "NO", "Europe/Oslo"),
]
LATER_CUSTOMERS = [
    ("p3", "p", "2024-06-10 00:00", "1999-01-01", "M", "Berlin", "DE", "Europe/Berlin"),
    ("g1", "g", "2024-07-01 00:00", "1980-01-01", "F", "Rome", "IT", "Europe/Rome"),
]
# (customer_id, customer_key, channel, status, consented_at)
CONSENTS = [
    ("p1", "p", "email", "opt_in", "2021-01-01 00:00"),
    ("p2", "p", "email", "opt_out", "2023-01-01 00:00"),  # latest, on the other record: it wins
    ("p1", "p", "sms", "opt_out", "2021-01-01 00:00"),
    ("p1", "p", "sms", "opt_in", "2024-01-01 00:00"),
    ("q1", "q", "email", "opt_in", "2023-03-03 03:03"),
    ("q2", "q", "email", "opt_out", "2023-03-03 03:03"),  # the same instant: opt-out wins
    ("q1", "q", "push", "opt_in", "2023-03-03 03:03"),
]
LATER_CONSENTS = [
    ("p1", "p", "push", "opt_in", "2024-06-10 00:00"),
    ("p1", "p", "email", "opt_in", "2024-06-10 00:00"),
    ("q1", "q", "sms", "opt_in", "2024-06-11 00:00"),
    ("g1", "g", "email", "opt_in", "2024-07-01 00:00"),
]
# (customer_key, ordered_at)
ORDERS = [("p", "2022-06-11 12:00"), ("p", "2023-01-01 12:00"), ("q", "2023-06-10 23:00"), ("r", "2020-02-29 08:00")]
LATER_ORDERS = [("s", "2024-06-10 00:00"), ("s", "2024-06-11 00:00"), ("g", "2024-07-01 00:00")]


def _ts(frame: pd.DataFrame, column: str) -> None:
    frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601")


def _tables(customers: list[tuple], consents: list[tuple], orders: list[tuple], *, profile: bool = True) -> Tables:
    con = ibis.duckdb.connect()
    o = pd.DataFrame(orders, columns=[KEY, Col.ORDERED_AT])
    _ts(o, Col.ORDERED_AT)
    o[Col.ORDER_ID] = [f"o{i}" for i in range(len(o))]
    tables = {"orders": con.create_table("orders", o)}
    if profile:
        c = pd.DataFrame(customers, columns=CUSTOMER_COLUMNS).astype("string")
        _ts(c, Col.CREATED_AT)
        c[Col.BIRTH_DATE] = pd.to_datetime(c[Col.BIRTH_DATE]).dt.date
        tables["customers"] = con.create_table("customers", c)
        co = pd.DataFrame(consents, columns=[Col.CUSTOMER_ID, KEY, Col.CHANNEL, Col.STATUS, Col.CONSENTED_AT])
        _ts(co, Col.CONSENTED_AT)
        tables["consents"] = con.create_table("consents", co)
    return tables


def _run(group: FeatureGroup, tables: Tables, as_of: datetime = T) -> pd.DataFrame:
    return run_group(group, tables, as_of)


def _all(tables: Tables, as_of: datetime = T) -> pd.DataFrame:
    return pd.concat([_run(g, tables, as_of) for g in GROUPS], axis=1)


@pytest.fixture(scope="module")
def literal() -> pd.DataFrame:
    return _all(_tables(CUSTOMERS, CONSENTS, ORDERS))


def test_attributes_come_from_the_newest_record_that_has_them(literal: pd.DataFrame) -> None:
    p = literal.loc["p"]
    assert (p["gender"], p["city"], p["country"], p["timezone"]) == ("F", "Paris", "FR", "Europe/London")
    assert (p["age_years"], p["age_band"]) == (34, "25-34")  # born 10 June 1990: the birthday is today
    assert p["customer_age_days"] == pytest.approx((T - datetime(2020, 1, 1, 9, tzinfo=UTC)).total_seconds() / 86_400)
    q = literal.loc["q"]
    assert (q["city"], q["gender"]) == ("York", "X")  # same creation time: q1 before q2
    assert (q["age_years"], q["age_band"]) == (17, "under-18")  # 18 tomorrow


def test_loyalty_member_when_any_record_before_the_cutoff_has_a_card(literal: pd.DataFrame) -> None:
    assert (literal["loyalty_member"] == 0.0).all()  # no loyalty_id column in the export: nobody
    tables = _tables(CUSTOMERS, CONSENTS, ORDERS)
    con = tables["orders"]._find_backend()
    c = tables["customers"].execute()
    cards = {"p2": "L-17", "q1": None, "u1": "L-99"}  # p: on its newer record only
    c[Col.LOYALTY_ID] = pd.array([cards.get(i) for i in c[Col.CUSTOMER_ID]], dtype="string")
    tables["customers"] = con.create_table("customers_loyal", c)
    got = _all(tables)["loyalty_member"]
    assert got.to_dict() == {"p": 1.0, "q": 0.0, "r": 0.0, "s": 0.0, "u": 1.0}
    before_p2 = _all(tables, datetime(2023, 1, 1, tzinfo=UTC))["loyalty_member"]
    assert before_p2["p"] == 0.0  # p2 was created after this cutoff


def test_unknowns_and_placeholders(literal: pd.DataFrame) -> None:
    s = literal.loc["s"]
    assert pd.isna(s["age_years"]) and s["age_band"] == "unknown"
    assert pd.isna(s["timezone"]) and pd.isna(s["country"]) and pd.isna(s["customer_age_days"])
    u = literal.loc["u"]
    assert pd.isna(u["age_years"]) and u["age_band"] == "unknown"  # born in 1800: a placeholder
    assert u["customer_age_days"] == pytest.approx(1 / 1440)
    assert literal.loc["r", "age_years"] == 64 and literal.loc["r", "age_band"] == "55-64"


def test_consents_follow_the_latest_event_per_channel(literal: pd.DataFrame) -> None:
    consent = literal[["consent_email", "consent_sms", "consent_push"]]
    assert consent.loc["p"].tolist() == [0.0, 1.0, 0.0]  # no push event before the cutoff
    assert consent.loc["q"].tolist() == [0.0, 0.0, 1.0]
    assert consent.loc[["r", "s", "u"]].isna().all().all()  # no consent event: feature_table fills 0


def test_days_to_anniversary_of_the_first_order(literal: pd.DataFrame) -> None:
    days = literal["days_to_anniversary"]
    assert days["p"] == 1  # first order on 11 June 2022
    assert days["q"] == 0  # 10 June 2023: today
    assert days["r"] == 263  # 29 February 2020: next on 28 February 2025 (2025 is not a leap year)
    assert days[["s", "u"]].isna().all()  # never ordered


@pytest.mark.parametrize(
    ("birth", "on", "years"),
    [
        (date(1990, 6, 10), date(2024, 6, 10), 34),
        (date(1990, 6, 11), date(2024, 6, 10), 33),
        (date(1990, 5, 31), date(2024, 6, 1), 34),
        (date(2000, 2, 29), date(2023, 2, 28), 22),
        (date(2000, 2, 29), date(2023, 3, 1), 23),
        (date(2000, 2, 29), date(2024, 2, 29), 24),
        (date(2000, 12, 31), date(2001, 1, 1), 0),
    ],
)
def test_age_in_whole_years(birth: date, on: date, years: int) -> None:
    assert ibis.duckdb.connect().execute(age_in_years(ibis.literal(birth), ibis.literal(on))) == years


@pytest.mark.parametrize(
    ("age", "band"),
    [
        *[(0, "under-18"), (17, "under-18"), (18, "18-24"), (24, "18-24"), (25, "25-34"), (44, "35-44")],
        *[(45, "45-54"), (54, "45-54"), (55, "55-64"), (64, "55-64"), (65, "65+"), (101, "65+"), (None, "unknown")],
    ],
)
def test_age_bands(age: int | None, band: str) -> None:
    assert ibis.duckdb.connect().execute(age_band(ibis.literal(age, type="int64"))) == band


@pytest.mark.parametrize(
    ("first", "today", "days"),
    [
        (date(2020, 6, 10), date(2024, 6, 10), 0),
        (date(2020, 6, 11), date(2024, 6, 10), 1),
        (date(2020, 6, 9), date(2024, 6, 10), 364),
        (date(2023, 12, 31), date(2024, 1, 1), 365),  # 2024 is a leap year
        (date(2021, 3, 1), date(2023, 3, 2), 365),
        (date(2020, 2, 29), date(2023, 2, 28), 0),  # 28 February stands in for 29 February
        (date(2020, 2, 29), date(2023, 3, 1), 365),  # next: 29 February 2024
        (date(2020, 2, 29), date(2024, 2, 28), 1),
        (date(2020, 2, 29), date(2024, 3, 1), 364),  # next: 28 February 2025
        (date(2024, 6, 9), date(2024, 6, 10), 364),  # the first order was yesterday
    ],
)
def test_days_to_anniversary(first: date, today: date, days: int) -> None:
    expr = days_to_anniversary(ibis.literal(first), ibis.literal(today))
    assert ibis.duckdb.connect().execute(expr) == days


def test_records_consents_and_orders_at_or_after_the_cutoff_change_nothing(literal: pd.DataFrame) -> None:
    planted = _all(_tables(CUSTOMERS + LATER_CUSTOMERS, CONSENTS + LATER_CONSENTS, ORDERS + LATER_ORDERS))
    pd.testing.assert_frame_equal(planted, literal)


def test_no_customers_or_consents_gives_empty_groups() -> None:
    tables = _tables([], [], ORDERS, profile=False)
    frames = {g.name: _run(g, tables) for g in GROUPS}
    assert frames["profile_attributes"].empty and frames["profile_consents"].empty
    assert frames["profile_anniversary"].index.tolist() == ["p", "q", "r"]


def test_customers_with_a_country_only_as_online_retail_derives_them() -> None:
    con = ibis.duckdb.connect()
    c = pd.DataFrame({Col.CUSTOMER_ID: ["12345"], KEY: ["k"], Col.COUNTRY: ["United Kingdom"]})
    c[Col.CREATED_AT] = pd.to_datetime(["2010-01-05"], utc=True)
    tables = {"customers": con.create_table("customers", c)}
    row = _run(GROUPS[0], tables, datetime(2011, 1, 5, tzinfo=UTC)).loc["k"]
    assert row["country"] == "United Kingdom" and row["age_band"] == "unknown" and pd.isna(row["timezone"])
    assert row["customer_age_days"] == pytest.approx(365.0)


# --- the synthetic world -------------------------------------------------------------------------

WORLD_AS_OF = datetime(2025, 10, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Tables, Path]:
    root = tmp_path_factory.mktemp("profile-world")
    generate_world(800, 3, root / "raw")
    ingest(root / "raw", load_mapping("synthetic"), root / "home", now=datetime(2026, 1, 1, tzinfo=UTC))
    return open_tables(root / "home"), root / "raw" / "truth"


def test_synthetic_world_profiles_match_the_planted_persons(world: tuple[Tables, Path]) -> None:
    tables, truth = world
    f = _all(tables, WORLD_AS_OF)
    keys = tables["customers"].select(Col.CUSTOMER_ID, KEY).execute()
    persons = pd.read_parquet(truth / "identities.parquet").merge(pd.read_parquet(truth / "persons.parquet"))
    planted = keys.merge(persons, on=Col.CUSTOMER_ID).drop_duplicates(KEY).set_index(KEY).reindex(f.index)
    assert len(f) > 500
    for name in ("country", "city", "timezone"):
        assert (f[name] == planted[name]).mean() > 0.99, name
    ages = f["age_years"].dropna()
    assert len(ages) > 0.6 * len(f) and ages.between(16, 100).all()
    assert set(f["age_band"]) <= {"under-18", "18-24", "25-34", "35-44", "45-54", "55-64", "65+", "unknown"}
    assert f["gender"].dropna().isin(["F", "M", "X"]).all()
    for ch in ("email", "sms", "push"):
        assert 0.05 < f[f"consent_{ch}"].mean() < 0.95, ch
    days = f["days_to_anniversary"].dropna()
    assert len(days) > 300 and days.between(0, 365).all() and days.nunique() > 100
    assert (f["customer_age_days"] > 0).all()


def test_an_unsubscribe_recorded_only_on_a_message_withdraws_consent() -> None:
    con = ibis.duckdb.connect()
    consents = pd.DataFrame(
        {
            "customer_id": ["a", "a", "b"],
            "customer_key": ["ka", "ka", "kb"],
            "channel": ["email", "sms", "email"],
            "status": ["opt_in", "opt_in", "opt_in"],
            "consented_at": pd.to_datetime(["2024-01-01", "2024-01-01", "2024-01-01"], utc=True),
            "source": ["signup"] * 3,
        }
    )
    messages = pd.DataFrame(
        {
            "message_id": ["m1", "m2"],
            "customer_key": ["ka", "kb"],
            "channel": ["email", "email"],
            "unsubscribed_at": pd.to_datetime(["2024-03-01", "2024-09-01"], utc=True),
        }
    )
    tables = {"consents": con.create_table("consents", consents), "messages": con.create_table("messages", messages)}
    group = next(g for g in GROUPS if g.name == "profile_consents")
    cutoff = ibis.timestamp(datetime(2024, 6, 1, tzinfo=UTC))
    out = group.build(tables, cutoff).execute().set_index("customer_key")
    assert out.loc["ka", "consent_email"] == 0.0  # withdrawn by the message's unsubscribe
    assert out.loc["ka", "consent_sms"] == 1.0
    assert out.loc["kb", "consent_email"] == 1.0  # its unsubscribe comes after the cutoff
