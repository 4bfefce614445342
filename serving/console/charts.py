"""Vega-Lite specifications of the console's charts (rendered in the browser by the vendored vega-embed).

Each function takes data the page already holds and returns a spec; labels are translated here, in the
request's language, and numbers are formatted by Vega with the locale's separators (``format_locale``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from serving.console.i18n import N_, _

SCHEMA = "https://vega.github.io/schema/vega-lite/v6.json"  # an identifier, never fetched
WIDTH = "container"
DAYS = (N_("Mon"), N_("Tue"), N_("Wed"), N_("Thu"), N_("Fri"), N_("Sat"), N_("Sun"))


def _base(title: str, data: list[dict[str, Any]], height: int = 220) -> dict[str, Any]:
    return {
        "$schema": SCHEMA,
        "title": title,
        "width": WIDTH,
        "height": height,
        "data": {"values": data},
        "config": {"view": {"stroke": None}, "axis": {"labelLimit": 160}},
    }


def bars(title: str, data: list[dict[str, Any]], label: str, value: str, value_title: str, percent: bool = False):
    """Horizontal bars, largest first."""
    spec = _base(title, data, height=max(80, 22 * len(data)))
    axis_format = ".0%" if percent else ",d"
    spec |= {
        "mark": {"type": "bar", "tooltip": True},
        "encoding": {
            "y": {"field": label, "type": "nominal", "sort": "-x", "title": None},
            "x": {"field": value, "type": "quantitative", "title": value_title, "axis": {"format": axis_format}},
        },
    }
    return spec


def transitions(data: list[dict[str, Any]]) -> dict[str, Any]:
    """Customers by previous and current segment: a heat map with counts."""
    spec = _base(_("Moves since the previous snapshot"), data, height=max(120, 26 * len({d["previous"] for d in data})))
    enc = {
        "x": {"field": "current", "type": "nominal", "title": _("Now")},
        "y": {"field": "previous", "type": "nominal", "title": _("Before")},
    }
    spec |= {
        "layer": [
            {
                "mark": {"type": "rect", "tooltip": True},
                "encoding": enc
                | {
                    "color": {
                        "field": "customers",
                        "type": "quantitative",
                        "title": _("Customers"),
                        "scale": {"type": "log", "scheme": "blues"},
                    }
                },
            },
            {
                "mark": {"type": "text", "fontSize": 10},
                "encoding": enc | {"text": {"field": "customers", "type": "quantitative", "format": ",d"}},
            },
        ]
    }
    return spec


def trend(data: list[dict[str, Any]], title: str) -> dict[str, Any]:
    """Segment sizes over snapshots (points when there is one snapshot)."""
    spec = _base(title, data)
    spec |= {
        "mark": {"type": "line", "point": True, "tooltip": True},
        "encoding": {
            "x": {"field": "as_of", "type": "temporal", "title": _("Snapshot")},
            "y": {"field": "customers", "type": "quantitative", "title": _("Customers"), "axis": {"format": ",d"}},
            "color": {"field": "segment", "type": "nominal", "title": _("Segment")},
        },
    }
    return spec


def _hour_of_week(local_iso: str | None) -> int | None:
    if not local_iso:
        return None
    try:
        t = datetime.fromisoformat(local_iso)
    except ValueError:
        return None
    return t.weekday() * 24 + t.hour


def send_time(curve: list[float], best_local: str | None, second_local: str | None, channel: str) -> dict[str, Any]:
    """The 168-hour curve (Monday 00:00 local first) with the chosen and the second slot marked."""
    days = [_(d) for d in DAYS]
    data = [{"slot": i, "day": days[i // 24], "hour": i % 24, "score": v} for i, v in enumerate(curve)]
    marks = []
    for slot, name in ((_hour_of_week(best_local), _("chosen")), (_hour_of_week(second_local), _("second"))):
        if slot is not None:
            marks.append({"slot": slot, "which": name})
    spec = _base(_("Send-time curve, hour of the week (local)") + f" · {channel}", data, height=180)
    spec |= {
        "layer": [
            {
                "mark": {"type": "area", "opacity": 0.5, "tooltip": True},
                "encoding": {
                    "x": {
                        "field": "slot",
                        "type": "quantitative",
                        "title": _("Hour of the week"),
                        "scale": {"domain": [0, 167]},
                        "axis": {"values": [0, 24, 48, 72, 96, 120, 144], "labelExpr": _day_label_expr(days)},
                    },
                    "y": {"field": "score", "type": "quantitative", "title": _("Activity")},
                },
            },
            {
                "data": {"values": marks},
                "mark": {"type": "rule", "strokeWidth": 2},
                "encoding": {
                    "x": {"field": "slot", "type": "quantitative"},
                    "color": {"field": "which", "type": "nominal", "title": _("Slot")},
                },
            },
        ]
    }
    return spec


def _day_label_expr(days: list[str]) -> str:
    names = ",".join(f"'{d}'" for d in days)
    return f"[{names}][floor(datum.value / 24)]"


def probabilities(data: list[dict[str, Any]]) -> dict[str, Any]:
    """Every model's probability for one customer, coloured by band."""
    spec = _base(_("Scores"), data, height=max(80, 22 * len(data)))
    spec |= {
        "mark": {"type": "bar", "tooltip": True},
        "encoding": {
            "y": {"field": "model", "type": "nominal", "title": None, "sort": None},
            "x": {
                "field": "probability",
                "type": "quantitative",
                "title": _("Probability"),
                "scale": {"domain": [0, 1]},
                "axis": {"format": ".0%"},
            },
            "color": {"field": "band", "type": "nominal", "title": _("Band")},
        },
    }
    return spec
