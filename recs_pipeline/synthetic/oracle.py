"""The synthetic shop's ceiling: rank items by each shopper's *true* chance of buying them.

The generator knows every shopper's tastes, so for any window of days it can say how
likely each (user, item) purchase is; a list of the items with the highest chances is
the best list anyone could serve in expectation (precision@k is a sum of hit chances,
so ranking by them maximises its expectation). Served lists can then be read as a share
of that ceiling. Pure numpy/pandas over :class:`~recs_pipeline.synthetic.shop.SyntheticShop`:
no Dagster, no warehouse.

What the oracle computes: for each user u and item i, the probability that u buys i at
least once on the days ``start_day .. start_day + days - 1``, from the shop's state as
it was the evening before ``start_day`` (its purchase history), following the
simulator's own rules (:meth:`SyntheticShop.simulate_day`):

- browse sessions: a day's sessions are Poisson with mean (the day's traffic target
  minus the expected replenishment events) / EVENTS_PER_SESSION, shared among the
  users who have signed up in proportion to their activity, so each user's number of
  sessions is Poisson(lambda_u). A session has 1 + Poisson(3) views; its intent
  category and the category of each view that wanders come from the user's category
  tastes mixed with the catalogue shares (EXPLORATION), over categories with launched
  items; a view stays in the intent category with probability SESSION_FOCUS. Within a
  category the item is drawn with probability proportional to
  popularity(day)^a x exp(b x taste match) over the launched items (the novelty boost
  of new items included). A view turns into a cart with sigmoid(cart(affinity)) (zero
  out of stock, x OWNED_ONE_OFF_FACTOR for a one-off the user already owns), an item
  is carted at most once a session and a carted item is bought with
  sigmoid(buy(affinity)). Given the intent, the views are independent, so
  P(no purchase of i in a session) has a closed form and a day's browse purchases
  of i are absent with probability exp(-lambda_u x P(purchase of i in a session)).
- replenishment: a consumable (user, item) pair bought before becomes ready after
  REPLENISH_READY of its cycle and is then bought (view, cart, purchase) with daily
  chance REPLENISH_HAZARD x sigmoid(LOYALTY_INTERCEPT + affinity), if in stock.

P(at least one purchase) = 1 - prod over days of P(none that day | none before). On
the path "no purchase of i yet" the state that matters for i (owned or not, last
purchase day) is still the evening-before state, which is why the at-least-once
probability is exact there even over windows longer than a replenishment cycle.

What it does not know: the random draws (which users visit, what they happen to view,
the uniforms of the funnel), the defects injected into the files and what the
pipeline's quarantine then drops. Approximations: the day's session count uses the
expected number of replenishments, not the drawn one; purchases that the simulator
drops because their checkout falls after midnight are counted; large categories
(> EXACT_CHOICE_CANDIDATES items), where the simulator samples its choice, get the
exact choice probabilities it approximates; recommendations shown to visitors (a
continued shop) are ignored, so after a closed-loop run the oracle is the ceiling of
organic behaviour.
"""

from __future__ import annotations

import warnings
from datetime import date, timedelta

import numpy as np
import pandas as pd

from recs_pipeline.synthetic.shop import (
    BUY_INTERCEPT,
    BUY_SLOPE,
    CART_INTERCEPT,
    CART_SLOPE,
    CATEGORY_FLOOR,
    CATEGORY_WEIGHT,
    EVENTS_PER_SESSION,
    EXPLORATION,
    LOYALTY_INTERCEPT,
    MEAN_EXTRA_VIEWS,
    OWNED_ONE_OFF_FACTOR,
    REPLENISH_EVENTS,
    REPLENISH_HAZARD,
    REPLENISH_READY,
    SESSION_FOCUS,
    ShopConfig,
    SyntheticShop,
)

DEFAULT_BATCH_ENTRIES = 1 << 21  # users x items of one block (a few 16 MB float arrays)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def state_day(shop: SyntheticShop) -> date:
    """The last day the shop's purchase history covers (the day before its first one
    when nothing was simulated yet: the seeded history)."""
    return shop.last_simulated_day or shop.config.start_date - timedelta(days=1)


def _replenishment_chances(shop: SyntheticShop, pairs: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per bought (user, item) pair (all, or the positions ``pairs`` of ``shop.bought_*``):
    its cycle in days (0: not a consumable) and its daily replenishment chance once ready."""
    users, items = shop.bought_user, shop.bought_item
    if pairs is not None:
        users, items = users[pairs], items[pairs]
    cycle = shop._repurchase_days[shop.item_category[items]]
    loyalty = _sigmoid(LOYALTY_INTERCEPT + shop._affinity_pairs(users, items))
    return cycle, REPLENISH_HAZARD * loyalty * shop.item_in_stock[items] * (cycle > 0)


def _sessions_of_day(shop: SyntheticShop, day: date, replenishments: float) -> np.ndarray:
    """Expected browse sessions of every user on ``day`` (zero before their sign-up) when
    ``replenishments`` replenishment sessions are expected that day: the traffic target
    minus their events, shared in proportion to activity."""
    d = day.toordinal()
    sessions = max(shop.expected_events(day) - REPLENISH_EVENTS * replenishments, 0.0) / EVENTS_PER_SESSION
    weights = shop.user_activity * (shop.user_signup <= d)
    total = weights.sum()
    return sessions * weights / total if total > 0 else np.zeros(len(weights))


def window_sessions(shop: SyntheticShop, start_day: date, days: int) -> np.ndarray:
    """Expected browse sessions of every user on each day of the window (days x users),
    from the current state. The day's replenishments are expected over the ready
    consumables not replenished on an earlier day of the window (a replenished pair is
    not ready again within REPLENISH_READY of its cycle)."""
    cycle, chance = _replenishment_chances(shop)
    waiting = np.ones(len(chance))  # P(not replenished yet in the window)
    out = []
    for offset in range(days):
        day = start_day + timedelta(days=offset)
        ready = (cycle > 0) & (day.toordinal() - shop.bought_day >= REPLENISH_READY * cycle)
        today = chance * ready * waiting
        out.append(_sessions_of_day(shop, day, float(today.sum())))
        waiting = waiting - today
    return np.stack(out) if out else np.zeros((0, shop.config.n_users))


def _category_softmax(scores: np.ndarray, order: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Row-wise softmax of ``scores`` (users x items, -inf = not available) within each
    category; ``order`` sorts the items by category, ``starts`` are the category starts
    in that order. Items of a category with nothing available get 0."""
    sorted_scores = scores[:, order]
    top = np.maximum.reduceat(sorted_scores, starts, axis=1)  # per row and category
    counts = np.diff(np.r_[starts, scores.shape[1]])
    top = np.where(np.isfinite(top), top, 0.0)
    z = np.exp(sorted_scores - np.repeat(top, counts, axis=1))
    denominators = np.add.reduceat(z, starts, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(z > 0, z / np.repeat(denominators, counts, axis=1), 0.0)
    out = np.empty_like(share)
    out[:, order] = share
    return out


def purchase_probabilities(
    shop: SyntheticShop, users: np.ndarray, start_day: date, days: int, sessions: np.ndarray | None = None
) -> np.ndarray:
    """P(user buys item at least once on ``start_day`` .. ``start_day + days - 1``) for
    the user positions ``users`` (rows) and every item (columns), from the shop's state
    as it is now (see the module docstring). One block: callers batch the users.
    ``sessions``: :func:`window_sessions` (expected browse sessions, days x all users),
    when the caller has computed them already."""
    cfg = shop.config
    if sessions is None:
        sessions = window_sessions(shop, start_day, days)
    users = np.asarray(users, dtype=np.int64)
    n_items = cfg.n_items
    all_items = np.arange(n_items)
    category = shop.item_category
    n_categories = len(shop._category_share)
    # Items sorted by category, for the per-category softmax (categories without items are skipped).
    order = np.argsort(category, kind="stable")
    present = np.unique(category)
    starts = np.searchsorted(category[order], present)

    within = shop._within_matrix(users, all_items)  # brand, price band, latent factors
    taste = shop.category_taste[users]
    affinity = CATEGORY_WEIGHT * np.log(taste[:, category] + CATEGORY_FLOOR) + within
    p_cart = _sigmoid(CART_INTERCEPT + CART_SLOPE * affinity) * shop.item_in_stock[None, :]
    p_buy = _sigmoid(BUY_INTERCEPT + BUY_SLOPE * affinity)
    del affinity

    # The batch's purchase history (bought_* is sorted by user, then item).
    lo = np.searchsorted(shop.bought_user, users, side="left")
    hi = np.searchsorted(shop.bought_user, users, side="right")
    counts = hi - lo
    pairs = np.repeat(lo - (np.cumsum(counts) - counts), counts) + np.arange(counts.sum())
    pair_rows = np.repeat(np.arange(len(users)), counts)
    pair_items = shop.bought_item[pairs]
    one_off = shop._repurchase_days[category[pair_items]] == 0
    p_cart[pair_rows[one_off], pair_items[one_off]] *= OWNED_ONE_OFF_FACTOR
    cycle, chance = _replenishment_chances(shop, pairs)
    consumable = cycle > 0
    rep_rows, rep_items = pair_rows[consumable], pair_items[consumable]
    rep_cycle, rep_chance, rep_last = cycle[consumable], chance[consumable], shop.bought_day[pairs][consumable]

    def some_cart(a: np.ndarray) -> np.ndarray:
        """P(at least one carted view in 1 + Poisson(MEAN_EXTRA_VIEWS) views, each carted with a)."""
        return 1.0 - (1.0 - a) * np.exp(-MEAN_EXTRA_VIEWS * a)

    log_none = np.zeros((len(users), n_items))
    for offset in range(days):
        day = start_day + timedelta(days=offset)
        d = day.toordinal()
        launched = shop.item_launch <= d
        has_items = np.bincount(category[launched], minlength=n_categories) > 0
        prefs = ((1 - EXPLORATION) * taste + EXPLORATION * shop._category_share) * has_items
        pi = (prefs / prefs.sum(axis=1, keepdims=True))[:, category]  # P(a view's category) per item column
        log_popularity = cfg.popularity_weight * np.log(shop._effective_popularity(d))
        scores = np.where(launched[None, :], log_popularity[None, :] + cfg.taste_weight * within, -np.inf)
        carted = _category_softmax(scores, order, starts) * p_cart  # one view of the category carts the item
        in_session = pi * some_cart((SESSION_FOCUS + (1 - SESSION_FOCUS) * pi) * carted) + (1 - pi) * some_cart(
            (1 - SESSION_FOCUS) * pi * carted
        )
        log_none -= sessions[offset, users][:, None] * p_buy * in_session
        ready = d - rep_last >= REPLENISH_READY * rep_cycle
        log_none[rep_rows, rep_items] += np.log1p(-rep_chance * ready)
    return -np.expm1(log_none)


def _item_mask(shop: SyntheticShop, item_mask) -> np.ndarray:
    if item_mask is None:
        return np.ones(shop.config.n_items, dtype=bool)
    if isinstance(item_mask, pd.Series):
        return item_mask.reindex(shop.item_ids).fillna(False).to_numpy(dtype=bool)
    mask = np.asarray(item_mask, dtype=bool)
    if mask.shape != (shop.config.n_items,):
        raise ValueError(f"item_mask must have one entry per shop item ({shop.config.n_items}): {mask.shape}")
    return mask


def oracle_lists(
    shop: SyntheticShop,
    user_ids,
    n: int,
    start_day: date,
    days: int,
    item_mask: np.ndarray | pd.Series | None = None,
    batch_entries: int = DEFAULT_BATCH_ENTRIES,
) -> pd.DataFrame:
    """Every user's ``n`` items most likely to be bought at least once in the ``days``
    days from ``start_day``: user_id, item_id, score (that probability), rank (1 = best).

    ``shop`` must hold the state of the evening before ``start_day`` (see
    :func:`shop_before`): a later state would know purchases of the window. ``user_ids``
    are the shop's ids, in any order (KeyError for unknown ones). ``item_mask`` (aligned
    with ``shop.item_ids``, or a boolean Series by item id): False for items never to
    list, e.g. out of stock. Items that cannot be bought in the window (out of stock, not
    launched yet) are never listed, so a list can be shorter than ``n``. Users are
    scored in blocks of about ``batch_entries`` users x items; within a list, ties go to
    the lower item.
    """
    if days < 1 or n < 1:
        raise ValueError(f"days and n must be >= 1: days={days}, n={n}")
    known = state_day(shop)
    if start_day <= known:
        raise ValueError(f"the shop's state already covers {known}: the window from {start_day} would leak")
    if start_day > known + timedelta(days=1):
        warnings.warn(
            f"the shop's state ends on {known}, not the day before {start_day}: its purchase history is stale",
            stacklevel=2,
        )
    ids = np.asarray(list(user_ids), dtype=object)
    positions = shop._positions(shop._user_index, ids, "user")
    allowed = _item_mask(shop, item_mask)
    n_items = shop.config.n_items
    block = max(1, batch_entries // max(n_items, 1))
    depth = min(n, n_items)
    sessions = window_sessions(shop, start_day, days)
    parts = []
    for start in range(0, len(positions), block):
        rows = positions[start : start + block]
        chance = purchase_probabilities(shop, rows, start_day, days, sessions)
        chance = np.where(allowed[None, :] & (chance > 0), chance, -1.0)
        if depth < n_items:
            top = np.argpartition(-chance, depth - 1, axis=1)[:, :depth]
        else:
            top = np.broadcast_to(np.arange(n_items), chance.shape)
        top_scores = np.take_along_axis(chance, top, axis=1)
        ranking = np.lexsort((top, -top_scores), axis=1)  # by score, ties to the lower item
        items = np.take_along_axis(top, ranking, axis=1)
        scores = np.take_along_axis(top_scores, ranking, axis=1)
        user = np.repeat(ids[start : start + block], depth)
        frame = pd.DataFrame({"user_id": user, "item_id": shop.item_ids[items.ravel()], "score": scores.ravel(),
                              "rank": np.tile(np.arange(1, depth + 1), len(rows))})  # fmt: skip
        parts.append(frame[frame["score"] >= 0])
    if not parts:
        return pd.DataFrame({"user_id": pd.Series(dtype=object), "item_id": pd.Series(dtype=object),
                             "score": pd.Series(dtype=float), "rank": pd.Series(dtype=np.int64)})  # fmt: skip
    # Dropped items sort last in their row, so the ranks kept stay 1, 2, ...
    out = pd.concat(parts, ignore_index=True)
    return out.astype({"user_id": object, "item_id": object, "rank": np.int64})


def shop_before(config: ShopConfig, day: date) -> SyntheticShop:
    """The shop of ``config`` simulated up to the day before ``day`` (no files written):
    the state the oracle needs for a window starting on ``day``. Deterministic, so it is
    exactly the state the generator had then."""
    shop = SyntheticShop(config)
    current = config.start_date
    while current < day:
        shop.simulate_day(current)
        current += timedelta(days=1)
    return shop


def simulate_purchases(shop: SyntheticShop, start_day: date, days: int) -> pd.DataFrame:
    """Simulate ``days`` days from ``start_day`` (the shop moves on) and return the
    distinct (user_id, item_id) pairs bought: what the oracle predicts."""
    frames = []
    for offset in range(days):
        frame = shop.simulate_day(start_day + timedelta(days=offset))
        frames.append(frame.loc[frame["event_type"] == "purchase", ["user_id", "item_id"]])
    bought = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["user_id", "item_id"])
    return bought.drop_duplicates().reset_index(drop=True)


__all__ = ["oracle_lists", "purchase_probabilities", "shop_before", "simulate_purchases",
           "state_day", "window_sessions"]  # fmt: skip
