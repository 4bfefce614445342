"""The data-home side of erasure: tombstones, dropping tombstoned rows at ingest, rewriting Parquet files
(audit files by their raw rows), the in-process online store forgetting a customer, the residue search."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.erasure import (
    TOMBSTONES_FILE,
    Person,
    Tombstones,
    drop_erased,
    erase_from_data_home,
    find_person,
    residue,
    tombstone_hash,
)
from features.identity import Pseudonymizer, customer_key_for
from features.io import write_parquet
from features.online import InMemoryOnlineStore

AT = datetime(2026, 1, 2, tzinfo=UTC)

DEV = Pseudonymizer.for_development()


def test_tombstones_hold_neither_the_id_nor_the_key_and_need_the_secret(tmp_path: Path) -> None:
    key = customer_key_for("100001", DEV)
    person = Person(("100001", "100002"), (key,))
    stones = Tombstones.of(tmp_path, b"secret-a")
    assert stones.add(person, "er_1", AT) == 3
    assert stones.add(person, "er_2", AT) == 0  # already there: nothing added twice
    text = (tmp_path / TOMBSTONES_FILE).read_text()
    assert "100001" not in text and "100002" not in text and key not in text and key[3:] not in text
    assert tombstone_hash("100001", "id", b"secret-a") != key[3:]
    again = Tombstones.of(tmp_path, b"secret-a")  # what another replica reads
    assert again.erased(["100001", key, "100003", "ck_0000000000000000"]) == [True, True, False, False]
    assert Tombstones.of(tmp_path, b"secret-b").erased(["100001", key]) == [False, False]
    # A replica that answered "not erased" before learns of a later erasure at its next refresh.
    assert again.erased(["100003"]) == [False]
    Tombstones.of(tmp_path, b"secret-a").add(Person(("100003",), ()), "er_3", AT)
    again.refresh(0.0)
    assert again.erased(["100003", "100001"]) == [True, True]


def test_ingest_drops_tombstoned_rows_and_counts_them(tmp_path: Path) -> None:
    Tombstones.of(tmp_path).add(Person(("12345",), ()), "er_1", AT)
    stones = Tombstones.of(tmp_path)
    raw = pd.DataFrame({"CustomerID": [12345.0, np.nan, 67890.0, 12345.0], "Qty": ["1", "12345", "3", "4"]})
    kept, dropped = drop_erased(raw, "CustomerID", stones)
    assert dropped == 2  # spreadsheet ids (12345.0) are the id ingest reads them as
    assert kept["Qty"].tolist() == ["12345", "3"]  # the same value in another column is not the customer
    text = pd.DataFrame({"customer_id": [" 12345 ", "12346"]})
    assert drop_erased(text, "customer_id", stones)[1] == 1
    assert drop_erased(text, None, stones) == (text, 0)
    Tombstones.of(tmp_path).add(Person((), (), ("w-1",)), "er_2", AT)
    web = pd.DataFrame({"customer_id": [None, "12346", None], "anonymous_id": ["w-1", "w-2", "w-1"]})
    kept, dropped = drop_erased(web, "customer_id", Tombstones.of(tmp_path), "anonymous_id")
    assert dropped == 2 and kept["anonymous_id"].tolist() == ["w-2"]  # their anonymous events go too


def _home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    (home / "ingested").mkdir(parents=True)
    ka, kb = customer_key_for("A1", DEV), customer_key_for("B1", DEV)
    write_parquet(
        pd.DataFrame({"customer_id": ["A1", "A2", "B1"], "customer_key": [ka, ka, kb]}),
        home / "ingested" / "identity_map.parquet",
    )
    write_parquet(
        pd.DataFrame({"order_id": ["o1", "o2", "o3"], "customer_id": ["A2", "B1", "A1"], "customer_key": [ka, kb, ka]}),
        home / "ingested" / "orders.parquet",
    )
    customers = {"customer_id": ["A1", "A2", "B1"], "customer_key": [ka, ka, kb], "web_client_id": ["w-a", None, "w-b"]}
    write_parquet(pd.DataFrame(customers), home / "ingested" / "customers.parquet")
    events = {"event_id": ["e1", "e2", "e3"], "customer_id": [None, "B1", None], "anonymous_id": ["w-a", "w-b", "w-b"]}
    write_parquet(pd.DataFrame(events), home / "ingested" / "web_events.parquet")
    originals = [
        json.dumps({"order_id": "o9", "CustomerID": "A2", "quantity": "1"}),
        json.dumps({"order_id": "o8", "CustomerID": "B1", "quantity": "A1x"}),  # A1 only inside another value
        json.dumps({"order_id": "o7", "quantity": "2"}),
    ]
    write_parquet(
        pd.DataFrame({"table": ["orders"] * 3, "original": originals}), home / "ingested" / "quarantine.parquet"
    )
    review = {"customer_id_a": ["B1"], "customer_id_b": ["A1"], "customer_key_a": [kb], "customer_key_b": [ka]}
    write_parquet(pd.DataFrame(review), home / "ingested" / "identity_review.parquet")
    snap = home / "snapshots" / "2026-01-01T000000Z"
    snap.mkdir(parents=True)
    write_parquet(pd.DataFrame({"customer_key": [ka, kb], "f": [1.0, 2.0]}), snap / "features.parquet")
    (snap / "manifest.json").write_text(json.dumps({"rows": 2}))
    return home


def test_erasure_rewrites_every_table_audit_file_and_snapshot(tmp_path: Path) -> None:
    home = _home(tmp_path)
    person = find_person(home, "A1")
    # every record of the person, and the web client id their anonymous events carry
    assert person == Person(("A1", "A2"), (customer_key_for("A1", DEV),), ("w-a",))
    assert len(residue(home, person.needles)) == 7
    removed = {r.file: r.rows for r in erase_from_data_home(home, person)}
    assert removed == {
        "ingested/identity_map.parquet": 2,
        "ingested/customers.parquet": 2,
        "ingested/web_events.parquet": 1,
        "ingested/orders.parquet": 2,
        "ingested/quarantine.parquet": 1,
        "ingested/identity_review.parquet": 1,
        "snapshots/2026-01-01T000000Z/features.parquet": 1,
    }
    orders = pd.read_parquet(home / "ingested" / "orders.parquet")
    assert orders["order_id"].tolist() == ["o2"]  # the bystander keeps every row
    audit = pd.read_parquet(home / "ingested" / "quarantine.parquet")["original"].tolist()
    assert [json.loads(o)["order_id"] for o in audit] == ["o8", "o7"]
    assert pd.read_parquet(home / "ingested" / "web_events.parquet")["event_id"].tolist() == ["e2", "e3"]
    assert json.loads((home / "snapshots" / "2026-01-01T000000Z" / "manifest.json").read_text())["rows"] == 1
    # "A1x" in another customer's audit row is a substring, not the id: the search is conservative
    assert residue(home, (person.keys[0], "A2")) == []


def test_an_unknown_id_is_still_tombstoned_and_empty_is_refused(tmp_path: Path) -> None:
    home = _home(tmp_path)
    assert find_person(home, " zz9 ") == Person(("zz9",), ())
    with pytest.raises(ValueError, match="customer_id"):
        find_person(home, "  ")


def test_the_in_process_store_forgets_a_customer(tmp_path: Path) -> None:
    ka, kb = customer_key_for("A1", DEV), customer_key_for("B1", DEV)
    frame = pd.DataFrame({"customer_key": [ka, kb], "x": [1.0, 2.0], "s": ["a", "b"]})
    store = InMemoryOnlineStore(frame, ["x"], {"A1": ka, "A2": ka, "B1": kb}, string_names=["s"])
    assert store.resolve(["A1", "A2", ka, "B1"]) == [ka, ka, ka, kb]
    assert store.erase([ka], ["A1", "A2"]) == 3  # two ids and one row
    assert store.resolve(["A1", "A2", ka, "B1"]) == [None, None, None, kb]
    found = store.lookup(["B1", ka], strings=True)
    assert found.rows.tolist()[1] == -1 and found.values[0, 0] == 2.0 and found.strings["s"] == ["b", None]
    assert not np.isfinite(store._matrix[0]).any()  # the row's values are gone, not just unreachable


def test_kairos_erase_without_the_registry_erases_the_rest_and_says_incomplete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    from typer.testing import CliRunner

    from cli.main import app

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    home = _home(tmp_path)
    person = find_person(home, "A1")
    args = ["erase", "--customer-id", "A1", "--data", str(home), "--tracking-uri", f"http://127.0.0.1:{port}"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output  # not complete: the registry was not reached
    receipt = json.loads(result.stdout[result.stdout.index("{") : result.stdout.rindex("}") + 1])
    assert receipt["complete"] is False and receipt["residue"]["registry"][0].startswith("registry not reached")
    assert residue(home, (person.keys[0], "A2", "w-a")) == [] and receipt["tombstones_added"] == 4


def test_residue_finds_an_id_as_a_value_in_every_kind_of_file_but_not_inside_another(tmp_path: Path) -> None:
    (tmp_path / "report.json").write_text('{"id": "100289"}')
    (tmp_path / "log.txt").write_text("51002891 x1002890")  # longer values that merely contain it
    pd.DataFrame({"c": ["x-100289", "5100289"]}).to_parquet(tmp_path / "hit.parquet")
    pd.DataFrame({"c": ["5100289"]}).to_parquet(tmp_path / "miss.parquet")
    np.save(tmp_path / "hit.npy", np.array(["100289", "z"]))
    np.save(tmp_path / "miss.npy", np.array(["1002890"]))
    (tmp_path / "edge.bin").write_bytes(b"a" * ((1 << 20) - 3) + b" 100289 ")  # across the 1 MiB block edge
    (tmp_path / "glued.bin").write_bytes(b"a" * ((1 << 20) - 3) + b"100289 ")
    (tmp_path / "wide.bin").write_bytes("x 100289 y".encode("utf-32-le"))
    assert residue(tmp_path, ["100289"]) == ["edge.bin", "hit.npy", "hit.parquet", "report.json", "wide.bin"]
