"""Profile features: who the customer is (age, gender, place, time zone), consents and anniversaries.

A person may have several customer records merged into one ``customer_key``. Each attribute comes from
the most recently created record that has it (ties: the smallest ``customer_id``); only records
created before the cutoff count (records with no creation time count always, as in the population).
Missing tables or columns (Online Retail II derives customers with a country only) give nulls.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from features.contract import ATTRIBUTE_PREFIX, RANK_SUFFIX, Channel, Col, ConsentStatus
from features.defs.common import Feature, FeatureGroup, Live, Tables, days_before, no_rows
from features.defs.orders import orders_before

UNKNOWN = "unknown"
# (lower bound in whole years, label), checked from the top; below the last bound: "under-18".
AGE_BANDS = ((65, "65+"), (55, "55-64"), (45, "45-54"), (35, "35-44"), (25, "25-34"), (18, "18-24"))
UNDER_AGE = "under-18"
MAX_AGE_YEARS = 120  # an older birth date is a placeholder (1900-01-01), not an age

# Internal column names (never leave this module).
_RANK = "rank"
_FIRST_AT = "first_at"
_LOYAL = "loyal"

# --- attributes ---------------------------------------------------------------------------------

ATTRIBUTES = (
    Feature("age_years", "age in whole years"),
    Feature("age_band", "age band (18-24, 25-34, ..., 65+, or unknown)", dtype="string"),
    Feature("gender", "gender (F, M or X)", dtype="string"),
    Feature("country", "country the customer lives in (latest record that says)", dtype="string"),
    Feature("city", "city the customer lives in (latest record that says)", dtype="string"),
    Feature("timezone", "time zone (IANA name, e.g. Europe/London)", dtype="string"),
    Feature("customer_age_days", "days since the customer first registered", ages=True),
    Feature(
        "loyalty_member",
        "1 when one of the person's customer records carries a loyalty card id, else 0",
        fill=0.0,
    ),
)
_STRING_ATTRIBUTES = {"gender": Col.GENDER, "country": Col.COUNTRY, "city": Col.CITY, "timezone": Col.TIMEZONE}


def age_in_years(birth: ir.DateValue, on: ir.DateValue) -> ir.IntegerValue:
    """Whole years from ``birth`` to ``on`` (one less until the birthday is reached that year).

    Someone born on 29 February reaches the birthday on 1 March in a non-leap year.
    """
    before_birthday = (on.month() < birth.month()) | ((on.month() == birth.month()) & (on.day() < birth.day()))
    return on.year() - birth.year() - before_birthday.ifelse(1, 0)


def age_band(age: ir.NumericValue) -> ir.StringValue:
    """The age band label of ``age`` in whole years; ``unknown`` when null."""
    cases = [(age >= low, label) for low, label in AGE_BANDS]
    return ibis.cases((age.isnull(), UNKNOWN), *cases, else_=UNDER_AGE)


def records_before(tables: Tables, cutoff: ir.TimestampScalar) -> ir.Table:
    """Customer records of known persons created before the cutoff (or with no creation time)."""
    c = tables["customers"]
    return c.filter(c[Col.CUSTOMER_KEY].notnull(), c[Col.CREATED_AT].isnull() | (c[Col.CREATED_AT] < cutoff))


def _attributes(tables: Tables, cutoff: ir.TimestampScalar) -> ir.Table:
    if "customers" not in tables:
        return no_rows(tables, ATTRIBUTES)
    c = records_before(tables, cutoff)
    # The newest record first; records with no creation time last; then the smallest id.
    rank = ibis.row_number().over(
        group_by=c[Col.CUSTOMER_KEY],
        order_by=[c[Col.CREATED_AT].desc(nulls_first=False), c[Col.CUSTOMER_ID].asc()],
    )
    c = c.mutate(**{_RANK: rank})

    def latest(column: str, dtype: str) -> ir.Value:
        if column not in c.columns:
            return ibis.null(dtype)
        return c[column].argmin(c[_RANK], where=c[column].notnull())

    per_person = c.group_by(Col.CUSTOMER_KEY).aggregate(
        **{_FIRST_AT: c[Col.CREATED_AT].min()},
        **{_LOYAL: c[Col.LOYALTY_ID].notnull().any() if Col.LOYALTY_ID in c.columns else ibis.literal(False)},
        **{Col.BIRTH_DATE: latest(Col.BIRTH_DATE, "date")},
        **{name: latest(column, "string") for name, column in _STRING_ATTRIBUTES.items()},
    )
    raw_age = age_in_years(per_person[Col.BIRTH_DATE], cutoff.date())
    age = ((raw_age >= 0) & (raw_age <= MAX_AGE_YEARS)).ifelse(raw_age, ibis.null("int64"))
    return per_person.select(
        Col.CUSTOMER_KEY,
        age_years=age.cast("float64"),
        age_band=age_band(age),
        **{name: per_person[name].cast("string") for name in _STRING_ATTRIBUTES},
        customer_age_days=days_before(cutoff, per_person[_FIRST_AT]),
        loyalty_member=per_person[_LOYAL].ifelse(1.0, 0.0),
    )


# --- consents -------------------------------------------------------------------------------------

CONSENTS = tuple(
    Feature(
        f"consent_{ch.value}",
        f"may be contacted by {ch.value}: 1 when the latest {ch.value} consent is an opt-in, else 0",
        fill=0.0,
        live=Live(f"consent_{ch.value}", "consent"),
    )
    for ch in Channel
)


def _consent_events(tables: Tables) -> ir.Table | None:
    """Consent changes: the consents table, plus every unsubscribe recorded on a message as an opt-out
    (an export may carry the unsubscribe only on the message)."""
    cols = (Col.CUSTOMER_KEY, Col.CHANNEL, Col.STATUS, Col.CONSENTED_AT)
    parts = []
    if "consents" in tables:
        c = tables["consents"]
        parts.append(c.select(*(c[k].cast("string") if k != Col.CONSENTED_AT else c[k] for k in cols)))
    if "messages" in tables:
        m = tables["messages"]
        m = m.filter(m[Col.UNSUBSCRIBED_AT].notnull())
        parts.append(
            m.select(
                **{
                    Col.CUSTOMER_KEY: m[Col.CUSTOMER_KEY].cast("string"),
                    Col.CHANNEL: m[Col.CHANNEL].cast("string"),
                    Col.STATUS: ibis.literal(ConsentStatus.OPT_OUT.value, type="string"),
                    Col.CONSENTED_AT: m[Col.UNSUBSCRIBED_AT],
                }
            )
        )
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else ibis.union(*parts, distinct=False)


consent_events = _consent_events  # public: the batch contact check (features.consent) reads the same events


def _consents(tables: Tables, cutoff: ir.TimestampScalar) -> ir.Table:
    co = _consent_events(tables)
    if co is None:
        return no_rows(tables, CONSENTS)
    co = co.filter(co[Col.CUSTOMER_KEY].notnull(), co[Col.CONSENTED_AT] < cutoff)
    opt_in = co[Col.STATUS] == ConsentStatus.OPT_IN.value
    # Latest event per person and channel; at the same instant an opt-out wins (never contact by doubt).
    rank = ibis.row_number().over(
        group_by=[co[Col.CUSTOMER_KEY], co[Col.CHANNEL]],
        order_by=[co[Col.CONSENTED_AT].desc(), opt_in.ifelse(1, 0).asc()],
    )
    ranked = co.mutate(**{_RANK: rank})
    latest = ranked.filter(ranked[_RANK] == 0)
    granted = latest[Col.STATUS] == ConsentStatus.OPT_IN.value
    return latest.group_by(Col.CUSTOMER_KEY).aggregate(
        **{
            f"consent_{ch.value}": ((latest[Col.CHANNEL] == ch.value) & granted).ifelse(1.0, 0.0).max()
            for ch in Channel
        }
    )


# --- anniversary of the first order ----------------------------------------------------------------

ANNIVERSARY = (
    Feature(
        "days_to_anniversary",
        "days until the anniversary of the first order (0 = today)",
    ),
)


def _is_leap(year: ir.IntegerValue) -> ir.BooleanValue:
    return ((year % 4) == 0) & (((year % 100) != 0) | ((year % 400) == 0))


def anniversary_in(year: ir.IntegerValue, first: ir.DateValue) -> ir.DateValue:
    """The anniversary of ``first`` in ``year``; 29 February falls on 28 February in a non-leap year."""
    month, day = first.month(), first.day()
    day = ((month == 2) & (day == 29) & ~_is_leap(year)).ifelse(28, day)
    return ibis.date(year, month, day)


def days_to_anniversary(first: ir.DateValue, today: ir.DateValue) -> ir.IntegerValue:
    """Days from ``today`` to the next anniversary of ``first`` (0 when today is one; at most 365)."""
    this_year = anniversary_in(today.year(), first)
    following = anniversary_in(today.year() + 1, first)
    upcoming = (this_year >= today).ifelse(this_year, following)
    return upcoming.delta(today, unit="day")


def _anniversary(tables: Tables, cutoff: ir.TimestampScalar) -> ir.Table:
    if "orders" not in tables:
        return no_rows(tables, ANNIVERSARY)
    o = orders_before(tables, cutoff)
    first = o.group_by(Col.CUSTOMER_KEY).aggregate(**{_FIRST_AT: o[Col.ORDERED_AT].min()})
    days = days_to_anniversary(first[_FIRST_AT].date(), cutoff.date())
    return first.select(Col.CUSTOMER_KEY, days_to_anniversary=days.cast("float64"))


# --- attributes the export declares (age band, income band, household size, ...) -------------------


def _attribute_kinds(customers: ir.Table) -> dict[str, str]:
    """``attr_<name>`` -> its kind in customers.parquet: bands (with a rank column), category, number,
    flag or date (see ``features.mapping.Attribute``)."""
    schema = customers.schema()
    out = {}
    for col in customers.columns:
        if not col.startswith(ATTRIBUTE_PREFIX) or (col.endswith(RANK_SUFFIX) and col[: -len(RANK_SUFFIX)] in schema):
            continue
        dtype = schema[col]
        if f"{col}{RANK_SUFFIX}" in schema:
            out[col] = "bands"
        elif dtype.is_string():
            out[col] = "category"
        elif dtype.is_boolean():
            out[col] = "flag"
        elif dtype.is_date() or dtype.is_timestamp():
            out[col] = "date"
        else:
            out[col] = "number"
    return out


def attribute_features(tables: Tables) -> tuple[Feature, ...]:
    """The features of the customer attributes this data home holds (none without customers).

    An ordered band gives its position in the declared order (``attr_<name>``, 1 = the first band) and
    its label (``attr_<name>_band``); a category its label; a number its value; a flag 1 or 0; a date
    the days since it (``attr_<name>_days``). Each comes from the person's latest record that has it.
    """
    if "customers" not in tables:
        return ()
    out: list[Feature] = []
    for col, kind in _attribute_kinds(tables["customers"]).items():
        name = col[len(ATTRIBUTE_PREFIX) :]
        if kind == "bands":
            out.append(Feature(col, f"{name}: position of the customer's band in the declared order (1 = first)"))
            out.append(Feature(f"{col}_band", f"{name} band, as exported", dtype="string"))
        elif kind == "category":
            out.append(Feature(col, f"{name}, as exported (a category)", dtype="string"))
        elif kind == "flag":
            out.append(Feature(col, f"{name}: 1 when true, 0 when false"))
        elif kind == "date":
            out.append(Feature(f"{col}_days", f"days since {name}", ages=True))
        else:
            out.append(Feature(col, f"{name} (a number)"))
    return tuple(out)


def _customer_attributes(tables: Tables, cutoff: ir.TimestampScalar) -> ir.Table:
    features = attribute_features(tables)
    if "customers" not in tables:
        return no_rows(tables, features)
    kinds = _attribute_kinds(tables["customers"])
    c = records_before(tables, cutoff)
    rank = ibis.row_number().over(
        group_by=c[Col.CUSTOMER_KEY],
        order_by=[c[Col.CREATED_AT].desc(nulls_first=False), c[Col.CUSTOMER_ID].asc()],
    )
    c = c.mutate(**{_RANK: rank})
    sources = [*kinds, *(f"{col}{RANK_SUFFIX}" for col, kind in kinds.items() if kind == "bands")]
    per_person = c.group_by(Col.CUSTOMER_KEY).aggregate(
        **{src: c[src].argmin(c[_RANK], where=c[src].notnull()) for src in sources}
    )
    values: dict[str, ir.Value] = {}
    for col, kind in kinds.items():
        if kind == "bands":
            values[col] = per_person[f"{col}{RANK_SUFFIX}"].cast("float64")
            values[f"{col}_band"] = per_person[col].cast("string")
        elif kind == "category":
            values[col] = per_person[col].cast("string")
        elif kind == "flag":
            values[col] = per_person[col].ifelse(1.0, 0.0)
        elif kind == "date":
            values[f"{col}_days"] = days_before(cutoff, per_person[col].cast("timestamp"))
        else:
            values[col] = per_person[col].cast("float64")
    return per_person.select(Col.CUSTOMER_KEY, **values)


def attribute_group(tables: Tables) -> FeatureGroup | None:
    """The group of the export's own customer attributes, or None when it declares none."""
    features = attribute_features(tables)
    return FeatureGroup("profile_customer_attributes", features, _customer_attributes) if features else None


GROUPS: tuple[FeatureGroup, ...] = (
    FeatureGroup("profile_attributes", ATTRIBUTES, _attributes),
    FeatureGroup("profile_consents", CONSENTS, _consents),
    FeatureGroup("profile_anniversary", ANNIVERSARY, _anniversary),
)
