"""Audiences end to end on the served synthetic world (``world``: churn registered, 1,500 customers):
the issue's example condition is one API call and one command, and both give the customers the nightly
export, filtered by hand, gives at the same instant (the snapshot's; nothing posted since)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from cli.main import app
from features.audience import ADVERTISING
from features.store import latest_snapshot
from tests.serving.conftest import World, headers

EXAMPLE = "churn > 0.6 and consent_email and lifecycle in ['at_risk', 'lapsed']"
runner = CliRunner()


def _cli(*args: str) -> None:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def export(world: World, tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    out = tmp_path_factory.mktemp("audience-export") / "scores.parquet"
    _cli("score", "--all", "--consent", "--no-compiled", "--out", str(out), "--data", str(world.home),
         "--tracking-uri", world.uri)  # fmt: skip
    return pd.read_parquet(out)


def _by_hand(export: pd.DataFrame) -> set[str]:
    keep = (
        (export["churn_probability"] > 0.6)
        & export["consent_email"]
        & export["lifecycle"].astype(str).isin(["at_risk", "lapsed"])
    )
    return set(export.loc[keep.fillna(False), "customer_id"])


def test_the_example_is_one_command_and_one_call_and_both_equal_the_export_by_hand(
    world: World, export: pd.DataFrame, tmp_path: Path
) -> None:
    expected = _by_hand(export)
    assert 0 < len(expected) < len(export) / 2  # the condition selects: neither nobody nor everyone
    out = tmp_path / "audience.parquet"
    _cli("audience", "export", EXAMPLE, "--format", "parquet", "--out", str(out), "--no-compiled",
         "--data", str(world.home), "--tracking-uri", world.uri)  # fmt: skip
    written = pd.read_parquet(out)
    assert set(written["customer_id"]) == expected and len(written) == len(expected)
    assert set(written.columns) == {"customer_id", "customer_key", "churn", "consent_email", "lifecycle"}
    # the export answers at the snapshot's instant; the API at its request's now (one clock): the same instant
    at = latest_snapshot(world.home).as_of.isoformat()
    with world.client() as client:
        body = client.post(
            "/v1/audiences/count", json={"condition": EXAMPLE, "sample_size": 5, "now": at}, headers=headers("campaign")
        ).json()
        assert body["count"] == len(expected) and body["scanned"] == len(export)
        assert len(body["sample"]) == 5 and {s["customer_id"] for s in body["sample"]} <= expected
        assert body["snapshot_as_of"] == latest_snapshot(world.home).as_of.isoformat()
        # paginated: small pages, every member once, in the snapshot's order
        got: list[str] = []
        cursor = None
        for _ in range(100):
            page = client.post(
                "/v1/audiences/list",
                json={"condition": EXAMPLE, "page_size": 37, "now": at} | ({"cursor": cursor} if cursor else {}),
                headers=headers("campaign"),
            ).json()
            got += [i["customer_id"] for i in page["items"]]
            assert all(i["churn"] > 0.6 and i["consent_email"] for i in page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert len(got) == len(set(got)) and set(got) == expected
        csv = client.post("/v1/audiences/export", json={"condition": EXAMPLE, "now": at}, headers=headers("campaign"))
        assert csv.status_code == 200 and csv.headers["x-kairos-snapshot"] == body["snapshot_as_of"]
        lines = csv.text.splitlines()
        assert lines[0] == "customer_id,customer_key,churn,consent_email,lifecycle"
        assert {line.split(",")[0] for line in lines[1:]} == expected


def test_bad_requests_name_the_field_and_upload_files_need_the_pii_scope(world: World) -> None:
    with world.client() as client:
        r = client.post(
            "/v1/audiences/count", json={"condition": "churn > 0.6 and shoe_size > 3"}, headers=headers("campaign")
        )
        assert r.status_code == 422 and "body.condition" in r.json()["error"]["message"]
        assert "shoe_size" in r.json()["error"]["message"]
        r = client.post(
            "/v1/audiences/export", json={"condition": EXAMPLE, "format": "meta"}, headers=headers("campaign")
        )
        assert r.status_code == 403 and "pii" in r.json()["error"]["message"]
        r = client.post(
            "/v1/audiences/list", json={"condition": EXAMPLE, "cursor": "99999999"}, headers=headers("campaign")
        )
        assert r.status_code == 422 and "body.cursor" in r.json()["error"]["message"]
        r = client.post("/v1/audiences/count", json={"condition": EXAMPLE}, headers=headers("storefront"))
        assert r.status_code == 403
        # an attribute this data lacks is known only once the rows are read: still a 422 naming it
        r = client.post("/v1/audiences/count", json={"condition": "attr_shoe_size > 3"}, headers=headers("campaign"))
        assert r.status_code == 422 and "attr_shoe_size" in r.json()["error"]["message"]
        # a model the service does not serve is not a name (one served only from a prior: 503, not tested here)
        r = client.post("/v1/audiences/count", json={"condition": "purchase > 0.5"}, headers=headers("campaign"))
        assert r.status_code == 422 and "purchase" in r.json()["error"]["message"]


def test_upload_files_carry_only_customers_whose_consent_covers_advertising(world: World, tmp_path: Path) -> None:
    """Advertising consent recorded for some customers (channel ``advertising``, in a copy of the home): the
    upload file of an audience of everyone holds exactly their hashed contacts, from the CLI and the API."""
    home = tmp_path / "home"
    shutil.copytree(world.home, home)
    consents = pd.read_parquet(home / "ingested" / "consents.parquet")
    customers = pd.read_parquet(home / "ingested" / "customers.parquet")
    with_mail = customers.dropna(subset=["email"]).drop_duplicates("customer_key")
    chosen = with_mail["customer_key"].astype(str).head(40).tolist()
    extra = consents.head(len(chosen)).copy()
    extra["customer_key"] = chosen
    extra["channel"] = ADVERTISING
    extra["status"] = "opt_in"
    extra["consented_at"] = pd.Timestamp("2024-01-01", tz="UTC")
    pd.concat([consents, extra], ignore_index=True).to_parquet(home / "ingested" / "consents.parquet")
    out = tmp_path / "google.csv"
    _cli("audience", "export", "churn >= 0", "--format", "google", "--out", str(out), "--no-compiled",
         "--data", str(home), "--tracking-uri", world.uri)  # fmt: skip
    rows = out.read_text().splitlines()
    assert rows[0] == "Email,Phone" and 1 < len(rows) - 1 <= len(chosen) * 3  # a customer may have several records
    assert all(len(h) in (0, 64) for line in rows[1:] for h in line.split(","))
    with world.client(data_home=home) as client:
        api = client.post(
            "/v1/audiences/export", json={"condition": "churn >= 0", "format": "google"}, headers=headers("pii")
        )
    assert api.status_code == 200 and sorted(api.text.splitlines()[1:]) == sorted(rows[1:])


def test_a_saved_audience_runs_again_with_its_definition(world: World, tmp_path: Path) -> None:
    home = tmp_path / "home"
    shutil.copytree(world.home, home)
    _cli("audience", "save", "win-back", EXAMPLE, "--no-compiled", "--data", str(home), "--tracking-uri", world.uri)
    _cli("audience", "run", "win-back", "--no-compiled", "--data", str(home), "--tracking-uri", world.uri)
    folder = home / "audiences" / "win-back"
    definition = (folder / "definition.json").read_text()
    assert EXAMPLE.replace("'", "'") in definition and definition.count('"source": "export"') == 2
    assert pq.read_table(folder / "members.parquet").num_rows > 0
    bad = runner.invoke(
        app, ["audience", "run", "nobody", "--no-compiled", "--data", str(home), "--tracking-uri", world.uri]
    )
    assert bad.exit_code == 2 and "no saved audience 'nobody'" in bad.output
