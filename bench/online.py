"""Benchmark: online-store lookups of 1, 100 and 10,000 customers, both backends, against their floors.

    .venv/bin/python bench/online.py [--customers 20000] [--features 240] [--with-events 0.05]

Builds a synthetic store (random float32 features under the catalogue's names, padded to
``--features``; a share of the customers with real-time events applied) and times, per lookup size:

- in-process: ``InMemoryOnlineStore.lookup`` vs the floor, NumPy fancy indexing of the same rows of
  the same matrix (no id resolution, no ageing);
- Redis (127.0.0.1:6379, skipped when absent unless CI=true): ``RedisOnlineStore.lookup`` vs the
  floor, a bare MGET of the same customers' feature keys (no decoding). Lookups by the retailer's
  customer_id (one more round trip) are timed too.

Each store is timed twice: with the snapshot's event times (``History``: every real-time window recounted
at the read time, exact; the default since issue 21) and without (``--no-history`` rows: the windows keep
the snapshot's counts, the path before exact windows). The synthetic history gives each customer about 3
orders in the last 400 days, 8 views, 2 add-to-carts and 3 sessions in the last 40 days.

Figures are medians per call, printed with their ratio to the floor measured in the same run; nothing is
asserted. The bench's keys live under a unique prefix and are deleted at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, this folder comes first on sys.path and bench/features.py would shadow the package.
sys.path[:] = [str(ROOT), *(p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench")]

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

SIZES = (1, 100, 10_000)
AS_OF = datetime(2025, 12, 1, tzinfo=UTC)
BUDGET_S = 1.0  # time spent per timed case


def _paired(fn: Callable[[], Any], floor: Callable[[], Any], budget: float = BUDGET_S) -> tuple[float, float]:
    """Median seconds per call of ``fn`` and of ``floor``, timed in alternation (same machine load)."""
    fn(), floor()  # warm
    took: list[float] = []
    base: list[float] = []
    deadline = time.perf_counter() + budget
    while len(took) < 7 or (time.perf_counter() < deadline and len(took) < 20_000):
        started = time.perf_counter()
        floor()
        middle = time.perf_counter()
        fn()
        took.append(time.perf_counter() - middle)
        base.append(middle - started)
    return statistics.median(took), statistics.median(base)


def _world(n: int, width: int, seed: int) -> tuple[pd.DataFrame, list[str], list[str], dict[str, str]]:
    from features.definitions import FEATURES
    from features.realtime import REALTIME_FEATURES

    names = [f.name for f in FEATURES if f.dtype == "float32"]
    names += [n for n in REALTIME_FEATURES if n not in names]
    names += [f"pad_{i:03d}" for i in range(max(0, width - len(names)))]
    ages = [f.name for f in FEATURES if f.ages] + [n for n in REALTIME_FEATURES if n.startswith("days_since")]
    ages += ["recency_days", "tenure_days"]
    rng = np.random.default_rng(seed)
    matrix = (rng.random((n, len(names))) * 100).astype(np.float32)
    matrix[rng.random((n, len(names))) < 0.1] = np.nan
    frame = pd.DataFrame(matrix, columns=names)
    frame.insert(0, "customer_key", [f"ck_{i:016x}" for i in rng.permutation(n)])
    aliases = {f"{100000 + i}": key for i, key in enumerate(frame["customer_key"])}
    return frame, names, sorted(set(ages) & set(names)), aliases


def _events(keys: list[str], share: float, seed: int) -> list[Any]:
    from features.realtime import Event, EventKind

    rng = np.random.default_rng(seed)
    chosen = [k for k in keys if rng.random() < share]
    out = []
    for i, key in enumerate(chosen):
        at = AS_OF + timedelta(minutes=int(rng.integers(1, 600)))
        out.append(Event(EventKind.VIEW, at, customer_key=key, session_id=f"s{i}"))
        out.append(Event(EventKind.ADD_TO_CART, at + timedelta(minutes=1), customer_key=key, session_id=f"s{i}"))
        if i % 5 == 0:
            out.append(Event(EventKind.ORDER, at + timedelta(minutes=5), customer_key=key))
    return out


def _history(n: int, seed: int) -> Any:
    """A synthetic :class:`features.realtime.History` for ``n`` rows (see the module docs)."""
    from features.realtime import HISTORY_STREAMS, WEIGHTED_STREAMS, History, Stream

    rng = np.random.default_rng(seed)
    mean = {"order": 3.0, "view": 8.0, "add_to_cart": 2.0, "session": 3.0}
    span = {"order": 400.0, "view": 40.0, "add_to_cart": 40.0, "session": 40.0}
    streams = {}
    for name in HISTORY_STREAMS:
        counts = rng.poisson(mean.get(name, 2.0), n)
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        ages = rng.random(int(offsets[-1])) * span.get(name, 40.0) * 86_400
        times = AS_OF.timestamp() - ages
        for r in range(n):  # sorted within each row
            times[offsets[r] : offsets[r + 1]].sort()
        weights = rng.integers(1, 40_000, len(times)) / 100 if name in WEIGHTED_STREAMS else None
        streams[name] = Stream(offsets, times, weights)
    return History(streams)


def _row(label: str, n: int, timed: tuple[float, float]) -> None:
    took, floor = timed
    print(f"{label:<30} {n:>6}  {took * 1e6:>11,.1f}  {floor * 1e6:>11,.1f}  {took / floor:>7.2f}x")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--features", type=int, default=240, help="width of the matrix (catalogue names, padded)")
    parser.add_argument("--with-events", type=float, default=0.05, help="share of customers with events applied")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()

    from features.online import InMemoryOnlineStore, RedisOnlineStore, SnapshotParts
    from features.realtime import REALTIME_FILLS

    frame, names, ages, aliases = _world(args.customers, args.features, args.seed)
    keys = frame["customer_key"].tolist()
    key_to_id = {k: cid for cid, k in aliases.items()}
    events = _events(keys, args.with_events, args.seed)
    now = AS_OF + timedelta(hours=12)
    rng = np.random.default_rng(args.seed + 1)
    print(f"{args.customers:,} customers x {len(names)} float32 features; {len(events):,} events applied to ")
    print(f"{args.with_events:.0%} of them; lookups at as_of + 12 h (ageing and the real-time overlay included)\n")
    print(f"{'backend / ids':<30} {'n':>6}  {'lookup µs':>11}  {'floor µs':>11}  {'ratio':>8}")

    history = _history(len(keys), args.seed)
    store = InMemoryOnlineStore(frame, names, aliases, AS_OF, ages=ages, fills=REALTIME_FILLS, history=history)
    plain = InMemoryOnlineStore(frame, names, aliases, AS_OF, ages=ages, fills=REALTIME_FILLS)
    for e in events:
        store.apply_event(e)
        plain.apply_event(e)
    matrix = np.ascontiguousarray(frame[names].to_numpy(np.float32))
    index = {k: i for i, k in enumerate(keys)}
    picks = {n: [keys[i] for i in rng.choice(len(keys), n, replace=False)] for n in SIZES}
    for n in SIZES:
        ids = picks[n]
        rows = np.array([index[k] for k in ids])
        by_id = [key_to_id[k] for k in ids]

        def floor(rows: np.ndarray = rows) -> Any:
            return matrix[rows]

        _row("in-process, customer_key", n, _paired(partial(store.lookup, ids, now=now), floor))
        _row("in-process, customer_id", n, _paired(partial(store.lookup, by_id, now=now), floor))
        _row("in-process, key, --no-history", n, _paired(partial(plain.lookup, ids, now=now), floor))

    redis_store = RedisOnlineStore.connect(args.redis, f"kairos-bench-{uuid.uuid4().hex}", timeout=5.0)
    try:
        redis_store.client.ping()
    except Exception as exc:  # any failure to reach Redis: report and skip
        message = f"Redis not reachable at {args.redis}: {exc}"
        if os.environ.get("CI") == "true":
            print(f"error: {message}", file=sys.stderr)
            return 1
        print(f"\nskipped Redis: {message}")
        return 0
    client = redis_store.client
    try:
        publish_s = {}
        for label, with_history in (("", True), (", --no-history", False)):
            parts = SnapshotParts(
                frame, names, ages, [], aliases, AS_OF, REALTIME_FILLS, {}, history if with_history else None
            )
            started = time.perf_counter()
            version = redis_store.publish(parts)
            publish_s[label] = time.perf_counter() - started
            for e in events:
                redis_store.apply_event(e)
            prefix = f"{redis_store.prefix}:v{version}:f:"
            for n in SIZES:
                ids = picks[n]
                f_keys = [prefix + k for k in ids]
                by_id = [key_to_id[k] for k in ids]

                def mget(f_keys: list[str] = f_keys) -> Any:
                    return client.mget(f_keys)

                _row(f"Redis, customer_key{label}", n, _paired(partial(redis_store.lookup, ids, now=now), mget))
                if with_history:
                    _row("Redis, customer_id", n, _paired(partial(redis_store.lookup, by_id, now=now), mget))
        print()
        for label, seconds in publish_s.items():
            print(f"Redis publish of {args.customers:,} customers{label}: {seconds:.2f} s")
    finally:
        redis_store.drop_all()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
