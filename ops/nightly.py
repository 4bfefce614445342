"""``kairos nightly``: one run of every job on a new export, resumable after a failure.

The steps, in order (:data:`STEPS`): ingest the export -> build the feature snapshot -> publish it to the
online store (Redis; skipped with the in-process store, which reads the latest snapshot when the API
starts) -> monitor the champions -> retrain the ones due (with ``--policy``; else skipped) -> compile the
champions -> write the score export (``HOME/exports/<as_of>/scores.parquet``) and compare its scores with
the previous export's.

Each step is idempotent (running it twice on the same inputs leaves what one run leaves). The run record
``HOME/nightly/<input hash>.json`` lists the steps with status, start, seconds and a line of detail (or the
error), and the sha256 of every input file and of the mapping. A rerun on the same export resumes from the
first step that is not done; a finished run is not repeated (``force`` starts it again). A new export has
another hash, so another record.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from features.errors import KairosError

STEPS = ("ingest", "features", "publish", "monitor", "retrain", "compile", "score")
RECORDS_DIR = "nightly"
RECORD_VERSION = 1
LOCK_FILE = ".lock"


@dataclass(frozen=True)
class NightlyConfig:
    """Everything one nightly run is a function of."""

    data_home: Path
    input_dir: Path
    mapping: str  # a mapping YAML path or a built-in name
    tracking_uri: str
    policy: Path | None = None
    redis_url: str | None = None
    redis_prefix: str = "kairos"
    skip: frozenset[str] = frozenset()
    now: datetime | None = None  # the ingest's reference time for the future-timestamp rule (default: now)
    pseudonymizer: Any = None  # features.ingest's keyed pseudonymizer (the CLI builds it)
    realised: bool = True  # the monitor backtests each champion on the last matured window


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def input_hashes(cfg: NightlyConfig) -> dict[str, str]:
    """sha256 of every file of the export (by relative path) and of the mapping (its file, or its name)."""
    root = Path(cfg.input_dir)
    if not root.is_dir():
        raise KairosError(f"no export folder at {root}")
    files = {str(p.relative_to(root)): _sha256(p) for p in sorted(root.rglob("*")) if p.is_file()}
    if not files:
        raise KairosError(f"the export folder {root} holds no file")
    mapping = Path(cfg.mapping)
    files["<mapping>"] = _sha256(mapping) if mapping.is_file() else f"built-in:{cfg.mapping}"
    return files


def run_key(hashes: dict[str, str]) -> str:
    canonical = json.dumps(hashes, sort_keys=True).encode("utf-8")
    return hashlib.sha256(canonical).hexdigest()[:16]


StepFn = Callable[[NightlyConfig], str]


def _ingest(cfg: NightlyConfig) -> str:
    from features.ingest import ingest
    from features.mapping import load_mapping

    result = ingest(
        cfg.input_dir,
        load_mapping(cfg.mapping),
        cfg.data_home,
        now=cfg.now or datetime.now(UTC),
        pseudonymizer=cfg.pseudonymizer,
    )
    return f"published {result.path}"


def _features(cfg: NightlyConfig) -> str:
    from features.store import build_snapshot

    snap = build_snapshot(cfg.data_home)
    return f"snapshot as of {snap.manifest['as_of']}, {snap.manifest['rows']:,} customers"


def _publish(cfg: NightlyConfig) -> str:
    if cfg.redis_url is None:
        raise _Skip("no Redis: the in-process online store reads the latest snapshot when the API starts")
    from features.online import RedisOnlineStore, publish_to_redis

    store = RedisOnlineStore.connect(cfg.redis_url, cfg.redis_prefix, timeout=30, connect_timeout=5)
    version = publish_to_redis(cfg.data_home, store)
    return f"online store version {version}"


def _monitor(cfg: NightlyConfig) -> str:
    from ops.monitor import run_monitor

    report = run_monitor(cfg.data_home, cfg.tracking_uri, realised=cfg.realised)
    said = report.attention
    return f"{len(said)} item(s) need attention" + (": " + " | ".join(said) if said else "")


def _retrain(cfg: NightlyConfig) -> str:
    if cfg.policy is None:
        raise _Skip("no --policy: nothing is retrained automatically")
    from features.store import latest_snapshot
    from ops.monitor import LATEST_FILE, MONITORING_DIR
    from ops.retrain import load_policy, retrain_if_needed

    # the monitor step of this run wrote the summary of this snapshot: decide on it rather than monitor twice
    latest = Path(cfg.data_home) / MONITORING_DIR / LATEST_FILE
    fresh = latest.is_file() and (
        json.loads(latest.read_text(encoding="utf-8")).get("snapshot_as_of")
        == latest_snapshot(cfg.data_home).manifest["as_of"]
    )
    report = retrain_if_needed(
        cfg.data_home,
        cfg.tracking_uri,
        load_policy(cfg.policy),
        realised=cfg.realised,
        summary_file=latest if fresh else None,
    )
    return " | ".join(d.line() for d in report.decisions) or "no champion to decide on"


def _compile(cfg: NightlyConfig) -> str:
    from batch.score import compile_champions

    engines, seconds = compile_champions(cfg.data_home, cfg.tracking_uri)
    return ", ".join(f"{k}: {v}" for k, v in engines.items()) + f" ({seconds:.1f} s)"


def _score(cfg: NightlyConfig) -> str:
    from batch.score import score_all
    from features.store import latest_snapshot
    from ops.monitor import export_path, update_score_shift

    snap = latest_snapshot(cfg.data_home)
    out = export_path(cfg.data_home, snap.as_of)
    result = score_all(cfg.data_home, cfg.tracking_uri, out, compiled="compile" not in cfg.skip)
    moved = update_score_shift(cfg.data_home)
    return f"{result.customers:,} customers to {out}" + (f"; {moved}" if moved else "")


STEP_FUNCTIONS: dict[str, StepFn] = {
    "ingest": _ingest,
    "features": _features,
    "publish": _publish,
    "monitor": _monitor,
    "retrain": _retrain,
    "compile": _compile,
    "score": _score,
}


class _Skip(Exception):
    """A step that has nothing to do in this configuration (recorded as skipped, with the reason)."""


@dataclass
class NightlyRun:
    record_path: Path
    record: dict[str, Any]
    resumed_from: str | None = None
    ran: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.record["status"] == "done"


def _write(path: Path, record: dict[str, Any]) -> None:
    staged = path.with_name(path.name + ".partial")
    staged.write_text(json.dumps(record, indent=2, default=str), encoding="utf-8")
    staged.replace(path)


def run_nightly(cfg: NightlyConfig, *, force: bool = False) -> NightlyRun:
    """Run (or resume) the nightly steps on ``cfg.input_dir``; the record says what was done.

    A failing step stops the run: its error is recorded, the record's status is ``failed`` and the
    exception propagates; the next call on the same inputs starts again at that step.

    Raises:
        KairosError: the export folder is missing or empty, an unknown step is named in ``skip``, or
            another nightly run on the same data home is in progress (``HOME/nightly/.lock``).
    """
    unknown = sorted(set(cfg.skip) - set(STEPS))
    if unknown:
        raise KairosError(f"unknown step(s) to skip {unknown}; the steps: {', '.join(STEPS)}")
    hashes = input_hashes(cfg)
    key = run_key(hashes)
    folder = Path(cfg.data_home) / RECORDS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / LOCK_FILE).open("a") as lock:
        try:  # released by the system when this process ends, however it ends
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise KairosError(
                f"another nightly run holds {folder / LOCK_FILE}: one run at a time per data home"
            ) from None
        return _run(cfg, hashes, key, folder, force)


def _run(cfg: NightlyConfig, hashes: dict[str, str], key: str, folder: Path, force: bool) -> NightlyRun:
    path = folder / f"{key}.json"
    record: dict[str, Any] | None = None
    if path.is_file() and not force:
        record = json.loads(path.read_text(encoding="utf-8"))
        if record["status"] == "done":
            return NightlyRun(path, record)
    fresh = record is None
    if record is None:
        record = {
            "version": RECORD_VERSION,
            "run": key,
            "input": str(cfg.input_dir),
            "mapping": cfg.mapping,
            "inputs_sha256": hashes,
            "created_at": datetime.now(UTC).isoformat(),
            "attempts": 0,
            "status": "running",
            "steps": [{"name": s, "status": "pending"} for s in STEPS],
        }
    record["attempts"] += 1
    record["status"] = "running"
    run = NightlyRun(path, record)
    for step in record["steps"]:
        if step["status"] in ("done", "skipped"):
            continue
        if run.resumed_from is None and not fresh:
            run.resumed_from = step["name"]
        step.update(status="running", started_at=datetime.now(UTC).isoformat(), error=None)
        _write(path, record)
        began = time.perf_counter()
        try:
            if step["name"] in cfg.skip:
                raise _Skip("skipped by --skip")
            detail = STEP_FUNCTIONS[step["name"]](cfg)
            step.update(status="done", detail=detail)
            run.ran.append(step["name"])
        except _Skip as why:
            step.update(status="skipped", detail=str(why))
        except Exception as exc:
            step.update(status="failed", error=f"{type(exc).__name__}: {exc}", seconds=time.perf_counter() - began)
            record["status"] = "failed"
            _write(path, record)
            raise
        step["seconds"] = round(time.perf_counter() - began, 3)
        _write(path, record)
    record["status"] = "done"
    record["finished_at"] = datetime.now(UTC).isoformat()
    _write(path, record)
    return run
