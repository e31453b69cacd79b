"""Who may receive what, and when: consent, unsubscribes, frequency caps, one message a
day per channel, no promotion of what was just bought, and each user's usual hour.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from recs_pipeline.campaigns._frames import isin, utc_naive

# When several campaigns qualify for the same user, channel and day, the one sent is the
# most time-sensitive: stock and prices change, a theme newsletter can wait a day.
CAMPAIGN_PRIORITY = ("back_in_stock", "price_drop", "win_back", "welcome", "theme_picks")
DROP_REASONS = ("no_consent", "unsubscribed", "frequency_cap")
# The finer rule behind a frequency_cap drop, in the dropped frame's `detail` column.
DAILY_LIMIT, WINDOW_LIMIT = "daily_limit", "window_limit"


def _consenting(consent) -> pd.Index:
    if isinstance(consent, pd.DataFrame):
        flags = [c for c in consent.columns if c != "user_id"]
        if len(flags) != 1:
            raise ValueError("a consent frame has user_id and one boolean column")
        consent = consent.set_index("user_id")[flags[0]]
    consent = pd.Series(consent)
    return pd.Index(consent.index[consent.fillna(False).astype(bool).to_numpy()])


def _user_ids(users) -> pd.Index:
    if users is None:
        return pd.Index([])
    if isinstance(users, pd.DataFrame):
        return pd.Index(users["user_id"].dropna().unique())
    if isinstance(users, pd.Series):
        return pd.Index(users.dropna().unique())
    return pd.Index(list(users))


def _window_counts(chosen: pd.DataFrame, recent_sends: pd.DataFrame | None, day: pd.Timestamp, cap_days: int) -> np.ndarray:
    """Per chosen row: its (user, channel)'s sends on each day from ``cap_days - 1``
    before ``day`` to ``cap_days - 1`` after (a rows x (2 cap_days - 1) matrix)."""
    span = 2 * cap_days - 1
    counts = np.zeros((len(chosen), span), dtype=np.int64)
    if recent_sends is None or recent_sends.empty or chosen.empty:
        return counts
    history = recent_sends[["user_id", "channel"]].copy()
    history["offset"] = ((utc_naive(recent_sends["send_at"]).dt.normalize() - day).dt.days).to_numpy()
    history = history[history["offset"].abs() < cap_days]
    keyed = chosen[["user_id", "channel"]].assign(row=np.arange(len(chosen)))
    history = history.merge(keyed, on=["user_id", "channel"], how="inner")
    np.add.at(counts, (history["row"].to_numpy(), history["offset"].to_numpy() + cap_days - 1), 1)
    return counts


def eligible_sends(
    candidates: pd.DataFrame,
    consent,
    unsubscribed,
    recent_sends: pd.DataFrame | None,
    send_day: pd.Timestamp,
    frequency_cap: int,
    cap_days: int = 7,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ``candidates`` (user_id, channel, campaign, ...) that may be sent on
    ``send_day``, and the others with a ``reason`` (and a ``detail``).

    ``consent``: user_id -> bool (a Series, or a frame of user_id and one flag); a user
    without a consent record has none. ``unsubscribed``: user ids (a set, Series or
    frame with user_id), unsubscribed from every channel. Reasons, checked in order:
    ``no_consent``, ``unsubscribed``, ``frequency_cap``. The cap: at most one message a
    day per user and channel (the highest of :data:`CAMPAIGN_PRIORITY` wins, detail
    ``daily_limit``; so does a message already in ``recent_sends`` that day), and at
    most ``frequency_cap`` messages per user and channel in any ``cap_days``-day window
    holding the new one (detail ``window_limit``). Sends logged after ``send_day`` count
    too, so backfilling a past day cannot overfill a window that ends later.
    """
    if frequency_cap < 1 or cap_days < 1:
        raise ValueError("frequency_cap and cap_days must be at least 1")
    day = utc_naive(send_day).normalize()
    reason = np.full(len(candidates), None, dtype=object)
    detail = np.full(len(candidates), "", dtype=object)
    users = candidates["user_id"]
    reason[~isin(users, _consenting(consent))] = "no_consent"
    reason[pd.isna(reason) & isin(users, _user_ids(unsubscribed))] = "unsubscribed"

    open_rows = np.flatnonzero(pd.isna(reason))
    pending = candidates.iloc[open_rows][["user_id", "channel", "campaign"]].copy()
    priority = {c: i for i, c in enumerate(CAMPAIGN_PRIORITY)}
    pending["priority"] = pending["campaign"].map(priority).fillna(len(CAMPAIGN_PRIORITY)).to_numpy()
    pending["campaign_key"] = pending["campaign"].astype(str)
    pending["row"] = open_rows
    pending = pending.sort_values(["user_id", "channel", "priority", "campaign_key", "row"], kind="stable")
    first = ~pending.duplicated(["user_id", "channel"], keep="first").to_numpy()
    reason[pending["row"].to_numpy()[~first]] = "frequency_cap"
    detail[pending["row"].to_numpy()[~first]] = DAILY_LIMIT

    chosen = pending[first]
    counts = _window_counts(chosen, recent_sends, day, cap_days)
    sent_today = counts[:, cap_days - 1] > 0
    counts[:, cap_days - 1] += 1
    windows = np.lib.stride_tricks.sliding_window_view(counts, cap_days, axis=1).sum(axis=2)
    over_cap = windows.max(axis=1) > frequency_cap
    rows = chosen["row"].to_numpy()
    reason[rows[sent_today | over_cap]] = "frequency_cap"
    detail[rows[sent_today]] = DAILY_LIMIT
    detail[rows[over_cap & ~sent_today]] = WINDOW_LIMIT

    kept = pd.isna(reason)
    dropped = candidates[~kept].copy()
    dropped["reason"] = reason[~kept]
    dropped["detail"] = detail[~kept]
    return candidates[kept].copy(), dropped


def drop_recent_purchases(items: pd.DataFrame, purchases: pd.DataFrame, now: pd.Timestamp, days: float) -> pd.DataFrame:
    """``items`` (user_id, item_id, ...) without the items each user bought in the
    ``days`` before ``now`` (purchases: user_id, item_id, event_ts); promoting what was
    just bought wastes the message. Order and index are kept."""
    now = utc_naive(now)
    ts = utc_naive(purchases["event_ts"])
    recent = purchases.loc[(ts >= now - pd.Timedelta(days=days)) & (ts <= now), ["user_id", "item_id"]].drop_duplicates()
    key = pd.MultiIndex.from_frame(items[["user_id", "item_id"]])
    bought = key.isin(pd.MultiIndex.from_frame(recent)) if len(recent) else np.zeros(len(items), dtype=bool)
    return items[~np.asarray(bought)]


def send_hours(events: pd.DataFrame, default_hour: int = 10, users=None) -> pd.Series:
    """Each user's usual hour of activity (0-23, UTC): the most frequent hour of their
    ``events`` (user_id, event_ts), the earliest on a tie. ``users`` (optional) are
    listed too, with ``default_hour`` when they have no event."""
    hours = pd.DataFrame({"user_id": events["user_id"].to_numpy(),
                          "hour": utc_naive(events["event_ts"]).dt.hour.to_numpy()}).dropna()
    counts = hours.groupby(["user_id", "hour"], as_index=False).size()
    counts = counts.sort_values(["user_id", "size", "hour"], ascending=[True, False, True], kind="stable")
    usual = counts.drop_duplicates("user_id").set_index("user_id")["hour"].astype(np.int64)
    if users is not None:
        usual = usual.reindex(usual.index.union(_user_ids(users)), fill_value=int(default_hour))
    return usual.rename("send_hour")
