"""The offers job's campaign path: what campaign exposures and coupon redemptions can teach, said honestly.

Where the export has campaigns and exposures (who received which campaign, when) but no logged sends of
offers drawn at random (the ``messages`` the uplift job learns from), ``kairos train offers
--from-campaigns`` builds one row per campaign:

- **exposed**: the customers who received it (the outcome window starts at the campaign's start);
- **control**: customers of the same wave who were not exposed, where the data has them: customers who
  bought in the ``history_days`` before the campaign started and received no campaign running during
  its outcome window (this one or any other);
- **outcome**: a purchase (and the spend, when the export has prices) in the ``horizon_days`` from the
  campaign's start; **redeemed**: the exposed customers who redeemed one of its coupons.

A difference between exposed and control is an uplift only when who was exposed was drawn at random.
Campaigns are usually targeted (Complete Journey's mailers went to chosen households), and then the
exposed buy more because they were chosen for it. So the job claims uplift only for a campaign the
mapping declares ``randomised: true``; with ``adjust`` it estimates a propensity-corrected effect for a
targeted campaign (inverse-probability weights from a logistic model of exposure on the customers'
orders, spend and recency before the start), reports the propensity's overlap and the control's
effective sample size, and labels it an estimate under the assumption that nothing else drove the
targeting. Every other campaign gets its rates and an ``association only`` label, never an uplift.
Nothing is registered: a next-best-offer policy needs offers with margins and costs (the catalogue)
and randomised sends; this path says what the campaigns show and why it is or is not causal.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from bundles import registry
from features.contract import Col, OrderStatus
from features.errors import KairosError
from features.ingest import require_dates
from features.store import open_tables

EXPERIMENT = "kairos-offers-campaigns"
EXPOSED = "exposed"
BOUGHT = "bought"
SPEND = "spend"
COVARIATES = ("orders_before", "spend_before", "days_since_order")
MIN_GROUP = 10  # fewer exposed or control customers than this: no estimate, whatever the design
MIN_ESS = 30.0  # a weighted control worth fewer customers than this: the propensity correction is refused
MAX_SMD = 0.1  # weighted control and exposed must agree on every covariate to this standardised difference
CLIP = 0.99  # propensities are clipped to [1 - CLIP, CLIP] before weighting

RANDOMISED = "uplift (randomised campaign)"
ADJUSTED = "propensity-adjusted estimate (targeted campaign; assumes orders, spend and recency explain the targeting)"
ASSOCIATION = "association only, not uplift: the campaign was targeted, not randomised"
NO_CONTROL = "no estimate: no comparable customer went without it"
TOO_FEW = f"no estimate: fewer than {MIN_GROUP} exposed or control customers"
NO_OVERLAP = f"no estimate: the propensity weights leave a control worth fewer than {MIN_ESS:.0f} customers"
UNBALANCED = f"no estimate: the weighted control still differs from the exposed (standardised difference > {MAX_SMD})"


class NoCampaignDataError(KairosError):
    """The export has no campaign exposures to learn from; the message says what is missing."""


@dataclass
class CampaignRun:
    """What a run produced: one row per campaign, and the MLflow run that logged it."""

    run_id: str
    table: pd.DataFrame
    prices: bool


def campaign_rows(
    tables: dict[str, pd.DataFrame], *, horizon_days: int = 30, history_days: int = 90
) -> tuple[pd.DataFrame, bool]:
    """One row per (campaign, customer) for the exposed and the control of each campaign, with the
    pre-start covariates (:data:`COVARIATES`), ``exposed``, ``bought`` and ``spend`` in the outcome window.

    Args:
        tables: ``campaigns``, ``exposures`` and ``orders`` (pandas frames of the ingested tables), and
            ``redemptions`` when the export has them.
        horizon_days: the outcome window from the campaign's start.
        history_days: the window before the start in which a control customer must have bought.

    Returns:
        The rows, and whether the orders carry amounts (spend is empty without prices).

    Raises:
        NoCampaignDataError: no exposures, or no campaign with a start time.
    """
    exposures, campaigns, orders = tables.get("exposures"), tables.get("campaigns"), tables["orders"]
    if exposures is None or exposures.empty:
        raise NoCampaignDataError("no campaign exposures in the export (map the exposures table)")
    if campaigns is None or campaigns[Col.STARTS_AT].notna().sum() == 0:
        raise NoCampaignDataError("no campaign with a start time (map campaigns.starts_at)")
    campaigns = campaigns[campaigns[Col.STARTS_AT].notna()].copy()
    campaigns[Col.STARTS_AT] = pd.to_datetime(campaigns[Col.STARTS_AT], utc=True)
    exposed_to = exposures[exposures[Col.CUSTOMER_KEY].notna()]
    orders = orders[orders[Col.CUSTOMER_KEY].notna() & (orders[Col.STATUS].fillna("") != OrderStatus.CANCELLED.value)]
    orders = orders.assign(**{Col.ORDERED_AT: pd.to_datetime(orders[Col.ORDERED_AT], utc=True)})
    prices = bool(orders[Col.AMOUNT].notna().any())
    horizon, history = pd.Timedelta(days=horizon_days), pd.Timedelta(days=history_days)
    spans = campaigns.set_index(Col.CAMPAIGN_ID)[Col.STARTS_AT]
    parts = []
    for campaign_id, start in spans.items():
        stop = start + horizon
        overlapping = spans[(spans < stop) & (spans + horizon > start)].index  # campaigns live in the window
        treated = set(exposed_to.loc[exposed_to[Col.CAMPAIGN_ID] == campaign_id, Col.CUSTOMER_KEY])
        if not treated:
            continue
        touched = set(exposed_to.loc[exposed_to[Col.CAMPAIGN_ID].isin(overlapping), Col.CUSTOMER_KEY])
        before = orders[(orders[Col.ORDERED_AT] < start)]
        active = set(before.loc[before[Col.ORDERED_AT] >= start - history, Col.CUSTOMER_KEY])
        control = active - touched
        who = pd.Index(sorted(treated | control), name=Col.CUSTOMER_KEY)
        prior = before.groupby(Col.CUSTOMER_KEY)
        after = orders[(orders[Col.ORDERED_AT] >= start) & (orders[Col.ORDERED_AT] < stop)].groupby(Col.CUSTOMER_KEY)
        last = prior[Col.ORDERED_AT].max().reindex(who)
        rows = pd.DataFrame(
            {
                Col.CAMPAIGN_ID: campaign_id,
                "start": start,
                EXPOSED: who.isin(list(treated)).astype(np.int8),
                "orders_before": prior.size().reindex(who).fillna(0).to_numpy(dtype=float),
                "spend_before": prior[Col.AMOUNT].sum(min_count=1).reindex(who).to_numpy(dtype=float),
                "days_since_order": ((start - last).dt.total_seconds() / 86_400.0).to_numpy(dtype=float),
                BOUGHT: after.size().reindex(who).fillna(0).gt(0).astype(np.int8).to_numpy(),
                SPEND: after[Col.AMOUNT].sum(min_count=1).reindex(who).fillna(0.0).to_numpy(dtype=float)
                if prices
                else np.nan,
            },
            index=who,
        )
        parts.append(rows.reset_index())
    if not parts:
        raise NoCampaignDataError("no exposure belongs to a campaign with a start time")
    return pd.concat(parts, ignore_index=True), prices


def _difference(y: np.ndarray, t: np.ndarray) -> tuple[float, float]:
    """Difference of means exposed - control, and its standard error."""
    a, b = y[t == 1], y[t == 0]
    return float(a.mean() - b.mean()), float(np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b)))


@dataclass(frozen=True)
class Adjusted:
    """A propensity-weighted comparison and its diagnostics."""

    effect: float  # purchase rate of the exposed minus the weighted control's (the effect on the exposed)
    ess: float  # the weighted control's effective sample size
    beyond: float  # share of the exposed with a propensity above CLIP (no comparable control)
    top_weight: float  # the largest control weight's share of the total
    smd: float  # the largest standardised covariate difference, exposed vs weighted control


def _adjusted(rows: pd.DataFrame) -> Adjusted:
    """The effect on the exposed (ATT) with inverse-probability weights on the control: a logistic
    propensity of exposure on the pre-start covariates (each as is and on a log scale), clipped to
    [1 - CLIP, CLIP]; with the diagnostics that decide whether it may be reported (balance is checked on
    the log scale, where a few heavy spenders cannot hide an imbalance of everyone else)."""
    raw = rows[list(COVARIATES)].astype(float)
    x = np.log1p(raw.clip(lower=0).fillna(raw.median()).fillna(0.0)).to_numpy()
    t = rows[EXPOSED].to_numpy()
    scaled = StandardScaler().fit_transform(np.hstack([x, np.expm1(x)]))  # each covariate as is and logged
    p = LogisticRegression(max_iter=1000).fit(scaled, t).predict_proba(scaled)[:, 1]
    clipped = np.clip(p, 1 - CLIP, CLIP)
    wc = (clipped / (1 - clipped))[t == 0]
    xe, xc = x[t == 1], x[t == 0]
    spread = np.sqrt((xe.var(axis=0) + xc.var(axis=0)) / 2)
    gap = np.abs(xe.mean(axis=0) - np.average(xc, axis=0, weights=wc))
    smd = float(np.max(np.where(spread > 0, gap / np.where(spread > 0, spread, 1.0), 0.0)))
    y = rows[BOUGHT].to_numpy(dtype=float)
    return Adjusted(
        effect=float(y[t == 1].mean() - np.average(y[t == 0], weights=wc)),
        ess=float(wc.sum() ** 2 / (wc**2).sum()),
        beyond=float((p[t == 1] > CLIP).mean()),
        top_weight=float(wc.max() / wc.sum()),
        smd=smd,
    )


def campaign_effects(rows: pd.DataFrame, randomised: set[str], *, adjust: bool, prices: bool) -> pd.DataFrame:
    """Per campaign: the groups, their purchase (and spend) rates, redemptions, and what may be claimed.

    ``uplift`` (purchase-rate points) is filled only for a campaign declared randomised (the difference
    of means, with ``uplift_se``; ``spend_uplift`` too when the export has prices) or, with ``adjust``, by
    the propensity correction when its weighted control is worth at least :data:`MIN_ESS` customers and
    matches the exposed on every covariate (standardised difference at most :data:`MAX_SMD`, in
    ``max_smd``); ``claim`` says which, or why there is none. The correction gives no spend figure (spend's
    tail makes weighted means unstable). ``difference`` is the raw exposed - control purchase rate: not
    causal unless the claim says so.
    """
    out = []
    for campaign_id, group in rows.groupby(Col.CAMPAIGN_ID, sort=False):
        t = group[EXPOSED].to_numpy()
        n_exp, n_ctl = int(t.sum()), int((t == 0).sum())
        y = group[BOUGHT].to_numpy(dtype=float)
        row: dict[str, object] = {
            Col.CAMPAIGN_ID: campaign_id,
            "start": group["start"].iloc[0],
            "randomised": campaign_id in randomised,
            "exposed": n_exp,
            "control": n_ctl,
            "bought_exposed": float(y[t == 1].mean()),
            "bought_control": float(y[t == 0].mean()) if n_ctl else np.nan,
            "difference": float(y[t == 1].mean() - y[t == 0].mean()) if n_ctl else np.nan,
            "spend_exposed": float(group.loc[t == 1, SPEND].mean()) if prices else np.nan,
            "spend_control": float(group.loc[t == 0, SPEND].mean()) if prices and n_ctl else np.nan,
            "uplift": np.nan,
            "uplift_se": np.nan,
            "spend_uplift": np.nan,
            "control_ess": np.nan,
            "max_smd": np.nan,
            "claim": ASSOCIATION,
        }
        if n_ctl == 0:
            row["claim"] = NO_CONTROL
        elif min(n_exp, n_ctl) < MIN_GROUP:
            row["claim"] = TOO_FEW
        elif campaign_id in randomised:
            row["uplift"], row["uplift_se"] = _difference(y, t)
            if prices:
                row["spend_uplift"] = _difference(group[SPEND].to_numpy(dtype=float), t)[0]
            row["control_ess"], row["claim"] = float(n_ctl), RANDOMISED
        elif adjust:
            a = _adjusted(group)
            row["control_ess"], row["max_smd"] = a.ess, a.smd
            if a.ess < MIN_ESS:
                row["claim"] = f"{NO_OVERLAP} ({a.ess:.1f}; {a.beyond:.0%} of the exposed beyond {CLIP})"
            elif a.smd > MAX_SMD:
                row["claim"] = f"{UNBALANCED} ({a.smd:.2f})"
            else:
                row["uplift"] = a.effect
                row["claim"] = f"{ADJUSTED}; largest control weight {a.top_weight:.0%} of the total"
        out.append(row)
    return pd.DataFrame(out)


def redemption_rates(rows: pd.DataFrame, redemptions: pd.DataFrame | None) -> pd.Series:
    """Per campaign: the share of its exposed customers who redeemed one of its coupons (empty: no data)."""
    exposed = rows[rows[EXPOSED] == 1]
    if redemptions is None or redemptions.empty or Col.CAMPAIGN_ID not in redemptions.columns:
        return pd.Series(np.nan, index=exposed[Col.CAMPAIGN_ID].unique(), dtype=float)
    redeemed = set(
        zip(redemptions[Col.CAMPAIGN_ID].astype(str), redemptions[Col.CUSTOMER_KEY].astype(str), strict=True)
    )
    hit = [
        (str(c), str(k)) in redeemed for c, k in zip(exposed[Col.CAMPAIGN_ID], exposed[Col.CUSTOMER_KEY], strict=True)
    ]
    return exposed.assign(redeemed=hit).groupby(Col.CAMPAIGN_ID, sort=False)["redeemed"].mean()


def summary(table: pd.DataFrame) -> str:
    """What the run can and cannot claim, in two sentences."""
    causal = int(table["uplift"].notna().sum())
    return (
        f"{len(table)} campaigns: uplift estimated for {causal} ({int(table['randomised'].sum())} declared "
        f"randomised); the other {len(table) - causal} show rates and an association only. Campaign exposure "
        "is not randomised unless the mapping says so (campaigns.randomised), so a higher purchase rate among "
        "the exposed is not, by itself, an effect of the campaign."
    )


def train_campaign_effects(
    data_home: Path,
    tracking_uri: str,
    *,
    adjust: bool = False,
    horizon_days: int = 30,
    history_days: int = 90,
    as_of: datetime | None = None,
) -> CampaignRun:
    """Build the campaign rows, estimate what each campaign allows, log the table to MLflow (nothing is
    registered: see the module docstring).

    Raises:
        NoDatesError: the export has no order times.
        NoCampaignDataError: no exposures, or no campaign with a start time.
    """
    require_dates(data_home, "kairos train offers --from-campaigns")
    opened = open_tables(Path(data_home), as_of=as_of)
    wanted = ("campaigns", "exposures", "orders", "redemptions")
    tables = {name: opened[name].execute() for name in wanted if name in opened}
    rows, prices = campaign_rows(tables, horizon_days=horizon_days, history_days=history_days)
    declared = tables.get("campaigns", pd.DataFrame(columns=[Col.CAMPAIGN_ID, Col.RANDOMISED]))
    randomised = set(declared.loc[declared[Col.RANDOMISED].fillna(False).astype(bool), Col.CAMPAIGN_ID].astype(str))
    table = campaign_effects(rows, randomised, adjust=adjust, prices=prices)
    rates = redemption_rates(rows, tables.get("redemptions"))
    table["redeemed"] = table[Col.CAMPAIGN_ID].map(rates)
    with registry.job_run(tracking_uri, EXPERIMENT, "offers-campaigns") as job:
        mlflow.log_params(
            {
                "horizon_days": horizon_days,
                "history_days": history_days,
                "adjust": adjust,
                "data_as_of": as_of.isoformat() if as_of else "all",
            }
        )
        mlflow.log_metrics(
            {"campaigns": float(len(table)), "campaigns_with_uplift": float(table["uplift"].notna().sum())}
        )
        mlflow.log_text(table.to_csv(index=False), "campaign_effects.csv")
        mlflow.log_text(summary(table) + "\n", "summary.txt")
    return CampaignRun(job.run_id, table, prices)
