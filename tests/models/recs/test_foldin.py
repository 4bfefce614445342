"""Today's events in personal answers: reading them (RecentActivity), folding them in (with_activity), and the
data's clock (an old data set answers from its own end, never from the server's clock)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from features.realtime import Event
from models.recs.base import IX, Query
from models.recs.blend import RepeatThenPersonal
from models.recs.personal import RECENT_SLOTS, ImplicitRecommender, RecentActivity, with_activity
from models.recs.popular import Popular
from tests.models.recs.test_personal import ITEMS, two_clusters

PAST = pd.Timestamp("2011-12-09", tz="UTC")  # a data set that ended long before the server's clock


def _in_2011(frame: pd.DataFrame) -> pd.DataFrame:
    """The two-cluster interactions moved so that they end on ``PAST``."""
    return frame.assign(**{IX.TS: frame[IX.TS] + (PAST - frame[IX.TS].max())})


def _fitted(frame: pd.DataFrame) -> ImplicitRecommender:
    return ImplicitRecommender(factors=2, iterations=15, regularization=0.01, random_state=7).fit(frame, ITEMS)


def _ev(kind: str, minute: int, item: str | None = None, start: datetime = PAST.to_pydatetime()) -> Event:
    at = start + timedelta(days=1, minutes=minute)
    return Event(type=kind, timestamp=at, customer_key="fan_a", item_id=item, session_id="s1")


def test_events_are_read_as_bought_carted_and_viewed() -> None:
    events = [
        _ev("view", 1, "A1"),
        _ev("add_to_cart", 2, "A3"),
        _ev("checkout", 3),  # the cart is closed (its items come as orders)
        _ev("add_to_cart", 4, "B1"),
        _ev("add_to_cart", 5, "B2"),
        _ev("remove_from_cart", 6, "B2"),  # taken out again
        _ev("view", 7, "B1"),  # in the cart: counted as carted, not viewed
        _ev("order", 8, "A2"),
        _ev("view", 9, "B3"),
        _ev("session_start", 10),  # no item: ignored
        _ev("view", 11, "A2"),  # bought: not a view any more
    ]
    recent = RecentActivity.from_events("fan_a", list(reversed(events)), PAST.to_pydatetime())  # any order in
    assert recent.bought == ("A2",)
    assert recent.carted == ("B1",)
    assert recent.viewed == ("B3", "A1")
    frame = recent.interactions
    kinds = ["view", "add_to_cart", "add_to_cart", "add_to_cart", "view", "purchase", "view", "view"]
    assert list(frame[IX.EVENT]) == kinds
    assert list(frame[IX.ITEM]) == ["A1", "A3", "B1", "B2", "B1", "A2", "B3", "A2"]
    assert set(frame[IX.CUSTOMER]) == {"fan_a"}
    lead = recent.first(exclude=frozenset())
    assert [(r.item_id, r.reason) for r in lead] == [
        ("B1", "still in your cart"),
        ("B3", "you looked at this recently"),
        ("A1", "you looked at this recently"),
    ]
    assert [r.score for r in lead] == sorted((r.score for r in lead), reverse=True) and all(
        2 < r.score < 3 for r in lead
    )
    assert [r.item_id for r in recent.first(exclude={"B3"}, slots=RECENT_SLOTS)] == ["B1", "A1"]
    assert RecentActivity(now=None).empty and not recent.empty


def test_viewed_and_carted_items_and_their_neighbours_move_up() -> None:
    model = _fitted(_in_2011(two_clusters()))
    before = {r.item_id: r.score for r in model.recommend(Query(customer_key="fan_a"), 6)}
    assert max(before, key=before.__getitem__) in ("A3", "A4") and before["B4"] < 0.01  # a garden customer
    now = PAST.to_pydatetime() + timedelta(days=1, minutes=10)

    def folded(*events: Event) -> dict[str, float]:
        recent = RecentActivity.from_events("fan_a", list(events), now)
        return {r.item_id: r.score for r in with_activity(model, recent).recommend(Query("fan_a", now=now), 6)}

    carted = folded(_ev("add_to_cart", 1, "B1"), _ev("add_to_cart", 2, "B2"))
    # B4 was never looked at, but the kitchen customers bought it with B1 and B2
    assert carted["B4"] > before["B4"] + 0.5 and carted["B1"] > before["B1"] + 0.5
    three = folded(*(_ev("add_to_cart", n, item) for n, item in enumerate(("B1", "B2", "B3"))))
    assert three["B4"] > max(three["A3"], three["A4"])  # three kitchen items in the cart outweigh two garden orders
    assert {r.item_id: r.score for r in model.recommend(Query(customer_key="fan_a"), 6)} == before  # untouched


def test_a_blend_folds_its_factor_part_and_other_models_are_left_alone() -> None:
    frame = _in_2011(two_clusters())
    factors = _fitted(frame)
    blend = RepeatThenPersonal(personal=factors).fit(frame, ITEMS)
    recent = RecentActivity.from_events("fan_a", [_ev("view", 1, "B1")], None)
    view = with_activity(blend, recent)
    assert view is not blend and view.personal_ is not factors and blend.personal_ is factors
    assert view.personal_._recent.keys() == {"fan_a"}
    popular = Popular().fit(frame, ITEMS)
    assert with_activity(popular, recent) is popular
    assert with_activity(blend, RecentActivity(now=None)) is blend


def test_an_old_data_set_answers_at_its_own_clock_not_the_servers() -> None:
    """Data that ended in 2011: asked at the data's clock, the customer's garden history counts in full; asked at
    the server's clock (15 years later) every weight has decayed to nothing and the history's pull halves."""
    model = _fitted(_in_2011(two_clusters()))
    recent = RecentActivity.from_events("fan_a", [_ev("view", 1, "B1")], PAST.to_pydatetime() + timedelta(days=1))
    folded = with_activity(model, recent)
    at_data = {r.item_id: r.score for r in folded.recommend(Query(customer_key="fan_a", now=recent.now), 4)}
    at_server = {r.item_id: r.score for r in folded.recommend(Query(customer_key="fan_a", now=datetime.now(UTC)), 4)}
    assert sorted(at_data, key=at_data.__getitem__)[-2:] in (["A3", "A4"], ["A4", "A3"])  # one view undoes nothing
    assert at_data["A3"] > 0.8 and at_server["A3"] < at_data["A3"] / 2


def test_popular_this_month_is_the_data_end_month_whatever_the_clock() -> None:
    """Popularity on data that ended in 2011: last month's best seller leads (not last year's), and the trending
    window is the data's last week; asking with the server's clock changes nothing."""
    rows = []
    for day in range(400, 300, -1):  # 'old' sold every day a year before the end
        rows.append(("old", f"o{day}", PAST - pd.Timedelta(days=day)))
    for day in range(25):  # 'month' sold daily in the data's last month
        rows.append(("month", f"m{day}", PAST - pd.Timedelta(days=day)))
    for day in range(5):  # 'riser' only in the last week
        rows += [("riser", f"r{day}-{n}", PAST - pd.Timedelta(days=day)) for n in range(3)]
    frame = pd.DataFrame(rows, columns=[IX.ITEM, IX.BASKET, IX.TS]).assign(**{IX.EVENT: "purchase"})
    popular = Popular().fit(frame)
    asked = popular.recommend(Query(), 3)
    assert [r.item_id for r in asked][:2] == ["month", "riser"] and asked[0].reason == "popular this month"
    assert popular.recommend(Query(now=datetime.now(UTC)), 3) == asked
    assert popular.train_end_ == PAST.timestamp()
    trending = Popular(trending=True).fit(frame)
    top = trending.recommend(Query(now=datetime.now(UTC)), 3)
    assert next(r.item_id for r in top) == "riser" and "old" not in [r.item_id for r in top]
    assert np.isfinite([r.score for r in top]).all()
