"""A seeded, deterministic synthetic online shop: the project's built-in default data.

Why it exists: the pipeline needs data that is (1) dirty in known ways, so that the
quarantine can be checked line by line against ground truth, and (2) driven by real
tastes, so that a recommender measurably beats popularity. Both come from latent
user tastes that stay available (:meth:`SyntheticShop.affinity`, ``save_state``) for
tests and benchmarks.

The world: a catalogue of categories and brands with log-normal prices and Zipf-like
popularity, and users whose tastes (a few loved categories, brand likes, a price band,
a few latent factors) correlate a little with their age, gender and country. Users and
items keep arriving during the simulated period. Each day, users visit in sessions of
views drawn by popularity and taste, some of which turn into carts and purchases with a
probability driven by the true taste; consumables get bought again on their cycle.
Everything is vectorised with numpy (one Python loop per day and per category) and
seeded from ``(seed, day)``, so the same config always writes the same bytes.
"""

from __future__ import annotations

import csv
import json
import time
import zipfile
from dataclasses import asdict, dataclass, field, replace
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from recs_pipeline.synthetic.dirt import DEFECT_KINDS, inject_defects
from recs_pipeline.synthetic.vocabulary import (
    AGE_BANDS,
    AGE_SHARES,
    BRANDS,
    CATEGORIES,
    COUNTRIES,
    COUNTRY_SHARES,
    GENDER_SHARES,
    GENDERS,
    HOURLY_TRAFFIC,
    PRICE_BAND_BY_AGE,
    PRICE_BANDS,
)

# The landing-zone contract with the ingestion code.
EVENT_COLUMNS = ("user_id", "item_id", "event_type", "event_ts", "quantity", "price", "session_id", "search_query")
# The days simulated after generation (recs simulate) also carry the campaign message a
# response answers: the shop "starts tracking campaigns" then, a field added to the
# files, never lost from one day to the next.
TRACKED_EVENT_COLUMNS = (*EVENT_COLUMNS, "send_id")
ITEM_COLUMNS = ("item_id", "title", "category", "brand", "price", "description", "in_stock", "launch_date")
# The user profile file also carries direct identifiers, as a real shop's export does:
# the pipeline must never load them (docs/privacy.md; they are not canonical columns).
DIRECT_IDENTIFIER_COLUMNS = ("full_name", "email", "phone", "street_address", "postcode")
USER_COLUMNS = (
    "user_id", "signup_date", "age_band", "gender", "country", "marketing_consent", *DIRECT_IDENTIFIER_COLUMNS,
)  # fmt: skip
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"

# Event types, in the order events of the same second are written.
EVENT_TYPES = ("search", "impression", "click", "view", "add_to_cart", "remove_from_cart", "purchase")
SEARCH, IMPRESSION, CLICK, VIEW, CART, REMOVE, PURCHASE = range(len(EVENT_TYPES))

# How a viewed item got into a session (also the order of views within a session:
# clicked recommendations come last, so they never move the other views).
BROWSED, REPLENISHED, RECOMMENDED = 0, 1, 2

# Independent random streams of one day: organic behaviour does not reshuffle when
# recommendations are shown (only removals and checkout of sessions with a click move).
BROWSE_STREAM, RECS_STREAM, REPLENISH_STREAM, DIRT_STREAM = range(4)
WORLD_DAY = 0  # the "day" of the streams that build the world (real days are ordinals > 700,000)
# World part of the direct identifiers' own stream (0-2 build catalogue, users, history):
# they draw from nothing else, so every other generated value is what it was without them.
IDENTITY_PART = 3

# --- Tastes -------------------------------------------------------------------------
N_FACTORS = 8  # latent item/user factors: taste structure beyond category, brand and price
TASTE_CONCENTRATION = 1.5  # Dirichlet concentration of category tastes: low = 1-3 loved categories
DEMOGRAPHIC_SD = {"gender": 0.5, "age": 0.4, "country": 0.25}  # shift of category tastes (cold-start signal)
BRAND_TASTE_SD = 0.6
LATENT_WEIGHT = 0.7
CATEGORY_WEIGHT, CATEGORY_FLOOR = 0.5, 0.02  # affinity term 0.5 * log(taste share + 0.02)
# Utility of an item's price band (columns) for a user preferring a band (rows).
PRICE_FIT = np.array([[0.5, -0.1, -0.8], [-0.1, 0.5, -0.1], [-0.8, -0.1, 0.5]])
ZIPF_EXPONENT = 1.0  # base popularity of the item of popularity rank r is 1 / r
NOVELTY_BOOST, NOVELTY_DAYS = 3.0, 7.0  # new items get up to 4x popularity, fading over a week or two

# --- Sessions -----------------------------------------------------------------------
EXPLORATION = 0.08  # share of category choices made from global shares instead of own taste
SESSION_FOCUS = 0.75  # chance a view stays in the session's intent category
MEAN_EXTRA_VIEWS = 3.0  # views per session = 1 + Poisson(3)
SEARCH_SESSION_SHARE = 0.3  # sessions that start with a search
MEAN_GAP_SECONDS, MIN_GAP_SECONDS = 35.0, 5  # between two views of a session
EVENTS_PER_SESSION = 4.85  # mean events of a browse session (calibrated at the default config)

# --- Funnel (probabilities are logistic in the true affinity) -----------------------
CART_INTERCEPT, CART_SLOPE = -3.5, 1.0
BUY_INTERCEPT, BUY_SLOPE = -0.8, 0.6
REMOVE_SHARE = 0.4  # of carted, unbought items
OWNED_ONE_OFF_FACTOR = 0.05  # who owns a dress rarely buys the same dress again
CLICK_INTERCEPT, CLICK_SLOPE = -2.0, 1.2  # of a shown recommendation, before position bias
MAX_SHOWN = 10  # recommendations shown to a visiting user

# --- Replenishment of consumables ---------------------------------------------------
REPLENISH_READY = 0.8  # a consumable can be bought again after 80% of its cycle...
REPLENISH_HAZARD = 0.15  # ...with this daily chance, times the user's loyalty to the item
LOYALTY_INTERCEPT = 1.0
REPLENISH_EVENTS = 3  # view, add_to_cart, purchase
# Above this many candidates a choice is drawn from a sample of them (see _choose):
# the exact draw costs views x candidates, 40 s a day at 50k items.
EXACT_CHOICE_CANDIDATES = 1024
CANDIDATE_SAMPLE = 128


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _sample_rows(weights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One column index per row, drawn with probability proportional to the row's weights."""
    cdf = np.cumsum(weights, axis=1)
    u = rng.random(len(weights))[:, None] * cdf[:, -1:]
    return np.minimum((cdf <= u).sum(axis=1), weights.shape[1] - 1)


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez_compressed`` with fixed zip timestamps, so the same state gives the same bytes."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, value in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            with zf.open(info, "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.asanyarray(value), allow_pickle=False)


@dataclass(frozen=True)
class ShopConfig:
    """Everything that determines a synthetic shop; equal configs give identical files."""

    seed: int = 42
    start_date: date = date(2026, 9, 1)
    n_days: int = 60
    n_users: int = 5000  # final number: ~60% exist at the start, the rest sign up during the period
    n_items: int = 2000  # final number: ~80% at the start, the rest launch during the period
    events_per_day: int = 16000  # average before weekly seasonality and user growth
    dirt_rate: float = 0.01  # fraction of event lines that are defects
    initial_user_share: float = 0.6
    initial_item_share: float = 0.8
    weekend_uplift: float = 1.3  # Saturday and Sunday traffic relative to weekdays
    out_of_stock_share: float = 0.05
    popularity_weight: float = 0.8  # item choice is proportional to popularity ** this...
    taste_weight: float = 1.5  # ...times exp(this * within-category taste match)

    def __post_init__(self) -> None:
        if self.n_days < 1 or self.n_users < 1 or self.n_items < 1 or self.events_per_day < 0:
            raise ValueError(f"n_days, n_users and n_items must be >= 1 and events_per_day >= 0: {self}")
        if not 0.0 <= self.dirt_rate < 0.5:
            raise ValueError(f"dirt_rate must be in [0, 0.5): {self.dirt_rate}")
        if not (0.0 <= self.initial_user_share <= 1.0 and 0.0 <= self.initial_item_share <= 1.0):
            raise ValueError("initial_user_share and initial_item_share must be in [0, 1]")

    @property
    def days(self) -> list[date]:
        return [self.start_date + timedelta(days=i) for i in range(self.n_days)]

    def scaled(self, scale: float) -> ShopConfig:
        """The same shop ``scale`` times bigger: users, items and daily events."""
        if scale <= 0:
            raise ValueError(f"scale must be > 0: {scale}")
        return replace(
            self,
            n_users=max(1, round(self.n_users * scale)),
            n_items=max(1, round(self.n_items * scale)),
            events_per_day=max(1, round(self.events_per_day * scale)),
        )

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "start_date": self.start_date.isoformat()}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ShopConfig:
        values = json.loads(text)
        return cls(**{**values, "start_date": date.fromisoformat(values["start_date"])})


def _arrival_days(
    rng: np.random.Generator, n: int, initial_share: float, config: ShopConfig, history_days: int
) -> np.ndarray:
    """Sorted day ordinals at which ``n`` users/items appear: ``initial_share`` of them during
    the ``history_days`` before the start, the rest on the days of the period after the first."""
    start = config.start_date.toordinal()
    n_initial = round(n * initial_share)
    before = start - rng.integers(1, history_days + 1, size=n_initial)
    during = start + rng.integers(min(1, config.n_days - 1), config.n_days, size=n - n_initial)
    return np.sort(np.concatenate([before, during]))


@dataclass
class _Part:
    """Sessions and the items viewed in them, from one source of traffic, with the random
    draws their events need (drawn from that source's own stream)."""

    s_user: np.ndarray
    s_start: np.ndarray  # second of the day
    s_search: np.ndarray  # starts with a search (browse sessions only)
    s_query_variant: np.ndarray
    s_checkout_delay: np.ndarray
    v_sess: np.ndarray  # index into this part's sessions (recommended views: into all the day's)
    v_item: np.ndarray
    v_kind: int
    v_gap: np.ndarray
    v_cart_delay: np.ndarray
    v_u: np.ndarray  # (n_views, 3) uniforms for cart, purchase and remove decisions
    v_quantity: np.ndarray

    @classmethod
    def empty(cls) -> _Part:
        z = np.zeros(0, dtype=np.int64)
        return cls(z, z, z.astype(bool), z, z, z, z, BROWSED, z, z, np.zeros((0, 3)), z)


class SyntheticShop:
    """A simulated shop: its world (catalogue, users, latent tastes) and its daily behaviour.

    Days must be simulated in increasing order: repeat purchases depend on what was
    bought before. To branch a simulation (e.g. with and without recommendations), save
    the state and load it twice.
    """

    # The arrays that define the world and the simulation state (what save_state writes).
    _STATE_ARRAYS = (
        "item_category", "item_brand", "item_attr1", "item_attr2", "item_noun", "item_lead", "item_detail",
        "item_price", "item_band", "item_popularity", "item_launch", "item_in_stock", "item_factors",
        "user_signup", "user_age", "user_gender", "user_country", "user_consent", "user_activity",
        "category_taste", "brand_taste", "user_price_band", "user_factors",
        "bought_user", "bought_item", "bought_day",
    )  # fmt: skip

    categories: tuple[str, ...] = tuple(c.name for c in CATEGORIES)
    items: pd.DataFrame
    users: pd.DataFrame
    category_taste: np.ndarray  # (n_users, n_categories) true share of each category in a user's taste

    def __init__(self, config: ShopConfig):
        self.config = config
        self.last_simulated_day: date | None = None
        self._build_catalogue(self._world_rng(0))
        self._build_users(self._world_rng(1))
        self._derive()
        self._seed_purchases(self._world_rng(2))

    def _world_rng(self, part: int) -> np.random.Generator:
        return np.random.default_rng([self.config.seed, WORLD_DAY, part])

    def _day_rng(self, day: date, stream: int) -> np.random.Generator:
        return np.random.default_rng([self.config.seed, day.toordinal(), stream])

    # --- the world -----------------------------------------------------------------

    def _build_catalogue(self, rng: np.random.Generator) -> None:
        n, n_cat, n_brands = self.config.n_items, len(CATEGORIES), len(BRANDS)
        # Item ids follow launch order: the newest items have the highest ids.
        self.item_launch = _arrival_days(rng, n, self.config.initial_item_share, self.config, history_days=730)
        # Each brand has a home category and sometimes sells in one or two more.
        brand_in_category = rng.random((n_brands, n_cat)) < 0.08
        brand_in_category[np.arange(n_brands), rng.permutation(n_brands) % n_cat] = True
        brand_size = rng.permutation(1.0 / np.arange(1, n_brands + 1) ** 0.7)
        brand_tier = np.exp(rng.normal(0.0, 0.3, n_brands))  # premium brands cost more everywhere

        self.item_category = rng.choice(n_cat, size=n, p=[c.share for c in CATEGORIES])
        self.item_brand = np.zeros(n, dtype=np.int64)
        for c in range(n_cat):
            members = np.flatnonzero(self.item_category == c)
            sellers = np.flatnonzero(brand_in_category[:, c])
            weights = brand_size[sellers] / brand_size[sellers].sum()
            self.item_brand[members] = rng.choice(sellers, size=len(members), p=weights)

        def word_index(words_per_category: list[int]) -> np.ndarray:
            return rng.integers(0, np.array(words_per_category)[self.item_category])

        self.item_attr1 = word_index([len(c.attr1) for c in CATEGORIES])
        self.item_attr2 = word_index([len(c.attr2) for c in CATEGORIES])
        self.item_noun = word_index([len(c.nouns) for c in CATEGORIES])
        self.item_lead = word_index([len(c.leads) for c in CATEGORIES])
        detail = word_index([len(c.details) for c in CATEGORIES])
        self.item_detail = np.where(rng.random(n) < 0.25, detail, -1)  # -1: no ", detail" ending

        median = np.array([c.median_price for c in CATEGORIES])[self.item_category]
        sigma = np.array([c.price_sigma for c in CATEGORIES])[self.item_category]
        raw = median * brand_tier[self.item_brand] * np.exp(rng.normal(0.0, 1.0, n) * sigma)
        self.item_price = np.maximum(np.ceil(raw) - 0.01, 0.99).round(2)
        # Price band = tertile of the price within the item's category.
        within = pd.Series(self.item_price).groupby(self.item_category).rank(pct=True, method="first")
        self.item_band = (np.ceil(within.to_numpy() * 3) - 1).astype(np.int64)

        popularity = 1.0 / rng.permutation(np.arange(1, n + 1)) ** ZIPF_EXPONENT
        self.item_popularity = popularity / popularity.sum()
        self.item_in_stock = rng.random(n) >= self.config.out_of_stock_share
        self.item_factors = rng.normal(0.0, 1.0, (n, N_FACTORS))

    def _build_users(self, rng: np.random.Generator) -> None:
        n, n_cat = self.config.n_users, len(CATEGORIES)
        self.user_signup = _arrival_days(rng, n, self.config.initial_user_share, self.config, history_days=1095)
        self.user_age = rng.choice(len(AGE_BANDS), size=n, p=AGE_SHARES)
        self.user_gender = rng.choice(len(GENDERS), size=n, p=GENDER_SHARES)
        self.user_country = rng.choice(len(COUNTRIES), size=n, p=COUNTRY_SHARES)
        self.user_consent = rng.random(n) < 0.6
        self.user_activity = rng.lognormal(0.0, 1.0, n)  # heavy users visit far more often

        # Demographics shift the prior of category tastes a little: user features help cold start.
        logits = (
            np.log([c.share for c in CATEGORIES])
            + rng.normal(0.0, DEMOGRAPHIC_SD["gender"], (len(GENDERS), n_cat))[self.user_gender]
            + rng.normal(0.0, DEMOGRAPHIC_SD["age"], (len(AGE_BANDS), n_cat))[self.user_age]
            + rng.normal(0.0, DEMOGRAPHIC_SD["country"], (len(COUNTRIES), n_cat))[self.user_country]
        )
        prior = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        gammas = rng.gamma(TASTE_CONCENTRATION * prior) + 1e-12
        self.category_taste = gammas / gammas.sum(axis=1, keepdims=True)
        self.brand_taste = rng.normal(0.0, BRAND_TASTE_SD, (n, len(BRANDS)))
        self.user_price_band = _sample_rows(np.array(PRICE_BAND_BY_AGE)[self.user_age], rng)
        self.user_factors = rng.normal(0.0, 1.0, (n, N_FACTORS))

    def _seed_purchases(self, rng: np.random.Generator) -> None:
        """Consumables that users who exist before the start already buy regularly."""
        self.bought_user = self.bought_item = self.bought_day = np.zeros(0, dtype=np.int64)
        start = self.config.start_date.toordinal()
        existing = np.flatnonzero(self.user_signup < start)
        launched = self.item_launch < start
        for c, category in enumerate(CATEGORIES):
            candidates = np.flatnonzero(launched & (self.item_category == c))
            if not category.repurchase_days or not len(candidates):
                continue
            buyers = existing[rng.random(len(existing)) < np.minimum(1.5 * self.category_taste[existing, c], 0.9)]
            items = candidates[self._choose(buyers, candidates, start - 1, rng)]
            self._record_purchases(buyers, items, start - rng.integers(1, category.repurchase_days + 1, len(buyers)))

    def _record_purchases(self, users: np.ndarray, items: np.ndarray, days: np.ndarray) -> None:
        """Merge purchases into ``bought_*``: every (user, item) ever bought with its last
        purchase day, sorted by user then item (consumables come back, one-offs are owned)."""
        n_items = self.config.n_items
        keys = np.concatenate([self.bought_user * n_items + self.bought_item, users * n_items + items])
        last = pd.Series(np.concatenate([self.bought_day, days])).groupby(keys).max()
        self.bought_user, self.bought_item = np.divmod(last.index.to_numpy(dtype=np.int64), n_items)
        self.bought_day = last.to_numpy(dtype=np.int64)

    def _derive(self) -> None:
        """Everything computed from the state arrays: ids, text, the public frames."""
        cfg = self.config
        self.item_ids = np.array([f"I{i:0{max(5, len(str(cfg.n_items)))}d}" for i in range(cfg.n_items)], dtype=object)
        self.user_ids = np.array([f"U{i:0{max(6, len(str(cfg.n_users)))}d}" for i in range(cfg.n_users)], dtype=object)
        self._item_index = pd.Index(self.item_ids)
        self._user_index = pd.Index(self.user_ids)
        self._repurchase_days = np.array([c.repurchase_days for c in CATEGORIES])
        self._category_share = np.array([c.share for c in CATEGORIES])

        def words(attr: str, index: np.ndarray) -> pd.Series:
            table = [getattr(c, attr) for c in CATEGORIES]
            return pd.Series([table[c][i] for c, i in zip(self.item_category, index)], dtype=object)

        attr1, attr2 = words("attr1", self.item_attr1), words("attr2", self.item_attr2)
        noun, lead = words("nouns", self.item_noun), words("leads", self.item_lead)
        has_detail = self.item_detail >= 0
        detail = words("details", np.where(has_detail, self.item_detail, 0)).where(has_detail, "")
        brand = pd.Series(np.array(BRANDS, dtype=object)[self.item_brand])
        title = (brand + " " + attr1 + " " + attr2 + " " + noun).str.title().str.replace("'S", "'s")
        description = lead + " " + attr1 + " " + attr2 + " " + noun + " by " + brand
        description = description.where(~has_detail, description + ", " + detail)
        # What a shopper looking for the item might type.
        self._queries = np.stack(
            [attr1 + " " + attr2 + " " + noun, attr2 + " " + noun, attr1 + " " + noun, brand.str.lower() + " " + noun],
            axis=1,
        ).astype(object)

        self.items = pd.DataFrame(
            {
                "item_id": self.item_ids,
                "title": title,
                "category": np.array(self.categories, dtype=object)[self.item_category],
                "brand": brand,
                "price": self.item_price,
                "description": description,
                "in_stock": self.item_in_stock,
                "launch_date": [date.fromordinal(int(d)) for d in self.item_launch],
                "price_band": np.array(PRICE_BANDS, dtype=object)[self.item_band],
                "popularity": self.item_popularity,
            }
        )
        self.users = pd.DataFrame(
            {
                "user_id": self.user_ids,
                "signup_date": [date.fromordinal(int(d)) for d in self.user_signup],
                "age_band": np.array(AGE_BANDS, dtype=object)[self.user_age],
                "gender": np.array(GENDERS, dtype=object)[self.user_gender],
                "country": np.array(COUNTRIES, dtype=object)[self.user_country],
                "marketing_consent": self.user_consent,
                "activity": self.user_activity,
                "preferred_price_band": np.array(PRICE_BANDS, dtype=object)[self.user_price_band],
                "top_category": np.array(self.categories, dtype=object)[self.category_taste.argmax(axis=1)],
            }
        )
        # Traffic grows with the user base; normalised so the period averages events_per_day.
        period = np.array([d.toordinal() for d in cfg.days])
        signed_up = np.searchsorted(self.user_signup, period, side="right")
        self._mean_signed_up = max(float(signed_up.mean()), 1.0)

    @property
    def purchase_history(self) -> pd.DataFrame:
        """Every (user, item) bought so far with its last purchase day; before any day is
        simulated, the consumables that existing users already buy regularly."""
        return pd.DataFrame(
            {
                "user_id": self.user_ids[self.bought_user],
                "item_id": self.item_ids[self.bought_item],
                "last_purchase": [date.fromordinal(int(d)) for d in self.bought_day],
            }
        )

    # --- tastes --------------------------------------------------------------------

    def _within_matrix(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Taste match of users (rows) for items (columns) beyond the category: brand,
        price band and latent factors. einsum rather than a BLAS matmul, whose last bits
        can depend on the BLAS kernel and thread count: the files must not."""
        latent = np.einsum("uk,ik->ui", self.user_factors[users], self.item_factors[items])
        return (
            self.brand_taste[users][:, self.item_brand[items]]
            + PRICE_FIT[self.user_price_band[users]][:, self.item_band[items]]
            + LATENT_WEIGHT * latent / np.sqrt(N_FACTORS)
        )

    def _affinity_pairs(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """True affinity of each (user, item) pair; see :meth:`affinity`."""
        latent = np.einsum("ik,ik->i", self.user_factors[users], self.item_factors[items])
        return (
            CATEGORY_WEIGHT * np.log(self.category_taste[users, self.item_category[items]] + CATEGORY_FLOOR)
            + self.brand_taste[users, self.item_brand[items]]
            + PRICE_FIT[self.user_price_band[users], self.item_band[items]]
            + LATENT_WEIGHT * latent / np.sqrt(N_FACTORS)
        )

    def affinity(self, user_ids, item_ids) -> np.ndarray:
        """The true latent utility of each user (rows) for each item (columns).

        Purchases and clicks are logistic in it; the popularity that also drives views
        is not part of it. Mostly in [-4.5, 1.5] (median about -1.6): a category the user
        ignores costs about -1.9, their favourite about -0.25, and brand, price band and
        latent factors add about N(0, 1).
        """
        users = self._positions(self._user_index, user_ids, "user")
        items = self._positions(self._item_index, item_ids, "item")
        taste = self.category_taste[users][:, self.item_category[items]]
        return CATEGORY_WEIGHT * np.log(taste + CATEGORY_FLOOR) + self._within_matrix(users, items)

    @staticmethod
    def _positions(index: pd.Index, ids, what: str) -> np.ndarray:
        positions = index.get_indexer(pd.Index(np.asarray(ids, dtype=object)))
        if (positions < 0).any():
            unknown = np.asarray(ids, dtype=object)[positions < 0][:5]
            raise KeyError(f"unknown {what} id(s): {', '.join(map(str, unknown))}")
        return positions

    def _effective_popularity(self, day: int) -> np.ndarray:
        """Base popularity with a fading boost for items launched in the last weeks."""
        age = np.maximum(day - self.item_launch, 0)
        return self.item_popularity * (1.0 + NOVELTY_BOOST * np.exp(-age / NOVELTY_DAYS))

    def _choose(self, users: np.ndarray, candidates: np.ndarray, day: int, rng: np.random.Generator) -> np.ndarray:
        """For each user, the position in ``candidates`` of one item drawn with probability
        proportional to popularity^a * exp(b * taste match) (Gumbel-max trick)."""
        if not len(users):
            return np.zeros(0, dtype=np.int64)
        cfg = self.config
        if len(candidates) > EXACT_CHOICE_CANDIDATES:
            return self._choose_sampled(users, candidates, day, rng)
        scores = cfg.popularity_weight * np.log(self._effective_popularity(day)[candidates])[None, :]
        scores = scores + cfg.taste_weight * self._within_matrix(users, candidates)
        return np.argmax(scores + rng.gumbel(size=scores.shape), axis=1)

    def _choose_sampled(
        self, users: np.ndarray, candidates: np.ndarray, day: int, rng: np.random.Generator
    ) -> np.ndarray:
        """The same choice for large catalogues by sampling-importance-resampling: draw
        CANDIDATE_SAMPLE proposals per user in proportion to popularity^a, then pick one
        with probability proportional to exp(b * taste match). Costs users x sample
        instead of users x candidates; the draw tends to the exact one as the sample grows."""
        cfg = self.config
        proposal = self._effective_popularity(day)[candidates] ** cfg.popularity_weight
        cdf = np.cumsum(proposal)
        draws = rng.random((len(users), CANDIDATE_SAMPLE)) * cdf[-1]
        picked = np.minimum(np.searchsorted(cdf, draws, side="right"), len(candidates) - 1)
        rows = np.repeat(users, CANDIDATE_SAMPLE)
        items = candidates[picked.ravel()]
        latent = np.einsum("ik,ik->i", self.user_factors[rows], self.item_factors[items])
        within = (
            self.brand_taste[rows, self.item_brand[items]]
            + PRICE_FIT[self.user_price_band[rows], self.item_band[items]]
            + LATENT_WEIGHT * latent / np.sqrt(N_FACTORS)
        ).reshape(picked.shape)
        best = np.argmax(cfg.taste_weight * within + rng.gumbel(size=picked.shape), axis=1)
        return picked[np.arange(len(users)), best]

    # --- one day -------------------------------------------------------------------

    def expected_events(self, day: date) -> float:
        """The day's traffic target: events_per_day x weekly seasonality x user-base growth."""
        weekly = self.config.weekend_uplift if day.weekday() >= 5 else 1.0
        signed_up = np.searchsorted(self.user_signup, day.toordinal(), side="right")
        return self.config.events_per_day * weekly * signed_up / self._mean_signed_up

    def _session_starts(self, n: int, rng: np.random.Generator) -> np.ndarray:
        hours = rng.choice(24, size=n, p=np.array(HOURLY_TRAFFIC) / sum(HOURLY_TRAFFIC))
        return hours * 3600 + rng.integers(0, 3600, size=n)

    def _view_draws(self, items: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """The per-view random draws of the funnel and of event timing."""
        n = len(items)
        consumable = self._repurchase_days[self.item_category[items]] > 0
        quantity = np.where(consumable, np.minimum(rng.geometric(0.55, n), 4), 1 + (rng.random(n) < 0.07))
        return {
            "v_gap": MIN_GAP_SECONDS + rng.exponential(MEAN_GAP_SECONDS, n).astype(np.int64),
            "v_cart_delay": 3 + rng.exponential(20.0, n).astype(np.int64),
            "v_u": rng.random((n, 3)),
            "v_quantity": quantity.astype(np.int64),
        }

    def _browse(self, day: date, n_sessions: int, rng: np.random.Generator) -> _Part:
        """Organic sessions: active users view items of the categories they like."""
        d = day.toordinal()
        eligible_users = np.flatnonzero(self.user_signup <= d)
        eligible_items = self.item_launch <= d
        if not len(eligible_users) or not eligible_items.any() or n_sessions == 0:
            return _Part.empty()
        weights = self.user_activity[eligible_users]
        s_user = rng.choice(eligible_users, size=n_sessions, p=weights / weights.sum())
        s_start = self._session_starts(n_sessions, rng)
        s_search = rng.random(n_sessions) < SEARCH_SESSION_SHARE
        s_query_variant = rng.integers(0, self._queries.shape[1], size=n_sessions)
        s_checkout_delay = 30 + rng.integers(0, 90, size=n_sessions)
        v_sess = np.repeat(np.arange(n_sessions), 1 + rng.poisson(MEAN_EXTRA_VIEWS, n_sessions))

        # A session has an intent category; most views stay in it, some wander.
        has_items = np.bincount(self.item_category[eligible_items], minlength=len(CATEGORIES)) > 0
        prefs = ((1 - EXPLORATION) * self.category_taste + EXPLORATION * self._category_share) * has_items
        intent = _sample_rows(prefs[s_user], rng)
        wander = _sample_rows(prefs[s_user[v_sess]], rng)
        v_category = np.where(rng.random(len(v_sess)) < SESSION_FOCUS, intent[v_sess], wander)

        v_item = np.zeros(len(v_sess), dtype=np.int64)
        for c in np.flatnonzero(has_items):
            views = np.flatnonzero(v_category == c)
            candidates = np.flatnonzero(eligible_items & (self.item_category == c))
            v_item[views] = candidates[self._choose(s_user[v_sess[views]], candidates, d, rng)]
        return _Part(
            s_user, s_start, s_search, s_query_variant, s_checkout_delay,
            v_sess, v_item, BROWSED, **self._view_draws(v_item, rng),
        )  # fmt: skip

    def _replenish(self, day: date, rng: np.random.Generator) -> _Part:
        """Users coming back for consumables they buy regularly, one session per user."""
        cycle = self._repurchase_days[self.item_category[self.bought_item]]
        ready = (cycle > 0) & (day.toordinal() - self.bought_day >= REPLENISH_READY * cycle)
        loyalty = _sigmoid(LOYALTY_INTERCEPT + self._affinity_pairs(self.bought_user, self.bought_item))
        p = REPLENISH_HAZARD * ready * loyalty * self.item_in_stock[self.bought_item]
        hit = np.flatnonzero(rng.random(len(p)) < p)
        s_user, v_sess = np.unique(self.bought_user[hit], return_inverse=True)
        n = len(s_user)
        v_item = self.bought_item[hit]
        return _Part(
            s_user, self._session_starts(n, rng), np.zeros(n, dtype=bool), np.zeros(n, dtype=np.int64),
            30 + rng.integers(0, 90, size=n), v_sess, v_item, REPLENISHED, **self._view_draws(v_item, rng),
        )  # fmt: skip

    def _recommendation_part(
        self, day: date, recommendations: pd.DataFrame, s_user: np.ndarray, s_start: np.ndarray,
        rng: np.random.Generator,
    ) -> tuple[tuple[np.ndarray, np.ndarray], _Part]:
        """Show each visiting user their recommendations in their first session of the day
        (``s_user``, ``s_start``: every session of the day).

        Returns the impressions (sessions, items) and the clicked ones as views of those
        sessions; clicks are logistic in the true affinity, damped by position.
        """
        recs = recommendations[["user_id", "item_id", "rank"]]
        users = self._positions(self._user_index, recs["user_id"], "user")
        items = self._positions(self._item_index, recs["item_id"], "item")
        shown = pd.DataFrame({"user": users, "item": items, "rank": recs["rank"].to_numpy()})
        shown = shown[self.item_launch[shown["item"].to_numpy()] <= day.toordinal()]
        shown = shown.sort_values(["user", "rank", "item"], kind="stable").drop_duplicates(["user", "item"])
        shown = shown[shown.groupby("user").cumcount() < MAX_SHOWN]

        # Each visiting user's first session of the day.
        order = np.lexsort((s_start, s_user))
        first_users, first_at = np.unique(s_user[order], return_index=True)
        session_of_user = np.full(self.config.n_users, -1)
        session_of_user[first_users] = order[first_at]
        sess = session_of_user[shown["user"].to_numpy()]
        visiting = sess >= 0
        sess, item = sess[visiting], shown["item"].to_numpy()[visiting]
        rank = shown["rank"].to_numpy()[visiting].astype(float)

        position = 1.0 / np.log2(np.maximum(rank, 1.0) + 1.0)
        p_click = _sigmoid(CLICK_INTERCEPT + CLICK_SLOPE * self._affinity_pairs(s_user[sess], item)) * position
        clicked = rng.random(len(sess)) < p_click
        part = replace(
            _Part.empty(), v_sess=sess[clicked], v_item=item[clicked], v_kind=RECOMMENDED,
            **self._view_draws(item[clicked], rng),
        )  # fmt: skip
        return (sess, item), part

    def simulate_day(self, day: date, recommendations: pd.DataFrame | None = None) -> pd.DataFrame:
        """Clean canonical events of one day (no dirt), sorted by event_ts.

        ``recommendations`` (columns user_id, item_id, rank) are shown to every user who
        visits today, at the start of their first session: an ``impression`` per item
        (the 10 best ranked that have launched), then a ``click`` and a ``view`` (after
        the session's other views) with a probability logistic in the true affinity and
        damped by position (1 / log2(rank + 1)); clicked items enter the same
        cart/purchase funnel as browsed ones. Unknown ids raise KeyError.

        Columns: user_id, item_id (NaN for searches), event_type, event_ts (UTC),
        quantity, price (NaN for searches), session_id, search_query (NaN unless search).
        """
        if self.last_simulated_day is not None and day <= self.last_simulated_day:
            raise ValueError(f"{day} is not after the last simulated day {self.last_simulated_day}")
        replenish = self._replenish(day, self._day_rng(day, REPLENISH_STREAM))
        browse_rng = self._day_rng(day, BROWSE_STREAM)
        target = max(self.expected_events(day) - REPLENISH_EVENTS * len(replenish.v_item), 0.0)
        browse = self._browse(day, int(browse_rng.poisson(target / EVENTS_PER_SESSION)), browse_rng)
        impressions = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
        recommended = _Part.empty()
        s_user = np.concatenate([browse.s_user, replenish.s_user])
        if recommendations is not None and len(recommendations) and len(s_user):
            s_start = np.concatenate([browse.s_start, replenish.s_start])
            impressions, recommended = self._recommendation_part(
                day, recommendations, s_user, s_start, self._day_rng(day, RECS_STREAM)
            )
        events, session_starts = self._events(browse, recommended, replenish, impressions)
        bought = events["type"] == PURCHASE
        self._record_purchases(events["user"][bought], events["item"][bought], np.full(bought.sum(), day.toordinal()))
        self.last_simulated_day = day
        return self._frame(day, events, session_starts)

    def _events(
        self, browse: _Part, recommended: _Part, replenish: _Part, impressions: tuple[np.ndarray, np.ndarray]
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Turn sessions and views into timed events (arrays of equal length, sorted by
        time), and the start second of every session."""
        # Sessions: browse sessions first, then replenishment ones; recommended views
        # already index into both.
        n_browse = len(browse.s_user)
        s_user = np.concatenate([browse.s_user, replenish.s_user])
        s_start = np.concatenate([browse.s_start, replenish.s_start])
        s_checkout_delay = np.concatenate([browse.s_checkout_delay, replenish.s_checkout_delay])

        parts = (browse, replenish, recommended)
        offsets = (0, n_browse, 0)
        cat = {
            name: np.concatenate([getattr(p, name) for p in parts])
            for name in ("v_item", "v_gap", "v_cart_delay", "v_u", "v_quantity")
        }
        v_sess = np.concatenate([p.v_sess + off for p, off in zip(parts, offsets)])
        v_kind = np.concatenate([np.full(len(p.v_item), p.v_kind) for p in parts])
        # Within a session, views keep the order of their kinds.
        order = np.lexsort((np.arange(len(v_sess)), v_kind, v_sess))
        v_sess, v_kind = v_sess[order], v_kind[order]
        v = {name: a[order] for name, a in cat.items()}
        v_item, v_user = v["v_item"], s_user[v_sess]

        # Time: views follow each other by a gap; carts shortly after their view; removals
        # and the checkout after the session's last action.
        cumulative = np.cumsum(v["v_gap"])
        first = np.r_[0, np.flatnonzero(np.diff(v_sess)) + 1] if len(v_sess) else np.zeros(0, dtype=np.int64)
        counts = np.diff(np.r_[first, len(v_sess)])
        view_ts = s_start[v_sess] + cumulative - np.repeat(cumulative[first] - v["v_gap"][first], counts)
        cart_ts = view_ts + v["v_cart_delay"]
        session_end = np.repeat(np.maximum.reduceat(cart_ts, first) if len(first) else cart_ts, counts)

        # Funnel, driven by the true affinity; replenishments are decided purchases.
        affinity = self._affinity_pairs(v_user, v_item)
        forced = v_kind == REPLENISHED
        p_cart = np.where(forced, 1.0, _sigmoid(CART_INTERCEPT + CART_SLOPE * affinity)) * self.item_in_stock[v_item]
        owned = self._bought_before(v_user, v_item) & (self._repurchase_days[self.item_category[v_item]] == 0)
        p_cart = np.where(owned, OWNED_ONE_OFF_FACTOR * p_cart, p_cart)
        carted = np.flatnonzero(v["v_u"][:, 0] < p_cart)
        # An item goes into a session's cart once (its first carted view).
        _, first_cart = np.unique(v_sess[carted] * self.config.n_items + v_item[carted], return_index=True)
        cart = np.zeros(len(v_sess), dtype=bool)
        cart[carted[first_cart]] = True
        p_buy = np.where(forced, 1.0, _sigmoid(BUY_INTERCEPT + BUY_SLOPE * affinity))
        buy = cart & (v["v_u"][:, 1] < p_buy)
        remove = cart & ~buy & (v["v_u"][:, 2] < REMOVE_SHARE)

        rec_view = v_kind == RECOMMENDED
        imp_sess, imp_item = impressions
        searches = np.flatnonzero(browse.s_search)
        first_view = np.full(len(s_user), -1)
        first_view[v_sess[first]] = first
        search_items = v_item[first_view[searches]]
        query = self._queries[search_items, browse.s_query_variant[searches]]
        blocks = [  # (event type, session, item (-1: none), second of the day, quantity (None: 1), query)
            (SEARCH, searches, np.full(len(searches), -1), s_start[searches], None, query),
            (IMPRESSION, imp_sess, imp_item, s_start[imp_sess], None, None),
            (CLICK, v_sess[rec_view], v_item[rec_view], view_ts[rec_view] - 2, None, None),
            (VIEW, v_sess, v_item, view_ts, None, None),
            (CART, v_sess[cart], v_item[cart], cart_ts[cart], v["v_quantity"][cart], None),
            (REMOVE, v_sess[remove], v_item[remove], session_end[remove] + 10, v["v_quantity"][remove], None),
            (PURCHASE, v_sess[buy], v_item[buy],
             session_end[buy] + s_checkout_delay[v_sess[buy]], v["v_quantity"][buy], None),
        ]  # fmt: skip
        sizes = [len(b[1]) for b in blocks]
        events = {
            "type": np.repeat([b[0] for b in blocks], sizes),
            "session": np.concatenate([b[1] for b in blocks]),
            "item": np.concatenate([b[2] for b in blocks]),
            "second": np.concatenate([b[3] for b in blocks]),
            "quantity": np.concatenate([np.ones(n, np.int64) if b[4] is None else b[4] for b, n in zip(blocks, sizes)]),
            "query": np.concatenate([np.full(n, None) if b[5] is None else b[5] for b, n in zip(blocks, sizes)]),
        }
        # A day's file holds the day: sessions running past midnight are cut there.
        keep = events["second"] < 86400
        events = {name: a[keep] for name, a in events.items()}
        order = np.lexsort((events["item"], events["type"], events["session"], events["second"]))
        events = {name: a[order] for name, a in events.items()}
        events["user"] = s_user[events["session"]]
        return events, s_start

    def _bought_before(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Whether each (user, item) pair was bought on an earlier day."""
        known = self.bought_user * self.config.n_items + self.bought_item  # sorted
        keys = users * self.config.n_items + items
        at = np.minimum(np.searchsorted(known, keys), max(len(known) - 1, 0))
        return (known[at] == keys) if len(known) else np.zeros(len(keys), dtype=bool)

    def _frame(self, day: date, events: dict[str, np.ndarray], session_starts: np.ndarray) -> pd.DataFrame:
        """The canonical events frame of one day."""
        # Session ids are numbered in order of their start time.
        number = np.empty(len(session_starts), dtype=np.int64)
        number[np.argsort(session_starts, kind="stable")] = np.arange(1, len(session_starts) + 1)
        session_ids = np.strings.add(f"S{day:%Y%m%d}-", np.strings.zfill(number.astype(str), 6))
        item = events["item"]
        has_item = item >= 0
        item_ids = np.where(has_item, self.item_ids[np.maximum(item, 0)], None)
        price = np.where(has_item, self.item_price[np.maximum(item, 0)], np.nan)
        midnight = pd.Timestamp(day).value // 10**9
        return pd.DataFrame(
            {
                "user_id": self.user_ids[events["user"]],
                "item_id": pd.Series(item_ids, dtype="str"),
                "event_type": np.array(EVENT_TYPES, dtype=object)[events["type"]],
                "event_ts": pd.to_datetime(midnight + events["second"], unit="s", utc=True),
                "quantity": events["quantity"],
                "price": price,
                "session_id": session_ids[events["session"]].astype(object),
                "search_query": pd.Series(events["query"], dtype="str"),
            },
            columns=list(EVENT_COLUMNS),
        )

    # --- persistence ---------------------------------------------------------------

    def save_state(self, path: str | Path) -> Path:
        """Write the world and the simulation state (npz): a later run can continue from it."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        last = self.last_simulated_day.toordinal() if self.last_simulated_day else -1
        arrays = {name: getattr(self, name) for name in self._STATE_ARRAYS}
        _write_npz(path, {"config": np.array(self.config.to_json()), "last_simulated_day": np.array(last), **arrays})
        return path

    @classmethod
    def load_state(cls, path: str | Path) -> SyntheticShop:
        """The shop exactly as ``save_state`` left it."""
        with np.load(Path(path), allow_pickle=False) as data:
            shop = cls.__new__(cls)
            shop.config = ShopConfig.from_json(str(data["config"]))
            last = int(data["last_simulated_day"])
            shop.last_simulated_day = date.fromordinal(last) if last > 0 else None
            for name in cls._STATE_ARRAYS:
                setattr(shop, name, data[name])
        shop._derive()
        return shop


@dataclass
class GenerationReport:
    """What generate_landing_zone wrote."""

    n_days: int
    n_events_written: int  # event lines (without headers), defects included
    n_defects: dict[str, int]  # by kind, every kind listed
    paths: dict[str, Path]  # events (folder), items, users, defects, state
    seconds: float
    event_files: list[Path] = field(default_factory=list)


def _events_text(frame: pd.DataFrame) -> list[str]:
    """The data lines of an events frame as written to the landing file."""
    text = frame.to_csv(
        index=False, header=False, lineterminator="\n", date_format=TIMESTAMP_FORMAT,
        float_format="%.2f", na_rep="", quoting=csv.QUOTE_MINIMAL,
    )  # fmt: skip
    return text.split("\n")[:-1]


def _write_text(path: Path, header: tuple[str, ...], lines: list[str]) -> None:
    path.write_bytes(("\n".join([",".join(header), *lines]) + "\n").encode("utf-8"))


def write_day(
    shop: SyntheticShop,
    landing_dir: Path,
    day: date,
    recommendations: pd.DataFrame | None = None,
    messages: pd.DataFrame | None = None,
    columns: tuple[str, ...] = EVENT_COLUMNS,
) -> tuple[Path, int, list[tuple[int, str]]]:
    """Simulate ``day`` and write ``events/<day>.csv`` with its injected defects.

    ``messages``: the day's campaign message events (synthetic.messages), merged in by
    time; their purchases are the shop's purchases too (buy-again ground truth).
    ``columns``: the file's fields (:data:`TRACKED_EVENT_COLUMNS` for messages).
    Returns the file, its number of event lines and the ``(line, kind)`` of each defect.
    """
    frame = shop.simulate_day(day, recommendations)
    if messages is not None and len(messages):
        bought = messages[messages["event_type"] == "purchase"]
        users, items = shop._user_index.get_indexer(bought["user_id"]), shop._item_index.get_indexer(bought["item_id"])
        known = (users >= 0) & (items >= 0)
        shop._record_purchases(users[known], items[known], np.full(int(known.sum()), day.toordinal()))
        frame = pd.concat([frame, messages[list(columns)]], ignore_index=True)
        frame = frame.sort_values("event_ts", kind="stable").reset_index(drop=True)
    lines = _events_text(frame.reindex(columns=list(columns)))
    can_template = (frame["item_id"].notna() & frame["price"].notna()).to_numpy()
    lines, defects = inject_defects(lines, can_template, day, shop.config.dirt_rate, shop._day_rng(day, DIRT_STREAM))
    path = Path(landing_dir) / "events" / f"{day.isoformat()}.csv"
    _write_text(path, columns, lines)
    return path, len(lines), defects


_FIRST_NAMES = (
    "Olivia", "Amelia", "Isla", "Ava", "Mia", "Sophie", "Grace", "Emma", "Hannah", "Lena", "Clara", "Marie",
    "Lucia", "Julia", "Anna", "Zofia", "Freja", "Aoife", "Noah", "Oliver", "George", "Arthur", "Leo", "Jack",
    "Lukas", "Jonas", "Louis", "Gabriel", "Mateo", "Hugo", "Luca", "Jan", "Erik", "Sean", "Sam", "Alex",
)  # fmt: skip
_LAST_NAMES = (
    "Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Evans", "Patel", "Khan", "Murphy", "O'Brien",
    "Müller", "Schmidt", "Schneider", "Martin", "Bernard", "Dubois", "de Vries", "Jansen", "García", "López",
    "Rossi", "Russo", "Nowak", "Kowalski", "Andersson", "Johansson", "Kelly", "Walsh", "Miller", "Davis",
)  # fmt: skip
_STREETS = ("High", "Station", "Church", "Mill", "Park", "Victoria", "Green", "Manor", "Kings", "Queens", "Elm", "Oak")
_STREET_KINDS = ("Street", "Road", "Lane", "Avenue", "Close", "Way")
_POSTCODE_AREAS = ("AB", "B", "BS", "CF", "E", "EH", "G", "L", "LS", "M", "N", "NE", "OX", "S", "SE", "SW", "W")
_UNIT_LETTERS = tuple("ABDEFGHJLNPQRSTUWXYZ")


def direct_identifiers(config: ShopConfig, n_users: int) -> pd.DataFrame:
    """Made-up names, e-mails (example.com), phones (Ofcom's drama range), street
    addresses and UK-style postcodes for users 0..n-1, from their own random stream."""
    rng = np.random.default_rng([config.seed, WORLD_DAY, IDENTITY_PART])
    first = np.array(_FIRST_NAMES, dtype=object)[rng.integers(0, len(_FIRST_NAMES), n_users)]
    last = np.array(_LAST_NAMES, dtype=object)[rng.integers(0, len(_LAST_NAMES), n_users)]
    house = rng.integers(1, 200, n_users)
    street = np.array(_STREETS, dtype=object)[rng.integers(0, len(_STREETS), n_users)]
    kind = np.array(_STREET_KINDS, dtype=object)[rng.integers(0, len(_STREET_KINDS), n_users)]
    area = np.array(_POSTCODE_AREAS, dtype=object)[rng.integers(0, len(_POSTCODE_AREAS), n_users)]
    district, sector = rng.integers(1, 30, n_users), rng.integers(0, 10, n_users)
    units = np.array(_UNIT_LETTERS, dtype=object)[rng.integers(0, len(_UNIT_LETTERS), (n_users, 2))]
    phone = rng.integers(0, 1000, n_users)
    mail_number = rng.integers(1, 100, n_users)
    names = pd.Series(first) + " " + pd.Series(last)
    local = (pd.Series(first) + "." + pd.Series(last)).str.lower().str.replace(r"[^a-z.]", "", regex=True)
    return pd.DataFrame(
        {
            "full_name": names,
            "email": local + pd.Series(mail_number).astype(str) + "@example.com",
            "phone": "+44 7700 900" + pd.Series(phone).astype(str).str.zfill(3),
            "street_address": pd.Series(house).astype(str) + " " + pd.Series(street) + " " + pd.Series(kind),
            "postcode": pd.Series(area) + pd.Series(district).astype(str) + " " + pd.Series(sector).astype(str)
            + pd.Series(units[:, 0]) + pd.Series(units[:, 1]),
        }
    )


def write_snapshots(shop: SyntheticShop, landing_dir: Path, last: date) -> None:
    """The catalogue and user snapshots as of ``last``: items launched and users signed up by then."""
    landing_dir = Path(landing_dir)
    items = shop.items[shop.items["launch_date"] <= last]
    items = items.assign(in_stock=np.where(items["in_stock"], "true", "false"))
    items.to_csv(landing_dir / "items" / "items.csv", columns=list(ITEM_COLUMNS), index=False, lineterminator="\n",
                 float_format="%.2f")  # fmt: skip
    users = pd.concat([shop.users, direct_identifiers(shop.config, len(shop.users))], axis=1)
    users = users[users["signup_date"] <= last]
    users = users.assign(marketing_consent=np.where(users["marketing_consent"], "true", "false"))
    users.to_csv(landing_dir / "users" / "users.csv", columns=list(USER_COLUMNS), index=False, lineterminator="\n")


def generate_landing_zone(landing_dir: Path, config: ShopConfig = ShopConfig()) -> GenerationReport:
    """Simulate ``config.n_days`` days and write the landing zone under ``landing_dir``.

    Writes ``events/YYYY-MM-DD.csv`` (one per day, with injected defects),
    ``items/items.csv``, ``users/users.csv`` (snapshots as of the last day),
    ``_truth/defects.csv`` (file, line, kind of every defect) and ``_truth/state.npz``.
    Deterministic: the same config gives byte-identical files. Day files in
    ``events/`` that this config does not produce (left by an earlier, longer
    generation) are removed, so the folder and the ground truth always agree.
    """
    started = time.perf_counter()
    landing_dir = Path(landing_dir)
    paths = {
        "events": landing_dir / "events",
        "items": landing_dir / "items" / "items.csv",
        "users": landing_dir / "users" / "users.csv",
        "defects": landing_dir / "_truth" / "defects.csv",
        "state": landing_dir / "_truth" / "state.npz",
    }
    for p in (paths["events"], paths["items"].parent, paths["users"].parent, paths["defects"].parent):
        p.mkdir(parents=True, exist_ok=True)

    shop = SyntheticShop(config)
    truth: list[tuple[str, int, str]] = []
    event_files, n_lines = [], 0
    for day in config.days:
        path, lines, defects = write_day(shop, landing_dir, day)
        truth.extend((f"events/{path.name}", line, kind) for line, kind in defects)
        event_files.append(path)
        n_lines += lines
    for stale in sorted(set(paths["events"].glob("????-??-??.csv")) - set(event_files)):
        stale.unlink()
    write_snapshots(shop, landing_dir, config.days[-1])
    _write_text(paths["defects"], ("file", "line", "kind"), [f"{f},{line},{kind}" for f, line, kind in truth])
    shop.save_state(paths["state"])

    counts = {kind: 0 for kind in DEFECT_KINDS}
    for _, _, kind in truth:
        counts[kind] += 1
    return GenerationReport(
        n_days=config.n_days,
        n_events_written=n_lines,
        n_defects=counts,
        paths=paths,
        seconds=time.perf_counter() - started,
        event_files=event_files,
    )
