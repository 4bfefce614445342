"""The same feature definitions on DuckDB and on Spark give the same table (floats within 1e-9 relative).

Spark runs in local mode. Without pyspark or Java the test skips locally, but fails under CI=true.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from features.definitions import FEATURES
from features.ingest import ingest
from features.mapping import load_mapping
from features.store import execute_features, open_tables
from synth import generate_world

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    from features.backends import BackendUnavailableError, spark_session

    try:
        session = spark_session("local[2]", config={"spark.driver.memory": "1g"})
    except BackendUnavailableError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Spark must run in CI: {exc}")
        pytest.skip(str(exc))
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("spark-world")
    generate_world(600, 5, root / "raw")
    ingest(root / "raw", load_mapping("synthetic"), root / "home", now=datetime(2026, 1, 1, tzinfo=UTC))
    return root / "home"


@pytest.mark.parametrize("as_of", [datetime(2025, 3, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)])
def test_whole_feature_table_is_equal_on_duckdb_and_spark(spark: Any, home: Path, as_of: datetime) -> None:
    import ibis

    on_duckdb = execute_features(open_tables(home), as_of)
    on_spark = execute_features(open_tables(home, ibis.pyspark.connect(spark)), as_of)
    assert len(on_duckdb) > 100
    assert on_duckdb["customer_key"].tolist() == on_spark["customer_key"].tolist()
    for feature in FEATURES:
        left, right = on_duckdb[feature.name], on_spark[feature.name]
        if feature.dtype == "string":
            assert left.fillna("<null>").tolist() == right.fillna("<null>").tolist(), feature.name
            continue
        a, b = left.to_numpy(np.float64), right.to_numpy(np.float64)
        assert (np.isnan(a) == np.isnan(b)).all(), f"{feature.name}: nulls differ"
        both = ~np.isnan(a)
        np.testing.assert_allclose(a[both], b[both], rtol=1e-9, atol=0, err_msg=feature.name)
