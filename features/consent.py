"""Who may be contacted on which campaign channel, as of a date: each channel's consent rule applied to the
consents on record (the batch side of ``docs/consent.md``, "Channels and their rules").

A channel's rule (:class:`features.contract.ConsentRule`, set per channel in the mapping's
``consent_rules``) decides for a customer with no consent on record: ``opt_in`` channels (e-mail, SMS, push,
messenger by default) need an opt-in, ``opt_out`` channels (direct mail and the call centre by default) are
allowed unless an opt-out is on record. Whatever the rule, the latest consent event decides when there is
one: an opt-out (an unsubscribe on a message included) forbids the channel until a later opt-in, and at the
same instant the opt-out wins. So consent stays a hard filter: an opted-out customer is never contactable.
The serving side applies the same rules one history at a time: :func:`features.realtime.allowed_by_rule`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

import ibis
import pandas as pd

from features.contract import DEFAULT_CONSENT_RULES, Channel, Col, ConsentRule, ConsentStatus
from features.definitions import population
from features.defs.common import Tables
from features.defs.profile import consent_events
from features.store import default_as_of, ingest_report, open_tables

__all__ = ["CONTACT_PREFIX", "consent_rules", "contact_allowed", "contact_allowed_in"]

CONTACT_PREFIX = "contact_"  # the column of a channel in contact_allowed's frame: contact_<channel>
_RANK = "_rank"


def consent_rules(data_home: Path) -> dict[str, ConsentRule]:
    """Each consent channel's rule for the ingested data: the ingest report's ``consent_rules`` (the
    mapping's, with the defaults filled in), else the defaults (a report from before rules existed)."""
    found = ingest_report(data_home).get("consent_rules")
    if isinstance(found, dict) and found:
        return {str(ch): ConsentRule(str(rule)) for ch, rule in found.items()}
    return {c.value: ConsentRule.OPT_IN for c in Channel} | dict(DEFAULT_CONSENT_RULES)


def contact_allowed_in(tables: Tables, as_of: datetime, rules: Mapping[str, ConsentRule | str]) -> pd.DataFrame:
    """Per customer known before ``as_of``: may each channel of ``rules`` be used, from the consent events
    strictly before ``as_of``.

    Returns:
        ``customer_key`` plus one boolean column ``contact_<channel>`` per channel, in key order.
    """
    cutoff = ibis.timestamp(as_of)
    keys = population(tables, cutoff)
    columns = [CONTACT_PREFIX + ch for ch in rules]
    events = consent_events(tables)
    if events is None:
        latest = None
    else:
        co = events.filter(events[Col.CUSTOMER_KEY].notnull(), events[Col.CONSENTED_AT] < cutoff)
        opt_in = co[Col.STATUS] == ConsentStatus.OPT_IN.value
        # the latest event per person and channel; at the same instant an opt-out wins (never contact by doubt)
        rank = ibis.row_number().over(
            group_by=[co[Col.CUSTOMER_KEY], co[Col.CHANNEL]],
            order_by=[co[Col.CONSENTED_AT].desc(), opt_in.ifelse(1, 0).asc()],
        )
        ranked = co.mutate(**{_RANK: rank})
        latest = ranked.filter(ranked[_RANK] == 0).select(Col.CUSTOMER_KEY, Col.CHANNEL, Col.STATUS).execute()
    frame = keys.execute().sort_values(Col.CUSTOMER_KEY).reset_index(drop=True)
    for channel, rule in rules.items():
        status = pd.Series(pd.NA, index=frame.index, dtype="string")
        if latest is not None and len(latest):
            on = latest.loc[latest[Col.CHANNEL] == channel].set_index(Col.CUSTOMER_KEY)[Col.STATUS]
            status = frame[Col.CUSTOMER_KEY].map(on).astype("string")
        allowed = status == ConsentStatus.OPT_IN.value
        if ConsentRule(rule) == ConsentRule.OPT_OUT:
            allowed = allowed | status.isna()
        frame[CONTACT_PREFIX + channel] = allowed.fillna(False).astype(bool)
    return frame[[Col.CUSTOMER_KEY, *columns]]


def contact_allowed(data_home: Path, as_of: datetime | None = None) -> pd.DataFrame:
    """:func:`contact_allowed_in` for the ingested data, as of ``as_of`` (default: the day after the latest
    order), under the data's :func:`consent_rules`."""
    tables = open_tables(data_home, as_of=as_of)
    return contact_allowed_in(tables, as_of or default_as_of(tables), consent_rules(data_home))
