"""Identity resolution as connected components on DuckDB equals the union-find, case by case.

The union-find (features.identity.resolve_identities) is the reference: on random records drawn from
small pools of e-mails, phones and cards (so that clusters chain, strong ids clash and placeholders
repeat), with and without forced merges and splits, both give the same map, review list and report.
The planted duplicates of the synthetic world are compared in test_identity_synthetic.py.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.contract import Col
from features.errors import InputDataError
from features.identity import IdentityOverrides, IdentityResult, Pseudonymizer, resolve_identities
from features.identity_sets import resolve_identities_sets

PSEUDO = Pseudonymizer.for_development()


def _random_customers(rng: np.random.Generator, n: int) -> pd.DataFrame:
    def pick(pool: list[str | None]) -> list[str | None]:
        return [pool[i] for i in rng.integers(0, len(pool), n)]

    emails = [None, None, "a@x.com", "B@x.com ", "b@x.com", "c@y.org", "not-an-email", "d@z.net"]
    phones = [None, None, "+44 20 7946 0001", "020 7946 0001", "+44 20 7946 0002", "12", "+33 1 23 45 67 89"]
    cards = [None, None, None, "L1", "L2", "L3", "0", "n/a"]
    web = [None, None, "w1", "w2", "w3"]
    ids = rng.permutation([f"C{i:03d}" for i in range(n)])
    return pd.DataFrame(
        {
            Col.CUSTOMER_ID: ids,
            Col.EMAIL: pick(emails),  # type: ignore[arg-type]
            Col.PHONE: pick(phones),  # type: ignore[arg-type]
            Col.LOYALTY_ID: pick(cards),  # type: ignore[arg-type]
            Col.WEB_CLIENT_ID: pick(web),  # type: ignore[arg-type]
            Col.COUNTRY: pick(["GB", "FR", None]),  # type: ignore[arg-type]
        }
    )


def _assert_equal(a: IdentityResult, b: IdentityResult) -> None:
    pd.testing.assert_frame_equal(a.mapping, b.mapping)
    pd.testing.assert_frame_equal(a.refused, b.refused)
    assert a.report() == b.report()


@pytest.mark.parametrize("seed", range(12))
def test_components_equal_the_union_find_on_random_records(seed: int) -> None:
    rng = np.random.default_rng(seed)
    customers = _random_customers(rng, int(rng.integers(5, 60)))
    kwargs = {"pseudonymizer": PSEUDO, "max_shared": int(rng.integers(3, 12))}
    a = resolve_identities(customers, **kwargs)  # type: ignore[arg-type]
    b = resolve_identities_sets(customers, **kwargs)  # type: ignore[arg-type]
    _assert_equal(a, b)
    if seed == 0:
        assert a.report()["clusters_merged"] > 0 and a.report()["refused_merges"] > 0, "the case exercises both"


@pytest.mark.parametrize("seed", range(6))
def test_components_equal_the_union_find_with_overrides(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    customers = _random_customers(rng, 40)
    ids = sorted(customers[Col.CUSTOMER_ID])
    pairs = [tuple(rng.choice(ids, 2, replace=False)) for _ in range(6)]
    merges, splits = tuple(pairs[:3]), tuple(pairs[3:])
    try:
        expected: IdentityResult | str = resolve_identities(
            customers, pseudonymizer=PSEUDO, overrides=IdentityOverrides(merges, splits)
        )
    except InputDataError as exc:  # a split of two records the merges join: both must refuse it alike
        expected = str(exc)
    try:
        found: IdentityResult | str = resolve_identities_sets(
            customers, pseudonymizer=PSEUDO, overrides=IdentityOverrides(merges, splits)
        )
    except InputDataError as exc:
        found = str(exc)
    if isinstance(expected, str) or isinstance(found, str):
        assert expected == found
    else:
        _assert_equal(expected, found)


def test_an_override_naming_an_unknown_record_is_refused_alike() -> None:
    customers = _random_customers(np.random.default_rng(3), 10)
    overrides = IdentityOverrides((("C000", "C999"),))
    with pytest.raises(InputDataError) as union_find:
        resolve_identities(customers, pseudonymizer=PSEUDO, overrides=overrides)
    with pytest.raises(InputDataError) as components:
        resolve_identities_sets(customers, pseudonymizer=PSEUDO, overrides=overrides)
    assert str(union_find.value) == str(components.value)


def test_no_links_no_merges() -> None:
    customers = pd.DataFrame({Col.CUSTOMER_ID: ["b", "a", "c"]})
    result = resolve_identities_sets(customers, pseudonymizer=PSEUDO)
    assert result.mapping[Col.CUSTOMER_ID].tolist() == ["a", "b", "c"]
    assert result.mapping[Col.CUSTOMER_KEY].nunique() == 3
    _assert_equal(resolve_identities(customers, pseudonymizer=PSEUDO), result)
