"""Erasure of one customer (issue 17.4): through the admin API, through ``kairos erase``, and against Redis.

A small world of its own (300 customers, its own data home, registry and caches, so the shared fixtures are
never touched): churn, clv, recs and sendtime registered, the last three with per-customer rows. Each test
erases a different customer, checks beforehand that they are everywhere (so the search can find them), then
that no file, registry row, cache or Redis key holds their ids or keys, and that every answer says unknown.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
import redis
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from features.erasure import TOMBSTONES_FILE, find_person, residue
from features.store import build_snapshot, latest_snapshot
from serving.app import create_app
from serving.settings import Settings
from tests.figures import FIGURES
from tests.serving.conftest import FEATURES, api_keys, headers, register_churn, register_clv

NOW = datetime(2026, 1, 1, tzinfo=UTC)
ERASED: list[str] = []  # the source and web client ids this module's tests erased (a later ingest drops them)
REDIS_URL = "redis://127.0.0.1:6379/0"


@dataclass(frozen=True)
class Erasable:
    root: Path
    raw: Path
    home: Path
    uri: str
    quarantined: str  # a customer with a row in the quarantine file too
    merged: str  # a customer whose key joins several source records
    other: str  # a third one, for the Redis test

    def settings(self, cache: str = "cache", **overrides: object) -> Settings:
        base: dict[str, object] = {
            "data_home": self.home,
            "tracking_uri": self.uri,
            "model_cache_dir": self.root / cache,
            "api_keys": api_keys(),
            "log_json": False,
            "purchase_model": None,
            "engagement_models": [],
            "offers_model": None,
            "poll_interval_s": 0,
        }
        return Settings(**(base | overrides))  # type: ignore[arg-type]

    def client(self, cache: str = "cache", **overrides: object) -> TestClient:
        return TestClient(create_app(self.settings(cache, **overrides)))


def _keys_of(home: Path, table: str) -> set[str]:
    frame = pd.read_parquet(home / "ingested" / f"{table}.parquet", columns=["customer_key"])
    return set(frame["customer_key"].dropna().astype(str))


def _bundle_keys(root: Path, rel: str) -> set[str]:
    return set(pd.read_parquet(next(root.rglob(rel)))["customer_key"].astype(str))


@pytest.fixture(scope="module")
def erasable(tmp_path_factory: pytest.TempPathFactory) -> Erasable:
    from features.ingest import ingest
    from features.mapping import load_mapping
    from synth import generate_world
    from training.recs import train_recs
    from training.sendtime import train_sendtime

    root = tmp_path_factory.mktemp("erasure")
    generate_world(300, 7, root / "raw")
    home = root / "home"
    ingest(root / "raw", load_mapping("synthetic"), home, now=NOW)
    build_snapshot(home)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    frame = latest_snapshot(home).read()
    register_churn(uri, frame, FEATURES)
    register_clv(uri, frame, root / "clv-bundle")
    train_recs(home, uri, test_days=60)
    train_sendtime(home, uri, test_days=60)
    # Customers with rows in every table and in every bundle holding per-customer rows.
    everywhere = (
        _keys_of(home, "messages")
        & _keys_of(home, "orders")
        & _keys_of(home, "web_events")
        & _keys_of(home, "consents")
        & set(frame["customer_key"].astype(str))
        & _bundle_keys(root, "sendtime/customer_curves.parquet")
        & _bundle_keys(root, "history/prices.parquet")
        & _bundle_keys(root / "mlartifacts", "buy_again/customers.parquet")
    )
    ids = pd.read_parquet(home / "ingested" / "identity_map.parquet").astype(str)
    ids = ids[ids["customer_key"].isin(everywhere)]
    audit = pd.read_parquet(home / "ingested" / "quarantine.parquet")["original"]
    in_audit = {json.loads(o).get("customer_id") for o in audit}
    sizes = ids["customer_key"].value_counts()
    quarantined = sorted(set(ids["customer_id"]) & in_audit)[0]
    merged = sorted(ids.loc[ids["customer_key"].isin(sizes[sizes > 1].index), "customer_id"])[0]
    rest = sorted(set(ids["customer_id"]) - {quarantined, merged} - in_audit)
    return Erasable(root, root / "raw", home, uri, quarantined, merged, rest[len(rest) // 2])


def _places(world: Erasable, needles: tuple[str, ...], *caches: str) -> dict[str, list[str]]:
    """Where the needles are: the data home, the registry (SQLite file and artifacts), the model caches."""
    found = {
        "data_home": residue(world.home, needles),
        "registry": residue(world.root / "mlartifacts", needles) + residue_file(world.root / "mlflow.db", needles),
    }
    for cache in caches:
        found[cache] = residue(world.root / cache, needles)
    return found


def residue_file(path: Path, needles: tuple[str, ...]) -> list[str]:
    data = path.read_bytes()
    return [path.name] if any(n.encode() in data for n in needles) else []


def _answers(client: TestClient, cid: str, key: str) -> dict[str, object]:
    """What each endpoint says about one customer (by source id, and scores by key too)."""
    now = "2026-01-02T10:00:00Z"
    campaign, shop = headers("campaign"), headers("storefront")
    scores = client.post("/v1/scores", json={"customer_ids": [cid, key]}, headers=campaign).json()
    perm = client.post(
        "/v1/permissions", json={"items": [{"customer_id": cid, "channel": "email"}], "now": now}, headers=campaign
    ).json()
    send = client.post(
        "/v1/send-time",
        json={"customer_ids": [cid], "channel": "email", "window_hours": 24, "now": now},
        headers=campaign,
    ).json()
    recs = client.post("/v1/recommendations/customer", json={"customer_id": cid, "k": 5}, headers=shop).json()
    again = client.post("/v1/recommendations/buy-again", json={"customer_id": cid, "k": 5}, headers=shop).json()
    event = {"type": "view", "timestamp": now, "customer_id": cid, "session_id": "s-erasure"}
    by_key = {k: v for k, v in event.items() if k != "customer_id"} | {"customer_key": key}
    r = client.post("/v1/events", json={"events": [event, by_key]}, headers=shop)
    assert r.status_code == 200, r.text
    events = r.json()
    return {
        "profile": client.get(f"/v1/customers/{cid}/profile", headers=headers("pii")).status_code,
        "scores": [i["status"] for i in scores["items"]],
        "permissions": perm["items"][0]["status"],
        "send_time": send["items"][0]["status"],
        "recs_cold_start": recs["cold_start"],
        "buy_again": len(again["items"]),
        "events": [r["status"] for r in events["results"]],
    }


def _bystander(client: TestClient, cid: str) -> list[object]:
    """Another customer's answers (without request ids): an erasure must not change them."""
    now = "2026-01-02T10:00:00Z"
    asks = [
        ("/v1/scores", {"customer_ids": [cid], "now": now}, "campaign"),
        ("/v1/send-time", {"customer_ids": [cid], "channel": "email", "window_hours": 24, "now": now}, "campaign"),
        ("/v1/recommendations/customer", {"customer_id": cid, "k": 5}, "storefront"),
        ("/v1/recommendations/buy-again", {"customer_id": cid, "k": 5}, "storefront"),
    ]
    out = []
    for path, body, who in asks:
        answer = client.post(path, json=body, headers=headers(who)).json()
        answer.pop("request_id")
        out.append(answer)
    return out


UNKNOWN = {
    "profile": 404,
    "scores": ["unknown_customer", "unknown_customer"],
    "permissions": "unknown_customer",
    "send_time": "unknown_customer",
    "recs_cold_start": True,
    "buy_again": 0,
    "events": ["unknown_customer", "unknown_customer"],
}


@pytest.mark.security
def test_an_erased_customer_is_nowhere_and_unknown_to_every_replica(erasable: Erasable) -> None:
    world = erasable
    person = find_person(world.home, world.quarantined)
    (key,) = person.keys
    ERASED.extend(person.ids + person.web_ids)
    with world.client("cache") as replica, world.client("cache-2") as other:
        before = _places(world, person.needles, "cache", "cache-2")
        assert all(before.values()), before  # the search finds them everywhere before the erasure
        assert "ingested/quarantine.parquet" in before["data_home"]
        known = _answers(replica, world.quarantined, key)
        untouched = _bystander(replica, world.merged)
        assert untouched[0]["items"][0]["status"] == "ok" and untouched[3]["items"]
        assert known["profile"] == 200 and known["scores"] == ["ok", "ok"] and known["buy_again"] > 0

        denied = replica.post(
            "/v1/admin/erasures", json={"customer_id": world.quarantined}, headers=headers("campaign")
        )
        assert denied.status_code == 403  # the pii scope is needed
        r = replica.post("/v1/admin/erasures", json={"customer_id": world.quarantined}, headers=headers("pii"))
        assert r.status_code == 200, r.text
        receipt = r.json()
        assert receipt["complete"] is True and receipt["residue"] == {
            "data_home": [],
            "registry": [],
            "model_cache": [],
        }
        rewritten = {v["model"] for v in receipt["registry"] if v["resigned"]}
        assert {"recs", "sendtime", "clv"} <= rewritten
        assert any(d["file"] == "ingested/quarantine.parquet" for d in receipt["data_home"])
        assert not any(n in r.text for n in person.needles)  # the receipt names no id and no key

        # The other replica never saw the erasure: its tombstones answer for it at once...
        assert _answers(other, world.quarantined, key) == UNKNOWN
        # ...and its next poll loads the re-signed versions (their checksum moved), replacing its cache.
        outcomes = other.post("/v1/models/reload", json={}, headers=headers("admin")).json()["outcomes"]
        assert {o["model"] for o in outcomes if o["outcome"] == "loaded"} >= {"recs", "sendtime", "clv"}
        assert _answers(replica, world.quarantined, key) == UNKNOWN
        assert _bystander(replica, world.merged) == untouched  # the rewritten bundles still answer the rest alike
        after = _places(world, person.needles, "cache", "cache-2")
        answers = [_answers(r, world.quarantined, key) for r in (replica, other)]
        FIGURES.record(
            "erasure: every file, registry row, cache and answer",
            cases=sum(map(len, before.values())) + 2 * len(UNKNOWN),
            erased_hits=sum(map(len, after.values())) + sum(a[k] != UNKNOWN[k] for a in answers for k in UNKNOWN),
        )
        assert after == {
            "data_home": [],
            "registry": [],
            "cache": [],
            "cache-2": [],
        }
    # A replica started afterwards verifies every rewritten version and does not know them either.
    with world.client("cache-3") as fresh:
        assert fresh.get("/health/ready").status_code == 200
        assert _answers(fresh, world.quarantined, key) == UNKNOWN
    receipt_file = world.home / "erasures" / f"{receipt['erasure_id']}.json"
    assert json.loads(receipt_file.read_text())["erasure_id"] == receipt["erasure_id"]
    assert not residue(world.home / TOMBSTONES_FILE, person.needles)


def _raw_rows_of(raw: Path, ids: tuple[str, ...]) -> int:
    """Rows of the raw export that name one of ``ids`` as their customer or anonymous visitor (counted
    independently of the code under test)."""
    total = 0
    for path in raw.glob("*.csv"):
        frame = pd.read_csv(path, dtype=str)
        hit = pd.Series(False, index=frame.index)
        for column in ("customer_id", "anonymous_id"):
            if column in frame.columns:
                hit |= frame[column].str.strip().isin(ids).fillna(False)
        total += int(hit.sum())
    return total


def test_kairos_erase_then_an_old_export_does_not_bring_them_back(erasable: Erasable) -> None:
    from cli.main import app
    from features.ingest import ingest
    from features.mapping import load_mapping

    world = erasable
    person = find_person(world.home, world.merged)
    assert len(person.ids) > 1  # identity resolution joined several records: all of them go
    assert all(_places(world, person.needles).values())
    ERASED.extend(person.ids + person.web_ids)
    runner = CliRunner()
    args = ["erase", "--customer-id", "-", "--data", str(world.home), "--tracking-uri", world.uri]
    args += ["--model-cache", str(world.root / "cache")]
    result = runner.invoke(app, args, input=f"{world.merged}\n")
    assert result.exit_code == 0, result.output
    assert not any(n in result.output for n in person.needles)
    receipt = json.loads(result.stdout[result.stdout.index("{") : result.stdout.rindex("}") + 1])
    assert receipt["complete"] is True and receipt["source_ids"] == len(person.ids)
    assert _places(world, person.needles, "cache") == {"data_home": [], "registry": [], "cache": []}

    assert _raw_rows_of(world.raw, person.ids) > 0 and person.web_ids
    expected = _raw_rows_of(world.raw, tuple(ERASED))
    again = ingest(world.raw, load_mapping("synthetic"), world.home, now=NOW)
    assert again.report["erased"]["rows"] == expected  # counted, never silent
    assert residue(world.home / "ingested", person.needles) == []
    identity = pd.read_parquet(world.home / "ingested" / "identity_map.parquet")
    assert not identity["customer_id"].astype(str).isin(person.ids).any()


def _redis_or_skip() -> redis.Redis:
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError:
        if os.environ.get("CI") == "true":
            pytest.fail("no Redis at 127.0.0.1:6379: CI must run the Redis tests")
        pytest.skip("no Redis at 127.0.0.1:6379")
    return client


@pytest.fixture
def redis_prefix(erasable: Erasable) -> Iterator[str]:
    from features.online import RedisOnlineStore, publish_to_redis

    _redis_or_skip()
    prefix = f"kairos-test-erasure-{uuid.uuid4().hex[:8]}"
    store = RedisOnlineStore.connect(REDIS_URL, prefix, timeout=5, connect_timeout=5)
    publish_to_redis(erasable.home, store)
    yield prefix
    store.drop_all()


def _redis_hits(client: redis.Redis, prefix: str, needles: tuple[str, ...]) -> list[str]:
    """Keys under ``prefix`` whose name or value holds a needle (strings, hashes, sorted sets)."""
    hits = []
    for name in client.scan_iter(match=f"{prefix}:*", count=1000):
        kind = client.type(name)
        if kind == b"string":
            values = [client.get(name) or b""]
        elif kind == b"hash":
            values = [b"".join(client.hgetall(name).keys()) + b"".join(client.hgetall(name).values())]
        elif kind == b"zset":
            values = list(client.zrange(name, 0, -1))
        elif kind == b"set":
            values = list(client.smembers(name))
        else:
            values = []
        blob = name + b"".join(values)
        if any(n.encode() in blob for n in needles):
            hits.append(name.decode())
    return hits


def test_erasure_reaches_the_shared_online_store_and_send_log(erasable: Erasable, redis_prefix: str) -> None:
    from features.online import RedisOnlineStore

    world = erasable
    client = _redis_or_skip()
    person = find_person(world.home, world.other)
    (key,) = person.keys
    ERASED.extend(person.ids + person.web_ids)
    with world.client("cache-redis", online_store="redis", redis_prefix=redis_prefix) as replica:
        sent = {"type": "message_sent", "timestamp": "2026-01-02T09:00:00Z", "customer_id": world.other}
        sent |= {"channel": "email", "event_id": "erasure-send-1"}
        view = {"type": "view", "timestamp": "2026-01-02T09:05:00Z", "customer_id": world.other}
        view |= {"session_id": "s-1", "event_id": "erasure-view-1"}
        r = replica.post("/v1/events", json={"events": [sent, view]}, headers=headers("campaign"))
        assert [x["status"] for x in r.json()["results"]] == ["applied", "applied"], r.text
        hits = _redis_hits(client, redis_prefix, person.needles)
        assert any(":sends:" in h for h in hits) and any(":log:" in h for h in hits) and any(":a:" in h for h in hits)

        store = RedisOnlineStore.connect(REDIS_URL, redis_prefix, timeout=5, connect_timeout=5)
        rows = len(store)
        r = replica.post("/v1/admin/erasures", json={"customer_id": world.other}, headers=headers("pii"))
        assert r.status_code == 200, r.text
        assert r.json()["complete"] is True and r.json()["online_store"]["backend"] == "redis"
        assert len(store) == rows - 1  # the row count follows
        assert _redis_hits(client, redis_prefix, person.needles) == []
        assert _answers(replica, world.other, key) == UNKNOWN
    assert _places(world, person.needles, "cache-redis") == {"data_home": [], "registry": [], "cache-redis": []}
