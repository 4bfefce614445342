"""Readers of a synthetic world's planted truth (its ``truth/`` folder), keyed like the ingested data.

The jobs use them to score against what the generator planted: the send-time job's planted preferred
hours, the offers job's true profit. Pure functions of the files and their arguments.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from features.contract import Col
from features.errors import KairosError
from synth.behaviour import LAPSE_DECAY_DAYS
from synth.messages import WINDOW_DAYS

__all__ = ["HIDDEN_SEGMENT", "hidden_segment", "load_truth", "truth_people"]


def truth_people(truth_dir: Path, customer_ids: pd.DataFrame) -> pd.DataFrame:
    """Customer key -> planted person (the person most of the key's records belong to) and their traits.

    Args:
        truth_dir: The world's ``truth/`` folder.
        customer_ids: ``customer_id, customer_key`` (the ingested customers or identity map).
    """
    identities = pd.read_parquet(Path(truth_dir) / "identities.parquet", columns=["customer_id", "person_id"])
    persons = pd.read_parquet(Path(truth_dir) / "persons.parquet")
    links = (
        customer_ids[[Col.CUSTOMER_ID, Col.CUSTOMER_KEY]]
        .astype(str)
        .merge(identities.astype({"customer_id": str}), on=Col.CUSTOMER_ID, how="inner")
    )
    top = links.groupby([Col.CUSTOMER_KEY, "person_id"]).size().reset_index(name="n")
    top = top.sort_values(["n", "person_id"], ascending=[False, True]).drop_duplicates(Col.CUSTOMER_KEY)
    return top[[Col.CUSTOMER_KEY, "person_id"]].merge(persons, on="person_id", how="left")


HIDDEN_SEGMENT = "pet devotees: buyers whose favourite category is Pet, at least 40 % of their basket"
_HIDDEN_CATEGORY, _HIDDEN_WEIGHT = "Pet", 0.40


def hidden_segment(truth_dir: Path, customer_ids: pd.DataFrame) -> pd.DataFrame:
    """The hidden segment planted in every world (:data:`HIDDEN_SEGMENT`), per customer_key.

    It is derived from latent draws the generator already makes (each person's favourite category, its
    weight in their baskets, and their planted type, all in ``persons.parquet``), so it changes no
    generated row: no column of the export names it, only the purchases it causes show it. Lookalike
    benchmarks seed a sample of it and measure how much of the rest a ranking finds.

    Returns:
        ``customer_key, person_id, member`` (bool) for every key :func:`truth_people` links to a person.
    """
    people = truth_people(truth_dir, customer_ids)
    member = (
        (people["category_1"] == _HIDDEN_CATEGORY)
        & (people["category_weight_1"] >= _HIDDEN_WEIGHT)
        & (people["planted_type"] != "lead")
    )
    return people[[Col.CUSTOMER_KEY, "person_id"]].assign(member=member.to_numpy(dtype=bool))


def load_truth(truth_dir: Path, customers: pd.DataFrame, now: datetime) -> pd.DataFrame:
    """Planted truth per customer_key: ``person_id``, ``baseline_30d`` (planted), ``p_natural`` (the
    person's real 30-day purchase probability at ``now``), ``basket_value`` and ``uplift_<offer>``.

    ``p_natural`` follows the generator (:mod:`synth.behaviour`): zero after churn, the planted
    rate decayed by ``exp(-days since the drift began / 25)`` while lapsing, else the planted baseline.
    A customer_key made of several persons (an identity-resolution error) takes its most frequent one.
    """
    truth_dir = Path(truth_dir)
    for name in ("identities", "offer_uplift", "persons"):
        if not (truth_dir / f"{name}.parquet").is_file():
            raise KairosError(f"no {name}.parquet in {truth_dir}: pass the synthetic world's truth folder")
    ids = pd.read_parquet(truth_dir / "identities.parquet")[["customer_id", "person_id"]]
    link = customers[[Col.CUSTOMER_ID, Col.CUSTOMER_KEY]].astype(str).merge(ids.astype(str), on=Col.CUSTOMER_ID)
    person = link.groupby(Col.CUSTOMER_KEY)["person_id"].agg(lambda s: s.value_counts().index[0]).reset_index()
    up = pd.read_parquet(truth_dir / "offer_uplift.parquet")
    wide = up.pivot(index="person_id", columns="offer_id", values="uplift_30d").add_prefix("uplift_")
    base = up.groupby("person_id")["baseline_30d"].first()
    persons = pd.read_parquet(truth_dir / "persons.parquet").set_index("person_id")
    when = pd.Timestamp(now)
    churned = pd.to_datetime(persons["churn_at"], utc=True) <= when
    lapse_days = ((when - pd.to_datetime(persons["lapse_at"], utc=True)).dt.total_seconds() / 86_400).clip(lower=0)
    rate = persons["purchase_rate_per_day"] * np.exp(-lapse_days.fillna(0.0) / LAPSE_DECAY_DAYS)
    # the planted uplift's horizon (uplift_30d), which is the offers job's outcome horizon
    persons["p_natural"] = np.where(churned, 0.0, 1.0 - np.exp(-WINDOW_DAYS * rate))
    out = person.join(wide, on="person_id").join(base, on="person_id")
    return out.join(persons[["basket_value", "p_natural"]], on="person_id")
