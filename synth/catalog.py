"""The synthetic world's catalogue, its planted complementary pairs, its offers and their true uplift."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.contract import Col, OfferType

# category -> (median list price in GBP, complementary category, nouns)
CATEGORIES: dict[str, tuple[float, str, tuple[str, ...]]] = {
    "Kitchen": (11.0, "Tableware", ("TEA TOWEL", "CAKE TIN", "MEASURING SPOONS", "APRON", "UTENSIL POT")),
    "Tableware": (8.0, "Kitchen", ("MUG", "PLATE", "BOWL", "TEACUP AND SAUCER", "JUG", "COASTER SET")),
    "Home Decor": (15.0, "Textiles", ("PHOTO FRAME", "WALL CLOCK", "MIRROR", "VASE", "HANGING HEART")),
    "Candles": (7.0, "Lighting", ("T-LIGHT HOLDER", "SCENTED CANDLE", "LANTERN", "CANDLE SET", "WAX MELT")),
    "Lighting": (24.0, "Candles", ("TABLE LAMP", "FAIRY LIGHTS", "STRING LIGHTS", "NIGHT LIGHT", "LAMPSHADE")),
    "Textiles": (17.0, "Home Decor", ("CUSHION COVER", "THROW", "BLANKET", "TABLECLOTH", "BUNTING")),
    "Storage": (10.0, "Garden", ("STORAGE TIN", "BASKET", "JAR", "TRINKET BOX", "CRATE")),
    "Stationery": (4.0, "Party", ("NOTEBOOK", "PENCIL SET", "GREETING CARD", "GIFT WRAP", "STICKER SHEET")),
    "Party": (3.5, "Stationery", ("PAPER CUPS", "NAPKINS", "BALLOONS", "CAKE CASES", "PARTY BAGS")),
    "Christmas": (6.0, "Candles", ("BAUBLE", "ADVENT CALENDAR", "WREATH", "STOCKING", "TREE DECORATION")),
    "Toys": (11.0, "Party", ("JIGSAW", "SPINNING TOP", "SKIPPING ROPE", "RAG DOLL", "BUILDING BLOCKS")),
    "Garden": (14.0, "Storage", ("PLANT POT", "WATERING CAN", "BIRD FEEDER", "GARDEN TRUG", "SEED TIN")),
    "Bags": (15.0, "Clothing", ("TOTE BAG", "SHOPPER", "LUNCH BAG", "JUMBO BAG", "PURSE")),
    "Jewellery": (12.0, "Gifts", ("NECKLACE", "BRACELET", "EARRINGS", "RING DISH", "CHARM")),
    "Bath & Body": (7.0, "Beauty", ("SOAP", "BATH BOMB", "HAND CREAM", "WASH BAG", "SPONGE")),
    "Beauty": (12.0, "Bath & Body", ("LIP BALM", "NAIL POLISH", "FACE MASK", "MAKE-UP BAG", "COMPACT MIRROR")),
    "Pet": (9.0, "Storage", ("DOG BOWL", "CAT TOY", "PET BED", "DOG LEAD", "TREAT JAR")),
    "Books": (10.0, "Stationery", ("COOKBOOK", "COLOURING BOOK", "DIARY", "RECIPE BOOK", "ADDRESS BOOK")),
    "Clothing": (21.0, "Bags", ("SCARF", "GLOVES", "SOCKS", "BOBBLE HAT", "SLIPPERS")),
    "Gifts": (8.0, "Jewellery", ("GIFT SET", "KEYRING", "MONEY BOX", "KEEPSAKE BOX", "FRIDGE MAGNET")),
}
ADJECTIVES = (
    "VINTAGE",
    "RED",
    "RETRO",
    "SCANDI",
    "RUSTIC",
    "PASTEL",
    "WHITE",
    "HEART",
    "SPOTTY",
    "FLORAL",
    "GOLD",
    "WOODEN",
    "GLASS",
    "CERAMIC",
    "WOVEN",
    "MINI",
    "JUMBO",
    "CLASSIC",
    "BOTANICAL",
    "STRIPED",
    "VELVET",
    "ENAMEL",
    "COPPER",
    "LINEN",
    "STAR",
    "PINK",
    "BLUE",
    "GINGHAM",
    "PAISLEY",
    "REGENCY",
)
BRANDS = (
    "Hartwell",
    "Nordlys",
    "Brambleby",
    "Kettle & Co",
    "Maison Lune",
    "Ollie Fox",
    "Puddle Lane",
    "Copperleaf",
    "Thistle & Thorn",
    "Greyfield",
    "Little Wren",
    "Amberline",
    "Blossom Row",
    "Harbour Home",
    "Pinecrest",
    "Ravenmoor",
    "Sunny Days",
    "Wicker Lane",
    "Oak & Ash",
    "Kindred",
    "Lumen",
    "Mossgrove",
    "Paper Moon",
    "Salt & Sage",
    "Tidewater",
    "Velvet Fox",
    "Willowby",
    "Zest",
    "Fernhill",
    "Goldcrest",
    "Hazelnut",
    "Ivybridge",
    "Juniper",
    "Kestrel",
    "Larkspur",
    "Meadowsweet",
    "Northbound",
    "Orchard Lane",
    "Pebble",
    "Quill",
)

# offer_id, name, type, value, cost per redemption
OFFERS: tuple[tuple[str, str, OfferType, float, float], ...] = (
    ("OF01", "20% off everything", OfferType.PERCENT_DISCOUNT, 20.0, 0.0),
    ("OF02", "£5 off £30", OfferType.FIXED_AMOUNT, 5.0, 0.0),
    ("OF03", "Free delivery", OfferType.FREE_DELIVERY, 3.95, 3.95),
    ("OF04", "Double loyalty points", OfferType.BONUS_POINTS, 200.0, 1.0),
    ("OF05", "New season lookbook", OfferType.CONTENT, 0.0, 0.01),
    ("OF06", "10% off", OfferType.PERCENT_DISCOUNT, 10.0, 0.0),
)


@dataclass(frozen=True)
class Catalogue:
    """Items, their popularity and the lookup tables used to sample them fast.

    Attributes:
        items: One row per item (contract columns of ``items`` plus ``category_idx``, ``brand_idx``).
        weight: Sales popularity of each item (sums to 1 within each category).
        category_weight: Popularity of each category (sums to 1).
        pairs: Planted complementary pairs ``item_a, item_b, strength`` as item indices.
    """

    items: pd.DataFrame
    weight: np.ndarray
    category_weight: np.ndarray
    pairs: pd.DataFrame
    _by_category: np.ndarray
    _cdf_category: np.ndarray
    _by_brand: np.ndarray
    _cdf_brand: np.ndarray

    @property
    def n_categories(self) -> int:
        return len(self.category_weight)

    @property
    def n_brands(self) -> int:
        return len(BRANDS)

    def sample_in_category(self, rng: np.random.Generator, category: np.ndarray) -> np.ndarray:
        """One item per row from its category, by popularity (vectorised inverse CDF)."""
        pos = np.searchsorted(self._cdf_category, category + rng.random(len(category)) * 0.999999, side="right")
        return self._by_category[np.minimum(pos, len(self._by_category) - 1)]

    def sample_in_brand(self, rng: np.random.Generator, brand: np.ndarray) -> np.ndarray:
        """One item per row from its brand, by popularity."""
        pos = np.searchsorted(self._cdf_brand, brand + rng.random(len(brand)) * 0.999999, side="right")
        return self._by_brand[np.minimum(pos, len(self._by_brand) - 1)]


def _grouped_cdf(group: np.ndarray, weight: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Items ordered by group and a CDF whose values for group ``g`` lie in ``[g, g + 1]``."""
    order = np.lexsort((np.arange(len(group)), group))
    g, w = group[order], weight[order]
    totals = np.bincount(g, weights=w, minlength=n_groups)
    cum = np.cumsum(w) - np.concatenate([[0.0], np.cumsum(totals)])[g]
    cdf = g + np.minimum(cum / totals[g], 1.0)
    last = np.flatnonzero(np.diff(np.append(g, n_groups)) != 0)
    cdf[last] = g[last] + 1.0  # exact group bounds, so a draw never spills into a neighbour
    return order, cdf


def build_catalogue(rng: np.random.Generator, n_items: int = 600, n_pairs: int = 50) -> Catalogue:
    """Build the item catalogue with Zipf-like popularity and planted complementary pairs.

    Args:
        rng: Random stream of the catalogue.
        n_items: Number of catalogue items.
        n_pairs: Number of planted "bought together" pairs.

    Returns:
        The catalogue.
    """
    names = list(CATEGORIES)
    n_cat = len(names)
    category_weight = rng.lognormal(0.0, 0.6, n_cat)
    category_weight /= category_weight.sum()
    cat = np.sort(np.concatenate([np.arange(n_cat), rng.choice(n_cat, n_items - n_cat, p=category_weight)]))
    # Zipf within category: a random rank per item
    weight = np.zeros(n_items)
    for c in range(n_cat):
        idx = np.flatnonzero(cat == c)
        ranks = rng.permutation(len(idx))
        weight[idx] = 1.0 / (ranks + 2.0) ** 1.1
    active = rng.random(n_items) > 0.04
    in_stock = active & (rng.random(n_items) > 0.03)
    weight[~active] *= 0.3
    weight /= np.bincount(cat, weights=weight, minlength=n_cat)[cat]

    # brands: each category draws from a few brands; some brands span categories
    brand_pool = [rng.choice(len(BRANDS), size=rng.integers(2, 6), replace=False) for _ in range(n_cat)]
    brand = np.array([rng.choice(brand_pool[c]) for c in cat])
    median = np.array([CATEGORIES[n][0] for n in names])[cat]
    price = np.maximum(0.5, rng.lognormal(np.log(median), 0.45)) * 20
    price = np.round(price) / 20 - np.where(rng.random(n_items) < 0.4, 0.01, 0.0)
    numbers = rng.choice(np.arange(10_000, 100_000), size=n_items, replace=False)
    suffix = np.where(rng.random(n_items) < 0.25, rng.choice(list("ABCDEFG"), n_items), "")
    nouns = [CATEGORIES[names[c]][2] for c in cat]
    item_name = [
        f"{ADJECTIVES[a]} {ADJECTIVES[b]} {n[k % len(n)]}" if a != b else f"{ADJECTIVES[a]} {n[k % len(n)]}"
        for a, b, n, k in zip(
            rng.integers(0, len(ADJECTIVES), n_items),
            rng.integers(0, len(ADJECTIVES), n_items),
            nouns,
            rng.integers(0, 100, n_items),
            strict=True,
        )
    ]
    items = pd.DataFrame(
        {
            Col.ITEM_ID: [f"{n}{s}" for n, s in zip(numbers, suffix, strict=True)],
            Col.NAME: item_name,
            Col.CATEGORY: np.array(names, dtype=object)[cat],
            Col.BRAND: np.array(BRANDS, dtype=object)[brand],
            Col.PRICE: np.round(price, 2),
            Col.CURRENCY: "GBP",
            Col.ACTIVE: active,
            Col.IN_STOCK: in_stock,
            "category_idx": cat,
            "brand_idx": brand,
        }
    )
    by_cat, cdf_cat = _grouped_cdf(cat, weight, n_cat)
    brand_weight = weight * category_weight[cat]
    by_brand, cdf_brand = _grouped_cdf(brand, brand_weight + 1e-12, len(BRANDS))
    pairs = _plant_pairs(rng, items, weight * category_weight[cat], n_pairs)
    return Catalogue(items, weight, category_weight, pairs, by_cat, cdf_cat, by_brand, cdf_brand)


def _plant_pairs(rng: np.random.Generator, items: pd.DataFrame, popularity: np.ndarray, n_pairs: int) -> pd.DataFrame:
    """Pick item A among popular active items and B in A's or its complementary category."""
    names = list(CATEGORIES)
    cat = items["category_idx"].to_numpy()
    active = items[Col.ACTIVE].to_numpy()
    ranked = np.argsort(-popularity * active, kind="stable")
    top = ranked[: max(n_pairs * 3, len(items) // 3)]
    a_items = rng.choice(top, size=n_pairs, replace=False)
    taken = set(a_items.tolist())
    b_items = np.empty(n_pairs, dtype=np.int64)
    for k, a in enumerate(a_items):  # n_pairs iterations (~50)
        target = cat[a] if rng.random() < 0.5 else names.index(CATEGORIES[names[cat[a]]][1])
        free = active & ~np.isin(np.arange(len(cat)), list(taken))
        cand = np.flatnonzero(free & (cat == target))
        if not len(cand):  # a small category used up
            cand = np.flatnonzero(free)
        p = popularity[cand] / popularity[cand].sum()
        b_items[k] = rng.choice(cand, p=p)
        taken.add(int(b_items[k]))
    strength = np.round(rng.uniform(0.45, 0.85, n_pairs), 3)
    return pd.DataFrame({"item_a": a_items, "item_b": b_items, "strength": strength})


def offers_frame(start_days: float, end_days: float) -> pd.DataFrame:
    """The offers table (valid over the whole world, on every channel) with float-day validity."""
    return pd.DataFrame(
        {
            Col.OFFER_ID: [o[0] for o in OFFERS],
            Col.NAME: [o[1] for o in OFFERS],
            Col.OFFER_TYPE: [str(o[2]) for o in OFFERS],
            Col.VALUE: [o[3] for o in OFFERS],
            Col.CHANNELS: "email,sms,push",
            Col.VALID_FROM: start_days,
            Col.VALID_TO: end_days,
            Col.COST: [o[4] for o in OFFERS],
        }
    )


def plant_uplift(persons: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """True 30-day purchase probability without an offer and the additive uplift of each offer.

    Heterogeneous by design: discounts lift price-sensitive and lapsing buyers most and do little for
    heavy buyers who would buy anyway; points matter to loyalty members only; content barely lifts and
    annoys the disengaged. Leads never buy, so their baseline and uplift are zero.

    Args:
        persons: Person traits (``rate``, ``price_sensitivity``, ``engagement``, ``online_share``,
            ``planted_type``, ``loyalty_member``, ``basket_value``).

    Returns:
        ``(baseline, uplift)``: shapes ``(n,)`` and ``(n, len(OFFERS))``.
    """
    rate = persons["rate"].to_numpy()
    baseline = 1.0 - np.exp(-30.0 * rate)
    ps = persons["price_sensitivity"].to_numpy()
    eng = persons["engagement"].to_numpy()
    online = persons["online_share"].to_numpy()
    lapsing = (persons["planted_type"].to_numpy() == "lapsing").astype(float)
    member = persons["loyalty_member"].to_numpy().astype(float)
    cheap = (persons["basket_value"].to_numpy() < 30.0).astype(float)
    heavy = np.clip(baseline - 0.45, 0.0, None)
    pct20 = 0.015 + 0.13 * ps + 0.07 * lapsing - 0.25 * heavy
    uplift = np.column_stack(
        [
            pct20,
            0.01 + 0.08 * ps * cheap + 0.03 * lapsing - 0.15 * heavy,
            0.005 + 0.06 * online * ps,
            member * (0.01 + 0.05 * eng) - (1 - member) * 0.004,
            0.012 * eng - 0.025 * (eng < 0.2),
            0.45 * pct20 - 0.01,
        ]
    )
    uplift = np.clip(uplift, -baseline[:, None], 0.95 - baseline[:, None])
    lead = persons["planted_type"].to_numpy() == "lead"
    uplift[lead] = 0.0
    baseline[lead] = 0.0
    return baseline, np.round(uplift, 5)
