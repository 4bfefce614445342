"""Vectorised normalisers for contact data: e-mail addresses and phone numbers.

Ingestion and identity resolution use them to compare what CRMs write in many spellings. Each returns
``(normalised, valid)``: the normalised value (NA when missing or malformed) and whether the input was
acceptable. A missing value is not malformed: it is NA and valid. No function logs the values it sees.
"""

from __future__ import annotations

import pandas as pd
import phonenumbers

__all__ = ["COUNTRY_NAMES", "normalize_emails", "normalize_phones", "normalize_regions"]

# Whitespace of every kind a spreadsheet or a web form lets through (no-break, zero-width, BOM ...).
# Listed explicitly rather than as ``\s`` so that Python's ``re`` and pyarrow's RE2 agree.
_WHITESPACE = "[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200b\u2028\u2029\u202f\u205f\u3000\ufeff]+"

_MAX_EMAIL_LENGTH = 254  # RFC 5321 path limit minus the angle brackets
_MAX_LOCAL_LENGTH = 64

# After lower-casing: dot-atoms on both sides of a single "@" (so no leading, trailing or doubled dot),
# domain labels that neither start nor end with a hyphen, and an alphabetic (or punycode) TLD.
# Non-ASCII letters are accepted (internationalised addresses).
_ATOM = "[a-z0-9!#$%&'*+/=?^_`{|}~\u0080-\U0010ffff-]+"
_LABEL = "[a-z0-9\u0080-\U0010ffff](?:[a-z0-9\u0080-\U0010ffff-]{0,61}[a-z0-9\u0080-\U0010ffff])?"
_TLD = "(?:[a-z\u0080-\U0010ffff]{2,63}|xn--[a-z0-9-]{1,59})"
_EMAIL = f"{_ATOM}(?:\\.{_ATOM})*@(?:{_LABEL}\\.)+{_TLD}"

# Phone formatting characters that never change the number; dropping them first lets
# "020 7946 0958" and "(020) 7946-0958" share one parse.
_PHONE_PUNCTUATION = "[\t\n\x0b\x0c\r \x85\xa0\u2000-\u200b\u202f\u3000\ufeff().\\-/\u2010-\u2015]+"
# Placeholders ("0000", "1234") pass the length rules of a few countries; no subscriber number is
# this short (the shortest plans, e.g. Saint Helena's, have 5 digits) or one digit repeated.
_MIN_NATIONAL_DIGITS = 5
# Spreadsheets turn a phone column into floats: "447946095800.0".
_FLOAT_ARTEFACT = r"^(\+?[0-9]+)\.0$"

# The country names CRM exports most often hold instead of ISO 3166 alpha-2 codes (lower-case keys).
COUNTRY_NAMES: dict[str, str] = {
    "united kingdom": "GB",
    "uk": "GB",
    "u.k.": "GB",
    "great britain": "GB",
    "britain": "GB",
    "england": "GB",
    "scotland": "GB",
    "wales": "GB",
    "northern ireland": "GB",
    "channel islands": "JE",
    "isle of man": "IM",
    "ireland": "IE",
    "eire": "IE",
    "republic of ireland": "IE",
    "united states": "US",
    "united states of america": "US",
    "usa": "US",
    "u.s.a.": "US",
    "america": "US",
    "canada": "CA",
    "mexico": "MX",
    "brazil": "BR",
    "argentina": "AR",
    "germany": "DE",
    "deutschland": "DE",
    "france": "FR",
    "spain": "ES",
    "españa": "ES",
    "portugal": "PT",
    "italy": "IT",
    "italia": "IT",
    "netherlands": "NL",
    "the netherlands": "NL",
    "holland": "NL",
    "belgium": "BE",
    "luxembourg": "LU",
    "switzerland": "CH",
    "austria": "AT",
    "denmark": "DK",
    "norway": "NO",
    "sweden": "SE",
    "finland": "FI",
    "iceland": "IS",
    "poland": "PL",
    "czech republic": "CZ",
    "czechia": "CZ",
    "greece": "GR",
    "cyprus": "CY",
    "malta": "MT",
    "lithuania": "LT",
    "latvia": "LV",
    "estonia": "EE",
    "russia": "RU",
    "russian federation": "RU",
    "россия": "RU",
    "ukraine": "UA",
    "turkey": "TR",
    "israel": "IL",
    "united arab emirates": "AE",
    "uae": "AE",
    "saudi arabia": "SA",
    "bahrain": "BH",
    "lebanon": "LB",
    "south africa": "ZA",
    "rsa": "ZA",
    "nigeria": "NG",
    "india": "IN",
    "china": "CN",
    "hong kong": "HK",
    "japan": "JP",
    "korea": "KR",
    "south korea": "KR",
    "singapore": "SG",
    "thailand": "TH",
    "australia": "AU",
    "new zealand": "NZ",
}

_SUPPORTED_REGIONS = frozenset(phonenumbers.SUPPORTED_REGIONS)
# Codes that are not ISO 3166 alpha-2 yet appear in exports (EU usage, common shorthand).
_CODE_ALIASES = {"UK": "GB", "EL": "GR"}


def _as_string(values: pd.Series) -> pd.Series:
    """The values as a nullable string Series (pyarrow-backed when pyarrow is installed)."""
    if isinstance(values.dtype, pd.StringDtype) and values.dtype.na_value is pd.NA:
        return values
    return values.astype(pd.StringDtype())


def normalize_emails(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Normalise e-mail addresses and flag malformed ones.

    The normalised form has all whitespace removed (including internal, no-break and zero-width
    spaces, which are typing or copy-paste noise) and is lower-cased, so ``" Jane.Doe@Example.COM"``
    and ``"jane.doe@example.com"`` compare equal. An address is valid when it has exactly one ``@``,
    a non-empty local part, a domain with at least one dot and an alphabetic (or punycode) top-level
    domain, no leading, trailing or consecutive dots, and RFC length limits.

    Args:
        values: Raw e-mail addresses, any dtype; NA, empty and whitespace-only values count as missing.

    Returns:
        ``(normalised, valid)`` with the index of ``values``. ``normalised`` is a nullable string
        Series: the normalised address, or NA when missing or malformed. ``valid`` is boolean: False
        only for a present but malformed value.
    """
    text = _as_string(values).str.replace(_WHITESPACE, "", regex=True).str.lower()
    present = text.notna() & text.str.len().gt(0)
    plausible = (
        text.str.fullmatch(_EMAIL) & text.str.len().le(_MAX_EMAIL_LENGTH) & text.str.find("@").le(_MAX_LOCAL_LENGTH)
    )
    ok = (present & plausible).fillna(False).astype(bool)
    normalised = text.where(ok)
    valid = (ok | ~present.fillna(False).astype(bool)).to_numpy(dtype=bool)
    return normalised, pd.Series(valid, index=values.index, name=values.name)


def normalize_regions(regions: pd.Series | str | None, default_region: str = "GB") -> pd.Series | str:
    """Map country codes or common country names to the ISO 3166 alpha-2 region ``phonenumbers`` knows.

    Args:
        regions: One region for all rows, or one per row: ISO 3166 alpha-2 codes in any case
            (``"gb"``), frequent non-ISO codes (``"UK"``) or country names (``"United Kingdom"``).
        default_region: Region used when a value is missing or not recognised.

    Returns:
        A region code (for a scalar input) or a Series of region codes with the index of ``regions``.
    """
    default = default_region.strip().upper()
    if default not in _SUPPORTED_REGIONS:
        raise ValueError(f"default_region {default_region!r} is not a region phonenumbers knows")
    if regions is None:
        return default
    if isinstance(regions, str):
        return _region_of(regions, default)
    codes, uniques = pd.factorize(_as_string(regions), use_na_sentinel=True)
    lookup = [_region_of(str(value), default) for value in uniques] + [default]
    # code -1 (missing) picks the trailing default
    mapped = pd.Series(lookup, dtype=object).to_numpy()[codes]
    return pd.Series(mapped, index=regions.index, name=regions.name, dtype=object)


def _region_of(value: str, default: str) -> str:
    text = " ".join(value.split())
    code = _CODE_ALIASES.get(text.upper(), text.upper())
    if code in _SUPPORTED_REGIONS:
        return code
    return COUNTRY_NAMES.get(text.lower(), default)


def normalize_phones(
    values: pd.Series, regions: pd.Series | str | None = None, *, default_region: str = "GB"
) -> tuple[pd.Series, pd.Series]:
    """Normalise phone numbers to E.164 and flag impossible ones.

    A number written without ``+`` is read in its row's region (so ``"020 7946 0958"`` in GB becomes
    ``"+442079460958"``); one with ``+`` is read on its own. Validity is "possible", not "valid"
    (CRMs hold test and newly allocated ranges that the metadata does not list):
    ``phonenumbers.is_possible_number_with_reason`` must say ``IS_POSSIBLE`` (a local-only number,
    dialable only inside its area, does not count), and placeholders are refused: a national
    number of fewer than five digits or of one repeated digit (``"0000"``, ``"07777 777777"``).
    Each distinct (number, region) pair is parsed once, because exports repeat numbers.

    Args:
        values: Raw phone numbers, any format; NA, empty and whitespace-only values count as missing.
        regions: Region per row (aligned by position with ``values``) or one for all; ISO 3166
            alpha-2 codes or common country names (see :data:`COUNTRY_NAMES`).
        default_region: Region for rows whose region is missing or not recognised.

    Returns:
        ``(normalised, valid)`` with the index of ``values``. ``normalised`` is a nullable string
        Series of E.164 numbers, NA when missing or not a possible number. ``valid`` is boolean:
        False only for a present value that is not a possible number.
    """
    n = len(values)
    region = normalize_regions(regions, default_region)
    if isinstance(region, pd.Series):
        if len(region) != n:
            raise ValueError(f"regions has {len(region)} rows, values has {n}")
        region_arr = region.to_numpy(dtype=object)
    else:
        region_arr = pd.Series([region] * n, dtype=object).to_numpy()

    text = (
        _as_string(values)
        .str.strip()
        .str.replace(_FLOAT_ARTEFACT, r"\1", regex=True)
        .str.replace(_PHONE_PUNCTUATION, "", regex=True)
    )
    present = (text.notna() & text.str.len().gt(0)).fillna(False).astype(bool).to_numpy()
    international = text.str.startswith("+").fillna(False).astype(bool).to_numpy()

    e164 = pd.Series(pd.NA, index=values.index, name=values.name, dtype=pd.StringDtype())
    valid = ~present
    rows = present.nonzero()[0]
    if len(rows):
        # A "+" number does not depend on the region: one parse serves every row that holds it.
        row_region = pd.Series(region_arr[rows], dtype=object).where(~international[rows], "")
        pair = text.iloc[rows].astype(object).to_numpy() + "\x1f" + row_region.to_numpy(dtype=object)
        codes, uniques = pd.factorize(pair)
        parsed = [_parse_phone(p) for p in uniques]
        out = pd.Series(parsed, dtype=object).to_numpy()[codes]
        ok = pd.notna(out)
        e164.iloc[rows] = pd.array(out, dtype=pd.StringDtype())
        valid = valid.copy()
        valid[rows] = ok
    return e164, pd.Series(valid, index=values.index, name=values.name)


def _parse_phone(pair: str) -> str | None:
    number, _, region = pair.partition("\x1f")
    try:
        parsed = phonenumbers.parse(number, region or None)
    except phonenumbers.NumberParseException:
        return None
    # IS_POSSIBLE_LOCAL_ONLY is not enough: without its area code a number names no one.
    if phonenumbers.is_possible_number_with_reason(parsed) != phonenumbers.ValidationResult.IS_POSSIBLE:
        return None
    national = phonenumbers.national_significant_number(parsed)
    if len(national) < _MIN_NATIONAL_DIGITS or len(set(national)) == 1:
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
