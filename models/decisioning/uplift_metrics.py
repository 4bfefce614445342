"""Uplift evaluation on randomised data: Qini curve and area, uplift at k, and off-policy value (IPS, DR).

Qini (Radcliffe, 2007). Rank customers by predicted uplift, best first. After the top ``t`` rows with
``n_t(t)`` treated and ``n_c(t)`` control customers, of whom ``y_t(t)`` and ``y_c(t)`` bought,

    Q(t) = y_t(t) - y_c(t) * n_t(t) / n_c(t)

is the incremental number of buyers had the top ``t`` been treated (counted in treated-group size). A
model that ranks at random follows the straight line from ``(0, 0)`` to ``(N, Q(N))``. The Qini AUC
reported here is the area between the curve and that line, divided by ``N`` twice (x axis as a share of
customers, y axis as incremental buyers per customer): 0 for a random ranking, positive when the model
puts the persuadable first. Ties in the score are broken by the row order (callers shuffle first).

Off-policy value. Logged sends ``i`` took arm ``a_i`` with known probability ``p(a_i)`` and earned
``r_i``. A policy ``pi`` maps a customer to an arm. Inverse propensity scoring (IPS) averages
``1[a_i = pi(x_i)] r_i / p(a_i)``; doubly robust (DR) adds a reward model ``m(x, a)``:
``m(x_i, pi(x_i)) + 1[a_i = pi(x_i)] (r_i - m(x_i, a_i)) / p(a_i)`` (Dudik, Langford and Li, 2011). Both
are unbiased under randomisation; DR has lower variance when ``m`` is good.

scikit-uplift's definitions (:func:`qini_coefficient`, :func:`auuc`, :func:`uplift_at_k`). The curves
are evaluated where the score changes: rows are sorted by score, highest first, by
``argsort(score, kind="mergesort")[::-1]`` (tied rows in reverse row order), and a point is taken after
the last row of each run of equal scores, so a tie enters the curve all at once and the curve does not
depend on how ties are ordered. With ``N(t)`` rows above the threshold ``t``:

* Qini curve ``Q(t) = y_t(t) - y_c(t) n_t(t) / n_c(t)`` (0 when ``n_c = 0``);
* uplift curve ``U(t) = (y_t / n_t - y_c / n_c) N(t)`` (each rate 0 when its group is empty);

both start at ``(0, 0)``. The normalised Qini coefficient (sklift's ``qini_auc_score``) and AUUC
(``uplift_auc_score``) are ``(area(curve) - area(random)) / (area(perfect) - area(random))`` with the
trapezoid rule, the random line from ``(0, 0)`` to the perfect curve's end, and the perfect curve that of
the score ``y t - y (1 - t)`` (Qini, negative effects allowed) or ``2 [y = t] + (y if control responders
outnumber treated non-responders else t)`` (uplift). 1 = the perfect ranking, 0 = random. They are
defined for a binary outcome only (the perfect curve of a continuous one is not); the curves and
:func:`qini_auc` take any outcome. Our argument order is ``(score, treated, y)``; sklift's is
``(y_true, uplift, treatment)``. ``tests/models/decisioning/test_uplift_metrics.py`` checks every value
against scikit-uplift 0.5.1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "Contrast",
    "OffPolicy",
    "auuc",
    "dr_difference",
    "dr_value",
    "ips_value",
    "policy_contrast",
    "qini_auc",
    "qini_coefficient",
    "qini_curve",
    "qini_points",
    "uplift_at_k",
    "uplift_points",
]


def _check(
    score: np.ndarray, treated: np.ndarray, y: np.ndarray, binary: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    s = np.asarray(score, dtype=np.float64)
    t = np.asarray(treated, dtype=bool)
    o = np.asarray(y, dtype=np.float64)
    if not (s.shape == t.shape == o.shape) or s.ndim != 1:
        raise ValueError(f"score, treated and y must be 1-d of one length, got {s.shape}, {t.shape}, {o.shape}")
    if not t.any() or t.all():
        raise ValueError("both treated and control rows are needed")
    if np.isnan(s).any():
        raise ValueError("score holds NaN")
    if not np.isfinite(o).all():
        raise ValueError("y holds NaN or infinity")
    if binary and not np.isin(o, (0.0, 1.0)).all():
        raise ValueError("this score is defined for a 0/1 outcome only (use qini_auc or the curves for spend)")
    return s, t, o


def qini_curve(score: np.ndarray, treated: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The Qini curve: ``(share of customers targeted, incremental buyers)``, both starting at 0.

    Args:
        score: predicted uplift per customer (higher = treat first).
        treated: True for customers who got the offer, False for the control.
        y: outcome (1 bought).
    """
    s, t, o = _check(score, treated, y)
    order = np.argsort(-s, kind="stable")
    t, o = t[order], o[order]
    n_t = np.cumsum(t)
    n_c = np.cumsum(~t)
    y_t = np.cumsum(o * t)
    y_c = np.cumsum(o * ~t)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(n_c > 0, y_t - y_c * n_t / n_c, y_t)
    share = np.arange(1, len(s) + 1) / len(s)
    return np.concatenate([[0.0], share]), np.concatenate([[0.0], q])


def qini_auc(score: np.ndarray, treated: np.ndarray, y: np.ndarray) -> float:
    """Area between the Qini curve and the random line, per customer (0 = random ranking)."""
    share, q = qini_curve(score, treated, y)
    n = len(share) - 1
    gain = q - share * q[-1]
    return float(np.trapezoid(gain, share) / n)


def uplift_at_k(
    score: np.ndarray, treated: np.ndarray, y: np.ndarray, k: float = 0.3, strategy: str = "overall"
) -> float:
    """Outcome rate (or mean) of treated minus control among the top ``k`` by score, as scikit-uplift.

    Args:
        score, treated, y: predicted uplift, treatment flag and outcome (any numbers) per row.
        k: a share in (0, 1) of the rows (``int(n * k)`` of them), or an ``int`` count.
        strategy: ``"overall"``: the top ``k`` of all rows, then each group's mean among them;
            ``"by_group"``: the top ``k`` share (or count) of each group separately.

    Returns:
        The difference; NaN when a group has no row among the top (sklift returns NaN with a warning).
    """
    s, t, o = _check(score, treated, y, binary=False)
    if strategy not in ("overall", "by_group"):
        raise ValueError(f"strategy must be 'overall' or 'by_group', got {strategy!r}")
    n = len(s)
    is_int = isinstance(k, (int, np.integer)) and not isinstance(k, bool)
    if (is_int and not 0 < k < n) or (not is_int and not 0.0 < float(k) < 1.0):
        raise ValueError(f"k must be a share in (0, 1) or a count in (0, {n}), got {k}")
    order = np.argsort(s, kind="mergesort")[::-1]  # sklift's order: ties in reverse row order
    t, o = t[order], o[order]
    if strategy == "overall":
        top = int(k) if is_int else int(n * float(k))
        tt, oo = t[:top], o[:top]
        treated_top, control_top = oo[tt], oo[~tt]
    else:
        n_t = int(k) if is_int else int(t.sum() * float(k))
        n_c = int(k) if is_int else int((~t).sum() * float(k))
        if n_t > t.sum() or n_c > (~t).sum():
            raise ValueError(f"k={k} asks for more rows than a group has ({int(t.sum())} treated, {int((~t).sum())})")
        treated_top, control_top = o[t][:n_t], o[~t][:n_c]
    if len(treated_top) == 0 or len(control_top) == 0:
        return float("nan")
    return float(treated_top.mean() - control_top.mean())


def _thresholds(score: np.ndarray, treated: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, ...]:
    """Cumulative counts after each run of equal scores (highest first, sklift's order)."""
    order = np.argsort(score, kind="mergesort")[::-1]
    s, t, o = score[order], treated[order], y[order]
    idx = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    n_all = (idx + 1).astype(np.float64)
    n_t = np.cumsum(t, dtype=np.float64)[idx]
    y_t = np.cumsum(np.where(t, o, 0.0))[idx]
    y_c = np.cumsum(np.where(t, 0.0, o))[idx]
    return n_all, n_t, n_all - n_t, y_t, y_c


def qini_points(score: np.ndarray, treated: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """scikit-uplift's Qini curve: ``(rows targeted, incremental outcome)`` at each distinct score, from (0, 0)."""
    s, t, o = _check(score, treated, y, binary=False)
    n_all, n_t, n_c, y_t, y_c = _thresholds(s, t, o)
    ratio = np.divide(n_t, n_c, out=np.zeros_like(n_t), where=n_c != 0)
    return np.r_[0.0, n_all], np.r_[0.0, y_t - y_c * ratio]


def uplift_points(score: np.ndarray, treated: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """scikit-uplift's uplift curve: ``(rows targeted, (rate_t - rate_c) x rows)`` at each distinct score."""
    s, t, o = _check(score, treated, y, binary=False)
    n_all, n_t, n_c, y_t, y_c = _thresholds(s, t, o)
    rate_t = np.divide(y_t, n_t, out=np.zeros_like(y_t), where=n_t != 0)
    rate_c = np.divide(y_c, n_c, out=np.zeros_like(y_c), where=n_c != 0)
    return np.r_[0.0, n_all], np.r_[0.0, (rate_t - rate_c) * n_all]


def _normalised(actual: tuple[np.ndarray, np.ndarray], perfect: tuple[np.ndarray, np.ndarray]) -> float:
    x_p, y_p = perfect
    random_area = float(np.trapezoid([0.0, y_p[-1]], [0.0, x_p[-1]]))
    best = float(np.trapezoid(y_p, x_p)) - random_area
    if best == 0:
        raise ValueError("the perfect curve has no area above the random line: the score cannot be normalised")
    return (float(np.trapezoid(actual[1], actual[0])) - random_area) / best


def qini_coefficient(score: np.ndarray, treated: np.ndarray, y: np.ndarray, negative_effect: bool = True) -> float:
    """Normalised area under the Qini curve (scikit-uplift's ``qini_auc_score``): 1 perfect, 0 random.

    Args:
        score, treated, y: predicted uplift, treatment flag and a binary outcome per row.
        negative_effect: the perfect curve may show negative effects (sklift's default); False: the
            perfect curve rises to the overall incremental outcome at once and stays there.
    """
    s, t, o = _check(score, treated, y, binary=True)
    if negative_effect:
        perfect = qini_points(o * t - o * ~t, t, o)
    else:
        gain = float(o[t].sum() - t.sum() * o[~t].sum() / (~t).sum())
        if gain < 0:  # sklift's perfect curve then runs backwards and sklearn's auc refuses it
            raise ValueError("the overall effect is negative: without negative effects there is no perfect Qini curve")
        perfect = (np.array([0.0, gain, len(o)]), np.array([0.0, gain, gain]))
    return _normalised(qini_points(s, t, o), perfect)


def auuc(score: np.ndarray, treated: np.ndarray, y: np.ndarray) -> float:
    """Normalised area under the uplift curve (scikit-uplift's ``uplift_auc_score``): 1 perfect, 0 random."""
    s, t, o = _check(score, treated, y, binary=True)
    control_responders = int(((o == 1) & ~t).sum())
    treated_non_responders = int(((o == 0) & t).sum())
    summand = o if control_responders > treated_non_responders else t.astype(np.float64)
    perfect = uplift_points(2.0 * (o == t) + summand, t, o)
    return _normalised(uplift_points(s, t, o), perfect)


@dataclass(frozen=True)
class OffPolicy:
    """An off-policy estimate: value per logged send and its standard error; ``matched`` rows followed the policy."""

    value: float
    std_error: float
    matched: int


def _check_logged(
    logged_arm: np.ndarray, propensity: np.ndarray, policy_arm: np.ndarray, reward: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    a = np.asarray(logged_arm)
    p = np.asarray(propensity, dtype=np.float64)
    pi = np.asarray(policy_arm)
    r = np.asarray(reward, dtype=np.float64)
    if not (a.shape == p.shape == pi.shape == r.shape) or a.ndim != 1:
        raise ValueError("logged_arm, propensity, policy_arm and reward must be 1-d of one length")
    if (p <= 0).any() or (p > 1).any():
        raise ValueError("propensities must be in (0, 1]")
    return a, p, pi, r


def ips_value(logged_arm: np.ndarray, propensity: np.ndarray, policy_arm: np.ndarray, reward: np.ndarray) -> OffPolicy:
    """Inverse propensity estimate of the policy's mean reward per customer.

    Args:
        logged_arm: the arm each logged send took (integer codes).
        propensity: the probability the logging policy had of taking that arm.
        policy_arm: the arm the evaluated policy picks for the same customer (same codes).
        reward: the realised reward of each logged send.
    """
    a, p, pi, r = _check_logged(logged_arm, propensity, policy_arm, reward)
    match = a == pi
    terms = np.where(match, r / p, 0.0)
    return OffPolicy(float(terms.mean()), float(terms.std(ddof=1) / np.sqrt(len(terms))), int(match.sum()))


def dr_value(
    logged_arm: np.ndarray,
    propensity: np.ndarray,
    policy_arm: np.ndarray,
    reward: np.ndarray,
    reward_model: np.ndarray,
) -> OffPolicy:
    """Doubly robust estimate of the policy's mean reward per customer.

    Args:
        logged_arm, propensity, policy_arm, reward: as in :func:`ips_value` (arm codes index the columns
            of ``reward_model``).
        reward_model: ``(n, n_arms)`` predicted reward of every arm for every logged customer.
    """
    a, p, pi, r = _check_logged(logged_arm, propensity, policy_arm, reward)
    m = np.asarray(reward_model, dtype=np.float64)
    terms = _dr_terms(a, p, pi, r, m)
    return OffPolicy(float(terms.mean()), float(terms.std(ddof=1) / np.sqrt(len(terms))), int((a == pi).sum()))


def _dr_terms(a: np.ndarray, p: np.ndarray, pi: np.ndarray, r: np.ndarray, m: np.ndarray) -> np.ndarray:
    if m.ndim != 2 or m.shape[0] != len(a):
        raise ValueError(f"reward_model must be (n, n_arms), got {m.shape}")
    rows = np.arange(len(a))
    return m[rows, pi] + np.where(a == pi, (r - m[rows, a]) / p, 0.0)


def dr_difference(
    logged_arm: np.ndarray,
    propensity: np.ndarray,
    policy_arm: np.ndarray,
    baseline_arm: np.ndarray,
    reward: np.ndarray,
    reward_model: np.ndarray,
) -> OffPolicy:
    """Doubly robust estimate of ``value(policy) - value(baseline)`` per customer, with its paired standard
    error (both policies are evaluated on the same sends, so most of their noise cancels).

    ``matched`` counts the sends where the two policies differ.
    """
    a, p, pi, r = _check_logged(logged_arm, propensity, policy_arm, reward)
    base = np.asarray(baseline_arm)
    if base.shape != a.shape:
        raise ValueError("baseline_arm must have the shape of logged_arm")
    m = np.asarray(reward_model, dtype=np.float64)
    diff = _dr_terms(a, p, pi, r, m) - _dr_terms(a, p, base, r, m)
    return OffPolicy(float(diff.mean()), float(diff.std(ddof=1) / np.sqrt(len(diff))), int((pi != base).sum()))


@dataclass(frozen=True)
class Contrast:
    """``value(policy) - value(baseline)`` per logged send by IPS and DR, each with a standard error and a
    normal confidence interval (``level``); the errors are clustered by customer when clusters are given."""

    ips: float
    ips_se: float
    ips_low: float
    ips_high: float
    dr: float
    dr_se: float
    dr_low: float
    dr_high: float
    differing: int  # sends where the two policies choose differently
    level: float


def _mean_se(terms: np.ndarray, clusters: np.ndarray | None) -> tuple[float, float]:
    """The mean of per-send terms and its standard error; cluster-robust (sends of one customer are not
    independent) when ``clusters`` is given: ``sqrt(G / (G - 1) * sum_g (S_g - n_g mean)^2) / n``."""
    n = len(terms)
    mean = float(terms.mean())
    if clusters is None:
        return mean, float(terms.std(ddof=1) / np.sqrt(n))
    _, group = np.unique(np.asarray(clusters), return_inverse=True)
    g = int(group.max()) + 1
    if g < 2:
        raise ValueError("clustered standard errors need at least two clusters")
    resid = np.bincount(group, weights=terms - mean, minlength=g)
    return mean, float(np.sqrt(g / (g - 1) * (resid**2).sum()) / n)


def policy_contrast(
    logged_arm: np.ndarray,
    propensity: np.ndarray,
    policy_arm: np.ndarray,
    baseline_arm: np.ndarray,
    reward: np.ndarray,
    reward_model: np.ndarray,
    *,
    clusters: np.ndarray | None = None,
    level: float = 0.95,
) -> Contrast:
    """IPS and doubly robust estimates of how much more ``policy_arm`` earns than ``baseline_arm`` per send,
    paired on the same logged sends, with analytic (normal) intervals.

    Args:
        logged_arm, propensity, reward, reward_model: as in :func:`dr_value`.
        policy_arm, baseline_arm: the arm each policy picks for every logged send.
        clusters: the customer of each send (standard errors clustered by customer); None: independent sends.
        level: the interval's coverage.
    """
    from statistics import NormalDist

    a, p, pi, r = _check_logged(logged_arm, propensity, policy_arm, reward)
    base = np.asarray(baseline_arm)
    if base.shape != a.shape:
        raise ValueError("baseline_arm must have the shape of logged_arm")
    if clusters is not None and np.asarray(clusters).shape != a.shape:
        raise ValueError("clusters must have one value per logged send")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    m = np.asarray(reward_model, dtype=np.float64)
    ips_terms = np.where(a == pi, r / p, 0.0) - np.where(a == base, r / p, 0.0)
    dr_terms = _dr_terms(a, p, pi, r, m) - _dr_terms(a, p, base, r, m)
    z = NormalDist().inv_cdf(0.5 + level / 2)
    ips, ips_se = _mean_se(ips_terms, clusters)
    dr, dr_se = _mean_se(dr_terms, clusters)
    return Contrast(
        ips,
        ips_se,
        ips - z * ips_se,
        ips + z * ips_se,
        dr,
        dr_se,
        dr - z * dr_se,
        dr + z * dr_se,
        int((pi != base).sum()),
        level,
    )
