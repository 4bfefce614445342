"""Segments: RFM scores and names, lifecycle stages, behavioural flags, transitions between snapshots."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from features.contract import Col
from features.ingest import ingest
from features.mapping import load_mapping
from features.segments import (
    FLAGS,
    GONE_COLUMN,
    NEW_ROW,
    NOT_AVAILABLE,
    POPULATION_GAP,
    RFM_GRID,
    Feat,
    Lifecycle,
    RfmSegment,
    SegCol,
    SegmentConfig,
    SegmentInputError,
    assign_segments,
    missing_inputs,
    quantile_scores,
    summarise_transitions,
    transition_matrix,
)
from features.store import compute_features, default_as_of, open_tables
from synth import generate_world

KEY = Col.CUSTOMER_KEY
REQUIRED = (Feat.RECENCY_DAYS, Feat.ORDERS_LIFETIME, Feat.TENURE_DAYS, Feat.MONETARY_365D)


def frame(rows: dict[str, dict[str, Any]], **columns: Any) -> pd.DataFrame:
    """A feature frame from {customer_key: {feature: value}}; absent values are NaN.

    ``columns`` adds whole columns with one value for every row. The required order features are
    always present (NaN for leads), with ``monetary_365d`` defaulting to 0.
    """
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = KEY
    out = out.reset_index()
    for name in REQUIRED:
        if name not in out.columns:
            out[name] = np.nan
    out[Feat.ORDERS_LIFETIME] = out[Feat.ORDERS_LIFETIME].fillna(0.0)
    out[Feat.MONETARY_365D] = out[Feat.MONETARY_365D].fillna(0.0)
    for name, value in columns.items():
        out[name] = value
    return out


def by_key(result: pd.DataFrame) -> pd.DataFrame:
    return result.set_index(KEY)


# --- quantile scores ------------------------------------------------------------------------------


def test_quantile_scores_are_quintiles_of_rank() -> None:
    assert quantile_scores(np.arange(10.0)).tolist() == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert quantile_scores(np.arange(10.0), higher_is_better=False).tolist() == [5, 5, 4, 4, 3, 3, 2, 2, 1, 1]
    assert quantile_scores(np.array([3.0, 1.0, 2.0, 5.0, 4.0])).tolist() == [3, 1, 2, 5, 4]


def test_quantile_ties_share_a_score_whatever_the_row_order() -> None:
    # 1 order x 6, 2 orders x 3, 9 orders x 1: equal values must never be split across scores
    values = np.array([1, 1, 1, 1, 1, 1, 2, 2, 2, 9], dtype=float)
    expected = {1.0: 1, 2.0: 4, 9.0: 5}  # first of the 2s has 6 worse: 1 + floor(5 * 6 / 10) = 4
    rng = np.random.default_rng(0)
    for _ in range(20):
        shuffled = rng.permutation(values)
        scores = quantile_scores(shuffled)
        assert all(scores[i] == expected[v] for i, v in enumerate(shuffled))
    assert quantile_scores(np.full(7, 4.0)).tolist() == [1] * 7  # all equal: nobody is better


def test_quantile_scores_count_missing_as_worst() -> None:
    assert quantile_scores(np.array([np.nan, 1.0, 2.0, 3.0, 4.0])).tolist() == [1, 2, 3, 4, 5]


# --- RFM segments ---------------------------------------------------------------------------------


def _one_customer_at(r: int, f: int, m: int) -> pd.DataFrame:
    """Five buyers; customer x scores exactly (r, f, m): it has s - 1 of the four others worse per dimension."""
    rows: dict[str, dict[str, Any]] = {
        "x": {Feat.RECENCY_DAYS: 50.0, Feat.ORDERS_LIFETIME: 10.0, Feat.MONETARY_365D: 100.0}
    }
    for i in range(4):
        rows[f"filler{i}"] = {
            Feat.RECENCY_DAYS: 90.0 if i < r - 1 else 10.0,  # worse = longer ago
            Feat.ORDERS_LIFETIME: 2.0 if i < f - 1 else 20.0,
            Feat.MONETARY_365D: 1.0 if i < m - 1 else 500.0,
        }
    out = frame(rows)
    out[Feat.TENURE_DAYS] = 400.0
    return out


@pytest.mark.parametrize(
    ("rfm", "segment"),
    [
        ((5, 5, 5), RfmSegment.CHAMPIONS),
        ((5, 5, 3), RfmSegment.CHAMPIONS),  # FM = (5 + 3) // 2 = 4
        ((5, 5, 2), RfmSegment.POTENTIAL_LOYALIST),  # FM = 3: the low spend holds a frequent buyer back
        ((4, 5, 5), RfmSegment.LOYAL),
        ((3, 4, 4), RfmSegment.LOYAL),
        ((5, 2, 2), RfmSegment.POTENTIAL_LOYALIST),
        ((4, 3, 3), RfmSegment.POTENTIAL_LOYALIST),
        ((5, 1, 1), RfmSegment.NEW),
        ((5, 1, 2), RfmSegment.NEW),  # FM = 1
        ((4, 1, 1), RfmSegment.PROMISING),
        ((3, 3, 3), RfmSegment.NEED_ATTENTION),
        ((3, 1, 4), RfmSegment.ABOUT_TO_SLEEP),  # FM = 2
        ((2, 3, 3), RfmSegment.AT_RISK),
        ((1, 4, 4), RfmSegment.AT_RISK),
        ((2, 5, 5), RfmSegment.CANT_LOSE_THEM),
        ((1, 5, 5), RfmSegment.CANT_LOSE_THEM),
        ((2, 2, 2), RfmSegment.HIBERNATING),
        ((2, 1, 1), RfmSegment.HIBERNATING),
        ((1, 2, 2), RfmSegment.LOST),
        ((1, 1, 1), RfmSegment.LOST),
    ],
)
def test_rfm_segment_of_each_score_pattern(rfm: tuple[int, int, int], segment: RfmSegment) -> None:
    x = by_key(assign_segments(_one_customer_at(*rfm))).loc["x"]
    assert (x[SegCol.R_SCORE], x[SegCol.F_SCORE], x[SegCol.M_SCORE]) == rfm
    assert x[SegCol.RFM_SEGMENT] == segment


def test_grid_names_the_eleven_segments_and_nothing_else() -> None:
    named = {s for row in RFM_GRID for s in row}
    assert named == set(RfmSegment) - {RfmSegment.LEAD}
    assert len(named) == 11 and all(len(row) == 5 for row in RFM_GRID) and len(RFM_GRID) == 5


def test_leads_get_no_scores_and_do_not_move_the_buyers_quintiles() -> None:
    buyers = {
        k: {Feat.RECENCY_DAYS: r, Feat.ORDERS_LIFETIME: f, Feat.MONETARY_365D: m, Feat.TENURE_DAYS: 400.0}
        for k, r, f, m in [("a", 5.0, 9.0, 900.0), ("b", 50.0, 3.0, 30.0), ("c", 300.0, 1.0, 0.0)]
    }
    alone = by_key(assign_segments(frame(buyers)))
    with_leads = by_key(assign_segments(frame({**buyers, "lead1": {}, "lead2": {}})))
    for col in (SegCol.R_SCORE, SegCol.F_SCORE, SegCol.M_SCORE, SegCol.RFM_SEGMENT):
        assert with_leads.loc[["a", "b", "c"], col].tolist() == alone[col].tolist()
    # three buyers: 1 + floor(5 x worse / 3) gives 4, 2, 1 (a base under five buyers cannot fill all five)
    assert alone[SegCol.R_SCORE].tolist() == [4, 2, 1] and alone[SegCol.M_SCORE].tolist() == [4, 2, 1]
    leads = with_leads.loc[["lead1", "lead2"]]
    assert leads[[SegCol.R_SCORE, SegCol.F_SCORE, SegCol.M_SCORE]].isna().all().all()
    assert (leads[SegCol.RFM_SEGMENT] == RfmSegment.LEAD).all()
    assert (leads[SegCol.LIFECYCLE] == Lifecycle.LEAD).all()
    assert leads[SegCol.RHYTHM_DAYS].isna().all() and not leads[list(FLAGS)].to_numpy().any()


def test_frequency_and_monetary_features_are_configurable() -> None:
    rows = {
        "old_regular": {Feat.RECENCY_DAYS: 200.0, Feat.ORDERS_LIFETIME: 20.0, Feat.ORDERS_365D: 1.0},
        "recent_pair": {Feat.RECENCY_DAYS: 10.0, Feat.ORDERS_LIFETIME: 2.0, Feat.ORDERS_365D: 2.0},
    }
    features = frame(rows, **{Feat.TENURE_DAYS: 700.0})
    lifetime = by_key(assign_segments(features))[SegCol.F_SCORE]
    yearly = by_key(assign_segments(features, SegmentConfig(frequency_feature="orders_365d")))[SegCol.F_SCORE]
    assert lifetime.to_dict() == {"old_regular": 3, "recent_pair": 1}
    assert yearly.to_dict() == {"old_regular": 1, "recent_pair": 3}


# --- lifecycle ------------------------------------------------------------------------------------

# Repeat buyers' mean gaps 9, 20, 20, 20, 20, 20, 20, 100, 200 days: the population rhythm is 20 days,
# so one-order customers are new while silent < 40 days, at risk up to 60, lapsed up to 365.
LIFECYCLE_ROWS: dict[str, tuple[float, float, float, float, Lifecycle]] = {
    # key: (orders, gap_mean_days, recency_days, tenure_days, expected)
    "first_order_this_month": (3, 9.0, 2.0, 20.0, Lifecycle.NEW),
    "on_rhythm": (5, 20.0, 25.0, 300.0, Lifecycle.ACTIVE),
    "overdue_twice": (5, 20.0, 50.0, 300.0, Lifecycle.AT_RISK),
    "overdue_five_times": (5, 20.0, 100.0, 300.0, Lifecycle.LAPSED),
    "silent_over_a_year": (5, 20.0, 400.0, 600.0, Lifecycle.CHURNED),
    "slow_but_on_rhythm": (4, 100.0, 140.0, 500.0, Lifecycle.ACTIVE),
    "very_slow_silent_two_years": (3, 200.0, 800.0, 1200.0, Lifecycle.CHURNED),
    "very_slow_silent_500_days": (3, 200.0, 500.0, 900.0, Lifecycle.AT_RISK),
    "same_day_pair": (2, 0.01, 9.0, 9.0 + 0.01, Lifecycle.NEW),
    "same_day_pair_later": (2, 0.01, 40.0, 40.01, Lifecycle.LAPSED),  # rhythm floored at 7: 40 > 21
    "one_order_recent": (1, np.nan, 35.0, 35.0, Lifecycle.NEW),
    "one_order_overdue": (1, np.nan, 50.0, 50.0, Lifecycle.AT_RISK),
    "one_order_long_ago": (1, np.nan, 100.0, 100.0, Lifecycle.LAPSED),
    "one_order_last_year": (1, np.nan, 400.0, 400.0, Lifecycle.CHURNED),
    "never_bought": (0, np.nan, np.nan, np.nan, Lifecycle.LEAD),
}
_EXTRA_REPEAT = {f"regular{i}": (4, 20.0, 10.0, 70.0, Lifecycle.ACTIVE) for i in range(4)}


def _lifecycle_frame(with_gap: bool = True) -> pd.DataFrame:
    rows = {
        k: {Feat.ORDERS_LIFETIME: o, Feat.GAP_MEAN_DAYS: g, Feat.RECENCY_DAYS: r, Feat.TENURE_DAYS: t}
        for k, (o, g, r, t, _) in {**LIFECYCLE_ROWS, **_EXTRA_REPEAT}.items()
    }
    out = frame(rows)
    return out if with_gap else out.drop(columns=Feat.GAP_MEAN_DAYS)


def test_lifecycle_stage_relative_to_own_rhythm() -> None:
    result = assign_segments(_lifecycle_frame())
    assert result.attrs[POPULATION_GAP] == pytest.approx(20.0)
    got = by_key(result)[SegCol.LIFECYCLE]
    for key, (*_, expected) in {**LIFECYCLE_ROWS, **_EXTRA_REPEAT}.items():
        assert got[key] == expected, key
    rhythm = by_key(result)[SegCol.RHYTHM_DAYS]
    assert rhythm["slow_but_on_rhythm"] == 100.0 and rhythm["same_day_pair"] == 7.0
    assert rhythm["one_order_recent"] == pytest.approx(20.0) and np.isnan(rhythm["never_bought"])


def test_lifecycle_gap_is_derived_from_tenure_when_the_gap_feature_is_absent() -> None:
    # gap = (tenure - recency) / (orders - 1): the literal rows are built consistent only where it matters
    rows = {
        "a": {Feat.ORDERS_LIFETIME: 5.0, Feat.RECENCY_DAYS: 50.0, Feat.TENURE_DAYS: 130.0},  # gap 20
        "b": {Feat.ORDERS_LIFETIME: 3.0, Feat.RECENCY_DAYS: 25.0, Feat.TENURE_DAYS: 65.0},  # gap 20
        "c": {Feat.ORDERS_LIFETIME: 2.0, Feat.RECENCY_DAYS: 140.0, Feat.TENURE_DAYS: 240.0},  # gap 100
    }
    derived = assign_segments(frame(rows))
    gaps = {"a": 20.0, "b": 20.0, "c": 100.0}
    given = assign_segments(frame({k: {**v, Feat.GAP_MEAN_DAYS: gaps[k]} for k, v in rows.items()}))
    pd.testing.assert_frame_equal(derived, given)
    assert by_key(derived)[SegCol.LIFECYCLE].tolist() == [Lifecycle.AT_RISK, Lifecycle.ACTIVE, Lifecycle.ACTIVE]


def test_lifecycle_with_one_fixed_rhythm_for_everyone() -> None:
    config = SegmentConfig(rhythm="fixed", fixed_gap_days=30.0)
    got = by_key(assign_segments(_lifecycle_frame(), config))[SegCol.LIFECYCLE]
    assert got["slow_but_on_rhythm"] == Lifecycle.LAPSED  # 140 > 3 x 30
    assert got["overdue_twice"] == Lifecycle.AT_RISK  # 50 in (45, 90]
    assert got["on_rhythm"] == Lifecycle.ACTIVE
    same = by_key(assign_segments(_lifecycle_frame(), SegmentConfig(rhythm="population")))[SegCol.LIFECYCLE]
    assert same["slow_but_on_rhythm"] == Lifecycle.LAPSED  # 140 > 6 x 20 (but <= 365)


def test_config_is_frozen_strict_and_checked() -> None:
    config = SegmentConfig()
    with pytest.raises(ValidationError):
        config.active_multiplier = 2.0
    with pytest.raises(ValidationError):
        SegmentConfig(activ_multiplier=2.0)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        SegmentConfig(active_multiplier=4.0)  # beyond at_risk_multiplier
    with pytest.raises(ValidationError):
        SegmentConfig(fixed_gap_days=0)


# --- flags ----------------------------------------------------------------------------------------


def _flags_frame() -> pd.DataFrame:
    base = {Feat.RECENCY_DAYS: 10.0, Feat.ORDERS_LIFETIME: 3.0, Feat.TENURE_DAYS: 200.0, Feat.GAP_MEAN_DAYS: 20.0}
    rows: dict[str, dict[str, Any]] = {
        "cart_abandoner": {Feat.abandoned_carts(7): 1.0},
        "old_cart": {Feat.abandoned_carts(7): 0.0, Feat.abandoned_carts(30): 2.0},
        "window_shopper": {Feat.VIEWS_SINCE_LAST_ORDER: 12.0, Feat.VIEWS_30D: 3.0},
        "lead_browser": {Feat.VIEWS_SINCE_LAST_ORDER: 40.0, Feat.VIEWS_30D: 5.0, **dict.fromkeys(REQUIRED)},
        "browsed_long_ago": {Feat.VIEWS_SINCE_LAST_ORDER: 40.0, Feat.VIEWS_30D: 0.0},
        "few_views": {Feat.VIEWS_SINCE_LAST_ORDER: 9.0, Feat.VIEWS_30D: 9.0},
        "one_and_done": {Feat.ORDERS_LIFETIME: 1.0, Feat.RECENCY_DAYS: 200.0, Feat.TENURE_DAYS: 200.0},
        "one_order_new": {Feat.ORDERS_LIFETIME: 1.0, Feat.RECENCY_DAYS: 5.0, Feat.TENURE_DAYS: 5.0},
        "brand_fan": {Feat.TOP_BRAND_SHARE: 0.85},
        "brand_fan_once": {Feat.TOP_BRAND_SHARE: 1.0, Feat.ORDERS_LIFETIME: 1.0, Feat.TENURE_DAYS: 10.0},
        "brand_mixer": {Feat.TOP_BRAND_SHARE: 0.5},
        "shrinking": {Feat.ORDER_VALUE_TREND: -0.3, Feat.BASKET_SIZE_TREND: -0.1},
        "flat": {Feat.ORDER_VALUE_TREND: 0.02, Feat.BASKET_SIZE_TREND: np.nan},
        "growing_units": {Feat.ORDER_VALUE_TREND: -0.1, Feat.BASKET_SIZE_TREND: 0.4},
        "too_few_orders_for_a_trend": {},
        "big_spender_slipping": {Feat.MONETARY_LIFETIME: 5000.0, Feat.RECENCY_DAYS: 50.0},
        "big_spender_on_rhythm": {Feat.MONETARY_LIFETIME: 4000.0},
        "small_spender_slipping": {Feat.MONETARY_LIFETIME: 10.0, Feat.RECENCY_DAYS: 50.0},
        "big_spender_churned": {Feat.MONETARY_LIFETIME: 6000.0, Feat.RECENCY_DAYS: 400.0},
        # 28 buyers: the top fifth (at least 22.4 buyers spent less) are 6000, 5000 and 4000; 500 is far out
        **{f"well_off_{i}": {Feat.MONETARY_LIFETIME: 3000.0} for i in range(3)},
        "upper_middle_slipping": {Feat.MONETARY_LIFETIME: 500.0, Feat.RECENCY_DAYS: 50.0},
        "anniversary_soon": {Feat.DAYS_TO_ANNIVERSARY: 7.0, Feat.TENURE_DAYS: 358.0},
        "anniversary_later": {Feat.DAYS_TO_ANNIVERSARY: 8.0, Feat.TENURE_DAYS: 357.0},
        "first_order_today": {Feat.DAYS_TO_ANNIVERSARY: 0.0, Feat.TENURE_DAYS: 0.2, Feat.RECENCY_DAYS: 0.2},
        "opted_out": {Feat.CONSENT_EMAIL: 0.0, Feat.CONSENT_SMS: 0.0, Feat.CONSENT_PUSH: 0.0},
        "sms_only": {Feat.CONSENT_EMAIL: 0.0, Feat.CONSENT_SMS: 1.0, Feat.CONSENT_PUSH: 0.0},
        "push_only": {Feat.CONSENT_EMAIL: 0.0, Feat.CONSENT_SMS: 0.0, Feat.CONSENT_PUSH: 1.0},
    }
    defaults = {
        Feat.abandoned_carts(7): 0.0,
        Feat.VIEWS_SINCE_LAST_ORDER: 0.0,
        Feat.VIEWS_30D: 0.0,
        Feat.TOP_BRAND_SHARE: 0.3,
        Feat.MONETARY_LIFETIME: 100.0,
        Feat.DAYS_TO_ANNIVERSARY: 100.0,
        Feat.CONSENT_EMAIL: 1.0,
        Feat.CONSENT_SMS: 1.0,
        Feat.CONSENT_PUSH: 1.0,
    }
    return frame({k: {**base, **defaults, **v} for k, v in rows.items()})


EXPECTED_FLAGS = {
    SegCol.FLAG_RECENT_ABANDONED_CART: {"cart_abandoner"},
    SegCol.FLAG_BROWSES_NEVER_BUYS: {"window_shopper", "lead_browser"},
    SegCol.FLAG_ONE_AND_DONE: {"one_and_done"},
    SegCol.FLAG_SINGLE_BRAND: {"brand_fan"},
    SegCol.FLAG_FLAT_OR_SHRINKING_BASKET: {"shrinking", "flat"},
    SegCol.FLAG_HIGH_VALUE_AT_RISK: {"big_spender_slipping"},
    SegCol.FLAG_ANNIVERSARY_7D: {"anniversary_soon"},
    SegCol.FLAG_OPTED_OUT_EVERYWHERE: {"opted_out"},
}


@pytest.mark.parametrize("flag", FLAGS)
def test_each_flag_raises_for_exactly_the_planted_customers(flag: str) -> None:
    result = by_key(assign_segments(_flags_frame()))
    assert result.attrs[NOT_AVAILABLE] == {}
    assert set(result.index[result[flag]]) == EXPECTED_FLAGS[flag]


def test_flags_fixture_lifecycles_are_what_the_flags_assume() -> None:
    stage = by_key(assign_segments(_flags_frame()))[SegCol.LIFECYCLE]
    assert stage["lead_browser"] == Lifecycle.LEAD and stage["one_order_new"] == Lifecycle.NEW
    assert stage["big_spender_slipping"] == Lifecycle.AT_RISK and stage["big_spender_on_rhythm"] == Lifecycle.ACTIVE
    assert stage["upper_middle_slipping"] == Lifecycle.AT_RISK and stage["one_and_done"] == Lifecycle.LAPSED
    assert stage["big_spender_churned"] == Lifecycle.CHURNED and (stage != Lifecycle.LEAD).sum() == 28


def test_missing_families_make_flags_not_available_never_an_error() -> None:
    orders_only = _flags_frame()[[KEY, *REQUIRED, Feat.GAP_MEAN_DAYS, Feat.MONETARY_LIFETIME]]
    result = assign_segments(orders_only)
    lacking = result.attrs[NOT_AVAILABLE]
    assert set(lacking) == {
        SegCol.FLAG_RECENT_ABANDONED_CART,
        SegCol.FLAG_BROWSES_NEVER_BUYS,
        SegCol.FLAG_SINGLE_BRAND,
        SegCol.FLAG_FLAT_OR_SHRINKING_BASKET,
        SegCol.FLAG_ANNIVERSARY_7D,
        SegCol.FLAG_OPTED_OUT_EVERYWHERE,
    }
    assert lacking[SegCol.FLAG_OPTED_OUT_EVERYWHERE] == (Feat.CONSENT_EMAIL, Feat.CONSENT_SMS, Feat.CONSENT_PUSH)
    assert not result[list(lacking)].to_numpy().any()
    assert result[SegCol.FLAG_ONE_AND_DONE].sum() == 1  # computable flags still work
    assert result[SegCol.RFM_SEGMENT].notna().all() and result[SegCol.LIFECYCLE].notna().all()


def test_basket_flag_needs_only_one_of_its_trends() -> None:
    assert SegCol.FLAG_FLAT_OR_SHRINKING_BASKET not in missing_inputs([Feat.ORDER_VALUE_TREND])
    assert SegCol.FLAG_FLAT_OR_SHRINKING_BASKET in missing_inputs([Feat.TOP_BRAND_SHARE])
    assert (
        missing_inputs([Feat.abandoned_carts(30)], SegmentConfig(abandoned_cart_window_days=30)).get(
            SegCol.FLAG_RECENT_ABANDONED_CART
        )
        is None
    )


def test_a_required_order_feature_missing_is_a_clear_error() -> None:
    features = frame({"a": {Feat.RECENCY_DAYS: 1.0, Feat.ORDERS_LIFETIME: 1.0, Feat.TENURE_DAYS: 1.0}})
    with pytest.raises(SegmentInputError, match=Feat.MONETARY_365D):
        assign_segments(features.drop(columns=Feat.MONETARY_365D))


def test_output_keeps_input_rows_order_and_index() -> None:
    features = _lifecycle_frame().sample(frac=1.0, random_state=1)
    result = assign_segments(features)
    assert result.index.equals(features.index) and result[KEY].tolist() == features[KEY].tolist()
    assert list(result.columns) == [
        KEY,
        SegCol.R_SCORE,
        SegCol.F_SCORE,
        SegCol.M_SCORE,
        SegCol.RFM_SEGMENT,
        SegCol.LIFECYCLE,
        SegCol.RHYTHM_DAYS,
        *FLAGS,
    ]
    pd.testing.assert_frame_equal(by_key(result).sort_index(), by_key(assign_segments(_lifecycle_frame())).sort_index())


def test_an_empty_snapshot_gives_an_empty_result() -> None:
    result = assign_segments(frame({}).iloc[:0])
    assert len(result) == 0 and SegCol.RFM_SEGMENT in result.columns


# --- transitions ----------------------------------------------------------------------------------


def test_transition_matrix_counts_moves_arrivals_and_departures() -> None:
    previous = pd.DataFrame(
        {KEY: ["a", "b", "c", "d", "f"], SegCol.LIFECYCLE: ["active", "active", "at_risk", "at_risk", "new"]}
    )
    current = pd.DataFrame(
        {KEY: ["a", "b", "c", "e", "f"], SegCol.LIFECYCLE: ["active", "at_risk", "at_risk", "new", "active"]}
    )
    m = transition_matrix(previous, current, SegCol.LIFECYCLE)
    assert list(m.index) == ["new", "active", "at_risk", NEW_ROW]  # canonical order, then (new)
    assert list(m.columns) == ["new", "active", "at_risk", GONE_COLUMN]
    expected = [
        [0, 1, 0, 0],  # f: new -> active
        [0, 1, 1, 0],  # a stayed, b active -> at_risk
        [0, 0, 1, 1],  # c stayed, d gone
        [1, 0, 0, 0],  # e arrived as new
    ]
    assert m.to_numpy().tolist() == expected
    summary = summarise_transitions(m)
    assert (summary.stayed, summary.moved, summary.entered, summary.left) == (2, 2, 1, 1)
    assert summary.moved_share == pytest.approx(0.5)
    assert summary.moves[["previous", "current", "customers"]].values.tolist() == [
        ["active", "at_risk", 1],
        ["new", "active", 1],
    ]


def test_transitions_between_two_segment_runs() -> None:
    before = assign_segments(_lifecycle_frame())
    later = _lifecycle_frame()
    later[Feat.RECENCY_DAYS] += 30.0  # a month passes without a single order
    later[Feat.TENURE_DAYS] += 30.0
    after = assign_segments(later)
    m = transition_matrix(before, after, SegCol.LIFECYCLE)
    assert m.to_numpy().sum() == len(before) and m.loc[NEW_ROW].sum() == 0 and m[GONE_COLUMN].sum() == 0
    assert m.loc["active", "at_risk"] >= 1 and m.loc["lead", "lead"] == 1
    rfm = transition_matrix(before, after, SegCol.RFM_SEGMENT)
    assert rfm.index[-1] == NEW_ROW and summarise_transitions(rfm).stayed + summarise_transitions(rfm).moved == len(
        before
    )


def test_transition_matrix_refuses_a_customer_listed_twice() -> None:
    twice = pd.DataFrame({KEY: ["a", "a"], SegCol.LIFECYCLE: ["active", "lapsed"]})
    once = pd.DataFrame({KEY: ["a"], SegCol.LIFECYCLE: ["active"]})
    with pytest.raises(ValueError, match="twice"):
        transition_matrix(once, twice, SegCol.LIFECYCLE)


# --- the synthetic world --------------------------------------------------------------------------

N_CUSTOMERS = 1000
SEED = 7
# Which of our stages agree with each planted lifecycle (persons.parquet, see synth/world.py).
AGREES = {
    "lead": {Lifecycle.LEAD},
    "loyal": {Lifecycle.NEW, Lifecycle.ACTIVE, Lifecycle.AT_RISK},
    "lapsing": {Lifecycle.ACTIVE, Lifecycle.AT_RISK, Lifecycle.LAPSED},
    "churned": {Lifecycle.AT_RISK, Lifecycle.LAPSED, Lifecycle.CHURNED},
    "one_and_done": {Lifecycle.NEW, Lifecycle.AT_RISK, Lifecycle.LAPSED, Lifecycle.CHURNED},
}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Features of a synthetic world as of the day after its last order, and each key's planted person."""
    root = tmp_path_factory.mktemp("segments_world")
    generate_world(N_CUSTOMERS, SEED, root / "export")
    home = root / "home"
    ingest(root / "export", load_mapping("synthetic"), home, now=datetime(2026, 1, 1, tzinfo=UTC))
    tables = open_tables(home)
    features = compute_features(tables, default_as_of(tables))
    truth = root / "export" / "truth"
    return features, _planted(home, truth)


def _planted(home: Path, truth: Path) -> pd.DataFrame:
    identity = pd.read_parquet(home / "ingested" / "identity_map.parquet")
    person = pd.read_parquet(truth / "identities.parquet").set_index(Col.CUSTOMER_ID)["person_id"]
    identity = identity.assign(person_id=identity[Col.CUSTOMER_ID].map(person))
    main_person = identity.groupby(KEY)["person_id"].agg(lambda p: p.mode().iloc[0])
    persons = pd.read_parquet(truth / "persons.parquet").set_index("person_id")
    return pd.DataFrame(
        {
            "lifecycle": main_person.map(persons["lifecycle"]),
            "single_brand": main_person.map(persons["single_brand"]).notna(),
        }
    )


def test_every_customer_of_a_world_gets_exactly_one_segment_and_stage(world: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    features, _ = world
    result = assign_segments(features)
    assert len(result) == len(features) and result[KEY].is_unique
    assert result[SegCol.RFM_SEGMENT].notna().all() and result[SegCol.LIFECYCLE].notna().all()
    buyers = features[Feat.RECENCY_DAYS].notna().to_numpy()
    scores = result[[SegCol.R_SCORE, SegCol.F_SCORE, SegCol.M_SCORE]]
    assert scores[buyers].notna().all().all() and scores[~buyers].isna().all().all()
    assert scores[buyers].isin([1, 2, 3, 4, 5]).all().all()
    # quintiles: each R score holds about a fifth of the buyers (recency has few ties)
    shares = result.loc[buyers, SegCol.R_SCORE].value_counts(normalize=True)
    assert shares.between(0.15, 0.25).all()
    assert (result.loc[~buyers, SegCol.RFM_SEGMENT] == RfmSegment.LEAD).all()
    assert set(result[SegCol.RFM_SEGMENT]) >= set(RfmSegment) - {RfmSegment.CANT_LOSE_THEM}


def test_stages_agree_with_the_planted_lifecycles(world: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    features, planted = world
    result = by_key(assign_segments(features))
    stage = result[SegCol.LIFECYCLE].astype(str)
    truth = planted["lifecycle"].reindex(result.index)
    assert truth.notna().mean() > 0.99

    # planted leads never bought: all of them are leads here
    assert (stage[truth == "lead"] == Lifecycle.LEAD).all()

    agree = pd.Series([s in AGREES.get(t, set()) for s, t in zip(stage, truth, strict=True)], index=stage.index)
    share = stage.value_counts(normalize=True)
    chance = sum(
        (truth == planted_stage).mean() * share.reindex([s.value for s in ours]).fillna(0).sum()
        for planted_stage, ours in AGREES.items()
    )
    assert agree.mean() > 0.8 and agree.mean() > chance + 0.3, (agree.mean(), chance)

    active = stage == Lifecycle.ACTIVE
    gone = stage.isin([Lifecycle.LAPSED, Lifecycle.CHURNED])
    assert active[truth == "loyal"].mean() > 1.5 * active[truth == "churned"].mean()
    assert gone[truth == "churned"].mean() > 3 * gone[truth == "loyal"].mean()
    assert result.loc[truth == "one_and_done", SegCol.FLAG_ONE_AND_DONE].mean() > 0.7
    assert result.loc[truth == "loyal", SegCol.FLAG_ONE_AND_DONE].mean() < 0.15
    champions = truth[result[SegCol.RFM_SEGMENT] == RfmSegment.CHAMPIONS]
    assert (champions == "loyal").mean() > 0.8


def test_single_brand_flag_finds_planted_single_brand_buyers(world: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    features, planted = world
    if Feat.TOP_BRAND_SHARE not in features.columns:
        pytest.skip("top_brand_share is not in the catalogue yet")
    result = by_key(assign_segments(features))
    planted_fan = planted["single_brand"].reindex(result.index).fillna(False).astype(bool)
    flagged = result[SegCol.FLAG_SINGLE_BRAND]
    assert flagged[planted_fan].mean() > 3 * flagged[~planted_fan].mean()


def test_a_later_snapshot_of_the_world_reports_its_moves(world: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    features, _ = world
    current = assign_segments(features)
    aged = features.copy()
    for ages in (Feat.RECENCY_DAYS, Feat.TENURE_DAYS):
        aged[ages] += 60.0  # two months without orders
    later = assign_segments(aged)
    summary = summarise_transitions(transition_matrix(current, later, SegCol.LIFECYCLE))
    assert summary.entered == summary.left == 0 and summary.stayed + summary.moved == len(features)
    assert summary.moved > 0
    healthier = {("churned", "lapsed"), ("lapsed", "at_risk"), ("at_risk", "active"), ("lead", "new")}
    moves = set(zip(summary.moves["previous"], summary.moves["current"], strict=True))
    assert not moves & healthier  # silence only ever moves customers down the lifecycle
