"""The monitor's latest figures as Prometheus gauges, read from the JSON summary ``kairos monitor`` writes.

The API computes nothing here: at each scrape of ``/metrics`` it reads ``DATA_HOME/monitoring/latest.json``
(again only when the file changed) and exposes its figures. The summary's layout is the monitor's
(``ops/monitor.py``); this module reads it as plain JSON, so serving imports no job code.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

MONITORING_DIR = "monitoring"
LATEST_FILE = "latest.json"

logger = logging.getLogger("kairos.monitoring")


def latest_summary_path(data_home: Path) -> Path:
    return Path(data_home) / MONITORING_DIR / LATEST_FILE


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


class MonitoringCollector(Collector):
    """Gauges of the latest monitor summary; none (but ``kairos_monitor_summary_loaded 0``) without one."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._seen: tuple[float, int] | None = None
        self._summary: dict[str, Any] | None = None

    def _read(self) -> dict[str, Any] | None:
        try:
            stat = self.path.stat()
        except OSError:
            self._seen, self._summary = None, None
            return None
        key = (stat.st_mtime, stat.st_size)
        if key != self._seen:
            try:
                loaded = json.loads(self.path.read_text(encoding="utf-8"))
                self._summary = loaded if isinstance(loaded, dict) else None
            except (OSError, ValueError):
                logger.warning("the monitor summary does not read", extra={"path": str(self.path)})
                self._summary = None
            self._seen = key
        return self._summary

    def collect(self) -> Iterator[GaugeMetricFamily]:
        summary = self._read()
        loaded = GaugeMetricFamily(
            "kairos_monitor_summary_loaded", "1 when the latest monitor summary was read (DATA_HOME/monitoring)."
        )
        loaded.add_metric([], 1.0 if summary is not None else 0.0)
        yield loaded
        if summary is None:
            return
        when = GaugeMetricFamily(
            "kairos_monitor_generated_timestamp_seconds", "When the latest monitor summary was written (Unix time)."
        )
        if (t := _number(summary.get("generated_at_unix"))) is not None:
            when.add_metric([], t)
        yield when
        gauges = {
            "attention": GaugeMetricFamily(
                "kairos_monitor_attention", "1 when the monitor says the model needs attention.", labels=["model"]
            ),
            "psi_max": GaugeMetricFamily(
                "kairos_monitor_feature_psi_max",
                "Largest PSI of the model's features, current snapshot against its training rows.",
                labels=["model"],
            ),
            "psi_weighted": GaugeMetricFamily(
                "kairos_monitor_feature_psi_weighted",
                "PSI of the model's features weighted by each one's share of the model's split gain.",
                labels=["model"],
            ),
            "drifted": GaugeMetricFamily(
                "kairos_monitor_features_drifted",
                "Features of the model with a moderate (0.1-0.25) or major (>= 0.25) PSI.",
                labels=["model", "level"],
            ),
            "psi": GaugeMetricFamily(
                "kairos_monitor_feature_psi",
                "PSI of one feature against the training rows.",
                labels=["model", "feature"],
            ),
            "missing": GaugeMetricFamily(
                "kairos_monitor_feature_missing_rate",
                "Missing-value rate of one feature in the current snapshot.",
                labels=["model", "feature"],
            ),
            "roc_auc": GaugeMetricFamily(
                "kairos_monitor_realised_roc_auc",
                "ROC-AUC on the last matured window, by scorer (kairos or a baseline).",
                labels=["model", "scorer"],
            ),
            "recorded": GaugeMetricFamily(
                "kairos_monitor_recorded_roc_auc",
                "The champion's holdout ROC-AUC when it was trained.",
                labels=["model"],
            ),
            "age": GaugeMetricFamily(
                "kairos_monitor_champion_age_days", "Days since the champion version was registered.", labels=["model"]
            ),
            "score_psi": GaugeMetricFamily(
                "kairos_monitor_score_psi",
                "PSI of the model's scores, previous export against the current.",
                labels=["model"],
            ),
            "score_ks": GaugeMetricFamily(
                "kairos_monitor_score_ks",
                "Kolmogorov-Smirnov statistic of the same two score samples.",
                labels=["model"],
            ),
        }
        for model, entry in (summary.get("models") or {}).items():
            if not isinstance(entry, dict):
                continue
            gauges["attention"].add_metric([model], 1.0 if entry.get("attention") else 0.0)
            drift = entry.get("drift") or {}
            if (v := _number(drift.get("psi_max"))) is not None:
                gauges["psi_max"].add_metric([model], v)
            if (v := _number(drift.get("psi_weighted"))) is not None:
                gauges["psi_weighted"].add_metric([model], v)
            for lvl in ("major", "moderate"):
                if (v := _number(drift.get(f"features_{lvl}"))) is not None:
                    gauges["drifted"].add_metric([model, lvl], v)
            for feature in drift.get("features") or []:
                if (v := _number(feature.get("psi"))) is not None:
                    gauges["psi"].add_metric([model, str(feature.get("feature"))], v)
                if (v := _number(feature.get("missing_rate_current"))) is not None:
                    gauges["missing"].add_metric([model, str(feature.get("feature"))], v)
            performance = entry.get("performance") or {}
            for scorer, value in (performance.get("roc_auc") or {}).items():
                if (v := _number(value)) is not None:
                    gauges["roc_auc"].add_metric([model, str(scorer)], v)
            if (v := _number(performance.get("recorded_roc_auc"))) is not None:
                gauges["recorded"].add_metric([model], v)
            if (v := _number(entry.get("age_days"))) is not None:
                gauges["age"].add_metric([model], v)
        for model, shift in ((summary.get("scores") or {}).get("models") or {}).items():
            if isinstance(shift, dict):
                if (v := _number(shift.get("psi"))) is not None:
                    gauges["score_psi"].add_metric([model], v)
                if (v := _number(shift.get("ks"))) is not None:
                    gauges["score_ks"].add_metric([model], v)
        yield from gauges.values()
