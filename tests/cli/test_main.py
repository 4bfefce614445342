"""The CLI: clear messages and non-zero exits on bad input; a one-screen summary on success."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from cli.main import app
from tests.conftest import ORII_SAMPLE, BuiltHome

runner = CliRunner()


def _said(output: str) -> str:
    """The output without whitespace: rich wraps lines inside long paths and drops the space where it
    wraps between words, so the tests compare text with the whitespace squeezed out (see :func:`_has`)."""
    return re.sub(r"\s+", "", output)


def _has(output: str, *texts: str) -> bool:
    said = _said(output)
    return all(_said(t) in said for t in texts)


def test_help_lists_every_job() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in (
        "synth",
        "ingest",
        "features",
        "train",
        "serve",
        "doctor",
        "backtest",
        "score",
        "compile",
        "promote",
    ):
        assert command in result.output


def test_unknown_mapping_exits_non_zero_with_a_message(tmp_path: Path) -> None:
    result = runner.invoke(app, ["ingest", "--input", str(tmp_path), "--mapping", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert _has(result.output, "nope.yaml", "not found")


def test_quarantine_threshold_exits_non_zero_and_publishes_nothing(tmp_path: Path) -> None:
    args = ["ingest", "--dev", "--input", str(ORII_SAMPLE), "--mapping", "online_retail_ii", "--out", str(tmp_path)]
    result = runner.invoke(app, [*args, "--max-quarantine-share", "0.001", "--now", "2026-01-01T00:00:00+00:00"])
    assert result.exit_code == 2
    assert "nothing was published" in " ".join(result.output.split())
    assert not (tmp_path / "ingested").exists()
    ok = runner.invoke(app, [*args, "--now", "2026-01-01T00:00:00+00:00"])
    assert ok.exit_code == 0, ok.output
    assert "duplicate_row" in ok.output and (tmp_path / "ingested" / "ingest_report.json").is_file()


def test_features_before_ingest_is_a_clear_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["features", "build", "--data", str(tmp_path)])
    assert result.exit_code == 2 and "kairos ingest" in " ".join(result.output.split())


def test_doctor_tells_what_is_missing(orii_home: BuiltHome) -> None:
    result = runner.invoke(app, ["doctor", "--data", str(orii_home.home)])
    assert result.exit_code == 0, result.output
    # the 300-customer sample: churn too thin for 500 of each class
    assert _has(result.output, "2 of 10 models have enough data; not enough: churn, engagement_open_email")
    args = ["doctor", "--data", str(orii_home.home), "--min-positives", "20", "--min-negatives", "20"]
    assert _has(runner.invoke(app, args).output, "models have enough data; not enough: engagement_open_email")


def test_training_on_thin_data_exits_non_zero_saying_why(orii_home: BuiltHome, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = ["train", "churn", "--data", str(orii_home.home), "--tracking-uri", uri, "--min-positives", "100000"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert _has(result.output, "not registering", "need at least 100000")


def test_training_closes_with_the_interval_against_the_best_baseline(orii_home: BuiltHome, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = ["train", "purchase", "--data", str(orii_home.home), "--tracking-uri", uri]
    result = runner.invoke(app, [*args, "--min-positives", "20", "--min-negatives", "20"])
    assert result.exit_code == 0, result.output
    said = _said(result.output)
    assert _has(result.output, "roc_auc [", "(paired bootstrap 95 %, holdout)"), result.output
    verdicts = {
        (verdict, baseline)
        for verdict in ("beats", "is not significantly better than", "is significantly worse than")
        for baseline in ("rfm_score", "rfm_logistic", "bgnbd")
        if _said(f"kairos {verdict} {baseline}") in said
    }
    assert len(verdicts) == 1, result.output
    ((verdict, baseline),) = verdicts
    # the closing line says which model is served: kairos only with a significant win, else the baseline
    if verdict == "beats":
        assert _has(result.output, f"purchase: serving kairos: kairos beats the {baseline} baseline"), result.output
    else:
        assert _has(result.output, f"purchase: serving the {baseline} baseline: kairos does not beat it"), result.output
        assert _has(result.output, "-> @challenger", f"-> @champion (the {baseline} baseline)"), result.output


def test_backtest_of_an_unfinished_outcome_is_refused(orii_home: BuiltHome) -> None:
    args = ["backtest", "churn", "--as-of", "2011-11-01", "--data", str(orii_home.home)]
    result = runner.invoke(app, [*args, "--tracking-uri", orii_home.tracking_uri])
    assert result.exit_code == 2 and _has(result.output, "choose an earlier --as-of")


def test_compile_builds_every_champion_where_the_api_looks(orii_home: BuiltHome, tmp_path: Path) -> None:
    from models.compiled import COMPILED_DIR

    args = ["compile", "--data", str(orii_home.home), "--tracking-uri", orii_home.tracking_uri]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert _has(result.output, "churn v", "lleaves") and "LightGBM (" not in result.output
    assert any((orii_home.home / COMPILED_DIR).glob("*.so"))
    nowhere = f"sqlite:///{tmp_path / 'empty.db'}"
    empty = runner.invoke(app, ["compile", "--data", str(orii_home.home), "--tracking-uri", nowhere])
    assert empty.exit_code == 2 and _has(empty.output, "no registered propensity model")


def test_score_all_exports_every_customer(orii_home: BuiltHome, tmp_path: Path) -> None:
    import numpy as np
    import pandas as pd

    from features.store import SEGMENT_COLUMNS, SEGMENTS_FILE, latest_snapshot

    out = tmp_path / "scores.parquet"
    args = ["score", "--all", "--data", str(orii_home.home), "--tracking-uri", orii_home.tracking_uri]
    result = runner.invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    scores = pd.read_parquet(out)
    snapshot = latest_snapshot(orii_home.home).read()
    assert sorted(scores["customer_key"]) == sorted(snapshot["customer_key"])  # nobody dropped
    # churn is about last year's buyers: a lead or a lapsed customer has no churn score, and says so
    inside = (snapshot.set_index("customer_key").loc[scores["customer_key"], "recency_days"] <= 365).to_numpy()
    assert 0 < inside.sum() < len(inside)
    assert (scores["churn_probability"].notna().to_numpy() == inside).all()
    assert scores.loc[inside, "churn_probability"].between(0, 1).all()
    assert set(scores.loc[inside, "churn_band"]) <= {"low", "medium", "high"}
    assert scores.loc[~inside, "churn_band"].isna().all()
    segments = pd.read_parquet(latest_snapshot(orii_home.home).path / SEGMENTS_FILE).set_index("customer_key")
    for column in SEGMENT_COLUMNS:  # joined to the right customer
        want = segments.loc[scores["customer_key"], column].astype("string").to_numpy()
        assert (scores[column].astype("string").to_numpy() == want).all()
    # on request, every score with its drivers in words (as the API gives them)
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "why.parquet"), "--reasons"])
    assert result.exit_code == 0, result.output
    why = pd.read_parquet(tmp_path / "why.parquet")
    np.testing.assert_array_equal(why["churn_probability"].to_numpy(), scores["churn_probability"].to_numpy())
    assert (why.loc[inside, "churn_reason_1"] != "").mean() > 0.5 and why["churn_reason_3"].notna().all()
    assert (why.loc[~inside, "churn_reason_1"] == "").all()
    assert why["churn_reason_1"].str.contains("order|day|never", regex=True).any()


def test_train_offers_passes_every_option_to_the_job(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """``--no-compare`` reaches the job (it was accepted and ignored: every demo fitted the other learner)."""
    import training.offers

    seen: dict[str, object] = {}

    def job(*args: object, **kwargs: object) -> None:
        seen.update(kwargs)
        raise training.offers.InsufficientOfferDataError("stop here")

    monkeypatch.setattr(training.offers, "train_offers", job)
    result = runner.invoke(app, ["train", "offers", "--data", str(tmp_path), "--no-compare", "--learner", "x"])
    assert result.exit_code == 2 and _has(result.output, "stop here")
    assert seen["compare_learners"] is False and seen["learner"] == "x" and seen["policy_check"] is None


# --- issue 17: keyed pseudonyms; no personal data on the terminal ----------------------------------

CANARIES = ("canary.7f3e@example.org", "+7 999 123 45 67", "Zzcanary Qqperson", "CANARY0042")
_MAPPING_YAML = """name: tiny
timezone: UTC
max_quarantine_share: 1.0
tables:
  customers: {files: [customers.csv]}
  order_lines: {files: [lines.csv]}
"""


def _tiny_export(folder: Path, extra_customer: str = "") -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "customers.csv").write_text(
        "customer_id,email,first_name\nc1,a@example.com,Ann\nc2,b@example.com,Bob\n" + extra_customer
    )
    (folder / "lines.csv").write_text(
        "order_id,customer_id,ordered_at,currency,item_id,quantity,unit_price\n"
        "O1,c1,2024-05-01T10:00:00Z,GBP,A,1,2.5\nO2,c2,2024-05-02T10:00:00Z,GBP,B,1,3.0\n"
    )
    (folder / "mapping.yaml").write_text(_MAPPING_YAML)
    return [
        "ingest",
        "--input",
        str(folder),
        "--mapping",
        str(folder / "mapping.yaml"),
        "--now",
        "2025-01-01T00:00:00Z",
    ]


def _keys(home: Path) -> dict[str, str]:
    import pandas as pd

    frame = pd.read_parquet(home / "ingested" / "identity_map.parquet")
    return dict(zip(frame["customer_id"], frame["customer_key"], strict=True))


def test_ingest_refuses_to_run_without_a_pseudonym_secret(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("KAIROS_PSEUDONYM_SECRET", raising=False)
    args = _tiny_export(tmp_path / "export")
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "home")])
    assert result.exit_code == 2
    assert _has(result.output, "KAIROS_PSEUDONYM_SECRET is not set", "--dev")
    assert not (tmp_path / "home" / "ingested").exists()
    monkeypatch.setenv("KAIROS_PSEUDONYM_SECRET", "too-short")
    weak = runner.invoke(app, [*args, "--out", str(tmp_path / "home")])
    assert weak.exit_code == 2 and _has(weak.output, "at least 16 characters")
    from features.identity import DEVELOPMENT_SECRET

    monkeypatch.setenv("KAIROS_PSEUDONYM_SECRET", DEVELOPMENT_SECRET)
    public = runner.invoke(app, [*args, "--out", str(tmp_path / "home")])
    assert public.exit_code == 2 and _has(public.output, "development pseudonym secret is public")
    assert not (tmp_path / "home" / "ingested").exists()


def test_the_secret_decides_every_customer_key(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import hashlib

    from features.identity import Pseudonymizer

    args = _tiny_export(tmp_path / "export")
    homes = {}
    for name, secret in (
        ("a", "first-secret-0123456789"),
        ("a2", "first-secret-0123456789"),
        ("b", "other-secret-0123456789"),
    ):
        monkeypatch.setenv("KAIROS_PSEUDONYM_SECRET", secret)
        result = runner.invoke(app, [*args, "--out", str(tmp_path / name)])
        assert result.exit_code == 0, result.output
        homes[name] = _keys(tmp_path / name)
    assert homes["a"] == homes["a2"]  # same ids, same secret: same keys
    assert set(homes["a"].values()).isdisjoint(homes["b"].values())  # another secret: unrelated keys
    for cid, key in homes["a"].items():
        assert key == Pseudonymizer("first-secret-0123456789").customer_key(cid)
        assert key != "ck_" + hashlib.sha256(cid.encode()).hexdigest()[:16]
    monkeypatch.delenv("KAIROS_PSEUDONYM_SECRET")
    dev = runner.invoke(app, [*args, "--dev", "--out", str(tmp_path / "dev")])
    assert dev.exit_code == 0 and _has(dev.output, "public development secret")
    assert _keys(tmp_path / "dev") == {c: Pseudonymizer.for_development().customer_key(c) for c in homes["a"]}
    import json

    report = json.loads((tmp_path / "dev" / "ingested" / "ingest_report.json").read_text())
    assert report["pseudonyms"] == {"key_id": Pseudonymizer.for_development().key_id, "development": True}


def test_a_malformed_row_is_named_by_line_and_never_printed(tmp_path: Path) -> None:
    bad = 'CANARY0042,canary.7f3e@example.org,"+7 999 123 45 67",Zzcanary Qqperson\n'  # a field too many
    args = _tiny_export(tmp_path / "export", extra_customer=bad)
    result = runner.invoke(app, [*args, "--dev", "--out", str(tmp_path / "home")])
    assert result.exit_code == 2
    assert _has(result.output, "customers.csv", "line 4 (4 fields, expected 3)")
    assert not [c for c in CANARIES if c in result.output]


def test_an_unexpected_library_error_is_reported_without_its_message(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import features.ingest

    def explode(*_: object, **__: object) -> None:
        raise ValueError("Unable to parse string canary.7f3e@example.org at position 3")

    monkeypatch.setattr(features.ingest, "ingest", explode)
    args = _tiny_export(tmp_path / "export")
    result = runner.invoke(app, [*args, "--dev", "--out", str(tmp_path / "home")])
    assert result.exit_code == 2 and _has(result.output, "unexpected ValueError", "withheld")
    assert "canary" not in result.output


def test_serve_turns_off_uvicorns_access_log(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """uvicorn's access line prints the raw path (/v1/customers/<id>/...): the app logs its own instead."""
    import uvicorn

    calls: list[dict[str, object]] = []
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: calls.append(kwargs))
    # serve exports both for the app factory: set here first, so that they are undone after the test
    monkeypatch.setenv("KAIROS_DATA_HOME", str(tmp_path))
    monkeypatch.setenv("KAIROS_TRACKING_URI", "sqlite:///unused.db")
    monkeypatch.setenv("KAIROS_ENVIRONMENT", "development")
    result = runner.invoke(app, ["serve", "--data", str(tmp_path), "--dev"])
    assert result.exit_code == 0, result.output
    assert len(calls) == 1 and calls[0]["access_log"] is False


# --- issue 18: as of any date; the retailer's own ids in the export -------------------------------


def test_every_job_takes_as_of_and_passes_it_on(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """``--as-of`` on features build, every train job, doctor and score --all reaches the job as one UTC instant."""
    from datetime import UTC, datetime

    import batch.score
    import features.store
    import training.doctor
    import training.offers
    import training.propensity
    import training.recs
    import training.sendtime
    import training.value

    seen: list[tuple[str, object]] = []

    def stop(name: str):  # type: ignore[no-untyped-def]
        def job(*args: object, **kwargs: object) -> None:
            when = kwargs.get("as_of", args[1] if name == "features" else None)
            seen.append((name, when))
            raise features.store.DataNotFoundError(f"{name} stops here")

        return job

    for module, attr, name in (
        (features.store, "build_snapshot", "features"),
        (training.propensity, "train_task", "train"),
        (training.propensity, "train_many", "many"),
        (training.value, "train_value", "value"),
        (training.recs, "train_recs", "recs"),
        (training.offers, "train_offers", "offers"),
        (training.sendtime, "train_sendtime", "sendtime"),
        (training.doctor, "diagnose", "doctor"),
        (batch.score, "score_all", "score"),
    ):
        monkeypatch.setattr(module, attr, stop(name))
    data = ["--data", str(tmp_path), "--as-of", "2011-06-01"]
    commands = [
        ["features", "build", *data],
        ["train", "churn", *data],
        ["train", "purchase", *data],
        ["train", "engagement", *data],
        ["train", "value", *data],
        ["train", "all", *data],
        ["train", "recs", *data],
        ["train", "offers", *data],
        ["train", "sendtime", *data],
        ["doctor", *data],
        ["score", "--all", *data],
    ]
    for command in commands:
        result = runner.invoke(app, command)
        assert result.exit_code == 2 and _has(result.output, "stops here"), (command, result.output)
    assert [n for n, _ in seen] == [
        "features",
        "train",
        "train",
        "many",
        "value",
        "many",
        "recs",
        "offers",
        "sendtime",
        "doctor",
        "score",
    ]
    assert {w for _, w in seen} == {datetime(2011, 6, 1, tzinfo=UTC)}
    bad = runner.invoke(app, ["train", "churn", "--data", str(tmp_path), "--as-of", "June 2011"])
    assert bad.exit_code == 2 and _has(bad.output, "--as-of 'June 2011' is not a date")


def test_score_all_as_of_a_date_scores_that_days_snapshot(orii_home: BuiltHome, tmp_path: Path) -> None:
    import shutil

    import pandas as pd

    from features.store import SNAPSHOT_FILE, snapshot_as_of

    home = tmp_path / "home"
    shutil.copytree(orii_home.home, home)
    out = tmp_path / "scores.parquet"
    args = ["score", "--all", "--no-compiled", "--data", str(home), "--tracking-uri", orii_home.tracking_uri]
    missing = runner.invoke(app, [*args, "--as-of", "2011-06-01", "--out", str(out)])
    assert missing.exit_code == 2 and _has(missing.output, "kairos features build", "--as-of 2011-06-01")
    built = runner.invoke(app, ["features", "build", "--data", str(home), "--as-of", "2011-06-01"])
    assert built.exit_code == 0, built.output
    result = runner.invoke(app, [*args, "--as-of", "2011-06-01", "--out", str(out)])
    assert result.exit_code == 0, result.output
    scores = pd.read_parquet(out)
    from datetime import UTC, datetime

    then = pd.read_parquet(snapshot_as_of(home, datetime(2011, 6, 1, tzinfo=UTC)).path / SNAPSHOT_FILE)
    assert sorted(scores["customer_key"]) == sorted(then["customer_key"])
    now = runner.invoke(app, [*args, "--out", str(tmp_path / "now.parquet")])
    assert now.exit_code == 0 and len(pd.read_parquet(tmp_path / "now.parquet")) > len(scores)  # more customers today
    # the retailer's own id beside the key: the identity map's, for every customer
    ids = pd.read_parquet(home / "ingested" / "identity_map.parquet")
    primary = ids.astype({"customer_id": object}).groupby("customer_key")["customer_id"].min()
    assert list(scores.columns[:3]) == ["customer_key", "customer_id", "customer_ids"]
    assert scores["customer_id"].notna().all()
    assert (scores["customer_id"].to_numpy() == primary.loc[scores["customer_key"]].to_numpy()).all()
    assert all(row[0] == first for row, first in zip(scores["customer_ids"], scores["customer_id"], strict=True))
