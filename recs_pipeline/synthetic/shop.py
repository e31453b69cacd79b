"""A seeded, deterministic synthetic online shop: the project's built-in demo data.

The shop has a catalogue (categories, brands, prices, descriptions, stock, launch
dates), users (signup, age band, gender, country, marketing consent) and hidden
*tastes*: each user loves a few categories, likes some brands and a price band. Daily
behaviour follows those tastes — sessions of views, add-to-carts and purchases whose
items are drawn with probability ``popularity^a x exp(b x affinity)`` — so a
recommender has a real, measurable signal over popularity. Consumables (coffee,
skincare, pet food...) are bought again, so "buy again" is a strong baseline too.

When the pipeline's lists are fed back (``simulate_day(day, recommendations)``),
visiting users see them (``impression`` events) and click and buy with a probability
driven by their *true* affinity for the shown item: a better model earns more clicks.

Everything is vectorised per day with numpy; the random stream of a day depends only
on the seed and the day, so the same config always writes byte-identical files.
"""

from __future__ import annotations

import csv
import io
import json
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

EVENT_COLUMNS = ["user_id", "item_id", "event_type", "event_ts", "quantity", "price", "session_id", "search_query"]
ITEM_COLUMNS = ["item_id", "title", "category", "brand", "price", "description", "in_stock", "launch_date"]
USER_COLUMNS = ["user_id", "signup_date", "age_band", "gender", "country", "marketing_consent"]
DEFECT_KINDS = (
    "duplicate",
    "missing_user_id",
    "unknown_event_type",
    "unparseable_timestamp",
    "future_timestamp",
    "negative_price",
    "unknown_item",
    "malformed_line",
)

# category -> (median price, repeat-purchase propensity, attribute words)
CATEGORIES: dict[str, tuple[float, float, tuple[str, ...]]] = {
    "coffee": (9.0, 0.45, ("arabica", "espresso", "roast", "beans", "decaf")),
    "tea": (6.0, 0.40, ("green", "herbal", "loose", "earl", "chai")),
    "skincare": (18.0, 0.35, ("moisturiser", "serum", "spf", "gentle", "vitamin")),
    "pet food": (22.0, 0.50, ("grain-free", "salmon", "chicken", "kibble", "senior")),
    "snacks": (4.0, 0.30, ("crunchy", "salted", "protein", "vegan", "chocolate")),
    "dresses": (45.0, 0.02, ("midi", "floral", "cotton", "wrap", "linen")),
    "shoes": (70.0, 0.02, ("leather", "running", "suede", "trail", "canvas")),
    "electronics": (120.0, 0.01, ("wireless", "bluetooth", "usb-c", "smart", "compact")),
    "books": (14.0, 0.03, ("thriller", "cookbook", "paperback", "fantasy", "history")),
    "toys": (25.0, 0.03, ("wooden", "puzzle", "plush", "building", "educational")),
    "kitchen": (30.0, 0.04, ("ceramic", "steel", "nonstick", "bamboo", "glass")),
    "garden": (28.0, 0.05, ("outdoor", "planter", "solar", "organic", "hose")),
}
BRAND_SYLLABLES = ("lu", "ma", "no", "ve", "ra", "ki", "so", "ta", "be", "lo", "mi", "zen", "or", "ka")
COUNTRIES = ("GB", "DE", "FR", "US", "NL", "ES", "IT", "PL", "SE", "IE")
COUNTRY_SHARES = (0.30, 0.16, 0.12, 0.12, 0.07, 0.07, 0.06, 0.04, 0.03, 0.03)
AGE_BANDS = ("18-24", "25-34", "35-44", "45-54", "55-64", "65+")
AGE_SHARES = (0.14, 0.27, 0.23, 0.17, 0.11, 0.08)
UNKNOWN_EVENT_TYPES = ("viewed", "wishlist", "PAGEVIEW", "purchased!")
BAD_TIMESTAMPS = ("not-a-date", "2026-13-45 25:61", "yesterday", "31/02/2026 10:00")


@dataclass(frozen=True)
class ShopConfig:
    seed: int = 42
    start_date: date = date(2026, 9, 1)
    n_days: int = 60
    n_users: int = 5000  # final number of users: ~60% exist at the start, the rest sign up over the period
    n_items: int = 2000  # final number of items: ~80% at the start, the rest launch over the period
    events_per_day: int = 16000  # average, before weekly seasonality (about 1M events for 60 days)
    dirt_rate: float = 0.01  # share of event lines that are defects
    n_brands: int = 40
    popularity_exponent: float = 0.6  # a in popularity^a
    taste_strength: float = 2.2  # b in exp(b x affinity)
    search_share: float = 0.25  # sessions that start with a search
    out_of_stock_share: float = 0.05

    def scaled(self, scale: float) -> "ShopConfig":
        """A bigger (or smaller) shop with the same behaviour."""
        return replace(
            self,
            n_users=max(20, int(round(self.n_users * scale))),
            n_items=max(20, int(round(self.n_items * scale))),
            events_per_day=max(50, int(round(self.events_per_day * scale))),
        )

    @property
    def end_date(self) -> date:
        return self.start_date + timedelta(days=self.n_days - 1)


@dataclass
class GenerationReport:
    n_days: int
    n_events_written: int
    n_defects: dict[str, int]
    paths: list[Path] = field(default_factory=list)
    seconds: float = 0.0


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


class SyntheticShop:
    """The catalogue, the users and their hidden tastes, and a day-by-day simulator."""

    def __init__(self, config: ShopConfig = ShopConfig()):
        self.config = config
        rng = np.random.default_rng([config.seed, 0])
        self._build_catalogue(rng)
        self._build_users(rng)
        # What each user bought so far (users x items counts): drives repeat purchases.
        self.purchases = sp.csr_matrix((config.n_users, config.n_items), dtype=np.float32)
        self.last_day: date | None = None
        sample_u = rng.integers(0, config.n_users, 400)
        sample_i = rng.integers(0, config.n_items, 400)
        raw = self._affinity_idx(sample_u[:, None], sample_i[None, :])
        self._aff_mean, self._aff_std = float(raw.mean()), float(raw.std() + 1e-9)

    # ------------------------------------------------------------------ set-up
    def _build_catalogue(self, rng: np.random.Generator) -> None:
        cfg = self.config
        names = list(CATEGORIES)
        self.category_names = names
        n_cat = len(names)
        brand_names = []
        for b in range(cfg.n_brands):
            parts = rng.choice(BRAND_SYLLABLES, 2, replace=True)
            brand_names.append(("".join(parts) + f"{b % 7}" if b >= 14 else "".join(parts)).capitalize())
        self.brand_names = brand_names
        # Each brand sells in two or three categories.
        brand_cats = [rng.choice(n_cat, rng.integers(2, 4), replace=False) for _ in range(cfg.n_brands)]
        cat_share = rng.dirichlet(np.full(n_cat, 3.0))
        item_cat = rng.choice(n_cat, cfg.n_items, p=cat_share)
        item_brand = np.empty(cfg.n_items, dtype=np.int64)
        for c in range(n_cat):
            makers = [b for b in range(cfg.n_brands) if c in brand_cats[b]] or [c % cfg.n_brands]
            members = np.flatnonzero(item_cat == c)
            item_brand[members] = rng.choice(makers, len(members))
        medians = np.array([CATEGORIES[n][0] for n in names])
        price = np.round(medians[item_cat] * rng.lognormal(0.0, 0.45, cfg.n_items), 2).clip(0.5)
        # Price band 0..4: quintile within the category.
        band = np.zeros(cfg.n_items, dtype=np.int64)
        for c in range(n_cat):
            members = np.flatnonzero(item_cat == c)
            if len(members):
                ranks = price[members].argsort().argsort()
                band[members] = (ranks * 5) // len(members)
        # Power-law popularity, independent of taste.
        popularity = 1.0 / np.power(rng.permutation(cfg.n_items) + 1.0, 0.9)
        n_start = int(round(cfg.n_items * 0.8))
        launch_offset = np.concatenate(
            [-rng.integers(1, 720, n_start), np.sort(rng.integers(0, cfg.n_days, cfg.n_items - n_start))]
        )
        attr_words = [CATEGORIES[names[c]][2] for c in item_cat]
        word_a = rng.integers(0, 5, cfg.n_items)
        word_b = (word_a + 1 + rng.integers(0, 4, cfg.n_items)) % 5
        ids = np.array([f"I{i:05d}" for i in range(cfg.n_items)], dtype=object)
        titles, descriptions = [], []
        for i in range(cfg.n_items):
            w1, w2 = attr_words[i][word_a[i]], attr_words[i][word_b[i]]
            cat = names[item_cat[i]]
            titles.append(f"{brand_names[item_brand[i]]} {w1} {cat}")
            descriptions.append(f"{w1.capitalize()} {w2} {cat} by {brand_names[item_brand[i]]}, {w2} finish")
        self.item_cat, self.item_brand, self.item_band = item_cat, item_brand, band
        self.item_price, self.item_popularity = price, popularity
        self.item_launch = np.array([cfg.start_date + timedelta(days=int(o)) for o in launch_offset])
        self.item_launch_ord = np.array([d.toordinal() for d in self.item_launch])
        self.item_repeat = np.array([CATEGORIES[names[c]][1] for c in item_cat])
        self.items = pd.DataFrame(
            {
                "item_id": ids,
                "title": titles,
                "category": [names[c] for c in item_cat],
                "brand": [brand_names[b] for b in item_brand],
                "price": price,
                "description": descriptions,
                "in_stock": rng.random(cfg.n_items) >= cfg.out_of_stock_share,
                "launch_date": self.item_launch,
            }
        )
        self.item_words = attr_words

    def _build_users(self, rng: np.random.Generator) -> None:
        cfg = self.config
        n, n_cat = cfg.n_users, len(self.category_names)
        country = rng.choice(len(COUNTRIES), n, p=COUNTRY_SHARES)
        age = rng.choice(len(AGE_BANDS), n, p=AGE_SHARES)
        # Country and age nudge the category prior a little (so profile features help
        # cold start); each user still concentrates on one to three categories.
        country_bias = rng.normal(0, 0.6, (len(COUNTRIES), n_cat))
        age_bias = rng.normal(0, 0.6, (len(AGE_BANDS), n_cat))
        prior = np.exp(country_bias[country] + age_bias[age])
        self.user_cat = np.vstack([rng.dirichlet(0.35 * p / p.mean()) for p in prior])
        self.user_brand = rng.normal(0, 1.0, (n, cfg.n_brands)) * (rng.random((n, cfg.n_brands)) < 0.15)
        self.user_band = rng.integers(0, 5, n)
        self.user_activity = rng.lognormal(0.0, 0.8, n)
        self.user_repeat = rng.beta(2, 3, n)
        n_start = int(round(n * 0.6))
        offset = np.concatenate([-rng.integers(1, 900, n_start), np.sort(rng.integers(0, cfg.n_days, n - n_start))])
        self.user_signup = np.array([cfg.start_date + timedelta(days=int(o)) for o in offset])
        self.user_signup_ord = np.array([d.toordinal() for d in self.user_signup])
        self.users = pd.DataFrame(
            {
                "user_id": np.array([f"U{u:06d}" for u in range(n)], dtype=object),
                "signup_date": self.user_signup,
                "age_band": [AGE_BANDS[a] for a in age],
                "gender": rng.choice(["F", "M", "X"], n, p=[0.52, 0.45, 0.03]),
                "country": [COUNTRIES[c] for c in country],
                "marketing_consent": rng.random(n) < 0.6,
            }
        )

    # ------------------------------------------------------------------ tastes
    def _affinity_idx(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """True utility of items for users (index arrays broadcast against each other)."""
        cat = np.log(self.user_cat[users, self.item_cat[items]] + 1e-3)
        brand = self.user_brand[users, self.item_brand[items]]
        price = -0.5 * np.abs(self.item_band[items] - self.user_band[users])
        return cat + 0.6 * brand + price

    def affinity(self, user_ids, item_ids) -> np.ndarray:
        """Standardised true affinity matrix (len(user_ids) x len(item_ids))."""
        u = np.array([int(str(x)[1:]) for x in user_ids])
        i = np.array([int(str(x)[1:]) for x in item_ids])
        return (self._affinity_idx(u[:, None], i[None, :]) - self._aff_mean) / self._aff_std

    # ------------------------------------------------------------------ one day
    def simulate_day(self, day: date, recommendations: pd.DataFrame | None = None) -> pd.DataFrame:
        """Clean canonical events of one day (no dirt), sorted by time."""
        cfg = self.config
        rng = np.random.default_rng([cfg.seed, day.toordinal()])
        ordinal = day.toordinal()
        active = np.flatnonzero(self.user_signup_ord <= ordinal)
        live_items = np.flatnonzero(self.item_launch_ord <= ordinal)
        season = 1.3 if day.weekday() >= 5 else 1.0
        # ~7 events per session: calibrate the visit probability to the event budget.
        expected_sessions = cfg.events_per_day * season / 7.0
        weights = self.user_activity[active]
        p_visit = np.clip(expected_sessions * weights / weights.sum(), 0, 0.95)
        visitors = active[rng.random(len(active)) < p_visit]
        if len(visitors) == 0 or len(live_items) == 0:
            self.last_day = day
            return pd.DataFrame(columns=EVENT_COLUMNS)

        # Browsing: views drawn without replacement by popularity^a x exp(b x affinity)
        # (Gumbel top-k), then a funnel whose conversion depends on the affinity.
        aff = (self._affinity_idx(visitors[:, None], live_items[None, :]) - self._aff_mean) / self._aff_std
        logits = cfg.popularity_exponent * np.log(self.item_popularity[live_items]) + cfg.taste_strength * aff
        n_views = np.minimum(1 + rng.poisson(4.0, len(visitors)), len(live_items))
        max_views = int(n_views.max())
        gumbel = logits - np.log(-np.log(rng.random(logits.shape)))
        top = np.argpartition(-gumbel, max_views - 1, axis=1)[:, :max_views]
        order = np.argsort(-np.take_along_axis(gumbel, top, axis=1), axis=1)
        top = np.take_along_axis(top, order, axis=1)
        keep = np.arange(max_views)[None, :] < n_views[:, None]
        v_user = np.repeat(np.arange(len(visitors))[:, None], max_views, axis=1)[keep]
        v_item = live_items[top[keep]]
        v_aff = np.take_along_axis(aff, top, axis=1)[keep]
        v_pos = np.broadcast_to(np.arange(max_views), keep.shape)[keep]

        frames = [self._funnel(rng, visitors, v_user, v_item, v_aff, v_pos, source="browse")]

        # Repeat purchases of consumables the user bought before.
        bought = self.purchases[visitors]
        if bought.nnz:
            coo = bought.tocoo()
            propensity = self.item_repeat[coo.col] * self.user_repeat[visitors[coo.row]]
            draw = rng.random(len(coo.data)) < propensity * 0.35
            r_user, r_item = coo.row[draw], coo.col[draw]
            if len(r_user):
                frames.append(self._repeat_purchases(rng, visitors, r_user, r_item))

        # Recommendations shown to visiting users, if the pipeline published any.
        if recommendations is not None and len(recommendations):
            frames.append(self._respond_to_recommendations(rng, day, visitors, recommendations))

        # Searches at the start of some sessions.
        searching = np.flatnonzero(rng.random(len(visitors)) < cfg.search_share)
        if len(searching):
            fav = np.array([rng.choice(len(self.category_names), p=self.user_cat[u]) for u in visitors[searching]])
            words = [CATEGORIES[self.category_names[c]][2][rng.integers(0, 5)] for c in fav]
            frames.append(
                pd.DataFrame(
                    {
                        "visitor": searching,
                        "item": -1,
                        "event_type": "search",
                        "step": -1,
                        "quantity": 1,
                        "search_query": [f"{w} {self.category_names[c]}" for w, c in zip(words, fav)],
                    }
                )
            )

        events = pd.concat(frames, ignore_index=True)
        events["search_query"] = events.get("search_query", pd.Series(dtype=object))
        # Timestamps: sessions start through the day (busier in the evening), steps a
        # few seconds to minutes apart; strictly increasing within a session.
        start = np.clip(rng.normal(15.5 * 3600, 4.5 * 3600, len(visitors)), 0, 22 * 3600).astype(np.int64)
        events = events.sort_values(["visitor", "step", "event_type", "item"], kind="stable").reset_index(drop=True)
        gaps = 1 + rng.exponential(40.0, len(events)).astype(np.int64)
        offset = pd.Series(gaps).groupby(events["visitor"].to_numpy()).cumsum().to_numpy()
        seconds = np.minimum(start[events["visitor"].to_numpy()] + offset, 86399)
        base = pd.Timestamp(day)
        ts = base + pd.to_timedelta(seconds, unit="s")
        items = events["item"].to_numpy()
        is_item = items >= 0
        out = pd.DataFrame(
            {
                "user_id": self.users["user_id"].to_numpy()[visitors[events["visitor"].to_numpy()]],
                "item_id": np.where(is_item, np.array([f"I{i:05d}" for i in np.maximum(items, 0)], dtype=object), ""),
                "event_type": events["event_type"].to_numpy(),
                "event_ts": ts.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "quantity": events["quantity"].to_numpy(dtype=np.int64),
                "price": np.where(is_item, np.char.mod("%.2f", self.item_price[np.maximum(items, 0)]), ""),
                "session_id": [f"S{day:%Y%m%d}-{v:06d}" for v in events["visitor"].to_numpy()],
                "search_query": events["search_query"].fillna("").to_numpy(),
                "_ts": seconds,
            }
        )
        # Remember purchases for tomorrow's repeat behaviour.
        bought_rows = out["event_type"] == "purchase"
        if bought_rows.any():
            u_idx = visitors[events["visitor"].to_numpy()[bought_rows.to_numpy()]]
            i_idx = items[bought_rows.to_numpy()]
            self.purchases = (
                self.purchases
                + sp.csr_matrix(
                    (np.ones(len(u_idx), dtype=np.float32), (u_idx, i_idx)), shape=self.purchases.shape
                )
            ).tocsr()
        self.last_day = day
        out = out.sort_values(["_ts", "session_id"], kind="stable").drop(columns="_ts").reset_index(drop=True)
        return out[EVENT_COLUMNS]

    def _funnel(self, rng, visitors, v_user, v_item, v_aff, v_pos, source: str) -> pd.DataFrame:
        """Views, then add-to-carts and purchases with affinity-driven probabilities."""
        cart = rng.random(len(v_item)) < _sigmoid(-2.3 + 1.3 * v_aff)
        remove = cart & (rng.random(len(v_item)) < 0.08)
        buy = cart & ~remove & (rng.random(len(v_item)) < _sigmoid(-0.4 + 0.9 * v_aff))
        qty = 1 + rng.poisson(0.3, len(v_item))
        step = v_pos * 4
        parts = [
            pd.DataFrame({"visitor": v_user, "item": v_item, "event_type": "view", "step": step, "quantity": 1}),
            pd.DataFrame({"visitor": v_user[cart], "item": v_item[cart], "event_type": "add_to_cart",
                          "step": step[cart] + 1, "quantity": qty[cart]}),
            pd.DataFrame({"visitor": v_user[remove], "item": v_item[remove], "event_type": "remove_from_cart",
                          "step": step[remove] + 2, "quantity": qty[remove]}),
            pd.DataFrame({"visitor": v_user[buy], "item": v_item[buy], "event_type": "purchase",
                          "step": 1000 + step[buy], "quantity": qty[buy]}),
        ]
        return pd.concat(parts, ignore_index=True)

    def _repeat_purchases(self, rng, visitors, r_user, r_item) -> pd.DataFrame:
        qty = 1 + rng.poisson(0.5, len(r_user))
        step = 500 + np.arange(len(r_user)) % 50
        return pd.concat(
            [
                pd.DataFrame({"visitor": r_user, "item": r_item, "event_type": "view", "step": step, "quantity": 1}),
                pd.DataFrame({"visitor": r_user, "item": r_item, "event_type": "add_to_cart", "step": step + 1,
                              "quantity": qty}),
                pd.DataFrame({"visitor": r_user, "item": r_item, "event_type": "purchase", "step": 1500 + step,
                              "quantity": qty}),
            ],
            ignore_index=True,
        )

    def _respond_to_recommendations(self, rng, day, visitors, recommendations) -> pd.DataFrame:
        """Impressions of each visiting user's list; clicks and purchases by true affinity."""
        row_of_user = pd.Series(np.arange(len(visitors)), index=self.users["user_id"].to_numpy()[visitors])
        recs = recommendations[recommendations["user_id"].isin(row_of_user.index)]
        recs = recs[recs["item_id"].str.match(r"^I\d{5}$")]
        if recs.empty:
            return pd.DataFrame(columns=["visitor", "item", "event_type", "step", "quantity"])
        visitor = row_of_user.reindex(recs["user_id"]).to_numpy()
        item = recs["item_id"].str[1:].astype(int).to_numpy()
        rank = recs["rank"].to_numpy()
        launched = self.item_launch_ord[item] <= day.toordinal()
        visitor, item, rank = visitor[launched], item[launched], rank[launched]
        aff = (self._affinity_idx(visitors[visitor], item) - self._aff_mean) / self._aff_std
        click = rng.random(len(item)) < _sigmoid(-3.2 + 1.4 * aff - 0.05 * rank)
        step = 100 + rank * 4
        shown = pd.DataFrame({"visitor": visitor, "item": item, "event_type": "impression", "step": step, "quantity": 1})
        clicked = pd.DataFrame({"visitor": visitor[click], "item": item[click], "event_type": "click",
                                "step": step[click] + 1, "quantity": 1})
        funnel = self._funnel(rng, visitors, visitor[click], item[click], aff[click], 30 + rank[click], "recs")
        funnel = funnel[funnel["event_type"] != "view"]
        return pd.concat([shown, clicked, funnel], ignore_index=True)

    # ------------------------------------------------------------------ state
    def save_state(self, path: Path) -> None:
        """Purchase history and the last simulated day (tastes are rebuilt from the seed)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        coo = self.purchases.tocoo()
        np.savez(path, row=coo.row, col=coo.col, data=coo.data)
        meta = {"config": {**asdict(self.config), "start_date": self.config.start_date.isoformat()},
                "last_day": self.last_day.isoformat() if self.last_day else None}
        path.with_suffix(".json").write_text(json.dumps(meta, indent=2))

    @classmethod
    def load_state(cls, path: Path) -> "SyntheticShop":
        path = Path(path)
        meta = json.loads(path.with_suffix(".json").read_text())
        config = ShopConfig(**{**meta["config"], "start_date": date.fromisoformat(meta["config"]["start_date"])})
        shop = cls(config)
        with np.load(path if path.suffix == ".npz" else path.with_suffix(".npz")) as arrays:
            shop.purchases = sp.csr_matrix(
                (arrays["data"], (arrays["row"], arrays["col"])), shape=(config.n_users, config.n_items)
            )
        shop.last_day = date.fromisoformat(meta["last_day"]) if meta["last_day"] else None
        return shop


# ---------------------------------------------------------------------- dirt
def inject_defects(events: pd.DataFrame, day: date, rate: float, seed: int) -> tuple[list[str], list[tuple[int, str]]]:
    """Render a day's events as CSV lines with ``rate`` of them defective.

    Returns the lines (header first) and ``(line_number, kind)`` of every defect, line 1
    being the header. Every defect line carries exactly one defect.
    """
    rng = np.random.default_rng([seed, day.toordinal(), 7])
    frame = events.copy()
    n = len(frame)
    n_defects = int(round(n * rate))
    kinds = np.array([DEFECT_KINDS[i % len(DEFECT_KINDS)] for i in range(n_defects)], dtype=object)
    rng.shuffle(kinds)
    has_item = (frame["item_id"] != "").to_numpy()
    candidates = rng.permutation(np.flatnonzero(has_item))[:n_defects]
    kind_of_row = dict(zip(candidates.tolist(), kinds[: len(candidates)].tolist()))
    malformed: set[int] = set()
    duplicate_after: list[int] = []
    for row, kind in sorted(kind_of_row.items()):
        if kind == "duplicate":
            duplicate_after.append(row)
        elif kind == "missing_user_id":
            frame.iat[row, 0] = ""
        elif kind == "unknown_event_type":
            frame.iat[row, 2] = UNKNOWN_EVENT_TYPES[row % len(UNKNOWN_EVENT_TYPES)]
        elif kind == "unparseable_timestamp":
            frame.iat[row, 3] = BAD_TIMESTAMPS[row % len(BAD_TIMESTAMPS)]
        elif kind == "future_timestamp":
            frame.iat[row, 3] = (pd.Timestamp(day) + pd.Timedelta(days=40 + row % 300)).strftime("%Y-%m-%dT%H:%M:%SZ")
        elif kind == "negative_price":
            frame.iat[row, 5] = f"-{frame.iat[row, 5]}"
        elif kind == "unknown_item":
            frame.iat[row, 1] = f"I9{row % 10000:04d}x"
        elif kind == "malformed_line":
            malformed.add(row)
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    body = buffer.getvalue().splitlines()
    header, rows = body[0], body[1:]
    lines, defects = [header], []
    duplicates = set(duplicate_after)
    for i, text in enumerate(rows):
        if i in malformed:
            fields = frame.iloc[i]
            # Too few fields (a truncated line) or one too many.
            text = ",".join(str(v) for v in fields.iloc[:3]) if i % 2 else text + ",EXTRA"
            lines.append(text)
            defects.append((len(lines), "malformed_line"))
            continue
        lines.append(text)
        kind = kind_of_row.get(i)
        if kind and kind != "duplicate":
            defects.append((len(lines), kind))
        if i in duplicates:
            lines.append(text)
            defects.append((len(lines), "duplicate"))
    return lines, defects


def _write_snapshot(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    out = frame.copy()
    for column in out.columns:
        if out[column].dtype == bool:
            out[column] = np.where(out[column], "true", "false")
    out.to_csv(path, index=False, lineterminator="\n")


def write_days(
    shop: SyntheticShop,
    landing_dir: Path,
    days: list[date],
    recommendations_for_day=None,
) -> GenerationReport:
    """Simulate ``days`` in order and write their files, the snapshots and the truth files."""
    started = time.perf_counter()
    landing_dir = Path(landing_dir)
    (landing_dir / "events").mkdir(parents=True, exist_ok=True)
    truth = landing_dir / "_truth"
    truth.mkdir(parents=True, exist_ok=True)
    defects_path = truth / "defects.csv"
    existing = pd.read_csv(defects_path, dtype=str) if defects_path.exists() else pd.DataFrame(columns=["file", "line", "kind"])
    report = GenerationReport(n_days=0, n_events_written=0, n_defects={k: 0 for k in DEFECT_KINDS})
    new_defects = []
    for day in days:
        recs = recommendations_for_day(day) if recommendations_for_day else None
        events = shop.simulate_day(day, recs)
        lines, defects = inject_defects(events, day, shop.config.dirt_rate, shop.config.seed)
        name = f"events/{day.isoformat()}.csv"
        path = landing_dir / name
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        report.paths.append(path)
        report.n_days += 1
        report.n_events_written += len(lines) - 1
        for line, kind in defects:
            report.n_defects[kind] += 1
            new_defects.append({"file": name, "line": str(line), "kind": kind})
    written = {f"events/{d.isoformat()}.csv" for d in days}
    kept = existing[~existing["file"].isin(written)]
    pd.concat([kept, pd.DataFrame(new_defects, columns=["file", "line", "kind"])], ignore_index=True).to_csv(
        defects_path, index=False, lineterminator="\n"
    )
    last = shop.last_day or shop.config.start_date
    items = shop.items[shop.items["launch_date"] <= last].assign(launch_date=lambda f: f["launch_date"].astype(str))
    users = shop.users[shop.users["signup_date"] <= last].assign(signup_date=lambda f: f["signup_date"].astype(str))
    _write_snapshot(items[ITEM_COLUMNS], landing_dir / "items" / "items.csv")
    _write_snapshot(users[USER_COLUMNS], landing_dir / "users" / "users.csv")
    shop.save_state(truth / "state.npz")
    report.seconds = time.perf_counter() - started
    return report


def generate_landing_zone(landing_dir: Path, config: ShopConfig = ShopConfig()) -> GenerationReport:
    """Write the landing zone of a fresh shop (deterministic: same config, same bytes)."""
    landing_dir = Path(landing_dir)
    for old in (landing_dir / "events").glob("*.csv") if (landing_dir / "events").exists() else []:
        old.unlink()
    defects = landing_dir / "_truth" / "defects.csv"
    if defects.exists():
        defects.unlink()
    shop = SyntheticShop(config)
    days = [config.start_date + timedelta(days=i) for i in range(config.n_days)]
    return write_days(shop, landing_dir, days)


def continue_landing_zone(landing_dir: Path, n_days: int, recommendations_for_day=None) -> GenerationReport:
    """Simulate ``n_days`` more days after the last one, shoppers seeing the lists that
    ``recommendations_for_day(day)`` returns (user_id, item_id, rank)."""
    landing_dir = Path(landing_dir)
    shop = SyntheticShop.load_state(landing_dir / "_truth" / "state.npz")
    first = (shop.last_day or shop.config.start_date - timedelta(days=1)) + timedelta(days=1)
    days = [first + timedelta(days=i) for i in range(n_days)]
    return write_days(shop, landing_dir, days, recommendations_for_day)
