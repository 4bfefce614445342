"""A campaign plan in one call: per customer the channel, the send time, the offer (or none), control-group
membership and the reasons; and totals that are sums of the items.

Inputs: the audience (a feature frame, one row per customer), the offer catalogue, the campaign's
allowed channels, dates and budget (:class:`CampaignSpec`), each customer's contact state, and the
fitted models when there are some (uplift through :class:`~models.decisioning.nbo.NextBestOffer`, the
channel preference, the send-time curves). Per customer:

1. **Channels**: the campaign's allowed channels, ∩ the channels consented at the campaign's start (the
   contact state's consent records *and* the ``consent_*`` features: consent is a hard filter, read twice),
   ∩ those the contact policy (caps, quiet hours, offer cooldown) allows at some instant before the
   campaign ends; ordered by the channel preference when there is one, else e-mail, SMS, push.
2. **Offer**: :func:`~models.decisioning.nbo.allocate` over the whole audience at once (the budget is
   the campaign's), each customer's offer limited to the channels of step 1. The global control group
   gets nothing and is counted.
3. **Send**: a customer with an offer gets it on the first of its usable channels; with
   ``send_without_offer`` a contactable customer without an offer still gets the campaign's message on
   their first usable channel. The send time is the send-time model's best slot in the 24 hours from the
   first instant the policy allows (never after the campaign ends), checked against the policy again;
   without a model, that first allowed instant.

Totals (:func:`totals`) are computed from the items, so they add up by construction; the tests check
them against independent sums anyway.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from features.contract import Channel, Col
from features.errors import KairosError
from models.decisioning.channel import ChannelPreference
from models.decisioning.nbo import CONSENT_COLUMNS, NextBestOffer, Status
from models.decisioning.policy import ContactPolicy, ContactState
from models.decisioning.sendtime import SendTimeModel

__all__ = ["ITEM_COLUMNS", "CampaignPlan", "CampaignSpec", "PlanError", "plan_campaign", "totals"]

CHANNEL_ORDER: tuple[str, ...] = tuple(c.value for c in Channel)
SEND_STATUSES = frozenset({Status.OFFER.value, Status.NO_OFFER.value, Status.OVER_BUDGET.value})
ITEM_COLUMNS = [
    Col.CUSTOMER_KEY,
    "decision",
    "send",
    "channel",
    "send_at",
    "send_at_local",
    "send_time_source",
    Col.OFFER_ID,
    "control_group",
    "expected_cost",
    "expected_profit",
    "uplift",
    "usable_channels",
    "reasons",
]


class PlanError(KairosError):
    """A campaign that cannot be planned as asked; the message names the field."""


class CampaignSpec(BaseModel):
    """What the campaign may do: its channels, its dates and its budget (expected offer cost)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(default="campaign", min_length=1, max_length=128)
    channels: tuple[Channel, ...] = Field(min_length=1, description="Channels the campaign may use.")
    starts_at: datetime = Field(description="First instant a message may go out (timezone-aware).")
    ends_at: datetime = Field(description="No message at or after this instant.")
    budget: float | None = Field(default=None, ge=0, description="Expected cost of the offers; None: unlimited.")
    send_without_offer: bool = Field(
        default=True, description="Contactable customers without an offer still get the campaign's message."
    )

    @field_validator("starts_at", "ends_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("must be timezone-aware (e.g. 2026-03-01T09:00:00Z)")
        return value.astimezone(UTC)

    @model_validator(mode="after")
    def _order(self) -> CampaignSpec:
        if self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        if len(set(self.channels)) != len(self.channels):
            raise ValueError("channels are listed twice")
        return self


@dataclass
class CampaignPlan:
    """The items (one row per customer of the audience, in order) and their totals."""

    spec: CampaignSpec
    items: pd.DataFrame
    totals: dict[str, Any]


def _consent_features(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    out = {}
    for channel, column in CONSENT_COLUMNS.items():
        if column in frame.columns:
            out[channel.value] = pd.to_numeric(frame[column], errors="coerce").fillna(0).to_numpy() >= 0.5
    return out


def _usable(
    keys: np.ndarray,
    frame: pd.DataFrame,
    spec: CampaignSpec,
    states: Mapping[str, ContactState],
    policy: ContactPolicy,
    preference: ChannelPreference | None,
    progress: Callable[[float], None],
) -> tuple[list[list[str]], dict[tuple[str, str], datetime], list[list[str]]]:
    """Per customer: usable channels (ordered), the first allowed instant per (customer, channel), why not."""
    allowed = [c for c in CHANNEL_ORDER if c in {str(ch) for ch in spec.channels}]
    consent_cols = _consent_features(frame)
    start, end = spec.starts_at, spec.ends_at
    usable: list[list[str]] = []
    first_at: dict[tuple[str, str], datetime] = {}
    why: list[list[str]] = []
    n = len(keys)
    step = max(1, n // 20)
    for i, key in enumerate(keys):
        state = states.get(key) or ContactState(customer_key=key)
        consented = state.consented(start)
        chans, reasons = [], []
        for channel in allowed:
            if channel not in consented or not (channel in consent_cols and consent_cols[channel][i]):
                reasons.append(f"no consent on {channel}")
                continue
            permission = policy.may_contact(state, channel, start, with_offer=True)
            at = permission.next_allowed_at
            if at is not None and at < end:
                chans.append(channel)
                first_at[(key, channel)] = at
            else:
                reasons += permission.reasons or [f"{channel}: not allowed before the campaign ends"]
        if preference is not None and len(chans) > 1:
            chans = [s.channel for s in preference.scores(key, chans)]
        usable.append(chans)
        why.append(reasons)
        if i % step == 0:
            progress(0.5 * i / n)
    return usable, first_at, why


def _send_times(
    items: pd.DataFrame,
    first_at: Mapping[tuple[str, str], datetime],
    spec: CampaignSpec,
    states: Mapping[str, ContactState],
    policy: ContactPolicy,
    sendtime: SendTimeModel | None,
) -> tuple[list[datetime | None], list[datetime | None], list[str]]:
    n = len(items)
    send_at: list[datetime | None] = [None] * n
    local: list[datetime | None] = [None] * n
    source = [""] * n
    rows = np.flatnonzero(items["send"].to_numpy(dtype=bool))
    all_keys = items[Col.CUSTOMER_KEY].astype(str).tolist()
    all_channels = items["channel"].astype(object).tolist()
    groups: dict[tuple[str, datetime], list[int]] = {}
    for i in rows.tolist():
        key, channel = all_keys[i], str(all_channels[i])
        at = first_at[(key, channel)]
        send_at[i], source[i] = at, "policy"
        groups.setdefault((channel, at), []).append(i)
    if sendtime is None:
        return send_at, local, source
    quiet = policy.config.quiet_hours
    for (channel, at), members in groups.items():
        window = min(timedelta(hours=24), spec.ends_at - at)
        keys = [all_keys[i] for i in members]
        zones = [(states.get(k) or ContactState(customer_key=k)).timezone for k in keys]
        best = sendtime.best_slots_batch(keys, channel, at, window, quiet, timezones=zones)
        for i, key, b_at, b_local, src in zip(
            members, keys, best["best_at"].tolist(), best["best_local"].tolist(), best["source"].tolist(), strict=True
        ):
            if b_at is None or pd.isna(b_at):
                continue
            b_at = pd.Timestamp(b_at).to_pydatetime()
            state = states.get(key) or ContactState(customer_key=key)
            if b_at < spec.ends_at and policy.allowed_at(state, channel, b_at, with_offer=True):
                send_at[i], local[i], source[i] = b_at, pd.Timestamp(b_local).to_pydatetime(), str(src)
    return send_at, local, source


def plan_campaign(
    frame: pd.DataFrame,
    nbo: NextBestOffer,
    spec: CampaignSpec,
    *,
    states: Mapping[str, ContactState],
    policy: ContactPolicy | None = None,
    preference: ChannelPreference | None = None,
    sendtime: SendTimeModel | None = None,
    history: pd.DataFrame | None = None,
    progress: Callable[[float], None] | None = None,
) -> CampaignPlan:
    """Plan a campaign for every customer of ``frame`` (see the module docstring).

    Args:
        frame: the audience, one row per customer: ``customer_key``, the features and segment columns
            the offers' rules and the uplift model read, and ``consent_email/sms/push``.
        nbo: the catalogue, the uplift model (or none: the playbook's rules) and the control group.
        spec: the campaign's channels, dates and budget.
        states: customer_key -> contact state (consent records, recent sends, time zone); a customer
            without one has no consent and is never contacted.
        policy: the contact policy (default settings when None).
        preference: the channel preference (None: e-mail, SMS, push in that order).
        sendtime: the send-time curves (None: the first instant the policy allows).
        history: logged sends (``customer_key, offer_id, sent_at``) for the offers' per-customer limits.
        progress: called with the share done, from 0 to 1.

    Raises:
        PlanError: a customer listed twice, or no customer_key column.
    """
    report = progress or (lambda share: None)
    policy = policy or ContactPolicy()
    if Col.CUSTOMER_KEY not in frame.columns:
        raise PlanError("the audience needs a customer_key column")
    frame = frame.reset_index(drop=True)
    keys = frame[Col.CUSTOMER_KEY].astype(str).to_numpy()
    twice = pd.Index(keys)[pd.Index(keys).duplicated()]
    if len(twice):
        raise PlanError(f"customer_ids: {len(twice)} customer(s) listed twice, e.g. {twice[0]!r}")
    report(0.0)
    usable, first_at, why = _usable(keys, frame, spec, states, policy, preference, report)
    usable_map = dict(zip(keys, usable, strict=True))
    if len(frame):
        decided, _ = nbo.allocate(
            frame, now=spec.starts_at, budget=spec.budget, allowed_channels=usable_map, history=history
        )
    else:
        columns = [Col.CUSTOMER_KEY, "status", Col.OFFER_ID, "channel", "reason", "expected_cost", "expected_profit"]
        decided = pd.DataFrame({c: pd.Series(dtype=float if c.startswith("expected") else object) for c in columns})
        decided["uplift"] = pd.Series(dtype=float)
    report(0.7)
    status = decided["status"].astype(str).to_numpy()
    has_offer = status == Status.OFFER.value
    offered_on = decided["channel"].astype(object).tolist()
    said = decided["reason"].astype(str).tolist()
    contactable = np.array([bool(u) for u in usable], dtype=bool)
    send = has_offer | (spec.send_without_offer & contactable & np.isin(status, list(SEND_STATUSES)))
    channel = [(str(offered_on[i]) if has_offer[i] else (usable[i][0] if send[i] else None)) for i in range(len(keys))]
    items = pd.DataFrame(
        {
            Col.CUSTOMER_KEY: keys,
            "decision": status,
            "send": send,
            "channel": channel,
            Col.OFFER_ID: np.where(has_offer, decided[Col.OFFER_ID].astype(object), None),
            "control_group": status == Status.CONTROL.value,
            "expected_cost": np.where(has_offer, decided["expected_cost"].to_numpy(dtype=float), 0.0),
            "expected_profit": np.where(has_offer, decided["expected_profit"].to_numpy(dtype=float), 0.0),
            "uplift": np.where(has_offer, decided["uplift"].to_numpy(dtype=float), 0.0),
            "usable_channels": [",".join(u) for u in usable],
        }
    )
    send_at, local, source = _send_times(items, first_at, spec, states, policy, sendtime)
    items["send_at"] = pd.to_datetime(pd.Series(send_at, dtype=object), utc=True)
    items["send_at_local"] = [t.isoformat() if t is not None else None for t in local]
    items["send_time_source"] = [s or None for s in source]
    reasons = []
    for i in range(len(keys)):
        words = [said[i]]
        if send[i]:
            words.append(
                f"channel {channel[i]}: first usable of {', '.join(usable[i])} (allowed, consented, preferred)"
            )
            words.append(f"send time from {source[i]}")
        elif not usable[i]:
            words.append("not contacted: " + ("; ".join(dict.fromkeys(why[i])) or "no usable channel"))
        reasons.append(" | ".join(words))
    items["reasons"] = reasons
    items = items[ITEM_COLUMNS]
    report(1.0)
    return CampaignPlan(spec, items, totals(items, spec))


def totals(items: pd.DataFrame, spec: CampaignSpec | None = None) -> dict[str, Any]:
    """The plan's totals, summed from its items: sends per channel, offers per offer, expected cost and
    incremental profit, control size, and customers per decision."""
    sent = items[items["send"].astype(bool)]
    out: dict[str, Any] = {
        "customers": len(items),
        "planned_sends": len(sent),
        "sends_by_channel": {c: int((sent["channel"] == c).sum()) for c in CHANNEL_ORDER},
        "offers": {str(k): int(v) for k, v in items[Col.OFFER_ID].dropna().value_counts().sort_index().items()},
        "expected_cost": float(items["expected_cost"].sum()),
        "expected_incremental_profit": float(items["expected_profit"].sum()),
        "control_size": int(items["control_group"].astype(bool).sum()),
        "decisions": {str(k): int(v) for k, v in items["decision"].value_counts().sort_index().items()},
    }
    if spec is not None:
        out |= {
            "campaign": spec.name,
            "channels": [str(c) for c in spec.channels],
            "starts_at": spec.starts_at.isoformat(),
            "ends_at": spec.ends_at.isoformat(),
            "budget": spec.budget,
        }
    return out


def check_plan(plan: CampaignPlan) -> list[str]:
    """Violations of the plan's promises (empty when it keeps them): a send on a channel the campaign does
    not allow or the customer cannot use, a send to the control group, totals that differ from the items."""
    items, spec = plan.items, plan.spec
    problems = []
    allowed = {str(c) for c in spec.channels}
    sent = items[items["send"].astype(bool)]
    bad = sent[~sent["channel"].isin(allowed)]
    if len(bad):
        problems.append(f"{len(bad)} send(s) on a channel the campaign does not allow")
    unusable = [
        k
        for k, c, u in zip(sent[Col.CUSTOMER_KEY], sent["channel"], sent["usable_channels"], strict=True)
        if c not in str(u).split(",")
    ]
    if unusable:
        problems.append(f"{len(unusable)} send(s) on a channel the customer cannot use")
    if sent["control_group"].astype(bool).any():
        problems.append("a control-group customer is sent a message")
    late = sent["send_at"].isna() | (sent["send_at"] >= pd.Timestamp(spec.ends_at))
    if late.any():
        problems.append(f"{int(late.sum())} send(s) without a time inside the campaign")
    again = totals(items)
    for key in ("planned_sends", "sends_by_channel", "control_size", "offers"):
        if again[key] != plan.totals[key]:
            problems.append(f"totals.{key} {plan.totals[key]} != the items' {again[key]}")
    for key in ("expected_cost", "expected_incremental_profit"):
        if not np.isclose(again[key], plan.totals[key]):
            problems.append(f"totals.{key} {plan.totals[key]} != the items' {again[key]}")
    return problems


def items_for_export(items: pd.DataFrame) -> pd.DataFrame:
    """The items as a campaign engine imports them: plain columns (text times, no lists)."""
    out = items.copy()
    out["send_at"] = [t.isoformat() if not pd.isna(t) else None for t in out["send_at"]]
    return out


def as_sequence(value: str | Sequence[str]) -> list[str]:
    """``"email,sms"`` or a list -> a list of channel names."""
    return [v.strip() for v in value.split(",")] if isinstance(value, str) else [str(v) for v in value]
