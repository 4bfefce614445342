"""The send-time job: temporal evaluation against baselines -> refit on all data -> one verified bundle
(send-time curves and priors, channel preference) in MLflow -> registry alias.

Evaluation (all temporal: fit on what happened before ``T = as_of - test_days``, judge what came after):

* next engagement hour: for every customer who engaged after ``T`` (opened or clicked a message; on
  data without messages, placed an order), the local hour of the first such event, against the
  customer's learnt habit: hit when the habit's most likely hour is within +-1 h, and the mean
  log-likelihood of the hour; the baseline is the population's habit. This is the selection metric.
* an optional outside check of the model fitted before ``T`` (``planted_check``): on a synthetic world,
  :class:`synth.checks.SendTimeTruth` gives the share of customers whose recommended slot at ``T`` is
  within +-1 h of their planted preferred local hour, against the best single hour for everyone and
  the population curve's slot. The job itself knows nothing of synthetic worlds.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd

from bundles import registry
from bundles.sendtime import MODEL_NAME, SendTimeBundle
from features.contract import Col
from features.errors import DataNotFoundError, KairosError
from features.ingest import require_dates
from features.mapping import load_mapping
from features.store import SEGMENTS_FILE, SNAPSHOTS_DIR, ingest_report, open_tables
from models.decisioning.channel import ChannelPreference
from models.decisioning.sendtime import CHANNELS, HOURS, SendTimeModel, hour_distance, local_slots, valid_zone

EXPERIMENT = "kairos-sendtime"
SELECTION_METRIC = "next_hour_hit_1h"
SEGMENT_COLUMN = "lifecycle"
# (model fitted before the split, the split, the messages before it) -> one row per channel and group with
# ``channel``, ``group``, ``kairos``, ``best_single_hour`` and ``population_curve`` (synth.checks.SendTimeTruth)
PlantedCheck = Callable[[SendTimeModel, datetime, pd.DataFrame], pd.DataFrame]
ProgressFn = Callable[[str, float], None]


# --- inputs -------------------------------------------------------------------------------------


@dataclass
class SendTimeInputs:
    """What the send-time model learns from, as pandas frames (UTC timestamps)."""

    messages: pd.DataFrame  # customer_key, channel, sent_at, opened_at, clicked_at, offer_id
    activity: pd.DataFrame  # customer_key, occurred_at, kind (session / order)
    timezones: pd.Series  # customer_key -> IANA zone or None
    segments: pd.Series  # customer_key -> segment label (may be empty)
    consents: pd.DataFrame  # customer_key, channel, status, consented_at
    segments_as_of: datetime | None = None
    source_timezone: str | None = None  # the mapping's zone for naive export timestamps

    def default_timezone(self) -> str | None:
        """The mapping's zone when no customer has a usable one (else None: the model picks)."""
        if any(isinstance(z, str) and valid_zone(z) for z in self.timezones.dropna()):
            return None
        return self.source_timezone

    def cut(self, at: datetime) -> SendTimeInputs:
        """Only what was known at ``at``: later sends and activity dropped, later opens and clicks blanked.

        Segments are kept only when they were computed at or before ``at``, or when nothing happened
        after ``at`` (else they would leak what followed).
        """
        nothing_after = at >= self.latest()
        limit = pd.Timestamp(at)
        msgs = self.messages[self.messages[Col.SENT_AT] <= limit].copy()
        for col in (Col.OPENED_AT, Col.CLICKED_AT):
            msgs.loc[msgs[col] > limit, col] = pd.NaT
        act = self.activity[self.activity[Col.OCCURRED_AT] <= limit].copy()
        cons = self.consents[self.consents[Col.CONSENTED_AT] <= limit].copy()
        keep = self.segments_as_of is not None and (self.segments_as_of <= at or nothing_after)
        segments = self.segments if keep else self.segments.iloc[:0]
        return SendTimeInputs(
            msgs, act, self.timezones, segments, cons, self.segments_as_of if keep else None, self.source_timezone
        )

    def latest(self) -> datetime:
        stamps = [self.messages[c].max() for c in (Col.SENT_AT, Col.OPENED_AT, Col.CLICKED_AT)]
        stamps.append(self.activity[Col.OCCURRED_AT].max())
        found = [pd.Timestamp(s) for s in stamps if not pd.isna(s)]
        if not found:
            raise DataNotFoundError("no messages and no activity: nothing to learn send times from")
        return max(found).to_pydatetime()


def _utc(series: pd.Series) -> pd.Series:
    out = pd.to_datetime(series)
    return out.dt.tz_localize("UTC") if out.dt.tz is None else out.dt.tz_convert("UTC")


def load_inputs(data_home: Path, segment_column: str = SEGMENT_COLUMN) -> SendTimeInputs:
    """Read the ingested tables (and the latest snapshot's segments, if any) into :class:`SendTimeInputs`.

    Activity is one row per known customer's web session (its first event) and per order.
    """
    require_dates(data_home, "send-time training")
    tables = open_tables(Path(data_home))
    empty_msgs = pd.DataFrame(
        {
            c: pd.Series([], dtype="datetime64[us, UTC]" if c.endswith("_at") else object)
            for c in (Col.CUSTOMER_KEY, Col.CHANNEL, Col.SENT_AT, Col.OPENED_AT, Col.CLICKED_AT, Col.OFFER_ID)
        }
    )
    if "messages" in tables:
        cols = [Col.CUSTOMER_KEY, Col.CHANNEL, Col.SENT_AT, Col.OPENED_AT, Col.CLICKED_AT, Col.OFFER_ID]
        messages = tables["messages"].select(*cols).execute()
        messages[Col.CUSTOMER_KEY] = messages[Col.CUSTOMER_KEY].astype(object)
        messages[Col.CHANNEL] = messages[Col.CHANNEL].astype(object)
        for col in (Col.SENT_AT, Col.OPENED_AT, Col.CLICKED_AT):
            messages[col] = _utc(messages[col])
    else:
        messages = empty_msgs
    parts = []
    orders = tables["orders"]
    orders = orders.filter(orders[Col.CUSTOMER_KEY].notnull()).select(Col.CUSTOMER_KEY, Col.ORDERED_AT).execute()
    parts.append(
        pd.DataFrame(
            {Col.CUSTOMER_KEY: orders[Col.CUSTOMER_KEY].astype(object), Col.OCCURRED_AT: _utc(orders[Col.ORDERED_AT])}
        ).assign(kind="order")
    )
    if "web_events" in tables:
        web = tables["web_events"]
        sessions = (
            web.filter(web[Col.CUSTOMER_KEY].notnull())
            .group_by([Col.CUSTOMER_KEY, Col.SESSION_ID])
            .aggregate(**{Col.OCCURRED_AT: web[Col.OCCURRED_AT].min()})
            .execute()
        )
        parts.append(
            pd.DataFrame(
                {
                    Col.CUSTOMER_KEY: sessions[Col.CUSTOMER_KEY].astype(object),
                    Col.OCCURRED_AT: _utc(sessions[Col.OCCURRED_AT]),
                }
            ).assign(kind="session")
        )
    activity = pd.concat(parts, ignore_index=True)
    customers = tables["customers"].select(Col.CUSTOMER_KEY, Col.TIMEZONE).execute()
    timezones = _majority(customers, Col.TIMEZONE)
    if "consents" in tables:
        consents = tables["consents"].select(Col.CUSTOMER_KEY, Col.CHANNEL, Col.STATUS, Col.CONSENTED_AT).execute()
        consents[Col.CONSENTED_AT] = _utc(consents[Col.CONSENTED_AT])
    else:
        consents = pd.DataFrame({c: [] for c in (Col.CUSTOMER_KEY, Col.CHANNEL, Col.STATUS, Col.CONSENTED_AT)})
        consents[Col.CONSENTED_AT] = pd.Series([], dtype="datetime64[us, UTC]")
    segments, seg_as_of = _latest_segments(Path(data_home), segment_column)
    return SendTimeInputs(
        messages, activity, timezones, segments, consents, seg_as_of, _mapping_zone(ingest_report(Path(data_home)))
    )


def _mapping_zone(report: Mapping[str, Any]) -> str | None:
    """The zone the export's naive timestamps were read in, if the mapping can still be found."""
    try:
        zone = load_mapping(str(report.get("mapping", ""))).timezone
    except (KairosError, OSError, ValueError):
        return None
    return zone if valid_zone(zone) else None


def _majority(frame: pd.DataFrame, column: str) -> pd.Series:
    """Customer key -> the most common non-missing value among the customer's records (None if none)."""
    keys = frame[Col.CUSTOMER_KEY].astype(object)
    known = frame[frame[column].notna()]
    top = (
        known.groupby([Col.CUSTOMER_KEY, column]).size().reset_index(name="n")
        if len(known)
        else pd.DataFrame(columns=[Col.CUSTOMER_KEY, column, "n"])
    )
    top = top.sort_values(["n", column], ascending=[False, True]).drop_duplicates(Col.CUSTOMER_KEY)
    out = pd.Series(None, index=pd.Index(pd.unique(keys), dtype=object), dtype=object)
    out.loc[top[Col.CUSTOMER_KEY].astype(object).to_numpy()] = top[column].astype(object).to_numpy()
    return out


def _latest_segments(data_home: Path, column: str) -> tuple[pd.Series, datetime | None]:
    root = data_home / SNAPSHOTS_DIR
    found = sorted(p for p in root.glob("*") if (p / SEGMENTS_FILE).is_file()) if root.is_dir() else []
    if not found:
        return pd.Series([], dtype=object), None
    frame = pd.read_parquet(found[-1] / SEGMENTS_FILE, columns=[Col.CUSTOMER_KEY, column])
    manifest = json.loads((found[-1] / "manifest.json").read_text(encoding="utf-8"))
    series = pd.Series(frame[column].astype(object).to_numpy(), index=frame[Col.CUSTOMER_KEY].astype(str).to_numpy())
    return series, datetime.fromisoformat(manifest["as_of"])


def fit_models(
    inputs: SendTimeInputs, as_of: datetime, params: Mapping[str, Any] | None = None, min_sends: int = 5
) -> tuple[SendTimeModel, ChannelPreference]:
    """Fit the send-time model and the channel preference on ``inputs`` (already cut at ``as_of``)."""
    settings = dict(params or {})
    settings.setdefault("default_timezone", inputs.default_timezone())
    model = SendTimeModel(**settings).fit(
        inputs.messages, inputs.activity, inputs.timezones, inputs.segments, as_of=as_of
    )
    channel = ChannelPreference(min_sends=min_sends).fit(inputs.messages)
    return model, channel


# --- evaluation ---------------------------------------------------------------------------------


def _daily(habit: np.ndarray) -> np.ndarray:
    """A 168-slot distribution folded to the 24 hours of the day."""
    return habit.reshape(*habit.shape[:-1], 7, HOURS).sum(axis=-2)


def evaluate_next_hour(model: SendTimeModel, events: pd.DataFrame, channel: str | None = None) -> dict[str, float]:
    """Predict the local hour of each customer's first event in ``events`` from the fitted habits.

    Args:
        model: Fitted on what happened before the events.
        events: ``customer_key``, ``occurred_at`` (UTC), optional ``channel`` (the habit used; else ``channel``).
        channel: Habit to use for events without a channel column (default email).

    Returns:
        ``customers``, ``hit_1h`` and ``log_lik`` (mean natural log-probability of the hour of day) for
        the model and the ``population_`` baseline, plus ``known_share`` (customers with a history).
    """
    if events.empty:
        raise KairosError("no events after the split to evaluate the next hour on")
    first = events.sort_values(Col.OCCURRED_AT, kind="stable").drop_duplicates(Col.CUSTOMER_KEY)
    keys = first[Col.CUSTOMER_KEY].astype(str).to_numpy()
    chans = (
        first[Col.CHANNEL].astype(str).to_numpy() if Col.CHANNEL in first else np.full(len(first), channel or "email")
    )
    zones = np.array([model.timezone(k)[0] for k in keys], dtype=object)
    slot = local_slots(first[Col.OCCURRED_AT], zones)
    hour = slot % HOURS
    habits = np.vstack([model.habit(k, c) for k, c in zip(keys, chans, strict=True)])
    pop = np.vstack([model.population_habit_[CHANNELS.index(c)] for c in chans]).astype(np.float64)
    out: dict[str, float] = {"customers": float(len(keys))}
    known = np.array([model.has_history(k) for k in keys])
    out["known_share"] = float(known.mean())
    for name, dist in (("", habits), ("population_", pop)):
        daily = _daily(dist)
        daily = daily / daily.sum(axis=1, keepdims=True)
        guess = daily.argmax(axis=1)
        out[f"{name}hit_1h"] = float((hour_distance(guess, hour) <= 1).mean())
        out[f"{name}log_lik"] = float(np.log(np.maximum(daily[np.arange(len(hour)), hour], 1e-12)).mean())
    return out


# --- the job ------------------------------------------------------------------------------------


@dataclass
class SendTimeRun:
    """What a run produced: headline metrics, evaluation tables and the registration."""

    run_id: str
    metrics: dict[str, float]
    next_hour: pd.DataFrame
    planted: pd.DataFrame | None
    registration: registry.Registration | None


def _next_events(inputs: SendTimeInputs, split: datetime, end: datetime) -> tuple[pd.DataFrame, str]:
    """Engagement events in ``(split, end]``: opens / clicks when there are messages, else orders."""
    msgs = inputs.messages
    first = msgs[[Col.OPENED_AT, Col.CLICKED_AT]].min(axis=1)
    after = msgs.assign(occurred_at=first)
    after = after[(first > pd.Timestamp(split)) & (first <= pd.Timestamp(end))]
    if len(after):
        return after[[Col.CUSTOMER_KEY, Col.CHANNEL, Col.OCCURRED_AT]], "open_or_click"
    act = inputs.activity
    orders = act[(act["kind"] == "order") & (act[Col.OCCURRED_AT] > pd.Timestamp(split))]
    orders = orders[orders[Col.OCCURRED_AT] <= pd.Timestamp(end)]
    return orders[[Col.CUSTOMER_KEY, Col.OCCURRED_AT]], "order"


def evaluate(
    inputs: SendTimeInputs,
    as_of: datetime,
    test_days: int = 60,
    planted_check: PlantedCheck | None = None,
    params: Mapping[str, Any] | None = None,
) -> tuple[dict[str, float], pd.DataFrame, pd.DataFrame | None]:
    """Fit before ``as_of - test_days`` and evaluate on what followed (see the module docstring).

    Returns:
        Headline metrics, the next-hour table (model vs population) and the planted table (or None).
    """
    split = as_of - timedelta(days=test_days)
    before = inputs.cut(split)
    if before.messages.empty and before.activity.empty:
        raise KairosError(f"nothing before the split {split.isoformat()}: use fewer test days")
    model, _ = fit_models(before, split, params)
    events, kind = _next_events(inputs, split, as_of)
    figures = evaluate_next_hour(model, events)
    next_hour = pd.DataFrame(
        [
            {"model": "Kairos habit", "hit_1h": figures["hit_1h"], "log_lik": figures["log_lik"]},
            {"model": "population", "hit_1h": figures["population_hit_1h"], "log_lik": figures["population_log_lik"]},
        ]
    ).assign(event=kind, customers=int(figures["customers"]), known_share=figures["known_share"])
    metrics = {
        SELECTION_METRIC: figures["hit_1h"],
        "next_hour_log_lik": figures["log_lik"],
        "next_hour_population_hit_1h": figures["population_hit_1h"],
        "next_hour_population_log_lik": figures["population_log_lik"],
        "next_hour_customers": figures["customers"],
    }
    planted = None
    if planted_check is not None:
        planted = planted_check(model, split, before.messages)
        for row in planted.itertuples(index=False):
            prefix = f"planted_{row.channel}_{row.group}"
            metrics[f"{prefix}_kairos"] = row.kairos
            metrics[f"{prefix}_best_single_hour"] = row.best_single_hour
            metrics[f"{prefix}_population_curve"] = row.population_curve
    return metrics, next_hour, planted


@dataclass(frozen=True)
class SendTimeConfig:
    """Everything one send-time training run is a function of, besides the data (see :func:`train_sendtime`)."""

    tracking_uri: str
    as_of: datetime | None = None
    test_days: int = 60
    params: Mapping[str, Any] | None = None
    min_sends: int = 5
    margin: float = 0.0
    register: bool = True


def log_and_register(
    cfg: SendTimeConfig,
    inputs: SendTimeInputs,
    end: datetime,
    model: SendTimeModel,
    channel: ChannelPreference,
    metrics: dict[str, float],
    next_hour: pd.DataFrame,
    planted: pd.DataFrame | None,
) -> SendTimeRun:
    """The run in MLflow and the bundle registered: ``@champion`` only if its next-hour hit rate beats
    the champion's by more than ``cfg.margin``."""
    manifest = {
        "model": MODEL_NAME,
        "as_of": end.isoformat(),
        "test_days": cfg.test_days,
        "customers": len(model.keys_),
        "customers_with_own_curve": int(model.own_.any(axis=1).sum()),
        "scale": dict(zip(CHANNELS, map(str, model.scale_), strict=True)),
        "default_timezone": model.default_timezone_,
        "segments": f"{SEGMENT_COLUMN} from the snapshot of {inputs.segments_as_of}" if len(inputs.segments) else None,
    }
    with registry.job_run(cfg.tracking_uri, EXPERIMENT, MODEL_NAME) as job:
        bundle = job.folder / "bundle"
        SendTimeBundle.write(bundle, model, channel, manifest)
        params = {**model.get_params(), "min_sends": cfg.min_sends, "test_days": cfg.test_days, "margin": cfg.margin}
        mlflow.log_params(params)
        mlflow.log_metrics(metrics)
        mlflow.log_text(next_hour.to_csv(index=False), "evaluation_next_hour.csv")
        if planted is not None:
            mlflow.log_text(planted.to_csv(index=False), "evaluation_planted.csv")
        registration = registry.log_and_register(
            job,
            bundle,
            MODEL_NAME,
            metadata={"kairos": manifest},
            register=cfg.register,
            metric_name=SELECTION_METRIC,
            metric_value=metrics[SELECTION_METRIC],
            margin=cfg.margin,
        )
    return SendTimeRun(job.run_id, metrics, next_hour, planted, registration)


def train_sendtime(
    data_home: Path,
    tracking_uri: str,
    *,
    as_of: datetime | None = None,
    test_days: int = 60,
    planted_check: PlantedCheck | None = None,
    params: Mapping[str, Any] | None = None,
    min_sends: int = 5,
    margin: float = 0.0,
    register: bool = True,
    progress: ProgressFn | None = None,
) -> SendTimeRun:
    """Evaluate on the last ``test_days``, refit on everything up to ``as_of``, log and register:
    :func:`load_inputs` -> :func:`evaluate` -> :func:`fit_models` -> :func:`log_and_register`.

    Args:
        data_home: Ingested data (and snapshots, for segments).
        tracking_uri: MLflow tracking URI.
        as_of: End of the data used (default: the latest timestamp in messages and activity).
        test_days: Length of the evaluation period before ``as_of``.
        planted_check: An outside check of the model fitted before the split (a synthetic world's planted
            preferred hours: :class:`synth.checks.SendTimeTruth`); its table is logged and its figures
            become ``planted_*`` metrics.
        params: :class:`SendTimeModel` parameters.
        min_sends: :class:`ChannelPreference`'s minimum sends.
        margin: How much better than the champion the selection metric must be to take over.
        register: Register the bundle as model ``sendtime``.
        progress: Callback ``(step, fraction)``.
    """
    tick = progress or (lambda step, frac: None)
    cfg = SendTimeConfig(tracking_uri, as_of, test_days, params, min_sends, margin, register)
    tick("reading the ingested tables", 0.02)
    inputs = load_inputs(Path(data_home))
    end = inputs.latest() if cfg.as_of is None else cfg.as_of.astimezone(UTC)
    inputs = inputs.cut(end)
    tick("evaluating on the last days", 0.1)
    metrics, next_hour, planted = evaluate(inputs, end, cfg.test_days, planted_check, cfg.params)
    tick("refitting on all data", 0.6)
    model, channel = fit_models(inputs, end, cfg.params, cfg.min_sends)
    tick("logging to MLflow", 0.85)
    run = log_and_register(cfg, inputs, end, model, channel, metrics, next_hour, planted)
    tick("done", 1.0)
    return run
