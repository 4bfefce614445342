"""Erasure of one customer from the data home (GDPR art. 17, 152-FZ art. 21), and the tombstones that keep
them out of every later ingest.

A person is erased by a source ``customer_id``; identity resolution may have joined several source records
into one ``customer_key`` (one person), so the erasure covers every id of that key (:func:`find_person`).

What this module does, on the data-home side (the registry, the caches and the online stores are erased by
their owners, see ``docs/erasure.md``):

* :func:`erase_from_data_home` rewrites every Parquet file under the data home without the person's rows:
  the ingested tables, the identity map and review list, the audit files (quarantine, reclassified: their
  ``original`` column is the raw source row as JSON), every snapshot, any export written there;
* :class:`Tombstones` records a keyed hash of each erased id and key (never the id or the key itself), so
  :func:`drop_erased` can drop a tombstoned customer's rows from a later ingest of an old export, counted;
* :func:`residue` searches files (Parquet values, NumPy string arrays, raw bytes of anything else) for
  the person's ids and keys: the erasure verifies itself, and the tests use the same search.

Nothing here logs or returns an id or a key: removals are reported as file names and row counts.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import time
import uuid
import zipfile
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

__all__ = [
    "ERASURES_DIR",
    "TOMBSTONES_FILE",
    "Person",
    "Removal",
    "Tombstones",
    "drop_erased",
    "drop_rows",
    "erase_from_data_home",
    "find_person",
    "new_erasure_id",
    "residue",
    "tombstone_hash",
    "write_receipt",
]

TOMBSTONES_FILE = "tombstones.json"  # in the data home's root: ``ingested/`` is replaced by every ingest
ERASURES_DIR = "erasures"  # the receipts, one JSON file per erasure
SECRET_ENV = "KAIROS_PSEUDONYM_SECRET"
# Development only: without the secret a tombstone is still not the id, but anyone with the ids can test them.
_DEV_SECRET = b"kairos-development-tombstone-secret"
_CUSTOMER_ID = "customer_id"  # features.contract.Col names, spelt here so the module stays import-light
_CUSTOMER_KEY = "customer_key"
_WEB_CLIENT_ID = "web_client_id"
_ANONYMOUS_ID = "anonymous_id"
_ORIGINAL = "original"  # the audit files' column holding the raw source row as JSON
_ROW_ID_COLUMNS = ("customer_id_a", "customer_id_b", "customer_key_a", "customer_key_b")  # the review list


def tombstone_secret() -> bytes:
    """The key of the tombstone hash: ``KAIROS_PSEUDONYM_SECRET`` when set, else a development constant."""
    value = os.environ.get(SECRET_ENV, "")
    return value.encode("utf-8") if value else _DEV_SECRET


_PERSONAL = {
    "id": b"kairos-tomb-id",
    "key": b"kairos-tomb-key",
    "web": b"kairos-tomb-web",
}  # BLAKE2b's domain separation per kind
_MEMO_MAX = 1 << 18  # ids a replica remembers the answer for (cleared when full or when the file changes)


def _mac_key(secret: bytes) -> bytes:
    return hashlib.sha256(secret).digest()  # any length of secret within BLAKE2b's 64-byte key limit


def _mac(value: str, kind: str, key: bytes) -> str:
    return hashlib.blake2b(value.encode("utf-8"), key=key, digest_size=32, person=_PERSONAL[kind]).hexdigest()


def tombstone_hash(value: str, kind: str, secret: bytes | None = None) -> str:
    """The keyed hash (BLAKE2b MAC) of an erased id or key, distinct from the ``customer_key`` of the same id.

    BLAKE2b in keyed mode is a MAC like HMAC-SHA256, and cheaper: once anything has been erased, every
    replica hashes each id it has not been asked about before.

    Args:
        value: a source customer id (``kind="id"``) or a customer_key (``kind="key"``).
        kind: ``"id"`` or ``"key"``: the two never hash alike.
        secret: the MAC key (default :func:`tombstone_secret`).
    """
    return _mac(value, kind, _mac_key(secret or tombstone_secret()))


def new_erasure_id() -> str:
    """A fresh erasure id (names the receipt, the registry tag and the tombstones)."""
    return "er_" + uuid.uuid4().hex[:20]


# --- who is erased ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Person:
    """Every source id and customer_key of one person (held in memory only, never written)."""

    ids: tuple[str, ...]
    keys: tuple[str, ...]
    web_ids: tuple[str, ...] = ()  # their web analytics client ids: anonymous events carry them

    @property
    def needles(self) -> tuple[str, ...]:
        """What must not be found anywhere after the erasure."""
        return self.ids + self.keys + self.web_ids


def find_person(data_home: Path, customer_id: str) -> Person:
    """The person behind ``customer_id``: their key(s) in the identity map and every id of those keys.

    Their web client ids (customer records' ``web_client_id``) come too: web events without a customer id
    are theirs when the anonymous id is one of them (identity resolution links records the same way).
    An id the identity map does not know (erased before, or never ingested) is still erased: its own
    rows, if any, and its tombstone.
    """
    customer_id = customer_id.strip()
    if not customer_id:
        raise ValueError("customer_id: empty")
    ids, keys = {customer_id}, set()
    path = Path(data_home) / "ingested" / "identity_map.parquet"
    if path.is_file():
        frame = pd.read_parquet(path, columns=[_CUSTOMER_ID, _CUSTOMER_KEY]).astype("string")
        keys = set(frame.loc[frame[_CUSTOMER_ID] == customer_id, _CUSTOMER_KEY].dropna())
        ids |= set(frame.loc[frame[_CUSTOMER_KEY].isin(keys), _CUSTOMER_ID].dropna())
    web: set[str] = set()
    customers = Path(data_home) / "ingested" / "customers.parquet"
    if customers.is_file() and _WEB_CLIENT_ID in pq.read_schema(customers).names:
        frame = pd.read_parquet(customers, columns=[_CUSTOMER_ID, _WEB_CLIENT_ID]).astype("string")
        web = set(frame.loc[frame[_CUSTOMER_ID].isin(ids), _WEB_CLIENT_ID].dropna().str.strip()) - {""}
    return Person(tuple(sorted(ids)), tuple(sorted(keys)), tuple(sorted(web)))


# --- tombstones ---------------------------------------------------------------------------------------


class Tombstones:
    """The keyed hashes of erased ids and keys, in ``<data home>/tombstones.json``.

    The file is appended to by erasures (written whole, then renamed into place) and re-read when it
    changes (:meth:`refresh`, at most once a second), so every replica reading the same data home
    answers an erased customer as unknown even before it reloads its models.
    """

    def __init__(self, path: Path, secret: bytes | None = None) -> None:
        self.path = Path(path)
        self.secret = secret or tombstone_secret()
        self._key = _mac_key(self.secret)
        self._memo: dict[str, bool] = {}  # in memory only: id -> erased, for the ids requests repeat
        self._entries: list[dict[str, str]] = []
        self._hashes: frozenset[str] = frozenset()
        self._stamp: tuple[int, int] | None = None
        self._checked = 0.0
        self._load()

    @classmethod
    def of(cls, data_home: Path, secret: bytes | None = None) -> Tombstones:
        return cls(Path(data_home) / TOMBSTONES_FILE, secret)

    def __len__(self) -> int:
        return len(self._hashes)

    def _load(self) -> None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._entries, self._hashes, self._stamp, self._memo = [], frozenset(), None, {}
            return
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp == self._stamp:
            return
        data = json.loads(self.path.read_text(encoding="utf-8"))
        entries = list(data.get("tombstones", []))
        self._entries = entries
        self._hashes = frozenset(e["hash"] for e in entries)
        self._memo = {}
        self._stamp = stamp

    def refresh(self, min_interval_s: float = 1.0) -> None:
        """Re-read the file if it changed (checked at most every ``min_interval_s`` seconds)."""
        now = time.monotonic()
        if now - self._checked >= min_interval_s:
            self._checked = now
            self._load()

    def erased_web(self, values: Sequence[str]) -> list[bool]:
        """Per web client id (an anonymous event's visitor id): True when its person was erased."""
        hashes, key = self._hashes, self._key
        return [bool(hashes) and _mac(v, "web", key) in hashes for v in values]

    def erased(self, ids: Sequence[str]) -> list[bool]:
        """Per id (a source id or a customer_key): True when it was erased. Free while nothing was; then two
        hashes per id the first time it is asked about, a dictionary look-up afterwards."""
        hashes = self._hashes
        if not hashes:
            return [False] * len(ids)
        memo, key = self._memo, self._key
        out = []
        for i in ids:
            hit = memo.get(i)
            if hit is None:
                hit = _mac(i, "id", key) in hashes or _mac(i, "key", key) in hashes
                if len(memo) >= _MEMO_MAX:
                    memo.clear()
                memo[i] = hit
            out.append(hit)
        return out

    def add(self, person: Person, erasure_id: str, at: datetime) -> int:
        """Record ``person``'s ids and keys; returns how many new tombstones were written."""
        self._load()
        new = [
            {"hash": _mac(v, kind, self._key), "erasure_id": erasure_id, "erased_at": at.isoformat()}
            for kind, values in (("id", person.ids), ("key", person.keys), ("web", person.web_ids))
            for v in values
        ]
        new = [e for e in new if e["hash"] not in self._hashes]
        if new:
            entries = self._entries + new
            body = {
                "format": 1,
                "hash": "blake2b-256, key sha256(secret), person 'kairos-tomb-' + kind",
                "tombstones": entries,
            }
            _write_atomic(self.path, json.dumps(body, indent=1).encode("utf-8"))
            self._stamp = None
            self._load()
        return len(new)


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _canonical_ids(values: pd.Series) -> pd.Series:
    """Source ids as ingest reads them: stripped text, integral floats without '.0', blanks as missing."""
    if pd.api.types.is_float_dtype(values):
        integral = values.notna() & np.isfinite(values.fillna(0)) & (values.fillna(0) % 1 == 0)
        text = values.astype(object).where(values.notna(), None)
        values = text.where(~integral, values.where(integral, 0).astype("int64").astype(str))
    out = values.astype("string").str.strip()
    return out.mask(out == "")


def drop_erased(
    raw: pd.DataFrame, id_column: str | None, tombstones: Tombstones, web_column: str | None = None
) -> tuple[pd.DataFrame, int]:
    """``raw`` without the rows of tombstoned customers, and how many were dropped.

    Args:
        raw: one input table as read (source column names).
        id_column: the source column holding the customer id (None: the table has none).
        tombstones: the data home's tombstones.
        web_column: the source column holding an anonymous visitor id (web events), if any.
    """
    if not len(tombstones):
        return raw, 0
    drop = np.zeros(len(raw), dtype=bool)
    for column, check in ((id_column, tombstones.erased), (web_column, tombstones.erased_web)):
        if column is None or column not in raw.columns:
            continue
        values = _canonical_ids(raw[column])
        unique = [str(v) for v in values.dropna().unique()]
        gone = {v for v, erased in zip(unique, check(unique), strict=True) if erased}
        if gone:
            drop |= values.isin(gone).fillna(False).to_numpy(dtype=bool)
    if not drop.any():
        return raw, 0
    return raw.loc[~drop].reset_index(drop=True), int(drop.sum())


# --- rewriting files ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Removal:
    """What one erasure removed from one file: its path relative to the folder searched, and rows."""

    file: str
    rows: int


def _string_columns(table: pa.Table) -> list[str]:
    return [f.name for f in table.schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]


def _match(table: pa.Table, columns: Collection[str], values: Collection[str]) -> np.ndarray:
    """Rows where any of ``columns`` (string typed) equals one of ``values``."""
    hit = np.zeros(table.num_rows, dtype=bool)
    wanted = pa.array(sorted(values), type=pa.string())
    for name in columns:
        column = table.column(name)
        if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            column = pc.cast(column, pa.string())
        hit |= pc.fill_null(pc.is_in(column, value_set=wanted), False).to_numpy(zero_copy_only=False)
    return hit


def _original_matches(column: pa.ChunkedArray, ids: Collection[str], keys: Collection[str]) -> np.ndarray:
    """Audit rows whose raw source row (JSON) holds one of ``ids`` as a value, or mentions a key."""
    wanted = set(ids)
    out = np.zeros(len(column), dtype=bool)
    for i, text in enumerate(column.to_pylist()):
        if not text:
            continue
        if any(k in text for k in keys):
            out[i] = True
            continue
        if not any(v in text for v in wanted):  # cheap filter before parsing
            continue
        with contextlib.suppress(ValueError):
            record = json.loads(text)
            values = record.values() if isinstance(record, dict) else ()
            out[i] = any(_as_id(v) in wanted for v in values)
    return out


def _as_id(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def drop_rows(path: Path, columns: Collection[str], values: Collection[str]) -> int:
    """Rewrite one Parquet file without the rows where any of ``columns`` equals one of ``values``;
    returns how many rows went (the file is untouched when none matched)."""
    table = pq.read_table(path)
    present = [c for c in columns if c in table.column_names]
    if not present or not table.num_rows:
        return 0
    hit = _match(table, present, values)
    if not hit.any():
        return 0
    _rewrite(path, table.filter(pa.array(~hit)))
    return int(hit.sum())


def _rewrite(path: Path, table: pa.Table) -> None:
    """Replace a Parquet file with ``table`` (written beside it, then renamed into place)."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, path)


def erase_parquet(path: Path, person: Person) -> int:
    """Rewrite one Parquet file without ``person``'s rows: any customer id / key column (also the review
    list's pair columns) equal to one of theirs, an anonymous or web client id of theirs, or an audit row
    whose raw source row holds their id or web client id."""
    table = pq.read_table(path)
    if not table.num_rows:
        return 0
    ids, keys, web = set(person.ids), set(person.keys), set(person.web_ids)
    id_columns = [c for c in (_CUSTOMER_ID, *_ROW_ID_COLUMNS[:2]) if c in table.column_names]
    key_columns = [c for c in (_CUSTOMER_KEY, *_ROW_ID_COLUMNS[2:]) if c in table.column_names]
    hit = np.zeros(table.num_rows, dtype=bool)
    if id_columns:
        hit |= _match(table, id_columns, ids)
    if key_columns and keys:
        hit |= _match(table, key_columns, keys)
    web_columns = [c for c in (_ANONYMOUS_ID, _WEB_CLIENT_ID) if c in table.column_names]
    if web_columns and web:
        hit |= _match(table, web_columns, web)
    if _ORIGINAL in table.column_names:
        hit |= _original_matches(table.column(_ORIGINAL), ids | web, keys)
    if not hit.any():
        return 0
    _rewrite(path, table.filter(pa.array(~hit)))
    return int(hit.sum())


def erase_from_data_home(data_home: Path, person: Person) -> list[Removal]:
    """Remove ``person`` from every Parquet file under the data home; each snapshot's manifest keeps its
    row count true. Returns what was removed where (paths relative to the data home)."""
    root = Path(data_home)
    removals: list[Removal] = []
    for path in sorted(root.rglob("*.parquet")):
        if ERASURES_DIR in path.relative_to(root).parts:
            continue
        n = erase_parquet(path, person)
        if n:
            removals.append(Removal(str(path.relative_to(root)), n))
            if path.name == "features.parquet":
                _recount_manifest(path.parent / "manifest.json", n)
    return removals


def _recount_manifest(path: Path, removed: int) -> None:
    if not path.is_file():
        return
    manifest = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(manifest.get("rows"), int):
        manifest["rows"] = max(0, manifest["rows"] - removed)
        _write_atomic(path, json.dumps(manifest, indent=2, default=str).encode("utf-8"))


# --- verification -------------------------------------------------------------------------------------


# A needle counts where no letter or digit touches it: "100289" is found in '"100289"' or "id=100289", never
# inside "51002891". Short numeric ids can still meet an equal value of another column (a quantity).


def _pattern(needle: str) -> str:
    return f"(^|[^0-9A-Za-z]){re.escape(needle)}($|[^0-9A-Za-z])"


def _parquet_hits(path: Path, needles: Sequence[str]) -> bool:
    table = pq.read_table(path)
    for name in _string_columns(table):
        column = table.column(name)
        for needle in needles:
            if pc.any(pc.match_substring_regex(column, _pattern(needle))).as_py():
                return True
    return False


def _array_hits(array: np.ndarray, needles: Sequence[str]) -> bool:
    if array.dtype.kind not in "US":
        return False
    pattern = re.compile("|".join(_pattern(n) for n in needles))
    return any(pattern.search(t) for t in array.astype(str).ravel())


def _numpy_hits(path: Path, needles: Sequence[str]) -> bool:
    if path.suffix == ".npy":
        return _array_hits(np.load(path, allow_pickle=False), needles)
    with np.load(path, allow_pickle=False) as arrays:
        return any(_array_hits(arrays[name], needles) for name in arrays.files)


def _bytes_hits(path: Path, needles: Sequence[str]) -> bool:
    # UTF-8 and the UTF-32 NumPy writes strings in, each searched across block edges.
    edge = rb"(?<![0-9A-Za-z])"
    after = rb"(?![0-9A-Za-z])"
    parts = [edge + re.escape(n.encode("utf-8")) + after for n in needles]
    wide_edge, wide_after = rb"(?<![0-9A-Za-z]\x00\x00\x00)", rb"(?![0-9A-Za-z]\x00\x00\x00)"
    parts += [wide_edge + re.escape(n.encode("utf-32-le")) + wide_after for n in needles]
    pattern = re.compile(b"|".join(parts))
    longest = 4 * max((len(n) for n in needles), default=0)  # bytes of the longest needle (UTF-32)
    tail = b""
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            data = tail + block
            # the tail's first bytes were searched with the previous block; they stay as look-behind context
            if pattern.search(data, max(0, len(tail) - longest)):
                return True
            tail = data[-(longest + 8) :]
    return False


def residue(root: Path, needles: Iterable[str]) -> list[str]:
    """Files under ``root`` that still hold one of ``needles`` (relative paths, sorted).

    Parquet files are searched by value (their pages are compressed), ``.npy`` / ``.npz`` by their string
    arrays, everything else (SQLite databases, JSON, CSV, logs) byte by byte.
    """
    wanted = [n for n in dict.fromkeys(needles) if n]
    root = Path(root)
    found: list[str] = []
    if not wanted or not root.exists():
        return found
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        try:
            if path.suffix == ".parquet":
                hit = _parquet_hits(path, wanted)
            elif path.suffix in (".npy", ".npz"):
                hit = _numpy_hits(path, wanted)
            else:
                hit = _bytes_hits(path, wanted)
        except (OSError, ValueError, pa.ArrowException, zipfile.BadZipFile):
            hit = _bytes_hits(path, wanted)  # unreadable as its kind: its bytes are still searched
        if hit:
            found.append(str(path.relative_to(root)))
    return found


# --- receipts -----------------------------------------------------------------------------------------


def write_receipt(data_home: Path, receipt: dict[str, Any]) -> Path:
    """Write an erasure receipt (no personal data: ids, counts, file and model names) into the data home."""
    path = Path(data_home) / ERASURES_DIR / f"{receipt['erasure_id']}.json"
    _write_atomic(path, json.dumps(receipt, indent=2, default=str).encode("utf-8"))
    return path


def now_utc() -> datetime:
    return datetime.now(UTC)
