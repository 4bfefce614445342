"""The Models page's data: each served model's registered versions (champion, challenger), their cards,
metrics, baseline comparison and plots from the registry, and the monitor's drift and realised
performance (its backtest of the champion on the last matured window).

Promotion and rollback go through :mod:`bundles.kinds` (the version verifies before the alias moves), as
``kairos promote`` / ``kairos rollback`` do; the service then loads what the alias points at.
"""

from __future__ import annotations

import io
import re
import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from bundles import registry
from bundles.kinds import promote as promote_version
from bundles.kinds import rollback as rollback_champion
from serving.console.data import monitor_summary
from serving.state import Services

CHALLENGER = "challenger"
PLOTS = "plots"
PLOT_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}\.png$")
VERSION = re.compile(r"^[0-9]{1,9}$")
SHOWN_VERSIONS = 8


def _client(services: Services) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=services.settings.tracking_uri)


def model_list(services: Services) -> list[dict[str, Any]]:
    """Every configured model: what serves now (the API's ``GET /v1/models`` body) and monitor flags."""
    described = services.describe()
    summary = monitor_summary(services.settings.data_home) or {}
    flags = summary.get("models") or {}
    out = []
    for kind, state in described.items():
        entry = flags.get(state["name"]) if isinstance(flags.get(state["name"]), dict) else None
        out.append({"kind": kind, **state, "attention": bool(entry and entry.get("attention"))})
    return out


def model_detail(services: Services, kind: str) -> dict[str, Any] | None:
    """One configured model's registry view; None for a kind this service does not configure."""
    slot = services.slots.get(kind)
    if slot is None:
        return None
    name = slot.name
    client = _client(services)
    from mlflow.exceptions import MlflowException

    summary = monitor_summary(services.settings.data_home) or {}
    monitor = (summary.get("models") or {}).get(name)
    loaded = slot.current.describe() if slot.current is not None else None
    base: dict[str, Any] = {
        "kind": kind,
        "name": name,
        "error": None,
        "aliases": {},
        "champion": None,
        "challenger": None,
        "cards": [],
        "versions": [],
        "loaded": loaded,
        "monitor": monitor if isinstance(monitor, dict) else None,
        "monitor_at": summary.get("generated_at"),
        "can_rollback": False,
    }
    try:
        aliases = dict(client.get_registered_model(name).aliases or {})
        found = client.search_model_versions(f"name='{name}'")
    except MlflowException as exc:  # not registered yet, or the registry refused: the page says which
        return base | {"error": str(exc)[:300]}
    by_version = {str(alias_v): alias for alias, alias_v in aliases.items()}
    versions = sorted(found, key=lambda v: int(v.version), reverse=True)[:SHOWN_VERSIONS]
    champion = aliases.get(registry.CHAMPION)
    challenger = aliases.get(CHALLENGER) or next(
        (str(v.version) for v in versions if str(v.version) != str(champion)), None
    )
    shown = [v for v in versions if str(v.version) in {str(champion), str(challenger)}]
    cards = [_version_card(client, v, by_version.get(str(v.version))) for v in shown]
    return base | {
        "aliases": aliases,
        "champion": champion,
        "challenger": challenger,
        "cards": cards,
        "versions": [
            {
                "version": str(v.version),
                "alias": by_version.get(str(v.version)),
                "decision": v.tags.get("kairos.decision"),
            }
            for v in versions
        ],
        "can_rollback": champion is not None and _previous_of(client, name, str(champion)) is not None,
    }


def _previous_of(client: Any, name: str, version: str) -> str | None:
    try:
        return client.get_model_version(name, version).tags.get(registry.TAG_PREVIOUS) or None
    except Exception:  # only decides whether the button shows; the rollback itself checks again
        return None


def _version_card(client: Any, v: Any, alias: str | None) -> dict[str, Any]:
    run_id = v.run_id
    metrics: dict[str, float] = {}
    tags: dict[str, str] = {}
    plots: list[str] = []
    baselines: list[dict[str, Any]] = []
    if run_id:
        try:
            run = client.get_run(run_id)
            metrics = {k: float(x) for k, x in sorted(run.data.metrics.items()) if k.startswith("holdout")}
            tags = dict(run.data.tags)
            plots = sorted(
                Path(a.path).name for a in client.list_artifacts(run_id, PLOTS) if PLOT_NAME.match(Path(a.path).name)
            )
            names = {Path(a.path).name for a in client.list_artifacts(run_id)}
            if "holdout_metrics.csv" in names:
                baselines = _baselines(client, run_id)
        except Exception as exc:  # a run the registry cannot show: the card says so, the page still renders
            tags = {"kairos.console_error": f"{type(exc).__name__}"}
    return {
        "version": str(v.version),
        "alias": alias,
        "run_id": run_id,
        "card": v.description or "",
        "decision": v.tags.get("kairos.decision"),
        "vs_baseline": tags.get("kairos.vs_best_baseline"),
        "metrics": metrics,
        "plots": plots,
        "baselines": baselines,
        "created": pd.Timestamp(v.creation_timestamp, unit="ms", tz="UTC").isoformat()
        if v.creation_timestamp
        else None,
    }


def _baselines(client: Any, run_id: str) -> list[dict[str, Any]]:
    """The run's holdout table (Kairos beside every baseline), as the job logged it."""
    text = client.download_artifacts(run_id, "holdout_metrics.csv")
    frame = pd.read_csv(io.StringIO(Path(text).read_text(encoding="utf-8")), index_col=0)
    keep = [c for c in ("roc_auc", "pr_auc", "brier", "log_loss", "lift_at_10", "ece") if c in frame.columns]
    frame = frame[keep] if keep else frame
    return [{"scorer": str(i), **{c: _num(r[c]) for c in frame.columns}} for i, r in frame.iterrows()]


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if f != f else f


def plot_file(services: Services, kind: str, version: str, plot: str) -> Path | None:
    """A version's plot (PNG) from its run, fetched once into the model cache; None when there is none."""
    slot = services.slots.get(kind)
    if slot is None or not VERSION.match(version) or not PLOT_NAME.match(plot):
        return None
    cache = Path(services.settings.model_cache_dir) / "console-plots" / slot.name / version
    target = cache / plot
    if target.is_file():
        return target
    client = _client(services)
    try:
        run_id = client.get_model_version(slot.name, version).run_id
        fetched = Path(client.download_artifacts(run_id, f"{PLOTS}/{plot}"))
    except Exception:  # no such version, run or plot
        return None
    cache.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(fetched, target)
    return target


def promote(services: Services, kind: str, version: str) -> str:
    """Move ``@champion`` of ``kind``'s model to ``version`` (verified first), then load it; a line saying what
    happened. Raises what :func:`bundles.kinds.promote` raises."""
    slot = services.slots[kind]
    reg = promote_version(services.settings.tracking_uri, slot.name, version, kind=kind)
    outcome = services.reload(kinds=[kind])[0]
    return f"{slot.name} v{reg.version} @{reg.alias}: {reg.reason}; service: {outcome.outcome}"


def rollback(services: Services, kind: str) -> str:
    slot = services.slots[kind]
    reg = rollback_champion(services.settings.tracking_uri, slot.name, kind=kind)
    outcome = services.reload(kinds=[kind])[0]
    return f"{slot.name} v{reg.version} @{reg.alias}: {reg.reason}; service: {outcome.outcome}"
