"""Recommendations from exports that lack customers or prices (issue 18): raw files -> ``kairos ingest``
(a mapping YAML) -> ``kairos train recs`` -> a registered bundle that loads and answers.

The order lines are the committed Complete Journey sample with columns left out: without
``household_id`` it is a basket-only export, without ``sales_value`` a price-less one.
"""

from __future__ import annotations

import io
import json
import tempfile
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from bundles import registry
from bundles.kinds import verify_version
from bundles.recs import Filters, RecsBundle, RecsModel
from cli.main import app
from models.recs.base import IX, Query, Recommender
from models.recs.baselines import GlobalPersonalTopFreq, PersonalTopFreq
from tests.conftest import TESTS
from training.recs_eval import NO_CUSTOMERS, evaluate

runner = CliRunner()
CJ_LINES = TESTS / "data" / "complete_journey" / "transactions.parquet"
NOW = "2026-01-01T00:00:00+00:00"

MAPPING = """name: {name}
{clock}
currency: USD
derive_items_from_lines: true
derive_customers_from_lines: {customers}
tables:
  order_lines:
    files: [lines.csv]
    columns:
      order_id: basket_id
      item_id: product_id
      quantity: quantity
{extra}"""


def _export(folder: Path, *, customers: bool, dates: bool = True) -> Path:
    """The sample's lines as a CSV of basket, product, quantity (and time, and household), nothing else."""
    lines = pd.read_parquet(CJ_LINES)
    keep = ["basket_id", "product_id", "quantity"] + (["transaction_timestamp"] if dates else [])
    keep += ["household_id"] if customers else []
    folder.mkdir(parents=True)
    lines[keep].to_csv(folder / "lines.csv", index=False)
    extra = "      ordered_at: transaction_timestamp\n" if dates else ""
    extra += "      customer_id: household_id\n" if customers else ""
    clock = "timezone: floating" if dates else "dates: false"
    text = MAPPING.format(name=folder.name, clock=clock, customers=str(customers).lower(), extra=extra)
    (folder / "mapping.yaml").write_text(text, encoding="utf-8")
    return folder


def _ingest_and_train(raw: Path, home: Path, uri: str, *extra: str) -> str:
    args = ["ingest", "--dev", "--input", str(raw), "--mapping", str(raw / "mapping.yaml"), "--out", str(home)]
    done = runner.invoke(app, [*args, "--now", NOW])
    assert done.exit_code == 0, done.output
    train = ["train", "recs", "--data", str(home), "--tracking-uri", uri, "--test-days", "60", *extra]
    trained = runner.invoke(app, train)
    assert trained.exit_code == 0, trained.output
    return " ".join(trained.output.split())


def _artifact(uri: str, name: str) -> str:
    """A text the run logged to MLflow."""
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name("kairos-recs")
    assert experiment is not None
    (run,) = client.search_runs([experiment.experiment_id])
    with tempfile.TemporaryDirectory() as tmp:
        return Path(client.download_artifacts(run.info.run_id, name, tmp)).read_text(encoding="utf-8")


def _evaluation(uri: str) -> pd.DataFrame:
    """The evaluation table the run logged to MLflow."""
    return pd.read_csv(io.StringIO(_artifact(uri, "evaluation.csv")))


def _bundle(uri: str, dst: Path) -> RecsModel:
    verify_version(uri, "recs", "1")  # fetched, every file checked, built and warmed as the API does
    fetched = RecsBundle().fetch(uri, "recs", registry.CHAMPION, dst)
    return RecsBundle().build(fetched.folder, fetched.provenance, None)


def test_personal_baselines_fit_on_orders_without_customers() -> None:
    """The root of the crash: P-TopFreq's per-customer runs on an empty history."""
    lines = pd.DataFrame(
        {
            IX.CUSTOMER: pd.array([None, None, None], dtype="string"),
            IX.ITEM: ["a", "b", "a"],
            IX.BASKET: ["o1", "o1", "o2"],
            IX.TS: pd.to_datetime(["2017-01-01", "2017-01-01", "2017-01-02"], utc=True),
            IX.QUANTITY: 1.0,
            IX.EVENT: "purchase",
        }
    )
    assert PersonalTopFreq().fit(lines).by_customer_ == {}
    assert PersonalTopFreq().fit(lines).recommend(Query(customer_key="x")) == []
    top = GlobalPersonalTopFreq().fit(lines).recommend(Query(customer_key="x"), 2)
    assert [r.item_id for r in top] == ["a", "b"]  # the best sellers only


def test_evaluation_skips_personal_models_without_customers_and_says_so() -> None:
    lines = pd.read_parquet(CJ_LINES)
    ix = pd.DataFrame(
        {
            IX.CUSTOMER: pd.array([None] * len(lines), dtype="string"),
            IX.ITEM: lines["product_id"].astype(str),
            IX.BASKET: lines["basket_id"].astype(str),
            IX.TS: pd.to_datetime(lines["transaction_timestamp"], utc=True),
            IX.QUANTITY: lines["quantity"].astype(float),
            IX.EVENT: "purchase",
        }
    )
    models: dict[str, Recommender] = {"P-TopFreq": PersonalTopFreq(), "GP-TopFreq": GlobalPersonalTopFreq()}
    table = evaluate(models, ix, None, "2017-11-01", 60).set_index(["model", "task"])
    assert not table["evaluated"].any()
    assert set(table["note"]) == {NO_CUSTOMERS}
    assert (table["queries"] == 0).all() and table["recall@10"].isna().all()


@pytest.mark.slow
def test_a_basket_only_export_trains_and_registers_recommendations(tmp_path: Path) -> None:
    raw = _export(tmp_path / "baskets", customers=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    said = _ingest_and_train(raw, tmp_path / "home", uri)
    assert "not evaluated" in said and f"Kairos next basket: {NO_CUSTOMERS}" in said
    table = _evaluation(uri).set_index(["model", "task"])
    evaluated = table.index[table["evaluated"]].tolist()
    completion = ["G-TopFreq", "co-occurrence count", "Kairos bought together", "Kairos cart blend"]
    assert evaluated == [
        (name, task) for name in completion for task in ("basket_completion", "basket_completion_anonymous")
    ]
    assert f"TIFU-KNN, UP-CF@r, Kairos repeat + personal, Kairos next basket: {NO_CUSTOMERS}" in said
    assert (table.loc[evaluated, "queries"] > 0).all() and table.loc[evaluated, "recall@10"].notna().all()
    assert "bundle: repeat_personal left out" in said and "bundle: buy_again left out" in said
    assert "registered: recs v1 -> @champion" in said

    model = _bundle(uri, tmp_path / "dl")
    assert model.personal is None and model.buy_again_model is None
    assert set(model.manifest["skipped"]) == {"repeat_personal", "buy_again"} and model.manifest["customers"] == 0
    hub = str(model.together.item_ids_[int(np.argmax(np.diff(model.together.nbr_indptr_)))])
    cart = model.cart([hub], None, 5, _filters()).items
    assert len(cart) == 5 and hub not in {r.item_id for r in cart}
    assert model.similar_items(hub, None, 5, _filters()).items  # item factors learned from the baskets
    assert model.buy_again("someone", 5, _filters()).items == []
    assert len(model.for_customer("someone", 5, _filters()).items) == 5  # the popular fallback
    # no next-basket slot without customers; carts, known or not, served alike by the gate's anonymous choice
    assert set(model.manifest["served"]) == {"cart_known", "cart_anonymous"}
    assert model.manifest["served"]["cart_known"]["model"] == model.manifest["served"]["cart_anonymous"]["model"]


@pytest.mark.slow
def test_a_price_less_export_trains_and_registers_recommendations(tmp_path: Path) -> None:
    raw = _export(tmp_path / "noprices", customers=True)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    home = tmp_path / "home"
    said = _ingest_and_train(raw, home, uri)
    report = json.loads((home / "ingested" / "ingest_report.json").read_text())
    assert report["prices"] is False
    assert "not evaluated" not in said and "registered: recs v1 -> @champion" in said
    table = _evaluation(uri)
    assert table["evaluated"].all() and (table["queries"] > 0).all()
    assert set(table["task"]) == {"basket_completion", "basket_completion_anonymous", "next_basket"}
    model = _bundle(uri, tmp_path / "dl")
    someone = str(model.history.customers_[0])
    assert model.personal is not None and len(model.for_customer(someone, 5, _filters()).items) == 5


@pytest.mark.slow
def test_an_export_without_dates_trains_recommendations_on_a_random_split(tmp_path: Path) -> None:
    raw = _export(tmp_path / "undated", customers=True, dates=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    said = _ingest_and_train(raw, tmp_path / "home", uri)
    assert "evaluation (random split of baskets (20% held out, seed 0): the export has no dates" in said
    assert "bundle: buy_again left out (the export has no dates: no repurchase intervals)" in said
    card = _artifact(uri, "model_card.md")
    assert "- Evaluation: random split of baskets (20% held out, seed 0)" in card and "dates: false" in card
    table = _evaluation(uri)
    assert table["evaluated"].all() and set(table["task"]) == {
        "basket_completion",
        "basket_completion_anonymous",
        "next_basket",
    }
    model = _bundle(uri, tmp_path / "dl")
    assert model.manifest["dates"] is False and model.manifest["trained_until"] is None
    assert model.buy_again_model is None and model.personal is not None
    someone = str(model.history.customers_[0])
    assert len(model.for_customer(someone, 5, _filters()).items) == 5
    lines = pd.read_parquet(tmp_path / "home" / "ingested" / "order_lines.parquet")
    assert lines["ordered_at"].isna().all()  # training gave the data no date


@pytest.mark.slow
def test_protocol_last_basket_on_an_export_without_dates(tmp_path: Path) -> None:
    raw = _export(tmp_path / "undated", customers=True, dates=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    said = _ingest_and_train(raw, tmp_path / "home", uri, "--protocol", "last-basket", "--seeds", "2")
    assert "last basket held out (by position in the export (no dates)) for 20% of the customers" in said
    assert "best baseline by recall@10:" in said and "registered: recs v1 -> @champion" in said
    assert "chosen on the last basket held out (recall@10" in " ".join(said.split())  # the next-basket gate
    table = pd.read_csv(io.StringIO(_artifact(uri, "last_basket_evaluation.csv"))).set_index("model")
    assert {
        "G-TopFreq", "P-TopFreq", "GP-TopFreq", "TIFU-KNN", "UP-CF@r", "Kairos repeat + personal", "Kairos next basket"
    } == set(table.index)  # fmt: skip
    assert (table["seeds"] == 2).all() and (table["users"] > 0).all()
    figures = table[["recall@10", "ndcg@10", "phr@10", "repeat_recall@10", "explore_recall@10"]]
    assert ((figures >= 0) & (figures <= 1)).all().all()
    assert (table["phr@10"] >= table["recall@10"]).all()  # a user with any recall has a hit
    mine = table.loc["Kairos next basket"]
    assert mine["recall@10_diff_low"] <= mine["recall@10_diff"] <= mine["recall@10_diff_high"]
    assert "## Next basket, last basket held out (2 seeds" in _artifact(uri, "model_card.md")


def test_protocol_last_basket_refuses_an_export_without_customers(tmp_path: Path) -> None:
    raw = _export(tmp_path / "baskets", customers=False, dates=False)
    home = tmp_path / "h"
    args = ["ingest", "--dev", "--input", str(raw), "--mapping", str(raw / "mapping.yaml"), "--out", str(home)]
    assert runner.invoke(app, [*args, "--now", NOW]).exit_code == 0
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = runner.invoke(
        app, ["train", "recs", "--data", str(home), "--tracking-uri", uri, "--protocol", "last-basket"]
    )
    assert result.exit_code == 2
    assert "this export names no customer" in " ".join(result.output.split())


def test_as_of_on_an_export_without_dates_is_refused(tmp_path: Path) -> None:
    raw = _export(tmp_path / "undated", customers=False, dates=False)
    args = [
        "ingest",
        "--dev",
        "--input",
        str(raw),
        "--mapping",
        str(raw / "mapping.yaml"),
        "--out",
        str(tmp_path / "h"),
    ]
    assert runner.invoke(app, [*args, "--now", NOW]).exit_code == 0
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = runner.invoke(
        app, ["train", "recs", "--data", str(tmp_path / "h"), "--tracking-uri", uri, "--as-of", "2017-06-01"]
    )
    assert result.exit_code == 2
    assert "--as-of needs order times and this export has none" in " ".join(result.output.split())


def _filters() -> Filters:
    return Filters()
