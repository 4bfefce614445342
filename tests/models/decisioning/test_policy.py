"""Contact policy: consent as a hard filter, caps, quiet hours, offer cooldown, exact next-allowed time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from features.errors import InputDataError
from models.decisioning.policy import (
    Cap,
    ConsentEvent,
    ContactPolicy,
    ContactState,
    PolicyConfig,
    SendRecord,
    consented_channels,
    contact_states,
)

CHANNELS = ("email", "sms", "push")
NOW = datetime(2025, 3, 5, 12, 0, tzinfo=UTC)  # Wednesday noon in London (GMT)
LONG_AGO = datetime(2024, 1, 1, tzinfo=UTC)
POLICY = ContactPolicy()


def _opted_in(*channels: str, sends: tuple[SendRecord, ...] = (), tz: str | None = "Europe/London") -> ContactState:
    return ContactState("c1", tuple(ConsentEvent(c, "opt_in", LONG_AGO) for c in channels), sends, tz)


def test_defaults_are_the_documented_ones() -> None:
    cfg = PolicyConfig()
    assert cfg.channel_caps["email"] == [Cap(max_messages=1, per_hours=16)]
    assert cfg.channel_caps["sms"] == [Cap(max_messages=1, per_hours=72)]
    assert cfg.channel_caps["push"] == [Cap(max_messages=1, per_hours=24)]
    assert cfg.total_caps == [Cap(max_messages=4, per_hours=168)]
    assert cfg.quiet_hours == (22, 8) and cfg.offer_cooldown_hours == 72
    assert cfg.longest_window_hours() == 168


def test_allowed_now_when_every_rule_holds() -> None:
    p = POLICY.may_contact(_opted_in("email"), "email", NOW)
    assert p.allowed and p.reasons == [] and p.next_allowed_at == NOW


@pytest.mark.parametrize(
    ("consents", "why"),
    [
        ((), "no consent record"),
        (
            (ConsentEvent("email", "opt_in", LONG_AGO), ConsentEvent("email", "opt_out", NOW - timedelta(days=1))),
            "opted out",
        ),
        ((ConsentEvent("email", "opt_in", NOW), ConsentEvent("email", "opt_out", NOW)), "opted out"),  # tie: opt-out
        ((ConsentEvent("sms", "opt_in", LONG_AGO),), "no consent record"),  # another channel's consent
    ],
)
def test_consent_is_a_hard_filter(consents: tuple[ConsentEvent, ...], why: str) -> None:
    p = POLICY.may_contact(ContactState("c1", consents, (), "Europe/London"), "email", NOW)
    assert not p.allowed and p.next_allowed_at is None and why in p.reasons[0]


def test_opt_in_after_an_opt_out_restores_contact() -> None:
    events = (ConsentEvent("email", "opt_out", LONG_AGO), ConsentEvent("email", "opt_in", NOW - timedelta(hours=1)))
    assert POLICY.may_contact(ContactState("c1", events, (), "UTC"), "email", NOW).allowed


def test_channel_caps_give_the_exact_next_time() -> None:
    email = POLICY.may_contact(
        _opted_in("email", sends=(SendRecord("email", NOW - timedelta(hours=10)),)), "email", NOW
    )
    assert not email.allowed and "email 1 per 16 h" in email.reasons[0]
    assert email.next_allowed_at == NOW + timedelta(hours=6)
    sms_sent = NOW - timedelta(hours=40)
    sms = POLICY.may_contact(_opted_in("sms", sends=(SendRecord("sms", sms_sent),)), "sms", NOW)
    assert sms.next_allowed_at == sms_sent + timedelta(hours=72)  # 20:00, before quiet hours


def test_total_cap_across_channels() -> None:
    sends = tuple(
        SendRecord(c, NOW - timedelta(days=d)) for c, d in (("sms", 6), ("push", 5), ("email", 3), ("push", 2))
    )
    p = POLICY.may_contact(_opted_in("email", "sms", "push", sends=sends), "email", NOW)
    assert not p.allowed and any("all channels 4 per 168 h" in r for r in p.reasons)
    assert p.next_allowed_at == NOW - timedelta(days=6) + timedelta(hours=168)


def test_quiet_hours_in_local_time() -> None:
    late = datetime(2025, 3, 5, 23, 30, tzinfo=UTC)
    p = POLICY.may_contact(_opted_in("email"), "email", late)
    assert not p.allowed and "quiet hours" in p.reasons[0]
    assert p.next_allowed_at == datetime(2025, 3, 6, 8, 0, tzinfo=UTC)
    ny = POLICY.may_contact(_opted_in("email", tz="America/New_York"), "email", late)  # 18:30 in New York
    assert ny.allowed


def test_quiet_hours_across_a_dst_change() -> None:
    night = datetime(2025, 3, 29, 23, 0, tzinfo=UTC)  # London springs forward at 01:00 UTC on 30 March
    p = POLICY.may_contact(_opted_in("email"), "email", night)
    assert p.next_allowed_at == datetime(2025, 3, 30, 7, 0, tzinfo=UTC)  # 08:00 BST


def test_missing_timezone_uses_the_default_and_says_so() -> None:
    p = POLICY.may_contact(_opted_in("email", tz="Nowhere/Land"), "email", datetime(2025, 3, 5, 23, tzinfo=UTC))
    assert p.timezone == "UTC" and p.timezone_source == "default" and not p.allowed


def test_offer_cooldown_only_holds_back_offers() -> None:
    sends = (SendRecord("sms", NOW - timedelta(hours=80), with_offer=True),)
    assert POLICY.may_contact(_opted_in("email", sends=sends), "email", NOW, with_offer=True).allowed
    recent = (SendRecord("sms", NOW - timedelta(hours=30), with_offer=True),)
    plain = POLICY.may_contact(_opted_in("email", sends=recent), "email", NOW)
    offer = POLICY.may_contact(_opted_in("email", sends=recent), "email", NOW, with_offer=True)
    assert plain.allowed and not offer.allowed and "offer cooldown" in offer.reasons[0]
    assert offer.next_allowed_at == datetime(2025, 3, 7, 8, 0, tzinfo=UTC)  # cooldown ends 06:00: quiet until 08:00


def test_config_is_strict() -> None:
    with pytest.raises(ValidationError, match="fax"):
        PolicyConfig(channel_caps={"fax": [Cap(max_messages=1, per_hours=1)]})
    with pytest.raises(ValidationError, match="quiet"):
        PolicyConfig(quiet_hours=(22, 24))
    with pytest.raises(ValidationError, match="IANA"):
        PolicyConfig(default_timezone="Mars/Base")
    with pytest.raises(ValidationError):
        PolicyConfig(unknown_setting=1)  # type: ignore[call-arg]


def _scan_is_minimal(policy: ContactPolicy, state: ContactState, channel: str, now: datetime, offer: bool) -> None:
    """Minute by minute from ``now``: nothing allowed before ``next_allowed_at``, allowed at it."""
    p = policy.may_contact(state, channel, now, offer)
    if p.next_allowed_at is None:
        assert not any(
            policy.allowed_at(state, channel, now + timedelta(minutes=m), offer) for m in range(0, 20_000, 7)
        )
        return
    assert policy.allowed_at(state, channel, p.next_allowed_at, offer)
    t = now
    while t < p.next_allowed_at - timedelta(seconds=1):
        assert not policy.allowed_at(state, channel, t, offer), f"allowed at {t}, before {p.next_allowed_at}"
        t += timedelta(minutes=1)
    assert not policy.allowed_at(state, channel, p.next_allowed_at - timedelta(seconds=1), offer) or p.allowed


def _random_state(rng: np.random.Generator, key: str, now: datetime) -> ContactState:
    consents = []
    for channel in CHANNELS:
        for _ in range(rng.integers(0, 3)):
            at = now - timedelta(hours=float(rng.uniform(-24, 2000)))
            consents.append(ConsentEvent(channel, str(rng.choice(["opt_in", "opt_out"])), at))
    sends = tuple(
        SendRecord(
            str(rng.choice(CHANNELS)),
            now - timedelta(minutes=float(rng.uniform(0, 200 * 60))),
            bool(rng.random() < 0.4),
        )
        for _ in range(rng.integers(0, 6))
    )
    tz = str(rng.choice(["Europe/London", "America/New_York", "Asia/Kolkata", "Australia/Sydney", "bad/zone"]))
    return ContactState(key, tuple(consents), sends, tz)


def test_next_allowed_is_exact_by_minute_scan() -> None:
    rng = np.random.default_rng(11)
    strict = ContactPolicy(PolicyConfig(total_caps=[Cap(max_messages=2, per_hours=48)]))
    for k in range(25):
        now = datetime(2025, 3, 28, tzinfo=UTC) + timedelta(minutes=float(rng.uniform(0, 5 * 1440)))  # spans DST
        state = _random_state(rng, f"c{k}", now)
        _scan_is_minimal(strict if k % 2 else POLICY, state, str(rng.choice(CHANNELS)), now, bool(k % 3 == 0))


def _latest_status(state: ContactState, channel: str, now: datetime) -> str | None:
    known = [e for e in state.consents if e.channel == channel and e.at <= now]
    if not known:
        return None
    last = max(e.at for e in known)
    statuses = {e.status for e in known if e.at == last}
    return "opt_out" if "opt_out" in statuses else "opt_in"


def test_no_permission_ever_for_opted_out_customers_10000() -> None:
    """10,000 generated customers and requests: not one permission without an opt-in in force."""
    rng = np.random.default_rng(2025)
    states = [_random_state(rng, f"c{k}", NOW) for k in range(10_000)]
    channels = [str(c) for c in rng.choice(CHANNELS, len(states))]
    offers = [bool(x) for x in rng.random(len(states)) < 0.5]
    frame = POLICY.may_contact_batch(states, channels, NOW, offers)
    assert len(frame) == 10_000 and frame["customer_key"].tolist() == [s.customer_key for s in states]
    latest = [_latest_status(s, c, NOW) for s, c in zip(states, channels, strict=True)]
    not_in = np.array([s != "opt_in" for s in latest])
    assert not_in.sum() > 3000 and frame["allowed"].sum() > 500  # both kinds really occur
    assert not frame["allowed"].to_numpy()[not_in].any()
    future_opt_in = [
        any(e.channel == c and e.at > NOW and e.status == "opt_in" for e in s.consents)
        for s, c in zip(states, channels, strict=True)
    ]
    never = not_in & ~np.array(future_opt_in)
    assert frame["next_allowed_at"][never].isna().all()
    allowed_later = frame["next_allowed_at"].notna().to_numpy()
    assert (frame["next_allowed_at"][allowed_later] >= pd.Timestamp(NOW)).all()


@st.composite
def _states(draw: st.DrawFn) -> tuple[ContactState, str, datetime, bool]:
    now = draw(st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2026, 12, 31), timezones=st.just(UTC)))
    hours = st.floats(min_value=-48, max_value=400, allow_nan=False)
    consents = draw(
        st.lists(
            st.builds(
                lambda c, s, h: ConsentEvent(c, s, now - timedelta(hours=h)),
                st.sampled_from(CHANNELS),
                st.sampled_from(["opt_in", "opt_out"]),
                hours,
            ),
            max_size=5,
        )
    )
    sends = draw(
        st.lists(
            st.builds(
                lambda c, h, o: SendRecord(c, now - timedelta(hours=h), o),
                st.sampled_from(CHANNELS),
                st.floats(min_value=0, max_value=200, allow_nan=False),
                st.booleans(),
            ),
            max_size=6,
        )
    )
    zone = draw(st.sampled_from(["Europe/London", "America/Los_Angeles", "Asia/Kathmandu", "Europe/Berlin", None]))
    return (
        ContactState("h", tuple(consents), tuple(sends), zone),
        draw(st.sampled_from(CHANNELS)),
        now,
        draw(st.booleans()),
    )


@settings(max_examples=200, deadline=None)
@given(_states())
def test_property_consent_and_next_allowed(case: tuple[ContactState, str, datetime, bool]) -> None:
    state, channel, now, offer = case
    p = POLICY.may_contact(state, channel, now, offer)
    if _latest_status(state, channel, now) != "opt_in":
        assert not p.allowed
    if p.allowed:
        assert POLICY.allowed_at(state, channel, now, offer)
    if p.next_allowed_at is not None:
        assert p.next_allowed_at >= now
        assert POLICY.allowed_at(state, channel, p.next_allowed_at, offer)
        assert p.allowed or not POLICY.allowed_at(state, channel, p.next_allowed_at - timedelta(seconds=1), offer)
    else:
        assert not p.allowed


def test_states_from_the_ingested_tables() -> None:
    consents = pd.DataFrame(
        {
            "customer_key": ["a", "a", "b"],
            "channel": ["email", "email", "sms"],
            "status": ["opt_in", "opt_out", "opt_in"],
            "consented_at": pd.to_datetime(["2024-01-01", "2025-03-01", "2024-06-01"], utc=True),
        }
    )
    messages = pd.DataFrame(
        {
            "customer_key": ["b", "b", "c"],
            "channel": ["sms", "sms", "push"],
            "sent_at": pd.to_datetime(["2025-03-04 12:00", "2024-01-01 00:00", "2025-03-05 09:00"], utc=True),
            "offer_id": ["OF1", None, None],
        }
    )
    states = contact_states(consents, messages, {"a": "Europe/London", "b": None}, NOW, 168)
    assert sorted(states) == ["a", "b", "c"]
    assert states["a"].consented(NOW) == frozenset()
    assert states["b"].consented(NOW) == frozenset({"sms"}) and len(states["b"].sends) == 1
    assert states["b"].sends[0].with_offer and states["b"].timezone is None
    assert consented_channels(states.values(), NOW)["c"] == frozenset()
    assert POLICY.may_contact(states["b"], "sms", NOW).next_allowed_at == datetime(2025, 3, 7, 12, tzinfo=UTC)
    with pytest.raises(InputDataError, match="consented_at"):
        contact_states(consents.drop(columns=["consented_at"]), messages, None, NOW, 168)
    with pytest.raises(InputDataError, match="status"):
        contact_states(consents.assign(status="maybe"), messages, None, NOW, 168)
