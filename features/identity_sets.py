"""Identity resolution as set operations: connected components over match keys, computed by DuckDB.

The rules are those of :func:`features.identity.resolve_identities` and so is the result (tested equal):
records sharing a normalised e-mail, phone or external id are one person, unless the merge would put two
different values of a strong id into one cluster (or a forced split forbids it).

Union-find processes links one at a time in Python; here the links are rows of a DuckDB table and the
clusters are its connected components, found by label propagation (each record takes the smallest record
number among its neighbours until nothing changes). A component that holds at most one value of each
strong id and no record named by an override is exactly one cluster of the union-find: no link inside it
can be refused. The rare others (spouses sharing a phone but not a card, overrides) are resolved by the
union-find itself on their records only, so the guard and the review list are unchanged. How many merges
each link kind made is the drop in the number of components when that kind's links are added, in the
canonical order.

Only the normalisation of e-mails and phones stays in pandas (row by row); the graph is DuckDB's, which
spills to disk beyond its memory limit.
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from features.contract import Col
from features.errors import InputDataError
from features.identity import (
    OVERRIDE_KIND,
    IdentityOverrides,
    IdentityResult,
    Links,
    Pseudonymizer,
    RefusedCol,
    log_result,
    prepare_links,
    resolve_links,
)

__all__ = ["resolve_identities_sets", "resolve_links_sets"]

_MEMORY_LIMIT = "1GB"
_MAX_ROUNDS = 10_000  # label propagation rounds before giving up (a component's diameter bounds them)


def resolve_identities_sets(
    customers: pd.DataFrame,
    *,
    strong_ids: Sequence[str] = (Col.LOYALTY_ID,),
    default_region: str = "GB",
    max_shared: int | None = 50,
    pseudonymizer: Pseudonymizer,
    overrides: IdentityOverrides | None = None,
    con: duckdb.DuckDBPyConnection | None = None,
) -> IdentityResult:
    """:func:`features.identity.resolve_identities` with the clusters found by DuckDB (same arguments and
    result); ``con`` is the connection to work in (default: a new in-memory one with a 1 GB limit)."""
    links = prepare_links(customers, strong_ids=strong_ids, default_region=default_region, max_shared=max_shared)
    result = resolve_links_sets(links, pseudonymizer=pseudonymizer, overrides=overrides, con=con)
    log_result(result)
    return result


def _check_override_ids(overrides: IdentityOverrides, known: set[str]) -> set[str]:
    """Every id the overrides name (raising as the union-find does on an unknown one)."""
    named: set[str] = set()
    for kind, pairs in (("merge", overrides.merges), ("split", overrides.splits)):
        for i, (a, b) in enumerate(pairs):
            unknown = [x for x in (a, b) if x not in known]
            if unknown:
                raise InputDataError(
                    f"{overrides.where(kind, i)}: customer id(s) {unknown} not among the customers' records"
                )
            named.update((a, b))
    return named


def _propagate(con: duckdb.DuckDBPyConnection, edges: str) -> None:
    """Label propagation over ``edges`` (columns a, b; both directions listed) until table ``lab``
    (node, comp) gives each node the smallest node of its component."""
    for _ in range(_MAX_ROUNDS):
        con.execute(
            f"""CREATE OR REPLACE TABLE lab_next AS
            SELECT l.node, least(l.comp, coalesce(m.comp, l.comp)) AS comp
            FROM lab l LEFT JOIN (
                SELECT e.a AS node, min(n.comp) AS comp FROM {edges} e JOIN lab n ON n.node = e.b GROUP BY e.a
            ) m USING (node)"""
        )
        # pointer jumping: a node takes its label's label, halving the rounds on long chains
        con.execute(
            """CREATE OR REPLACE TABLE lab_next AS
            SELECT l.node, least(l.comp, r.comp) AS comp FROM lab_next l JOIN lab_next r ON r.node = l.comp"""
        )
        changed = con.execute(
            "SELECT count(*) FROM lab JOIN lab_next USING (node) WHERE lab.comp <> lab_next.comp"
        ).fetchone()
        con.execute("DROP TABLE lab")
        con.execute("ALTER TABLE lab_next RENAME TO lab")
        if not changed or changed[0] == 0:
            return
    raise RuntimeError(f"identity components did not settle in {_MAX_ROUNDS} rounds")


def resolve_links_sets(
    links: Links,
    *,
    pseudonymizer: Pseudonymizer,
    overrides: IdentityOverrides | None = None,
    con: duckdb.DuckDBPyConnection | None = None,
) -> IdentityResult:
    """:func:`features.identity.resolve_links` as connected components on DuckDB (see the module)."""
    own = con is None
    if con is None:
        con = duckdb.connect()
        con.execute(f"SET memory_limit = '{_MEMORY_LIMIT}'")
    try:
        return _resolve(links, pseudonymizer, overrides, con)
    finally:
        if own:
            con.close()


def _resolve(
    links: Links, pseudonymizer: Pseudonymizer, overrides: IdentityOverrides | None, con: duckdb.DuckDBPyConnection
) -> IdentityResult:
    id_arr = links.ids.to_numpy(dtype=object)
    order = np.argsort(id_arr, kind="stable")
    n = len(id_arr)
    node = np.empty(n, dtype=np.int64)
    node[order] = np.arange(n)
    sorted_ids = id_arr[order]
    named: set[str] = set()
    if overrides is not None:
        named = _check_override_ids(overrides, set(sorted_ids.tolist()))

    # v: one row per present link value; kind 0 is the forced merges, link kinds follow in processing order
    parts = []
    for rank, kind in enumerate(links.kinds, start=1):
        values = links.values[kind][0]
        present = values.notna().to_numpy(dtype=bool)
        parts.append(
            pa.table(
                {
                    "kind": pa.array(np.full(int(present.sum()), rank, dtype=np.int32)),
                    "node": pa.array(node[present]),
                    "value": pa.array(values[present].astype(object).to_numpy(), type=pa.string()),
                }
            )
        )
    con.register("v_in", pa.concat_tables(parts) if parts else pa.table({"kind": [], "node": [], "value": []}))
    con.execute("CREATE OR REPLACE TABLE v AS SELECT * FROM v_in")
    con.unregister("v_in")
    # star links: every record of a value group to the group's smallest record (as the union-find links)
    con.execute(
        """CREATE OR REPLACE TABLE edges AS
        SELECT v.kind, m.a, v.node AS b FROM v JOIN (SELECT kind, value, min(node) AS a FROM v GROUP BY kind, value) m
        USING (kind, value) WHERE v.node <> m.a"""
    )
    at = {str(v): i for i, v in enumerate(sorted_ids.tolist())}
    merge_pairs = [(at[a], at[b]) for a, b in overrides.merges] if overrides is not None else []
    con.register(
        "forced",
        pa.table(
            {
                "kind": pa.array([0] * len(merge_pairs), type=pa.int32()),
                "a": pa.array([p[0] for p in merge_pairs], type=pa.int64()),
                "b": pa.array([p[1] for p in merge_pairs], type=pa.int64()),
            }
        ),
    )
    con.execute("INSERT INTO edges SELECT * FROM forced")
    con.unregister("forced")
    counts = dict(con.execute("SELECT kind, count(*) FROM edges GROUP BY kind").fetchall())

    # components of each prefix of the processing order: lab_<k> after the kinds up to k
    con.execute("CREATE OR REPLACE TABLE lab AS SELECT range AS node, range AS comp FROM range(?)", [n])
    con.execute("CREATE OR REPLACE TABLE lab_0 AS SELECT * FROM lab")
    con.execute("CREATE OR REPLACE TABLE both_ways (kind INTEGER, a BIGINT, b BIGINT)")
    for rank in range(len(links.kinds) + 1):
        con.execute("INSERT INTO both_ways SELECT kind, a, b FROM edges WHERE kind = ?", [rank])
        con.execute("INSERT INTO both_ways SELECT kind, b, a FROM edges WHERE kind = ?", [rank])
        if counts.get(rank, 0):
            _propagate(con, "both_ways")
        con.execute(f"CREATE OR REPLACE TABLE lab_{rank + 1} AS SELECT * FROM lab")

    # components the union-find alone can settle: more than one value of a strong id, or an override
    strong_ranks = [links.kinds.index(k) + 1 for k in links.strong]
    named_nodes = sorted(at[x] for x in named)
    con.register("named", pa.table({"node": pa.array(named_nodes, type=pa.int64())}))
    strong_list = ", ".join(str(r) for r in strong_ranks) or "NULL"
    exact = con.execute(
        f"""WITH split AS (
            SELECT l.comp FROM v JOIN lab l USING (node) WHERE v.kind IN ({strong_list})
            GROUP BY l.comp, v.kind HAVING count(DISTINCT v.value) > 1
            UNION SELECT l.comp FROM named JOIN lab l USING (node)
        )
        SELECT l.node FROM lab l WHERE l.comp IN (SELECT comp FROM split) ORDER BY l.node"""
    ).fetchnumpy()["node"]
    con.unregister("named")
    exact_nodes = np.asarray(exact, dtype=np.int64)
    con.register("exact", pa.table({"node": pa.array(exact_nodes)}))

    # merges per kind in the settled components: the drop in their number of components
    merges_by_kind: dict[str, int] = {}
    previous = None
    for rank in range(len(links.kinds) + 2):
        row = con.execute(
            f"SELECT count(DISTINCT comp) FROM lab_{rank} WHERE node NOT IN (SELECT node FROM exact)"
        ).fetchone()
        components = int(row[0]) if row else 0
        if previous is not None and rank >= 2:
            merges_by_kind[links.kinds[rank - 2]] = previous - components
        previous = components
    comp = con.execute("SELECT comp FROM lab ORDER BY node").fetchnumpy()["comp"].astype(np.int64)
    for rank in range(len(links.kinds) + 2):
        con.execute(f"DROP TABLE IF EXISTS lab_{rank}")
    con.unregister("exact")

    rep_keys = {int(r): pseudonymizer.customer_key(sorted_ids[r]) for r in np.unique(comp)}
    keys = np.array([rep_keys[int(r)] for r in comp], dtype=object)
    refused = pd.DataFrame({c: [] for c in RefusedCol.ALL}, columns=list(RefusedCol.ALL), dtype=pd.StringDtype())
    exact_merges: dict[str, int] = {}
    if len(exact_nodes):
        sub_rows = order[exact_nodes]  # positions in the records' own order
        sub = Links(
            links.ids.iloc[sub_rows].reset_index(drop=True),
            links.strong,
            links.kinds,
            {k: (v.iloc[sub_rows].reset_index(drop=True), 0, 0) for k, (v, _, _) in links.values.items()},
        )
        settled = resolve_links(sub, pseudonymizer=pseudonymizer, overrides=overrides)
        keys[exact_nodes] = settled.mapping[Col.CUSTOMER_KEY].to_numpy(dtype=object)  # both in id order
        refused = settled.refused
        exact_merges = settled.merges_by_kind

    links_out: dict[str, int] = {}
    merges_out: dict[str, int] = {}
    if overrides is not None:
        links_out[OVERRIDE_KIND] = len(overrides.merges)
        merges_out[OVERRIDE_KIND] = exact_merges.get(OVERRIDE_KIND, 0)
    for rank, kind in enumerate(links.kinds, start=1):
        links_out[kind] = int(counts.get(rank, 0))
        merges_out[kind] = merges_by_kind[kind] + exact_merges.get(kind, 0)
    mapping = pd.DataFrame(
        {
            Col.CUSTOMER_ID: pd.array(sorted_ids, dtype=pd.StringDtype()),
            Col.CUSTOMER_KEY: pd.array(keys, dtype=pd.StringDtype()),
        }
    )
    return IdentityResult(
        mapping=mapping,
        refused=refused,
        links_by_kind=links_out,
        merges_by_kind=merges_out,
        ignored_values_by_kind={k: links.values[k][2] for k in links.kinds},
        invalid_by_kind={k: links.values[k][1] for k in links.kinds},
    )
