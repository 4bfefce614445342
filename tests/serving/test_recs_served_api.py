"""The API answers recommendations with the model the training job's gate chose, and names it (issue 20,
item 6): ``models[0].kind`` / ``baseline`` are the served slot's label, and the items are that model's own
candidates in its order (the business rules only drop some and top the list up)."""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi.testclient import TestClient

from bundles.recs import CART_ANONYMOUS_SLOT, CART_KNOWN_SLOT, NEXT_BASKET_SLOT, RecsModel, baseline_of
from models.recs.base import Query
from serving.state import Services
from tests.serving.conftest import World, headers

SHOP = headers("storefront")


def _post(client: TestClient, path: str, **body: Any) -> dict[str, Any]:
    r = client.post(f"/v1/recommendations/{path}", json=body, headers=SHOP)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def _label_matches(ref: dict[str, Any], label: str | None) -> None:
    assert label is not None
    baseline = baseline_of(label)
    assert ref["kind"] == ("baseline" if baseline else "kairos")
    assert ref["baseline"] == baseline


def _in_model_order(items: list[dict[str, Any]], candidates: list[str]) -> None:
    """Most of the answer is the model's candidates, in the model's order (the rules drop some, the popular
    top-up comes after them)."""
    positions = [candidates.index(i["item_id"]) for i in items if i["item_id"] in candidates]
    assert positions == sorted(positions)
    assert len(positions) >= len(items) // 2


def test_answers_name_and_come_from_the_served_models(world: World) -> None:
    with world.client() as client:
        services: Services = client.app.state.services  # type: ignore[attr-defined]
        model: RecsModel = services.bundle("recs").payload  # type: ignore[union-attr]
        assert set(model.manifest["served"]) == {NEXT_BASKET_SLOT, CART_KNOWN_SLOT, CART_ANONYMOUS_SLOT}
        hub = str(model.together.item_ids_[int(np.argmax(np.diff(model.together.nbr_indptr_)))])
        anonymous = _post(client, "cart", cart=[hub], k=8)
        _label_matches(anonymous["models"][0], model.served_label(CART_ANONYMOUS_SLOT))
        served = model.served[CART_ANONYMOUS_SLOT][1]
        _in_model_order(anonymous["items"], [r.item_id for r in served.recommend(Query(cart=(hub,)), 40)])

        store = services.store
        checked = 0
        for cid in world.ids[:60]:
            key = store.resolve([cid])[0]
            if key is None:
                continue
            clock = store.recent_events(key).clock
            mine = _post(client, "customer", customer_id=cid, k=8)
            _label_matches(mine["models"][0], model.served_label(NEXT_BASKET_SLOT))
            nxt = model.served[NEXT_BASKET_SLOT][1].recommend(Query(customer_key=key, now=clock), 40)
            if not nxt:
                continue
            _in_model_order(mine["items"], [r.item_id for r in nxt])
            cart = _post(client, "cart", customer_id=cid, cart=[hub], k=8)
            _label_matches(cart["models"][0], model.served_label(CART_KNOWN_SLOT))
            known = model.served[CART_KNOWN_SLOT][1].recommend(Query(customer_key=key, cart=(hub,)), 40)
            _in_model_order(cart["items"], [r.item_id for r in known])
            checked += 1
        assert checked >= 10
