"""One clock in the API: every score is computed as of an explicit instant, and agrees with the export's.

Issue 21's case: "all customers with churn above 0.6" gave 229 customers through the API and 1,473 through
``kairos score --all`` on the same data, because a handful of events stamped with the machine clock moved
the in-process store's clock (and every customer's "days since") by 340 days. Rerun here on the small
synthetic world: the same events, then the count through ``POST /v1/scores`` at an instant ``T`` and through
the export as of ``T`` (``score_all(now=T)``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from batch.score import score_all
from features.store import latest_snapshot
from tests.serving.conftest import KEYS, World

THRESHOLD = 0.6


def _api_churn(client: object, ids: list[str], now: datetime | None) -> dict[str, float | None]:
    body: dict[str, object] = {"customer_ids": ids}
    if now is not None:
        body["now"] = now.isoformat()
    r = client.post("/v1/scores", json=body, headers={"X-API-Key": KEYS["campaign"]})  # type: ignore[attr-defined]
    assert r.status_code == 200, r.text
    return {i["customer_key"]: i["probabilities"]["churn"] for i in r.json()["items"]}


def test_the_229_against_1473_case_gives_one_count_both_ways(world: World, tmp_path: Path) -> None:
    snap = latest_snapshot(world.home)
    instants = [snap.as_of, snap.as_of + timedelta(days=45)]
    machine = datetime.now(UTC)
    with world.client() as client:
        # the trigger of the issue: a handful of events stamped with the machine clock
        events = [
            {"type": "view", "timestamp": (machine - timedelta(seconds=i)).isoformat(), "customer_id": cid}
            for i, cid in enumerate(world.ids[:5])
        ]
        posted = client.post("/v1/events", json={"events": events}, headers={"X-API-Key": KEYS["campaign"]})
        assert posted.status_code == 200 and {r["status"] for r in posted.json()["results"]} == {"applied"}
        counts = []
        for at in instants:
            api = _api_churn(client, world.ids, at)
            export = pd.read_parquet(
                score_all(world.home, world.uri, tmp_path / "s.parquet", compiled=False, now=at).path
            )
            by_key = dict(zip(export["customer_key"], export["churn_probability"], strict=True))
            over_api = {k for k, p in api.items() if p is not None and p > THRESHOLD}
            over_export = {k for k, p in by_key.items() if k in api and p > THRESHOLD}
            assert len(over_api) == len(over_export) and over_api == over_export, at
            # not only the count: every probability is the export's (the events are after T: ignored), to the
            # export's float32
            np.testing.assert_array_equal(np.float32([api[k] for k in api]), [by_key[k] for k in api])
            counts.append(len(over_api))
        # without a now, the server's clock: the events (stamped now) count, the store's own clock is never used
        assert _api_churn(client, world.ids[:5], None) != _api_churn(client, world.ids[:5], snap.as_of)
    assert counts[0] != counts[1], f"ageing 45 days should move some churn scores past {THRESHOLD}: {counts}"


def test_now_is_checked_and_echoed(world: World) -> None:
    snap = latest_snapshot(world.home)
    headers = {"X-API-Key": KEYS["campaign"]}
    with world.client() as client:
        early = (snap.as_of - timedelta(days=1)).isoformat()
        r = client.post("/v1/scores", json={"customer_ids": world.ids[:2], "now": early}, headers=headers)
        assert r.status_code == 422 and "body.now" in r.text, r.text
        naive = client.post(
            "/v1/scores", json={"customer_ids": world.ids[:2], "now": "2026-01-01T00:00:00"}, headers=headers
        )
        assert naive.status_code == 422 and "body.now" in naive.text
        at = snap.as_of + timedelta(days=3)
        ok = client.post("/v1/scores", json={"customer_ids": world.ids[:2], "now": at.isoformat()}, headers=headers)
        assert datetime.fromisoformat(ok.json()["now"]) == at
        profile = client.get(f"/v1/customers/{world.ids[0]}/profile", params={"now": at.isoformat()}, headers=headers)
        assert profile.status_code == 200 and datetime.fromisoformat(profile.json()["as_of"]) == at
        assert profile.json()["age_days"] == 3.0
        bad = client.get(f"/v1/customers/{world.ids[0]}/profile", params={"now": early}, headers=headers)
        assert bad.status_code == 422 and "query.now" in bad.text
    # a configured clock stands in for a request without a now (a replay, a demo of past data)
    with world.client(clock=at) as client:
        same = client.post("/v1/scores", json={"customer_ids": world.ids[:50]}, headers=headers).json()
        assert datetime.fromisoformat(same["now"]) == at
        assert _api_churn(client, world.ids[:50], None) == _api_churn(client, world.ids[:50], at)
