"""Execution backends for the feature definitions: embedded DuckDB by default, Apache Spark for data
that outgrows one machine. The definitions are the same Ibis expressions on both."""

from __future__ import annotations

import contextlib
from typing import Any, Literal

import duckdb
import ibis

from features.errors import KairosError

Backend = Literal["duckdb", "spark"]


class BackendUnavailableError(KairosError):
    """The requested backend cannot be started here (missing extra, no Java, ...)."""


def connect(backend: Backend = "duckdb", **options: Any) -> ibis.BaseBackend:
    """An Ibis connection for ``backend``.

    Args:
        backend: ``duckdb`` (embedded, the default) or ``spark``.
        **options: for Spark, ``master`` (default ``local[2]``; ``spark://host:7077`` or ``yarn`` for a
            cluster) and any ``spark.*`` configuration as keyword ``config={...}``; or ``session`` to
            reuse an existing SparkSession.

    Raises:
        BackendUnavailableError: pyspark is not installed or Spark does not start.
    """
    if backend == "duckdb":
        con = ibis.duckdb.connect()
        # The CLI draws its own bar, so stdout stays clean for scripts. Inside Jupyter DuckDB insists on
        # ipywidgets even to switch it off: then the setting is left as it is.
        with contextlib.suppress(duckdb.Error):
            con.raw_sql("SET enable_progress_bar = false")
        return con
    if backend == "spark":
        return ibis.pyspark.connect(spark_session(**options))
    raise BackendUnavailableError(f"unknown backend {backend!r} (duckdb or spark)")


def spark_session(master: str = "local[2]", config: dict[str, str] | None = None, session: Any | None = None) -> Any:
    """A SparkSession whose SQL session time zone is UTC (timestamps must not shift)."""
    if session is not None:
        session.conf.set("spark.sql.session.timeZone", "UTC")
        return session
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:
        raise BackendUnavailableError(
            "Spark needs the optional extra: pip install -c constraints.txt 'kairos[spark]' (and Java 17+)"
        ) from exc
    builder = (
        SparkSession.builder.master(master)
        .appName("kairos-features")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "8")
    )
    for key, value in (config or {}).items():
        builder = builder.config(key, value)
    try:
        return builder.getOrCreate()
    except Exception as exc:  # py4j / JVM start-up failures have no common base class
        raise BackendUnavailableError(f"Spark did not start ({master}): {exc}") from exc
