"""Audiences: every customer for whom a condition holds, answered in chunks, written as a file a campaign
engine or an advertising platform imports, and saved by name to be run again.

A condition is the offer-eligibility language (:mod:`features.conditions`: parsed, checked, never
evaluated as code) over one row per customer that carries, beside the feature catalogue and the customer
attributes (``attr_*``):

- each propensity model's calibrated probability under the model's own name (``churn``, ``purchase``,
  ``engagement_open_email``, ...) and its band (``churn_band``: ``low`` / ``medium`` / ``high``);
- value: ``p_alive``, ``expected_orders``, ``expected_spend`` (CLV over 365 days), ``expected_order_value``,
  ``next_order_days``, and the value model's ``value_expected_spend`` / ``value_expected_orders``;
- segments: ``rfm_segment``, ``lifecycle``, ``r_score`` .. ``rhythm_days`` and the flags (``flag_*``);
- consent per channel, ``consent_<channel>`` (a yes / no), for every campaign channel and ``advertising``.

``consent_advertising`` is the consent to be reached in advertising networks through an uploaded list
(Google Customer Match, Meta Custom Audiences, Yandex Audiences, VK Ads). The data contract has no channel
for it by default: a retailer records it as consents on the channel ``advertising`` (its rule is always
``opt_in``). With no such record a customer has **not** consented, and no upload format ever carries them.

Everything here is computation over frames: the rows come from the nightly export's machinery
(``batch/audience.py``) or from the API's scoring (``serving/audiences.py``), so an audience scores
exactly as the export and the API do.
"""

from __future__ import annotations

import csv
import hashlib
import heapq
import io
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field

from features.conditions import Condition, ConditionError, ValueKind
from features.contract import DEFAULT_CONSENT_RULES, Channel, Col
from features.definitions import FEATURES
from features.segments import FLAGS, SegCol

__all__ = [
    "ADVERTISING",
    "AD_FORMATS",
    "CONSENT_PREFIX",
    "Audience",
    "AudienceDefinition",
    "AudienceError",
    "AudienceFormat",
    "AudienceRun",
    "AudienceWriter",
    "Contacts",
    "Sample",
    "audience_names",
    "consent_channels",
    "load_definition",
    "normalize_email",
    "phone_digits",
    "primary_ids",
    "save_run",
]

ADVERTISING = "advertising"  # the consent channel an ad-network upload needs (opt_in: absent = not consented)
CONSENT_PREFIX = "consent_"  # consent_<channel>: a yes / no per channel in an audience row
AUDIENCES_DIR = "audiences"  # in the data home: one folder per saved audience
DEFINITION_FILE = "definition.json"
SNAPSHOT_FILE = "members.parquet"
CUSTOMER_IDS = "customer_ids"
VALUE_COLUMNS: tuple[str, ...] = (
    "p_alive",
    "expected_orders",
    "p_purchase",
    "expected_order_value",
    "expected_spend",
    "next_order_days",
    "value_expected_spend",
    "value_expected_orders",
)
_SEGMENT_KINDS: dict[str, ValueKind] = {
    SegCol.R_SCORE: "number",
    SegCol.F_SCORE: "number",
    SegCol.M_SCORE: "number",
    SegCol.RHYTHM_DAYS: "number",
    SegCol.RFM_SEGMENT: "string",
    SegCol.LIFECYCLE: "string",
}
_FLAG_KINDS: dict[str, ValueKind] = {flag: "bool" for flag in FLAGS}
SEGMENT_NAMES: dict[str, ValueKind] = _SEGMENT_KINDS | _FLAG_KINDS
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class AudienceError(ConditionError):
    """An audience's condition, name or format is not usable (the message names what and why)."""


class AudienceFormat(StrEnum):
    """What an audience is written as.

    ``csv`` / ``parquet``: the retailer's ids (``customer_id``, ``customer_key``) and the columns the
    condition names. The rest are upload files of advertising platforms (normalised, hashed contacts only,
    customers with ``consent_advertising`` only):

    - ``google``: Google Ads Customer Match, CSV ``Email,Phone``: SHA-256 hex of the e-mail (trimmed,
      lower case, dots before ``@`` removed for gmail.com / googlemail.com) and of the E.164 phone (``+44...``).
    - ``meta``: Meta Custom Audiences, CSV ``email,phone``: SHA-256 of the e-mail (trimmed, lower case) and
      of the phone as digits with the country code (no ``+``, no leading zeros).
    - ``yandex``: Yandex Audiences CRM data, CSV ``phone,email``: SHA-256 (choose SHA256 on upload) of the
      same digits and e-mail.
    - ``vk_email`` / ``vk_phone``: VK Ads user lists, one identifier per line, one kind per list: MD5 of the
      e-mail or of the phone digits, the hash VK's help documents for pre-encrypted lists.
    """

    CSV = "csv"
    PARQUET = "parquet"
    GOOGLE = "google"
    META = "meta"
    YANDEX = "yandex"
    VK_EMAIL = "vk_email"
    VK_PHONE = "vk_phone"


AD_FORMATS = frozenset(
    {
        AudienceFormat.GOOGLE,
        AudienceFormat.META,
        AudienceFormat.YANDEX,
        AudienceFormat.VK_EMAIL,
        AudienceFormat.VK_PHONE,
    }
)


def consent_channels(rules: Iterable[str] = ()) -> tuple[str, ...]:
    """Every channel an audience row carries a ``consent_<channel>`` for: the messaging channels, the
    campaign channels (default rules), those of ``rules`` (the data's) and ``advertising``."""
    found = [c.value for c in Channel] + list(DEFAULT_CONSENT_RULES) + list(rules) + [ADVERTISING]
    return tuple(dict.fromkeys(found))


def audience_names(models: Iterable[str], channels: Iterable[str] | None = None) -> dict[str, ValueKind]:
    """Every name an audience condition may use, with its kind.

    Args:
        models: the propensity models the rows will carry (``churn`` ...): ``<model>`` and ``<model>_band``.
        channels: the consent channels (default :func:`consent_channels`).
    """
    names: dict[str, ValueKind] = {f.name: ("string" if f.dtype == "string" else "number") for f in FEATURES}
    names |= SEGMENT_NAMES
    names |= {c: "number" for c in VALUE_COLUMNS}
    for m in models:
        names[m] = "number"
        names[f"{m}_band"] = "string"
    names |= {CONSENT_PREFIX + c: "bool" for c in (consent_channels() if channels is None else channels)}
    return names


class Audience(Condition):
    """A parsed, checked audience condition (:class:`features.conditions.Condition` over
    :func:`audience_names`); :meth:`evaluate` gives a boolean per row of a chunk.

    Raises:
        AudienceError: a syntax error, a refused form, an unknown name or a kind mismatch.
    """

    error = AudienceError
    data_error = AudienceError

    def __init__(self, text: str, known: Mapping[str, ValueKind]) -> None:
        super().__init__(text, known)


# --- contacts for the upload formats ------------------------------------------------------------------

_GOOGLE_DOMAINS = frozenset({"gmail.com", "googlemail.com"})


def normalize_email(email: str, *, google: bool = False) -> str | None:
    """Trimmed and lower case; for Google, dots before ``@`` removed in gmail.com / googlemail.com
    addresses. None for a value that is not an address."""
    text = email.strip().lower()
    local, at, domain = text.partition("@")
    if not at or not local or "." not in domain or " " in text:
        return None
    if google and domain in _GOOGLE_DOMAINS:
        local = local.replace(".", "")
    return f"{local}@{domain}"


def phone_digits(phone: str) -> str | None:
    """A phone in E.164 (as ingest writes it: ``+447700900123``) as the digits with the country code,
    leading zeros removed; None when it is not E.164 (a number without a country code cannot be matched)."""
    text = phone.strip().replace(" ", "")
    if not text.startswith("+"):
        return None
    digits = text[1:].lstrip("0")
    return digits if digits.isdigit() and 7 <= len(digits) <= 15 else None


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest()


class Contacts:
    """Every source record's e-mail and phone per ``customer_key`` (the ingested customers table), as Arrow
    columns: a chunk of an audience takes its members' rows, so the contacts are never copied per customer
    into Python objects. Only the upload formats read it; nothing of it is logged."""

    def __init__(self, table: pa.Table) -> None:
        self.table = table

    @classmethod
    def read(cls, customers_file: Path) -> Contacts:
        schema = pq.read_schema(customers_file)
        wanted = [c for c in (Col.CUSTOMER_KEY, Col.EMAIL, Col.PHONE) if c in schema.names]
        table = pq.read_table(customers_file, columns=wanted)
        for c in (Col.EMAIL, Col.PHONE):
            if c not in table.column_names:
                table = table.append_column(c, pa.nulls(table.num_rows, pa.string()))
        return cls(table)

    def of(self, keys: Sequence[str]) -> pa.Table:
        """The contact rows of ``keys`` (several per key when identity resolution merged records)."""
        mask = pc.is_in(self.table.column(Col.CUSTOMER_KEY).cast(pa.string()), value_set=pa.array(keys, pa.string()))
        return self.table.filter(mask)


def _upload_rows(fmt: AudienceFormat, contacts: pa.Table) -> tuple[list[tuple[str, ...]], set[str]]:
    """The hashed rows of an upload format (duplicates removed; a record with no usable contact gives none)
    and the customers who have at least one row."""
    out: dict[tuple[str, ...], None] = {}
    reached: set[str] = set()
    keys = contacts.column(Col.CUSTOMER_KEY).cast(pa.string()).to_pylist()
    emails = contacts.column(Col.EMAIL).to_pylist()
    phones = contacts.column(Col.PHONE).to_pylist()
    for key, email, phone in zip(keys, emails, phones, strict=True):
        e_plain = normalize_email(email, google=fmt is AudienceFormat.GOOGLE) if isinstance(email, str) else None
        digits = phone_digits(phone) if isinstance(phone, str) else None
        if fmt is AudienceFormat.GOOGLE:
            row: tuple[str, ...] = (_sha256(e_plain) if e_plain else "", _sha256("+" + digits) if digits else "")
        elif fmt is AudienceFormat.META:
            row = (_sha256(e_plain) if e_plain else "", _sha256(digits) if digits else "")
        elif fmt is AudienceFormat.YANDEX:
            row = (_sha256(digits) if digits else "", _sha256(e_plain) if e_plain else "")
        elif fmt is AudienceFormat.VK_EMAIL:
            row = (_md5(e_plain),) if e_plain else ("",)
        else:
            row = (_md5(digits),) if digits else ("",)
        if any(row):
            out[row] = None
            reached.add(key)
    return list(out), reached


_HEADERS: dict[AudienceFormat, tuple[str, ...] | None] = {
    AudienceFormat.GOOGLE: ("Email", "Phone"),
    AudienceFormat.META: ("email", "phone"),
    AudienceFormat.YANDEX: ("phone", "email"),
    AudienceFormat.VK_EMAIL: None,  # a plain list, one hash per line
    AudienceFormat.VK_PHONE: None,
}


# --- writing ------------------------------------------------------------------------------------------


@dataclass
class WriteReport:
    """What a write did: members written, and members left out of an upload file with the reason."""

    members: int = 0
    rows: int = 0
    excluded: dict[str, int] = field(default_factory=dict)

    def exclude(self, reason: str, n: int) -> None:
        if n:
            self.excluded[reason] = self.excluded.get(reason, 0) + n


class AudienceWriter:
    """Writes an audience chunk by chunk to ``sink`` (a path, or a binary stream for the API), never
    holding more than one chunk.

    Args:
        fmt: the format.
        sink: a file path, or a binary stream (CSV and upload formats only; Parquet needs a path).
        columns: for ``csv`` / ``parquet``, the extra columns written beside the ids.
        contacts: for the upload formats, where e-mails and phones come from.
    """

    def __init__(
        self,
        fmt: AudienceFormat | str,
        sink: Path | io.RawIOBase | io.BufferedIOBase,
        columns: Sequence[str] = (),
        contacts: Contacts | None = None,
    ) -> None:
        self.fmt = AudienceFormat(fmt)
        self.columns = list(columns)
        self.report = WriteReport()
        self._contacts = contacts
        if self.fmt in AD_FORMATS and contacts is None:
            raise AudienceError(f"format {self.fmt}: the customers' contacts are needed (ingested customers table)")
        self._parquet: pq.ParquetWriter | None = None
        self._path = sink if isinstance(sink, Path) else None
        if self.fmt is AudienceFormat.PARQUET:
            if self._path is None:
                raise AudienceError("format parquet is written to a file, not a stream")
            self._stream: Any = None
        else:
            self._stream = io.TextIOWrapper(
                open(sink, "wb") if isinstance(sink, Path) else sink,  # noqa: SIM115 - closed in close()
                encoding="utf-8",
                newline="",
                write_through=True,
            )
            self._csv = csv.writer(self._stream, lineterminator="\n")
            header = self._header()
            if header is not None:
                self._csv.writerow(header)

    def _header(self) -> tuple[str, ...] | None:
        if self.fmt is AudienceFormat.CSV:
            return (Col.CUSTOMER_ID, Col.CUSTOMER_KEY, *self.columns)
        return _HEADERS[self.fmt]

    def write(self, members: pd.DataFrame) -> None:
        """Write a chunk of members: ``customer_key``, ``customer_id``, the extra columns and, for the
        upload formats, ``consent_advertising``."""
        if not len(members):
            return
        self.report.members += len(members)
        if self.fmt is AudienceFormat.PARQUET:
            table = pa.Table.from_pandas(
                members[[Col.CUSTOMER_ID, Col.CUSTOMER_KEY, *self.columns]].reset_index(drop=True), preserve_index=False
            )
            if self._parquet is None:
                assert self._path is not None
                self._parquet = pq.ParquetWriter(self._path, table.schema, compression="zstd")
            self._parquet.write_table(table.cast(self._parquet.schema))
            self.report.rows += len(members)
            return
        if self.fmt is AudienceFormat.CSV:
            frame = members[[Col.CUSTOMER_ID, Col.CUSTOMER_KEY, *self.columns]]
            rows = frame.astype(object).where(frame.notna(), "").itertuples(index=False, name=None)
            self._csv.writerows(rows)
            self.report.rows += len(frame)
            return
        column = CONSENT_PREFIX + ADVERTISING
        consented = (
            members[column].astype("boolean").fillna(False).to_numpy(dtype=bool)
            if column in members
            else np.zeros(len(members), dtype=bool)
        )
        self.report.exclude("no advertising consent", int((~consented).sum()))
        keys = members.loc[consented, Col.CUSTOMER_KEY].astype(str).tolist()
        if not keys:
            return
        assert self._contacts is not None
        found = self._contacts.of(keys)
        rows, reached = _upload_rows(self.fmt, found)
        self.report.exclude("no e-mail or phone", len(set(keys) - reached))
        self._csv.writerows(rows)
        self.report.rows += len(rows)

    def close(self) -> WriteReport:
        if self._parquet is not None:
            self._parquet.close()
        elif self.fmt is AudienceFormat.PARQUET and self._path is not None:  # no member: an empty file, same columns
            pq.write_table(
                pa.table({c: pa.array([], pa.string()) for c in (Col.CUSTOMER_ID, Col.CUSTOMER_KEY, *self.columns)}),
                self._path,
            )
        if self._stream is not None:
            self._stream.flush()
            if self._path is not None:
                self._stream.close()
            else:
                self._stream.detach()  # the caller's stream stays open
        return self.report


# --- counting with a sample ---------------------------------------------------------------------------


class Sample:
    """A fixed-size, uniform and reproducible sample of a stream of members: the ``size`` members with the
    smallest hash of their key, kept in a heap (the whole audience is never held)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._heap: list[tuple[int, str, dict[str, Any]]] = []  # (-hash, key, row): the largest hash on top

    def offer(self, members: pd.DataFrame, columns: Sequence[str]) -> None:
        if self.size <= 0 or not len(members):
            return
        records = members[[Col.CUSTOMER_ID, Col.CUSTOMER_KEY, *columns]]
        records = records.astype(object).where(records.notna(), None)
        for row in records.to_dict("records"):
            key = str(row[Col.CUSTOMER_KEY])
            h = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")
            item = (-h, key, row)
            if len(self._heap) < self.size:
                heapq.heappush(self._heap, item)
            elif item > self._heap[0]:
                heapq.heapreplace(self._heap, item)

    def rows(self) -> list[dict[str, Any]]:
        return [row for _, _, row in sorted(self._heap, key=lambda x: x[1])]


# --- ids ----------------------------------------------------------------------------------------------


def primary_ids(identity_map: pd.DataFrame) -> pd.DataFrame:
    """Per ``customer_key`` (the index): its primary source ``customer_id`` (the smallest in code-point
    order, the one identity resolution names the cluster after) and all its ``customer_ids`` (sorted)."""
    frame = identity_map[[Col.CUSTOMER_ID, Col.CUSTOMER_KEY]].dropna()
    frame = frame.astype({Col.CUSTOMER_ID: object, Col.CUSTOMER_KEY: object})
    grouped = frame.sort_values([Col.CUSTOMER_KEY, Col.CUSTOMER_ID]).groupby(Col.CUSTOMER_KEY, sort=True)
    all_ids = grouped[Col.CUSTOMER_ID].agg(list)
    out = pd.DataFrame({Col.CUSTOMER_ID: all_ids.str[0], CUSTOMER_IDS: all_ids})
    out.index.name = Col.CUSTOMER_KEY
    return out


# --- saved audiences ----------------------------------------------------------------------------------


class AudienceRun(BaseModel):
    """One run of a saved audience: when, on what, how many."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    at: datetime = Field(description="When the run was made (UTC).")
    instant: datetime = Field(description="The instant the audience was answered as of.")
    source: str = Field(description="'export' (the nightly export's scoring) or 'api'.")
    members: int = Field(ge=0)
    scanned: int = Field(ge=0, description="Customers the condition was evaluated on.")
    models: dict[str, str] = Field(default_factory=dict, description="Model name -> version that scored.")


class AudienceDefinition(BaseModel):
    """A saved audience: its name, condition and the runs made of it (the latest one's members are kept
    beside it in ``members.parquet``)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=_NAME.pattern, description="Lower case letters, digits, '-' and '_'.")
    condition: str = Field(max_length=1_000)
    description: str = Field("", max_length=500)
    created_at: datetime
    runs: list[AudienceRun] = Field(default_factory=list)


def audience_dir(data_home: Path, name: str) -> Path:
    if not _NAME.match(name):
        raise AudienceError(f"audience name {name!r}: use 1-64 lower case letters, digits, '-' or '_'")
    return data_home / AUDIENCES_DIR / name


def load_definition(data_home: Path, name: str) -> AudienceDefinition:
    """The saved audience ``name``.

    Raises:
        AudienceError: no audience of that name (the message lists the saved ones).
    """
    path = audience_dir(data_home, name) / DEFINITION_FILE
    if not path.is_file():
        root = data_home / AUDIENCES_DIR
        have = sorted(p.name for p in root.iterdir() if (p / DEFINITION_FILE).is_file()) if root.is_dir() else []
        raise AudienceError(f"no saved audience {name!r} (saved: {', '.join(have) or 'none'})")
    return AudienceDefinition.model_validate_json(path.read_text())


def save_run(
    data_home: Path, definition: AudienceDefinition, run: AudienceRun, members_file: Path | None
) -> AudienceDefinition:
    """Record ``run`` in the definition and keep ``members_file`` (Parquet of the members) as the
    audience's snapshot; both replace the previous ones atomically (the runs' history stays)."""
    folder = audience_dir(data_home, definition.name)
    folder.mkdir(parents=True, exist_ok=True)
    updated = definition.model_copy(update={"runs": [*definition.runs, run]})
    if members_file is not None:
        members_file.replace(folder / SNAPSHOT_FILE)
    staged = folder / (DEFINITION_FILE + ".partial")
    staged.write_text(json.dumps(updated.model_dump(mode="json"), indent=2))
    staged.replace(folder / DEFINITION_FILE)
    return updated


def new_definition(name: str, condition: str, description: str = "") -> AudienceDefinition:
    """A definition not yet run (its name is checked here)."""
    if not _NAME.match(name):
        raise AudienceError(f"audience name {name!r}: use 1-64 lower case letters, digits, '-' or '_'")
    return AudienceDefinition(name=name, condition=condition, description=description, created_at=datetime.now(UTC))
