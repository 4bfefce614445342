"""The customers an audience reads in the API: the latest snapshot's, in its order, with their primary ids and
the consent per channel the online store does not hold lined up with them (Arrow arrays, read once per
snapshot). :mod:`serving.audiences` scores them."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from features.audience import ADVERTISING, CONSENT_PREFIX, Contacts, primary_ids
from features.consent import CONTACT_PREFIX, consent_rules, contact_allowed_in
from features.contract import Channel, Col, ConsentRule
from features.ingest import IDENTITY_MAP_FILE
from features.store import SNAPSHOT_FILE, Snapshot, attribute_bands, ingested_dir, latest_snapshot, open_tables

STORE_CHANNELS = tuple(c.value for c in Channel)  # consent read from the online store (real time)


@dataclass(frozen=True)
class Universe:
    """The snapshot's customers in order, with their primary ids and batch consents lined up."""

    snapshot: Snapshot
    keys: pa.Array
    ids: pa.Array
    consents: dict[str, pa.Array]  # consent_<channel> for the channels the store does not hold
    bands: dict[str, list[str]]

    def __len__(self) -> int:
        return len(self.keys)


class AudienceSource:
    """The universe of the latest snapshot, read once per snapshot (a new snapshot is read on next use)."""

    def __init__(self, data_home: Path) -> None:
        self.data_home = data_home
        self._lock = threading.Lock()
        self._universe: Universe | None = None
        self._contacts: Contacts | None = None

    def universe(self) -> Universe:
        snapshot = latest_snapshot(self.data_home)
        with self._lock:
            held = self._universe
            if held is None or held.snapshot.path != snapshot.path:
                held = self._universe = self._read(snapshot)
                self._contacts = None
            return held

    def contacts(self) -> Contacts:
        with self._lock:
            if self._contacts is None:
                self._contacts = Contacts.read(ingested_dir(self.data_home) / "customers.parquet")
            return self._contacts

    def _read(self, snapshot: Snapshot) -> Universe:
        keys = pq.read_table(snapshot.path / SNAPSHOT_FILE, columns=[Col.CUSTOMER_KEY]).column(0)
        keys = keys.cast(pa.string()).combine_chunks()
        mapping = pq.read_table(
            ingested_dir(self.data_home) / IDENTITY_MAP_FILE, columns=[Col.CUSTOMER_ID, Col.CUSTOMER_KEY]
        )
        ids = primary_ids(mapping.to_pandas())
        ids_at = pc.index_in(keys, value_set=pa.array(ids.index.to_numpy(dtype=object), pa.string()))
        primary = pa.array(ids[Col.CUSTOMER_ID].to_numpy(dtype=object), pa.string()).take(ids_at)
        rules: dict[str, ConsentRule | str] = dict(consent_rules(self.data_home))
        rules.setdefault(ADVERTISING, ConsentRule.OPT_IN)
        batch_rules = {c: r for c, r in rules.items() if c not in STORE_CHANNELS}
        consents: dict[str, pa.Array] = {}
        if batch_rules:
            as_of = snapshot.as_of
            allowed = contact_allowed_in(open_tables(self.data_home, as_of=as_of), as_of, batch_rules)
            at = pc.index_in(keys, value_set=pa.array(allowed[Col.CUSTOMER_KEY].astype(str).to_numpy(dtype=object)))
            for channel in batch_rules:
                column = pa.array(allowed[CONTACT_PREFIX + channel].to_numpy(dtype=bool))
                consents[CONSENT_PREFIX + channel] = pc.fill_null(column.take(at), False)
        return Universe(snapshot, keys, primary, consents, attribute_bands(self.data_home))
