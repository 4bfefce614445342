"""Training as of a date (issue 18): the full data seen as of D gives what an export truncated at D gives.

The truncated export is made here by hand with pandas, table by table, as a retailer would cut their files
(rows dated at or after D gone, a message's later opens and clicks not yet happened): the as-of view in
``features.store`` must agree with it on the tables, the data's end, the cutoffs, the labels and the features.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import ibis
import pandas as pd
import pytest

from features.datasets import LABEL, ChurnTarget, PurchaseTarget, ValueTarget, build_training_set
from features.store import (
    SNAPSHOT_FILE,
    as_of_view,
    build_snapshot,
    compute_features,
    data_end,
    ingested_dir,
    open_tables,
)
from tests.conftest import SynthHome, small_data_rules
from training.propensity import Context, churn_task, plan_for, purchase_task
from training.recs_eval import load_home

D = datetime(2025, 6, 1, tzinfo=UTC)  # the synthetic world runs from 2024-01-01 to 2025-12-31

# How a retailer truncates each file of the export at D: the column that dates a row, and later events.
_ROW_DATE = {
    "orders": "ordered_at",
    "order_lines": "ordered_at",
    "consents": "consented_at",
    "web_events": "occurred_at",
    "messages": "sent_at",
    "returns": "returned_at",
    "adjustments": "adjusted_at",
}
_LATER_EVENTS = {"messages": ("delivered_at", "opened_at", "clicked_at", "unsubscribed_at", "converted_at")}


def _truncate(home: Path, out: Path, at: datetime) -> Path:
    """A copy of ``home``'s ingested tables as an export taken at ``at`` would hold them."""
    src = ingested_dir(home)
    dst = out / "ingested"
    dst.mkdir(parents=True)
    stamp = pd.Timestamp(at)
    for path in src.iterdir():
        if path.suffix != ".parquet":
            shutil.copy(path, dst / path.name)
            continue
        frame = pd.read_parquet(path)
        name = path.stem
        if name in _ROW_DATE:
            frame = frame[frame[_ROW_DATE[name]] < stamp]
        elif name == "customers":  # a record without a creation date is known all along
            frame = frame[frame["created_at"].isna() | (frame["created_at"] < stamp)]
        elif name == "offers":
            frame = frame[frame["valid_from"].isna() | (frame["valid_from"] < stamp)]
        for column in _LATER_EVENTS.get(name, ()):
            frame.loc[frame[column] >= stamp, column] = pd.NaT
        frame.reset_index(drop=True).to_parquet(dst / path.name, index=False)
    return out


@pytest.fixture(scope="module")
def truncated(synth_home: SynthHome, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _truncate(synth_home.home, tmp_path_factory.mktemp("truncated"), D)


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(list(frame.columns)).reset_index(drop=True)


def test_the_as_of_view_is_the_truncated_export(synth_home: SynthHome, truncated: Path) -> None:
    seen = open_tables(synth_home.home, as_of=D)
    cut = open_tables(truncated)
    assert set(seen) == set(cut)
    for name in ("orders", "order_lines", "customers", "consents", "web_events", "messages", "returns", "offers"):
        got, want = seen[name].execute(), cut[name].execute()
        assert len(want) > 0, name
        pd.testing.assert_frame_equal(_sorted(got), _sorted(want), check_dtype=False, obj=name)
    full = open_tables(synth_home.home)
    assert full["orders"].count().execute() > seen["orders"].count().execute()  # the view hides something
    m = seen["messages"].execute()
    assert m["opened_at"].notna().any() and (m["opened_at"].dropna() < pd.Timestamp(D)).all()


def test_training_as_of_d_equals_training_on_the_truncated_export(synth_home: SynthHome, truncated: Path) -> None:
    rules = small_data_rules()
    as_of = Context.open(synth_home.home, D)
    cut = Context.open(truncated)
    assert (as_of.start, as_of.end) == (cut.start, cut.end)
    assert as_of.end < D and as_of.end != Context.open(synth_home.home).end
    for task in (churn_task(), purchase_task()):
        plan = plan_for(task, as_of, rules)
        assert plan == plan_for(task, cut, rules)
        assert plan.holdout + pd.Timedelta(days=task.target.label_days) <= D  # no label reaches past D
    plan = plan_for(churn_task(), as_of, rules)
    # labels at every cutoff of every target, features at the last two cutoffs
    for target in (ChurnTarget(), PurchaseTarget(), ValueTarget(90)):
        for cutoff in [*plan.train, plan.valid, plan.holdout]:
            got = _sorted(target.labels(as_of.tables, cutoff).execute())
            want = _sorted(target.labels(cut.tables, cutoff).execute())
            pd.testing.assert_frame_equal(got, want, obj=f"{target.name} labels at {cutoff.date()}")
    for cutoff in (plan.valid, plan.holdout):
        got = build_training_set(as_of.tables, [cutoff], ChurnTarget().labels, as_of.features)
        want = build_training_set(cut.tables, [cutoff], ChurnTarget().labels, cut.features)
        assert got[LABEL].nunique() == 2
        pd.testing.assert_frame_equal(got, want)


def test_features_build_as_of_d_equals_the_truncated_export(
    synth_home: SynthHome, truncated: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    shutil.copytree(ingested_dir(synth_home.home), home / "ingested")  # snapshots are written into the home
    built = build_snapshot(home, D)
    default = build_snapshot(truncated)  # the day after its last order
    assert default.as_of == D == built.as_of
    pd.testing.assert_frame_equal(
        pd.read_parquet(built.path / SNAPSHOT_FILE), pd.read_parquet(default.path / SNAPSHOT_FILE)
    )


def test_recommendations_read_only_the_lines_before_d(synth_home: SynthHome, truncated: Path) -> None:
    got, items = load_home(synth_home.home, D)
    want, _ = load_home(truncated)
    assert got["ts"].max() < pd.Timestamp(D) and len(items) > 0
    pd.testing.assert_frame_equal(_sorted(got), _sorted(want))


def _mem(frame: pd.DataFrame) -> ibis.Table:
    return ibis.memtable(frame)


def test_a_table_the_view_does_not_know_is_dated_by_its_first_time_column() -> None:
    """A new table (campaign exposures, say): its first timestamp dates the row, later ones are blanked,
    dates count by whole days, and dates known ahead (an end of validity) are kept."""
    at = datetime(2024, 3, 10, 12, 0, tzinfo=UTC)
    exposures = pd.DataFrame(
        {
            "exposure_id": ["before", "after", "undated", "redeemed_later"],
            "exposed_at": pd.to_datetime(
                ["2024-03-10 11:59", "2024-03-10 12:00", None, "2024-03-01"], utc=True, format="ISO8601"
            ),
            "redeemed_at": pd.to_datetime(["2024-03-10 11:00", None, None, "2024-03-11"], utc=True, format="ISO8601"),
            "week": pd.to_datetime(["2024-03-10", "2024-03-10", "2024-03-11", "2024-03-11"]).date,
            "valid_to": pd.to_datetime(["2024-04-01"] * 4).date,
        }
    )
    items = pd.DataFrame({"item_id": ["x"], "price": [1.0]})
    seen = as_of_view({"exposures": _mem(exposures), "items": _mem(items)}, at)
    got = seen["exposures"].execute().set_index("exposure_id")
    assert set(got.index) == {"before", "undated", "redeemed_later"}  # dated at or after the instant: gone
    assert got.loc["before", "redeemed_at"] == pd.Timestamp("2024-03-10 11:00", tz="UTC")
    assert pd.isna(got.loc["redeemed_later", "redeemed_at"])  # redeemed after the instant: not yet
    assert pd.Timestamp(got.loc["before", "week"]) == pd.Timestamp("2024-03-10")  # the 10th had begun at noon
    assert pd.isna(got.loc["undated", "week"])  # the 11th had not
    assert (pd.to_datetime(got["valid_to"]) == pd.Timestamp("2024-04-01")).all()  # known ahead
    assert len(seen["items"].execute()) == 1  # no time column: taken whole
    with pytest.raises(ValueError, match="no time zone"):
        as_of_view({"items": _mem(items)}, datetime(2024, 1, 1))


def test_features_as_of_d_read_nothing_the_view_hides(synth_home: SynthHome) -> None:
    """Point-in-time features already ignore later events: seen through the view or not, they agree."""
    full = open_tables(synth_home.home)
    pd.testing.assert_frame_equal(compute_features(full, D), compute_features(as_of_view(full, D), D))
    assert data_end(as_of_view(full, D)) < D <= data_end(full)


def test_a_training_run_as_of_d_plans_like_the_truncated_export_and_records_it(
    synth_home: SynthHome, truncated: Path, tmp_path: Path
) -> None:
    import mlflow

    from training.propensity import train_task

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run = train_task(churn_task(), synth_home.home, uri, sufficiency=small_data_rules(), as_of=D, register=False)
    assert run.plan == plan_for(churn_task(), Context.open(truncated), small_data_rules())
    mlflow.set_tracking_uri(uri)
    params = mlflow.get_run(run.run_id).data.params
    assert params["data_as_of"] == D.isoformat() and params["data_end"] < D.isoformat()
    assert params["holdout_cutoff"] == run.plan.holdout.date().isoformat()
