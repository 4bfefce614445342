"""``kairos audience``: an audience answered by the nightly export's own scoring.

The snapshot is read batch by batch exactly as ``kairos score --all`` reads it (:func:`batch.score.score_tables`:
the same models, calibration, bands, CLV, segments and ids), each batch gets the consent per channel as of the
snapshot's instant and the features the condition names, and the condition (:class:`features.audience.Audience`)
keeps the members. Members go to a writer (CSV, Parquet, an advertising platform's upload file) or to a
count and a sample, one batch at a time: memory holds one batch and the snapshot-wide joins of the export
(a few int32 positions per customer), never the whole answer.

The instant of the answer is the snapshot's (``as_of``: the latest, or the one built as of a date); the
export filtered by hand at that instant gives the same customers (``tests/serving/test_audiences.py``).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from batch.score import ProgressFn, _prepare, _Prepared, score_tables
from bundles import registry
from bundles.propensity import MODEL_NAMES
from features.audience import (
    AD_FORMATS,
    CONSENT_PREFIX,
    SEGMENT_NAMES,
    Audience,
    AudienceDefinition,
    AudienceError,
    AudienceFormat,
    AudienceRun,
    AudienceWriter,
    Contacts,
    Sample,
    WriteReport,
    audience_names,
    load_definition,
    new_definition,
    save_run,
)
from features.conditions import BAND_LABEL_SUFFIX
from features.contract import RANK_SUFFIX, Col
from features.store import SNAPSHOT_FILE, attribute_bands, ingested_dir
from models.decisioning.marketing_policy import MarketingPolicy

CUSTOMERS_FILE = "customers.parquet"  # the ingested customers table: e-mails and phones
PROBABILITY = "_probability"  # the export's column of a model's probability: <model>_probability


@dataclass
class AudienceAnswer:
    """What one pass gave: the instant, how many customers were read and kept, a sample, what scored."""

    condition: str
    instant: datetime
    scanned: int = 0
    members: int = 0
    sample: list[dict[str, Any]] = field(default_factory=list)
    models: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    written: WriteReport | None = None
    path: Path | None = None
    seconds: float = 0.0

    @property
    def per_second(self) -> float:
        return self.scanned / self.seconds if self.seconds else float("nan")


class AudienceScan:
    """One audience condition over the export's rows.

    Args:
        data_home: the data home (its latest snapshot, or the one as of ``as_of``).
        tracking_uri: the registry (the ``alias`` models score, as in the export).
        condition: the audience condition (checked here: :class:`features.audience.AudienceError`).
        consent: always join the consent per channel (the upload formats need ``consent_advertising``);
            otherwise only when the condition names a ``consent_*``.
    """

    def __init__(
        self,
        data_home: Path,
        tracking_uri: str,
        condition: str,
        *,
        as_of: datetime | None = None,
        alias: str = registry.CHAMPION,
        compiled: bool = True,
        compile_cache: Path | None = None,
        consent: bool = False,
        progress: ProgressFn | None = None,
        policy: MarketingPolicy | None = None,
    ) -> None:
        self.data_home = data_home
        self.audience = Audience(condition, audience_names(MODEL_NAMES))  # refuses a bad condition first
        self.tick = progress or (lambda step, frac: None)
        wants_consent = consent or any(n.startswith(CONSENT_PREFIX) for n in self.audience.names)
        self.prep: _Prepared = _prepare(
            data_home,
            tracking_uri,
            alias=alias,
            compiled=compiled,
            compile_cache=compile_cache,
            as_of=as_of,
            tick=self.tick,
            segment_columns=tuple(SEGMENT_NAMES),
            consent=wants_consent,
            policy=policy,
        )
        schema = set(pq.read_schema(self.prep.snapshot.path / SNAPSHOT_FILE).names)
        carry: list[str] = []
        for name in sorted(self.audience.names):
            if name.startswith(CONSENT_PREFIX) and wants_consent:
                continue  # the consent table's, not the snapshot feature
            base = name[: -len(RANK_SUFFIX)] if name.endswith(RANK_SUFFIX) and name not in schema else name
            carry += [c for c in (base, base + BAND_LABEL_SUFFIX) if c in schema]
        self.carry = list(dict.fromkeys(carry))
        self.bands = attribute_bands(data_home)

    @property
    def instant(self) -> datetime:
        return self.prep.snapshot.as_of

    def chunks(self, batch_size: int = 50_000) -> Iterator[tuple[int, pd.DataFrame]]:
        """Per batch of the snapshot: how many customers it held and its members (every column)."""
        for table in score_tables(self.prep, self.data_home, batch_size=batch_size, carry=self.carry, tick=self.tick):
            frame = table.to_pandas()
            frame.columns = [c[: -len(PROBABILITY)] if c.endswith(PROBABILITY) else c for c in frame.columns]
            keep = self.audience.evaluate(frame, self.bands)
            yield len(frame), frame.loc[keep]

    def columns(self) -> list[str]:
        """The columns a plain export writes beside the ids: those the condition names."""
        names = self.audience.names
        return [n for n in sorted(names) if n not in (Col.CUSTOMER_ID, Col.CUSTOMER_KEY)]

    def _contacts(self, fmt: AudienceFormat) -> Contacts | None:
        return Contacts.read(ingested_dir(self.data_home) / CUSTOMERS_FILE) if fmt in AD_FORMATS else None

    def run(
        self,
        *,
        out: Path | None = None,
        fmt: AudienceFormat | str = AudienceFormat.PARQUET,
        sample_size: int = 10,
        batch_size: int = 50_000,
    ) -> AudienceAnswer:
        """Count the members, keep a sample and, with ``out``, write them in ``fmt``."""
        fmt = AudienceFormat(fmt)
        answer = AudienceAnswer(self.audience.text, self.instant, models=self.prep.versions, missing=self.prep.missing)
        sample = Sample(sample_size)
        writer = None
        columns: list[str] | None = None
        staged = out.with_name(out.name + ".partial") if out is not None else None
        start = time.perf_counter()
        try:
            for scanned, members in self.chunks(batch_size):
                if columns is None:
                    columns = [c for c in self.columns() if c in members.columns]
                    if staged is not None:
                        writer = AudienceWriter(fmt, staged, columns, self._contacts(fmt))
                answer.scanned += scanned
                answer.members += len(members)
                sample.offer(members, columns)
                if writer is not None:
                    writer.write(members)
        finally:
            if writer is not None:
                answer.written = writer.close()
        answer.seconds = time.perf_counter() - start
        answer.sample = sample.rows()
        if out is not None and staged is not None:
            if writer is None:  # an empty snapshot: still a file with its header
                AudienceWriter(fmt, staged, [], self._contacts(fmt)).close()
            staged.replace(out)
            answer.path = out
        return answer


def run_saved(
    data_home: Path,
    tracking_uri: str,
    name: str,
    *,
    condition: str | None = None,
    description: str = "",
    as_of: datetime | None = None,
    alias: str = registry.CHAMPION,
    compiled: bool = True,
    progress: ProgressFn | None = None,
    policy: MarketingPolicy | None = None,
) -> tuple[AudienceDefinition, AudienceAnswer]:
    """Save (with ``condition``: a new definition, or a changed one) and run the audience ``name``; its
    members replace the saved snapshot (``audiences/<name>/members.parquet``) and the run is recorded."""
    if condition is not None:
        try:
            definition = load_definition(data_home, name).model_copy(update={"condition": condition})
        except AudienceError:  # a new name: a new definition
            definition = new_definition(name, condition, description)
    else:
        definition = load_definition(data_home, name)
    scan = AudienceScan(
        data_home,
        tracking_uri,
        definition.condition,
        as_of=as_of,
        alias=alias,
        compiled=compiled,
        progress=progress,
        policy=policy,
    )
    with tempfile.TemporaryDirectory(dir=data_home) as tmp:
        members = Path(tmp) / "members.parquet"
        answer = scan.run(out=members, fmt=AudienceFormat.PARQUET, sample_size=0)
        run = AudienceRun(
            at=datetime.now(UTC),
            instant=answer.instant,
            source="export",
            members=answer.members,
            scanned=answer.scanned,
            models=answer.models,
        )
        definition = save_run(data_home, definition, run, members)
    answer.path = None
    return definition, answer
