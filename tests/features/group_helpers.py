"""Running one feature group in tests: checks the group's contract and indexes by customer_key."""

from __future__ import annotations

from datetime import datetime

import ibis
import pandas as pd

from features.contract import Col
from features.defs.common import FeatureGroup, Tables


def run_group(group: FeatureGroup, tables: Tables, as_of: datetime) -> pd.DataFrame:
    """Execute ``group`` as of ``as_of``: exactly its features, one row per known customer_key."""
    frame = group.build(tables, ibis.timestamp(as_of)).execute()
    assert list(frame.columns) == [Col.CUSTOMER_KEY, *(f.name for f in group.features)]
    assert frame[Col.CUSTOMER_KEY].notna().all() and frame[Col.CUSTOMER_KEY].is_unique
    return frame.sort_values(Col.CUSTOMER_KEY).set_index(Col.CUSTOMER_KEY)
