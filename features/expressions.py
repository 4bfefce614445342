"""Derived columns of a mapping: one DuckDB SQL expression per contract column, run by DuckDB.

A mapping may compute a contract column from the source columns instead of naming one, for example
``unit_price: "sales_value / NULLIF(quantity, 0)"``, and may join small lookup files on a key (a
campaign's dates onto its members): a lookup named ``campaign`` is referred to as ``campaign.start_date``.

No Python is evaluated. An expression is parsed by DuckDB's own parser (``json_serialize_sql``) and
accepted only when it is one scalar expression: no statement, no ``FROM``, no subquery, no window, no
``*``. It runs on a connection that holds the export's rows in memory and has file access switched off
(``enable_external_access = false``, configuration locked), so an expression cannot read a file either.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa

# Nodes that make an expression more than a row-wise scalar: refused at load time.
_REFUSED = {
    "SUBQUERY": "a subquery",
    "WINDOW": "a window function",
    "STAR": "a * (name the columns)",
    "PARAMETER": "a parameter",
    "COLUMNS": "a COLUMNS(...) expression",
}
_NOT_ONE = "not one expression (write a single SQL expression, no FROM, WHERE, LIMIT or ';')"
_ROW = "__kairos_row"  # the source row position, carried through the query to keep the row order
_SOURCE = "__kairos_source"

# DuckDB result types that can never become a contract kind (text can: the contract's rules parse it).
_NUMBER_TYPES: tuple[str, ...] = (
    *("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER"),
    *("UBIGINT", "UHUGEINT", "FLOAT", "DOUBLE", "DECIMAL"),
)
_TIME_TYPES = ("DATE", "TIMESTAMP", "TIMESTAMP WITH TIME ZONE", "TIMESTAMP_S", "TIMESTAMP_MS", "TIMESTAMP_NS")
_ACCEPTS: dict[str, tuple[str, ...]] = {
    "int": (*_NUMBER_TYPES, "VARCHAR"),
    "float": (*_NUMBER_TYPES, "VARCHAR"),
    "bool": ("BOOLEAN", "VARCHAR", *_NUMBER_TYPES),
    "timestamp": (*_TIME_TYPES, "VARCHAR"),
    "date": (*_TIME_TYPES, "VARCHAR"),
    "str": (*_NUMBER_TYPES, *_TIME_TYPES, "VARCHAR", "BOOLEAN"),
}


class ExpressionError(ValueError):
    """An expression that cannot be used; the message says why, the caller says where."""


@dataclass(frozen=True)
class Parsed:
    """A checked expression and the columns it refers to (``("col",)`` or ``("lookup", "col")``)."""

    text: str
    references: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class LookupData:
    """A lookup file's rows, joined to the source on ``source.on = lookup.key`` (one row per key)."""

    frame: pd.DataFrame
    key: str
    on: str


def parse(text: str) -> Parsed:
    """Check that ``text`` is one scalar DuckDB expression and list the columns it names.

    Raises:
        ExpressionError: a syntax error, or anything that is not a row-wise scalar expression.
    """
    if not text.strip():
        raise ExpressionError("empty expression")
    con = duckdb.connect()
    try:
        raw = con.execute("SELECT json_serialize_sql(?)", [f"SELECT {text}"]).fetchone()
    finally:
        con.close()
    tree: dict[str, Any] = json.loads(raw[0]) if raw else {"error": True, "error_message": "no result"}
    if tree.get("error") and "Only SELECT" in str(tree.get("error_message")):
        raise ExpressionError(_NOT_ONE)
    if tree.get("error"):
        message = str(tree.get("error_message", "syntax error")).replace("syntax error at or near", "syntax error at")
        raise ExpressionError(f"not a valid expression: {message}")
    statements: list[dict[str, Any]] = tree.get("statements", [])
    node = statements[0]["node"] if len(statements) == 1 else {}
    if (
        node.get("type") != "SELECT_NODE"
        or len(node.get("select_list", [])) != 1
        or node.get("from_table", {}).get("type") != "EMPTY"
        or node.get("modifiers")
        or node.get("where_clause") is not None
        or node.get("group_expressions")
        or node.get("having") is not None
        or node.get("qualify") is not None
        or node.get("cte_map", {}).get("map")
    ):
        raise ExpressionError(_NOT_ONE)
    expr = node["select_list"][0]
    refs: list[tuple[str, ...]] = []
    for sub in _walk(expr):
        cls = sub.get("class")
        if cls in _REFUSED:
            raise ExpressionError(f"{_REFUSED[cls]} is not allowed: an expression works on one row")
        if cls == "COLUMN_REF":
            ref = tuple(sub.get("column_names", []))
            if ref not in refs:
                refs.append(ref)
    return Parsed(text, tuple(refs))


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if "class" in node:
            yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def unknown_reference(parsed: Parsed, columns: set[str], lookups: Mapping[str, set[str]]) -> str | None:
    """The first reference that names neither a source column nor a lookup's column, as text; else None."""
    for ref in parsed.references:
        if len(ref) == 1 and ref[0] in columns:
            continue
        if len(ref) == 2 and ref[0] in lookups and ref[1] in lookups[ref[0]]:
            continue
        if len(ref) == 2 and ref[0] in lookups:
            return f'unknown column "{ref[1]}" in lookup {ref[0]}'
        if len(ref) == 2 and ref[0] not in columns:
            return f'unknown lookup "{ref[0]}" in {".".join(ref)}'
        if len(ref) == 1:
            return f'unknown column "{ref[0]}"'
    return None


def _connection(source: pa.Table, lookups: Mapping[str, LookupData]) -> tuple[duckdb.DuckDBPyConnection, str]:
    """A connection holding the rows in memory, with file access off; and the relation to select from."""
    con = duckdb.connect()
    con.register(_SOURCE, source)
    joins = []
    for i, (name, lookup) in enumerate(lookups.items()):
        con.register(f"__kairos_lookup_{i}", pa.Table.from_pandas(lookup.frame, preserve_index=False))
        joins.append(
            (f"__kairos_lookup_{i}", _quote(name), f"s.{_quote(lookup.on)} = l{i}.{_quote(lookup.key)}", f"l{i}")
        )
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    if not joins:
        return con, _SOURCE
    # Each lookup row becomes one struct column named after the lookup: ``campaign.start_date`` is a
    # field access, and a source column that shares a name with a lookup column stays unambiguous.
    select = ", ".join(["s.*", *(f"{alias} AS {name}" for _table, name, _on, alias in joins)])
    froms = f"{_SOURCE} s" + "".join(f" LEFT JOIN {table} {alias} ON {on}" for table, _name, on, alias in joins)
    return con, f"(SELECT {select} FROM {froms})"


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def result_types(
    source: pa.Schema, expressions: Mapping[str, Parsed], lookups: Mapping[str, LookupData]
) -> dict[str, str]:
    """DuckDB's result type of each expression over a source of this schema (no row is read).

    Raises:
        ExpressionError: naming the column whose expression DuckDB cannot bind (a wrong function,
            an aggregate, a type error such as text + number).
    """
    empty = pa.Table.from_batches([], schema=source)
    con, relation = _connection(empty, {k: LookupData(v.frame.head(0), v.key, v.on) for k, v in lookups.items()})
    try:
        out = {}
        for col, parsed in expressions.items():
            try:
                rel = con.sql(f"SELECT {parsed.text} AS v FROM {relation}")
            except duckdb.Error as exc:
                raise ExpressionError(f"{col}: {_first_line(exc)}") from None
            out[col] = str(rel.types[0])
        return out
    finally:
        con.close()


def clash(kind: str, duck_type: str) -> bool:
    """True when a DuckDB result type can never become a value of the contract kind."""
    base = duck_type.split("(")[0].upper()
    return base not in _ACCEPTS.get(kind, (base,))


def evaluate(
    frame: pd.DataFrame, expressions: Mapping[str, Parsed], lookups: Mapping[str, LookupData]
) -> dict[str, pd.Series]:
    """Each expression's value on every row of ``frame``, in the frame's row order.

    Only the columns the expressions name are sent to DuckDB. Lookups must have one row per key
    (checked by the caller), so no source row is repeated or lost by a join.
    """
    if not expressions:
        return {}
    named = sorted(
        {ref[0] for p in expressions.values() for ref in p.references if len(ref) == 1 and ref[0] in frame.columns}
        | {lk.on for lk in lookups.values()}
    )
    data = frame[named].reset_index(drop=True).copy()
    data[_ROW] = range(len(data))
    con, relation = _connection(pa.Table.from_pandas(data, preserve_index=False), lookups)
    try:
        select = ", ".join(f"({p.text}) AS {_quote(col)}" for col, p in expressions.items())
        try:
            result = con.sql(f"SELECT {_ROW}, {select} FROM {relation} ORDER BY {_ROW}").arrow()
        except duckdb.Error as exc:
            # A run-time error on real rows (a failed CAST) quotes the value: only its kind is shown.
            raise ExpressionError(
                f"DuckDB stopped with a {type(exc).__name__} on the export's rows (its message is withheld: "
                "it may quote a value); use TRY_CAST or NULLIF where a value may not convert"
            ) from None
    finally:
        con.close()
    table = result.read_all() if isinstance(result, pa.RecordBatchReader) else result
    out = {}
    for col in expressions:
        series = table.column(col).to_pandas()
        series.index = frame.index
        out[col] = series
    return out


def _first_line(exc: Exception) -> str:
    """DuckDB's message without the echo of the query (which may hold a value of a lookup key)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
