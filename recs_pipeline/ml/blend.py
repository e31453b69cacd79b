"""The serving blend: a few "buy it again" slots, the rest model discoveries.

In a shop where customers reorder, their own past purchases are the best
predictor of the next basket, but a list made only of them never shows
anything new. The blend gives each user up to ``repeat_share x N`` slots for
items they bought before (strong buy-again candidates only), then fills the
list with the model's best items not already in it. Every row records which
strategy put it there, so the feedback loop can measure each separately.

How many slots repeats deserve depends on the shop, so the share is tuned on
a validation period (:func:`tune_repeat_share`); in a shop of one-off
purchases it comes out as 0 and the blend is the model alone.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from recs_pipeline.ml.metrics import precision_at_k

DEFAULT_SHARES = tuple(np.round(np.linspace(0.0, 1.0, 11), 2))


def repeat_slots(n: int, repeat_share: float) -> int:
    """Number of list positions open to buy-again candidates."""
    return int(np.floor(repeat_share * n + 1e-9))


def blend(
    buy_again: pd.DataFrame,
    model: pd.DataFrame,
    n: int,
    repeat_share: float,
    min_repeat_score: float = 0.0,
) -> pd.DataFrame:
    """Blend buy-again and model lists into one top-``n`` list per user.

    Both inputs have ``user_id, rank, item_id, score``. Buy-again rows count
    as repeat candidates only when their score (the recency-weighted
    frequency) is above ``min_repeat_score``; fill-ups with score 0 never do.
    Model lists should be at least ``n`` deep; items already taken as repeats
    are skipped. Returns ``user_id, rank, item_id, score, strategy`` where
    ``strategy`` is ``buy_again`` or ``model``.
    """
    keys = ["user_id", "item_id"]
    repeats = buy_again[buy_again["score"] > min_repeat_score].sort_values(["user_id", "rank"])
    repeats = repeats[repeats.groupby("user_id", sort=False).cumcount() < repeat_slots(n, repeat_share)]

    discoveries = model.merge(repeats[keys], on=keys, how="left", indicator=True)
    discoveries = discoveries[discoveries["_merge"] == "left_only"].drop(columns="_merge")
    discoveries = discoveries.sort_values(["user_id", "rank"])
    taken = discoveries["user_id"].map(repeats.groupby("user_id").size()).fillna(0).to_numpy()
    discoveries = discoveries[discoveries.groupby("user_id", sort=False).cumcount().to_numpy() < n - taken]

    combined = pd.concat(
        [
            repeats[["user_id", "item_id", "score", "rank"]].assign(strategy="buy_again", _block=0),
            discoveries[["user_id", "item_id", "score", "rank"]].assign(strategy="model", _block=1),
        ],
        ignore_index=True,
    ).sort_values(["user_id", "_block", "rank"])
    combined["rank"] = combined.groupby("user_id", sort=False).cumcount() + 1
    return combined[["user_id", "rank", "item_id", "score", "strategy"]].reset_index(drop=True)


def tune_repeat_share(
    buy_again: pd.DataFrame,
    model: pd.DataFrame,
    relevant: pd.DataFrame,
    n: int,
    shares: tuple[float, ...] = DEFAULT_SHARES,
    min_repeat_score: float = 0.0,
) -> tuple[float, pd.DataFrame]:
    """The share from ``shares`` with the best precision@n on a validation split.

    Returns the best share (the smallest one on ties: repeats must earn their
    slots) and the table of ``repeat_share, precision`` for every share tried.
    """
    precisions = [
        precision_at_k(blend(buy_again, model, n, share, min_repeat_score), relevant, n) for share in shares
    ]
    table = (
        pd.DataFrame({"repeat_share": shares, "precision": precisions})
        .sort_values("repeat_share")
        .reset_index(drop=True)
    )
    return float(table.loc[table["precision"].idxmax(), "repeat_share"]), table
