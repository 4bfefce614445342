"""The policy file: documented defaults, YAML and TOML alike, refusals that name the key, quantile cuts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.decisioning.control import ControlGroup
from models.decisioning.marketing_policy import (
    BandCuts,
    MarketingPolicy,
    PolicyFileError,
    load_policy,
    parse_policy,
    resolve_cuts,
)
from models.decisioning.policy import Cap, PolicyConfig

YAML = """
name: spring
contact:
  channel_caps:
    email: [{max_messages: 2, per_hours: 24}]
  quiet_hours: [21, 9]
control: {share: 0.1}
resend: {days: 2}
bands:
  default: {thresholds: [0.2, 0.5]}
  churn: {quantiles: [0.5, 0.9]}
"""

TOML = """
name = "spring"
[contact]
quiet_hours = [21, 9]
[contact.channel_caps]
email = [{max_messages = 2, per_hours = 24}]
[control]
share = 0.1
[resend]
days = 2
[bands.default]
thresholds = [0.2, 0.5]
[bands.churn]
quantiles = [0.5, 0.9]
"""


def test_no_file_is_every_documented_default() -> None:
    policy = load_policy(None)
    assert policy.contact == PolicyConfig() and policy.control == ControlGroup()
    assert policy.contact.quiet_hours == (22, 8) and policy.control.share == 0.05
    assert policy.resend.enabled and policy.resend.days == 3
    assert policy.cuts("churn") is None  # each model keeps the cuts it was trained with


def test_yaml_and_toml_give_the_same_policy_and_version(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(YAML)
    (tmp_path / "p.toml").write_text(TOML)
    a, b = load_policy(tmp_path / "p.yaml"), load_policy(tmp_path / "p.toml")
    assert a == b and a.version() == b.version() and a.version() != MarketingPolicy().version()
    assert a.contact.channel_caps == {"email": [Cap(max_messages=2, per_hours=24)]}  # the other channels: uncapped
    assert a.cuts("churn") == BandCuts(quantiles=(0.5, 0.9)) and a.cuts("purchase") == BandCuts(thresholds=(0.2, 0.5))
    rules = a.describe()["rules"]
    assert "quiet hours: 21:00-09:00 local" in rules and "control group: 10.0% (salt kairos-control-v1)" in rules


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("contact: {channel_caps: {fax: [{max_messages: 1, per_hours: 1}]}}", "contact.channel_caps"),
        ("control: {share: 1.5}", "control.share"),
        ("bands: {churn: {thresholds: [0.6, 0.3]}}", "bands.churn"),
        ("bands: {churn: {thresholds: [0.3, 0.6], quantiles: [0.5, 0.9]}}", "bands.churn"),
        ("resend: {days: 0}", "resend.days"),
        ("colour: blue", "colour"),
        ("- just\n- a list", "mapping"),
    ],
)
def test_a_bad_policy_is_refused_naming_the_key(text: str, where: str) -> None:
    with pytest.raises(PolicyFileError, match=where.replace(".", r"\.")):
        parse_policy(text, "yaml")


def test_a_file_of_another_kind_or_missing_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PolicyFileError, match=r"\.yaml, \.yml or \.toml"):
        load_policy(tmp_path / "p.json")
    with pytest.raises(PolicyFileError, match="cannot be read"):
        load_policy(tmp_path / "none.yaml")


def test_quantile_cuts_split_the_scores_where_asked() -> None:
    scores = np.linspace(0.01, 0.99, 1001)
    low, high = resolve_cuts(BandCuts(quantiles=(0.5, 0.9)), np.append(scores, np.nan))
    assert low == pytest.approx(0.5, abs=1e-3) and high == pytest.approx(0.892, abs=1e-3)
    assert resolve_cuts(BandCuts(thresholds=(0.2, 0.4)), scores) == (0.2, 0.4)
    same = resolve_cuts(BandCuts(quantiles=(0.5, 0.9)), np.full(50, 0.0))  # a constant score: still increasing
    assert 0.0 < same[0] < same[1] < 1.0
