"""Engagement features: message response per channel, and when in the week a customer is active.

**Messages** (per channel e-mail, SMS, push). A message counts when it was sent before the cutoff; an
open, click or unsubscribe counts only when its own time is before the cutoff. ``sends/opens/clicks_90d``
count events by their own time in the last 90 days. ``open_rate`` and ``click_rate`` follow the
messages *sent* in the last 365 days: opens (clicks) of those messages known at the cutoff, over those
sends, smoothed toward the channel's population rate with a prior of 5 sends::

    rate = (opened + 5 * p_pop) / (sends + 5)        null with no send in the 365 days

``p_pop`` is the same ratio over every customer's messages of that channel in the same window: an
Ibis aggregate per channel, joined onto the per-customer rows (no number leaves the backend).

**Hour of week** (``how_000`` ... ``how_167``): counts of the customer's opens, clicks, web sessions
(first event of each session of a known customer) and orders in the last 365 days, binned by the
customer's *local* wall-clock time: bin = (ISO weekday - 1) * 24 + local hour, Monday 00:00 local = 0.

How local time is computed, portably (no backend SQL, no UDF, no backend time-zone function):

1. The customer's zone is ``customers.timezone`` (the greatest valid one over the person's records
   created before the cutoff); a missing or unknown zone falls back to UTC.
2. From the standard library's ``zoneinfo`` we build, in Python, a small offsets table covering
   every zone of ``zoneinfo.available_timezones()`` (plus UTC) over the weeks of the 365-day window:
   one row per (zone, week bucket, interval of constant UTC offset overlapping that week) with the
   interval's ``[start, end)`` in epoch seconds and its offset in seconds. Weeks are fixed 604,800 s
   buckets of epoch seconds, so an event's bucket is plain arithmetic. A zone without a change in the
   window has one row per week; a week holding a DST change has two. About 34,000 rows for 600 zones.
   Offsets are sampled at every week boundary and a week whose two ends differ is searched to the
   second by bisection (a change undone within the same week would go unseen: assumed never to happen).
   The table is cached per window (about 0.2 s to build) and sent with the query as an
   ``ibis.memtable``, which every Ibis backend accepts (DuckDB registers it, Spark makes a view).
3. Events join the table on (zone, bucket) with ``start <= epoch < end`` (fan-out ~1), so
   ``local = epoch + offset`` exactly, DST included. The table lists all zones, so which zones are
   present never has to be read from the data at build time; the join keeps only those present.
4. The bin comes from epoch arithmetic alone: hours since Monday 1970-01-05 00:00, floored, modulo
   168 (by floor division). No ``day_of_week`` or ``hour`` extraction, whose numbering and session
   time-zone handling differ between backends.

Only the cutoff's value is read in Python (it is a literal in :func:`features.definitions.feature_table`;
any other scalar is executed once) to know which weeks the table must cover.
"""

from __future__ import annotations

import bisect
import functools
import zoneinfo
from datetime import UTC, datetime

import ibis
import ibis.expr.operations as ops
import ibis.expr.types as ir
import pyarrow as pa

from features.contract import Channel, Col
from features.defs.common import Feature, FeatureGroup, Live, Tables, count_where, days_before, no_rows

CHANNELS: tuple[Channel, ...] = (Channel.EMAIL, Channel.SMS, Channel.PUSH)
COUNT_WINDOW = 90
RATE_WINDOW = 365
HOW_WINDOW = 365
PRIOR_SENDS = 5.0  # smoothing weight of the population rate, in sends
HOURS_PER_WEEK = 168
FALLBACK_ZONE = "UTC"

_NOUN = {Channel.EMAIL: "e-mails", Channel.SMS: "SMS messages", Channel.PUSH: "push notifications"}
_DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

# Columns of the helpers' outputs: activity_events (AT), offsets_table (ZONE..OFFSET), hour_of_week (HOW).
AT = "at"
BUCKET = "bucket"
ZONE = "zone"
START = "start"
END = "end"
OFFSET = "offset"
HOW = "how"
# Internal column names (never leave this module).
_EPOCH = "epoch"
_N = "n"
_SENDS = "sends"
_OPENS = "opens"
_CLICKS = "clicks"
_UNSUBS = "unsubs"
_LAST_OPEN = "last_open"
_COHORT = "cohort_sends"
_COHORT_OPENED = "cohort_opened"
_COHORT_CLICKED = "cohort_clicked"
_POP = "pop_"
_OPEN_RATE = "open_rate"
_CLICK_RATE = "click_rate"

_BUCKET_SECONDS = 7 * 86_400
_HOUR_SECONDS = 3_600
_MONDAY_EPOCH = 4 * 86_400  # 1970-01-05 00:00 UTC, the first Monday of the epoch


def how_name(bin_: int) -> str:
    """Feature name of an hour-of-week bin (0 = Monday 00:00-00:59 local)."""
    return f"how_{bin_:03d}"


def _how_description(bin_: int) -> str:
    day, hour = divmod(bin_, 24)
    return (
        f"activity (opens, clicks, visits, orders) in the last {HOW_WINDOW} days on "
        f"{_DAY_NAMES[day]}s {hour:02d}:00-{hour:02d}:59 local time"
    )


def _engagement_features() -> tuple[Feature, ...]:
    out: list[Feature] = []
    for ch in CHANNELS:
        noun = _NOUN[ch]
        w, r = COUNT_WINDOW, RATE_WINDOW
        out += [
            Feature(f"sends_{ch}_{w}d", f"{noun} sent in the last {w} days", window_days=w, fill=0.0),
            Feature(f"opens_{ch}_{w}d", f"{noun} opened in the last {w} days", window_days=w, fill=0.0),
            Feature(f"clicks_{ch}_{w}d", f"{noun} clicked in the last {w} days", window_days=w, fill=0.0),
            Feature(
                f"open_rate_{ch}",
                f"share of {noun} opened (sent in the last {r} days; few sends lean toward the average customer)",
                window_days=r,
            ),
            Feature(
                f"click_rate_{ch}",
                f"share of {noun} clicked (sent in the last {r} days; few sends lean toward the average customer)",
                window_days=r,
            ),
            Feature(
                f"days_since_open_{ch}",
                f"days since the customer last opened one of our {noun}",
                ages=True,
                live=Live(f"open_{ch}", "last"),
            ),
            Feature(
                f"unsubscribes_{ch}_{r}d", f"unsubscribes from {noun} in the last {r} days", window_days=r, fill=0.0
            ),
        ]
    return tuple(out)


ENGAGEMENT = _engagement_features()
HOUR_OF_WEEK = tuple(
    Feature(how_name(b), _how_description(b), window_days=HOW_WINDOW, fill=0.0) for b in range(HOURS_PER_WEEK)
)


def _before(ts: ir.TimestampValue, cutoff: ir.TimestampScalar) -> ir.BooleanValue:
    return ts.notnull() & (ts < cutoff)


def _within(ts: ir.TimestampValue, cutoff: ir.TimestampScalar, days: int) -> ir.BooleanValue:
    return _before(ts, cutoff) & (days_before(cutoff, ts) <= days)


# --- messages ---------------------------------------------------------------------------------------


def messages_before(tables: Tables, cutoff: ir.TimestampScalar) -> ir.Table:
    """Messages to known customers sent strictly before the cutoff."""
    m = tables["messages"]
    return m.filter(m[Col.CUSTOMER_KEY].notnull(), m[Col.SENT_AT] < cutoff)


def _engagement(tables: Tables, cutoff: ir.TimestampScalar) -> ir.Table:
    if "messages" not in tables:
        return no_rows(tables, ENGAGEMENT)
    m = messages_before(tables, cutoff)
    opened, clicked = _before(m[Col.OPENED_AT], cutoff), _before(m[Col.CLICKED_AT], cutoff)
    cohort = _within(m[Col.SENT_AT], cutoff, RATE_WINDOW)  # the sends that rates follow
    # per customer and channel first (few aggregates over many rows), then one row per customer
    per = m.group_by([Col.CUSTOMER_KEY, Col.CHANNEL]).aggregate(
        **{
            _SENDS: count_where(_within(m[Col.SENT_AT], cutoff, COUNT_WINDOW)),
            _OPENS: count_where(_within(m[Col.OPENED_AT], cutoff, COUNT_WINDOW)),
            _CLICKS: count_where(_within(m[Col.CLICKED_AT], cutoff, COUNT_WINDOW)),
            _UNSUBS: count_where(_within(m[Col.UNSUBSCRIBED_AT], cutoff, RATE_WINDOW)),
            _LAST_OPEN: m[Col.OPENED_AT].max(where=opened),
            _COHORT: count_where(cohort),
            _COHORT_OPENED: count_where(cohort & opened),
            _COHORT_CLICKED: count_where(cohort & clicked),
        }
    )
    pop = per.group_by(Col.CHANNEL).aggregate(
        **{f"{_POP}{c}": per[c].sum() for c in (_COHORT, _COHORT_OPENED, _COHORT_CLICKED)}
    )
    per = per.left_join(pop, Col.CHANNEL).drop(f"{Col.CHANNEL}_right")
    pop_sends = per[f"{_POP}{_COHORT}"].nullif(0.0)

    def smoothed(part: str) -> ir.FloatingValue:
        p_pop = per[f"{_POP}{part}"] / pop_sends
        rate = (per[part] + PRIOR_SENDS * p_pop) / (per[_COHORT] + PRIOR_SENDS)
        return (per[_COHORT] > 0).ifelse(rate, ibis.null("float64"))

    per = per.mutate(**{_OPEN_RATE: smoothed(_COHORT_OPENED), _CLICK_RATE: smoothed(_COHORT_CLICKED)})
    out: dict[str, ir.Value] = {}
    for ch in CHANNELS:
        on = per[Col.CHANNEL] == ch.value
        out[f"sends_{ch}_{COUNT_WINDOW}d"] = on.ifelse(per[_SENDS], 0.0).sum()
        out[f"opens_{ch}_{COUNT_WINDOW}d"] = on.ifelse(per[_OPENS], 0.0).sum()
        out[f"clicks_{ch}_{COUNT_WINDOW}d"] = on.ifelse(per[_CLICKS], 0.0).sum()
        out[f"open_rate_{ch}"] = per[_OPEN_RATE].max(where=on).cast("float64")
        out[f"click_rate_{ch}"] = per[_CLICK_RATE].max(where=on).cast("float64")
        out[f"days_since_open_{ch}"] = days_before(cutoff, per[_LAST_OPEN].max(where=on))
        out[f"unsubscribes_{ch}_{RATE_WINDOW}d"] = on.ifelse(per[_UNSUBS], 0.0).sum()
    wide = per.group_by(Col.CUSTOMER_KEY).aggregate(**out)
    return wide.select(Col.CUSTOMER_KEY, *(wide[f.name].cast("float64") for f in ENGAGEMENT))


# --- local time ---------------------------------------------------------------------------------------


def _offset_at(zone: zoneinfo.ZoneInfo, epoch: int) -> int:
    offset = datetime.fromtimestamp(epoch, zone).utcoffset()
    return int(offset.total_seconds()) if offset is not None else 0


@functools.cache
def _zone_names() -> tuple[str, ...]:
    return tuple(sorted(zoneinfo.available_timezones() | {FALLBACK_ZONE}))


def _changes(zone: zoneinfo.ZoneInfo, lo: int, hi: int, before: int, after: int) -> list[tuple[int, int]]:
    """``(instant, new offset)`` of every offset change in ``(lo, hi]``, given the offsets at both ends."""
    found: list[tuple[int, int]] = []
    while before != after:
        # the first second after lo whose offset differs from ``before`` (one change, or A -> B -> C)
        at = bisect.bisect_left(range(lo + 1, hi + 1), True, key=lambda s: _offset_at(zone, s) != before) + lo + 1
        before = _offset_at(zone, at)
        found.append((at, before))
        lo = at
    return found


@functools.lru_cache(maxsize=64)
def _offset_rows(first_bucket: int, last_bucket: int) -> pa.Table:
    """The offsets table for week buckets ``first_bucket..last_bucket`` (see the module docstring).

    Offsets are sampled at every bucket boundary; a week whose two ends differ is searched to the second
    for its change(s). A change and its reversal within the same week would go unseen (no zone does so).
    """
    names = _zone_names()
    bounds = [b * _BUCKET_SECONDS for b in range(first_bucket, last_bucket + 2)]
    cols: dict[str, list[object]] = {ZONE: [], BUCKET: [], START: [], END: [], OFFSET: []}

    def row(name: str, bucket: int, start: int, end: int, offset: int) -> None:
        for col, value in ((ZONE, name), (BUCKET, bucket), (START, start), (END, end), (OFFSET, offset)):
            cols[col].append(value)

    for name in names:
        zone = zoneinfo.ZoneInfo(name)
        offsets = [_offset_at(zone, t) for t in bounds]
        for k, bucket in enumerate(range(first_bucket, last_bucket + 1)):
            lo, hi, offset = bounds[k], bounds[k + 1], offsets[k]
            for at, new in _changes(zone, lo, hi, offset, offsets[k + 1]):
                row(name, bucket, lo, at, offset)
                lo, offset = at, new
            row(name, bucket, lo, hi, offset)
    schema = pa.schema([(c, pa.string() if c == ZONE else pa.int64()) for c in cols])
    return pa.table(cols, schema=schema)


def _cutoff_epoch(cutoff: ir.TimestampScalar) -> int:
    """The cutoff as Unix seconds, read from the literal (or executed when it is an expression)."""
    op = cutoff.op()
    value = op.value if isinstance(op, ops.Literal) else cutoff.execute()
    when: datetime = value.to_pydatetime() if hasattr(value, "to_pydatetime") else value
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp())


def offsets_table(cutoff: ir.TimestampScalar, days: int = HOW_WINDOW) -> ir.Table:
    """UTC offsets of every IANA zone over the ``days`` before the cutoff, as an Ibis memtable.

    Columns: ``zone``, ``bucket`` (epoch seconds // 604800), ``start`` and ``end`` (epoch seconds, the
    interval of constant offset, end excluded) and ``offset`` (seconds east of UTC).
    """
    end = _cutoff_epoch(cutoff)
    first = (end - (days + 1) * 86_400) // _BUCKET_SECONDS
    return ibis.memtable(_offset_rows(first, end // _BUCKET_SECONDS + 1))


def customer_zones(tables: Tables, cutoff: ir.TimestampScalar, offsets: ir.Table) -> ir.Table | None:
    """``customer_key``, ``zone``: one valid IANA zone per customer (records created before the cutoff)."""
    if "customers" not in tables or Col.TIMEZONE not in tables["customers"].columns:
        return None
    c = tables["customers"]
    known = c.filter(
        c[Col.CUSTOMER_KEY].notnull(),
        c[Col.TIMEZONE].notnull(),
        c[Col.CREATED_AT].isnull() | (c[Col.CREATED_AT] < cutoff),
    )
    names = offsets.select(offsets[ZONE]).distinct()
    valid = known.semi_join(names, known[Col.TIMEZONE] == names[ZONE])
    return valid.group_by(Col.CUSTOMER_KEY).aggregate(**{ZONE: valid[Col.TIMEZONE].max()})


def hour_of_week(events: ir.Table, zones: ir.Table | None, offsets: ir.Table, at: str = AT) -> ir.Table:
    """Add ``how`` (0..167, Monday 00:00 local = 0) to events with ``customer_key`` and a timestamp ``at``.

    ``zones`` maps ``customer_key`` to an IANA zone (None: everyone in UTC); ``offsets`` comes from
    :func:`offsets_table` and must cover the events' weeks.
    """
    epoch = events[at].epoch_seconds().cast("float64")
    ev = events.mutate(**{_EPOCH: epoch, BUCKET: (epoch / _BUCKET_SECONDS).floor()})
    if zones is None:
        ev = ev.mutate(**{ZONE: ibis.literal(FALLBACK_ZONE)})
    else:
        ev = ev.left_join(zones, Col.CUSTOMER_KEY).drop(f"{Col.CUSTOMER_KEY}_right")
        ev = ev.mutate(**{ZONE: ev[ZONE].fill_null(FALLBACK_ZONE)})
    joined = ev.join(
        offsets,
        [
            ev[ZONE] == offsets[ZONE],
            ev[BUCKET] == offsets[BUCKET],
            ev[_EPOCH] >= offsets[START],
            ev[_EPOCH] < offsets[END],
        ],
    )
    hours = ((joined[_EPOCH] + joined[OFFSET] - _MONDAY_EPOCH) / _HOUR_SECONDS).floor()
    how = hours - (hours / HOURS_PER_WEEK).floor() * HOURS_PER_WEEK
    return joined.select(*events.columns, **{HOW: how})


def activity_events(tables: Tables, cutoff: ir.TimestampScalar, days: int = HOW_WINDOW) -> ir.Table | None:
    """``customer_key``, ``at``: opens, clicks, web sessions (first event) and orders in the window."""
    parts: list[ir.Table] = []

    def add(t: ir.Table, ts: str) -> None:
        kept = t.filter(t[Col.CUSTOMER_KEY].notnull(), _within(t[ts], cutoff, days))
        parts.append(kept.select(Col.CUSTOMER_KEY, **{AT: kept[ts]}))

    if "messages" in tables:
        add(tables["messages"], Col.OPENED_AT)
        add(tables["messages"], Col.CLICKED_AT)
    if "web_events" in tables:
        ev = tables["web_events"]
        ev = ev.filter(ev[Col.CUSTOMER_KEY].notnull(), ev[Col.OCCURRED_AT] < cutoff)
        visits = ev.group_by([Col.CUSTOMER_KEY, Col.SESSION_ID]).aggregate(**{AT: ev[Col.OCCURRED_AT].min()})
        add(visits, AT)
    if "orders" in tables:
        add(tables["orders"], Col.ORDERED_AT)
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else ibis.union(*parts, distinct=False)


def _hour_of_week(tables: Tables, cutoff: ir.TimestampScalar) -> ir.Table:
    events = activity_events(tables, cutoff)
    if events is None:
        return no_rows(tables, HOUR_OF_WEEK)
    offsets = offsets_table(cutoff)
    binned = hour_of_week(events, customer_zones(tables, cutoff, offsets), offsets)
    counts = binned.group_by([Col.CUSTOMER_KEY, HOW]).aggregate(**{_N: binned.count()})
    return counts.group_by(Col.CUSTOMER_KEY).aggregate(
        **{how_name(b): (counts[HOW] == b).ifelse(counts[_N], 0).sum().cast("float64") for b in range(HOURS_PER_WEEK)}
    )


GROUPS: tuple[FeatureGroup, ...] = (
    FeatureGroup("engagement", ENGAGEMENT, _engagement),
    FeatureGroup("hour_of_week", HOUR_OF_WEEK, _hour_of_week),
)
