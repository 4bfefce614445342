"""The policy file in the API: echoed in every decision, reloaded when it changes (an invalid file leaves
the policy in force), and its band cuts applied alike by the API and the nightly export."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from cli.main import app
from features.store import latest_snapshot
from models.decisioning.marketing_policy import BandCuts, resolve_cuts
from models.reasons import band
from tests.serving.conftest import World, headers

runner = CliRunner()
FIRST = "name: first\ncontact:\n  quiet_hours: null\n  channel_caps:\n    email: [{max_messages: 1, per_hours: 16}]\n"
SECOND = "name: second\ncontact:\n  quiet_hours: null\n  channel_caps:\n    email: [{max_messages: 3, per_hours: 16}]\n"


def _touch_later(path: Path, text: str) -> None:
    path.write_text(text)
    stamp = time.time() + 5
    os.utime(path, (stamp, stamp))  # a new modification time whatever the file system's resolution


def test_every_decision_echoes_the_policy_and_a_changed_file_is_reloaded(world: World, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(FIRST)
    ask = {"items": [{"customer_id": world.ids[0], "channel": "email"}], "now": "2026-01-02T23:30:00Z"}
    with world.client(policy_file=policy) as client:
        first = client.post("/v1/permissions", json=ask, headers=headers("campaign")).json()
        assert first["policy"]["name"] == "first"
        assert "caps: email 1 per 16 h, all channels 4 per 168 h" in first["policy"]["rules"]
        assert not any("quiet hours" in r for r in first["items"][0].get("reasons", []))  # 23:30: none in force
        _touch_later(policy, SECOND)
        services = client.app.state.services  # type: ignore[attr-defined]
        assert client.post("/v1/models/reload", json={}, headers=headers("admin")).status_code == 200
        second = client.post("/v1/permissions", json=ask, headers=headers("campaign")).json()
        assert second["policy"]["name"] == "second" and second["policy"]["version"] != first["policy"]["version"]
        assert services.policy.config.channel_caps["email"][0].max_messages == 3
        _touch_later(policy, "contact: {quiet_hours: [25, 3]}\n")  # invalid: the second policy stays
        client.post("/v1/models/reload", json={}, headers=headers("admin"))
        third = client.post("/v1/permissions", json=ask, headers=headers("campaign")).json()
        assert third["policy"]["version"] == second["policy"]["version"]
        assert "quiet_hours" in (services.policies.last_error or "")


def test_band_cuts_of_the_policy_are_the_same_in_the_api_and_the_export(world: World, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("bands:\n  churn: {quantiles: [0.5, 0.9]}\n")
    out = tmp_path / "scores.parquet"
    result = runner.invoke(
        app,
        [
            "score",
            "--all",
            "--no-compiled",
            "--policy",
            str(policy),
            "--out",
            str(out),
            "--data",
            str(world.home),
            "--tracking-uri",
            world.uri,
        ],
    )
    assert result.exit_code == 0, result.output
    export = pd.read_parquet(out)
    scored = export.dropna(subset=["churn_probability"])
    p = scored["churn_probability"].to_numpy(np.float64)
    # the test model's scores take a few values (its median is its maximum): the cuts resolved on them,
    # not 0.3 / 0.6, decide (tests/models/decisioning/test_marketing_policy.py checks quantiles on spread scores)
    cuts = resolve_cuts(BandCuts(quantiles=(0.5, 0.9)), p)
    assert scored["churn_band"].tolist() == band(p, cuts).tolist()
    assert scored["churn_band"].tolist() != band(p, (0.3, 0.6)).tolist()
    ids = scored["customer_id"].head(300).tolist()
    with world.client(policy_file=policy) as client:
        at = latest_snapshot(world.home).as_of.isoformat()  # the export's instant (one clock)
        body = {"customer_ids": ids, "now": at}
        items = client.post("/v1/scores", json=body, headers=headers("campaign")).json()["items"]
    assert [i["bands"]["churn"] for i in items] == scored["churn_band"].head(300).tolist()
