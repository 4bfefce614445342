"""Consent per campaign channel: the consents contract takes the campaign channels, each channel has a rule
for customers with no consent on record (direct mail and call centre: contact unless opted out; e-mail, SMS,
push, messenger: opt-in required), configurable in the mapping; the batch contact check and the serving
rule apply it, and an opted-out customer is never contactable on any channel."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from features.consent import consent_rules, contact_allowed
from features.contract import DEFAULT_CONSENT_RULES, CampaignChannel, ConsentRule
from features.errors import MappingError
from features.ingest import ingest
from features.mapping import Mapping
from features.realtime import ConsentChange, allowed_by_rule
from tests.features.test_mapping_expressions import _write, load_mapping_from, till_lines

NOW = datetime(2026, 1, 1, tzinfo=UTC)
AS_OF = datetime(2017, 4, 1, tzinfo=UTC)
CHANNELS = [c.value for c in CampaignChannel]

TILL = """basket,household,product,qty,sales_value,ts
B1,h1,P1,1,5.00,2017-03-12 10:00:00
B2,h2,P1,1,7.50,2017-03-13 18:05:00
B3,h3,P3,2,2.00,2017-03-14 09:00:00
B4,h4,P3,1,1.00,2017-03-15 09:00:00
"""
# h1: nothing on record. h2: out of direct mail, into e-mail. h3: out of everything. h4: out then back in
# for direct mail; in and out at the same instant for the call centre (the opt-out wins); an opt-in after
# the as-of date does not count.
CONSENTS = "household,channel,status,at\n" + "".join(
    [
        "h2,direct_mail,opt_out,2017-02-01 10:00:00\n",
        "h2,email,opt_in,2017-02-01 10:00:00\n",
        *(f"h3,{ch},opt_out,2017-02-02 10:00:00\n" for ch in CHANNELS),
        "h4,direct_mail,opt_out,2017-01-01 10:00:00\n",
        "h4,direct_mail,opt_in,2017-02-01 10:00:00\n",
        "h4,call_centre,opt_in,2017-02-01 10:00:00\n",
        "h4,call_centre,opt_out,2017-02-01 10:00:00\n",
        "h4,messenger,opt_in,2017-05-01 10:00:00\n",
    ]
)


def _mapping(**top: Any) -> dict[str, Any]:
    return {
        "name": "grocer",
        "currency": "USD",
        "derive_customers_from_lines": True,
        "tables": {
            "order_lines": till_lines(line_amount="sales_value"),
            "consents": {
                "files": ["consents.csv"],
                "columns": {"customer_id": "household", "channel": "channel", "status": "status", "consented_at": "at"},
            },
        },
        **top,
    }


def _home(tmp_path: Path, name: str = "home", **top: Any) -> Path:
    folder = _write(tmp_path / "x", {"till.csv": TILL, "consents.csv": CONSENTS})
    ingest(folder, Mapping.model_validate(_mapping(**top)), tmp_path / name, now=NOW)
    return tmp_path / name


def _allowed(home: Path) -> pd.DataFrame:
    frame = contact_allowed(home, AS_OF)
    ids = pd.read_parquet(home / "ingested" / "identity_map.parquet").set_index("customer_key")["customer_id"]
    return frame.set_index(frame["customer_key"].map(ids)).drop(columns="customer_key").sort_index()


def test_the_consents_contract_takes_every_campaign_channel_and_the_report_records_the_rules(tmp_path: Path) -> None:
    home = _home(tmp_path)
    report = json.loads((home / "ingested" / "ingest_report.json").read_text(encoding="utf-8"))
    assert report["tables"]["consents"]["quarantined"] == 0
    assert set(pd.read_parquet(home / "ingested" / "consents.parquet")["channel"]) == set(CHANNELS)
    assert report["consent_rules"] == {
        "email": "opt_in",
        "sms": "opt_in",
        "push": "opt_in",
        "direct_mail": "opt_out",
        "messenger": "opt_in",
        "call_centre": "opt_out",
    }
    assert consent_rules(home) == {ch: ConsentRule(r) for ch, r in report["consent_rules"].items()}


def test_each_channel_applies_its_default_rule(tmp_path: Path) -> None:
    allowed = _allowed(_home(tmp_path))
    channel = {ch: f"contact_{ch}" for ch in CHANNELS}
    # nothing on record: mail and calls allowed, electronic messages need an opt-in
    assert {ch for ch in CHANNELS if allowed.loc["h1", channel[ch]]} == {"direct_mail", "call_centre"}
    assert {ch for ch in CHANNELS if allowed.loc["h2", channel[ch]]} == {"email", "call_centre"}
    assert not allowed.loc["h3"].any()  # opted out everywhere: nowhere
    # back in for mail; the same-instant opt-out wins for calls; the May opt-in is after the as-of date
    assert {ch for ch in CHANNELS if allowed.loc["h4", channel[ch]]} == {"direct_mail"}


def test_the_mapping_sets_a_channels_rule(tmp_path: Path) -> None:
    allowed = _allowed(_home(tmp_path, consent_rules={"call_centre": "opt_in", "messenger": "opt_out"}))
    assert not allowed.loc["h1", "contact_call_centre"]
    assert allowed.loc["h1", "contact_messenger"]
    assert not allowed.loc["h3", "contact_messenger"]


@pytest.mark.parametrize(
    ("rules", "where"),
    [
        ({"email": "opt_out"}, "consent_rules.email: email requires an opt-in"),
        ({"fax": "opt_out"}, "consent_rules.fax: not a channel of this mapping"),
        ({"direct_mail": "maybe"}, "consent_rules.direct_mail"),
    ],
)
def test_a_bad_consent_rule_is_named(rules: dict[str, str], where: str) -> None:
    with pytest.raises(MappingError, match=where):
        load_mapping_from(_mapping(consent_rules=rules))


def test_an_opted_out_customer_is_never_contacted_whatever_the_rules(tmp_path: Path) -> None:
    free = [ch for ch in CHANNELS if ch not in ("email", "sms", "push")]
    for i, choice in enumerate(itertools.product(["opt_in", "opt_out"], repeat=len(free))):
        home = _home(tmp_path, f"home{i}", consent_rules=dict(zip(free, choice, strict=True)))
        allowed = _allowed(home)
        assert not allowed.loc["h3"].any(), choice
        # and someone is contactable, so the check is not vacuous
        assert allowed.loc["h1", [f"contact_{ch}" for ch, r in zip(free, choice, strict=True) if r == "opt_out"]].all()


def _history(*changes: tuple[float, bool]) -> list[ConsentChange]:
    return [ConsentChange(at, float(i), granted) for i, (at, granted) in enumerate(changes)]


def test_the_serving_rule_matches_the_batch_one() -> None:
    for rule in ConsentRule:
        assert not allowed_by_rule(_history((1.0, False)), rule)
        assert not allowed_by_rule(_history((2.0, True), (1.0, False)), rule)  # a later receipt opts out
        assert not allowed_by_rule(_history((1.0, True), (1.0, False)), rule)  # a tie: the opt-out wins
        assert allowed_by_rule(_history((1.0, False), (2.0, True)), rule)
        assert allowed_by_rule(_history((1.0, True)), rule)
    assert allowed_by_rule([], ConsentRule.OPT_OUT)
    assert not allowed_by_rule([], ConsentRule.OPT_IN)
    assert DEFAULT_CONSENT_RULES["direct_mail"] == DEFAULT_CONSENT_RULES["call_centre"] == ConsentRule.OPT_OUT
