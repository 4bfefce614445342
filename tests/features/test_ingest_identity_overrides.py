"""Identity overrides reach ingest: forced merges join customers' orders under one customer_key, forced
splits keep them apart, with a customers file, a partial one and customers derived from the lines; from the
ingest argument, the mapping's ``identity_overrides`` (relative to the mapping file) and ``kairos ingest
--identity-overrides``."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from features.errors import InputDataError
from features.ingest import ingest
from features.mapping import Mapping, load_mapping
from tests.features.test_mapping_expressions import _write, till_lines

NOW = datetime(2026, 1, 1, tzinfo=UTC)

# h1 and h2 share an e-mail (the rules make them one person); h3 is on its own.
CUSTOMERS = """household,mail
h1,ann@example.com
h2,ann@example.com
h3,bob@example.com
"""
TILL = """basket,household,product,qty,sales_value,ts
B1,h1,P1,1,5.00,2017-03-12 10:00:00
B2,h2,P1,1,7.50,2017-03-13 18:05:00
B3,h3,P3,2,2.00,2017-03-14 09:00:00
B4,h4,P3,1,1.00,2017-03-15 09:00:00
"""
MESSAGES = """mid,household,sent
M1,h3,2017-03-01 08:00:00
M2,h4,2017-03-02 08:00:00
"""


def _mapping(customers: bool = True, derive: bool = False, **top: Any) -> dict[str, Any]:
    tables: dict[str, Any] = {
        "order_lines": till_lines(line_amount="sales_value"),
        "messages": {
            "files": ["messages.csv"],
            "columns": {"message_id": "mid", "customer_id": "household", "sent_at": "sent"},
            "constants": {"channel": "email"},
        },
    }
    if customers:
        tables["customers"] = {"files": ["customers.csv"], "columns": {"customer_id": "household", "email": "mail"}}
    return {
        "name": "grocer",
        "currency": "USD",
        "derive_customers_from_lines": derive,
        "max_quarantine_share": 1.0,
        "tables": tables,
        **top,
    }


@pytest.fixture()
def export(tmp_path: Path) -> Path:
    return _write(tmp_path / "x", {"till.csv": TILL, "customers.csv": CUSTOMERS, "messages.csv": MESSAGES})


def _keys(home: Path, table: str = "order_lines") -> dict[str, str]:
    frame = pd.read_parquet(home / "ingested" / f"{table}.parquet")
    return dict(zip(frame["customer_id"], frame["customer_key"], strict=True))


def _report(home: Path) -> dict[str, Any]:
    return json.loads((home / "ingested" / "ingest_report.json").read_text(encoding="utf-8"))


def _overrides(folder: Path, rows: str, name: str = "overrides.csv") -> Path:
    path = folder / name
    path.write_text("action,customer_id_a,customer_id_b\n" + rows, encoding="utf-8")
    return path


def test_a_forced_merge_joins_two_customers_orders_under_one_key(export: Path, tmp_path: Path) -> None:
    mapping = Mapping.model_validate(_mapping())
    ingest(export, mapping, tmp_path / "plain", now=NOW)
    plain = _keys(tmp_path / "plain")
    assert plain["h1"] == plain["h2"] != plain["h3"]  # the shared e-mail
    assert "overrides" not in _report(tmp_path / "plain")["identity"]

    forced = _overrides(tmp_path, "merge,h1,h3\n")
    ingest(export, mapping, tmp_path / "home", now=NOW, identity_overrides=forced)
    keys = _keys(tmp_path / "home")
    assert keys["h1"] == keys["h2"] == keys["h3"]
    assert "h4" not in keys  # not in the customers file: quarantined as an orphan
    assert _keys(tmp_path / "home", "messages")["h3"] == keys["h1"]
    assert _report(tmp_path / "home")["identity"]["overrides"] == {
        "file": str(forced),
        "merges": 1,
        "merges_applied": 1,
        "splits": 0,
        "links_refused_by_splits": 0,
    }


def test_a_forced_split_keeps_two_customers_apart(export: Path, tmp_path: Path) -> None:
    forced = _overrides(tmp_path, "split,h1,h2\n")
    ingest(export, Mapping.model_validate(_mapping()), tmp_path / "home", now=NOW, identity_overrides=forced)
    keys = _keys(tmp_path / "home")
    assert len({keys["h1"], keys["h2"], keys["h3"]}) == 3
    report = _report(tmp_path / "home")["identity"]
    assert report["overrides"]["links_refused_by_splits"] == 1
    assert report["overrides"]["splits"] == 1
    review = pd.read_parquet(tmp_path / "home" / "ingested" / "identity_review.parquet")
    assert review["conflict"].tolist() == ["forced_split"]


@pytest.mark.parametrize("customers", [False, True], ids=["derived", "partial_file"])
def test_merges_reach_customers_derived_from_lines_and_tables_published_before_them(
    export: Path, tmp_path: Path, customers: bool
) -> None:
    # h4 is only on the till and in the messages: keyed provisionally when messages are published, then
    # merged with h3 by the override once the customers are complete: the messages are keyed again.
    mapping = Mapping.model_validate(_mapping(customers=customers, derive=True))
    forced = _overrides(tmp_path, "merge,h3,h4\n")
    ingest(export, mapping, tmp_path / "home", now=NOW, identity_overrides=forced)
    keys = _keys(tmp_path / "home")
    assert keys["h3"] == keys["h4"] != keys["h1"]
    messages = _keys(tmp_path / "home", "messages")
    assert messages["h4"] == messages["h3"] == keys["h3"]
    assert _report(tmp_path / "home")["identity"]["overrides"]["merges_applied"] == 1
    identity = pd.read_parquet(tmp_path / "home" / "ingested" / "identity_map.parquet")
    assert identity.set_index("customer_id")["customer_key"]["h4"] == keys["h3"]


def test_an_override_naming_an_unknown_customer_stops_the_run_naming_the_line(export: Path, tmp_path: Path) -> None:
    forced = _overrides(tmp_path, "merge,h1,h3\nmerge,h1,nobody\n")
    with pytest.raises(InputDataError, match=r"overrides\.csv line 3: customer id\(s\) \['nobody'\]"):
        ingest(export, Mapping.model_validate(_mapping()), tmp_path / "home", now=NOW, identity_overrides=forced)
    assert not (tmp_path / "home" / "ingested").exists()


def test_the_mapping_names_an_overrides_file_relative_to_itself(export: Path, tmp_path: Path) -> None:
    folder = tmp_path / "conf"
    folder.mkdir()
    (folder / "forced.yaml").write_text(yaml.safe_dump({"merge": [["h1", "h3"]]}), encoding="utf-8")
    (folder / "m.yaml").write_text(yaml.safe_dump(_mapping(identity_overrides="forced.yaml")), encoding="utf-8")
    mapping = load_mapping(folder / "m.yaml")
    assert mapping.identity_overrides == str(folder / "forced.yaml")
    ingest(export, mapping, tmp_path / "home", now=NOW)
    keys = _keys(tmp_path / "home")
    assert keys["h1"] == keys["h3"]


def test_kairos_ingest_identity_overrides_flag(export: Path, tmp_path: Path) -> None:
    from cli.main import app

    (tmp_path / "m.yaml").write_text(yaml.safe_dump(_mapping(derive=True)), encoding="utf-8")
    forced = _overrides(tmp_path, "merge,h1,h3\nsplit,h3,h4\n")
    args = ["ingest", "--input", str(export), "--mapping", str(tmp_path / "m.yaml"), "--out", str(tmp_path / "home")]
    result = CliRunner().invoke(app, [*args, "--dev", "--now", NOW.isoformat(), "--identity-overrides", str(forced)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())  # rich wraps lines
    assert "identity overrides: 1 of 1 forced merges joined two persons; 1 forced splits refused 0 links" in text
    keys = _keys(tmp_path / "home")
    assert keys["h1"] == keys["h3"] != keys["h4"]

    bad = _overrides(tmp_path, "join,h1,h3\n", "bad.csv")
    result = CliRunner().invoke(app, [*args, "--dev", "--identity-overrides", str(bad)])
    assert result.exit_code != 0
    assert "bad.csv line 2: action must be merge or split, not 'join'" in " ".join(result.output.split())


def test_mapping_check_reads_the_mappings_overrides_file(export: Path, tmp_path: Path) -> None:
    from features.mapcheck import check_mapping

    (tmp_path / "bad.csv").write_text("action,customer_id_a,customer_id_b\nmerge,h1\n", encoding="utf-8")
    check = check_mapping(export, Mapping.model_validate(_mapping(identity_overrides=str(tmp_path / "bad.csv"))))
    assert not check.ok
    assert check.problems == [f"identity_overrides: {tmp_path / 'bad.csv'} line 2: a merge needs two customer ids"]
    good = _overrides(tmp_path, "merge,h1,h3\n")
    assert check_mapping(export, Mapping.model_validate(_mapping(identity_overrides=str(good)))).ok
