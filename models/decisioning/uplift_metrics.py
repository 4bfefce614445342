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
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["OffPolicy", "dr_difference", "dr_value", "ips_value", "qini_auc", "qini_curve", "uplift_at_k"]


def _check(score: np.ndarray, treated: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    s = np.asarray(score, dtype=np.float64)
    t = np.asarray(treated, dtype=bool)
    o = np.asarray(y, dtype=np.float64)
    if not (s.shape == t.shape == o.shape) or s.ndim != 1:
        raise ValueError(f"score, treated and y must be 1-d of one length, got {s.shape}, {t.shape}, {o.shape}")
    if not t.any() or t.all():
        raise ValueError("both treated and control rows are needed")
    if np.isnan(s).any():
        raise ValueError("score holds NaN")
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


def uplift_at_k(score: np.ndarray, treated: np.ndarray, y: np.ndarray, k: float = 0.3) -> float:
    """Purchase rate of treated minus control among the top ``k`` share by score (NaN if an arm is empty)."""
    s, t, o = _check(score, treated, y)
    if not 0.0 < k <= 1.0:
        raise ValueError(f"k must be in (0, 1], got {k}")
    top = np.argsort(-s, kind="stable")[: max(1, round(k * len(s)))]
    tt, oo = t[top], o[top]
    if not tt.any() or tt.all():
        return float("nan")
    return float(oo[tt].mean() - oo[~tt].mean())


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
