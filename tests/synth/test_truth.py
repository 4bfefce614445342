"""Readers of the planted truth, on tiny literal truth folders with known answers."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from features.contract import Col
from features.errors import KairosError
from synth.behaviour import LAPSE_DECAY_DAYS
from synth.messages import WINDOW_DAYS
from synth.truth import load_truth, truth_people

NOW = datetime(2025, 7, 1, tzinfo=UTC)


def write_truth(folder: Path, identities: dict[str, str], persons: list[dict[str, object]]) -> Path:
    """identities.parquet (customer_id -> person_id), persons.parquet and offer_uplift.parquet (OF01, OF02)."""
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"customer_id": list(identities), "person_id": list(identities.values())}).to_parquet(
        folder / "identities.parquet"
    )
    frame = pd.DataFrame(persons)
    for col in ("churn_at", "lapse_at"):
        frame[col] = pd.to_datetime(frame[col], utc=True)  # None -> NaT
    frame.to_parquet(folder / "persons.parquet")
    uplift = [
        {"person_id": p["person_id"], "offer_id": o, "baseline_30d": 0.1 * i, "uplift_30d": u}
        for i, p in enumerate(persons, start=1)
        for o, u in (("OF01", 0.05 * i), ("OF02", -0.01 * i))
    ]
    pd.DataFrame(uplift).to_parquet(folder / "offer_uplift.parquet")
    return folder


def person(pid: str, rate: float = 0.01, churn: str | None = None, lapse: str | None = None) -> dict[str, object]:
    return {
        "person_id": pid,
        "purchase_rate_per_day": rate,
        "churn_at": churn,
        "lapse_at": lapse,
        "basket_value": 40.0,
        "pref_hour_email": int(pid[1:]) + 8,
    }


def keys(pairs: dict[str, str]) -> pd.DataFrame:
    return pd.DataFrame({Col.CUSTOMER_ID: list(pairs), Col.CUSTOMER_KEY: list(pairs.values())})


def test_truth_people_takes_each_keys_majority_person_and_its_traits(tmp_path: Path) -> None:
    truth = write_truth(
        tmp_path,
        {"c1": "P1", "c2": "P1", "c3": "P2", "c4": "P2", "c5": "P3", "c6": "P4"},
        [person("P1"), person("P2"), person("P3"), person("P4")],
    )
    # K1 merges P1's two records with P2's (a spouse trap); K3 is a tie, broken by the smaller person_id.
    got = truth_people(truth, keys({"c1": "K1", "c2": "K1", "c3": "K1", "c4": "K2", "c5": "K3", "c6": "K3"}))
    got = got.set_index(Col.CUSTOMER_KEY).sort_index()
    assert got["person_id"].to_dict() == {"K1": "P1", "K2": "P2", "K3": "P3"}
    assert got["pref_hour_email"].to_dict() == {"K1": 9, "K2": 10, "K3": 11}


def test_load_truth_plants_natural_probability_by_lifecycle(tmp_path: Path) -> None:
    truth = write_truth(
        tmp_path,
        {"c1": "P1", "c2": "P2", "c3": "P3"},
        [
            person("P1", rate=0.01),  # steady
            person("P2", rate=0.01, churn="2025-06-01", lapse="2025-03-01"),  # churned before NOW
            person("P3", rate=0.02, churn="2025-09-01", lapse="2025-06-06"),  # lapsing for 25 days at NOW
        ],
    )
    got = load_truth(truth, keys({"c1": "K1", "c2": "K2", "c3": "K3"}), NOW).set_index(Col.CUSTOMER_KEY)
    assert got.loc["K1", "p_natural"] == pytest.approx(1.0 - math.exp(-WINDOW_DAYS * 0.01))
    assert got.loc["K2", "p_natural"] == 0.0
    decayed = 0.02 * math.exp(-25.0 / LAPSE_DECAY_DAYS)
    assert got.loc["K3", "p_natural"] == pytest.approx(1.0 - math.exp(-WINDOW_DAYS * decayed))
    assert got.loc["K3", "uplift_OF01"] == pytest.approx(0.15)
    assert got.loc["K3", "uplift_OF02"] == pytest.approx(-0.03)
    assert got.loc["K2", "baseline_30d"] == pytest.approx(0.2)
    assert got["basket_value"].tolist() == [40.0, 40.0, 40.0]


def test_load_truth_names_the_missing_file(tmp_path: Path) -> None:
    truth = write_truth(tmp_path, {"c1": "P1"}, [person("P1")])
    (truth / "offer_uplift.parquet").unlink()
    with pytest.raises(KairosError, match=r"offer_uplift\.parquet"):
        load_truth(truth, keys({"c1": "K1"}), NOW)


def test_the_truths_horizon_is_the_offers_jobs_outcome_horizon() -> None:
    from training.offers import HORIZON_DAYS

    assert WINDOW_DAYS == HORIZON_DAYS
