"""Orders, order lines, cancellations and web sessions of the synthetic world (all vectorised)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.contract import EventType, OfferType
from synth.behaviour import DIURNAL, Behaviour, local_hours
from synth.catalog import CATEGORIES, OFFERS, Catalogue
from synth.common import COUNTRIES, EUR_PER_GBP, Clock, ZoneTable, season
from synth.messages import Purchases
from synth.people import People

GUEST_SHARE = 0.04  # online orders checked out as a guest
CANCEL_SHARE = 0.03  # orders later cancelled (in part or in full) by a "C" document
SESSION_BEFORE_ORDER = 0.88  # online orders preceded by a tracked session
BASKET_SIZES = np.array([0.35, 0.25, 0.17, 0.12, 0.07, 0.04])  # 1..6 lines before complements
BULK_CATEGORIES = ("Party", "Stationery", "Christmas")
# the contract's web event types, in in-session order (the generator draws them by index)
EVENT_TYPES: tuple[str, ...] = tuple(
    str(e)
    for e in (EventType.SEARCH, EventType.VIEW, EventType.ADD_TO_CART, EventType.REMOVE_FROM_CART, EventType.CHECKOUT)
)
_GB_CITIES = [c for c, _ in COUNTRIES["GB"][3]]


def build_orders(
    rng: np.random.Generator, people: People, purchases: Purchases, record_of_message: np.ndarray
) -> pd.DataFrame:
    """Turn person-level purchases into order headers on customer records (or guest checkouts).

    Args:
        rng: Random stream of commerce.
        people: Persons and records.
        purchases: Final purchases.
        record_of_message: Recipient record of each message (an induced order goes to that record).

    Returns:
        One row per order: ``person, record`` (-1 = guest), ``t, online, store_id, currency, country``.
    """
    n = len(purchases.t)
    person, t = purchases.person, purchases.t
    slots = people.person_records[person]
    created = people.records["created"].to_numpy()
    slot_created = np.where(slots >= 0, created[np.maximum(slots, 0)], np.inf)
    u = rng.random(n)
    slot = np.where(
        (u < 0.35) & (slot_created[:, 1] <= t), 1, np.where((u >= 0.35) & (u < 0.5) & (slot_created[:, 2] <= t), 2, 0)
    )
    record = slots[np.arange(n), slot]
    induced = purchases.induced_by >= 0
    record[induced] = record_of_message[purchases.induced_by[induced]]
    guest = purchases.online & ~induced & (rng.random(n) < GUEST_SHARE)
    record[guest] = -1
    persons = people.persons
    country = persons["country"].to_numpy()[person]
    currency = np.array([COUNTRIES[c][1] for c in COUNTRIES], dtype=object)[
        pd.Categorical(country, categories=list(COUNTRIES)).codes
    ]
    # one store per GB city (stores are in GB only: shoppers abroad buy online)
    stores = np.array([f"ST{k + 1:02d}" for k in range(len(_GB_CITIES))] + ["ST01"], dtype=object)
    store = stores[pd.Categorical(persons["city"].to_numpy()[person], categories=_GB_CITIES).codes]
    web = np.where(currency == "EUR", "WEB-EU", "WEB-UK")
    return pd.DataFrame(
        {
            "person": person,
            "record": record,
            "t": t,
            "online": purchases.online,
            "store_id": np.where(purchases.online, web, store),
            "currency": currency,
            "country": country,
            "induced_by": purchases.induced_by,
        }
    )


def build_lines(
    rng: np.random.Generator, orders: pd.DataFrame, redeemed_offer: np.ndarray, people: People, catalogue: Catalogue
) -> pd.DataFrame:
    """Baskets: items by each person's category (or brand) affinity, planted complements, prices, discounts.

    Args:
        rng: Random stream of baskets.
        orders: Order headers from :func:`build_orders`.
        redeemed_offer: Offer index redeemed by each order, -1 if none.
        people: Persons (affinities, brand loyalty).
        catalogue: Items and complementary pairs.

    Returns:
        One row per line: ``order, line_no, item, quantity, unit_price, discount``, sorted by order.
    """
    persons = people.persons
    n_lines = rng.choice(len(BASKET_SIZES), len(orders), p=BASKET_SIZES) + 1
    order = np.repeat(np.arange(len(orders)), n_lines)
    owner = orders["person"].to_numpy()[order]
    item = _pick_items(rng, persons, owner, catalogue)
    key = order * len(catalogue.items) + item
    _, first = np.unique(key, return_index=True)
    keep = np.sort(first)  # one line per item and order
    order, item = order[keep], item[keep]
    position = np.arange(len(order), dtype=np.float64)

    pair_of = np.full(len(catalogue.items), -1)
    pair_of[catalogue.pairs["item_a"].to_numpy()] = np.arange(len(catalogue.pairs))
    pair = pair_of[item]
    has = np.flatnonzero(pair >= 0)
    add = has[rng.random(len(has)) < catalogue.pairs["strength"].to_numpy()[pair[has]]]
    b_item = catalogue.pairs["item_b"].to_numpy()[pair[add]]
    fresh = ~np.isin(order[add] * len(catalogue.items) + b_item, order * len(catalogue.items) + item)
    order = np.concatenate([order, order[add][fresh]])
    item = np.concatenate([item, b_item[fresh]])
    position = np.concatenate([position, position[add][fresh] + 0.5])
    sort = np.lexsort((position, order))
    order, item = order[sort], item[sort]
    line_no = np.arange(len(order)) - np.searchsorted(order, order, side="left") + 1

    items = catalogue.items
    names = list(CATEGORIES)
    bulk = np.isin(items["category_idx"].to_numpy()[item], [names.index(c) for c in BULK_CATEGORIES])
    quantity = rng.geometric(0.65, len(order))
    quantity = np.where(bulk & (rng.random(len(order)) < 0.3), rng.choice([6, 12, 24], len(order)), quantity)
    fx = np.where(orders["currency"].to_numpy()[order] == "EUR", EUR_PER_GBP, 1.0)
    unit_price = np.round(items["price"].to_numpy()[item] * fx, 2)
    gross = quantity * unit_price
    offer = redeemed_offer[order]
    kind = np.array([str(o[2]) for o in OFFERS] + [""], dtype=object)[offer]
    value = np.array([o[3] for o in OFFERS] + [0.0])[offer]
    promo = (offer < 0) & (rng.random(len(order)) < 0.04)
    discount = np.where(kind == OfferType.PERCENT_DISCOUNT, gross * value / 100.0, 0.0)
    discount = np.where((kind == OfferType.FIXED_AMOUNT) & (line_no == 1), np.minimum(value * fx, gross), discount)
    discount = np.where(promo, gross * rng.choice([0.1, 0.2, 0.3], len(order)), discount)
    return pd.DataFrame(
        {
            "order": order,
            "line_no": line_no,
            "item": item,
            "quantity": quantity,
            "unit_price": unit_price,
            "discount": np.round(discount, 2),
        }
    )


def _pick_items(rng: np.random.Generator, persons: pd.DataFrame, owner: np.ndarray, catalogue: Catalogue) -> np.ndarray:
    """One item per row, by the owner's three favourite categories (or any category) and brand loyalty."""
    cats = persons[["category_1", "category_2", "category_3"]].to_numpy()[owner]
    cum = np.cumsum(persons[["category_weight_1", "category_weight_2", "category_weight_3"]].to_numpy(), axis=1)[owner]
    u = rng.random(len(owner))
    k = (u >= cum[:, 0]).astype(np.int64) + (u >= cum[:, 1]) + (u >= cum[:, 2])
    anywhere = rng.choice(catalogue.n_categories, len(owner), p=catalogue.category_weight)
    category = np.where(k < 3, cats[np.arange(len(owner)), np.minimum(k, 2)], anywhere)
    item = catalogue.sample_in_category(rng, category)
    brand = persons["brand"].to_numpy()[owner]
    loyal = (brand >= 0) & (rng.random(len(owner)) < 0.7)
    item[loyal] = catalogue.sample_in_brand(rng, brand[loyal])
    return item


def cancel(
    rng: np.random.Generator, orders: pd.DataFrame, lines: pd.DataFrame, clock: Clock
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Add "C" documents that cancel some lines of ~3 % of orders, with negative quantities.

    Args:
        rng: Random stream of commerce.
        orders: Order headers.
        lines: Order lines.
        clock: The world's clock.

    Returns:
        Orders and lines with the cancellation documents appended (``cancels`` = cancelled order, -1).
    """
    n = len(orders)
    when = orders["t"].to_numpy() + rng.uniform(0.02, 10.0, n)
    chosen = np.flatnonzero((rng.random(n) < CANCEL_SHARE) & (when < clock.days))
    docs = orders.iloc[chosen].copy()
    docs["t"] = when[chosen]
    docs["induced_by"] = -1
    docs["cancels"] = chosen
    doc_of = np.full(n, -1)
    doc_of[chosen] = n + np.arange(len(chosen))
    orig = lines[np.isin(lines["order"].to_numpy(), chosen)]
    keep = (rng.random(len(orig)) < 0.7) | (orig["line_no"].to_numpy() == 1)
    back = orig[keep].copy()
    q = back["quantity"].to_numpy()
    partial = (q > 1) & (rng.random(len(back)) < 0.3)
    back["quantity"] = -np.where(partial, rng.integers(1, np.maximum(q, 2)), q)
    back["discount"] = 0.0
    back["order"] = doc_of[back["order"].to_numpy()]
    back["line_no"] = back.groupby("order").cumcount().to_numpy() + 1
    out = pd.concat([orders.assign(cancels=-1), docs], ignore_index=True)
    return out, pd.concat([lines, back], ignore_index=True)


@dataclass(frozen=True)
class Sessions:
    """Web sessions, one row each, in start-time order.

    Attributes:
        person: Person (-1 for a visitor who never became a customer).
        record: Logged-in customer record, -1 when anonymous.
        cookie: Index into the cookie table (the anonymous id).
        start: Session start (UTC float day).
        counts: ``(n, 5)`` events per type in :data:`EVENT_TYPES` order.
        lines: ``(n,)`` first order-line row of the order the session ends in, -1 if none.
        category: Category the visitor browses.
        end: For order sessions, the order time the checkout precedes; NaN otherwise.
    """

    person: np.ndarray
    record: np.ndarray
    cookie: np.ndarray
    start: np.ndarray
    counts: np.ndarray
    lines: np.ndarray
    category: np.ndarray
    end: np.ndarray


def build_sessions(
    rng: np.random.Generator,
    people: People,
    behaviour: Behaviour,
    orders: pd.DataFrame,
    lines: pd.DataFrame,
    catalogue: Catalogue,
    clock: Clock,
    zones: ZoneTable,
) -> tuple[Sessions, np.ndarray]:
    """Order sessions (view -> cart -> checkout -> order), browsing (with abandoned carts) and visitors.

    Args:
        rng: Random stream of the web.
        people: Persons and records.
        behaviour: Engagement and churn (engaged persons browse more).
        orders: Order headers (``cancels`` = -1 for sales).
        lines: Order lines sorted by order.
        catalogue: Items.
        clock: The world's clock.
        zones: UTC offsets.

    Returns:
        The sessions and the cookie table (anonymous ids).
    """
    persons = people.persons
    n, T = len(persons), clock.days
    # cookies: each web user's main browser, a second device, then never-identified visitors
    n_visitors = n // 2
    stamps = 1_600_000_000 + rng.integers(0, 10**8, n + n_visitors)
    numbers = rng.choice(9 * 10**8, 2 * n + n_visitors, replace=False) + 10**8
    main = persons["web_client_id"].to_numpy()
    cookies = np.concatenate(
        [
            np.where(pd.isna(main), "", main).astype(object),
            np.array([f"GA1.2.{a}.{s}" for a, s in zip(numbers[:n], stamps[:n], strict=True)], dtype=object),
            np.array(
                [f"GA1.2.{a}.{s}" for a, s in zip(numbers[n : n + n_visitors], stamps[n:], strict=True)], dtype=object
            ),
        ]
    )

    # sessions that end in an online order
    sale = (orders["cancels"].to_numpy() < 0) & orders["online"].to_numpy()
    o = np.flatnonzero(sale & (rng.random(len(orders)) < SESSION_BEFORE_ORDER))
    line_start = np.searchsorted(lines["order"].to_numpy(), np.arange(len(orders)))
    n_items = np.diff(np.append(line_start, len(lines)))[o]
    o_person = orders["person"].to_numpy()[o]
    extra_views = rng.poisson(1.5, len(o))
    removes = ((rng.random(len(o)) < 0.1) & (extra_views > 0)).astype(np.int64)
    o_counts = np.column_stack(
        [
            (rng.random(len(o)) < 0.3).astype(np.int64),
            n_items + extra_views,
            n_items + removes,
            removes,
            np.ones(len(o), dtype=np.int64),
        ]
    )
    o_cookie = np.where(rng.random(len(o)) < 0.85, o_person, n + o_person)
    o_category = catalogue.items["category_idx"].to_numpy()[lines["item"].to_numpy()[line_start[o]]]

    # browsing, week by week, more when engaged, little after churn
    weeks = behaviour.engagement.shape[1]
    week_start = np.arange(weeks) * 7.0
    churned = week_start[None, :] > np.nan_to_num(behaviour.churn_t, nan=np.inf)[:, None]
    created = persons["created"].to_numpy()
    open_weeks = week_start[None, :] >= (created - 30.0)[:, None]
    lam = (
        persons["web_rate"].to_numpy()[:, None]
        * (0.4 + behaviour.engagement)
        * season(clock, week_start + 3.5)[None, :]
        * np.where(churned, 0.3, 1.0)
        * open_weeks
    )
    count = rng.poisson(lam)
    b_person, b_week = np.nonzero(count)
    reps = count[b_person, b_week]
    b_person, b_week = np.repeat(b_person, reps), np.repeat(b_week, reps)
    zone = persons["zone"].to_numpy()[b_person]
    day = np.floor(zones.to_local(zone, b_week * 7.0 + rng.random(len(b_person)) * 7.0))
    hour = local_hours(rng, persons["pref_hour_web"].to_numpy()[b_person], focus=0.55)
    b_start = zones.to_utc(zone, day + hour / 24.0)
    b_cookie = np.where(rng.random(len(b_person)) < 0.85, b_person, n + b_person)
    b_category = _pick_categories(rng, persons, b_person, catalogue)

    # visitors who never sign up
    v_count = rng.poisson(2.0, n_visitors)
    v_cookie = 2 * n + np.repeat(np.arange(n_visitors), v_count)
    v_day = np.floor(rng.random(len(v_cookie)) * T)
    v_zone = np.zeros(len(v_cookie), dtype=np.int64)
    v_hour = rng.choice(24, len(v_cookie), p=DIURNAL / DIURNAL.sum()) + rng.random(len(v_cookie))
    v_start = zones.to_utc(v_zone, v_day + v_hour / 24.0)
    v_category = rng.choice(catalogue.n_categories, len(v_cookie), p=catalogue.category_weight)

    m = len(b_person) + len(v_cookie)
    views = 1 + rng.poisson(2.5, m)
    carted = rng.random(m) < 0.25
    n_cart = np.where(carted, np.minimum(1 + rng.poisson(0.3, m), views), 0)
    b_counts = np.column_stack(
        [
            (rng.random(m) < 0.35).astype(np.int64),
            views,
            n_cart,
            (carted & (rng.random(m) < 0.3)).astype(np.int64),
            (carted & (rng.random(m) < 0.15)).astype(np.int64),
        ]
    )

    person = np.concatenate([o_person, b_person, np.full(len(v_cookie), -1)])
    o_record = orders["record"].to_numpy()[o]
    rec_created = people.records["created"].to_numpy()[np.maximum(o_record, 0)]
    o_record = np.where(rec_created < orders["t"].to_numpy()[o] - 1.0 / 24.0, o_record, -1)  # signed up at checkout
    record = np.concatenate([o_record, _logged_in(rng, people, b_person, b_start), np.full(len(v_cookie), -1)])
    end = np.concatenate([orders["t"].to_numpy()[o], np.full(m, np.nan)])
    duration = np.sum(np.vstack([o_counts, b_counts]), axis=1) * 50.0 / 86_400.0
    start = np.concatenate([orders["t"].to_numpy()[o] - duration[: len(o)], b_start, v_start])
    sessions = Sessions(
        person,
        record,
        np.concatenate([o_cookie, b_cookie, v_cookie]),
        start,
        np.vstack([o_counts, b_counts]),
        np.concatenate([line_start[o], np.full(m, -1)]),
        np.concatenate([o_category, b_category, v_category]),
        end,
    )
    keep = (start >= 0) & (start < T - 1.0 / 24.0)
    order = np.argsort(start[keep], kind="stable")
    picked = np.flatnonzero(keep)[order]
    return Sessions(*(getattr(sessions, f)[picked] for f in Sessions.__dataclass_fields__)), cookies


def _pick_categories(
    rng: np.random.Generator, persons: pd.DataFrame, person: np.ndarray, catalogue: Catalogue
) -> np.ndarray:
    cats = persons[["category_1", "category_2", "category_3"]].to_numpy()[person]
    k = rng.choice(4, len(person), p=[0.5, 0.2, 0.1, 0.2])
    anywhere = rng.choice(catalogue.n_categories, len(person), p=catalogue.category_weight)
    return np.where(k < 3, cats[np.arange(len(person)), np.minimum(k, 2)], anywhere)


def _logged_in(rng: np.random.Generator, people: People, person: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Record a browsing session is logged in as (half of them, once a record exists), else -1."""
    slots = people.person_records[person]
    created = people.records["created"].to_numpy()
    slot_created = np.where(slots >= 0, created[np.maximum(slots, 0)], np.inf)
    use_dup = (rng.random(len(person)) < 0.3) & (slot_created[:, 1] <= t)
    record = np.where(use_dup, slots[:, 1], slots[:, 0])
    logged = (rng.random(len(person)) < 0.5) & (slot_created[:, 0] <= t)
    return np.where(logged, record, -1)


@dataclass(frozen=True)
class Events:
    """Web events in session order: session row, type index, item (-1), time."""

    session: np.ndarray
    kind: np.ndarray
    item: np.ndarray
    t: np.ndarray


def build_events(rng: np.random.Generator, sessions: Sessions, lines: pd.DataFrame, catalogue: Catalogue) -> Events:
    """Lay out each session's events: searches, views, carts, removals, checkout, ~50 s apart.

    Events are placed by arithmetic on per-session counts (no sort over millions of rows). An order
    session views and carts the ordered items first; a cart holds the first viewed items; a removal
    takes back the extra carted item (order sessions) or the first one (browsing).

    Args:
        rng: Random stream of the web.
        sessions: Sessions in start order.
        lines: Order lines (items of order sessions).
        catalogue: Items (views sample by category popularity).

    Returns:
        The events, grouped by session in session order.
    """
    counts = sessions.counts
    s = len(sessions.start)
    total = counts.sum(axis=1)
    offset = np.cumsum(total) - total
    type_offset = offset[:, None] + np.cumsum(counts, axis=1) - counts
    n_events = int(total.sum())
    kind = np.empty(n_events, dtype=np.int64)
    item = np.full(n_events, -1, dtype=np.int64)
    session = np.repeat(np.arange(s), total)
    view_at = np.empty(0, dtype=np.int64)
    for k in range(len(EVENT_TYPES)):
        owner = np.repeat(np.arange(s), counts[:, k])
        within = np.arange(len(owner)) - np.repeat(np.cumsum(counts[:, k]) - counts[:, k], counts[:, k])
        pos = type_offset[owner, k] + within
        kind[pos] = k
        if k == 1:  # views: ordered items first, then items of the session's category
            n_ordered = np.where(sessions.lines >= 0, counts[:, 2] - counts[:, 3], 0)[owner]
            from_order = within < n_ordered
            sampled = catalogue.sample_in_category(rng, sessions.category[owner])
            line_row = np.where(from_order, sessions.lines[owner] + within, 0)
            item[pos] = np.where(from_order, lines["item"].to_numpy()[line_row], sampled)
            view_at = type_offset[:, 1]
        elif k == 2:  # carts hold the first viewed items
            item[pos] = item[view_at[owner] + within]
        elif k == 3:  # removal: the extra carted item of an order session, or the first carted item
            ordered = sessions.lines[owner] >= 0
            which = np.where(ordered, counts[owner, 2] - 1, 0)
            item[pos] = item[view_at[owner] + which]
    gaps = 3.0 + rng.exponential(45.0, n_events)
    gaps[offset[total > 0]] = 0.0
    elapsed = np.cumsum(gaps) / 86_400.0
    elapsed -= np.repeat(elapsed[offset], total)
    last = np.repeat(elapsed[offset + total - 1] if n_events else np.empty(0), total)
    ends_in_order = ~np.isnan(sessions.end)
    anchor = np.where(ends_in_order, sessions.end - rng.uniform(30.0, 240.0, s) / 86_400.0, sessions.start)
    t = np.where(
        np.repeat(ends_in_order, total), np.repeat(anchor, total) - (last - elapsed), np.repeat(anchor, total) + elapsed
    )
    return Events(session, kind, item, t)
