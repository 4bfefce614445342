"""``kairos score --all``: the nightly full-base export for campaign engines.

Every customer of the latest feature snapshot (or of the snapshot as of a given date) gets the
registered champions' calibrated probabilities and bands (churn, purchase, engagement per channel),
P(alive), expected orders and CLV from the ``clv`` bundle, and the segments, written to Parquet batch by
batch (beyond one batch, memory holds a few int32 positions per customer: its ids, CLV and segment rows).
Models missing from the registry are skipped and listed, never guessed. Beside each model's probability and
band, ``<model>_model`` says what answered: ``kairos``, or ``baseline:<name>`` when Kairos's model did not beat
the best baseline and that baseline is the champion (docs/model-quality.md, the gate). The ``value`` champion adds
``value_expected_spend`` and ``value_expected_orders`` over ``value_horizon_days``, read off the same row, and
``value_model`` (``kairos`` or ``baseline:last_period``, ...).

Beside ``customer_key`` each row carries the retailer's own ids, from ``ingested/identity_map.parquet``:
``customer_id``, the cluster's primary id, and ``customer_ids``, every source id of the cluster (a list,
sorted). The primary id is the smallest id in code-point order: the one identity resolution names the
cluster after (its ``customer_key`` is the keyed hash of that id), so it is stable across runs while the
cluster's records are. A key without an entry in the map (erased since) gets nulls.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bundles import registry
from bundles.errors import ModelNotFoundError
from bundles.offers import OffersBundle
from bundles.propensity import MODEL_NAMES, PropensityBundle, PropensityModel, snapshot_scores
from bundles.sendtime import SendTime, SendTimeBundle
from bundles.value import CLV_MODEL, VALUE_MODEL, ClvBundle, ValueBundle, ValueModels
from features.audience import ADVERTISING, CONSENT_PREFIX, CUSTOMER_IDS, SEGMENT_NAMES, primary_ids
from features.consent import CONTACT_PREFIX, consent_rules, contact_allowed_in
from features.contract import Channel, Col, ConsentRule
from features.definitions import DESCRIPTIONS
from features.errors import KairosError
from features.ingest import IDENTITY_MAP_FILE
from features.realtime import History, Overlay, snapshot_history
from features.segments import SegCol
from features.store import (
    SEGMENT_COLUMNS,
    SEGMENTS_FILE,
    SNAPSHOT_FILE,
    Snapshot,
    data_currency,
    ingested_dir,
    latest_snapshot,
    open_tables,
    snapshot_as_of,
)
from models.clv import CLV_FIELDS
from models.compiled import COMPILED_DIR, CompileError
from models.decisioning.marketing_policy import MarketingPolicy, resolve_cuts
from models.decisioning.nbo import NextBestOffer
from models.decisioning.offers import load_catalogue
from models.decisioning.policy import PolicyConfig
from models.reasons import BANDS, ReasonExplainer, band_codes
from models.stacking import DESCRIPTIONS as STACKED_DESCRIPTIONS

ProgressFn = Callable[[str, float], None]
SENDTIME_MODEL = "sendtime"
OFFERS_MODEL = "offers"
PREFERRED_CHANNEL = "preferred_channel"
MESSAGE_CHANNELS = tuple(c.value for c in Channel)
PROBE_ROWS = 2_000
REASONS_K = 3


def load_champions(
    tracking_uri: str, names: list[str], cache: Path, alias: str = registry.CHAMPION
) -> tuple[list[PropensityModel], list[str]]:
    """Fetch, verify and build each ``name@alias``; returns the models and the names not in the registry."""
    loaded, missing = [], []
    bundle = PropensityBundle()
    for name in names:
        try:
            loaded.append(bundle.load(tracking_uri, name, alias, cache / name))
        except ModelNotFoundError:
            missing.append(name)
    return loaded, missing


@dataclass
class ScoreExport:
    path: Path
    customers: int
    seconds: float
    models: dict[str, str]  # name -> version
    missing: list[str] = field(default_factory=list)
    engines: dict[str, str] = field(default_factory=dict)  # name -> "lleaves" or "LightGBM (why)"
    compile_seconds: float = 0.0  # building compiled models not yet cached (not in ``seconds``)

    @property
    def per_second(self) -> float:
        return self.customers / self.seconds if self.seconds else float("nan")


def _batches(path: Path, columns: list[str] | None, size: int) -> Iterator[pd.DataFrame]:
    reader = pq.ParquetFile(path)
    for batch in reader.iter_batches(batch_size=size, columns=columns):
        yield batch.to_pandas()


@dataclass
class _Prepared:
    """Everything a pass over the snapshot needs, loaded and joined once."""

    snapshot: Snapshot
    models: list[PropensityModel]
    missing: list[str]
    value: ValueModels | None
    value_version: str
    engines: dict[str, str]
    compile_seconds: float
    needed: list[str]
    rules: list[str]
    picks: list[tuple[int, ...]]
    joined: list[_Joined]  # ids, CLV, segments, consent: each batch takes its slice
    total: int
    cuts: dict[str, tuple[float, float]]  # band cuts per model: the policy file's, else the model's own
    sendtime: SendTime | None = None  # for the preferred channel and the send slots
    channel: bool = False
    send_slots: bool = False
    quiet: tuple[int, int] | None = (22, 8)
    nbo: NextBestOffer | None = None  # the next-best offer for a named catalogue
    offer_history: pd.DataFrame | None = None  # logged offer sends before the snapshot (per-customer limits)
    at: datetime | None = None  # the instant of the send slots and offers: the export's now, else the snapshot's

    @property
    def versions(self) -> dict[str, str]:
        versions = {m.name: m.version for m in self.models}
        if self.value is not None:
            versions[VALUE_MODEL] = self.value_version
        return versions


def _prepare(
    data_home: Path,
    tracking_uri: str,
    *,
    alias: str,
    compiled: bool,
    compile_cache: Path | None,
    as_of: datetime | None,
    tick: ProgressFn,
    segment_columns: Sequence[str] = SEGMENT_COLUMNS,
    consent: bool = False,
    policy: MarketingPolicy | None = None,
    channel: bool = False,
    send_slots: bool = False,
    offers: Path | None = None,
) -> _Prepared:
    registry.quiet_mlflow()
    snapshot = latest_snapshot(data_home) if as_of is None else snapshot_as_of(data_home, as_of)
    with tempfile.TemporaryDirectory() as tmp:
        models, missing = load_champions(tracking_uri, list(MODEL_NAMES), Path(tmp), alias)
        clv = None
        try:
            fetched = registry.fetch_bundle(tracking_uri, CLV_MODEL, alias, Path(tmp) / CLV_MODEL)
            clv = ClvBundle.read_customers(fetched.path)
        except ModelNotFoundError:
            missing.append(CLV_MODEL)
        value: ValueModels | None = None
        value_version = ""
        try:
            loader = ValueBundle()
            got = loader.fetch(tracking_uri, VALUE_MODEL, alias, Path(tmp) / VALUE_MODEL)
            value = loader.build(got.folder, got.provenance, None)
            value_version = got.provenance.version
        except ModelNotFoundError:
            missing.append(VALUE_MODEL)
        sendtime: SendTime | None = None
        if channel or send_slots:
            try:
                fetched = registry.fetch_bundle(tracking_uri, SENDTIME_MODEL, alias, Path(tmp) / SENDTIME_MODEL)
                sendtime = SendTimeBundle.read(fetched.path)
            except ModelNotFoundError as exc:
                raise KairosError(
                    f"--channel / --send-slots need the {SENDTIME_MODEL} bundle: `kairos train sendtime` first"
                ) from exc
        nbo: NextBestOffer | None = None
        if offers is not None:
            catalogue = load_catalogue(offers)  # refused first: a bad catalogue names its field
            try:
                fetched = registry.fetch_bundle(tracking_uri, OFFERS_MODEL, alias, Path(tmp) / OFFERS_MODEL)
            except ModelNotFoundError as exc:
                raise KairosError(f"--offers needs the {OFFERS_MODEL} bundle: `kairos train offers` first") from exc
            served, _ = OffersBundle.read(fetched.path, policy.control if policy is not None else None)
            nbo = replace(served, catalogue=catalogue)
    if not models and clv is None and value is None:
        raise KairosError(f"no registered model to score with in {tracking_uri}: train some first")
    if sendtime is not None and SegCol.LIFECYCLE not in segment_columns:  # the send-time segment
        segment_columns = (*segment_columns, SegCol.LIFECYCLE)
    if nbo is not None:  # eligibility and the playbook read every segment column and flag
        segment_columns = tuple(dict.fromkeys([*segment_columns, *SEGMENT_NAMES]))
    segments = None
    if (snapshot.path / SEGMENTS_FILE).is_file():
        segments = pd.read_parquet(snapshot.path / SEGMENTS_FILE).set_index(Col.CUSTOMER_KEY)
        segments = segments[[c for c in segment_columns if c in segments.columns]]
    # Each model reads its columns out of one matrix per batch, built once: float32 values (what LightGBM
    # sees) held as float64 (what the compiled code reads); models with the same features share a slice.
    needed = _features(models)
    rules = [f.feature for m in models if (f := m.population) is not None and f.feature not in needed]
    at = {f: i for i, f in enumerate(needed)}
    picks = [tuple(at[f] for f in m.features) for m in models]
    engines = {m.name: f"baseline ({m.baseline})" if m.baseline else "LightGBM" for m in models}
    compile_seconds = 0.0
    if compiled and models:
        probe = _probe(models, snapshot.path / SNAPSHOT_FILE)
        models, engines, compile_seconds = _compile_all(models, compile_cache or data_home / COMPILED_DIR, probe, tick)
    if value is not None:
        engines[VALUE_MODEL] = f"baseline ({value.baseline})" if value.baseline else "LightGBM"
    total = int(snapshot.manifest.get("rows") or pq.ParquetFile(snapshot.path / SNAPSHOT_FILE).metadata.num_rows)
    # CLV and segments are joined once for the whole snapshot: each batch takes its slice of the positions.
    keys_all = pq.read_table(snapshot.path / SNAPSHOT_FILE, columns=[Col.CUSTOMER_KEY]).column(0)
    source_ids = customer_ids(data_home)
    joined = [
        _Joined.of(source_ids, [Col.CUSTOMER_ID], pa.string(), keys_all),
        _Joined.of(source_ids, [CUSTOMER_IDS], pa.list_(pa.string()), keys_all),
    ]
    if clv is not None:
        joined.append(_Joined.of(clv, CLV_FIELDS, pa.float32(), keys_all))
    if segments is not None:
        text = [c for c in segments.columns if c in SEGMENT_COLUMNS or str(segments[c].dtype) == "category"]
        flags = [c for c in segments.columns if pd.api.types.is_bool_dtype(segments[c].dtype)]
        numbers = [c for c in segments.columns if c not in text and c not in flags]
        for names, kind in ((text, pa.string()), (flags, pa.bool_()), (numbers, pa.float32())):
            if names:
                part = segments[names].astype("string") if kind == pa.string() else segments[names]
                joined.append(_Joined.of(part, names, kind, keys_all))
    if consent or channel or send_slots or nbo is not None:  # channels, slots and offers: consented ones only
        allowed = consent_table(data_home, snapshot.as_of)
        joined.append(_Joined.of(allowed, list(allowed.columns), pa.bool_(), keys_all))
    del keys_all  # the positions are kept, not the keys
    cuts = {}
    for m in models:
        spec = policy.cuts(m.name) if policy is not None else None
        if spec is None:
            cuts[m.name] = m.cuts
        elif spec.thresholds is not None:
            cuts[m.name] = spec.thresholds
        else:  # quantiles of the base's scores, as the API resolves them
            cuts[m.name] = resolve_cuts(spec, snapshot_scores(m, snapshot.path / SNAPSHOT_FILE))
    return _Prepared(
        snapshot,
        models,
        missing,
        value,
        value_version,
        engines,
        compile_seconds,
        needed,
        rules,
        picks,
        joined,
        total,
        cuts,
        sendtime,
        channel,
        send_slots,
        policy.contact.quiet_hours if policy is not None else PolicyConfig().quiet_hours,
        nbo,
        _offer_history(data_home, snapshot.as_of) if nbo is not None else None,
    )


def _offer_history(data_home: Path, as_of: datetime) -> pd.DataFrame:
    """The offers sent before ``as_of`` (``customer_key, offer_id, sent_at``): the per-customer limits."""
    path = ingested_dir(data_home) / "messages.parquet"
    columns = [Col.CUSTOMER_KEY, Col.OFFER_ID, Col.SENT_AT]
    if not path.is_file() or not set(columns) <= set(pq.read_schema(path).names):
        return pd.DataFrame(columns=columns)
    sent = pq.read_table(path, columns=columns).to_pandas()
    sent = sent[sent[Col.OFFER_ID].notna()]
    return sent[pd.to_datetime(sent[Col.SENT_AT], utc=True) < pd.Timestamp(as_of)]


def consent_table(data_home: Path, as_of: datetime) -> pd.DataFrame:
    """Per ``customer_key`` (the index), ``consent_<channel>`` for every channel of the data's consent rules
    and :data:`features.audience.ADVERTISING` (always opt-in: no record is no consent), from the consent
    events strictly before ``as_of`` (the snapshot's own instant, so e-mail, SMS and push agree with its
    ``consent_<channel>`` features)."""
    rules: dict[str, ConsentRule | str] = dict(consent_rules(data_home))
    rules.setdefault(ADVERTISING, ConsentRule.OPT_IN)
    frame = contact_allowed_in(open_tables(data_home, as_of=as_of), as_of, rules).set_index(Col.CUSTOMER_KEY)
    return frame.rename(columns=lambda c: CONSENT_PREFIX + c[len(CONTACT_PREFIX) :])


def score_tables(
    prep: _Prepared,
    data_home: Path,
    *,
    batch_size: int = 100_000,
    reasons: bool = False,
    carry: Sequence[str] = (),
    tick: ProgressFn | None = None,
    now: datetime | None = None,
) -> Iterator[pa.Table]:
    """The export's rows, one Arrow table per batch of the snapshot (see :func:`score_all`); ``carry``
    adds snapshot columns as they are (features and attributes an audience condition names); ``now``
    reads the snapshot at that instant by the online store's rules (see :func:`score_all`)."""
    tick = tick or (lambda step, frac: None)
    models, needed, picks, value = prep.models, prep.needed, prep.picks, prep.value
    identity = tuple(range(len(needed)))
    snapshot = prep.snapshot
    done = 0
    # the reason templates read other columns of the row (e.g. the usual gap between orders)
    value_features = value.features if value is not None else []
    every = reasons or prep.nbo is not None  # reasons and the offers' expressions may read any feature
    read = None if every else list(dict.fromkeys([Col.CUSTOMER_KEY, *needed, *prep.rules, *value_features, *carry]))
    # amounts in the data's currency, as the snapshot records it (older snapshots: the data home's)
    currency = snapshot.manifest.get("currency") or data_currency(data_home)
    explainer = ReasonExplainer({**DESCRIPTIONS, **STACKED_DESCRIPTIONS}, currency=currency) if reasons else None
    reader = pq.ParquetFile(snapshot.path / SNAPSHOT_FILE)
    instant = _Instant.of(data_home, snapshot, now) if now is not None else None
    if now is not None:
        prep = replace(prep, at=now)
    for raw in reader.iter_batches(batch_size=batch_size, columns=read):
        batch = instant.bring(raw, done) if instant is not None else raw
        frame = batch.to_pandas() if explainer is not None else None
        cols: dict[str, pa.Array] = {Col.CUSTOMER_KEY: batch.column(Col.CUSTOMER_KEY).cast(pa.string())}
        for joined in prep.joined[:2]:  # the retailer's ids first
            cols.update(joined.take(done, batch.num_rows))
        matrix = _matrix(batch, needed)
        views: dict[tuple[int, ...], np.ndarray] = {}
        for m, pick in zip(models, picks, strict=True):
            if pick not in views:
                views[pick] = matrix if pick == identity else np.ascontiguousarray(matrix[:, list(pick)])
            p = m.calibrate(m.raw_matrix(views[pick]))
            codes = band_codes(p, prep.cuts[m.name])
            outside = None
            if m.population is not None:  # outside it (churn: a lead), the probability means nothing
                outside = ~m.population.contains(_numbers(batch.column(m.population.feature)))
            cols[f"{m.name}_probability"] = pa.array(p.astype(np.float32), mask=outside)
            cols[f"{m.name}_model"] = _constant(m.model_kind, batch.num_rows)  # kairos or baseline:<name>
            cols[f"{m.name}_band"] = _band_strings(codes, outside)
            if explainer is not None:
                why = explainer.explain(m.model, m.with_derived(frame), k=REASONS_K)
                if outside is not None:
                    why = [[] if out else w for w, out in zip(why, outside.tolist(), strict=True)]
                for r in range(REASONS_K):
                    cols[f"{m.name}_reason_{r + 1}"] = pa.array([w[r].text if len(w) > r else "" for w in why])
        if value is not None:  # spend and orders over the value model's horizon, from the same row
            spend, orders = value.predict(_matrix(batch, value_features))
            cols[f"{VALUE_MODEL}_expected_spend"] = pa.array(spend.astype(np.float32))
            cols[f"{VALUE_MODEL}_expected_orders"] = pa.array(orders.astype(np.float32))
            cols[f"{VALUE_MODEL}_horizon_days"] = pa.array(np.full(batch.num_rows, value.horizon_days, np.int16))
            cols[f"{VALUE_MODEL}_model"] = _constant(value.model_kind, batch.num_rows)  # kairos or baseline:<name>
        for joined in prep.joined[2:]:
            cols.update(joined.take(done, batch.num_rows))
        if prep.sendtime is not None:
            cols.update(_decisioning(prep, cols))
        if prep.nbo is not None:
            cols.update(_offers(prep, batch, cols))
        for name in carry:
            if name not in cols:
                cols[name] = batch.column(name)
        yield pa.Table.from_pydict(cols)
        done += batch.num_rows
        tick(f"{done:,} of {prep.total:,} customers", done / max(prep.total, 1))


def _decisioning(prep: _Prepared, cols: dict[str, pa.Array]) -> dict[str, pa.Array]:
    """The preferred channel (among the channels with consent) and the best send slot per channel (within a
    day of the snapshot's instant, outside the quiet hours, null where the channel has no consent)."""
    assert prep.sendtime is not None
    keys = cols[Col.CUSTOMER_KEY].to_pylist()
    consented = {ch: cols[CONSENT_PREFIX + ch].to_numpy(zero_copy_only=False) for ch in MESSAGE_CHANNELS}
    out: dict[str, pa.Array] = {}
    if prep.channel:
        prefs = prep.sendtime.channels
        best: list[str | None] = []
        for i, key in enumerate(keys):
            allowed = [ch for ch in MESSAGE_CHANNELS if consented[ch][i]]
            best.append(prefs.scores(key, allowed)[0].channel if allowed else None)
        out[PREFERRED_CHANNEL] = pa.array(best, pa.string())
    if prep.send_slots:
        lifecycle = cols[SegCol.LIFECYCLE].to_pylist() if SegCol.LIFECYCLE in cols else None
        now = prep.at or prep.snapshot.as_of
        for ch in MESSAGE_CHANNELS:
            slots = prep.sendtime.model.best_slots_batch(
                keys, ch, now, timedelta(hours=24), prep.quiet, segments=lifecycle
            )
            at = pd.to_datetime(slots["best_at"], utc=True)
            out[f"send_at_{ch}"] = pa.array(
                at.to_numpy(), pa.timestamp("us", tz="UTC"), mask=~consented[ch] | at.isna().to_numpy()
            )
    return out


def _offers(prep: _Prepared, batch: pa.RecordBatch, cols: dict[str, pa.Array]) -> dict[str, pa.Array]:
    """The next-best offer of the named catalogue per customer, as of the snapshot's instant: on a channel
    the customer has consented to and the offer allows, the control group held out (the policy's share),
    the per-customer limits read from the offers sent before. The contact caps and quiet hours are the
    decision-time API's (``POST /v1/offers/campaign``): the export has no send state."""
    assert prep.nbo is not None
    frame = batch.to_pandas()
    for name in SEGMENT_NAMES:
        if name in cols:
            frame[name] = cols[name].to_pandas()
    keys = cols[Col.CUSTOMER_KEY].to_pylist()
    frame[Col.CUSTOMER_KEY] = keys
    consented = {ch: cols[CONSENT_PREFIX + ch].to_numpy(zero_copy_only=False) for ch in MESSAGE_CHANNELS}
    allowed = {k: [ch for ch in MESSAGE_CHANNELS if consented[ch][i]] for i, k in enumerate(keys)}
    history = prep.offer_history
    if history is not None and len(history):
        history = history[history[Col.CUSTOMER_KEY].isin(keys)]
    decided = prep.nbo.decide(frame, now=prep.at or prep.snapshot.as_of, allowed_channels=allowed, history=history)
    return {
        "offer_decision": pa.array(decided["status"].astype(str).tolist(), pa.string()),
        "offer_id": pa.array(decided[Col.OFFER_ID].tolist(), pa.string(), from_pandas=True),
        "offer_channel": pa.array(decided["channel"].tolist(), pa.string(), from_pandas=True),
        "offer_expected_profit": pa.array(decided["expected_profit"].to_numpy(np.float32)),
        "offer_reason": pa.array(decided["reason"].astype(str).tolist(), pa.string()),
    }


def score_all(
    data_home: Path,
    tracking_uri: str,
    out: Path,
    *,
    batch_size: int = 100_000,
    alias: str = registry.CHAMPION,
    progress: ProgressFn | None = None,
    compiled: bool = True,
    compile_cache: Path | None = None,
    reasons: bool = False,
    as_of: datetime | None = None,
    now: datetime | None = None,
    consent: bool = False,
    policy: MarketingPolicy | None = None,
    channel: bool = False,
    send_slots: bool = False,
    offers: Path | None = None,
) -> ScoreExport:
    """Score every customer of the latest snapshot with every registered champion; write Parquet to ``out``.

    Args:
        compiled: score with lleaves-compiled models (built once per version into ``compile_cache``,
            default ``data_home/compiled``; the build time is reported apart from the scoring time).
        reasons: add each model's top 3 drivers in words (``<model>_reason_1`` .. ``_3``, empty where
            fewer push the score up), as the API gives them; TreeSHAP costs several times the scoring.
        as_of: score the snapshot built as of this instant (``kairos features build --as-of``) instead of
            the latest: what the models say about the customers as they were then. The models are the
            ``alias`` versions of the registry as they are now (CLV is the ``clv`` bundle's own).
        now: score as of this instant (one clock, docs/features.md): the snapshot's features brought to ``now``
            by the online store's own rules (:meth:`features.realtime.Overlay.at`: "days since" aged, every
            real-time window recounted from the snapshot's event times), so ``POST /v1/scores`` with the same
            ``now`` gives the same probabilities for every customer without events since the snapshot.
            Default: the snapshot as it is (its own as-of).
        consent: add ``consent_<channel>`` (true / false) for every channel of the data's consent rules and
            ``advertising``, as of the snapshot's instant (:func:`consent_table`).
        channel: add ``preferred_channel``: the consented channel (e-mail, SMS, push) the ``sendtime`` bundle's
            channel preference ranks first, null when none is consented (with the consent columns).
        send_slots: add ``send_at_<channel>``: the best send slot (UTC) within a day of the snapshot's instant,
            outside the policy's quiet hours in the customer's zone, null where the channel has no consent.
        offers: an offer catalogue (YAML, ``docs/offers.md``): add the next-best offer per customer under it,
            scored by the registered ``offers`` bundle (:func:`_offers`).
        policy: the marketer's policy file: its band cuts per model (thresholds, or quantiles resolved on
            the snapshot's scores as the API resolves them); None: each model's own cuts.

    Raises:
        KairosError: no snapshot (as of ``as_of``), or no model at all in the registry.
    """
    tick = progress or (lambda step, frac: None)
    prep = _prepare(
        data_home,
        tracking_uri,
        alias=alias,
        compiled=compiled,
        compile_cache=compile_cache,
        as_of=as_of,
        tick=tick,
        consent=consent,
        policy=policy,
        channel=channel,
        send_slots=send_slots,
        offers=offers,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    staged = out.with_name(out.name + ".partial")
    writer: pq.ParquetWriter | None = None
    done = 0
    start = time.perf_counter()
    try:
        for table in score_tables(prep, data_home, batch_size=batch_size, reasons=reasons, tick=tick, now=now):
            if writer is None:
                writer = pq.ParquetWriter(staged, table.schema, compression="zstd")
            writer.write_table(table)
            done += table.num_rows
    finally:
        if writer is not None:
            writer.close()
    seconds = time.perf_counter() - start
    staged.replace(out)
    return ScoreExport(out, done, seconds, prep.versions, prep.missing, prep.engines, prep.compile_seconds)


@dataclass(frozen=True)
class _Instant:
    """A snapshot read at an instant by the online store's rules (what the API serves at that instant)."""

    names: list[str]  # the snapshot's numeric features
    ages: list[str]
    as_of: float
    history: History
    now: float

    @classmethod
    def of(cls, data_home: Path, snapshot: Snapshot, now: datetime) -> _Instant:
        manifest = snapshot.manifest["features"]
        names = [f["name"] for f in manifest if f["dtype"] == "float32"]
        ages = [f["name"] for f in manifest if f.get("ages")]
        Overlay(names, ages, snapshot.as_of.timestamp()).check(now.timestamp())  # before the snapshot: refused
        keys = pq.read_table(snapshot.path / SNAPSHOT_FILE, columns=[Col.CUSTOMER_KEY]).column(0)
        history = snapshot_history(open_tables(data_home), snapshot.as_of, [str(k) for k in keys.to_pylist()])
        return cls(names, ages, snapshot.as_of.timestamp(), history, now.timestamp())

    def bring(self, batch: pa.RecordBatch, offset: int) -> pa.RecordBatch:
        """The batch (rows ``offset`` on of the snapshot) with its numeric features as of :attr:`now`."""
        present = [n for n in self.names if n in batch.schema.names]
        overlay = Overlay(present, [a for a in self.ages if a in present], self.as_of)
        values = np.empty((batch.num_rows, len(present)), dtype=np.float32)
        for j, name in enumerate(present):
            values[:, j] = _numbers(batch.column(name))
        rows = np.arange(offset, offset + batch.num_rows, dtype=np.int64)
        overlay.at(values, self.history.take(rows), [], self.now)
        columns = {name: batch.column(name) for name in batch.schema.names}
        for j, name in enumerate(present):
            columns[name] = pa.array(values[:, j], type=pa.float32(), from_pandas=True)
        return pa.RecordBatch.from_pydict(columns)


def customer_ids(data_home: Path) -> pd.DataFrame:
    """Per ``customer_key`` (the index): its primary source ``customer_id`` (the smallest, which names the
    cluster) and all its ``customer_ids`` (sorted), from the ingested identity map."""
    mapping = pq.read_table(ingested_dir(data_home) / IDENTITY_MAP_FILE, columns=[Col.CUSTOMER_ID, Col.CUSTOMER_KEY])
    return primary_ids(mapping.to_pandas())


def compile_champions(
    data_home: Path,
    tracking_uri: str,
    cache: Path | None = None,
    *,
    alias: str = registry.CHAMPION,
    progress: ProgressFn | None = None,
) -> tuple[dict[str, str], float]:
    """Compile every registered propensity champion into ``cache`` (default ``data_home/compiled``, where
    ``score --all`` and the API look), each checked against LightGBM on the latest snapshot's first rows.

    Returns:
        ``{"name vN": "lleaves" or "LightGBM (why not)"}`` and the seconds spent compiling.

    Raises:
        KairosError: no snapshot, or no propensity model in the registry.
    """
    tick = progress or (lambda step, frac: None)
    registry.quiet_mlflow()
    snapshot = latest_snapshot(data_home)
    with tempfile.TemporaryDirectory() as tmp:
        models, _ = load_champions(tracking_uri, list(MODEL_NAMES), Path(tmp), alias)
    if not models:
        raise KairosError(f"no registered propensity model to compile in {tracking_uri}: train some first")
    probe = _probe(models, snapshot.path / SNAPSHOT_FILE)
    _, engines, seconds = _compile_all(models, cache or data_home / COMPILED_DIR, probe, tick)
    return {f"{m.name} v{m.version}": engines[m.name] for m in models}, seconds


def _features(models: list[PropensityModel]) -> list[str]:
    """Every feature the models read, each once, in the order the models list them."""
    return list(dict.fromkeys(f for m in models for f in m.features))


def _probe(models: list[PropensityModel], snapshot_file: Path) -> pd.DataFrame:
    """The snapshot's first rows, every model's features: what a compiled model is checked on."""
    return next(_batches(snapshot_file, _features(models), PROBE_ROWS))


def _compile_all(
    models: list[PropensityModel], cache: Path, probe: pd.DataFrame, tick: ProgressFn
) -> tuple[list[PropensityModel], dict[str, str], float]:
    """Each model compiled and checked on ``probe``, or left to LightGBM with the reason; and the seconds spent."""
    out, engines = [], {}
    started = time.perf_counter()
    for m in models:
        if m.baseline is not None:  # a served baseline is a few operations per row: nothing to compile
            out.append(m)
            engines[m.name] = f"baseline ({m.baseline})"
            continue
        tick(f"compiling {m.name} v{m.version} (once per version)", 0.0)
        try:
            out.append(m.compile(cache, probe))
            engines[m.name] = "lleaves"
        except CompileError as exc:
            out.append(m)
            engines[m.name] = f"LightGBM ({exc})"
    return out, engines, time.perf_counter() - started


def _numbers(column: pa.Array) -> np.ndarray:
    """A numeric or boolean column as float64, null as NaN."""
    return np.asarray(pc.cast(column, pa.float64(), safe=False).to_numpy(zero_copy_only=False), dtype=np.float64)


def _matrix(batch: pa.RecordBatch, names: list[str]) -> np.ndarray:
    """The batch's ``names`` columns as a C-ordered float64 matrix of float32 values (what LightGBM sees;
    what the compiled code reads), null as NaN."""
    out = np.empty((len(names), batch.num_rows), dtype=np.float32)  # column by column, contiguous writes
    for j, name in enumerate(names):
        out[j] = _numbers(batch.column(name))
    return np.ascontiguousarray(out.T, dtype=np.float64)


_BAND_LABELS = pa.array(BANDS, pa.string())


def _constant(value: str, n: int) -> pa.Array:
    """``value`` on every one of ``n`` rows, dictionary-encoded (one string stored), as a string column."""
    return pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int8)), pa.array([value])).cast(pa.string())


def _band_strings(codes: np.ndarray, outside: np.ndarray | None) -> pa.Array:
    """Band names from their codes (null where ``outside``), built in Arrow rather than as Python strings."""
    indices = pa.array(codes, pa.int8(), mask=outside)
    return pa.DictionaryArray.from_arrays(indices, _BAND_LABELS).cast(pa.string())


@dataclass(frozen=True)
class _Joined:
    """Columns of a per-customer table lined up with the snapshot's customers once (null where a customer
    has no row); a batch takes its slice."""

    columns: dict[str, pa.Array]
    positions: pa.Array  # per snapshot row, the table's row, or null

    @classmethod
    def of(cls, table: pd.DataFrame, names: Sequence[str], kind: pa.DataType, keys: pa.ChunkedArray) -> _Joined:
        own = pa.array(table.index.to_numpy(dtype=object), pa.string())
        positions = pc.index_in(keys.cast(pa.string()), value_set=own).combine_chunks()
        numeric = pa.types.is_floating(kind)
        columns = {
            c: pa.array(table[c].to_numpy(np.float32, na_value=np.nan) if numeric else table[c], kind, from_pandas=True)
            for c in names
        }
        return cls(columns, positions)

    def take(self, offset: int, length: int) -> dict[str, pa.Array]:
        rows = self.positions.slice(offset, length)
        return {c: values.take(rows) for c, values in self.columns.items()}
