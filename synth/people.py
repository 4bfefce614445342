"""Persons of the synthetic world, their customer records (with planted duplicates) and consents.

A *person* is a real customer; a *record* is a row of the CRM. About 8 % of persons have two or three
records, created through another channel and linked by a spelling variant of one identifier (or,
rarely, by nothing at all). About 1 % of persons share a phone with a partner who is a different
person with a different loyalty card: a trap for identity resolution.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.contract import Channel
from synth.catalog import CATEGORIES, Catalogue
from synth.common import (
    COUNTRIES,
    US_CITY_ZONE,
    ZONES,
    Clock,
    choice_by_weights,
    where_or_none,
    whole_seconds,
)

_F = "Olivia Amelia Isla Ava Emily Sophie Grace Lily Chloe Jessica Hannah Emma Charlotte Lucy Ella Holly Laura"
_M = "Oliver George Harry Jack Jacob Noah Charlie Thomas Oscar William James Daniel Samuel Joseph Henry Luke"
_GB_LAST = (
    "Smith Jones Taylor Brown Williams Wilson Johnson Davies Robinson Wright Thompson Evans Walker White "
    "Roberts Green Hall Wood Jackson Clarke Patel Khan Lewis Harris Martin Cooper King Baker Hughes Edwards"
)
NAMES: dict[str, tuple[str, str, str]] = {  # country -> (female first names, male first names, last names)
    "GB": (_F, _M, _GB_LAST),
    "IE": (
        "Aoife Ciara Niamh Saoirse Emma Grace Sarah Ella",
        "Conor Sean Cian Oisin Jack Darragh Liam Patrick",
        "Murphy Kelly O'Sullivan Walsh Byrne Ryan O'Brien Doyle McCarthy Gallagher",
    ),
    "DE": (
        "Anna Lena Leonie Lea Hannah Sophie Marie Emilia Mia Laura",
        "Lukas Leon Finn Jonas Paul Felix Elias Jan",
        "Müller Schmidt Schneider Fischer Weber Meyer Wagner Becker Schulz Hoffmann Koch Richter",
    ),
    "FR": (
        "Emma Louise Jade Alice Chloé Léa Manon Camille Inès Sarah",
        "Gabriel Louis Raphaël Jules Adam Lucas Hugo",
        "Martin Bernard Dubois Thomas Robert Richard Petit Durand Leroy Moreau Simon Laurent",
    ),
    "ES": (
        "Lucía Sofía María Martina Paula Julia Valeria Carmen Ana",
        "Hugo Martín Lucas Mateo Daniel Alejandro Pablo",
        "García Fernández González Rodríguez López Martínez Sánchez Pérez Gómez Jiménez Ruiz",
    ),
    "US": (
        "Olivia Emma Charlotte Amelia Sophia Ava Mia Evelyn Harper Abigail",
        "Liam Noah Oliver James Elijah Mason",
        "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Wilson Anderson",
    ),
}
DOMAINS: dict[str, list[tuple[str, float]]] = {
    "GB": [
        ("gmail.com", 0.3),
        ("outlook.com", 0.15),
        ("hotmail.co.uk", 0.15),
        ("yahoo.co.uk", 0.1),
        ("btinternet.com", 0.1),
        ("icloud.com", 0.1),
        ("sky.com", 0.1),
    ],
    "IE": [("gmail.com", 0.5), ("eircom.net", 0.2), ("outlook.ie", 0.3)],
    "DE": [("gmx.de", 0.3), ("web.de", 0.3), ("gmail.com", 0.25), ("t-online.de", 0.15)],
    "FR": [("orange.fr", 0.3), ("free.fr", 0.2), ("gmail.com", 0.35), ("laposte.net", 0.15)],
    "ES": [("gmail.com", 0.5), ("hotmail.es", 0.25), ("yahoo.es", 0.1), ("telefonica.net", 0.15)],
    "US": [("gmail.com", 0.45), ("yahoo.com", 0.2), ("outlook.com", 0.15), ("aol.com", 0.1), ("icloud.com", 0.1)],
}
# country -> (calling code, trunk prefix, [(national number prefix, total digits, groups, share)])
PHONE_PLANS: dict[str, tuple[str, str, list[tuple[str, int, tuple[int, ...], float]]]] = {
    "GB": ("44", "0", [("207", 10, (2, 4, 4), 0.3), ("208", 10, (2, 4, 4), 0.2), ("7", 10, (4, 6), 0.5)]),
    "IE": ("353", "0", [("83", 9, (2, 3, 4), 0.3), ("85", 9, (2, 3, 4), 0.3), ("87", 9, (2, 3, 4), 0.4)]),
    "DE": ("49", "0", [("151", 11, (3, 8), 0.4), ("152", 11, (3, 8), 0.3), ("157", 11, (3, 8), 0.3)]),
    "FR": ("33", "0", [("6", 9, (1, 2, 2, 2, 2), 0.6), ("7", 9, (1, 2, 2, 2, 2), 0.4)]),
    "ES": ("34", "", [("6", 9, (3, 3, 3), 1.0)]),
    "US": (
        "1",
        "",
        [
            ("212", 10, (3, 3, 4), 0.3),
            ("312", 10, (3, 3, 4), 0.2),
            ("415", 10, (3, 3, 4), 0.3),
            ("617", 10, (3, 3, 4), 0.2),
        ],
    ),
}
MALFORMED_EMAIL_KINDS = ("double_at", "no_at", "no_tld", "double_dot")
MALFORMED_PHONES = ("12", "123", "0", "+44", "+44 12", "0000")
CHANNELS = (Channel.EMAIL, Channel.SMS, Channel.PUSH)
LINKS = ("email_variant", "phone_variant", "loyalty", "web_client", "combination", "unlinkable")
LINK_SHARES = (0.30, 0.25, 0.20, 0.10, 0.125, 0.025)


@dataclass(frozen=True)
class People:
    """Persons, their CRM records and their consent timelines.

    Attributes:
        persons: One row per person (index = person number) with demographics and planted traits.
        records: One row per CRM record (index = record number, ordered by creation) with contract
            customer columns plus ``person``, ``link_type``, ``created``, ``zone``, ``email_ok``,
            ``phone_ok``, ``push``.
        person_records: ``(n_persons, 3)`` record numbers of each person (primary first, -1 = none).
        consent_init: ``(n_records, 3)`` initial state per channel: 1 opt-in, 0 opt-out, -1 no row.
        consent_change: ``(n_records, 3)`` float day of the one later flip, NaN if none.
        dirt: Counts of malformed e-mails and phones.
    """

    persons: pd.DataFrame
    records: pd.DataFrame
    person_records: np.ndarray
    consent_init: np.ndarray
    consent_change: np.ndarray
    dirt: dict[str, int]

    def opted_in(self, record: np.ndarray, channel: int, t: np.ndarray | float) -> np.ndarray:
        """Whether each record is opted in on ``channel`` at time ``t`` (before any unsubscribe)."""
        init = self.consent_init[record, channel]
        change = self.consent_change[record, channel]
        flipped = ~np.isnan(change) & (change <= t)
        state = np.where(flipped, 1 - init, init)
        return (init >= 0) & (state == 1)


def _ascii(values: pd.Series) -> pd.Series:
    text = values.str.normalize("NFKD").str.encode("ascii", "ignore").str.decode("ascii")
    return text.str.lower().str.replace(r"[^a-z]", "", regex=True)


def _emails(rng: np.random.Generator, persons: pd.DataFrame) -> pd.Series:
    first, last = _ascii(persons["first_name"]), _ascii(persons["last_name"])
    n = len(persons)
    nn = pd.Series(rng.integers(1, 99, n).astype(str), index=persons.index)
    yy = pd.Series(rng.integers(60, 100, n).astype(str), index=persons.index)
    forms = [
        first + "." + last,
        first + last + nn,
        first.str[0] + last,
        first + "." + last + yy,
        last + "." + first + nn,
    ]
    pick = rng.choice(len(forms), size=n, p=[0.3, 0.2, 0.2, 0.15, 0.15])
    local = pd.Series(np.choose(pick, [f.to_numpy(dtype=object) for f in forms]), index=persons.index)
    domain = pd.Series("", index=persons.index, dtype=object)
    for country, domains in DOMAINS.items():
        mask = (persons["country"] == country).to_numpy()
        domain[mask] = choice_by_weights(rng, domains, int(mask.sum()))
    email = local + "@" + domain
    suffix = pd.Series(persons.index.astype(str), index=persons.index)
    for _ in range(5):  # same name and pattern: append a number, as mail providers make people do
        dup = email.duplicated(keep="first")
        if not dup.any():
            break
        email[dup] = local[dup] + suffix[dup] + "@" + domain[dup]
        local[dup] = local[dup] + suffix[dup]
    return email


def _phone_numbers(rng: np.random.Generator, country: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Calling code, national number and grouping pattern (as 'cc|trunk|2,4,4') per person."""
    n = len(country)
    cc = np.empty(n, dtype=object)
    nsn = np.empty(n, dtype=object)
    pattern = np.empty(n, dtype=object)
    for code, (calling, trunk, plans) in PHONE_PLANS.items():
        idx = np.flatnonzero(country == code)
        which = rng.choice(len(plans), size=len(idx), p=[p[3] for p in plans])
        for k, (prefix, digits, groups, _) in enumerate(plans):
            sub = idx[which == k]
            free = digits - len(prefix)
            body = rng.integers(2 * 10 ** (free - 1), 10**free, size=len(sub))  # no leading 0/1
            nsn[sub] = [prefix + str(b) for b in body]
            cc[sub] = calling
            pattern[sub] = f"{trunk}|{','.join(map(str, groups))}"
    return cc, nsn, pattern


def format_phones(cc: np.ndarray, nsn: np.ndarray, pattern: np.ndarray, form: np.ndarray) -> np.ndarray:
    """Write numbers in one of four common forms: E.164, international spaced, national, bracketed."""
    out = np.empty(len(nsn), dtype=object)
    for pat in pd.unique(pattern):
        trunk, groups_text = pat.split("|")
        groups = [int(g) for g in groups_text.split(",")]
        idx = np.flatnonzero(pattern == pat)
        s = pd.Series(nsn[idx], dtype=object)
        bounds = np.cumsum([0, *groups])
        parts = [s.str.slice(int(a), int(b)) for a, b in itertools.pairwise(bounds)]
        spaced = parts[0].str.cat(parts[1:], sep=" ") if len(parts) > 1 else parts[0]
        rest = parts[1].str.cat(parts[2:], sep="-") if len(parts) > 2 else parts[1]
        code = pd.Series(cc[idx], dtype=object)
        forms = np.stack(
            [
                ("+" + code + s).to_numpy(dtype=object),
                ("+" + code + " " + spaced).to_numpy(dtype=object),
                (trunk + spaced).to_numpy(dtype=object),
                ("(" + trunk + parts[0] + ") " + rest).to_numpy(dtype=object),
            ]
        )
        out[idx] = forms[form[idx], np.arange(len(idx))]
    return out


def _names(rng: np.random.Generator, country: np.ndarray, gender: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    first = np.empty(len(country), dtype=object)
    last = np.empty(len(country), dtype=object)
    for code, (female, male, surnames) in NAMES.items():
        mask = country == code
        f_names, m_names = np.array(female.split()), np.array(male.split())
        fem = mask & ((gender == "F") | ((gender == "X") & (rng.random(len(country)) < 0.5)))
        mal = mask & ~fem
        first[fem] = rng.choice(f_names, int(fem.sum()))
        first[mal] = rng.choice(m_names, int(mal.sum()))
        last[mask] = rng.choice(np.array(surnames.split()), int(mask.sum()))
    return first, last


def _traits(rng: np.random.Generator, p: pd.DataFrame, clock: Clock, catalogue: Catalogue) -> None:
    """Planted behavioural traits, written into ``p`` in place."""
    n = len(p)
    new = p["created"].to_numpy() >= 0
    u = rng.random(n)
    kind = np.where(u < 0.22, "lead", "regular").astype(object)
    ooad = (kind == "regular") & new & (rng.random(n) < 0.34)
    kind[ooad] = "one_and_done"
    lapsing = (kind == "regular") & (rng.random(n) < 0.20)
    kind[lapsing] = "lapsing"
    p["planted_type"] = kind
    rate = rng.gamma(1.3, (1 / 55) / 1.3, n)
    rate[(kind == "lead") | (kind == "one_and_done")] = 0.0
    p["rate"] = rate
    p["lapse_onset"] = np.where(lapsing, rng.uniform(0.1, 0.97, n) * clock.days, np.nan)
    p["engagement"] = rng.beta(2.0, 3.0, n)
    p["price_sensitivity"] = rng.beta(2.0, 2.0, n)
    gb = p["country"].to_numpy() == "GB"
    online = np.where(gb, rng.beta(3.0, 1.2, n), 1.0)
    online[gb & (rng.random(n) < 0.12)] = 0.0  # store-only shoppers
    p["online_share"] = online
    p["has_web"] = (online > 0) | (rng.random(n) < 0.3)
    p["web_rate"] = np.where(p["has_web"], rng.gamma(1.2, 0.36 / 1.2, n), 0.0)  # sessions per week
    p["has_app"] = p["has_web"] & (rng.random(n) < 0.3)
    base = choice_by_weights(
        rng, [(8, 0.15), (9, 0.1), (7, 0.1), (12, 0.12), (13, 0.13), (18, 0.08), (19, 0.1), (20, 0.12), (21, 0.1)], n
    ).astype(np.int64)
    email_hour = (base + rng.choice([-1, 0, 0, 0, 1], n)) % 24
    p["pref_hour_email"] = email_hour
    p["pref_hour_sms"] = (email_hour + rng.choice([-1, 0, 0, 1], n)) % 24
    p["pref_hour_push"] = (email_hour + rng.choice([-2, -1, 0, 1, 2], n)) % 24
    p["pref_hour_web"] = (email_hour + rng.choice([-1, 0, 1, 2], n)) % 24
    # three favourite categories (Gumbel top-k on popularity) and how much of a basket they take
    keys = np.log(catalogue.category_weight)[None, :] + rng.gumbel(size=(n, catalogue.n_categories))
    top = np.argsort(-keys, axis=1)[:, :3]
    weights = rng.dirichlet([4.0, 2.0, 1.0], n) * 0.85
    for k in range(3):
        p[f"category_{k + 1}"] = top[:, k]
        p[f"category_weight_{k + 1}"] = np.round(weights[:, k], 4)
    one_brand = (kind != "lead") & (rng.random(n) < 0.05)
    favourite_items = catalogue.sample_in_category(rng, top[:, 0])
    p["brand"] = np.where(one_brand, catalogue.items["brand_idx"].to_numpy()[favourite_items], -1)
    medians = np.array([v[0] for v in CATEGORIES.values()])
    p["basket_value"] = np.round(medians[top[:, 0]] * 2.6 * rng.uniform(0.6, 1.6, n), 2)
    p["loyalty_member"] = rng.random(n) < 0.6


def build_people(rng: np.random.Generator, n: int, clock: Clock, catalogue: Catalogue) -> People:
    """Draw persons, their records (with duplicates, spouse traps, malformed contacts) and consents.

    Args:
        rng: Random stream of the people.
        n: Number of persons.
        clock: The world's clock.
        catalogue: The catalogue (category popularity drives affinities).

    Returns:
        The people of the world.
    """
    T = clock.days
    country = choice_by_weights(rng, [(c, v[0]) for c, v in COUNTRIES.items()], n)
    city = np.empty(n, dtype=object)
    zone = np.empty(n, dtype=object)
    for code, (_, _, zones, cities) in COUNTRIES.items():
        mask = country == code
        city[mask] = choice_by_weights(rng, cities, int(mask.sum()))
        zone[mask] = zones[0][0]
    us = country == "US"
    zone[us] = [US_CITY_ZONE[c] for c in city[us]]
    gender = choice_by_weights(rng, [("F", 0.55), ("M", 0.43), ("X", 0.02)], n)
    first, last = _names(rng, country, gender)
    age_days = np.clip(rng.normal(42, 14, n), 18, 85) * 365.25
    birth = np.where(rng.random(n) < 0.15, np.nan, np.floor(-age_days))
    existing = rng.random(n) < 0.35
    created = np.where(existing, -rng.uniform(1, 3 * 365, n), rng.random(n) ** 0.85 * (T - 1))
    persons = pd.DataFrame(
        {
            "person_id": [f"P{k:07d}" for k in range(1, n + 1)],
            "country": country,
            "city": city,
            "timezone": zone,
            "first_name": first,
            "last_name": last,
            "gender": gender,
            "birth_date": birth,
            "created": created,
        }
    )
    persons["zone"] = pd.Categorical(zone, categories=list(ZONES)).codes.astype(np.int64)
    _traits(rng, persons, clock, catalogue)

    persons["email"] = _emails(rng, persons)
    has_email = persons["has_web"].to_numpy() | (rng.random(n) < 0.75)
    cc, nsn, pattern = _phone_numbers(rng, country)
    has_phone = rng.random(n) < 0.65
    loyalty = persons["loyalty_member"].to_numpy()
    cards = np.array([f"LC{v}" for v in rng.choice(9 * 10**8, n, replace=False) + 10**8], dtype=object)
    persons["loyalty_id"] = where_or_none(loyalty, cards)
    stamp = 1_600_000_000 + rng.integers(0, 10**8, n)
    browsers = rng.choice(9 * 10**8, n, replace=False) + 10**8
    persons["web_client_id"] = where_or_none(
        persons["has_web"], [f"GA1.2.{v}.{s}" for v, s in zip(browsers, stamp, strict=True)]
    )

    # duplicates and spouses are disjoint sets of persons
    order = rng.permutation(n)
    n_spouse_pairs = max(1, round(0.005 * n))
    candidates = order[np.isin(order, np.flatnonzero(loyalty))]
    spouse_a, spouse_b = candidates[:n_spouse_pairs], candidates[n_spouse_pairs : 2 * n_spouse_pairs]
    taken = np.zeros(n, dtype=bool)
    taken[spouse_a] = taken[spouse_b] = True
    has_phone[spouse_a] = has_phone[spouse_b] = True
    cc[spouse_b], nsn[spouse_b], pattern[spouse_b] = cc[spouse_a], nsn[spouse_a], pattern[spouse_a]
    for col in ("last_name", "city", "country", "timezone", "zone"):
        persons.loc[spouse_b, col] = persons.loc[spouse_a, col].to_numpy()
    persons["spouse_person_id"] = None
    persons.loc[spouse_a, "spouse_person_id"] = persons.loc[spouse_b, "person_id"].to_numpy()
    persons.loc[spouse_b, "spouse_person_id"] = persons.loc[spouse_a, "person_id"].to_numpy()

    dup_persons = order[~taken[order]][: round(0.08 * n)]
    n_extra = np.where(rng.random(len(dup_persons)) < 0.75, 1, 2)
    extra_person = np.repeat(dup_persons, n_extra)
    link = choice_by_weights(rng, list(zip(LINKS, LINK_SHARES, strict=True)), len(extra_person))
    # a person linked by an id must have that id
    has_email[extra_person] = True
    has_phone[extra_person[np.isin(link, ["phone_variant", "combination"])]] = True
    needs_card = extra_person[link == "loyalty"]
    persons.loc[needs_card, "loyalty_member"] = True
    persons.loc[needs_card, "loyalty_id"] = cards[needs_card]
    form = rng.choice(4, n, p=[0.25, 0.25, 0.35, 0.15])
    phone = format_phones(cc, nsn, pattern, form)
    persons["phone_e164"] = np.where(has_phone, "+" + cc.astype(str) + nsn.astype(str), None)

    primary = pd.DataFrame(
        {
            "person": np.arange(n),
            "link_type": "primary",
            "email": where_or_none(has_email, persons["email"]),
            "phone": where_or_none(has_phone, phone),
            "loyalty_id": persons["loyalty_id"],
            "web_client_id": persons["web_client_id"],
            "birth_date": birth,
            "gender": gender,
            "created": created,
            "push": persons["has_app"].to_numpy(),
            "source": np.where(persons["has_web"], "web", "store"),
        }
    )
    extras = _duplicate_records(rng, persons, extra_person, link, cc, nsn, pattern, form, T)
    records = pd.concat([primary, extras], ignore_index=True)
    records["created"] = whole_seconds(records["created"].to_numpy())
    for col in ("first_name", "last_name", "city", "country", "timezone", "zone"):
        records[col] = persons[col].to_numpy()[records["person"].to_numpy()]
    records = records.iloc[np.lexsort((rng.random(len(records)), records["created"].to_numpy()))]
    records = records.reset_index(drop=True)
    records["customer_id"] = [str(100_001 + k) for k in range(len(records))]

    dirt = _malform_contacts(rng, records, taken)
    records["email_ok"] = records["email"].notna() & ~records["email_malformed"]
    records["phone_ok"] = records["phone"].notna() & ~records["phone_malformed"]
    persons["n_records"] = np.bincount(records["person"], minlength=n)

    person_records = np.full((n, 3), -1, dtype=np.int64)
    rank = records.groupby("person").cumcount().to_numpy()
    is_primary = (records["link_type"] == "primary").to_numpy()
    slot = np.where(is_primary, 0, np.minimum(rank + (rank == 0), 2))  # a duplicate may predate nothing
    person_records[records["person"].to_numpy(), slot] = np.arange(len(records))
    init, change = _consents(rng, records, T)
    return People(persons, records, person_records, init, change, dirt)


def _duplicate_records(
    rng: np.random.Generator,
    persons: pd.DataFrame,
    person: np.ndarray,
    link: np.ndarray,
    cc: np.ndarray,
    nsn: np.ndarray,
    pattern: np.ndarray,
    form: np.ndarray,
    T: int,
) -> pd.DataFrame:
    """Extra records of a person, each carrying a spelling variant of one or two identifiers."""
    m = len(person)
    use = {k: link == k for k in ("email_variant", "phone_variant", "loyalty", "web_client")}
    combo = np.flatnonzero(link == "combination")
    pair_kind = rng.choice(3, len(combo))
    for kinds, which in (
        (("email_variant", "phone_variant"), 0),
        (("loyalty", "email_variant"), 1),
        (("phone_variant", "web_client"), 2),
    ):
        for k in kinds:
            use[k][combo[pair_kind == which]] = True
    use["web_client"] &= persons["web_client_id"].notna().to_numpy()[person]
    use["loyalty"] &= persons["loyalty_id"].notna().to_numpy()[person]
    use["email_variant"] |= (link != "unlinkable") & ~np.any(np.column_stack(list(use.values())), axis=1)
    n_used = np.sum(np.column_stack(list(use.values())), axis=1)
    link = np.where(n_used > 1, "combination", link)
    for k in ("email_variant", "phone_variant", "loyalty", "web_client"):
        link = np.where((n_used == 1) & use[k], k, link)
    email = persons["email"].to_numpy()[person].astype(str)
    variant = rng.integers(0, 4, m)
    cap = np.array([e[:1].upper() + e[1:] for e in email], dtype=object)
    email_var = np.choose(
        variant, [cap, np.char.upper(email).astype(object), (" " + email).astype(object), (cap + " ").astype(object)]
    )
    # the unlinkable duplicate: a typo (one letter dropped) and nothing else
    typo = np.array([e[:1] + e[2:] if e.index("@") > 2 else "x" + e for e in email], dtype=object)
    other_form = (form[person] + rng.integers(1, 4, m)) % 4
    phone_var = format_phones(cc[person], nsn[person], pattern[person], other_form)
    born = persons["created"].to_numpy()[person]
    created = np.maximum(born + 1.0, rng.uniform(np.maximum(born, -365.0), T - 1.0))
    return pd.DataFrame(
        {
            "person": person,
            "link_type": link,
            "email": where_or_none(
                use["email_variant"] | (link == "unlinkable"), np.where(use["email_variant"], email_var, typo)
            ),
            "phone": where_or_none(use["phone_variant"], phone_var),
            "loyalty_id": where_or_none(use["loyalty"], persons["loyalty_id"].to_numpy()[person]),
            "web_client_id": where_or_none(use["web_client"], persons["web_client_id"].to_numpy()[person]),
            "birth_date": np.where(rng.random(m) < 0.5, np.nan, persons["birth_date"].to_numpy()[person]),
            "gender": where_or_none(rng.random(m) >= 0.3, persons["gender"].to_numpy()[person]),
            "created": created,
            "push": False,
            "source": np.where(use["phone_variant"] | use["loyalty"], "store", "web"),
        }
    )


def _malform_contacts(rng: np.random.Generator, records: pd.DataFrame, spouse: np.ndarray) -> dict[str, int]:
    """Break ~1 % of e-mails and ~0.5 % of phones, on persons with a single record (links stay intact)."""
    single = records.groupby("person")["person"].transform("size").to_numpy() == 1
    single &= ~spouse[records["person"].to_numpy()]
    n = len(records)
    email_idx = np.flatnonzero(single & records["email"].notna().to_numpy())
    email_idx = rng.choice(email_idx, size=min(len(email_idx), round(0.01 * n)), replace=False)
    kinds = rng.integers(0, len(MALFORMED_EMAIL_KINDS), len(email_idx))
    emails = records["email"].to_numpy().copy()
    for k, i in zip(kinds, email_idx, strict=True):  # ~1 % of records
        local, domain = str(emails[i]).split("@")
        emails[i] = (
            f"{local}@@{domain}",
            f"{local}.{domain}",
            f"{local}@{domain.split('.')[0]}",
            f"{local}..x@{domain}",
        )[k]
    records["email"] = emails
    records["email_malformed"] = np.isin(np.arange(n), email_idx)
    phone_idx = np.flatnonzero(single & records["phone"].notna().to_numpy())
    phone_idx = rng.choice(phone_idx, size=min(len(phone_idx), round(0.005 * n)), replace=False)
    phones = records["phone"].to_numpy().copy()
    phones[phone_idx] = rng.choice(np.array(MALFORMED_PHONES, dtype=object), len(phone_idx))
    records["phone"] = phones
    records["phone_malformed"] = np.isin(np.arange(n), phone_idx)
    return {"malformed_emails": len(email_idx), "malformed_phones": len(phone_idx)}


def _consents(rng: np.random.Generator, records: pd.DataFrame, T: int) -> tuple[np.ndarray, np.ndarray]:
    """Initial opt-in/out per channel where the contact point exists, and one later flip for some."""
    n = len(records)
    exists = np.column_stack([records["email"].notna(), records["phone"].notna(), records["push"]])
    p_in = np.array([0.70, 0.45, 0.75])
    init = np.where(exists, (rng.random((n, 3)) < p_in).astype(np.int64), -1)
    created = records["created"].to_numpy()[:, None]
    change = whole_seconds(created + 1.0 + rng.exponential(250.0, (n, 3)))
    keep = exists & (rng.random((n, 3)) < 0.12) & (change < T)
    return init, np.where(keep, change, np.nan)
