"""Identity resolution: which customer records are one person.

Records are linked when they share a normalised e-mail, a normalised (E.164) phone or an equal
external id (loyalty card, web client id); linked records are merged with union-find. A guard
refuses any merge that would put two different values of a strong id (one a person never has two
of, by default the loyalty card) into one cluster, and lists it for review: spouses who share a
phone keep their own cards and stay two people.

The result depends only on the set of records, never on their order: links are processed in a
canonical order (strong ids, then other external ids, then e-mail, then phone; within a kind by
normalised value, then by record id) and every cluster is named after its smallest record id.

Pseudonyms (the ``customer_key`` and the review list's value hashes) are keyed hashes, HMAC-SHA256 with
a secret the caller passes in a :class:`Pseudonymizer`: without the secret, knowing a source id is not
enough to find its key (a plain hash of the id could be recomputed by anyone holding the export). This
package reads no settings; ``kairos ingest`` builds the pseudonymizer from ``KAIROS_PSEUDONYM_SECRET``
(docs/security-pseudonyms.md: how to choose and rotate it).
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from features.contract import Col
from features.errors import InputDataError
from features.normalize import normalize_emails, normalize_phones

__all__ = [
    "DEVELOPMENT_SECRET",
    "IdentityOverrides",
    "IdentityResult",
    "Pseudonymizer",
    "RefusedCol",
    "customer_key_for",
    "load_identity_overrides",
    "rekey",
    "resolve_identities",
]

logger = logging.getLogger(__name__)

EXTERNAL_IDS: tuple[str, ...] = (Col.LOYALTY_ID, Col.WEB_CLIENT_ID)
"""Source ids that link two records when equal."""

KEY_PREFIX = "ck_"
_KEY_HEX_CHARS = 16
_VALUE_HASH_HEX_CHARS = 12
_KEY_ID_HEX_CHARS = 12
MIN_SECRET_CHARS = 16

DEVELOPMENT_SECRET = "kairos-development-pseudonym-secret: public, never for real customers"
"""The secret of development runs (``kairos ingest --dev``, tests, notebooks). It is published here, so
keys made with it are as reversible as plain hashes: never use it for real customer data."""

# Placeholders exports use for "no id"; never a link (compared case-insensitively, after stripping).
_NULL_TOKENS = frozenset({"nan", "none", "null", "n/a", "na", "-", "--", "?", "0", "unknown", "undefined"})


class RefusedCol:
    """Columns of :attr:`IdentityResult.refused`, the review list of refused merges."""

    CUSTOMER_ID_A = "customer_id_a"  # the two records the refused link joins
    CUSTOMER_ID_B = "customer_id_b"
    KEY_A = "customer_key_a"  # the clusters they belong to in the result
    KEY_B = "customer_key_b"
    LINK_KIND = "link_kind"  # the column the two records share a value of
    LINK_VALUE_HASH = "link_value_hash"  # short keyed hash (HMAC) of the shared value, never the raw value
    CONFLICT = "conflict"  # the strong-id column whose two different values forbade the merge

    ALL = (CUSTOMER_ID_A, CUSTOMER_ID_B, KEY_A, KEY_B, LINK_KIND, LINK_VALUE_HASH, CONFLICT)


@dataclass(frozen=True, eq=False)
class IdentityResult:
    """The outcome of :func:`resolve_identities`.

    Attributes:
        mapping: ``[customer_id, customer_key]``, one row per input record, sorted by customer_id.
        refused: The review list of refused merges, columns :class:`RefusedCol` (one row per refused
            link, sorted canonically); no raw personal data.
        links_by_kind: Candidate links per kind (a value shared by ``n`` records gives ``n - 1``).
        merges_by_kind: Links per kind that joined two clusters (the rest were already together or refused).
        ignored_values_by_kind: Values per kind shared by too many records to be a person's (placeholders).
        invalid_by_kind: Present values per kind that link nothing: malformed e-mails and phones,
            placeholder ids ("0", "n/a", "null" ...).
    """

    mapping: pd.DataFrame
    refused: pd.DataFrame
    links_by_kind: dict[str, int] = field(default_factory=dict)
    merges_by_kind: dict[str, int] = field(default_factory=dict)
    ignored_values_by_kind: dict[str, int] = field(default_factory=dict)
    invalid_by_kind: dict[str, int] = field(default_factory=dict)

    def report(self) -> dict[str, Any]:
        """Summarise the resolution with counts only (safe to log or publish).

        Returns:
            ``records``, ``clusters``, ``clusters_merged`` (clusters of more than one record),
            ``cluster_sizes`` ({size: number of clusters}), ``links_by_kind``, ``merges_by_kind``,
            ``refused_merges``, ``refused_by_kind``, ``ignored_values_by_kind`` and ``invalid_by_kind``.
        """
        sizes = self.mapping[Col.CUSTOMER_KEY].value_counts(sort=False)
        histogram = {int(size): int(count) for size, count in sorted(Counter(sizes.to_numpy()).items())}
        refused_by_kind = self.refused[RefusedCol.LINK_KIND].value_counts(sort=False)
        return {
            "records": len(self.mapping),
            "clusters": len(sizes),
            "clusters_merged": int((sizes > 1).sum()),
            "cluster_sizes": histogram,
            "links_by_kind": dict(self.links_by_kind),
            "merges_by_kind": dict(self.merges_by_kind),
            "refused_merges": len(self.refused),
            "refused_by_kind": {str(k): int(v) for k, v in sorted(refused_by_kind.items())},
            "ignored_values_by_kind": dict(self.ignored_values_by_kind),
            "invalid_by_kind": dict(self.invalid_by_kind),
        }


@dataclass(frozen=True, eq=False)
class Pseudonymizer:
    """Keyed pseudonyms: HMAC-SHA256 of a source value under a secret.

    The same value and secret always give the same pseudonym; another secret gives unrelated ones
    (rotating the secret re-keys every customer: docs/security-pseudonyms.md).

    Attributes:
        secret: The key, at least :data:`MIN_SECRET_CHARS` characters; never shown in ``repr``.
        development: True for :data:`DEVELOPMENT_SECRET`: pseudonyms anyone can recompute.
    """

    secret: str = field(repr=False)
    development: bool = False
    _base: hmac.HMAC = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.secret.strip()) < MIN_SECRET_CHARS:
            raise ValueError(f"the pseudonym secret must have at least {MIN_SECRET_CHARS} characters")
        if self.secret == DEVELOPMENT_SECRET and not self.development:
            raise ValueError("the development pseudonym secret is public: use it only for development data")
        # Keyed once; each digest copies the keyed state (a third of the cost of hmac.new per id).
        object.__setattr__(self, "_base", hmac.new(self.secret.encode("utf-8"), digestmod=hashlib.sha256))

    @classmethod
    def for_development(cls) -> Pseudonymizer:
        """The pseudonymizer of development runs (:data:`DEVELOPMENT_SECRET`)."""
        return cls(DEVELOPMENT_SECRET, development=True)

    @property
    def key_id(self) -> str:
        """A short fingerprint of the secret (safe to publish): which secret made a set of keys."""
        return self._digest(b"kairos-pseudonym-key-id")[:_KEY_ID_HEX_CHARS]

    def _digest(self, message: bytes) -> str:
        mac = self._base.copy()
        mac.update(message)
        return mac.hexdigest()

    def customer_key(self, customer_id: str) -> str:
        """``"ck_"`` and the first 16 hex characters of HMAC-SHA256(secret, ``customer_id``)."""
        return KEY_PREFIX + self._digest(customer_id.encode("utf-8"))[:_KEY_HEX_CHARS]

    def value_hash(self, kind: str, value: str) -> str:
        """12 hex characters of HMAC-SHA256(secret, kind, value): a review list's link value."""
        # The kind is part of the message so that equal strings in two columns hash apart.
        return self._digest(f"{kind}\x1f{value}".encode())[:_VALUE_HASH_HEX_CHARS]


def customer_key_for(customer_id: str, pseudonymizer: Pseudonymizer) -> str:
    """The pseudonymous key of a cluster whose smallest record id is ``customer_id``.

    Args:
        customer_id: A source record id.
        pseudonymizer: The keyed hash (its secret decides the key).

    Returns:
        ``"ck_"`` followed by 16 hex characters of the HMAC-SHA256 of the id.
    """
    return pseudonymizer.customer_key(customer_id)


def _id_strings(values: pd.Series) -> pd.Series:
    """Ids as Python strings (object dtype) with None for missing, empty or whitespace-only values."""
    text = values.astype(pd.StringDtype()).str.strip()
    text = text.where(text.str.len().gt(0))
    return pd.Series(text.to_numpy(dtype=object, na_value=None), index=values.index, dtype=object)


def _external_ids(values: pd.Series) -> tuple[pd.Series, int]:
    """Stripped external ids, NA for missing values and placeholders; and the number of placeholders."""
    text = values.astype(pd.StringDtype()).str.strip()
    present = text.notna() & text.str.len().gt(0)
    placeholder = present & text.str.lower().isin(_NULL_TOKENS)
    return text.where(present & ~placeholder), int(placeholder.sum())


def _column(customers: pd.DataFrame, name: str) -> pd.Series:
    if name in customers.columns:
        return customers[name]
    return pd.Series(pd.NA, index=customers.index, dtype=pd.StringDtype())


def _link_values(customers: pd.DataFrame, kind: str, default_region: str) -> tuple[pd.Series, int]:
    """One link kind's normalised value per record (NA if absent or malformed), and the malformed count."""
    values = _column(customers, kind)
    if kind == Col.EMAIL:
        normalised, valid = normalize_emails(values)
        return normalised, int((~valid).sum())
    if kind == Col.PHONE:
        normalised, valid = normalize_phones(values, _column(customers, Col.COUNTRY), default_region=default_region)
        return normalised, int((~valid).sum())
    return _external_ids(values)


def _drop_shared(values: pd.Series, max_shared: int | None) -> tuple[pd.Series, int]:
    """Blank values held by more than ``max_shared`` records; return them and how many values were blanked."""
    if max_shared is None:
        return values, 0
    counts = values.value_counts(dropna=True)
    shared = counts.index[counts.to_numpy() > max_shared]
    if len(shared) == 0:
        return values, 0
    return values.mask(values.isin(shared)), len(shared)


def _star_links(values: pd.Series, node: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Links joining every record of a value group to the group's first record.

    Returns ``(first, other, value_pos)``: node pairs sorted by (value, node) and the position in
    ``values`` of each link's value.
    """
    present = values.notna().to_numpy(dtype=bool)
    frame = pd.DataFrame({"value": values.to_numpy()[present], "node": node[present]})
    frame["pos"] = np.flatnonzero(present)
    frame = frame.sort_values(["value", "node"], kind="stable", ignore_index=True)
    if len(frame) == 0:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, empty
    vals = frame["value"].to_numpy()
    nodes = frame["node"].to_numpy()
    starts = np.ones(len(frame), dtype=bool)
    starts[1:] = vals[1:] != vals[:-1]
    start_pos = np.maximum.accumulate(np.where(starts, np.arange(len(frame)), 0))
    members = ~starts
    return (
        nodes[start_pos][members].astype(np.int64),
        nodes[members].astype(np.int64),
        frame["pos"].to_numpy()[members].astype(np.int64),
    )


def _conflict(held_a: tuple[str | None, ...], held_b: tuple[str | None, ...], strong: tuple[str, ...]) -> str | None:
    """The first strong-id column two clusters hold different values of, if any."""
    for column, x, y in zip(strong, held_a, held_b, strict=True):
        if x is not None and y is not None and x != y:
            return column
    return None


OVERRIDE_KIND = "override"  # the link kind of forced merges (``merges_by_kind``, ``links_by_kind``)
SPLIT_CONFLICT = "forced_split"  # the review list's ``conflict`` of a merge a forced split refused


@dataclass(frozen=True)
class IdentityOverrides:
    """Decisions a person made about records, applied by :func:`resolve_identities` before and above its rules.

    ``merges``: pairs of records that are one person, linked first, whatever the rules say (even two
    different loyalty cards: a replaced card). ``splits``: pairs of records that are never one person: any
    link that would put them in one cluster is refused and listed for review with the conflict
    ``forced_split`` (the rest of each cluster still forms by the rules). Each pair keeps where it was read
    (``where``: "overrides.csv line 4") for error messages. Build with :func:`load_identity_overrides`.
    """

    merges: tuple[tuple[str, str], ...] = ()
    splits: tuple[tuple[str, str], ...] = ()
    merge_where: tuple[str, ...] = ()
    split_where: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for kind, pairs, where in (("merge", self.merges, self.merge_where), ("split", self.splits, self.split_where)):
            if where and len(where) != len(pairs):
                raise ValueError(f"{kind}: {len(pairs)} pairs but {len(where)} positions")
            for i, (a, b) in enumerate(pairs):
                at = where[i] if where else f"{kind} {i + 1}"
                if not a or not b:
                    raise InputDataError(f"{at}: a {kind} needs two customer ids")
                if a == b:
                    raise InputDataError(f"{at}: a {kind} of {a!r} with itself")

    def where(self, kind: str, i: int) -> str:
        where = self.merge_where if kind == "merge" else self.split_where
        return where[i] if where else f"{kind} {i + 1}"


OVERRIDE_COLUMNS = ("action", "customer_id_a", "customer_id_b")  # the CSV's header (more columns are ignored)


def load_identity_overrides(path: Path | str) -> IdentityOverrides:
    """Read forced merges and splits from a CSV or YAML file.

    CSV (``.csv``): a header with ``action,customer_id_a,customer_id_b`` (other columns, e.g. ``note``, are
    ignored: the review list ``identity_review.parquet`` has the two id columns, so its rows can be copied in),
    then one pair per row, ``action`` being ``merge`` or ``split``::

        action,customer_id_a,customer_id_b,note
        merge,C0012,C0457,same person: new card after losing the old one
        split,C0090,C0091,twins sharing an e-mail

    YAML (``.yaml``/``.yml``): ``merge`` and ``split``, each a list of groups of two or more ids; a merge group
    is one person, a split group is all different people::

        merge:
          - [C0012, C0457]
        split:
          - [C0090, C0091, C0092]

    Raises:
        InputDataError: the file is missing, of another type, or malformed; the message names the file and
            the line (CSV) or the group (YAML).
    """
    path = Path(path)
    if not path.is_file():
        raise InputDataError(f"identity overrides: no file at {path}")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _overrides_from_csv(path)
    if suffix in (".yaml", ".yml"):
        return _overrides_from_yaml(path)
    raise InputDataError(f"{path}: identity overrides must be a .csv or .yaml file, not {suffix or 'no extension'!r}")


def _overrides_from_csv(path: Path) -> IdentityOverrides:
    pairs: dict[str, list[tuple[str, str]]] = {"merge": [], "split": []}
    where: dict[str, list[str]] = {"merge": [], "split": []}
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in OVERRIDE_COLUMNS if c not in header]
        if missing:
            raise InputDataError(
                f"{path} line 1: missing column(s) {missing}; the header needs {list(OVERRIDE_COLUMNS)}"
            )
        for row in reader:
            line = f"{path} line {reader.line_num}"
            values = {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}
            action = values["action"].lower()
            if not any(values.values()):
                continue  # a blank line
            if action not in pairs:
                raise InputDataError(f"{line}: action must be merge or split, not {values['action']!r}")
            pairs[action].append((values["customer_id_a"], values["customer_id_b"]))
            where[action].append(line)
    return IdentityOverrides(tuple(pairs["merge"]), tuple(pairs["split"]), tuple(where["merge"]), tuple(where["split"]))


def _overrides_from_yaml(path: Path) -> IdentityOverrides:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise InputDataError(f"{path}: not valid YAML ({exc})") from exc
    data = data or {}
    if not isinstance(data, dict) or set(data) - {"merge", "split"}:
        extra = sorted(set(data) - {"merge", "split"}) if isinstance(data, dict) else []
        raise InputDataError(
            f"{path}: expected the keys merge and split at the top" + (f", not {extra}" if extra else "")
        )
    pairs: dict[str, list[tuple[str, str]]] = {"merge": [], "split": []}
    where: dict[str, list[str]] = {"merge": [], "split": []}
    for kind in ("merge", "split"):
        groups = data.get(kind) or []
        if not isinstance(groups, list):
            raise InputDataError(f"{path}: {kind} must be a list of groups of customer ids")
        for i, group in enumerate(groups):
            at = f"{path} {kind}[{i}]"
            if not isinstance(group, list) or len(group) < 2 or not all(isinstance(x, str | int) for x in group):
                raise InputDataError(f"{at}: a group is a list of two or more customer ids")
            ids = [str(x).strip() for x in group]
            # a merge group is a chain to its first id; a split group is every pair of its ids
            found = (
                [(ids[0], x) for x in ids[1:]]
                if kind == "merge"
                else [(x, y) for j, x in enumerate(ids) for y in ids[j + 1 :]]
            )
            pairs[kind] += found
            where[kind] += [at] * len(found)
    return IdentityOverrides(tuple(pairs["merge"]), tuple(pairs["split"]), tuple(where["merge"]), tuple(where["split"]))


def _combine(a: tuple[str | None, ...] | None, b: tuple[str | None, ...] | None) -> tuple[str | None, ...] | None:
    """The strong-id values a cluster holds after a forced merge of clusters holding ``a`` and ``b`` (the first's
    value where both hold one: a forced merge is above the guard)."""
    if a is None or b is None:
        return a if b is None else b
    return tuple(x if x is not None else y for x, y in zip(a, b, strict=True))


def resolve_identities(
    customers: pd.DataFrame,
    *,
    strong_ids: Sequence[str] = (Col.LOYALTY_ID,),
    default_region: str = "GB",
    max_shared: int | None = 50,
    pseudonymizer: Pseudonymizer,
    overrides: IdentityOverrides | None = None,
) -> IdentityResult:
    """Group customer records into persons and give each person a stable pseudonymous key.

    Links: records sharing a normalised e-mail, an E.164 phone (read in the record's country) or an
    equal non-empty external id (loyalty_id, web_client_id). Links are processed in a canonical
    order — strong ids, then the other external ids, then e-mail, then phone; within a kind sorted by
    value, then by record id — and merged with union-find. A merge that would put two different
    values of a strong id into one cluster is refused and listed in ``refused``. The result therefore
    depends only on the set of records: neither row order nor extra columns (such as a
    ``customer_key`` from an earlier run) change it.

    Args:
        customers: The customers table with contract column names; ``customer_id`` is required and
            unique, ``email``, ``phone``, ``loyalty_id``, ``web_client_id`` and ``country`` are used
            when present, other columns are ignored.
        strong_ids: Columns a person never has two different values of.
        default_region: Region for phone numbers whose record has no recognisable country.
        max_shared: A value shared by more records than this is a placeholder (a shop's phone, a
            "noemail@" address), not a person's, and links nothing; None disables the check.
        pseudonymizer: The keyed hash that names clusters and review-list values.
        overrides: Forced merges (linked first, above the strong-id guard) and forced splits (a link that
            would join the two records is refused, conflict ``forced_split``): :class:`IdentityOverrides`.

    Returns:
        The :class:`IdentityResult`.

    Raises:
        InputDataError: ``customer_id`` is missing, empty or duplicated; an override names a record that
            is not among the customers, or a forced split whose two records the forced merges join.
    """
    links = prepare_links(customers, strong_ids=strong_ids, default_region=default_region, max_shared=max_shared)
    result = resolve_links(links, pseudonymizer=pseudonymizer, overrides=overrides)
    log_result(result)
    return result


@dataclass(frozen=True, eq=False)
class Links:
    """What identity resolution reads of the customer records: each record's id, and per link kind, in
    processing order, the normalised value of each record (NA where it has none, a malformed one or a
    placeholder shared by too many records), the malformed count and the blanked-values count.

    Attributes:
        ids: Record ids (object strings), in the customers' row order.
        strong: The strong-id columns, a subset of ``kinds``, first.
        kinds: Every link kind, in the canonical processing order.
        values: kind -> (normalised values aligned with ``ids``, invalid count, ignored count).
    """

    ids: pd.Series
    strong: tuple[str, ...]
    kinds: tuple[str, ...]
    values: dict[str, tuple[pd.Series, int, int]]


def log_result(result: IdentityResult) -> None:
    """One log line of counts (no personal data)."""
    report = result.report()
    logger.info(
        "identity resolution: %d records -> %d clusters (%d merged), %d refused merges",
        report["records"],
        report["clusters"],
        report["clusters_merged"],
        report["refused_merges"],
    )


def prepare_links(
    customers: pd.DataFrame,
    *,
    strong_ids: Sequence[str] = (Col.LOYALTY_ID,),
    default_region: str = "GB",
    max_shared: int | None = 50,
) -> Links:
    """Check the records' ids and normalise every link value (see :func:`resolve_identities`).

    Raises:
        InputDataError: ``customer_id`` is missing, empty or duplicated.
    """
    if Col.CUSTOMER_ID not in customers.columns:
        raise InputDataError(f"customers: column {Col.CUSTOMER_ID!r} is required for identity resolution")
    ids = _id_strings(customers[Col.CUSTOMER_ID])
    if ids.isna().any():
        raise InputDataError(
            f"customers: {int(ids.isna().sum())} record(s) without {Col.CUSTOMER_ID}; quarantine them first"
        )
    if ids.duplicated().any():
        raise InputDataError(
            f"customers: {int(ids.duplicated().sum())} duplicated {Col.CUSTOMER_ID} value(s); "
            "each record needs a unique id"
        )
    strong = tuple(dict.fromkeys(strong_ids))
    kinds = (*strong, *(k for k in EXTERNAL_IDS if k not in strong))
    kinds = (*kinds, *(k for k in (Col.EMAIL, Col.PHONE) if k not in kinds))
    prepared = {}
    for kind in kinds:
        values, invalid = _link_values(customers, kind, default_region)
        values, ignored = _drop_shared(values, max_shared)
        prepared[kind] = (values.reset_index(drop=True), invalid, ignored)
    return Links(ids.reset_index(drop=True), strong, kinds, prepared)


def resolve_links(
    links: Links, *, pseudonymizer: Pseudonymizer, overrides: IdentityOverrides | None = None
) -> IdentityResult:
    """Union-find over prepared links in the canonical order (the rules of :func:`resolve_identities`).

    Raises:
        InputDataError: an override names a record that is not among the customers, or a forced split
            whose two records the forced merges join.
    """
    ids, strong, kinds = links.ids, links.strong, links.kinds
    # Nodes are records numbered in customer_id order, so node order is canonical.
    id_arr = ids.to_numpy(dtype=object)
    order = np.argsort(id_arr, kind="stable")
    n = len(id_arr)
    node = np.empty(n, dtype=np.int64)
    node[order] = np.arange(n)
    sorted_ids = id_arr[order]

    parent = list(range(n))
    size = [1] * n
    prepared = links.values
    # Per root: the strong-id values its cluster holds (None where it holds none); roots absent hold none.
    held: dict[int, tuple[str | None, ...]] = {}
    if strong:
        columns = [prepared[k][0].to_numpy(dtype=object, na_value=None) for k in strong]
        holders = np.zeros(n, dtype=bool)
        for column in columns:
            holders |= pd.notna(column)
        for row in np.flatnonzero(holders).tolist():
            held[int(node[row])] = tuple(column[row] for column in columns)

    def find(x: int) -> int:
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    # Forced splits: per record, the records it must stay apart from; per root, its records that have some.
    apart: dict[int, set[int]] = {}
    constrained: dict[int, set[int]] = {}

    def kept_apart(ra: int, rb: int) -> bool:
        small, other = (ra, rb) if len(constrained.get(ra, ())) <= len(constrained.get(rb, ())) else (rb, ra)
        return any(find(f) == other for m in constrained.get(small, ()) for f in apart[m])

    def union(ra: int, rb: int, merged: tuple[str | None, ...] | None) -> None:
        if size[ra] < size[rb]:
            ra, rb = rb, ra
        parent[rb] = ra
        size[ra] += size[rb]
        held.pop(rb, None)
        if merged is not None:
            held[ra] = merged
        if rb in constrained:
            constrained.setdefault(ra, set()).update(constrained.pop(rb))

    links_by_kind: dict[str, int] = {}
    merges_by_kind: dict[str, int] = {}
    ignored_by_kind: dict[str, int] = {}
    invalid_by_kind: dict[str, int] = {}
    refused_rows: list[tuple[int, int, str, str, str]] = []
    if overrides is not None:
        at = {str(v): i for i, v in enumerate(sorted_ids.tolist())}

        def nodes(kind: str, pairs: tuple[tuple[str, str], ...]) -> list[tuple[int, int, int]]:
            out = []
            for i, (a, b) in enumerate(pairs):
                unknown = [x for x in (a, b) if x not in at]
                if unknown:
                    raise InputDataError(
                        f"{overrides.where(kind, i)}: customer id(s) {unknown} not among the customers' records"
                    )
                x, y = sorted((at[a], at[b]))
                out.append((x, y, i))
            return sorted(out)  # canonical order: the result never depends on the file's order

        merges = 0
        for x, y, _ in nodes("merge", overrides.merges):
            rx, ry = find(x), find(y)
            if rx != ry:
                union(rx, ry, _combine(held.get(rx), held.get(ry)))
                merges += 1
        links_by_kind[OVERRIDE_KIND] = len(overrides.merges)
        merges_by_kind[OVERRIDE_KIND] = merges
        for x, y, i in nodes("split", overrides.splits):
            if find(x) == find(y):
                raise InputDataError(
                    f"{overrides.where('split', i)}: {sorted_ids[x]!r} and {sorted_ids[y]!r} must be apart, but the "
                    "forced merges make them one person"
                )
            apart.setdefault(x, set()).add(y)
            apart.setdefault(y, set()).add(x)
        for x in apart:
            constrained.setdefault(find(x), set()).add(x)
    for kind in kinds:
        values, invalid, ignored = prepared[kind]
        first, other, value_pos = _star_links(values, node)
        links_by_kind[kind] = len(first)
        ignored_by_kind[kind] = ignored
        invalid_by_kind[kind] = invalid
        merges = 0
        for a, b, pos in zip(first.tolist(), other.tolist(), value_pos.tolist(), strict=True):
            ra, rb = find(a), find(b)
            if ra == rb:
                continue
            ha, hb = held.get(ra), held.get(rb)
            merged = ha if hb is None else hb
            if ha is not None and hb is not None:
                conflict = _conflict(ha, hb, strong)
                if conflict is not None:
                    refused_rows.append((a, b, kind, pseudonymizer.value_hash(kind, str(values.iloc[pos])), conflict))
                    continue
                merged = tuple(x if x is not None else y for x, y in zip(ha, hb, strict=True))
            if constrained and kept_apart(ra, rb):
                refused_rows.append((a, b, kind, pseudonymizer.value_hash(kind, str(values.iloc[pos])), SPLIT_CONFLICT))
                continue
            union(ra, rb, merged)
            merges += 1
        merges_by_kind[kind] = merges

    roots = np.fromiter((find(x) for x in range(n)), dtype=np.int64, count=n)
    # Nodes are numbered in id order, so a cluster's smallest node is its smallest customer_id.
    smallest = np.full(n, n, dtype=np.int64)
    np.minimum.at(smallest, roots, np.arange(n))
    rep = smallest[roots]
    rep_keys = {int(r): pseudonymizer.customer_key(sorted_ids[r]) for r in np.unique(rep)}
    keys = np.array([rep_keys[int(r)] for r in rep], dtype=object)
    mapping = pd.DataFrame(
        {
            Col.CUSTOMER_ID: pd.array(sorted_ids, dtype=pd.StringDtype()),
            Col.CUSTOMER_KEY: pd.array(keys, dtype=pd.StringDtype()),
        }
    )
    refused = pd.DataFrame(
        {
            RefusedCol.CUSTOMER_ID_A: [sorted_ids[a] for a, *_ in refused_rows],
            RefusedCol.CUSTOMER_ID_B: [sorted_ids[b] for _, b, *_ in refused_rows],
            RefusedCol.KEY_A: [keys[a] for a, *_ in refused_rows],
            RefusedCol.KEY_B: [keys[b] for _, b, *_ in refused_rows],
            RefusedCol.LINK_KIND: [r[2] for r in refused_rows],
            RefusedCol.LINK_VALUE_HASH: [r[3] for r in refused_rows],
            RefusedCol.CONFLICT: [r[4] for r in refused_rows],
        },
        columns=list(RefusedCol.ALL),
        dtype=pd.StringDtype(),
    )
    result = IdentityResult(
        mapping=mapping,
        refused=refused,
        links_by_kind=links_by_kind,
        merges_by_kind=merges_by_kind,
        ignored_values_by_kind=ignored_by_kind,
        invalid_by_kind=invalid_by_kind,
    )
    return result


def rekey(table: pd.DataFrame, mapping: pd.DataFrame, pseudonymizer: Pseudonymizer) -> pd.DataFrame:
    """Add ``customer_key`` right after ``customer_id`` in any table that refers to customer records.

    Rows with an empty customer_id (guest checkouts, anonymous visitors) get an NA key and are kept.
    A customer_id absent from ``mapping`` (an order of a customer with no customer record) gets the
    key of a singleton cluster, derived from its own id exactly as :func:`resolve_identities` would.
    Rows are never dropped or reordered; an existing ``customer_key`` column is replaced.

    Args:
        table: Any table with a ``customer_id`` column.
        mapping: :attr:`IdentityResult.mapping` (``customer_id`` -> ``customer_key``).
        pseudonymizer: The one the mapping was made with (it keys the ids the mapping lacks).

    Returns:
        A new DataFrame with the rows and index of ``table`` and the added column.

    Raises:
        InputDataError: ``table`` has no ``customer_id`` column, or ``mapping`` lacks its columns.
    """
    if Col.CUSTOMER_ID not in table.columns:
        raise InputDataError(f"cannot re-key a table without a {Col.CUSTOMER_ID!r} column")
    missing = {Col.CUSTOMER_ID, Col.CUSTOMER_KEY} - set(mapping.columns)
    if missing:
        raise InputDataError(f"identity mapping lacks column(s) {sorted(missing)}")
    lookup = pd.Series(
        mapping[Col.CUSTOMER_KEY].to_numpy(dtype=object),
        index=_id_strings(mapping[Col.CUSTOMER_ID]).to_numpy(dtype=object),
        dtype=object,
    )
    ids = _id_strings(table[Col.CUSTOMER_ID])
    keys = ids.map(lookup).astype(object)
    unmatched = ids.notna() & keys.isna()
    if unmatched.any():
        own = {v: pseudonymizer.customer_key(v) for v in pd.unique(ids[unmatched])}
        keys[unmatched] = ids[unmatched].map(own)
    out = table.drop(columns=[Col.CUSTOMER_KEY]) if Col.CUSTOMER_KEY in table.columns else table.copy()
    out.insert(
        list(out.columns).index(Col.CUSTOMER_ID) + 1,
        Col.CUSTOMER_KEY,
        pd.array(keys.to_numpy(dtype=object), dtype=pd.StringDtype()),
    )
    return out
