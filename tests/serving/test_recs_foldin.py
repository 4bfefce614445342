"""Today's events in a customer's recommendations (issue 20, item 6), through the real API app.

Views, add-to-carts and orders posted to ``/v1/events`` change the very next answer, in process and with
Redis as the store (its own key prefix, deleted afterwards): carted then viewed items lead, items bought
since the snapshot leave the next-basket, cart and buy-again answers, and the answer is the one the loaded
bundle gives at the data's clock (the latest event), not the server's. The store's erasure removes them.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
import redis
from fastapi.testclient import TestClient

from bundles.recs import Filters, RecsModel
from features.online import RedisOnlineStore, publish_to_redis
from features.realtime import Event
from models.recs.base import Query, RecSource
from models.recs.personal import RecentActivity, with_activity
from models.recs.rules import ItemCatalogue
from serving.state import Services
from tests.serving.conftest import World, headers

SHOP = headers("storefront")


@pytest.fixture(scope="module")
def redis_prefix(world: World) -> Iterator[str]:
    try:
        redis.Redis(host="127.0.0.1", port=6379, socket_timeout=1).ping()
    except redis.RedisError:
        pytest.skip("no Redis at 127.0.0.1:6379")
    prefix = f"kairos-test-foldin-{uuid.uuid4().hex[:8]}"
    store = RedisOnlineStore.connect("redis://127.0.0.1:6379/0", prefix, timeout=5, connect_timeout=5)
    publish_to_redis(world.home, store)
    yield prefix
    store.drop_all()


@dataclass(frozen=True)
class Plan:
    """One customer and the items the test's events name."""

    cid: str
    key: str
    bought_before: str  # an own item in their next-basket answer, ordered again today
    due: str  # first in their buy-again answer, ordered today
    new_buy: str  # first in their cart answer, never bought before, ordered today
    hub: str  # the cart of the cart question
    viewed: str
    carted: str


def _services(client: TestClient) -> Services:
    services: Services = client.app.state.services  # type: ignore[attr-defined]
    return services


def _model(client: TestClient) -> RecsModel:
    bundle = _services(client).bundle("recs")
    assert bundle is not None
    model: RecsModel = bundle.payload
    return model


def _ask(client: TestClient, path: str, **body: Any) -> list[dict[str, Any]]:
    r = client.post(f"/v1/recommendations/{path}", json=body, headers=SHOP)
    assert r.status_code == 200, r.text
    assert r.json()["degraded"] is False
    items: list[dict[str, Any]] = r.json()["items"]
    return items


def _plan(world: World, client: TestClient) -> Plan:
    """A customer whose answers each hold an item the events can take away (found with the loaded bundle)."""
    model, store, none = _model(client), _services(client).store, Filters()
    assert model.personal is not None
    hub = str(model.together.item_ids_[int(np.argmax(np.diff(model.together.nbr_indptr_)))])
    for cid in world.ids[:300]:
        key = store.resolve([cid])[0]
        if key is None:
            continue
        nxt = model.for_customer(key, 10, none).items
        own = [r.item_id for r in nxt if r.source == RecSource.BUY_AGAIN]
        due = [r.item_id for r in model.buy_again(key, 10, none).items]
        cart = [r.item_id for r in model.cart([hub], key, 10, none).items if r.source == RecSource.BOUGHT_TOGETHER]
        if len(own) < 2 or not due or not cart:
            continue
        shown = {r.item_id for r in nxt} | set(due) | set(cart) | {hub}
        bought = {str(model.catalogue.item_ids[c]) for c in model.history.bought(key)}
        # new to the customer, known to the personal model, allowed by the rules (active, in stock)
        fresh = [
            r.item_id for r in model.personal.recommend(Query(customer_key=key), 60) if r.item_id not in shown | bought
        ]
        if len(fresh) < 2:
            continue
        own_pick = next((i for i in own if i != due[0]), None)
        if own_pick is None:
            continue
        return Plan(cid, key, own_pick, due[0], cart[0], hub, fresh[-1], fresh[-2])
    raise AssertionError("no customer of the world fits the plan")


def _events(plan: Plan, at: datetime) -> list[dict[str, Any]]:
    def ev(kind: str, item: str, minutes: int) -> dict[str, Any]:
        stamp = (at + timedelta(minutes=minutes)).isoformat()
        return {"type": kind, "timestamp": stamp, "customer_id": plan.cid, "item_id": item, "session_id": "s-fold"}

    return [
        ev("view", plan.viewed, 1),
        ev("add_to_cart", plan.carted, 2),
        ev("order", plan.bought_before, 3),
        ev("order", plan.due, 4),
        ev("order", plan.new_buy, 5),
    ]


def _check_fold_in(world: World, client: TestClient) -> Plan:
    plan = _plan(world, client)
    store = _services(client).store
    clock = store.recent_events(plan.key).clock
    assert clock is not None and store.recent_events(plan.key).events == []
    before = _ask(client, "customer", customer_id=plan.cid, k=10)
    assert plan.bought_before in [i["item_id"] for i in before]
    cart_before = _ask(client, "cart", customer_id=plan.cid, cart=[plan.hub], k=10)
    assert plan.new_buy in [i["item_id"] for i in cart_before]
    assert plan.due in [i["item_id"] for i in _ask(client, "buy-again", customer_id=plan.cid, k=10)]

    at = clock + timedelta(hours=1)
    r = client.post("/v1/events", json={"events": _events(plan, at)}, headers=SHOP)
    assert [x["status"] for x in r.json()["results"]] == ["applied"] * 5, r.text

    after = _ask(client, "customer", customer_id=plan.cid, k=10)
    got = [i["item_id"] for i in after]
    assert got[:2] == [plan.carted, plan.viewed]  # carted, then viewed lead
    assert [i["reason"] for i in after[:2]] == ["still in your cart", "you looked at this recently"]
    assert not {plan.bought_before, plan.due, plan.new_buy} & set(got)  # just bought: not again today
    assert got != [i["item_id"] for i in before]
    cart_after = _ask(client, "cart", customer_id=plan.cid, cart=[plan.hub], k=10)
    assert plan.new_buy not in [i["item_id"] for i in cart_after]
    assert plan.due not in [i["item_id"] for i in _ask(client, "buy-again", customer_id=plan.cid, k=10)]

    # The answer is the bundle's at the data's clock (the latest event), not at the server's clock.
    recent = store.recent_events(plan.key)
    assert recent.clock == at + timedelta(minutes=5)
    model = _model(client)
    at_data = model.for_customer(
        plan.key, 10, Filters(), RecentActivity.from_events(plan.key, recent.events, recent.clock)
    )
    assert [(i["item_id"], i["score"]) for i in after] == [(r.item_id, r.score) for r in at_data.items]
    due_now = _ask(client, "buy-again", customer_id=plan.cid, k=10)
    data = RecentActivity.from_events(plan.key, recent.events, recent.clock)
    due_at_data = model.buy_again(plan.key, 10, Filters(), data).items
    assert [(i["item_id"], i["score"]) for i in due_now] == [(r.item_id, r.score) for r in due_at_data]
    wall = RecentActivity.from_events(plan.key, recent.events, datetime.now(UTC))  # what a server clock would give
    due_at_wall = model.buy_again(plan.key, 10, Filters(), wall).items
    assert [(r.item_id, r.score) for r in due_at_wall] != [(r.item_id, r.score) for r in due_at_data]
    # the factor model behind the own items (new picks): folded in, at the data's clock
    assert model.personal is not None
    factors = model.personal.personal_
    folded = with_activity(factors, data).recommend(Query(customer_key=plan.key, now=recent.clock), 10)
    assert [r.item_id for r in folded] != [r.item_id for r in factors.recommend(Query(customer_key=plan.key), 10)]
    later = with_activity(factors, data).recommend(Query(customer_key=plan.key, now=datetime.now(UTC)), 10)
    assert [r.score for r in later] != [r.score for r in folded]
    return plan


def test_events_posted_in_process_change_the_next_answer_and_erasure_removes_them(world: World) -> None:
    with world.client() as client:
        plan = _check_fold_in(world, client)
        store = _services(client).store
        assert store.erase([plan.key], [plan.cid]) > 0  # what the admin erasure does to the online store
        assert store.recent_events(plan.key).events == []
        gone = _ask(client, "customer", customer_id=plan.cid, k=10)
        assert plan.carted not in [i["item_id"] for i in gone] and plan.viewed not in [i["item_id"] for i in gone]


@pytest.mark.integration
def test_events_posted_with_redis_change_the_next_answer_of_another_replica(world: World, redis_prefix: str) -> None:
    with (
        world.client(online_store="redis", redis_prefix=redis_prefix) as a,
        world.client(online_store="redis", redis_prefix=redis_prefix) as b,
    ):
        plan = _check_fold_in(world, a)  # events posted to a
        seen_by_b = _ask(b, "customer", customer_id=plan.cid, k=10)
        assert [i["item_id"] for i in seen_by_b[:2]] == [plan.carted, plan.viewed]
        assert _services(b).store.erase([plan.key], [plan.cid]) > 0
        assert _services(a).store.recent_events(plan.key).events == []


def test_a_replenishable_item_bought_today_stays_a_buy_again_candidate(world: World) -> None:
    """Bought since the snapshot: left out unless replenishable; a staple bought today is a buy-again candidate."""
    with world.client() as client:
        plan = _plan(world, client)
        model = _model(client)
        cat = model.catalogue
        staples = np.isin(cat.item_ids, [plan.bought_before, plan.new_buy])
        stocked = copy.copy(model)
        stocked.catalogue = ItemCatalogue(
            cat.item_ids, cat.names, cat.categories, cat.prices, cat.active, cat.in_stock, staples
        )
        clock = _services(client).store.recent_events(plan.key).clock
        assert clock is not None
        events = [
            Event(type="order", timestamp=clock + timedelta(hours=h), customer_key=plan.key, item_id=item)
            for h, item in ((1, plan.bought_before), (2, plan.new_buy), (3, plan.due))
        ]
        recent = RecentActivity.from_events(plan.key, events, clock + timedelta(hours=3))
        plain = [r.item_id for r in model.for_customer(plan.key, 10, Filters(), recent).items]
        staple = stocked.for_customer(plan.key, 10, Filters(), recent).items
        assert plan.bought_before not in plain and plan.new_buy not in plain
        got = {r.item_id: r for r in staple}
        assert plan.bought_before in got and got[plan.bought_before].source == RecSource.BUY_AGAIN
        assert plan.new_buy in got and got[plan.new_buy].reason == "you bought this recently"
        assert plan.due not in got  # not a staple: gone
