"""Channel preference: Beta-binomial shrinkage, not-enough-data, consent filter, ranking, artifacts."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from features.errors import InputDataError, KairosError
from models.decisioning.channel import ChannelPreference

T = pd.Timestamp("2025-01-06 09:00", tz="UTC")


def _msgs(rows: list[tuple[str, str, bool, bool]]) -> pd.DataFrame:
    """(customer_key, channel, opened, clicked) -> messages."""
    return pd.DataFrame(
        {
            "customer_key": [r[0] for r in rows],
            "channel": [r[1] for r in rows],
            "opened_at": [T if r[2] else pd.NaT for r in rows],
            "clicked_at": [T if r[3] else pd.NaT for r in rows],
        }
    )


@pytest.fixture(scope="module")
def model() -> ChannelPreference:
    rows = [("a", "email", k < 6, k < 2) for k in range(10)]  # a: 10 e-mails, 6 opened, 2 clicked
    rows += [("a", "sms", True, False) for _ in range(3)]  # a: 3 SMS, all opened (too few)
    rows += [("b", "email", False, False) for _ in range(10)]  # b: 10 e-mails, none opened
    rows += [("b", "push", True, True) for _ in range(6)]
    return ChannelPreference(min_sends=5, prior_strength=10.0).fit(_msgs(rows))


def test_estimates_are_the_beta_binomial_posterior_means(model: ChannelPreference) -> None:
    pop_open = 6 / 20  # e-mail across everyone
    scores = {s.channel: s for s in model.scores("a", ["email", "sms"])}
    assert scores["email"].p_open == pytest.approx((6 + 10 * pop_open) / (10 + 10))
    assert scores["email"].p_click == pytest.approx((2 + 10 * 2 / 20) / 20)
    assert scores["email"].sends == 10 and scores["email"].status == "ok"
    assert scores["sms"].status == "not_enough_data" and scores["sms"].sends == 3


def test_only_consented_channels_are_returned(model: ChannelPreference) -> None:
    assert [s.channel for s in model.scores("b", ["push"])] == ["push"]
    assert model.scores("b", []) == []


def test_ranking_puts_enough_data_first_then_probability(model: ChannelPreference) -> None:
    ranked = model.scores("a", ["sms", "email", "push"])
    assert ranked[0].channel == "email"  # ok beats not-enough-data, however high those are
    assert [s.rank for s in ranked] == [1, 2, 3]
    b = model.scores("b", ["email", "push"])
    assert [s.channel for s in b] == ["push", "email"]


def test_unknown_customer_gets_population_rates_flagged(model: ChannelPreference) -> None:
    (email,) = model.scores("nobody", ["email"])
    assert email.status == "not_enough_data" and email.p_open == pytest.approx(6 / 20)
    (sms,) = model.scores("nobody", ["sms"])
    assert sms.p_open == pytest.approx(1.0)  # the population's only SMS were all opened


def test_channel_never_sent_has_no_estimate() -> None:
    only_email = ChannelPreference().fit(_msgs([("a", "email", True, False)]))
    (push,) = only_email.scores("a", ["push"])
    assert math.isnan(push.p_open) and push.status == "not_enough_data"


def test_min_sends_is_configurable() -> None:
    rows = [("a", "email", True, False) for _ in range(3)]
    assert ChannelPreference(min_sends=3).fit(_msgs(rows)).scores("a", ["email"])[0].status == "ok"
    assert ChannelPreference(min_sends=4).fit(_msgs(rows)).scores("a", ["email"])[0].status == "not_enough_data"


def test_table_and_round_trip(model: ChannelPreference) -> None:
    table = model.table({"a": ["email", "sms"], "b": ["push"], "c": []})
    assert table[["customer_key", "channel"]].values.tolist() == [["a", "email"], ["a", "sms"], ["b", "push"]]
    frames, meta = model.to_frames()
    back = ChannelPreference.from_frames(frames, meta)
    assert back.scores("a", ["email", "sms"]) == model.scores("a", ["email", "sms"])


def test_errors_name_the_field(model: ChannelPreference) -> None:
    with pytest.raises(InputDataError, match="clicked_at"):
        ChannelPreference().fit(_msgs([("a", "email", True, False)]).drop(columns=["clicked_at"]))
    with pytest.raises(InputDataError, match="channel"):
        ChannelPreference().fit(_msgs([("a", "fax", True, False)]))
    with pytest.raises(KairosError, match="unknown channel"):
        model.scores("a", ["fax"])
    with pytest.raises(KairosError, match="min_sends"):
        ChannelPreference(min_sends=0).fit(_msgs([("a", "email", True, False)]))
