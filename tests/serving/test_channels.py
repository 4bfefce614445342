"""The preferred channel (``POST /v1/channels``) and a campaign's channels: never a channel without consent,
never an offer on a channel the campaign (or the offer) does not allow."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pandas as pd
import yaml
from typer.testing import CliRunner

from cli.main import app
from features.store import latest_snapshot
from models.decisioning.control import ControlGroup
from tests.serving.conftest import ALL, World, headers

NOW = "2026-01-02T13:00:00Z"


def test_channels_are_the_consented_ones_ranked_and_an_unsubscribe_removes_one(decided: World) -> None:
    ids = [*decided.ids[:200], "ghost"]
    with decided.client(**ALL) as client:
        body = client.post("/v1/channels", json={"customer_ids": ids, "now": NOW}, headers=headers("campaign")).json()
        items = body["items"]
        assert [i["customer_id"] for i in items] == ids and items[-1]["status"] == "unknown_customer"
        services = client.app.state.services  # type: ignore[attr-defined]
        found, names = services.store.lookup(ids[:-1])
        consent = {ch: found.values[:, names.index(f"consent_{ch}")] == 1.0 for ch in ("email", "sms", "push")}
        for n, item in enumerate(items[:-1]):
            listed = [c["channel"] for c in item["channels"]]
            assert set(listed) == {ch for ch in consent if consent[ch][n]}  # exactly the consented channels
            assert item["preferred_channel"] == (listed[0] if listed else None)
            assert [c["rank"] for c in item["channels"]] == list(range(1, len(listed) + 1))
        assert sum(i["preferred_channel"] is not None for i in items) > 50  # the check above is not vacuous
        cid = next(i["customer_id"] for i in items[:-1] if i["preferred_channel"] == "email")
        event = {"type": "unsubscribe", "timestamp": "2026-01-02T12:59:00Z", "customer_id": cid, "channel": "email"}
        assert client.post("/v1/events", json={"events": [event]}, headers=headers("consent")).status_code == 200
        after = client.post("/v1/channels", json={"customer_ids": [cid], "now": NOW}, headers=headers("campaign"))
        assert "email" not in [c["channel"] for c in after.json()["items"][0]["channels"]]


def test_an_email_campaign_never_sends_an_offer_on_another_channel(decided: World) -> None:
    ids = decided.ids[:300]
    with decided.client(**ALL) as client:
        catalogue = client.app.state.services.bundle("offers").payload.catalogue  # type: ignore[attr-defined]
        channels_of = {o.id: {c.value for c in o.channels} for o in catalogue.offers}
        body = {"customer_ids": ids, "now": NOW}
        free = client.post("/v1/offers/campaign", json=body, headers=headers("campaign")).json()["items"]
        mail = client.post(
            "/v1/offers/campaign", json=body | {"channels": ["email"]}, headers=headers("campaign")
        ).json()["items"]
    offered = [i for i in mail if i["decision"] == "offer"]
    assert offered and all(i["channel"] == "email" for i in offered)
    for items in (free, mail):  # and never outside the offer's own channels
        assert all(i["channel"] in channels_of[i["offer_id"]] for i in items if i["decision"] == "offer")


def test_the_export_adds_consent_the_preferred_channel_and_send_slots_as_the_api_answers(
    decided: World, tmp_path: Path
) -> None:
    out = tmp_path / "scores.parquet"
    result = CliRunner().invoke(
        app,
        ["score", "--all", "--no-compiled", "--channel", "--send-slots", "--out", str(out), "--data",
         str(decided.home), "--tracking-uri", decided.uri],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    export = pd.read_parquet(out)
    as_of = latest_snapshot(decided.home).as_of
    for ch in ("email", "sms", "push"):
        slots = export[f"send_at_{ch}"]
        assert slots[~export[f"consent_{ch}"]].isna().all()  # never a slot on a channel without consent
        given = slots.dropna()
        assert len(given) and ((given >= as_of) & (given < as_of + timedelta(hours=25))).all()
    preferred = export["preferred_channel"]
    for ch in ("email", "sms", "push"):
        assert export.loc[preferred == ch, f"consent_{ch}"].all()
    none = ~export[["consent_email", "consent_sms", "consent_push"]].any(axis=1)
    assert preferred[none].isna().all() and preferred[~none].notna().all()
    sample = export.head(200)
    with decided.client(**ALL) as client:
        now = as_of.isoformat()
        items = client.post(
            "/v1/channels",
            json={"customer_ids": sample["customer_id"].tolist(), "now": now},
            headers=headers("campaign"),
        ).json()["items"]
    expected = [c if isinstance(c, str) else None for c in sample["preferred_channel"]]
    assert [i["preferred_channel"] for i in items] == expected


def test_the_export_adds_the_next_best_offer_of_a_named_catalogue_on_consented_channels(
    decided: World, tmp_path: Path
) -> None:
    with decided.client(**ALL) as client:
        catalogue = client.app.state.services.bundle("offers").payload.catalogue  # type: ignore[attr-defined]
    path = tmp_path / "catalogue.yaml"
    path.write_text(yaml.safe_dump(catalogue.model_dump(mode="json"), sort_keys=False))
    out = tmp_path / "scores.parquet"
    result = CliRunner().invoke(
        app,
        ["score", "--all", "--no-compiled", "--offers", str(path), "--out", str(out), "--data", str(decided.home),
         "--tracking-uri", decided.uri],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    export = pd.read_parquet(out)
    channels_of = {o.id: {c.value for c in o.channels} for o in catalogue.offers}
    offered = export[export["offer_decision"] == "offer"]
    assert len(offered) > 0 and offered["offer_channel"].notna().all()
    for row in offered.itertuples():
        assert row.offer_channel in channels_of[row.offer_id]
        assert getattr(row, f"consent_{row.offer_channel}")  # never an offer on a channel without consent
    assert export.loc[export["offer_decision"] != "offer", "offer_channel"].isna().all()
    held = export["offer_decision"] == "control_group"
    members = ControlGroup().contains(export["customer_key"].astype(str))
    assert held.any() and not (held & ~members).any()  # only the control group is held out
