"""E-mail and phone normalisers: literal cases with known answers, plus properties."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.normalize import normalize_emails, normalize_phones, normalize_regions


def _emails(*values: object) -> tuple[list[object], list[bool]]:
    normalised, valid = normalize_emails(pd.Series(list(values), dtype=object))
    return [None if pd.isna(v) else v for v in normalised], valid.tolist()


def _phones(values: list[object], regions: list[object] | str) -> tuple[list[object], list[bool]]:
    region_arg = regions if isinstance(regions, str) else pd.Series(regions, dtype=object)
    normalised, valid = normalize_phones(pd.Series(values, dtype=object), region_arg)
    return [None if pd.isna(v) else v for v in normalised], valid.tolist()


class TestEmails:
    def test_case_and_whitespace_are_noise(self) -> None:
        normalised, valid = _emails(" Jane.Doe@Example.COM ", "jane.doe@example.com", "jane.doe @example.com\u00a0")
        assert normalised == ["jane.doe@example.com"] * 3
        assert valid == [True, True, True]

    def test_missing_is_not_malformed(self) -> None:
        normalised, valid = _emails(None, float("nan"), "", "   ", pd.NA)
        assert normalised == [None] * 5
        assert valid == [True] * 5

    @pytest.mark.parametrize(
        "value",
        [
            "a@b",  # no dot in the domain
            "a@b.c",  # one-letter TLD
            "a@x.123",  # numeric TLD
            "a..b@x.com",  # consecutive dots
            ".a@x.com",
            "a.@x.com",
            "a@x..com",
            "a@x.com.",
            "a@@x.com",
            "a@b@x.com",
            "@x.com",  # empty local part
            "a@-x.com",
            "a@x-.com",
            "n/a",
            "jane.doe.example.com",
            "x" * 65 + "@example.com",  # local part over 64
        ],
    )
    def test_malformed_is_invalid_and_dropped(self, value: str) -> None:
        normalised, valid = _emails(value)
        assert normalised == [None]
        assert valid == [False]

    @pytest.mark.parametrize(
        "value", ["a@x.co", "first.last+tag@sub.example.co.uk", "o'brien@example.ie", "x@xn--80ak6aa92e.com"]
    )
    def test_plausible_is_valid(self, value: str) -> None:
        normalised, valid = _emails(value)
        assert normalised == [value]
        assert valid == [True]

    def test_keeps_index_and_accepts_string_dtypes(self) -> None:
        raw = pd.Series(["A@X.COM", None, "bad"], index=[10, 20, 30])
        for series in (raw, raw.astype("string"), raw.astype(object)):
            normalised, valid = normalize_emails(series)
            assert list(normalised.index) == [10, 20, 30]
            assert list(valid.index) == [10, 20, 30]
            assert valid.tolist() == [True, True, False]
            assert normalised.iloc[0] == "a@x.com"

    @settings(max_examples=30, deadline=None)
    @given(st.lists(st.one_of(st.none(), st.text(max_size=12), st.emails()), max_size=20))
    def test_idempotent_and_never_fails(self, values: list[str | None]) -> None:
        once, valid = normalize_emails(pd.Series(values, dtype=object))
        twice, valid_again = normalize_emails(once)
        assert once.fillna("<NA>").tolist() == twice.fillna("<NA>").tolist()
        assert valid_again.all()
        # a normalised value exists exactly when the input was present and valid
        assert (once.isna() | valid).all()


class TestPhones:
    def test_uk_spellings_agree(self) -> None:
        normalised, valid = _phones(["+44 20 7946 0958", "020 7946 0958", "(020) 7946-0958"], "GB")
        assert normalised == ["+442079460958"] * 3
        assert valid == [True, True, True]

    def test_region_per_row_and_country_names(self) -> None:
        normalised, _ = _phones(
            ["020 7946 0958", "020 7946 0958", "(202) 555-0100", "07700 900123", "07700 900123"],
            ["United Kingdom", "uk", "USA", None, "Narnia"],
        )
        london, mobile = "+442079460958", "+447700900123"
        assert normalised == [london, london, "+12025550100", mobile, mobile]

    def test_plus_prefix_ignores_region(self) -> None:
        normalised, _ = _phones(["+44 20 7946 0958", "+44 20 7946 0958"], ["US", "DE"])
        assert normalised == ["+442079460958"] * 2

    def test_spreadsheet_float_artefact(self) -> None:
        assert _phones(["447946095800.0"], "GB")[0] == ["+447946095800"]

    def test_missing_and_impossible(self) -> None:
        normalised, valid = _phones([None, "", "  ", "n/a", "123", "+44 12"], "GB")
        assert normalised == [None] * 6
        assert valid == [True, True, True, False, False, False]

    @pytest.mark.parametrize(
        ("value", "region"),
        [
            ("0000", "GB"),  # local-only length in GB
            ("0000", "DE"),  # a possible length in DE, but one digit repeated
            ("123", "DE"),
            ("1234", "DE"),  # shorter than any subscriber number
            ("07777 777777", "GB"),
            ("+44", "GB"),
        ],
    )
    def test_placeholders_are_invalid(self, value: str, region: str) -> None:
        assert _phones([value], region) == ([None], [False])

    def test_test_ranges_are_possible(self) -> None:
        # 555-01xx is a fictional US range: not "valid" in metadata, but a possible number
        normalised, valid = _phones(["+1 202 555 0100"], "GB")
        assert normalised == ["+12025550100"]
        assert valid == [True]

    def test_region_series_must_match_length(self) -> None:
        with pytest.raises(ValueError, match="rows"):
            normalize_phones(pd.Series(["020 7946 0958"]), pd.Series(["GB", "GB"]))

    def test_idempotent(self) -> None:
        once, _ = normalize_phones(pd.Series(["020 7946 0958", "07700 900123", None, "bad"]), "GB")
        twice, valid = normalize_phones(once, "US")  # E.164 numbers do not depend on the region
        assert once.fillna("<NA>").tolist() == twice.fillna("<NA>").tolist()
        assert valid.all()


def test_normalize_regions() -> None:
    raw = pd.Series(["gb", " United Kingdom ", "EIRE", "UK", None, "Atlantis", "de"])
    regions = normalize_regions(raw, "FR")
    assert isinstance(regions, pd.Series)
    assert regions.tolist() == ["GB", "GB", "IE", "GB", "FR", "FR", "DE"]
    assert normalize_regions("germany") == "DE"
    with pytest.raises(ValueError, match="default_region"):
        normalize_regions("GB", "XX")
