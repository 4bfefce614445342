"""Evaluation plots saved as PNG for the model card and MLflow: gains, calibration, importance, SHAP.

Figures are drawn on matplotlib's Agg canvas created inside each function (no pyplot, no global
backend switch, nothing at import), so the functions are safe in servers, tests and threads. The
numbers come from :mod:`models.evaluation` and :mod:`models.reasons`, the same ones the metrics use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
import pandas as pd

from models.evaluation import calibration_table, check_labels, gains_curve
from models.reasons import as_booster, contributions

if TYPE_CHECKING:
    from matplotlib.figure import Figure

ArrayLike: TypeAlias = Sequence[float] | np.ndarray | pd.Series
DPI = 110


def _figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | Path) -> Path:
    out = Path(path)
    if out.suffix.lower() != ".png":
        raise ValueError(f"path: expected a .png file, got {out.name!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    return out


def _check_scores(y: ArrayLike, scores: Mapping[str, ArrayLike]) -> np.ndarray:
    if not scores:
        raise ValueError("scores: give at least one model (name -> scores)")
    y_arr = check_labels(y, "y")
    for name, s in scores.items():
        if len(s) != y_arr.size:
            raise ValueError(f"scores[{name!r}]: {len(s)} values for {y_arr.size} labels")
    return y_arr


def gains_chart(
    y: ArrayLike, scores: Mapping[str, ArrayLike], path: str | Path, *, title: str = "Cumulative gains"
) -> Path:
    """Share of positives captured against share targeted, one line per model, with the random
    targeting diagonal and the perfect ranking for reference."""
    y_arr = _check_scores(y, scores)
    fig = _figure(6.0, 4.6)
    ax = fig.add_subplot()
    base = float(y_arr.mean())
    ax.plot([0, base, 1], [0, 1, 1], color="0.6", linestyle=":", label="perfect")
    ax.plot([0, 1], [0, 1], color="0.4", linestyle="--", label="random")
    for name, s in scores.items():
        curve = gains_curve(y_arr, s)
        ax.plot(curve["share_targeted"], curve["share_captured"], label=name, linewidth=1.6)
    for q in (0.1, 0.2):
        ax.axvline(q, color="0.85", linewidth=0.8, zorder=0)
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="share of customers targeted (highest scores first)")
    ax.set(ylabel="share of positives captured", title=title)
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def calibration_curve(
    y: ArrayLike,
    probabilities: Mapping[str, ArrayLike],
    path: str | Path,
    *,
    bins: int = 10,
    title: str = "Calibration",
) -> Path:
    """Observed rate against mean predicted probability per equal-frequency bin, one line per model,
    with the diagonal of perfect calibration and, below, the distribution of each model's predictions."""
    y_arr = _check_scores(y, probabilities)
    fig = _figure(6.0, 6.0)
    grid = fig.add_gridspec(2, 1, height_ratios=(3, 1))
    ax = fig.add_subplot(grid[0])
    hist = fig.add_subplot(grid[1], sharex=ax)
    top = 0.0
    for name, p in probabilities.items():
        table = calibration_table(y_arr, p, bins)
        ax.plot(table["mean_predicted"], table["observed_rate"], marker="o", markersize=4, label=name)
        hist.hist(np.asarray(p, dtype=float), bins=40, range=(0, 1), histtype="step", label=name)
        top = max(top, float(table["mean_predicted"].max()), float(table["observed_rate"].max()))
    limit = min(1.0, max(0.05, top * 1.1))
    ax.plot([0, limit], [0, limit], color="0.4", linestyle="--", label="perfect calibration")
    ax.set(xlim=(0, limit), ylim=(0, limit), ylabel="observed rate", title=title)
    ax.set_xlabel("mean predicted probability (equal-frequency bins)")
    ax.legend(loc="upper left", fontsize=8)
    hist.set(xlabel="predicted probability", ylabel="customers")
    return _save(fig, path)


def feature_importance(
    booster_text: Any, path: str | Path, *, top: int = 20, descriptions: Mapping[str, str] | None = None
) -> Path:
    """Horizontal bars of the ``top`` features by total split gain (LightGBM ``importance_type="gain"``)."""
    booster, _ = as_booster(booster_text)
    gains = np.asarray(booster.feature_importance(importance_type="gain"), dtype=float)
    names = np.asarray(booster.feature_name())
    order = np.argsort(-gains, kind="stable")[:top]
    order = order[gains[order] > 0]
    fig = _figure(7.0, 0.3 * max(len(order), 3) + 1.2)
    ax = fig.add_subplot()
    if len(order) == 0:
        ax.text(0.5, 0.5, "the model has no splits", ha="center", va="center")
        ax.set_axis_off()
    else:
        labels = [_label(str(n), descriptions) for n in names[order]][::-1]
        ax.barh(labels, gains[order][::-1], color="tab:blue")
        ax.set(
            xlabel="total gain (loss reduction from the feature's splits)", title=f"Top {len(order)} features by gain"
        )
        ax.tick_params(axis="y", labelsize=8)
    return _save(fig, path)


def _label(name: str, descriptions: Mapping[str, str] | None) -> str:
    if not descriptions or name not in descriptions:
        return name
    text = descriptions[name]
    return f"{name} ({text[:40]}…)" if len(text) > 40 else f"{name} ({text})"


def shap_summary(
    booster_text: Any,
    X: pd.DataFrame,
    path: str | Path,
    *,
    top: int = 20,
    max_rows: int = 3000,
    seed: int = 0,
) -> Path:
    """Beeswarm-style summary of TreeSHAP contributions (LightGBM ``pred_contrib``).

    One row per feature (the ``top`` by mean absolute contribution); each dot is a customer at its
    contribution to the raw score, coloured by the feature's value (its percentile among the rows
    plotted: blue low, red high; grey when missing). At most ``max_rows`` rows, sampled with ``seed``.
    """
    if len(X) == 0:
        raise ValueError("X: no rows to explain")
    sample = X.sample(n=max_rows, random_state=seed) if len(X) > max_rows else X
    contrib = contributions(booster_text, sample).drop(columns="bias")
    mean_abs = contrib.abs().mean().to_numpy()
    order = np.argsort(-mean_abs, kind="stable")[:top]
    order = order[mean_abs[order] > 0]
    fig = _figure(7.5, 0.34 * max(len(order), 3) + 1.4)
    ax = fig.add_subplot()
    if len(order) == 0:
        ax.text(0.5, 0.5, "no feature contributes", ha="center", va="center")
        ax.set_axis_off()
        return _save(fig, path)
    rng = np.random.default_rng(seed)
    from matplotlib import colormaps

    cmap = colormaps["coolwarm"]
    points = None
    for row, j in enumerate(order[::-1]):
        name = contrib.columns[j]
        c = contrib.iloc[:, j].to_numpy()
        v = pd.to_numeric(sample[name], errors="coerce").to_numpy(np.float64)
        known = np.isfinite(v)
        colour_value = np.full(v.size, np.nan)
        if known.any():
            colour_value[known] = pd.Series(v[known]).rank(pct=True).to_numpy()
        jitter = rng.uniform(-0.3, 0.3, size=c.size)
        ax.scatter(c[~known], row + jitter[~known], s=6, color="0.7", alpha=0.6, linewidths=0)
        points = ax.scatter(
            c[known],
            row + jitter[known],
            s=6,
            c=colour_value[known],
            cmap=cmap,
            vmin=0,
            vmax=1,
            alpha=0.7,
            linewidths=0,
        )
    ax.axvline(0, color="0.5", linewidth=0.8)
    ax.set_yticks(range(len(order)), [str(contrib.columns[j]) for j in order[::-1]], fontsize=8)
    ax.set(
        xlabel="contribution to the raw score (log-odds; TreeSHAP)", title=f"SHAP summary ({len(sample):,} customers)"
    )
    if points is not None:
        bar = fig.colorbar(points, ax=ax, pad=0.01, fraction=0.04)
        bar.set_label("value percentile\n(grey: missing)", fontsize=8)
    return _save(fig, path)


def decile_chart(deciles: pd.DataFrame, path: str | Path, *, title: str = "Value calibration by decile") -> Path:
    """Mean predicted against mean realised value per decile of the prediction
    (:func:`models.evaluation.decile_calibration` output), bars side by side."""
    missing = {"decile", "mean_predicted", "mean_actual"} - set(deciles.columns)
    if missing:
        raise ValueError(f"deciles: missing columns {sorted(missing)}")
    fig = _figure(7.0, 3.6)
    ax = fig.add_subplot()
    x = np.arange(len(deciles))
    ax.bar(x - 0.2, deciles["mean_predicted"], width=0.4, label="mean predicted", color="tab:blue")
    ax.bar(x + 0.2, deciles["mean_actual"], width=0.4, label="mean realised", color="tab:orange")
    ax.set_xticks(x, [str(int(d) + 1) for d in deciles["decile"]])
    ax.set(xlabel="decile of the prediction (1 = lowest)", ylabel="value in the horizon", title=title)
    ax.legend(loc="upper left", fontsize=8)
    return _save(fig, path)
