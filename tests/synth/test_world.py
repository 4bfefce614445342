"""The synthetic CRM world: deterministic, in the contract's format, and true to its planted ground truth."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import phonenumbers
import pytest

from features.contract import INPUT_TABLES, TABLES, Col
from features.mapping import load_mapping
from synth import TABLE_NAMES, generate_world

N_CUSTOMERS = 1500
SEED = 11
TRUTH_FILES = (
    "identities.parquet",
    "persons.parquet",
    "complementary_pairs.parquet",
    "offer_uplift.parquet",
    "dirt.json",
    "world.json",
)
ISO_INSTANT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+00:00$")
ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# one "@", something before it, a dotted domain with an alphabetic TLD, no doubled dots
WELL_FORMED_EMAIL = r"^[a-z0-9._%+'-]+@(?:[a-z0-9-]+\.)+[a-z]{2,}$"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world")
    generate_world(N_CUSTOMERS, SEED, out)
    return out


def read(world: Path, table: str) -> pd.DataFrame:
    """A written table as text, only empty cells missing (so "NA"-like dirt stays visible)."""
    return pd.read_csv(world / f"{table}.csv", dtype=str, keep_default_na=False, na_values=[""])


def utc(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values, utc=True, format="ISO8601")


@pytest.fixture(scope="module")
def person_of(world: Path) -> pd.Series:
    """customer_id -> planted person_id."""
    identities = pd.read_parquet(world / "truth" / "identities.parquet")
    return identities.set_index(Col.CUSTOMER_ID)["person_id"]


@pytest.fixture(scope="module")
def persons(world: Path) -> pd.DataFrame:
    return pd.read_parquet(world / "truth" / "persons.parquet").set_index("person_id")


# --- determinism and format ----------------------------------------------------------------------


def _all_files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_bytes_and_another_seed_does_not(tmp_path: Path) -> None:
    first, again, other = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    generate_world(300, 5, first)
    generate_world(300, 5, again)
    generate_world(300, 6, other)
    files = _all_files(first)
    assert set(files) >= {f"{t}.csv" for t in TABLE_NAMES} | {f"truth/{f}" for f in TRUTH_FILES}
    assert files == _all_files(again)
    different = _all_files(other)
    for name in ("customers.csv", "orders.csv", "messages.csv", "web_events.csv", "truth/persons.parquet"):
        assert files[name] != different[name], name


def test_rejects_a_world_too_small_to_plant_anything(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least 10"):
        generate_world(5, 1, tmp_path)


def test_every_file_has_the_contract_header(world: Path) -> None:
    for table in TABLE_NAMES:
        header = (world / f"{table}.csv").read_text(encoding="utf-8").split("\n", 1)[0]
        assert header.split(",") == INPUT_TABLES[table].column_names, table


def test_timestamps_are_utc_instants_and_dates_are_plain(world: Path) -> None:
    for table in TABLE_NAMES:
        frame = read(world, table)
        for column in TABLES[table].columns:
            values = frame[column.name].dropna()
            if column.kind == "timestamp":
                assert values.str.fullmatch(ISO_INSTANT).all(), f"{table}.{column.name}"
            elif column.kind == "date":
                assert values.str.fullmatch(ISO_DATE).all(), f"{table}.{column.name}"


def test_the_synthetic_mapping_reads_every_written_table(world: Path) -> None:
    mapping = load_mapping("synthetic")
    assert set(mapping.tables) == set(TABLE_NAMES)
    for table, spec in mapping.tables.items():
        for pattern in spec.files:
            assert list(world.glob(pattern)), f"{table}: no file matches {pattern}"
    rule = mapping.tables["order_lines"].cancellation
    assert rule is not None and rule.column == Col.ORDER_ID
    assert set(mapping.currencies or []) >= set(read(world, "orders")[Col.CURRENCY])


# --- ground truth ----------------------------------------------------------------------------------


def test_truth_covers_every_record_and_order(world: Path, person_of: pd.Series, persons: pd.DataFrame) -> None:
    for name in TRUTH_FILES:
        assert (world / "truth" / name).is_file(), name
    customers = read(world, "customers")
    assert person_of.index.is_unique
    assert sorted(person_of.index) == sorted(customers[Col.CUSTOMER_ID])
    assert set(person_of) == set(persons.index)
    assert len(persons) == N_CUSTOMERS
    orders = read(world, "orders")
    assert orders[Col.CUSTOMER_ID].dropna().isin(person_of.index).all()
    for table in ("consents", "messages", "web_events"):
        assert read(world, table)[Col.CUSTOMER_ID].dropna().isin(person_of.index).all(), table

    meta = json.loads((world / "truth" / "world.json").read_text())
    assert (meta["seed"], meta["n_customers"]) == (SEED, N_CUSTOMERS)
    for table in TABLE_NAMES:
        assert meta["counts"][table] == len(read(world, table)), table
    uplift = pd.read_parquet(world / "truth" / "offer_uplift.parquet")
    assert len(uplift) == N_CUSTOMERS * len(read(world, "offers"))


def _e164(phone: str, region: str) -> str | None:
    try:
        number = phonenumbers.parse(phone, region)
    except phonenumbers.NumberParseException:
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def test_duplicates_share_an_identifier_except_the_unlinkable_few(world: Path, person_of: pd.Series) -> None:
    customers = read(world, "customers").set_index(Col.CUSTOMER_ID)
    truth = pd.read_parquet(world / "truth" / "identities.parquet").set_index(Col.CUSTOMER_ID)
    ids = pd.DataFrame(
        {
            "email": customers[Col.EMAIL].str.strip().str.lower(),
            "phone": [
                None if pd.isna(p) else _e164(p, c)
                for p, c in zip(customers[Col.PHONE], customers[Col.COUNTRY], strict=True)
            ],
            "loyalty": customers[Col.LOYALTY_ID],
            "web": customers[Col.WEB_CLIENT_ID],
        },
        index=customers.index,
    )
    primary = truth[truth["is_primary"]].reset_index().set_index("person_id")[Col.CUSTOMER_ID]
    extra = truth[~truth["is_primary"]]
    shares = pd.Series(
        [
            any(pd.notna(a) and a == b for a, b in zip(ids.loc[rec], ids.loc[primary[person]], strict=True))
            for rec, person in zip(extra.index, extra["person_id"], strict=True)
        ],
        index=extra.index,
    )
    unlinkable = extra["link_type"] == "unlinkable"
    assert shares[~unlinkable].all()
    assert not shares[unlinkable].any()
    n_records = person_of.value_counts()
    assert 0.05 <= (n_records > 1).mean() <= 0.11
    assert n_records.max() <= 3
    assert 0.0 < unlinkable.mean() < 0.06


def test_spouses_share_a_phone_but_not_a_person_or_a_card(world: Path, persons: pd.DataFrame) -> None:
    customers = read(world, "customers")
    truth = pd.read_parquet(world / "truth" / "identities.parquet")
    rec = customers.merge(truth, on=Col.CUSTOMER_ID)
    rec["e164"] = [None if pd.isna(p) else _e164(p, c) for p, c in zip(rec[Col.PHONE], rec[Col.COUNTRY], strict=True)]
    spouses = persons[persons["spouse_person_id"].notna()]
    assert len(spouses) >= 2
    by_person = rec.groupby("person_id")
    for person, partner in spouses["spouse_person_id"].items():
        mine, theirs = by_person.get_group(person), by_person.get_group(partner)
        assert set(mine["e164"].dropna()) & set(theirs["e164"].dropna()), person
        assert not set(mine[Col.LOYALTY_ID].dropna()) & set(theirs[Col.LOYALTY_ID].dropna()), person
    # a loyalty card never belongs to two persons
    assert (rec.dropna(subset=[Col.LOYALTY_ID]).groupby(Col.LOYALTY_ID)["person_id"].nunique() == 1).all()


def test_no_record_acts_before_it_exists(world: Path) -> None:
    created = utc(read(world, "customers").set_index(Col.CUSTOMER_ID)[Col.CREATED_AT])
    for table, column in (
        ("orders", Col.ORDERED_AT),
        ("messages", Col.SENT_AT),
        ("consents", Col.CONSENTED_AT),
        ("web_events", Col.OCCURRED_AT),
    ):
        frame = read(world, table).dropna(subset=[Col.CUSTOMER_ID])
        assert (utc(frame[column]).to_numpy() >= created[frame[Col.CUSTOMER_ID]].to_numpy()).all(), table


def test_leads_never_order(world: Path, person_of: pd.Series, persons: pd.DataFrame) -> None:
    orders = read(world, "orders")
    buyers = set(orders[Col.CUSTOMER_ID].dropna().map(person_of))
    leads = set(persons.index[persons["planted_type"] == "lead"])
    assert len(leads) > 0.15 * N_CUSTOMERS
    assert not leads & buyers
    assert not set(persons.index[persons["lifecycle"] == "lead"]) & buyers
    assert set(persons["lifecycle"]) == {"lead", "one_and_done", "loyal", "lapsing", "churned"}


def test_planted_complementary_pairs_cooccur_far_above_chance(world: Path) -> None:
    lines = read(world, "order_lines")
    lines = lines[~lines[Col.ORDER_ID].str.startswith("C")].drop_duplicates([Col.ORDER_ID, Col.ITEM_ID])
    n_orders = lines[Col.ORDER_ID].nunique()
    baskets = lines.groupby(Col.ITEM_ID)[Col.ORDER_ID].agg(set)
    pairs = pd.read_parquet(world / "truth" / "complementary_pairs.parquet")
    assert 40 <= len(pairs) <= 60
    lifts = []
    for a, b in zip(pairs["item_a"], pairs["item_b"], strict=True):
        with_a, with_b = baskets.get(a, set()), baskets.get(b, set())
        if len(with_a) >= 10:
            lifts.append(len(with_a & with_b) * n_orders / (len(with_a) * len(with_b)))
    assert len(lifts) >= 20
    assert np.mean(np.array(lifts) > 5.0) >= 0.9


# --- messages, consent and timing --------------------------------------------------------------------


def test_no_message_goes_to_a_channel_opted_out_at_send_time(world: Path) -> None:
    messages = read(world, "messages")
    consents = read(world, "consents")
    messages["at"] = utc(messages[Col.SENT_AT])
    consents["at"] = utc(consents[Col.CONSENTED_AT])
    state = pd.merge_asof(
        messages.sort_values("at"),
        consents.sort_values("at")[[Col.CUSTOMER_ID, Col.CHANNEL, Col.STATUS, "at"]],
        on="at",
        by=[Col.CUSTOMER_ID, Col.CHANNEL],
        direction="backward",
    )
    assert state[Col.STATUS].notna().all(), "a message to a record without any consent on that channel"
    assert (state[Col.STATUS] == "opt_in").all()
    # every unsubscribe is an opt-out in consents at the same instant
    unsub = messages.dropna(subset=[Col.UNSUBSCRIBED_AT])
    assert len(unsub) > 0
    opt_out = consents[consents[Col.STATUS] == "opt_out"]
    keys = set(zip(opt_out[Col.CUSTOMER_ID], opt_out[Col.CHANNEL], opt_out[Col.CONSENTED_AT], strict=True))
    assert all(
        k in keys for k in zip(unsub[Col.CUSTOMER_ID], unsub[Col.CHANNEL], unsub[Col.UNSUBSCRIBED_AT], strict=True)
    )


def test_engagement_follows_the_send(world: Path) -> None:
    m = read(world, "messages")
    sent, delivered, opened = utc(m[Col.SENT_AT]), utc(m[Col.DELIVERED_AT]), utc(m[Col.OPENED_AT])
    clicked, converted = utc(m[Col.CLICKED_AT]), utc(m[Col.CONVERTED_AT])
    assert not (delivered < sent).any()
    assert not (opened < delivered).any()
    assert opened[delivered.isna()].isna().all()
    assert not (clicked < opened).any()
    assert opened[clicked.notna()].notna().all()
    assert not (converted < opened).any()
    assert 0.1 < opened.notna().mean() < 0.5


def test_opens_cluster_at_each_persons_preferred_local_hour(
    world: Path, person_of: pd.Series, persons: pd.DataFrame
) -> None:
    m = read(world, "messages")
    m = m[(m[Col.CHANNEL] == "email") & m[Col.OPENED_AT].notna()].copy()
    zone = read(world, "customers").set_index(Col.CUSTOMER_ID)[Col.TIMEZONE]
    m["person"] = m[Col.CUSTOMER_ID].map(person_of)
    m["zone"] = m[Col.CUSTOMER_ID].map(zone)
    opened = utc(m[Col.OPENED_AT])
    m["hour"] = pd.concat([opened[g.index].dt.tz_convert(z).dt.hour for z, g in m.groupby("zone")])
    heavy = m.groupby("person").filter(lambda g: len(g) >= 8)
    modal = heavy.groupby("person")["hour"].agg(lambda h: h.value_counts().idxmax())
    assert len(modal) >= 30
    assert (modal == persons.loc[modal.index, "pref_hour_email"]).mean() >= 0.7
    # and sends go out at many hours, so the preference is learnable
    assert utc(read(world, "messages")[Col.SENT_AT]).dt.hour.nunique() >= 12


def test_offers_are_randomised_and_lift_purchases_by_the_planted_uplift(world: Path, person_of: pd.Series) -> None:
    meta = json.loads((world / "truth" / "world.json").read_text())["parameters"]["offer_assignment"]
    m = read(world, "messages")
    share = m[Col.OFFER_ID].notna().mean()
    assert abs(share - meta["share_with_offer"]) < 0.02
    per_offer = m[Col.OFFER_ID].value_counts(normalize=True)
    assert per_offer.max() - per_offer.min() < 0.03

    orders = read(world, "orders")
    orders = orders[~orders[Col.ORDER_ID].str.startswith("C") & orders[Col.CUSTOMER_ID].notna()]
    bought = pd.DataFrame({"person": orders[Col.CUSTOMER_ID].map(person_of), "t": utc(orders[Col.ORDERED_AT])})
    bought = bought.sort_values("t")
    m = m[m[Col.DELIVERED_AT].notna()].assign(
        person=lambda f: f[Col.CUSTOMER_ID].map(person_of), t=lambda f: utc(f[Col.SENT_AT])
    )
    m = m[m["t"] < m["t"].max() - pd.Timedelta(days=30)].sort_values("t")
    nxt = pd.merge_asof(
        m,
        bought.rename(columns={"t": "next"}),
        left_on="t",
        right_on="next",
        by="person",
        direction="forward",
        allow_exact_matches=False,
    )
    m = m.assign(y=(nxt["next"] - nxt["t"] <= pd.Timedelta(days=30)).to_numpy())
    truth = pd.read_parquet(world / "truth" / "offer_uplift.parquet")
    planted = truth[truth[Col.OFFER_ID] == "OF01"].set_index("person_id")["uplift_30d"]
    m["high"] = m["person"].map(planted) > planted[planted > 0].median()
    rate = m.assign(treated=m[Col.OFFER_ID] == "OF01")
    rate = rate[rate["treated"] | rate[Col.OFFER_ID].isna()].groupby(["high", "treated"])["y"].mean()
    # a conversion is a real order of the recipient
    converted = m.dropna(subset=[Col.CONVERTED_AT])
    placed = set(zip(bought["person"], bought["t"], strict=True))
    assert all(k in placed for k in zip(converted["person"], utc(converted[Col.CONVERTED_AT]), strict=True))
    lift_high = rate[(True, True)] - rate[(True, False)]
    lift_low = rate[(False, True)] - rate[(False, False)]
    assert lift_high > 0.04
    assert lift_high > lift_low + 0.03


# --- orders and web --------------------------------------------------------------------------------


def test_cancellations_are_separate_negative_documents(world: Path) -> None:
    orders = read(world, "orders")
    lines = read(world, "order_lines")
    cancel = orders[Col.ORDER_ID].str.startswith("C")
    assert 0.015 <= cancel.mean() <= 0.05
    assert (orders.loc[cancel, Col.STATUS] == "cancelled").all()
    assert (orders.loc[~cancel, Col.STATUS] == "completed").all()
    qty = lines[Col.QUANTITY].astype(int)
    on_cancel = lines[Col.ORDER_ID].str.startswith("C")
    assert (qty[on_cancel] < 0).all() and (qty[~on_cancel] > 0).all()
    assert set(lines[Col.ORDER_ID]) == set(orders[Col.ORDER_ID])
    assert 0.01 <= orders[Col.CUSTOMER_ID].isna().mean() <= 0.06, "guest checkouts"
    assert (orders[Col.CURRENCY] == "GBP").mean() > 0.6


def test_sessions_precede_most_online_orders_and_carts_are_often_abandoned(world: Path) -> None:
    orders = read(world, "orders")
    events = read(world, "web_events")
    online = orders[(orders[Col.CHANNEL] == "online") & ~orders[Col.ORDER_ID].str.startswith("C")]
    online = online.assign(t=utc(online[Col.ORDERED_AT])).dropna(subset=[Col.CUSTOMER_ID, "t"]).sort_values("t")
    events["t"] = utc(events[Col.OCCURRED_AT])
    checkout = events[events[Col.EVENT_TYPE] == "checkout"].dropna(subset=[Col.CUSTOMER_ID, "t"]).sort_values("t")
    near = pd.merge_asof(
        online,
        checkout[[Col.CUSTOMER_ID, "t"]].rename(columns={"t": "checkout"}),
        left_on="t",
        right_on="checkout",
        by=Col.CUSTOMER_ID,
        direction="backward",
    )
    assert ((near["t"] - near["checkout"]) <= pd.Timedelta(minutes=10)).mean() >= 0.75
    by_session = events.groupby(Col.SESSION_ID)
    carted = by_session[Col.EVENT_TYPE].agg(lambda e: "add_to_cart" in set(e))
    converted_sessions = set(checkout[Col.SESSION_ID]) & set(events[Col.SESSION_ID])
    abandoned = carted & ~carted.index.isin(converted_sessions)
    assert abandoned.sum() / carted.sum() > 0.3
    assert events[Col.CUSTOMER_ID].isna().mean() > 0.2, "anonymous browsing"
    assert events[Col.ANONYMOUS_ID].notna().all()


# --- dirt ------------------------------------------------------------------------------------------


def test_dirt_counts_equal_what_the_files_hold(world: Path) -> None:
    dirt = json.loads((world / "truth" / "dirt.json").read_text())
    lines = read(world, "order_lines")
    assert lines.duplicated().sum() == dirt["duplicate_order_lines"] > 0
    sale = ~lines[Col.ORDER_ID].str.startswith("C")
    assert ((lines[Col.UNIT_PRICE].astype(float) <= 0) & sale).sum() == dirt["nonpositive_unit_price_lines"] > 0
    unknown = ~lines[Col.ITEM_ID].isin(read(world, "items")[Col.ITEM_ID])
    assert unknown.sum() == dirt["unknown_item_lines"] > 0

    customers = read(world, "customers")
    email = customers[Col.EMAIL].dropna().str.strip().str.lower()
    assert (~email.str.fullmatch(WELL_FORMED_EMAIL) | email.str.contains(r"\.\.")).sum() == dirt["malformed_emails"]
    digits = customers[Col.PHONE].dropna().str.replace(r"\D", "", regex=True).str.len()
    assert (digits < 7).sum() == dirt["malformed_phones"] > 0

    future = {}
    for table in TABLE_NAMES:
        frame = read(world, table)
        for column in TABLES[table].columns:
            if column.kind == "timestamp":
                years = frame[column.name].dropna().str.slice(0, 4).astype(int)
                assert (years <= 2026).sum() + (years >= 2099).sum() == len(years), f"{table}.{column.name}"
                if (years >= 2099).any():
                    future[f"{table}.{column.name}"] = int((years >= 2099).sum())
    assert future == dirt["future_timestamps"]
