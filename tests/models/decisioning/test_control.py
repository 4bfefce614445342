"""The global control group: deterministic, close to its share, stable as the share grows."""

from __future__ import annotations

import numpy as np
import pytest

from models.decisioning.control import ControlGroup, in_control


def _keys(n: int) -> list[str]:
    return [f"ck_{i:08x}" for i in range(n)]


def test_share_is_close_to_the_setting_and_deterministic() -> None:
    keys = _keys(20_000)
    members = in_control(keys)
    assert 0.045 < members.mean() < 0.055  # 5% default; binomial sd is 0.0015
    assert np.array_equal(members, in_control(list(reversed(keys)))[::-1])  # order does not matter
    assert np.array_equal(members, ControlGroup().contains(keys))


def test_salt_draws_another_group_and_share_only_adds_members() -> None:
    keys = _keys(5_000)
    a = in_control(keys, share=0.05, salt="one")
    b = in_control(keys, share=0.05, salt="two")
    assert (a & b).sum() < 0.2 * a.sum()  # independent draws overlap by ~5%
    assert np.all(in_control(keys, share=0.10, salt="one")[a])
    assert not in_control(keys, share=0.0).any()


def test_bad_keys_and_shares_are_refused() -> None:
    with pytest.raises(ValueError, match="customer_key"):
        in_control(["ok", ""])
    with pytest.raises(ValueError):
        ControlGroup(share=1.5)


def test_control_report_counts_and_flags_imbalance() -> None:
    import pandas as pd

    from models.decisioning.control import control_report

    keys = _keys(4000)
    group = ControlGroup(share=0.2)
    held = group.contains(keys)
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {
            "customer_key": keys,
            "balanced": rng.normal(50, 10, len(keys)),
            "skewed": np.where(held, 60.0, 50.0) + rng.normal(0, 10, len(keys)),  # 1 sd apart
        }
    )
    frame.loc[0, "balanced"] = np.nan  # missing values are left out, not dropped customers
    report = control_report(frame, group, ["balanced", "skewed"]).set_index("column")
    assert report.loc["customers", "control"] == held.sum() and report.loc["customers", "rest"] == (~held).sum()
    assert abs(report.loc["balanced", "std_diff"]) < 0.1
    assert report.loc["skewed", "std_diff"] == pytest.approx(1.0, abs=0.1)  # 10 apart, sd 10 in each group
    with pytest.raises(ValueError, match="nope"):
        control_report(frame, group, ["nope"])
