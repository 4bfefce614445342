"""BG/NBD, MBG/NBD and Gamma-Gamma: the published CDNOW results, the model formulas, and model behaviour.

The CDNOW sample (Fader & Hardie's 1/10 sample, 2,357 customers) is vendored under
``tests/data/cdnow`` so that these tests run on a fresh clone. Published figures come from Fader,
Hardie & Lee (2005) "Counting your customers the easy way" (BG/NBD parameters and log-likelihood),
Hardie's BG/NBD spreadsheet (expectations), Fader & Hardie (2013) "The Gamma-Gamma model of
monetary value" (spend parameters) and the BTYDplus R package (MBG/NBD parameters on the same data).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import approx_fprime

from models.clv import BGNBD, RFM, GammaGamma, ModifiedBGNBD, NotFittedError, rfm_summary

CDNOW_SAMPLE = Path(__file__).resolve().parents[1] / "data" / "cdnow" / "CDNOW_sample.txt"
CALIBRATION_END = "1997-09-30"  # the end of week 39 of 1997, as in the papers
OBSERVATION_END = "1998-06-30"  # the end of the 39-week holdout

PUBLISHED_BGNBD = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
PUBLISHED_BGNBD_LL = -9582.4
PUBLISHED_GG = {"p": 6.25, "q": 3.74, "gamma": 15.44}
BTYDPLUS_MBGNBD = {"r": 0.525, "alpha": 6.183, "a": 0.891, "b": 1.614}


def load_cdnow(path: Path) -> pd.DataFrame:
    """Parse the CDNOW text format: whitespace-separated columns.

    The sample file has five columns (original customer id, the sample's own id 0001..2357, date
    YYYYMMDD, number of CDs, dollar value); the master file has four (no sample id) and a header.
    """
    first = path.read_text().split("\n", 1)[0].split()
    names = (
        ["customer_id", "sample_id", "date", "cds", "value"]
        if len(first) == 5
        else ["customer_id", "date", "cds", "value"]
    )
    frame = pd.read_csv(
        path,
        sep=r"\s+",
        header=None if first[0].isdigit() else 0,
        names=names,
        dtype={"customer_id": str, "sample_id": str, "date": str},
    )
    frame["date"] = pd.to_datetime(frame["date"], format="%Y%m%d")
    return frame


@pytest.fixture(scope="module")
def cdnow() -> pd.DataFrame:
    return load_cdnow(CDNOW_SAMPLE)


@pytest.fixture(scope="module")
def summary(cdnow: pd.DataFrame) -> pd.DataFrame:
    return rfm_summary(cdnow, "customer_id", "date", "value", CALIBRATION_END, 7, observation_end=OBSERVATION_END)


@pytest.fixture(scope="module")
def bgnbd(summary: pd.DataFrame) -> BGNBD:
    return BGNBD().fit(summary[RFM.FREQUENCY], summary[RFM.RECENCY], summary[RFM.T])


@pytest.fixture(scope="module")
def mbgnbd(summary: pd.DataFrame) -> ModifiedBGNBD:
    return ModifiedBGNBD().fit(summary[RFM.FREQUENCY], summary[RFM.RECENCY], summary[RFM.T])


@pytest.fixture(scope="module")
def gamma_gamma(summary: pd.DataFrame) -> GammaGamma:
    return GammaGamma().fit(summary[RFM.FREQUENCY], summary[RFM.MONETARY])


def _within_1pct(fitted: dict[str, float], published: dict[str, float]) -> dict[str, float]:
    """Relative errors of the parameters that miss the published value by more than 1% (empty = all good)."""
    errors = {k: abs(fitted[k] - v) / abs(v) for k, v in published.items()}
    return {k: e for k, e in errors.items() if e > 0.01}


# --- the data as the papers prepared it ---------------------------------------------------------------


def test_the_vendored_sample_is_the_papers_sample(cdnow: pd.DataFrame) -> None:
    assert len(cdnow) == 6919
    assert cdnow["customer_id"].nunique() == cdnow["sample_id"].nunique() == 2357
    assert cdnow["date"].min() == pd.Timestamp("1997-01-01") and cdnow["date"].max() == pd.Timestamp("1998-06-30")
    assert cdnow.groupby("customer_id")["date"].min().max() < pd.Timestamp("1997-04-01")  # the Q1 1997 cohort


def test_summary_uses_the_papers_time_axis(summary: pd.DataFrame) -> None:
    assert len(summary) == 2357
    # A customer who first bought on 1997-01-01 has T = 272/7 = 38.86 weeks, as in the papers
    # (T = 39 instead moves a and b by 2-3%); the holdout is weeks 40..78.
    assert summary[RFM.T].max() == pytest.approx(38.857, abs=1e-3)
    assert summary[RFM.DURATION_HOLDOUT].iloc[0] == 39.0
    first = summary.loc["00004"]  # sample id 0001: bought 1997-01-01, 01-18, 08-02 (+ once in the holdout)
    assert (first[RFM.FREQUENCY], first[RFM.RECENCY], first[RFM.FREQUENCY_HOLDOUT]) == (
        2,
        pytest.approx(30.43, abs=0.005),
        1,
    )
    assert first[RFM.MONETARY] == pytest.approx((29.73 + 14.96) / 2)
    # 2,457 repeat transactions in the calibration period; 1,411 customers made none (946 did).
    assert int(summary[RFM.FREQUENCY].sum()) == 2457 and int((summary[RFM.FREQUENCY] == 0).sum()) == 1411


# --- published results ----------------------------------------------------------------------------------


def test_bgnbd_reproduces_fader_hardie_lee_2005(bgnbd: BGNBD) -> None:
    assert _within_1pct(bgnbd.params_, PUBLISHED_BGNBD) == {}, bgnbd.params_
    assert bgnbd.log_likelihood_ == pytest.approx(PUBLISHED_BGNBD_LL, rel=0.01)
    assert bgnbd.log_likelihood_ == pytest.approx(PUBLISHED_BGNBD_LL, abs=0.05)  # in fact to the published digit
    assert bgnbd.n_customers_ == 2357


def test_bgnbd_expectations_match_hardies_spreadsheet(bgnbd: BGNBD) -> None:
    # E[X(t)] for a new customer and E[Y(39) | x=2, t_x=30.43, T=38.86], from Hardie's BG/NBD workbook
    # (to its 4 printed decimals, give or take the last digits of the workbook's own Solver optimum).
    times = [0.1429, 1.0, 3.0, 31.8571, 32.0, 78.0]
    expected = [0.0078, 0.0532, 0.1506, 1.0405, 1.0437, 1.8576]
    np.testing.assert_allclose(bgnbd.expected_purchases_new(times), expected, atol=5e-4)
    assert bgnbd.expected_purchases(39, 2, 30.43, 38.86) == pytest.approx(1.226, abs=1e-3)


def test_the_t_convention_is_what_reproduces_the_paper(summary: pd.DataFrame) -> None:
    # Measuring T to the end of 1997-09-30 (39 weeks for the first-day cohort) instead of to its
    # start (38.86) is a plausible reading of "the first 39 weeks", and misses the published a and b.
    shifted = BGNBD().fit(summary[RFM.FREQUENCY], summary[RFM.RECENCY], summary[RFM.T] + 1 / 7)
    assert set(_within_1pct(shifted.params_, PUBLISHED_BGNBD)) == {"a", "b"}, shifted.params_


def test_gamma_gamma_reproduces_fader_hardie_2013(summary: pd.DataFrame, gamma_gamma: GammaGamma) -> None:
    repeat = summary[summary[RFM.FREQUENCY] > 0]
    assert len(repeat) == 946
    assert gamma_gamma.n_customers_ == 946
    assert _within_1pct(gamma_gamma.params_, PUBLISHED_GG) == {}, gamma_gamma.params_


def test_mbgnbd_matches_btydplus_on_cdnow(mbgnbd: ModifiedBGNBD) -> None:
    assert _within_1pct(mbgnbd.params_, BTYDPLUS_MBGNBD) == {}, mbgnbd.params_


# --- the one-time-buyer problem ---------------------------------------------------------------------------


def test_one_time_buyers_are_not_certainly_alive_under_mbgnbd(bgnbd: BGNBD, mbgnbd: ModifiedBGNBD) -> None:
    ages = np.array([1.0, 5.0, 10.0, 20.0, 38.86, 80.0])
    zeros = np.zeros_like(ages)
    np.testing.assert_array_equal(bgnbd.p_alive(zeros, zeros, ages), 1.0)
    modified = mbgnbd.p_alive(zeros, zeros, ages)
    assert np.all(modified < 1) and np.all(modified > 0)
    assert np.all(np.diff(modified) < 0), modified  # the longer ago the only purchase, the likelier gone


# --- behaviour --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model_name", ["bgnbd", "mbgnbd"])
def test_p_alive_falls_as_the_last_purchase_recedes(model_name: str, request: pytest.FixtureRequest) -> None:
    model = request.getfixturevalue(model_name)
    recency = np.array([38.0, 30.0, 20.0, 10.0, 2.0])
    alive = model.p_alive(4, recency, 38.86)
    assert np.all(np.diff(alive) < 0), alive
    assert np.all((alive > 0) & (alive <= 1))


@pytest.mark.parametrize("model_name", ["bgnbd", "mbgnbd"])
def test_expected_purchases_grow_with_frequency_for_recent_buyers(
    model_name: str, request: pytest.FixtureRequest
) -> None:
    model = request.getfixturevalue(model_name)
    frequency = np.arange(0, 30)
    recency = np.where(frequency > 0, 38.0, 0.0)  # every repeat buyer bought last week
    expected = model.expected_purchases(39, frequency, recency, 38.86)
    assert np.all(np.diff(expected) > 0), expected
    # ... and grow with the horizon, starting at 0.
    horizons = np.array([0.0, 1.0, 13.0, 52.0, 520.0])
    assert model.expected_purchases(horizons, 3, 30.0, 38.86)[0] == 0.0
    assert np.all(np.diff(model.expected_purchases(horizons, 3, 30.0, 38.86)) > 0)


def test_heavy_histories_stay_finite(bgnbd: BGNBD, mbgnbd: ModifiedBGNBD) -> None:
    frequency, recency, age = np.array([0, 50, 500, 5000]), np.array([0.0, 400.0, 499.0, 1000.0]), 1000.0
    for model in (bgnbd, mbgnbd):
        for values in (
            model.p_alive(frequency, recency, age),
            model.expected_purchases(520, frequency, recency, age),
            model.log_likelihood(frequency, recency, age),
        ):
            assert np.all(np.isfinite(values)), values
    assert bgnbd.p_alive(1000, 10, 100) == pytest.approx(0.0, abs=1e-300)  # no overflow warning, just 0


def test_next_purchase_time_is_the_median_wait_or_inf(bgnbd: BGNBD) -> None:
    days = bgnbd.expected_next_purchase_days([10, 10, 1], [38.0, 37.0, 2.0], [38.86, 38.86, 38.86])
    assert 0 < days[0] < days[1] < 60  # an active weekly buyer: within weeks, sooner the more recent
    assert days[2] == np.inf  # one repeat purchase 37 weeks ago: P(alive) < 1/2, no date is expected
    assert bgnbd.p_alive(1, 2.0, 38.86) < 0.5
    later = bgnbd.expected_next_purchase_days(10, 38.0, 38.86, probability=0.8)
    assert later > days[0]
    assert bgnbd.expected_next_purchase_days(10, 38.0, 38.86, time_unit_days=1.0) == pytest.approx(days[0] / 7)


def test_clv_is_discounted_expected_purchases_times_expected_value(
    summary: pd.DataFrame, bgnbd: BGNBD, gamma_gamma: GammaGamma
) -> None:
    head = summary.iloc[:50]
    x, t_x, age, m = head[RFM.FREQUENCY], head[RFM.RECENCY], head[RFM.T], head[RFM.MONETARY]
    value = gamma_gamma.conditional_expected_value(x, m)
    plain = gamma_gamma.clv(bgnbd, x, t_x, age, m, horizon_units=52)
    np.testing.assert_allclose(plain, bgnbd.expected_purchases(52, x, t_x, age) * value, rtol=1e-12)

    rate = 1.10 ** (1 / 52) - 1  # 10% a year, weekly
    discounted = gamma_gamma.clv(bgnbd, x, t_x, age, m, horizon_units=3, discount_rate_per_unit=rate)
    cumulative = [bgnbd.expected_purchases(k, x, t_x, age) for k in (0, 1, 2, 3)]
    by_hand = sum((cumulative[k] - cumulative[k - 1]) / (1 + rate) ** k for k in (1, 2, 3)) * value
    np.testing.assert_allclose(discounted, by_hand, rtol=1e-12)
    assert np.all(gamma_gamma.clv(bgnbd, x, t_x, age, m, 52, rate) < plain)
    # A partial last unit is allowed and lands between its neighbours.
    half = gamma_gamma.clv(bgnbd, x, t_x, age, m, 52.5)
    assert np.all((half >= plain) & (half <= gamma_gamma.clv(bgnbd, x, t_x, age, m, 53)))


def test_expected_value_shrinks_towards_the_population_mean(gamma_gamma: GammaGamma) -> None:
    population = gamma_gamma.population_mean_value()
    assert gamma_gamma.conditional_expected_value(0, 999.0) == pytest.approx(population)
    frequency = np.array([1, 2, 5, 20, 200])
    big = gamma_gamma.conditional_expected_value(frequency, 100.0)
    assert np.all((big > population) & (big < 100.0)) and np.all(np.diff(big) > 0)  # trusts own mean more
    small = gamma_gamma.conditional_expected_value(frequency, 5.0)
    assert np.all((small < population) & (small > 5.0)) and np.all(np.diff(small) < 0)


def test_the_time_unit_does_not_matter(cdnow: pd.DataFrame, bgnbd: BGNBD) -> None:
    daily = rfm_summary(cdnow, "customer_id", "date", "value", CALIBRATION_END, time_unit_days=1)
    in_days = BGNBD().fit(daily[RFM.FREQUENCY], daily[RFM.RECENCY], daily[RFM.T])
    for name in ("r", "a", "b"):
        assert in_days.params_[name] == pytest.approx(bgnbd.params_[name], rel=1e-5)
    assert in_days.params_["alpha"] == pytest.approx(7 * bgnbd.params_["alpha"], rel=1e-5)  # a rate per day
    weekly = rfm_summary(cdnow, "customer_id", "date", "value", CALIBRATION_END)
    args_days = (daily[RFM.FREQUENCY], daily[RFM.RECENCY], daily[RFM.T])
    args_weeks = (weekly[RFM.FREQUENCY], weekly[RFM.RECENCY], weekly[RFM.T])
    np.testing.assert_allclose(in_days.p_alive(*args_days), bgnbd.p_alive(*args_weeks), rtol=1e-5)
    np.testing.assert_allclose(
        in_days.expected_next_purchase_days(*args_days, time_unit_days=1),
        bgnbd.expected_next_purchase_days(*args_weeks, time_unit_days=7),
        rtol=1e-4,
    )


@pytest.mark.parametrize("cls", [BGNBD, ModifiedBGNBD])
def test_exact_gradients_match_finite_differences(
    cls: type[BGNBD] | type[ModifiedBGNBD], summary: pd.DataFrame
) -> None:
    # The fit relies on them; a wrong one would stall L-BFGS-B short of the optimum.
    x, t_x, age = (summary[c].to_numpy(float) for c in (RFM.FREQUENCY, RFM.RECENCY, RFM.T))
    model = cls()
    for params in (np.array([0.243, 4.414, 0.793, 2.426]), np.array([1.3, 0.5, 2.0, 0.3])):
        exact = model._log_lik_and_grad(params, x, t_x, age)[1].sum(axis=0)
        numeric = approx_fprime(params, lambda p: model._log_lik_and_grad(p, x, t_x, age)[0].sum(), 1e-7)
        np.testing.assert_allclose(exact, numeric, rtol=1e-4, atol=1e-2)
    repeat = summary[summary[RFM.FREQUENCY] > 0]
    xm, m = repeat[RFM.FREQUENCY].to_numpy(float), repeat[RFM.MONETARY].to_numpy(float)
    params = np.array([6.25, 3.74, 15.44])
    exact = GammaGamma._log_lik_and_grad(params, xm, m)[1].sum(axis=0)
    numeric = approx_fprime(params, lambda p: GammaGamma._log_lik_and_grad(p, xm, m)[0].sum(), 1e-7)
    np.testing.assert_allclose(exact, numeric, rtol=1e-4, atol=1e-2)


# --- export ----------------------------------------------------------------------------------------------


def test_models_round_trip_through_json(
    summary: pd.DataFrame, bgnbd: BGNBD, mbgnbd: ModifiedBGNBD, gamma_gamma: GammaGamma
) -> None:
    x, t_x, age, m = (summary[c] for c in (RFM.FREQUENCY, RFM.RECENCY, RFM.T, RFM.MONETARY))
    for model in (bgnbd, mbgnbd):
        again = type(model).from_dict(json.loads(json.dumps(model.to_dict())))
        assert again.params_ == model.params_ and again.get_params() == model.get_params()
        np.testing.assert_array_equal(again.p_alive(x, t_x, age), model.p_alive(x, t_x, age))
        np.testing.assert_array_equal(
            again.expected_purchases(39, x, t_x, age), model.expected_purchases(39, x, t_x, age)
        )
        np.testing.assert_array_equal(
            again.expected_next_purchase_days(x, t_x, age), model.expected_next_purchase_days(x, t_x, age)
        )
    gg_again = GammaGamma.from_dict(json.loads(json.dumps(gamma_gamma.to_dict())))
    np.testing.assert_array_equal(gg_again.clv(bgnbd, x, t_x, age, m, 52), gamma_gamma.clv(bgnbd, x, t_x, age, m, 52))
    with pytest.raises(ValueError, match="holds a 'BGNBD'"):
        ModifiedBGNBD.from_dict(bgnbd.to_dict())


def test_estimator_contract() -> None:
    model = BGNBD(penalizer_coef=0.01)
    assert model.get_params()["penalizer_coef"] == 0.01 and not hasattr(model, "params_")
    with pytest.raises(NotFittedError):
        model.p_alive(1, 1.0, 2.0)
    with pytest.raises(ValueError, match="recency"):
        BGNBD().fit([1, 0, 2, 3], [5.0, 0.0, 1.0, 2.0], [4.0, 4.0, 4.0, 4.0])  # recency > T
    with pytest.raises(ValueError, match="recency"):
        BGNBD().fit([1, 0, 2, 3], [1.0, 1.0, 1.0, 2.0], [4.0, 4.0, 4.0, 4.0])  # frequency 0 with a recency
    with pytest.raises(ValueError, match="nobody made a repeat purchase"):
        BGNBD().fit([0, 0, 0, 0], [0.0, 0.0, 0.0, 0.0], [4.0, 3.0, 2.0, 1.0])
    with pytest.raises(ValueError, match="mean value <= 0"):
        GammaGamma().fit([1, 2, 3, 4], [10.0, 0.0, 5.0, 7.0])


# --- the formulas, against the models' own generative story ----------------------------------------------


def _simulate(modified: bool, n: int, seed: int) -> dict[str, np.ndarray]:
    """Customers drawn from (M)BG/NBD with CDNOW-like parameters: calibration stats and what happened next.

    Ages T are spread over 5..40 units; the holdout is 26 units. Returns the calibration (x, t_x, T),
    whether each customer was alive at T, their purchase rate, and the holdout purchase counts.
    """
    rng = np.random.default_rng(seed)
    r, alpha, a, b = 0.4, 5.0, 0.8, 2.5
    lam = rng.gamma(r, 1 / alpha, n)
    p = rng.beta(a, b, n)
    age = rng.uniform(5, 40, n)
    end = age + 26.0
    died_at = np.where(modified & (rng.random(n) < p), 0.0, np.inf)  # MBG: may drop out at the first purchase
    x = np.zeros(n)
    t_x = np.zeros(n)
    holdout = np.zeros(n)
    clock = np.zeros(n)
    active = np.isinf(died_at)
    while active.any():
        idx = np.flatnonzero(active)
        clock[idx] += rng.exponential(1 / lam[idx])
        bought = clock[idx] <= end[idx]
        calib = bought & (clock[idx] <= age[idx])
        x[idx[calib]] += 1
        t_x[idx[calib]] = clock[idx[calib]]
        holdout[idx[bought & ~calib]] += 1
        drops = bought & (rng.random(idx.size) < p[idx])
        died_at[idx[drops]] = clock[idx[drops]]
        active[idx[~bought | drops]] = False
    return {
        "x": x,
        "t_x": t_x,
        "T": age,
        "alive": died_at > age,
        "lam": lam,
        "holdout": holdout,
        "params": np.array([r, alpha, a, b]),
    }


def _agrees(predicted: np.ndarray, observed: np.ndarray, max_se: float) -> bool:
    """The mean of ``observed - predicted`` is within 4 standard errors of 0, which are at most ``max_se``."""
    diff = observed - predicted
    se = diff.std(ddof=1) / np.sqrt(diff.size)
    return bool(se <= max_se and abs(diff.mean()) <= 4 * se)


@pytest.mark.parametrize("cls", [BGNBD, ModifiedBGNBD])
def test_formulas_agree_with_simulated_customers(cls: type[BGNBD] | type[ModifiedBGNBD]) -> None:
    sim = _simulate(cls is ModifiedBGNBD, 100_000, seed=11)
    r, alpha, a, b = sim["params"]
    model = cls.from_dict(
        {"model": cls.__name__, "format_version": 1, "params": {"r": r, "alpha": alpha, "a": a, "b": b}}
    )
    x, t_x, age = sim["x"], sim["t_x"], sim["T"]
    alive = model.p_alive(x, t_x, age)
    expected = model.expected_purchases(26, x, t_x, age)
    groups = {"x=0": x == 0, "x=1": x == 1, "x=2..4": (x >= 2) & (x <= 4), "x>=5": x >= 5}
    for name, rows in groups.items():
        # P(alive) is calibrated, and so are the conditional expectations, in every frequency group.
        assert _agrees(alive[rows], sim["alive"][rows], max_se=0.01), name
        assert _agrees(expected[rows], sim["holdout"][rows], max_se=0.03 * expected[rows].mean()), name
    assert _agrees(model.expected_purchases_new(age), x, max_se=0.01 * x.mean())
    # The median waiting time: each customer with a finite one buys again within it with probability 1/2.
    wait = model.next_purchase_time(x, t_x, age)
    finite = np.isfinite(wait)
    next_purchase = np.random.default_rng(12).exponential(1 / sim["lam"])  # memoryless: the wait after T
    within = sim["alive"] & (next_purchase <= wait)
    assert _agrees(np.full(finite.sum(), 0.5), within[finite].astype(float), max_se=0.01)


# --- rfm_summary on a literal fixture -------------------------------------------------------------------


def test_rfm_summary_counts_days_and_splits_calibration_from_holdout() -> None:
    lines = pd.DataFrame(
        {
            "cust": ["a", "a", "a", "a", "a", "b", "c"],
            "ts": [
                "2020-01-01 09:30",
                "2020-01-01 17:00",  # same customer, same day: one transaction worth 15
                "2020-01-08 12:00",
                "2020-01-22 08:00",
                "2020-02-05 10:00",  # holdout
                "2020-01-15 11:00",
                "2020-02-01 10:00",  # first bought after the calibration period: not in the cohort
            ],
            "amount": [10.0, 5.0, 20.0, 40.0, 7.0, 9.0, 3.0],
        }
    )
    out = rfm_summary(lines, "cust", "ts", "amount", "2020-01-29", observation_end="2020-02-12")
    assert list(out.index) == ["a", "b"]
    a, b = out.loc["a"], out.loc["b"]
    assert (a[RFM.FREQUENCY], a[RFM.RECENCY], a[RFM.T], a[RFM.MONETARY]) == (2, 3.0, 4.0, 30.0)
    assert (a[RFM.FREQUENCY_HOLDOUT], a[RFM.MONETARY_HOLDOUT], a[RFM.DURATION_HOLDOUT]) == (1, 7.0, 2.0)
    assert (b[RFM.FREQUENCY], b[RFM.RECENCY], b[RFM.T], b[RFM.MONETARY], b[RFM.FREQUENCY_HOLDOUT]) == (
        0,
        0.0,
        2.0,
        0.0,
        0,
    )
    assert out[RFM.FREQUENCY].dtype == np.int64

    daily = rfm_summary(lines, "cust", "ts", None, "2020-01-29", time_unit_days=1)
    assert list(daily.columns) == [RFM.FREQUENCY, RFM.RECENCY, RFM.T]
    assert (daily.loc["a", RFM.RECENCY], daily.loc["a", RFM.T]) == (21.0, 28.0)
    with pytest.raises(ValueError, match="not in the transactions"):
        rfm_summary(lines, "customer", "ts", "amount", "2020-01-29")


def test_summary_from_features_reads_frequency_recency_and_age_in_weeks() -> None:
    from models.clv import summary_from_features

    frame = pd.DataFrame(
        {
            "orders_lifetime": [3.0, 1.0, 0.0, np.nan],
            "recency_days": [7.0, 14.0, np.nan, np.nan],
            "tenure_days": [70.0, 14.0, np.nan, np.nan],
        },
        index=["a", "b", "lead", "unknown"],
    )
    out = summary_from_features(frame)
    assert out.loc["a"].tolist() == [2.0, 9.0, 10.0]  # 3 orders: 2 repeats; last order 63 days after the first
    assert out.loc["b"].tolist() == [0.0, 0.0, 2.0]  # one order: no span
    assert out.loc[["lead", "unknown"]].isna().all().all()
    assert list(out.index) == list(frame.index)
