"""Incrementality after a campaign: treated vs control, per campaign, offer and segment, with intervals.

The input is an **assignment**: one row per (customer, campaign) exposure decision with ``group``
(``treated`` or ``control``), the ``offer_id`` a treated row carried, the instant its outcome window
starts (``start``) and optionally a ``segment``. Two ways to build one:

* :func:`message_assignment`: from the message history alone. Within each campaign, the messages that
  carried an offer are treated and the messages that carried none are the control: valid when the offer
  was drawn at random among the campaign's recipients (a randomised send, as the synthetic world does).
* :func:`plan_assignment`: from a plan ``kairos campaign plan`` wrote: its planned sends are treated (by
  intention: a planned customer whose send failed stays treated, so nothing the campaign did is hidden)
  and its global-control members are the control, their windows starting at the campaign's first send.

:func:`measure` reads the orders that followed: **conversion** (at least one order in the
``horizon_days`` from ``start``) and **revenue** (their total amount), and per row of the report:

* absolute lift = conversion treated - control, relative lift = treated / control - 1, and the revenue
  difference per customer, each with a **delta-method** interval (normal approximation) whose standard
  errors are **clustered by customer** (a customer sent many messages contributes correlated rows; their
  sums, not the rows, are the independent units), so repeated sends do not fake precision;
* incremental revenue = revenue lift x treated rows; incremental profit = margin rate x incremental
  revenue - the offers' realised cost (each offer's cost model at the treated conversion rate and
  revenue per converter), when the margin rate and the costs are given;
* a verdict in words: "no measurable effect" when the absolute lift's interval spans zero.

:func:`render_html` draws the report as one self-contained HTML page (inline SVG, no script, no CDN).
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import norm

from features.contract import Col, OrderStatus
from features.errors import InputDataError
from models.decisioning.offers import CostModel

__all__ = [
    "CONTROL",
    "TREATED",
    "IncrementalityReport",
    "measure",
    "message_assignment",
    "plan_assignment",
    "render_html",
]

TREATED, CONTROL = "treated", "control"
ALL = "all"
ANY_OFFER = "any"
MIN_ROWS = 30  # fewer treated or control rows than this: no verdict
NO_EFFECT = "no measurable effect (the interval spans zero)"


@dataclass
class IncrementalityReport:
    """The report's rows and how they were measured."""

    table: pd.DataFrame
    horizon_days: float
    confidence: float
    method: str
    notes: list[str]

    def to_dict(self) -> dict[str, Any]:
        rows = self.table.replace({np.nan: None}).to_dict("records")
        return {
            "horizon_days": self.horizon_days,
            "confidence": self.confidence,
            "method": self.method,
            "notes": self.notes,
            "rows": rows,
        }


def message_assignment(messages: pd.DataFrame, campaign_ids: Sequence[str] | None = None) -> pd.DataFrame:
    """Offer vs no offer within each campaign of the message history (a randomised send).

    Raises:
        InputDataError: a column is missing, or no message belongs to the campaigns asked for.
    """
    need = [Col.CUSTOMER_KEY, Col.CAMPAIGN_ID, Col.SENT_AT, Col.OFFER_ID]
    missing = [c for c in need if c not in messages.columns]
    if missing:
        raise InputDataError(f"messages lack column(s) {missing}")
    rows = messages[messages[Col.CUSTOMER_KEY].notna() & messages[Col.CAMPAIGN_ID].notna()]
    if campaign_ids is not None:
        rows = rows[rows[Col.CAMPAIGN_ID].astype(str).isin([str(c) for c in campaign_ids])]
    if rows.empty:
        raise InputDataError("no message with a customer_key belongs to the campaign(s) asked for")
    offer = rows[Col.OFFER_ID].astype(object)
    return pd.DataFrame(
        {
            Col.CUSTOMER_KEY: rows[Col.CUSTOMER_KEY].astype(str).to_numpy(),
            Col.CAMPAIGN_ID: rows[Col.CAMPAIGN_ID].astype(str).to_numpy(),
            Col.OFFER_ID: offer.where(offer.notna(), None).to_numpy(),
            "group": np.where(offer.notna(), TREATED, CONTROL),
            "start": pd.to_datetime(rows[Col.SENT_AT], utc=True).to_numpy(),
        }
    )


def plan_assignment(plan: pd.DataFrame, messages: pd.DataFrame | None = None) -> pd.DataFrame:
    """Treated = the plan's planned sends (by intention), control = its control group (see the module
    docstring). ``messages`` (optional) adds ``sent``: whether a message reached the customer in the plan's
    window, for the report's notes.

    Raises:
        InputDataError: the plan lacks a column or plans no send.
    """
    need = [Col.CUSTOMER_KEY, "send", "send_at", "control_group", Col.OFFER_ID]
    missing = [c for c in need if c not in plan.columns]
    if missing:
        raise InputDataError(f"the plan lacks column(s) {missing}")
    send = plan["send"].astype(str).str.lower().isin(["true", "1"])
    control = plan["control_group"].astype(str).str.lower().isin(["true", "1"])
    at = pd.to_datetime(plan["send_at"], utc=True, format="mixed")
    if not send.any():
        raise InputDataError("the plan plans no send: nothing to measure")
    first = at[send].min()
    campaign = str(plan["campaign"].iloc[0]) if "campaign" in plan.columns else "plan"
    rows = plan[send | control]
    offer = rows[Col.OFFER_ID].astype(object)
    out = pd.DataFrame(
        {
            Col.CUSTOMER_KEY: rows[Col.CUSTOMER_KEY].astype(str).to_numpy(),
            Col.CAMPAIGN_ID: campaign,
            Col.OFFER_ID: offer.where(offer.notna() & (offer.astype(str) != ""), None).to_numpy(),
            "group": np.where(send[rows.index], TREATED, CONTROL),
            "start": np.where(send[rows.index], at[rows.index], first),
        }
    )
    out["start"] = pd.to_datetime(out["start"], utc=True)
    if messages is not None and not messages.empty:
        sent_to = set(
            messages.loc[pd.to_datetime(messages[Col.SENT_AT], utc=True) >= first, Col.CUSTOMER_KEY].astype(str)
        )
        out["sent"] = out[Col.CUSTOMER_KEY].isin(sent_to) & (out["group"] == TREATED)
    return out


def _days(values: pd.Series) -> np.ndarray:
    """Instants as float days since the epoch, whatever the column's time unit (ns, us, ...)."""
    since = pd.to_datetime(values, utc=True) - pd.Timestamp(0, tz="UTC")
    return np.asarray(since / pd.Timedelta(days=1), dtype=np.float64)


def _outcomes(assignment: pd.DataFrame, orders: pd.DataFrame, horizon_days: float) -> tuple[np.ndarray, np.ndarray]:
    """Per assignment row: converted (0/1) and revenue in ``[start, start + horizon)``."""
    need = [Col.CUSTOMER_KEY, Col.ORDERED_AT]
    missing = [c for c in need if c not in orders.columns]
    if missing:
        raise InputDataError(f"orders lack column(s) {missing}")
    o = orders[orders[Col.CUSTOMER_KEY].notna()]
    if Col.STATUS in o.columns:
        o = o[o[Col.STATUS].astype(str) != OrderStatus.CANCELLED.value]
    keys = pd.Index(sorted(set(assignment[Col.CUSTOMER_KEY]) | set(o[Col.CUSTOMER_KEY].astype(str))))
    code = keys.get_indexer(o[Col.CUSTOMER_KEY].astype(str))
    t = _days(o[Col.ORDERED_AT])
    amount = (
        pd.to_numeric(o[Col.AMOUNT], errors="coerce").fillna(0.0).to_numpy(dtype=float)
        if Col.AMOUNT in o.columns
        else np.zeros(len(o))
    )
    span = 1e6  # days: far beyond any export, so customers never overlap on the combined key
    order = np.lexsort((t, code))
    combined = code[order] * span + (t[order] - t.min() if len(t) else 0.0)
    cumulative = np.concatenate([[0.0], np.cumsum(amount[order])])
    a_code = keys.get_indexer(assignment[Col.CUSTOMER_KEY].astype(str))
    a_t = _days(assignment["start"])
    base = t.min() if len(t) else 0.0
    lo = np.searchsorted(combined, a_code * span + (a_t - base), side="left")
    hi = np.searchsorted(combined, a_code * span + (a_t - base + horizon_days), side="left")
    return (hi > lo).astype(float), cumulative[hi] - cumulative[lo]


def _clustered_mean(y: np.ndarray, cluster: np.ndarray) -> tuple[float, float]:
    """Mean of ``y`` and its variance with customers (integer codes) as clusters (CR1)."""
    n = len(y)
    m = float(y.mean())
    sums = np.bincount(cluster, weights=y - m)
    g = int(np.count_nonzero(np.bincount(cluster)))
    var = float((sums**2).sum() / n**2) * (g / (g - 1) if g > 1 else 1.0)
    return m, var


def _row(
    t: pd.DataFrame, c: pd.DataFrame, z: float, cost: CostModel | None, margin_rate: float | None, confidence: float
) -> dict[str, Any]:
    n_t, n_c = len(t), len(c)
    out: dict[str, Any] = {"treated": n_t, "control": n_c}
    if n_t == 0 or n_c == 0:
        return out | {"verdict": "no estimate: no treated or no control rows"}
    kt, kc = t["_cluster"].to_numpy(), c["_cluster"].to_numpy()
    ct, vt = _clustered_mean(t["converted"].to_numpy(), kt)
    cc, vc = _clustered_mean(c["converted"].to_numpy(), kc)
    rt, wt = _clustered_mean(t["revenue"].to_numpy(), kt)
    rc, wc = _clustered_mean(c["revenue"].to_numpy(), kc)
    lift, se = ct - cc, math.sqrt(vt + vc)
    rev, rev_se = rt - rc, math.sqrt(wt + wc)
    out |= {
        "conversion_treated": ct,
        "conversion_control": cc,
        "lift": lift,
        "lift_low": lift - z * se,
        "lift_high": lift + z * se,
        "revenue_treated": rt,
        "revenue_control": rc,
        "revenue_lift": rev,
        "revenue_lift_low": rev - z * rev_se,
        "revenue_lift_high": rev + z * rev_se,
        "incremental_conversions": lift * n_t,
        "incremental_revenue": rev * n_t,
    }
    if ct > 0 and cc > 0:
        log_se = math.sqrt(vt / ct**2 + vc / cc**2)
        ratio = math.log(ct / cc)
        out |= {
            "relative_lift": ct / cc - 1.0,
            "relative_low": math.exp(ratio - z * log_se) - 1.0,
            "relative_high": math.exp(ratio + z * log_se) - 1.0,
        }
    if cost is not None and margin_rate is not None:
        per_converter = rt / ct if ct > 0 else 0.0
        spent = float(cost.expected_cost(np.array([ct]), np.array([per_converter]))[0]) * n_t
        out |= {"offer_cost": spent, "incremental_profit": margin_rate * rev * n_t - spent}
    if min(n_t, n_c) < MIN_ROWS:
        out["verdict"] = f"no estimate: fewer than {MIN_ROWS} treated or control rows"
    elif out["lift_low"] > 0 or out["lift_high"] < 0:
        sign = "positive" if lift > 0 else "negative"
        span = f"{100 * out['lift_low']:+.1f} to {100 * out['lift_high']:+.1f}"
        out["verdict"] = f"{sign} effect: {100 * lift:+.1f} pts conversion ({span}, {100 * confidence:g} % interval)"
    else:
        out["verdict"] = NO_EFFECT
    return out


def measure(
    assignment: pd.DataFrame,
    orders: pd.DataFrame,
    *,
    horizon_days: float = 30.0,
    confidence: float = 0.95,
    offer_costs: Mapping[str, CostModel] | None = None,
    margin_rate: float | None = None,
    per_campaign: bool = True,
) -> IncrementalityReport:
    """Treated vs control per campaign, offer and segment (see the module docstring).

    Rows: every (campaign, offer) (treated rows carrying the offer vs the campaign's control), each offer
    over all campaigns, each campaign with any offer, and each (segment, offer) over all campaigns when the
    assignment has a ``segment`` column. ``campaign_id`` ``all``, ``offer_id`` ``any`` and ``segment``
    ``all`` mark pooled rows; ``per_campaign=False`` leaves out the per-campaign rows (a long history
    has hundreds of campaigns).

    Raises:
        InputDataError: a column is missing, or the assignment is empty.
    """
    need = [Col.CUSTOMER_KEY, Col.CAMPAIGN_ID, Col.OFFER_ID, "group", "start"]
    missing = [c for c in need if c not in assignment.columns]
    if missing:
        raise InputDataError(f"the assignment lacks column(s) {missing}")
    if assignment.empty:
        raise InputDataError("the assignment is empty: no treated or control customer to compare")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    z = float(norm.ppf(0.5 + confidence / 2))
    a = assignment.reset_index(drop=True).copy()
    a["converted"], a["revenue"] = _outcomes(a, orders, horizon_days)
    a["_cluster"] = pd.factorize(a[Col.CUSTOMER_KEY])[0]
    a[Col.OFFER_ID] = a[Col.OFFER_ID].astype(object).where(a[Col.OFFER_ID].notna(), None)
    has_segment = "segment" in a.columns
    if has_segment:
        a["segment"] = a["segment"].astype(object).where(a["segment"].notna(), "unknown").astype(str)
    costs = offer_costs or {}
    treated, control = a[a["group"] == TREATED], a[a["group"] == CONTROL]
    offers = sorted({str(o) for o in treated[Col.OFFER_ID].dropna()})
    rows: list[dict[str, Any]] = []

    def add(campaign: str, offer: str, segment: str, t: pd.DataFrame, c: pd.DataFrame) -> None:
        cost = costs.get(offer) if offer != ANY_OFFER else None
        rows.append(
            {Col.CAMPAIGN_ID: campaign, Col.OFFER_ID: offer, "segment": segment}
            | _row(t, c, z, cost, margin_rate, confidence)
        )

    control_of = dict(tuple(control.groupby(Col.CAMPAIGN_ID, sort=False)))
    for campaign, t_rows in treated.groupby(Col.CAMPAIGN_ID, sort=True) if per_campaign else ():
        c_rows = control_of.get(campaign, control.iloc[:0])
        add(str(campaign), ANY_OFFER, ALL, t_rows, c_rows)
        for offer, o_rows in t_rows.groupby(Col.OFFER_ID, sort=True):
            add(str(campaign), str(offer), ALL, o_rows, c_rows)
    for offer in offers:
        add(ALL, offer, ALL, treated[treated[Col.OFFER_ID] == offer], control)
    if has_segment:
        for segment in sorted(set(a["segment"])):
            t_seg, c_seg = treated[treated["segment"] == segment], control[control["segment"] == segment]
            add(ALL, ANY_OFFER, segment, t_seg, c_seg)
            for offer in offers:
                add(ALL, offer, segment, t_seg[t_seg[Col.OFFER_ID] == offer], c_seg)
    table = pd.DataFrame(rows)
    notes = [
        f"conversion: at least one order in the {horizon_days:g} days from the send (control: from its own "
        "campaign's send or start); revenue: their total amount",
        f"intervals: {100 * confidence:g} % delta method (normal approximation), standard errors clustered by customer",
    ]
    if margin_rate is None or not costs:
        notes.append("incremental profit needs the catalogue (margin rate and offer costs): not computed")
    if "sent" in a.columns:
        planned = int((a["group"] == TREATED).sum())
        notes.append(f"{int(a['sent'].sum())} of {planned} planned sends reached their customer (intention to treat)")
    return IncrementalityReport(table, horizon_days, confidence, "delta method, customer-clustered", notes)


# --- the HTML report ------------------------------------------------------------------------------------


def _pts(x: Any) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * float(x):+.1f}"


def _chart(rows: pd.DataFrame, title: str) -> str:
    """Horizontal bars: each row's absolute lift (pts) with its interval; zero marked."""
    if rows.empty or "lift" not in rows.columns:
        return ""
    rows = rows[rows["lift"].notna()]
    if rows.empty:
        return ""
    lo = float(min(rows["lift_low"].min(), 0.0))
    hi = float(max(rows["lift_high"].max(), 0.0))
    span = hi - lo or 1.0
    left, width, step = 220, 460, 24
    height = 40 + step * len(rows)

    def x(v: float) -> float:
        return left + width * (v - lo) / span

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 80}" height="{height}" role="img" '
        f'aria-label="{html.escape(title)}">',
        f'<text x="4" y="16" font-size="13" font-weight="bold">{html.escape(title)}</text>',
        f'<line x1="{x(0):.1f}" y1="24" x2="{x(0):.1f}" y2="{height - 8}" stroke="#444" stroke-dasharray="3,3"/>',
    ]
    for i, r in enumerate(rows.itertuples(index=False)):
        y = 34 + step * i
        label = f"{r.campaign_id} / {r.offer_id} / {r.segment}"
        colour = "#2a7" if r.lift_low > 0 else "#c33" if r.lift_high < 0 else "#888"
        parts += [
            f'<text x="4" y="{y + 12}" font-size="11">{html.escape(label)}</text>',
            f'<rect x="{min(x(0), x(r.lift)):.1f}" y="{y + 3}" width="{abs(x(r.lift) - x(0)):.1f}" height="12" '
            f'fill="{colour}" opacity="0.6"/>',
            f'<line x1="{x(r.lift_low):.1f}" y1="{y + 9}" x2="{x(r.lift_high):.1f}" y2="{y + 9}" stroke="#000"/>',
            f'<text x="{left + width + 6}" y="{y + 12}" font-size="11">{_pts(r.lift)} pts</text>',
        ]
    parts.append("</svg>")
    return "".join(parts)


def render_html(report: IncrementalityReport, title: str = "Campaign incrementality") -> str:
    """One self-contained HTML page: notes, a lift chart per level (offers, campaigns, segments), the table."""
    t = report.table
    sections = []
    levels = (
        ("Offers over all campaigns", (t[Col.CAMPAIGN_ID] == ALL) & (t["segment"] == ALL)),
        ("Campaigns (any offer)", (t[Col.CAMPAIGN_ID] != ALL) & (t[Col.OFFER_ID] == ANY_OFFER)),
        ("Segments (any offer)", (t["segment"] != ALL) & (t[Col.OFFER_ID] == ANY_OFFER)),
    )
    for name, mask in levels:
        chart = _chart(t[mask].head(40), f"{name}: conversion lift, pts, {100 * report.confidence:g} % interval")
        if chart:
            sections.append(f"<h2>{html.escape(name)}</h2>{chart}")
    columns = [
        Col.CAMPAIGN_ID,
        Col.OFFER_ID,
        "segment",
        "treated",
        "control",
        "conversion_treated",
        "conversion_control",
        "lift",
        "lift_low",
        "lift_high",
        "relative_lift",
        "revenue_lift",
        "incremental_profit",
        "verdict",
    ]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns if c in t.columns)
    body = []
    for r in t.to_dict("records"):
        cells = []
        for c in columns:
            if c not in t.columns:
                continue
            v = r.get(c)
            if isinstance(v, float):
                text = (
                    "–"
                    if math.isnan(v)
                    else (f"{100 * v:.2f} %" if c.startswith(("conversion", "lift", "relative")) else f"{v:,.2f}")
                )
            else:
                text = "–" if v is None else str(v)
            cells.append(f"<td>{html.escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in report.notes)
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>body{{font-family:sans-serif;margin:1.5em}}"
        "table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;padding:3px 6px}</style>"
        f"</head><body><h1>{html.escape(title)}</h1><ul>{notes}</ul>{''.join(sections)}"
        f"<h2>All rows</h2><table><tr>{head}</tr>{''.join(body)}</table></body></html>"
    )
