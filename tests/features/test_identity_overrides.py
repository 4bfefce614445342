"""Identity overrides (issue 18): forced merges and forced splits, their file formats and their errors."""

from __future__ import annotations

import random
from pathlib import Path

import pandas as pd
import pytest

from features.contract import Col
from features.errors import InputDataError
from features.identity import (
    SPLIT_CONFLICT,
    IdentityOverrides,
    RefusedCol,
    load_identity_overrides,
)
from tests.features.test_identity import customers, groups, key, partition, resolve

# c1 and c2 share an e-mail; c2 and c3 a phone; c4 and c5 hold different loyalty cards and share an e-mail
# (the guard refuses them); c6 shares nothing with anyone.
RECORDS = customers(
    ("c1", "ann@example.com", None, None, None, "GB"),
    ("c2", "ann@example.com", "+44 7700 900001", None, None, "GB"),
    ("c3", None, "+44 7700 900001", None, None, "GB"),
    ("c4", "bob@example.com", None, "L1", None, "GB"),
    ("c5", "bob@example.com", None, "L2", None, "GB"),
    ("c6", "cat@example.com", None, None, None, "GB"),
)


def test_without_overrides_the_rules_decide() -> None:
    assert partition(resolve(RECORDS).mapping) == groups(["c1", "c2", "c3"], ["c4"], ["c5"], ["c6"])


def test_a_forced_merge_joins_records_the_rules_would_not_even_across_loyalty_cards() -> None:
    result = resolve(RECORDS, overrides=IdentityOverrides(merges=(("c6", "c1"), ("c5", "c4"))))
    assert partition(result.mapping) == groups(["c1", "c2", "c3", "c6"], ["c4", "c5"])
    keys = result.mapping.set_index(Col.CUSTOMER_ID)[Col.CUSTOMER_KEY]
    assert keys["c6"] == keys["c1"] == key("c1") and keys["c5"] == key("c4")  # named after the smallest id
    assert result.merges_by_kind["override"] == 2 and result.report()["refused_merges"] == 0


def test_a_forced_split_refuses_the_link_that_would_join_them_and_lists_it() -> None:
    result = resolve(RECORDS, overrides=IdentityOverrides(splits=(("c3", "c1"),)))
    # e-mail links come before phone links: c1-c2 join, then the phone link c2-c3 would bring c3 to c1
    assert partition(result.mapping) == groups(["c1", "c2"], ["c3"], ["c4"], ["c5"], ["c6"])
    refused = result.refused.set_index(RefusedCol.CONFLICT)
    row = refused.loc[SPLIT_CONFLICT]
    assert (row[RefusedCol.CUSTOMER_ID_A], row[RefusedCol.CUSTOMER_ID_B]) == ("c2", "c3")
    assert row[RefusedCol.LINK_KIND] == Col.PHONE
    direct = resolve(RECORDS, overrides=IdentityOverrides(splits=(("c1", "c2"),)))
    assert partition(direct.mapping) == groups(["c1"], ["c2", "c3"], ["c4"], ["c5"], ["c6"])


def test_overrides_never_depend_on_the_order_of_records_or_of_the_file() -> None:
    merges = (("c6", "c1"), ("c5", "c4"))
    splits = (("c3", "c1"), ("c6", "c4"))
    want = resolve(RECORDS, overrides=IdentityOverrides(merges, splits))
    rng = random.Random(5)
    for _ in range(5):
        rows = RECORDS.sample(frac=1.0, random_state=rng.randrange(1000))
        flipped = IdentityOverrides(
            tuple((b, a) for a, b in reversed(merges)), tuple((b, a) for a, b in reversed(splits))
        )
        got = resolve(rows, overrides=flipped)
        pd.testing.assert_frame_equal(got.mapping, want.mapping)
        pd.testing.assert_frame_equal(got.refused, want.refused)


def test_contradictions_and_unknown_ids_are_refused_naming_where() -> None:
    contradiction = IdentityOverrides(
        merges=(("c1", "c6"), ("c6", "c4")), splits=(("c1", "c4"),), split_where=("o.csv line 4",)
    )
    with pytest.raises(InputDataError, match=r"o.csv line 4: 'c1' and 'c4' must be apart, but the forced merges"):
        resolve(RECORDS, overrides=contradiction)
    unknown = IdentityOverrides(merges=(("c1", "nobody"),), merge_where=("o.csv line 2",))
    with pytest.raises(InputDataError, match=r"o.csv line 2: customer id\(s\) \['nobody'\] not among"):
        resolve(RECORDS, overrides=unknown)
    with pytest.raises(InputDataError, match="a merge of 'c1' with itself"):
        IdentityOverrides(merges=(("c1", "c1"),))


def test_the_csv_format_and_the_review_list_round_trip(tmp_path: Path) -> None:
    """A row of the review list (identity_review.parquet) becomes a forced merge by adding its action."""
    review = resolve(RECORDS).refused
    assert len(review) == 1
    path = tmp_path / "overrides.csv"
    rows = review[[RefusedCol.CUSTOMER_ID_A, RefusedCol.CUSTOMER_ID_B]].assign(action="merge", note="same person")
    rows.to_csv(path, index=False)
    with path.open("a", encoding="utf-8") as handle:
        handle.write("\nc1,c3, SPLIT ,shared phone\n")  # columns in the review list order, then action
    overrides = load_identity_overrides(path)
    assert overrides.merges == (("c4", "c5"),) and overrides.splits == (("c1", "c3"),)
    assert overrides.split_where == (f"{path} line 4",)  # the blank line 3 is skipped, still counted
    result = resolve(RECORDS, overrides=overrides)
    assert partition(result.mapping) == groups(["c1", "c2"], ["c3"], ["c4", "c5"], ["c6"])


def test_the_yaml_format_takes_groups(tmp_path: Path) -> None:
    path = tmp_path / "overrides.yaml"
    path.write_text("merge:\n  - [c4, c5, c6]\nsplit:\n  - [c1, c2, c3]\n", encoding="utf-8")
    overrides = load_identity_overrides(path)
    assert overrides.merges == (("c4", "c5"), ("c4", "c6"))
    assert overrides.splits == (("c1", "c2"), ("c1", "c3"), ("c2", "c3"))
    assert overrides.split_where == (f"{path} split[0]",) * 3
    result = resolve(RECORDS, overrides=overrides)
    assert partition(result.mapping) == groups(["c1"], ["c2"], ["c3"], ["c4", "c5", "c6"])
    assert (result.refused[RefusedCol.CONFLICT] == SPLIT_CONFLICT).sum() == 2  # the e-mail and the phone links


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("o.csv", "action,customer_id_a\nmerge,c1\n", r"o.csv line 1: missing column\(s\) \['customer_id_b'\]"),
        ("o.csv", "action,customer_id_a,customer_id_b\nmerge,c1,c2\njoin,c1,c3\n", "o.csv line 3: action must be"),
        ("o.csv", "action,customer_id_a,customer_id_b\nsplit,c1,\n", "o.csv line 2: a split needs two customer ids"),
        ("o.yaml", "merge: [c1, c2]\n", r"o.yaml merge\[0\]: a group is a list of two or more customer ids"),
        ("o.yaml", "merges:\n  - [c1, c2]\n", r"expected the keys merge and split at the top, not \['merges'\]"),
        ("o.yaml", "merge: {c1: c2}\n", "o.yaml: merge must be a list of groups"),
        ("o.yaml", "merge: [[c1, c2]\n", "o.yaml: not valid YAML"),
        ("o.txt", "merge c1 c2\n", "o.txt: identity overrides must be a .csv or .yaml file"),
    ],
)
def test_a_malformed_file_is_named_with_its_line_or_group(tmp_path: Path, name: str, text: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputDataError, match=message):
        load_identity_overrides(path)
    with pytest.raises(InputDataError, match="identity overrides: no file at"):
        load_identity_overrides(tmp_path / "missing.csv")
