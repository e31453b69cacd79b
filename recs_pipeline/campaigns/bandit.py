"""Thompson sampling over the copy variants of a campaign, per segment.

Each (segment, variant) has a Beta posterior of its click rate per send. Every user
gets one draw from the posterior of each variant of their segment and receives the
variant with the highest draw, so a variant is sent about as often as it is likely to
be the best; a fixed share of users gets a uniformly random variant instead, which
keeps every variant measured even once the posteriors are confident.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.stats import beta as beta_distribution

INTERVAL = 0.95
POSTERIOR_COLUMNS = ["segment", "variant", "sends", "clicks", "alpha", "beta", "mean", "low", "high"]


def posteriors(
    results: pd.DataFrame,
    variants: Sequence[str],
    segments: Sequence[str],
    prior: tuple[float, float] = (1.0, 1.0),
) -> pd.DataFrame:
    """The Beta posterior of the click rate of every (segment, variant) of the grid
    ``segments x variants``: ``segment, variant, sends, clicks, alpha, beta, mean, low,
    high`` (a 95% equal-tailed interval). Cells without sends keep the ``prior``; rows
    of ``results`` outside the grid are ignored (a retired variant, say)."""
    a0, b0 = (float(p) for p in prior)
    if a0 <= 0 or b0 <= 0:
        raise ValueError(f"the prior's parameters must be positive, not {prior}")
    grid = pd.MultiIndex.from_product([list(segments), list(variants)], names=["segment", "variant"])
    counts = (
        results.groupby(["segment", "variant"])[["sends", "clicks"]].sum().reindex(grid, fill_value=0)
        if len(results) else pd.DataFrame({"sends": 0, "clicks": 0}, index=grid)
    )
    sends = counts["sends"].to_numpy(dtype=np.int64)
    clicks = counts["clicks"].to_numpy(dtype=np.int64)
    if (sends < 0).any() or (clicks < 0).any() or (clicks > sends).any():
        raise ValueError("sends and clicks must be counts with clicks <= sends")
    alpha = a0 + clicks
    beta = b0 + sends - clicks
    tail = (1 - INTERVAL) / 2
    out = grid.to_frame(index=False)
    out["sends"], out["clicks"], out["alpha"], out["beta"] = sends, clicks, alpha.astype(float), beta.astype(float)
    out["mean"] = alpha / (alpha + beta)
    out["low"] = beta_distribution.ppf(tail, alpha, beta)
    out["high"] = beta_distribution.ppf(1 - tail, alpha, beta)
    return out[POSTERIOR_COLUMNS]


def choose_variants(users: pd.DataFrame, posteriors: pd.DataFrame, explore_share: float, seed: int) -> pd.DataFrame:
    """A variant per user: ``user_id, variant, policy`` (policy "thompson" or "explore").

    Thompson users get the argmax of one Beta draw per variant of their segment (a users
    x variants matrix of draws); ``round(explore_share * n)`` users, picked at random,
    get a uniformly random variant. A segment absent from ``posteriors`` (new since the
    last results) uses the posteriors pooled over all segments. Deterministic for a seed
    and the same set of users, whatever their row order.
    """
    if not 0.0 <= explore_share <= 1.0:
        raise ValueError(f"explore_share must be in [0, 1], not {explore_share}")
    if users["user_id"].duplicated().any():
        raise ValueError("one row per user")
    variants = pd.Index(sorted(posteriors["variant"].unique()))
    if len(variants) == 0:
        raise ValueError("no variant to choose from")
    # Pooling: the counts summed over segments, with the prior of one cell.
    cells = posteriors
    prior_alpha = (cells["alpha"] - cells["clicks"]).iloc[0]
    prior_beta = (cells["beta"] - (cells["sends"] - cells["clicks"])).iloc[0]
    pooled = cells.groupby("variant")[["clicks", "sends"]].sum().reindex(variants)
    alpha = cells.pivot(index="segment", columns="variant", values="alpha").reindex(columns=variants)
    beta = cells.pivot(index="segment", columns="variant", values="beta").reindex(columns=variants)
    alpha.loc["\0pooled"] = prior_alpha + pooled["clicks"].to_numpy()
    beta.loc["\0pooled"] = prior_beta + (pooled["sends"] - pooled["clicks"]).to_numpy()

    # Row order must not change anyone's draw: draws follow the users sorted by id.
    order = np.argsort(users["user_id"].to_numpy(), kind="stable")
    segment = users["segment"].to_numpy(dtype=object)[order]
    row = alpha.index.get_indexer(segment)
    row[row < 0] = alpha.index.get_loc("\0pooled")
    a, b = alpha.to_numpy(dtype=float)[row], beta.to_numpy(dtype=float)[row]
    offered = np.isfinite(a) & np.isfinite(b)  # a segment may lack some variants

    rng = np.random.default_rng(seed)
    n = len(order)
    draws = rng.beta(np.where(offered, a, 1.0), np.where(offered, b, 1.0))
    uniform = rng.random((n, len(variants)))
    explore = np.zeros(n, dtype=bool)
    explore[rng.choice(n, size=int(round(explore_share * n)), replace=False)] = True
    score = np.where(explore[:, None], uniform, draws)
    chosen = np.where(offered, score, -np.inf).argmax(axis=1)

    out = pd.DataFrame(index=order)
    out["user_id"] = users["user_id"].to_numpy()[order]
    out["variant"] = variants.to_numpy(dtype=object)[chosen]
    out["policy"] = np.where(explore, "explore", "thompson").astype(object)
    return out.sort_index().reset_index(drop=True)
