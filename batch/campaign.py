"""Campaign files a campaign engine imports: ``kairos campaign plan`` and ``kairos campaign report``.

The plan (:mod:`models.decisioning.plan`) is computed from the data home as it stands: the latest
feature snapshot and its segments, the ingested consents and messages (contact states at the campaign's
start), and, when a tracking URI is given, the offers champion's uplift model and the send-time champion
(curves and channel preference); without them the playbook's rules and the policy's first allowed
instant decide, and the totals say so. Customers are named by the retailer's ``customer_id``; an id the
data does not know is listed in the totals (``unknown_customer_ids``), never dropped silently.

Written: ``plan.csv`` or ``plan.parquet`` (one row per customer) and ``plan.json`` (the totals).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from bundles import registry
from bundles.errors import ModelNotFoundError
from bundles.offers import OffersBundle
from bundles.sendtime import SendTimeBundle
from features.contract import Col
from features.errors import KairosError
from features.ingest import IDENTITY_MAP_FILE
from features.store import (
    SEGMENTS_FILE,
    attribute_bands,
    data_currency,
    ingested_dir,
    latest_snapshot,
)
from models.decisioning.channel import ChannelPreference
from models.decisioning.control import ControlGroup
from models.decisioning.incrementality import IncrementalityReport, measure, plan_assignment
from models.decisioning.nbo import NextBestOffer, population_order_value
from models.decisioning.offers import Catalogue, CatalogueError
from models.decisioning.plan import CampaignPlan, CampaignSpec, items_for_export, plan_campaign
from models.decisioning.policy import ContactPolicy, contact_states
from models.decisioning.sendtime import SendTimeModel

__all__ = ["Audience", "load_audience", "plan_from_home", "report_from_home", "write_plan"]


@dataclass
class Audience:
    """The audience's feature rows (with segments), its id map, and the ids the data does not know."""

    frame: pd.DataFrame
    ids: pd.DataFrame  # customer_key -> customer_id (the primary one)
    unknown: list[str]
    merged: list[str]  # ids of a customer already in the audience through another id (planned once)
    order_value: float | None  # the whole base's median order value: the value of an order by someone without one


def _id_map(data_home: Path) -> pd.DataFrame:
    mapping = pd.read_parquet(ingested_dir(data_home) / IDENTITY_MAP_FILE, columns=[Col.CUSTOMER_ID, Col.CUSTOMER_KEY])
    return mapping.dropna().astype(str)


def load_audience(data_home: Path, customer_ids: Sequence[str] | None = None) -> Audience:
    """The latest snapshot's rows (features and segments) of ``customer_ids`` (None: the whole base).

    Raises:
        KairosError: the data home has no snapshot (run ``kairos features build``).
    """
    snapshot = latest_snapshot(Path(data_home))
    features = snapshot.read()
    try:
        order_value: float | None = population_order_value(features)
    except CatalogueError:
        order_value = None
    segments_file = snapshot.path / SEGMENTS_FILE
    if segments_file.is_file():
        segments = pd.read_parquet(segments_file)
        extra = [c for c in segments.columns if c not in features.columns or c == Col.CUSTOMER_KEY]
        features = features.merge(segments[extra], on=Col.CUSTOMER_KEY, how="left")
    ids = _id_map(data_home)
    primary = ids.sort_values([Col.CUSTOMER_KEY, Col.CUSTOMER_ID]).drop_duplicates(Col.CUSTOMER_KEY)
    unknown: list[str] = []
    merged: list[str] = []
    if customer_ids is not None:
        wanted = list(dict.fromkeys(str(c) for c in customer_ids))
        known = ids[ids[Col.CUSTOMER_ID].isin(wanted)]
        unknown = sorted(set(wanted) - set(known[Col.CUSTOMER_ID]))
        key_of = known.drop_duplicates(Col.CUSTOMER_ID).set_index(Col.CUSTOMER_ID)[Col.CUSTOMER_KEY].to_dict()
        keys: list[str] = []
        seen: set[str] = set()
        for w in wanted:
            key = key_of.get(w)
            if key is None:
                continue
            if key in seen:
                merged.append(w)  # another id of a customer already in the audience: planned once
            else:
                seen.add(key)
                keys.append(key)
        in_snapshot = set(features[Col.CUSTOMER_KEY])
        unknown += sorted(known.loc[~known[Col.CUSTOMER_KEY].isin(in_snapshot), Col.CUSTOMER_ID])
        features = features.set_index(Col.CUSTOMER_KEY).loc[[k for k in keys if k in in_snapshot]].reset_index()
    return Audience(features.reset_index(drop=True), primary, unknown, merged, order_value)


def _models(
    tracking_uri: str | None, tmp: Path
) -> tuple[Any, SendTimeModel | None, ChannelPreference | None, list[str]]:
    """The offers champion's uplift model and the send-time champion, where registered."""
    used: list[str] = []
    uplift = sendtime = preference = None
    if tracking_uri is None:
        return None, None, None, ["offers: playbook rules (no tracking URI)", "send time: policy (no tracking URI)"]
    try:
        fetched = registry.fetch_bundle(tracking_uri, "offers", registry.CHAMPION, tmp / "offers")
        nbo, _ = OffersBundle.read(fetched.path)
        uplift = nbo.uplift
        used.append(f"offers: uplift model offers v{fetched.version}")
    except ModelNotFoundError:
        used.append("offers: playbook rules (no offers champion)")
    try:
        fetched = registry.fetch_bundle(tracking_uri, "sendtime", registry.CHAMPION, tmp / "sendtime")
        st = SendTimeBundle.read(fetched.path)
        sendtime, preference = st.model, st.channels
        used.append(f"send time: sendtime v{fetched.version}")
    except ModelNotFoundError:
        used.append("send time: policy (no sendtime champion)")
    return uplift, sendtime, preference, used


def plan_from_home(
    data_home: Path,
    catalogue: Catalogue,
    spec: CampaignSpec,
    *,
    customer_ids: Sequence[str] | None = None,
    tracking_uri: str | None = None,
    policy: ContactPolicy | None = None,
    control: ControlGroup | None = None,
    progress: Callable[[float], None] | None = None,
) -> tuple[CampaignPlan, Audience]:
    """Plan ``spec`` for ``customer_ids`` (None: the whole base) from the data home (module docstring)."""
    data_home = Path(data_home)
    audience = load_audience(data_home, customer_ids)
    policy = policy or ContactPolicy()
    catalogue = catalogue.in_currency(data_currency(data_home)).with_band_positions(attribute_bands(data_home))
    tables = ingested_dir(data_home)
    consents = _table(tables, "consents", [Col.CUSTOMER_KEY, Col.CHANNEL, Col.STATUS, Col.CONSENTED_AT])
    messages = _table(tables, "messages", [Col.CUSTOMER_KEY, Col.CHANNEL, Col.SENT_AT, Col.OFFER_ID])
    keys = set(audience.frame[Col.CUSTOMER_KEY].astype(str))
    consents = consents[consents[Col.CUSTOMER_KEY].astype(str).isin(keys)]
    messages = messages[messages[Col.CUSTOMER_KEY].astype(str).isin(keys)]
    zones = (
        dict(zip(audience.frame[Col.CUSTOMER_KEY], audience.frame["timezone"], strict=True))
        if "timezone" in audience.frame.columns
        else None
    )
    lookback = policy.config.longest_window_hours()
    # only sends inside the policy's longest window count (contact_states drops the rest after parsing them)
    sent_at = pd.to_datetime(messages[Col.SENT_AT], utc=True)
    recent = messages[sent_at >= pd.Timestamp(spec.starts_at) - pd.Timedelta(hours=lookback)]
    states = contact_states(consents, recent, zones, spec.starts_at, lookback)
    with tempfile.TemporaryDirectory() as tmp:
        uplift, sendtime, preference, used = _models(tracking_uri, Path(tmp))
    nbo = NextBestOffer(catalogue, uplift, control or ControlGroup(), fallback_order_value=audience.order_value)
    plan = plan_campaign(
        audience.frame,
        nbo,
        spec,
        states=states,
        policy=policy,
        preference=preference,
        sendtime=sendtime,
        history=messages[messages[Col.OFFER_ID].notna()],
        progress=progress,
    )
    plan.items.insert(
        0, Col.CUSTOMER_ID, plan.items[Col.CUSTOMER_KEY].map(audience.ids.set_index(Col.CUSTOMER_KEY)[Col.CUSTOMER_ID])
    )
    plan.totals |= {"unknown_customer_ids": audience.unknown, "merged_customer_ids": audience.merged, "models": used}
    return plan, audience


def _table(folder: Path, name: str, columns: list[str]) -> pd.DataFrame:
    path = folder / f"{name}.parquet"
    if not path.is_file():
        return pd.DataFrame(
            {c: pd.Series(dtype="datetime64[ns, UTC]" if c.endswith("_at") else object) for c in columns}
        )
    return pd.read_parquet(path, columns=columns)


def write_plan(plan: CampaignPlan, out: Path, fmt: str = "csv") -> tuple[Path, Path]:
    """Write the items (``plan.csv`` or ``plan.parquet``) and the totals (``plan.json``) into ``out``.

    Raises:
        KairosError: an unknown format.
    """
    if fmt not in ("csv", "parquet"):
        raise KairosError(f"--format must be csv or parquet, got {fmt!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    items = items_for_export(plan.items)
    path = out / f"plan.{fmt}"
    if fmt == "csv":
        items.to_csv(path, index=False)
    else:
        items.to_parquet(path, index=False)
    totals = out / "plan.json"
    totals.write_text(json.dumps(plan.totals, indent=2, default=str), encoding="utf-8")
    return path, totals


def report_from_home(
    data_home: Path,
    *,
    plan_file: Path | None = None,
    campaign_ids: Sequence[str] | None = None,
    horizon_days: float = 30.0,
    catalogue: Catalogue | None = None,
    segment_column: str = "lifecycle",
) -> IncrementalityReport:
    """The incrementality report of past campaigns from the data home's messages and orders.

    With ``plan_file`` (a plan this command wrote): treated = the plan's customers who were sent the
    campaign, control = its control group. Without: every campaign of the message history, offer vs no
    offer within each campaign (the random draw a randomised send makes).
    """
    from models.decisioning.incrementality import message_assignment

    tables = ingested_dir(Path(data_home))
    messages = _table(tables, "messages", [Col.CUSTOMER_KEY, Col.CAMPAIGN_ID, Col.CHANNEL, Col.SENT_AT, Col.OFFER_ID])
    orders = pd.read_parquet(
        tables / "orders.parquet", columns=[Col.CUSTOMER_KEY, Col.ORDERED_AT, Col.AMOUNT, Col.STATUS]
    )
    if plan_file is not None:
        plan = (
            pd.read_parquet(plan_file)
            if str(plan_file).endswith(".parquet")
            else pd.read_csv(plan_file, dtype={Col.CUSTOMER_ID: str})
        )
        assignment = plan_assignment(plan, messages)
    else:
        assignment = message_assignment(messages, campaign_ids)
    snapshot = latest_snapshot(Path(data_home))
    segments_file = snapshot.path / SEGMENTS_FILE
    if segments_file.is_file():
        segments = pd.read_parquet(segments_file)
        if segment_column in segments.columns:
            assignment = assignment.merge(
                segments[[Col.CUSTOMER_KEY, segment_column]].rename(columns={segment_column: "segment"}),
                on=Col.CUSTOMER_KEY,
                how="left",
            )
    costs = None
    if catalogue is not None:
        costs = {o.id: o.cost for o in catalogue.offers}
    margin = catalogue.margin_rate if catalogue is not None else None
    return measure(assignment, orders, horizon_days=horizon_days, offer_costs=costs, margin_rate=margin)


def base_with_mix(data_home: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The latest snapshot's features with each customer's category mix as of the snapshot, and the id map."""
    from models.lookalike import category_mix

    snapshot = latest_snapshot(Path(data_home))
    features = snapshot.read()
    tables = ingested_dir(Path(data_home))
    if (tables / "order_lines.parquet").is_file() and (tables / "items.parquet").is_file():
        lines = pd.read_parquet(tables / "order_lines.parquet", columns=[Col.CUSTOMER_KEY, Col.ITEM_ID, Col.ORDERED_AT])
        lines = lines[pd.to_datetime(lines[Col.ORDERED_AT], utc=True) < pd.Timestamp(snapshot.as_of)]
        mix = category_mix(lines, pd.read_parquet(tables / "items.parquet"))
        features = features.merge(mix, on=Col.CUSTOMER_KEY, how="left")
    ids = _id_map(data_home)
    return features, ids.sort_values([Col.CUSTOMER_KEY, Col.CUSTOMER_ID]).drop_duplicates(Col.CUSTOMER_KEY)


def lookalike_from_home(
    data_home: Path,
    seed_ids: Sequence[str],
    *,
    method: str = "pu",
    size: int | None = None,
    threshold: float | None = None,
) -> tuple[pd.DataFrame, list[str]]:
    """Rank the base by similarity to the customers ``seed_ids`` (the retailer's ids); the seed is left out.

    Returns:
        ``customer_id, customer_key, score, rank, reasons``, and the seed ids the data does not know.

    Raises:
        LookalikeError: fewer than 2 known seed customers.
    """
    from models.lookalike import Lookalike

    base, ids = base_with_mix(data_home)
    all_ids = _id_map(data_home)
    wanted = list(dict.fromkeys(str(s) for s in seed_ids))
    known = all_ids[all_ids[Col.CUSTOMER_ID].isin(wanted)]
    unknown = sorted(set(wanted) - set(known[Col.CUSTOMER_ID]))
    seed = sorted(set(known[Col.CUSTOMER_KEY]) & set(base[Col.CUSTOMER_KEY]))
    ranked = Lookalike(method=method).fit(base, seed).rank(base, size=size, threshold=threshold)
    ranked.insert(0, Col.CUSTOMER_ID, ranked[Col.CUSTOMER_KEY].map(ids.set_index(Col.CUSTOMER_KEY)[Col.CUSTOMER_ID]))
    return ranked, unknown
