"""The data's own currency (issue 18): read from the data home, recorded with snapshots and models, printed
by reasons, model cards and offer decisions."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import yaml

from features.errors import InputDataError
from features.ingest import REPORT_FILE
from features.store import DEFAULT_CURRENCY, build_snapshot, data_currency
from models.decisioning.offers import EXAMPLE_CATALOGUE, CatalogueError, load_catalogue, parse_catalogue
from models.reasons import ReasonExplainer, currency_of, format_money
from tests.conftest import BuiltHome
from tests.training.test_model_card import _card
from training.model_card import render_model_card


def _home(tmp_path: Path, report: dict[str, object], currencies: list[str] | None) -> Path:
    folder = tmp_path / "ingested"
    folder.mkdir(parents=True)
    (folder / REPORT_FILE).write_text(json.dumps(report))
    if currencies is not None:
        pd.DataFrame({"order_id": [str(i) for i in range(len(currencies))], "currency": currencies}).to_parquet(
            folder / "orders.parquet"
        )
    return tmp_path


def test_the_ingest_report_names_the_currency_else_the_orders_do(tmp_path: Path) -> None:
    assert data_currency(_home(tmp_path / "a", {"currency": "usd"}, ["GBP", "GBP"])) == "USD"  # the report wins
    assert data_currency(_home(tmp_path / "b", {}, ["EUR", "usd", "USD", None, "EUR", "USD"])) == "USD"
    assert data_currency(_home(tmp_path / "c", {}, ["SEK", "EUR"])) == "EUR"  # a tie: the first alphabetically
    assert data_currency(_home(tmp_path / "d", {}, [])) == DEFAULT_CURRENCY == "GBP"
    assert data_currency(_home(tmp_path / "e", {"currency": None}, None)) == "GBP"
    assert data_currency(_home(tmp_path / "g", {"currency": ["EUR", "USD"]}, ["USD", "EUR", "USD"])) == "USD"
    with pytest.raises(InputDataError, match=r"ingest_report.json: 'currency' must be an ISO 4217 code"):
        data_currency(_home(tmp_path / "f", {"currency": "dollars"}, ["USD"]))


def test_amounts_print_in_the_currency_asked() -> None:
    assert format_money(1234.4, "USD") == "$1,234" and format_money(-56.0, "gbp") == "-£56"
    assert format_money(99.0, "SEK") == "99 SEK" and format_money(12.5, "EUR", decimals=2) == "€12.50"
    assert currency_of({"currency": "USD"}) == "USD" and currency_of({}) == currency_of(None) == "GBP"
    explainer = ReasonExplainer({}, currency="USD")
    assert explainer.describe("avg_order_value", 56.0) == "average order $56"


def test_the_model_card_says_what_currency_amounts_are_in() -> None:
    card = _card()
    assert "are in" not in render_model_card(card)  # older callers: nothing claimed
    text = render_model_card(replace(card, data=replace(card.data, currency="USD")))
    assert "- Amounts (spend, order values, errors on spend) are in USD." in text


def test_an_offer_catalogue_takes_the_datas_currency_or_refuses_another() -> None:
    example = load_catalogue(EXAMPLE_CATALOGUE)
    assert example.currency is None and example.in_currency("usd").currency == "USD"
    raw = yaml.safe_load(EXAMPLE_CATALOGUE.read_text(encoding="utf-8"))
    euros = parse_catalogue({**raw, "currency": "EUR"})
    assert euros.in_currency("eur") is euros
    with pytest.raises(CatalogueError, match=r"shop.yaml: currency: the catalogue's amounts are in EUR but the data"):
        euros.in_currency("USD", "shop.yaml")


def test_snapshots_and_models_record_the_datas_currency(orii_home: BuiltHome, tmp_path: Path) -> None:
    from bundles.propensity import PropensityBundle

    fetched = PropensityBundle().fetch(orii_home.tracking_uri, "churn", "champion", tmp_path / "model")
    assert fetched.provenance.manifest["currency"] == "GBP"  # Online Retail II: pounds, from its orders
    home = tmp_path / "home"
    shutil.copytree(orii_home.home / "ingested", home / "ingested")
    report = json.loads((home / "ingested" / REPORT_FILE).read_text())
    (home / "ingested" / REPORT_FILE).write_text(json.dumps({**report, "currency": "USD"}))
    assert build_snapshot(home).manifest["currency"] == "USD"


def test_the_exports_reasons_print_the_datas_currency(orii_home: BuiltHome, tmp_path: Path) -> None:
    """A home whose ingest says USD: the snapshot records it and the export's reasons print dollars."""
    from batch.score import score_all

    home = tmp_path / "home"
    shutil.copytree(orii_home.home / "ingested", home / "ingested")
    before = score_all(orii_home.home, orii_home.tracking_uri, tmp_path / "gbp.parquet", compiled=False, reasons=True)
    report = json.loads((home / "ingested" / REPORT_FILE).read_text())
    (home / "ingested" / REPORT_FILE).write_text(json.dumps({**report, "currency": "USD"}))
    build_snapshot(home)
    after = score_all(home, orii_home.tracking_uri, tmp_path / "usd.parquet", compiled=False, reasons=True)
    columns = [f"churn_reason_{i}" for i in (1, 2, 3)]
    pounds = pd.read_parquet(before.path, columns=columns).stack()
    dollars = pd.read_parquet(after.path, columns=columns).stack()
    assert pounds.str.contains("£").sum() > 0 and not pounds.str.contains(r"\$").any()
    assert dollars.str.contains(r"\$").sum() == pounds.str.contains("£").sum()
    assert not dollars.str.contains("£").any()
