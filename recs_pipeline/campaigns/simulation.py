"""How the synthetic shop's users answer campaign messages, so a bandit can be judged
against an answer it cannot see.

Each (segment, variant) has a hidden appeal: the chance a send is opened, the chance an
open leads to a click, and the chance a send ends in an unsubscribe. Every segment has
one clearly best variant, and the best differs between segments, so only a policy that
learns per segment can match the best fixed choice.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from recs_pipeline.campaigns._frames import utc_naive

APPEAL_COLUMNS = ["segment", "variant", "open_p", "click_p_given_open", "unsubscribe_p"]
RESPONSE_COLUMNS = ["send_id", "user_id", "event_type", "event_ts"]
OPEN, CLICK, UNSUBSCRIBE = "message_open", "message_click", "unsubscribe"

# Realistic marketing-email ranges (open 15-45%, click given open 5-30%, unsubscribe
# 0.1-1% of sends). The best variant of a segment gets a lift on both steps of the
# funnel, so its clicks per send are about 1.6-2.5x those of the others.
OPEN_RANGE, CLICK_RANGE, UNSUBSCRIBE_RANGE = (0.15, 0.45), (0.05, 0.30), (0.001, 0.01)
BASE_OPEN = (0.18, 0.30)
BASE_CLICK_GIVEN_OPEN = (0.07, 0.14)
OTHER_OPEN_SHIFT = (-0.03, 0.02)  # the non-best variants around the segment's base
OTHER_CLICK_FACTOR = (0.75, 1.0)
BEST_OPEN_LIFT = 0.08
BEST_CLICK_FACTOR = 1.45
MEAN_HOURS_TO_OPEN = 3.0
MAX_HOURS_TO_OPEN = 48.0
MEAN_MINUTES_TO_CLICK = 2.0
MEAN_MINUTES_TO_UNSUBSCRIBE = 1.0


def hidden_appeal(variants: Sequence[str], segments: Sequence[str], seed: int) -> pd.DataFrame:
    """``segment, variant, open_p, click_p_given_open, unsubscribe_p`` for every pair.

    The best variant of segment ``j`` is ``variants[perm[j % len(variants)]]`` for a
    seeded permutation ``perm``: with two or more segments and variants the best is
    never the same everywhere. ``unsubscribe_p`` is per send (every unsubscribe follows
    an open).
    """
    variants, segments = list(variants), list(segments)
    if len(variants) < 1 or len(segments) < 1:
        raise ValueError("at least one variant and one segment")
    rng = np.random.default_rng(seed)
    n_seg, n_var = len(segments), len(variants)
    best = rng.permutation(n_var)[np.arange(n_seg) % n_var]
    is_best = np.arange(n_var)[None, :] == best[:, None]
    base_open = rng.uniform(*BASE_OPEN, size=(n_seg, 1))
    base_click = rng.uniform(*BASE_CLICK_GIVEN_OPEN, size=(n_seg, 1))
    open_p = base_open + np.where(is_best, BEST_OPEN_LIFT, rng.uniform(*OTHER_OPEN_SHIFT, size=(n_seg, n_var)))
    click_p = base_click * np.where(is_best, BEST_CLICK_FACTOR, rng.uniform(*OTHER_CLICK_FACTOR, size=(n_seg, n_var)))
    # Copy that over-promises loses subscribers: the best variant unsubscribes least.
    unsubscribe_p = rng.uniform(*UNSUBSCRIBE_RANGE, size=(n_seg, n_var)) * np.where(is_best, 0.5, 1.0)
    return pd.DataFrame(
        {
            "segment": np.repeat(np.asarray(segments, dtype=object), n_var),
            "variant": np.tile(np.asarray(variants, dtype=object), n_seg),
            "open_p": np.clip(open_p, *OPEN_RANGE).ravel(),
            "click_p_given_open": np.clip(click_p, *CLICK_RANGE).ravel(),
            "unsubscribe_p": np.clip(unsubscribe_p, *UNSUBSCRIBE_RANGE).ravel(),
        }
    )


def expected_click_rate(appeal: pd.DataFrame) -> pd.Series:
    """Clicks per send of every (segment, variant): open_p x click_p_given_open."""
    return (appeal["open_p"] * appeal["click_p_given_open"]).set_axis(
        pd.MultiIndex.from_frame(appeal[["segment", "variant"]])
    ).rename("click_rate")


def simulate_responses(sends: pd.DataFrame, appeal: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The opens, clicks and unsubscribes ``sends`` (send_id, user_id, segment, variant,
    send_at) bring: ``send_id, user_id, event_type, event_ts``.

    An open comes hours after the send (exponential, mean 3 h, at most 48 h), a click
    minutes after the open, an unsubscribe minutes after the open; a send is opened,
    clicked and unsubscribed at most once. Every draw is made for every send, in send_id
    order, so the same sends and seed give the same events whatever the row order.
    """
    frame = sends[["send_id", "user_id", "segment", "variant", "send_at"]].merge(
        appeal[APPEAL_COLUMNS], on=["segment", "variant"], how="left", validate="many_to_one"
    )
    if frame["open_p"].isna().any():
        missing = frame.loc[frame["open_p"].isna(), ["segment", "variant"]].drop_duplicates()
        raise ValueError(f"no appeal for {missing.to_dict('records')[:5]}")
    if frame["send_id"].duplicated().any():
        raise ValueError("send_id must be unique")
    frame = frame.sort_values("send_id", kind="stable").reset_index(drop=True)
    n = len(frame)
    rng = np.random.default_rng(seed)
    u_open, u_click, u_unsub = rng.random(n), rng.random(n), rng.random(n)
    hours_to_open = np.minimum(rng.exponential(MEAN_HOURS_TO_OPEN, n), MAX_HOURS_TO_OPEN)
    minutes_to_click = rng.exponential(MEAN_MINUTES_TO_CLICK, n) + 0.1
    minutes_to_unsub = rng.exponential(MEAN_MINUTES_TO_UNSUBSCRIBE, n) + 0.1

    open_p = frame["open_p"].to_numpy()
    opened = u_open < open_p
    clicked = opened & (u_click < frame["click_p_given_open"].to_numpy())
    # Unsubscribing needs an open, so its chance given an open is unsubscribe_p / open_p.
    unsubscribed = opened & (u_unsub < np.minimum(frame["unsubscribe_p"].to_numpy() / open_p, 1.0))

    opened_at = utc_naive(frame["send_at"]) + pd.to_timedelta(np.round(hours_to_open * 3600), unit="s")
    events = pd.concat(
        [
            frame.loc[opened, ["send_id", "user_id"]].assign(event_type=OPEN, event_ts=opened_at[opened]),
            frame.loc[clicked, ["send_id", "user_id"]].assign(
                event_type=CLICK,
                event_ts=opened_at[clicked] + pd.to_timedelta(np.round(minutes_to_click[clicked] * 60), unit="s")),
            frame.loc[unsubscribed, ["send_id", "user_id"]].assign(
                event_type=UNSUBSCRIBE,
                event_ts=opened_at[unsubscribed] + pd.to_timedelta(np.round(minutes_to_unsub[unsubscribed] * 60), unit="s")),
        ],
        ignore_index=True,
    )
    return events.sort_values(["event_ts", "send_id", "event_type"], kind="stable").reset_index(drop=True)[RESPONSE_COLUMNS]
