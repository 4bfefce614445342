"""Send-time curves: tiny literal worlds with a known right answer, DST, quiet hours, fallbacks, artifacts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

from features.errors import InputDataError, KairosError
from models.decisioning.sendtime import SLOTS, SendTimeModel, hour_starts, in_quiet, local_slots, smooth

LONDON = ZoneInfo("Europe/London")
NEW_YORK = ZoneInfo("America/New_York")


def _messages(rows: list[tuple[str, str, datetime, datetime | None]]) -> pd.DataFrame:
    """(customer_key, channel, sent_at, opened_at) -> a messages frame in UTC."""
    frame = pd.DataFrame(rows, columns=["customer_key", "channel", "sent_at", "opened_at"])
    frame["sent_at"] = pd.to_datetime(frame["sent_at"], utc=True)
    frame["opened_at"] = pd.to_datetime(frame["opened_at"], utc=True)
    frame["clicked_at"] = pd.Series(pd.NaT, index=frame.index, dtype="datetime64[ns, UTC]")
    return frame


def _daily_reader(key: str, zone: ZoneInfo, send_hour: int, open_hour: int, days: int, start: datetime) -> list:
    """A customer sent one e-mail a day at ``send_hour`` local who opens every other one at ``open_hour`` local."""
    rows = []
    for d in range(days):
        day = start + timedelta(days=d)
        sent = datetime(day.year, day.month, day.day, send_hour, 0, tzinfo=zone)
        opened = datetime(day.year, day.month, day.day, open_hour, 10, tzinfo=zone)
        opened = opened if opened > sent else opened + timedelta(days=1)
        rows.append((key, "email", sent, opened if d % 2 == 0 else None))
    return rows


@pytest.fixture(scope="module")
def fitted() -> SendTimeModel:
    start = datetime(2025, 1, 6)
    rows = _daily_reader("evening", LONDON, 9, 20, 40, start)
    rows += _daily_reader("morning", LONDON, 15, 9, 40, start)
    rows += [("thin", "email", datetime(2025, 1, 7, 9, tzinfo=UTC), None)]
    rows += [(f"pop{k}", "email", datetime(2025, 1, 8 + k % 20, 10, tzinfo=UTC), None) for k in range(40)]
    timezones = {"evening": "Europe/London", "morning": "Europe/London", "thin": "Not/AZone"}
    segments = {"evening": "night_owls", "morning": "early_birds"}
    return SendTimeModel().fit(_messages(rows), None, timezones, segments, as_of=datetime(2025, 3, 1, tzinfo=UTC))


NOW = datetime(2025, 3, 3, 6, 30, tzinfo=UTC)  # a Monday, 06:30 in London


def test_best_slot_is_when_the_customer_reads(fitted: SendTimeModel) -> None:
    evening = fitted.best_slots("evening", "email", NOW)
    morning = fitted.best_slots("morning", "email", NOW)
    assert evening.source == "customer" and evening.timezone == "Europe/London"
    assert evening.best_local is not None and evening.best_local.hour == 20
    assert morning.best_local is not None and morning.best_local.hour in (8, 9)  # 08:00 is the first non-quiet hour
    assert evening.best_at == evening.best_local.astimezone(UTC)
    assert NOW <= evening.best_at < NOW + timedelta(hours=24)


def test_second_best_is_on_a_later_local_day(fitted: SendTimeModel) -> None:
    choice = fitted.best_slots("evening", "email", NOW)
    assert choice.best_local is not None and choice.second_local is not None
    assert choice.second_local.date() > choice.best_local.date()
    assert choice.second_local.date() <= choice.best_local.date() + timedelta(days=3)
    assert choice.second_local.hour == 20


def test_open_long_after_the_send_is_stronger_habit_evidence() -> None:
    day = datetime(2025, 1, 6, tzinfo=LONDON)
    rows = []
    for d in range(10):
        at = day + timedelta(days=d)
        rows.append(("late", "email", at.replace(hour=9), at.replace(hour=21, minute=5)))
        rows.append(("prompt", "email", at.replace(hour=20, minute=55), at.replace(hour=21, minute=5)))
    model = SendTimeModel().fit(_messages(rows), None, {"late": "Europe/London", "prompt": "Europe/London"})
    slot = 21  # Monday 21:00 local
    assert model.habit("late", "email")[slot] > model.habit("prompt", "email")[slot]


def test_quiet_hours_are_never_recommended(fitted: SendTimeModel) -> None:
    start = datetime(2025, 1, 6)
    rows = _daily_reader("owl", LONDON, 9, 23, 40, start)
    model = SendTimeModel().fit(_messages(rows), None, {"owl": "Europe/London"})
    quiet = model.best_slots("owl", "email", NOW)
    loud = model.best_slots("owl", "email", NOW, quiet=None)
    assert quiet.best_local is not None and not in_quiet(quiet.best_local.hour, (22, 8))
    assert loud.best_local is not None and loud.best_local.hour == 23


def test_window_without_an_allowed_slot_says_so(fitted: SendTimeModel) -> None:
    night = datetime(2025, 3, 3, 23, 0, tzinfo=UTC)  # 23:00 London: quiet until 08:00
    choice = fitted.best_slots("evening", "email", night, window=timedelta(hours=3))
    assert choice.best_at is None and np.isnan(choice.score)


def test_local_hour_survives_daylight_saving(fitted: SendTimeModel) -> None:
    start = datetime(2025, 1, 6)
    rows = _daily_reader("nyc", NEW_YORK, 9, 19, 90, start)
    model = SendTimeModel().fit(_messages(rows), None, {"nyc": "America/New_York"})
    winter = model.best_slots("nyc", "email", datetime(2025, 3, 3, 12, tzinfo=UTC))
    summer = model.best_slots("nyc", "email", datetime(2025, 3, 17, 12, tzinfo=UTC))  # after 9 March
    assert winter.best_local is not None and summer.best_local is not None and winter.best_at and summer.best_at
    assert winter.best_local.hour == summer.best_local.hour == 19
    assert (winter.best_at.hour, summer.best_at.hour) == (0, 23)  # 19:00 at UTC-5, then at UTC-4


def test_hour_starts_skip_the_dst_gap() -> None:
    now = datetime(2025, 3, 30, 0, 30, tzinfo=UTC)  # London springs forward at 01:00 UTC
    hours = [local.hour for _, local in hour_starts(now, "Europe/London", now + timedelta(hours=4))]
    assert hours == [0, 2, 3, 4, 5]  # 05:00 BST is 04:00 UTC, inside the four hours


def test_local_slots_use_each_rows_zone() -> None:
    ts = pd.Series(pd.to_datetime(["2025-01-06 12:00", "2025-07-07 12:00"], utc=True))
    assert local_slots(ts, np.array(["Europe/London", "Europe/London"])).tolist() == [12, 13]
    assert local_slots(ts, np.array(["America/New_York", "Asia/Tokyo"])).tolist() == [7, 21]


def test_thin_unknown_and_zoneless_customers_fall_back_labelled(fitted: SendTimeModel) -> None:
    thin = fitted.best_slots("thin", "email", NOW)
    assert thin.source == "population" and thin.timezone_source == "default"
    assert thin.timezone == "Europe/London"  # the most common valid zone
    stranger = fitted.best_slots("nobody", "sms", NOW, timezone="Asia/Tokyo")
    assert stranger.source == "population" and stranger.timezone == "Asia/Tokyo"
    grouped = fitted.best_slots("nobody", "email", NOW, segment="night_owls")
    assert grouped.source == "segment"
    assert np.allclose(fitted.curve("nobody", "email", segment="night_owls"), fitted.segment_curve_[1, 0])


def test_more_evidence_moves_the_curve_further_from_the_population() -> None:
    start = datetime(2025, 1, 6)
    rows = _daily_reader("few", LONDON, 9, 20, 4, start) + _daily_reader("many", LONDON, 9, 20, 60, start)
    rows += [(f"p{k}", "email", datetime(2025, 1, 6 + k % 20, 12, tzinfo=UTC), None) for k in range(200)]
    model = SendTimeModel(min_events=1).fit(_messages(rows), None, {"few": "Europe/London", "many": "Europe/London"})
    pop = model.population_habit_[0]
    gap = [np.abs(model.habit(k, "email") - pop).sum() for k in ("few", "many")]
    assert gap[0] < gap[1]


def test_batch_matches_single_answers(fitted: SendTimeModel) -> None:
    keys = ["evening", "morning", "thin", "nobody"]
    batch = fitted.best_slots_batch(keys, ["email", "email", "email", "push"], NOW)
    assert batch["customer_key"].tolist() == keys
    for row, key, ch in zip(batch.itertuples(index=False), keys, ["email", "email", "email", "push"], strict=True):
        single = fitted.best_slots(key, ch, NOW)
        assert row.best_local == single.best_local and row.source == single.source
        assert row.second_local == single.second_local


def test_frames_round_trip(fitted: SendTimeModel) -> None:
    frames, meta = fitted.to_frames()
    assert set(frames) >= {"customers", "customer_curves", "segment_curves", "population_curves"}
    back = SendTimeModel.from_frames(frames, meta)
    for key in ("evening", "morning", "thin", "nobody"):
        assert np.allclose(back.curve(key, "email"), fitted.curve(key, "email"))
        assert back.best_slots(key, "email", NOW) == fitted.best_slots(key, "email", NOW)
    with pytest.raises(KairosError, match="habits"):
        back.habit("evening", "email")


def test_channel_without_sends_is_relative(fitted: SendTimeModel) -> None:
    assert fitted.best_slots("evening", "sms", NOW).scale == "relative"
    assert fitted.best_slots("evening", "email", NOW).scale == "probability"
    assert abs(fitted.curve("evening", "sms").mean() - 1.0) < 1e-3
    assert fitted.curve("evening", "email").min() > 0.0 and fitted.curve("evening", "email").max() < 1.0


def test_activity_alone_gives_a_habit() -> None:
    at = pd.date_range("2025-01-06 14:00", periods=30, freq="D", tz="UTC")
    activity = pd.DataFrame({"customer_key": "shopper", "occurred_at": at})
    model = SendTimeModel().fit(_messages([]), activity, {"shopper": "UTC"})
    daily = model.habit("shopper", "email").reshape(7, 24).sum(axis=0)
    assert daily.argmax() == 14


def test_smoothing_keeps_mass() -> None:
    counts = np.zeros((2, SLOTS))
    counts[0, 5] = 3.0
    counts[1, 167] = 1.0
    out = smooth(counts, 0.2, 0.15)
    assert np.allclose(out.sum(axis=1), [3.0, 1.0])
    assert out[1, 0] > 0  # circular: Sunday 23:00 spreads into Monday 00:00


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda f: f.drop(columns=["sent_at"]), "sent_at"),
        (lambda f: f.assign(channel="fax"), "channel"),
        (lambda f: f.assign(sent_at=f["sent_at"].dt.tz_localize(None)), "timezone-aware"),
        (lambda f: f.assign(customer_key=None), "customer_key"),
        (lambda f: f.assign(opened_at=f["sent_at"] - pd.Timedelta(hours=1)), "before sent_at"),
    ],
)
def test_bad_input_names_the_field(change, match: str) -> None:  # type: ignore[no-untyped-def]
    frame = _messages([("a", "email", datetime(2025, 1, 6, 9, tzinfo=UTC), datetime(2025, 1, 6, 10, tzinfo=UTC))])
    with pytest.raises(InputDataError, match=match):
        SendTimeModel().fit(change(frame))


def test_events_after_as_of_are_refused() -> None:
    frame = _messages([("a", "email", datetime(2025, 1, 6, 9, tzinfo=UTC), None)])
    with pytest.raises(InputDataError, match="after as_of"):
        SendTimeModel().fit(frame, as_of=datetime(2025, 1, 1, tzinfo=UTC))


def test_bad_parameters_and_requests(fitted: SendTimeModel) -> None:
    with pytest.raises(KairosError, match="default_timezone"):
        SendTimeModel(default_timezone="Mars/Base").fit(_messages([("a", "email", NOW, None)]))
    with pytest.raises(KairosError, match="channel"):
        fitted.best_slots("evening", "fax", NOW)
    with pytest.raises(KairosError, match="quiet"):
        fitted.best_slots("evening", "email", NOW, quiet=(22, 25))
    with pytest.raises(KairosError, match="aware"):
        fitted.best_slots("evening", "email", NOW.replace(tzinfo=None))
    with pytest.raises(KairosError, match="not fitted"):
        SendTimeModel().curve("a", "email")
