"""Audiences without models: the vocabulary, the contact normalisation and hashing against the platforms'
published examples, the writers (consent for advertising as a hard filter), the sample, saved definitions."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from features.audience import (
    ADVERTISING,
    CONSENT_PREFIX,
    Audience,
    AudienceError,
    AudienceFormat,
    AudienceRun,
    AudienceWriter,
    Contacts,
    Sample,
    audience_names,
    load_definition,
    new_definition,
    normalize_email,
    phone_digits,
    save_run,
)

NAMES = audience_names(["churn", "purchase"])
EXAMPLE = "churn > 0.6 and consent_email and lifecycle in ['at_risk', 'lapsed']"


def _rows() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_key": ["k1", "k2", "k3", "k4"],
            "customer_id": ["c1", "c2", "c3", "c4"],
            "churn": [0.9, 0.7, 0.61, float("nan")],
            "consent_email": [True, False, True, True],
            "lifecycle": ["at_risk", "lapsed", "lapsed", "at_risk"],
            CONSENT_PREFIX + ADVERTISING: [True, True, False, True],
        }
    )


def test_the_example_condition_keeps_exactly_the_customers_it_names() -> None:
    keep = Audience(EXAMPLE, NAMES).evaluate(_rows())
    assert keep.tolist() == [True, False, True, False]  # k2: no e-mail consent; k4: no score, so not > 0.6


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("churn > 0.6 and shoe_size > 3", "unknown name 'shoe_size'"),
        ("churn_band > 0.5", "cannot compare a string with a number"),
        ("__import__('os')", "not allowed"),
        ("consent_fax", "unknown name 'consent_fax'"),
    ],
)
def test_a_bad_condition_is_refused_with_the_reason(text: str, why: str) -> None:
    with pytest.raises(AudienceError, match=why):
        Audience(text, NAMES)


def test_every_consent_channel_and_advertising_are_names() -> None:
    for channel in ("email", "sms", "push", "direct_mail", "call_centre", ADVERTISING):
        assert NAMES[CONSENT_PREFIX + channel] == "bool"
    assert NAMES["churn_band"] == "string" and NAMES["p_alive"] == "number" and NAMES["flag_one_and_done"] == "bool"


def test_contacts_are_normalised_as_the_platforms_ask() -> None:
    assert normalize_email("  Jane.Doe@GMail.com ") == "jane.doe@gmail.com"
    assert normalize_email("Jane.Doe@gmail.com", google=True) == "janedoe@gmail.com"  # Google: gmail dots go
    assert normalize_email("jane.doe@example.com", google=True) == "jane.doe@example.com"
    assert normalize_email("not an address") is None
    assert phone_digits("+44 7700 900123") == "447700900123"
    assert phone_digits("07700 900123") is None  # no country code: cannot be matched, so not sent


def _contacts() -> Contacts:
    return Contacts(
        pa.table(
            {
                "customer_key": ["k1", "k1", "k2", "k3"],
                "email": ["JaneDoe@gmail.com", "janedoe@gmail.com", None, "mail@yandex.ru"],
                "phone": ["+16577770000", "+16577770000", None, "+79876543210"],
            }
        )
    )


def test_upload_files_hash_the_published_examples_and_only_for_advertising_consent() -> None:
    members = _rows()
    meta = io.BytesIO()
    writer = AudienceWriter(AudienceFormat.META, meta, contacts=_contacts())
    writer.write(members)
    report = writer.close()
    lines = meta.getvalue().decode().splitlines()
    # TikTok's and Meta's common example: sha256("janedoe@gmail.com"); k1's two records are one row
    assert lines == ["email,phone", "d6117306485ed0e50afab3ac871e98f81699151f30281527d63ff5f233656c69," + lines[1][65:]]
    assert len(lines[1][65:]) == 64
    # k3 has contacts but no advertising consent; k2 and k4 consent but have no e-mail or phone on record
    assert report.excluded == {"no advertising consent": 1, "no e-mail or phone": 2}
    vk = io.BytesIO()
    writer = AudienceWriter(AudienceFormat.VK_EMAIL, vk, contacts=_contacts())
    writer.write(members.assign(**{CONSENT_PREFIX + ADVERTISING: True}))
    writer.close()
    # Yandex Audiences' published MD5 example for mail@yandex.ru, the hash VK's lists document too
    assert "3c56ff8fef0f6c65b36b2d25720fe276" in vk.getvalue().decode().splitlines()


def test_an_upload_file_without_the_consent_column_sends_nobody() -> None:
    out = io.BytesIO()
    writer = AudienceWriter(AudienceFormat.GOOGLE, out, contacts=_contacts())
    writer.write(_rows().drop(columns=[CONSENT_PREFIX + ADVERTISING]))
    assert writer.close().excluded == {"no advertising consent": 4}
    assert out.getvalue().decode().splitlines() == ["Email,Phone"]


def test_parquet_and_csv_carry_the_ids_and_the_named_columns(tmp_path: Path) -> None:
    rows = _rows()
    writer = AudienceWriter(AudienceFormat.PARQUET, tmp_path / "a.parquet", ["churn"])
    for start in (0, 2):
        writer.write(rows.iloc[start : start + 2])
    assert writer.close().members == 4
    assert pq.read_table(tmp_path / "a.parquet").column_names == ["customer_id", "customer_key", "churn"]
    assert pd.read_parquet(tmp_path / "a.parquet")["customer_id"].tolist() == ["c1", "c2", "c3", "c4"]
    empty = AudienceWriter(AudienceFormat.PARQUET, tmp_path / "e.parquet", ["churn"])
    empty.close()
    assert pq.read_table(tmp_path / "e.parquet").num_rows == 0
    with pytest.raises(AudienceError, match="contacts"):
        AudienceWriter(AudienceFormat.YANDEX, tmp_path / "y.csv")


def test_the_sample_is_uniform_by_hash_and_the_same_whatever_the_chunks() -> None:
    frame = pd.DataFrame({"customer_key": [f"k{i}" for i in range(500)], "customer_id": [str(i) for i in range(500)]})
    one, many = Sample(7), Sample(7)
    one.offer(frame, [])
    for start in range(0, 500, 60):
        many.offer(frame.iloc[start : start + 60], [])
    assert one.rows() == many.rows() and len(one.rows()) == 7
    assert Sample(0).rows() == []


def test_a_saved_audience_keeps_its_definition_runs_and_members(tmp_path: Path) -> None:
    with pytest.raises(AudienceError, match="name"):
        new_definition("Bad Name!", EXAMPLE)
    definition = new_definition("win-back", EXAMPLE)
    members = tmp_path / "m.parquet"
    pd.DataFrame({"customer_id": ["c1"], "customer_key": ["k1"]}).to_parquet(members)
    run = AudienceRun(at=definition.created_at, instant=definition.created_at, source="export", members=1, scanned=4)
    save_run(tmp_path, definition, run, members)
    again = load_definition(tmp_path, "win-back")
    assert again.condition == EXAMPLE and [r.members for r in again.runs] == [1]
    assert pd.read_parquet(tmp_path / "audiences" / "win-back" / "members.parquet")["customer_id"].tolist() == ["c1"]
    with pytest.raises(AudienceError, match="saved: win-back"):
        load_definition(tmp_path, "nobody")
