"""Campaign plans and incrementality on the small synthetic world (tests/conftest.py ``synth_home``).

A plan for the whole base routes nothing to a disallowed or unconsented channel, sends nothing to the
control group, and its totals equal the sums of its items; the incrementality report's interval covers
the mean planted uplift of each offer's treated messages, over the whole base and in two planted segments
(customers who bought once, leads: planted uplift zero)."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from batch.campaign import plan_from_home, write_plan
from features.contract import Col
from models.decisioning.incrementality import NO_EFFECT, measure, message_assignment, render_html
from models.decisioning.offers import EXAMPLE_CATALOGUE, load_catalogue
from models.decisioning.plan import CampaignSpec, check_plan, totals
from synth.truth import load_truth, truth_people
from tests.conftest import SynthHome

SPEC = CampaignSpec(
    name="winter",
    channels=("email", "sms"),
    starts_at=datetime(2026, 1, 10, 9, tzinfo=UTC),
    ends_at=datetime(2026, 1, 17, 9, tzinfo=UTC),
    budget=500.0,
)


def test_a_plan_for_the_whole_base_keeps_channels_consent_control_and_totals(synth_home: SynthHome, tmp_path) -> None:
    shares: list[float] = []
    plan, audience = plan_from_home(synth_home.home, load_catalogue(EXAMPLE_CATALOGUE), SPEC, progress=shares.append)
    items = plan.items
    assert len(items) == len(audience.frame) and shares[-1] == 1.0
    assert check_plan(plan) == []
    sent = items[items["send"]]
    assert len(sent) > 0 and set(sent["channel"]) <= {"email", "sms"}
    # consent, read independently of the planner: the snapshot's consent features at the start
    consent = audience.frame.set_index(Col.CUSTOMER_KEY)
    for channel in ("email", "sms"):
        on = sent[sent["channel"] == channel][Col.CUSTOMER_KEY]
        assert (consent.loc[on, f"consent_{channel}"] >= 0.5).all()
    assert not sent["control_group"].any() and items["control_group"].sum() > 0
    # totals against sums written out here, not by the planner's own function
    t = plan.totals
    assert t["planned_sends"] == int(items["send"].sum())
    assert t["sends_by_channel"] == {c: int((sent["channel"] == c).sum()) for c in ("email", "sms", "push")}
    assert t["expected_cost"] == pytest.approx(items["expected_cost"].sum())
    assert t["expected_incremental_profit"] == pytest.approx(items["expected_profit"].sum())
    assert t["control_size"] == int(items["control_group"].sum())
    assert sum(t["offers"].values()) == int(items[Col.OFFER_ID].notna().sum())
    assert t["expected_cost"] <= SPEC.budget + 1e-9
    csv, _ = write_plan(plan, tmp_path)
    back = pd.read_csv(csv, dtype={Col.CUSTOMER_ID: str})
    assert len(back) == len(items) and back["send"].sum() == t["planned_sends"]
    assert totals(back.assign(send_at=pd.to_datetime(back["send_at"], utc=True)))["control_size"] == t["control_size"]


def test_a_plan_refuses_unknown_ids_loudly_and_a_bad_campaign(synth_home: SynthHome) -> None:
    plan, _ = plan_from_home(
        synth_home.home, load_catalogue(EXAMPLE_CATALOGUE), SPEC, customer_ids=["no-such-customer"]
    )
    assert plan.totals["unknown_customer_ids"] == ["no-such-customer"] and plan.totals["customers"] == 0
    ids = pd.read_parquet(synth_home.home / "ingested" / "identity_map.parquet").astype(str)
    twins = (
        ids[ids.duplicated(Col.CUSTOMER_KEY, keep=False)].sort_values(Col.CUSTOMER_ID).groupby(Col.CUSTOMER_KEY).head(2)
    )
    pair = twins[twins[Col.CUSTOMER_KEY] == twins[Col.CUSTOMER_KEY].iloc[0]][Col.CUSTOMER_ID].tolist()
    plan, _ = plan_from_home(synth_home.home, load_catalogue(EXAMPLE_CATALOGUE), SPEC, customer_ids=pair)
    # two ids of one person: planned once, the second listed, never dropped silently
    assert plan.totals["customers"] == 1 and plan.totals["merged_customer_ids"] == pair[1:]
    with pytest.raises(ValueError, match="ends_at must be after starts_at"):
        CampaignSpec(channels=("email",), starts_at=SPEC.ends_at, ends_at=SPEC.starts_at)
    with pytest.raises(ValueError, match="timezone-aware"):
        CampaignSpec(channels=("email",), starts_at=datetime(2026, 1, 1), ends_at=SPEC.ends_at)


def test_the_incrementality_interval_covers_the_planted_uplift(synth_home: SynthHome) -> None:
    ingested = synth_home.home / "ingested"
    messages, orders = pd.read_parquet(ingested / "messages.parquet"), pd.read_parquet(ingested / "orders.parquet")
    ids = pd.read_parquet(ingested / "identity_map.parquet")
    planted = truth_people(synth_home.raw / "truth", ids).set_index(Col.CUSTOMER_KEY)["planted_type"]
    assignment = message_assignment(messages)
    assignment["segment"] = assignment[Col.CUSTOMER_KEY].map(planted)
    report = measure(assignment, orders, per_campaign=False)  # the pooled rows are the ones checked
    truth = load_truth(synth_home.raw / "truth", ids, datetime(2025, 6, 1, tzinfo=UTC)).set_index(Col.CUSTOMER_KEY)
    table = report.table.set_index([Col.CAMPAIGN_ID, Col.OFFER_ID, "segment"])
    treated = assignment[assignment["group"] == "treated"]
    checked = 0
    for offer in sorted(treated[Col.OFFER_ID].unique()):
        for segment in ("all", "one_and_done", "lead"):
            chosen = treated[Col.OFFER_ID] == offer
            if segment != "all":
                chosen &= treated["segment"] == segment
            rows = treated[chosen]
            expected = float(truth[f"uplift_{offer}"].reindex(rows[Col.CUSTOMER_KEY]).mean())
            row = table.loc[("all", offer, segment)]
            assert row["lift_low"] - 1e-12 <= expected <= row["lift_high"] + 1e-12, (offer, segment, expected)
            checked += 1
    assert checked == 18
    lead = table.loc[("all", "OF01", "lead")]
    assert lead["verdict"] == NO_EFFECT and lead["lift"] == 0.0  # leads never buy: nothing to lift
    page = render_html(report)
    assert page.startswith("<!doctype html>") and "<svg" in page
    outside = page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "http" not in outside and "<script" not in outside  # self-contained: nothing fetched
