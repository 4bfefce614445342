"""Consent history: an opt-out always takes effect; an opt-in counts only when later than every opt-out both by
event time and by receipt (``docs/consent.md``). Literal cases (each failed on the latest-event-wins rule) and
property tests over any interleaving of opt-ins and opt-outs with any clock skew, on both online backends.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.contract import Col
from features.online import InMemoryOnlineStore, RedisOnlineStore, SnapshotParts
from features.realtime import (
    ApplyResult,
    ConsentChange,
    CustomerState,
    Event,
    EventKind,
    apply,
    consent_in_force,
)
from tests.features.test_online_redis import redis_store_or_skip
from tests.figures import FIGURES

D = datetime(2025, 3, 1, tzinfo=UTC)  # the snapshot's as-of
H = timedelta(hours=1)
KEY = "ck_0001"
NAMES = ["consent_email", "consent_sms", "views_lifetime"]


def _memory(consent_email: float = 1.0) -> InMemoryOnlineStore:
    frame = pd.DataFrame([{Col.CUSTOMER_KEY: KEY, "consent_email": consent_email, "consent_sms": 0.0}])
    frame["views_lifetime"] = 0.0
    return InMemoryOnlineStore(frame, NAMES, {"R1": KEY}, D)


def _consent(
    store: InMemoryOnlineStore | RedisOnlineStore, key: str = KEY, channel: str = "email", at: datetime = D
) -> float:
    got = store.lookup([key], now=at)
    return float(got.values[0, NAMES.index(f"consent_{channel}")])


def _change(
    kind: str, at: datetime, received: datetime, key: str = KEY, source: str | None = None, eid: str | None = None
) -> Event:
    status = {"opt_in": "opt_in", "opt_out": "opt_out"}.get(kind)
    return Event(
        EventKind.UNSUBSCRIBE if kind == "unsubscribe" else EventKind.CONSENT,
        at,
        customer_key=key,
        channel="email",  # type: ignore[arg-type]
        status=status,  # type: ignore[arg-type]
        source=source,
        received_at=received,
        event_id=eid or uuid.uuid4().hex,
    )


# --- literal cases -------------------------------------------------------------------------------------


def test_a_future_dated_opt_in_does_not_outlast_a_later_unsubscribe() -> None:
    store = _memory(consent_email=0.0)
    now = D + H
    store.apply_event(_change("opt_in", datetime(2099, 1, 1, tzinfo=UTC), now, source="web_form:newsletter"))
    assert _consent(store, at=now) == 1.0
    assert store.apply_event(_change("unsubscribe", now, now + timedelta(seconds=1))) is ApplyResult.APPLIED
    assert _consent(store, at=now) == 0.0
    # Only an opt-in later than the unsubscribe both ways opens the channel again.
    store.apply_event(_change("opt_in", now - timedelta(minutes=1), now + timedelta(seconds=2), source="app"))
    assert _consent(store, at=now) == 0.0
    store.apply_event(_change("opt_in", now + timedelta(minutes=1), now + timedelta(seconds=3), source="app"))
    assert _consent(store, at=now) == 1.0


def test_an_unsubscribe_dated_before_the_snapshot_still_takes_effect() -> None:
    """The snapshot may not hold an unsubscribe posted late: it is applied (consent only), never dropped."""
    store = _memory(consent_email=1.0)
    late = _change("unsubscribe", D - H, D + H)
    assert store.apply_event(late) is ApplyResult.APPLIED
    assert _consent(store, at=D + H) == 0.0
    assert store.consent_history(KEY, "email") == [ConsentChange((D - H).timestamp(), (D + H).timestamp(), False)]
    # An opt-in dated before the snapshot is in it already: it changes nothing.
    early = _change("opt_in", D - 2 * H, D + 2 * H, source="web_form")
    assert store.apply_event(early) is ApplyResult.BEFORE_SNAPSHOT
    assert _consent(store, at=D + H) == 0.0 and len(store.consent_history(KEY, "email")) == 1


def test_a_newer_snapshot_keeps_the_receipt_order_of_carried_consents() -> None:
    """Carried over in time order, the future-dated opt-in would come last and win again."""
    old = _memory(consent_email=0.0)
    old.apply_event(_change("opt_in", D + 3 * H, D + H, source="web_form"))
    old.apply_event(_change("unsubscribe", D + 2 * H, D + H + timedelta(seconds=1)))
    assert _consent(old, at=D + 3 * H) == 0.0
    frame = pd.DataFrame([{Col.CUSTOMER_KEY: KEY, "consent_email": 0.0, "consent_sms": 0.0, "views_lifetime": 0.0}])
    new = InMemoryOnlineStore(frame, NAMES, {"R1": KEY}, D + 30 * timedelta(minutes=1))
    assert new.carry_over(old) == 2
    assert _consent(new, at=D + 3 * H) == 0.0


def _newer(as_of: datetime, consent_email: float) -> InMemoryOnlineStore:
    frame = pd.DataFrame([{Col.CUSTOMER_KEY: KEY, "consent_email": consent_email, "consent_sms": 0.0}])
    frame["views_lifetime"] = 0.0
    return InMemoryOnlineStore(frame, NAMES, {"R1": KEY}, as_of)


def _parts(as_of: datetime, consent_email: float, key: str = KEY) -> SnapshotParts:
    frame = pd.DataFrame([{Col.CUSTOMER_KEY: key, "consent_email": consent_email, "consent_sms": 0.0}])
    frame["views_lifetime"] = 0.0
    return SnapshotParts(frame, NAMES, [], [], {"R1": key}, as_of, {n: 0.0 for n in NAMES}, {})


def test_an_unsubscribe_the_export_lacks_survives_a_newer_snapshot() -> None:
    """Issue 17: an API unsubscribe dated before the next snapshot's as-of, missing from its export (consent 1),
    was dropped at the load: the customer became contactable again."""
    old = _memory(consent_email=1.0)
    unsubscribe = _change("unsubscribe", D + H, D + H, eid="u1")
    assert old.apply_event(unsubscribe) is ApplyResult.APPLIED
    assert _consent(old, at=D + H) == 0.0
    new = _newer(D + 24 * H, consent_email=1.0)  # the export does not hold the unsubscribe
    new.carry_over(old)
    assert _consent(new, at=D + 25 * H) == 0.0
    assert new.consent_history(KEY, "email") == old.consent_history(KEY, "email")
    assert new.apply_event(unsubscribe) is ApplyResult.DUPLICATE  # a retry is still recognised
    # and it survives the load after that as well
    newest = _newer(D + 48 * H, consent_email=1.0)
    newest.carry_over(new)
    assert _consent(newest, at=D + 49 * H) == 0.0
    # only an opt-in through the API, later than the unsubscribe both ways, opens the channel again
    newest.apply_event(_change("opt_in", D + 50 * H, D + 50 * H, source="app:settings"))
    assert _consent(newest, at=D + 50 * H) == 1.0


def test_a_snapshot_that_caught_up_with_an_opt_out_takes_over() -> None:
    """The export holds the opt-out (consent 0): the history is not carried, so a re-opt-in the retailer captured
    and exported later re-opens the channel."""
    old = _memory(consent_email=1.0)
    old.apply_event(_change("unsubscribe", D + H, D + H))
    caught_up = _newer(D + 24 * H, consent_email=0.0)
    caught_up.carry_over(old)
    assert _consent(caught_up, at=D + 24 * H) == 0.0 and caught_up.consent_history(KEY, "email") == []
    later = _newer(D + 48 * H, consent_email=1.0)  # the retailer's own re-opt-in, in its export
    later.carry_over(caught_up)
    assert _consent(later, at=D + 48 * H) == 1.0


def test_an_api_opt_in_the_export_lacks_survives_a_newer_snapshot() -> None:
    old = _memory(consent_email=0.0)
    old.apply_event(_change("opt_in", D + H, D + H, source="web_form:newsletter"))
    new = _newer(D + 24 * H, consent_email=0.0)
    new.carry_over(old)
    assert _consent(new, at=D + 24 * H) == 1.0
    assert [c.source for c in new.consent_history(KEY, "email")] == ["web_form:newsletter"]
    # an opt-in dated before the snapshot and posted after the load is still in the snapshot already
    assert new.apply_event(_change("opt_in", D + 2 * H, D + 25 * H, source="app")) is ApplyResult.BEFORE_SNAPSHOT


def test_the_history_keeps_when_received_and_the_source() -> None:
    store = _memory(consent_email=0.0)
    store.apply_event(_change("opt_in", D + H, D + 2 * H, source="web_form:newsletter"))
    store.apply_event(_change("opt_out", D + 3 * H, D + 4 * H))
    got = store.consent_history("R1", "email")  # by source id too
    assert got == [
        ConsentChange((D + H).timestamp(), (D + 2 * H).timestamp(), True, "web_form:newsletter"),
        ConsentChange((D + 3 * H).timestamp(), (D + 4 * H).timestamp(), False, None),
    ]
    assert store.consent_history(KEY, "sms") == [] and store.consent_history("nobody", "email") == []


def test_the_state_reads_the_format_before_histories() -> None:
    """Redis holds states written by the previous version: ``consents`` as one ``[time, 1.0 / 0.0]`` per channel."""
    state = CustomerState()
    apply(state, Event(EventKind.VIEW, D + H, customer_key=KEY), D.timestamp())
    data = json.loads(state.to_json())
    data["consents"] = {"email": [(D + 2 * H).timestamp(), 1.0], "sms": [(D + H).timestamp(), 0.0]}
    old = CustomerState.from_json(json.dumps(data))
    t2, t1 = (D + 2 * H).timestamp(), (D + H).timestamp()
    assert old.consents == {"email": [ConsentChange(t2, t2, True)], "sms": [ConsentChange(t1, t1, False)]}
    assert CustomerState.from_json(old.to_json()) == old
    # and the rule applies from there: a later-received opt-out wins over the old opt-in
    apply(old, _change("unsubscribe", D + H, D + 3 * H), D.timestamp())
    assert not consent_in_force(old.consents["email"])


def test_a_history_round_trips_through_json() -> None:
    state = CustomerState()
    apply(state, _change("opt_in", D + H, D + H, source="pos:till-3"), D.timestamp())
    apply(state, _change("unsubscribe", D + 2 * H, D + 2 * H), D.timestamp())
    assert CustomerState.from_json(state.to_json()) == state
    assert state.copy() == state and state.copy().consents["email"] is not state.consents["email"]


# --- properties ----------------------------------------------------------------------------------------

SKEW = 300  # seconds: the API's default bound; the properties go beyond it too


@dataclass(frozen=True)
class Step:
    kind: str  # opt_in, opt_out or unsubscribe
    at: int  # event time, seconds after the snapshot (negative: before it)
    clock: int  # the service clock when received, seconds after the snapshot (may step back)


steps = st.lists(
    st.builds(
        Step,
        st.sampled_from(["opt_in", "opt_out", "unsubscribe"]),
        st.one_of(st.integers(-2 * SKEW, 4 * SKEW), st.integers(-(10**7), 10**9)),  # within, and far beyond
        st.integers(0, 10 * SKEW),
    ),
    max_size=12,
)


def _reference(history: list[tuple[bool, float]], snapshot: float) -> float:
    """Brute force of the rule over the history (oldest received first): some opt-in later than every opt-out
    by event time and by receipt; an empty history keeps the snapshot's value."""
    if not history:
        return snapshot
    return float(
        any(
            granted and all(at > o_at and i > j for j, (o_granted, o_at) in enumerate(history) if not o_granted)
            for i, (granted, at) in enumerate(history)
        )
    )


def _run(store: InMemoryOnlineStore | RedisOnlineStore, key: str, snapshot: float, script: list[Step]) -> None:
    """Apply ``script``; after each step check the three properties against references kept here."""
    t0 = D.timestamp()
    expected: list[tuple[bool, float]] = []
    latest_out, open_ = -np.inf, snapshot  # the incremental reference
    for n, step in enumerate(script):
        at = D + timedelta(seconds=step.at)
        received = D + timedelta(seconds=step.clock)
        before = store.consent_history(key, "email")
        source = "web_form:test" if step.kind == "opt_in" else None
        result = store.apply_event(_change(step.kind, at, received, key=key, source=source, eid=f"{key}:{n}"))
        after = store.consent_history(key, "email")
        if step.kind == "opt_in" and step.at < 0:
            assert result is ApplyResult.BEFORE_SNAPSHOT and after == before  # in the snapshot already
            continue
        assert result in (ApplyResult.APPLIED, ApplyResult.CREATED)
        # (c) append-only: one more entry, the earlier ones unchanged
        assert after[:-1] == before and len(after) == len(before) + 1
        assert after[-1] == ConsentChange(t0 + step.at, t0 + step.clock, step.kind == "opt_in", source)
        expected.append((step.kind == "opt_in", t0 + step.at))
        got = _consent(store, key)
        # (a) an opt-out takes effect at once; only an opt-in later than every opt-out re-opens the channel
        if step.kind != "opt_in":
            latest_out, open_ = max(latest_out, t0 + step.at), 0.0
            assert got == 0.0
        elif t0 + step.at > latest_out:
            open_ = 1.0
        assert got == open_
        # (b) the decision is the brute-force rule over the history
        assert got == _reference(expected, snapshot)
        assert consent_in_force(after) == bool(_reference(expected, snapshot))


@pytest.mark.security
@settings(max_examples=300, deadline=None)
@given(script=steps, snapshot=st.sampled_from([0.0, 1.0]))
def test_any_interleaving_in_memory(script: list[Step], snapshot: float) -> None:
    _run(_memory(consent_email=snapshot), KEY, snapshot, script)
    FIGURES.record("consent interleavings, any clock skew (in memory)", cases=len(script))


@pytest.fixture(scope="module")
def redis_store() -> Iterator[RedisOnlineStore]:
    with redis_store_or_skip(pointer_ttl=0.0) as store:
        frame = pd.DataFrame([{Col.CUSTOMER_KEY: KEY, "consent_email": 1.0, "consent_sms": 0.0, "views_lifetime": 0}])
        store.publish(SnapshotParts(frame, NAMES, [], [], {"R1": KEY}, D, {n: 0.0 for n in NAMES}, {}))
        yield store


@pytest.mark.integration
@pytest.mark.security
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(script=steps)
def test_any_interleaving_in_redis(redis_store: RedisOnlineStore, script: list[Step]) -> None:
    """Each example is a customer first seen through its events (the fills: consent 0)."""
    _run(redis_store, f"ck_{uuid.uuid4().hex}", 0.0, script)
    FIGURES.record("consent interleavings, any clock skew (Redis)", cases=len(script))


@pytest.mark.integration
def test_redis_a_late_unsubscribe_and_a_future_opt_in(redis_store: RedisOnlineStore) -> None:
    key = KEY  # published with consent_email 1
    assert _consent(redis_store) == 1.0
    assert redis_store.apply_event(_change("unsubscribe", D - H, D + H)) is ApplyResult.APPLIED
    assert _consent(redis_store) == 0.0
    redis_store.apply_event(_change("opt_in", datetime(2099, 1, 1, tzinfo=UTC), D + 2 * H, source="web_form"))
    assert _consent(redis_store) == 1.0
    redis_store.apply_event(_change("unsubscribe", D + 3 * H, D + 3 * H))
    assert _consent(redis_store) == 0.0
    assert [c.granted for c in redis_store.consent_history(key, "email")] == [False, True, False]


@pytest.mark.integration
def test_redis_an_unsubscribe_the_export_lacks_survives_a_newer_snapshot() -> None:
    with redis_store_or_skip(pointer_ttl=0.0) as store:
        store.publish(_parts(D, consent_email=1.0))
        unsubscribe = _change("unsubscribe", D + H, D + H, eid="u1")
        assert store.apply_event(unsubscribe) is ApplyResult.APPLIED
        assert _consent(store, at=D + H) == 0.0
        history = store.consent_history(KEY, "email")
        store.publish(_parts(D + 24 * H, consent_email=1.0))  # the export does not hold the unsubscribe
        assert _consent(store, at=D + 25 * H) == 0.0
        assert store.consent_history(KEY, "email") == history
        assert store.apply_event(unsubscribe) is ApplyResult.DUPLICATE
        store.publish(_parts(D + 48 * H, consent_email=1.0))
        assert _consent(store, at=D + 49 * H) == 0.0
        store.publish(_parts(D + 72 * H, consent_email=0.0))  # the export caught up: it takes over
        assert store.consent_history(KEY, "email") == []
        store.publish(_parts(D + 96 * H, consent_email=1.0))  # the retailer's own re-opt-in
        assert _consent(store, at=D + 96 * H) == 1.0


# --- properties across snapshot loads -------------------------------------------------------------------


@dataclass(frozen=True)
class Load:
    consent: float  # the newer snapshot's consent_email (its export may lack what the API received)
    advance: int  # seconds from the previous as-of to the newer one


@dataclass(frozen=True)
class Change:
    kind: str  # opt_in, opt_out or unsubscribe
    at: int  # event time, seconds after the current snapshot's as-of (negative: before it)
    clock: int  # the service clock when received, seconds after the current as-of (may step back)


timelines = st.lists(
    st.one_of(
        st.builds(
            Change,
            st.sampled_from(["opt_in", "opt_out", "unsubscribe"]),
            st.one_of(st.integers(-2 * SKEW, 4 * SKEW), st.integers(-(10**7), 10**9)),
            st.integers(0, 10 * SKEW),
        ),
        st.builds(Load, st.sampled_from([0.0, 1.0]), st.one_of(st.integers(1, 3 * SKEW), st.integers(1, 10**7))),
    ),
    max_size=14,
)


class _Loads:
    """One customer in a store that newer snapshots replace: in memory (a new store, carried over) or Redis."""

    def __init__(self, redis_store: RedisOnlineStore | None, consent: float) -> None:
        self.redis, self.as_of = redis_store, D
        self.memory = None if redis_store is not None else _newer(D, consent)
        if redis_store is not None:
            redis_store.publish(_parts(D, consent))

    @property
    def store(self) -> InMemoryOnlineStore | RedisOnlineStore:
        return self.redis if self.redis is not None else self.memory  # type: ignore[return-value]

    def load(self, as_of: datetime, consent: float) -> None:
        self.as_of = as_of
        if self.redis is not None:
            self.redis.publish(_parts(as_of, consent))
            return
        newer = _newer(as_of, consent)
        assert self.memory is not None
        newer.carry_over(self.memory)
        self.memory = newer


def _run_loads(loads: _Loads, snapshot: float, timeline: list[Change | Load]) -> None:
    """After each step the decision is the rule over the carried history, the snapshot's value the baseline only
    when the history is empty or the snapshot caught up with it (an opt-out: consent 0, the history closed, every
    change dated before its as-of). An opt-out received through the API is never undone by a load saying 1."""
    history: list[ConsentChange] = []
    for n, step in enumerate(timeline):
        t0 = loads.as_of.timestamp()
        if isinstance(step, Load):
            closed = bool(history) and not consent_in_force(history)
            as_of = loads.as_of + timedelta(seconds=step.advance)
            caught_up = step.consent == 0.0 and closed and all(c.at < as_of.timestamp() for c in history)
            loads.load(as_of, step.consent)
            history, snapshot = ([] if caught_up else history), step.consent
            if closed:  # the export may say 1: the opt-out received through the API still holds
                assert _consent(loads.store, at=as_of) == 0.0
        else:
            source = "web_form:test" if step.kind == "opt_in" else None
            at, received = (datetime.fromtimestamp(t0 + s, UTC) for s in (step.at, step.clock))
            event = _change(step.kind, at, received, source=source, eid=f"{KEY}:{n}")
            result = loads.store.apply_event(event)
            if step.kind == "opt_in" and step.at < 0:
                assert result is ApplyResult.BEFORE_SNAPSHOT  # in the snapshot already, carried or not
            else:
                assert result is ApplyResult.APPLIED
                history.append(ConsentChange(t0 + step.at, t0 + step.clock, step.kind == "opt_in", source))
        assert loads.store.consent_history(KEY, "email") == history
        expected = _reference([(c.granted, c.at) for c in history], snapshot)
        assert _consent(loads.store, at=loads.as_of) == expected


@pytest.mark.security
@settings(max_examples=300, deadline=None)
@given(timeline=timelines, snapshot=st.sampled_from([0.0, 1.0]))
def test_any_interleaving_with_snapshot_loads_in_memory(timeline: list[Change | Load], snapshot: float) -> None:
    _run_loads(_Loads(None, snapshot), snapshot, timeline)
    FIGURES.record("consent interleavings across snapshot loads (in memory)", cases=len(timeline))


@pytest.mark.integration
@pytest.mark.security
@settings(max_examples=60, deadline=None)
@given(timeline=timelines, snapshot=st.sampled_from([0.0, 1.0]))
def test_any_interleaving_with_snapshot_loads_in_redis(timeline: list[Change | Load], snapshot: float) -> None:
    with redis_store_or_skip(pointer_ttl=0.0) as store:
        _run_loads(_Loads(store, snapshot), snapshot, timeline)
    FIGURES.record("consent interleavings across snapshot loads (Redis)", cases=len(timeline))


@pytest.mark.integration
def test_redis_consent_changes_posted_while_a_newer_snapshot_loads_are_kept_once() -> None:
    """An event posted during a load goes to both versions; the carried history holds it once, in receipt order."""
    with redis_store_or_skip(pointer_ttl=0.0) as store:
        store.publish(_parts(D, consent_email=1.0))
        store.apply_event(_change("unsubscribe", D + H, D + H, eid="u1"))
        replica = RedisOnlineStore(store.client, store.prefix, pointer_ttl=0.0)
        carry = store._carry_over

        def carry_while_a_replica_writes(previous: int, version: Any) -> int:
            replica.apply_event(_change("opt_in", D + 2 * H, D + 2 * H, source="app:settings", eid="i2"))
            carried = carry(previous, version)
            replica.apply_event(
                _change("opt_out", D + 3 * H, D + 3 * H, eid="o3")
            )  # after the carry, before the switch
            return carried

        store._carry_over = carry_while_a_replica_writes  # type: ignore[method-assign]
        store.publish(_parts(D + 24 * H, consent_email=1.0))
        got = store.consent_history(KEY, "email")
        assert [(c.granted, c.at - D.timestamp()) for c in got] == [(False, 3600.0), (True, 7200.0), (False, 10800.0)]
        assert _consent(store, at=D + 24 * H) == 0.0


@pytest.mark.integration
def test_redis_a_state_in_the_format_before_histories_is_carried() -> None:
    with redis_store_or_skip(pointer_ttl=0.0) as store:
        store.publish(_parts(D, consent_email=1.0))
        store.apply_event(_change("unsubscribe", D + H, D + H, eid="u1"))
        f_key = f"{store.prefix}:v1:f:{KEY}"
        blob = store.client.get(f_key)
        assert blob is not None
        width = 4 * len(NAMES)
        data = json.loads(blob[width:])
        data["consents"] = {"email": [(D + H).timestamp(), 0.0]}  # as the version before histories wrote it
        store.client.set(f_key, blob[:width] + json.dumps(data).encode())
        store.publish(_parts(D + 24 * H, consent_email=1.0))
        t = (D + H).timestamp()
        assert store.consent_history(KEY, "email") == [ConsentChange(t, t, False)]
        assert _consent(store, at=D + 24 * H) == 0.0
