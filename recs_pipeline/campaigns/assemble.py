"""Assembling the day's campaign sends from the warehouse's frames: who gets which
campaign, which items, the send id and time, and the checks over the send log.

Pure functions over pandas (no Dagster, no engine); ``recs_pipeline.defs.campaigns``
reads the frames and writes the tables.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa

from recs_pipeline.campaigns._frames import isin, utc_naive

if TYPE_CHECKING:
    from recs_pipeline.settings import CampaignSettings

# A primary segment's campaign (the dbt model marketing.segments); other segments get
# the theme newsletter.
SEGMENT_CAMPAIGN = {"new_user": "welcome", "lapsed_customer": "win_back"}
DEFAULT_CAMPAIGN = "theme_picks"
# back_in_stock and price_drop need the history of the catalogue; the warehouse keeps
# its latest snapshot only (raw.items, staging.stg_items).
NO_CATALOGUE_HISTORY = (
    "back_in_stock and price_drop: none sent (the warehouse keeps only the latest catalogue snapshot, "
    "so it cannot tell what came back in stock or got cheaper)"
)
DEFAULT_SEND_HOUR = 10  # UTC, for a user without events
SEND_HOUR_HISTORY_DAYS = 90  # the events a user's usual hour is read from
NO_ITEMS = "no_items"  # a drop reason of its own: nothing left to promote

SENDS_SCHEMA = pa.schema(
    [
        ("send_id", pa.string()),
        ("send_date", pa.date32()),
        ("user_id", pa.string()),
        ("channel", pa.string()),
        ("campaign", pa.string()),
        ("variant", pa.string()),
        ("headline", pa.string()),
        ("preheader", pa.string()),
        ("items", pa.string()),
        ("send_at", pa.timestamp("us")),
        ("segment", pa.string()),
        ("theme_id", pa.int64()),
        ("policy", pa.string()),
    ]
)
SEND_COLUMNS = SENDS_SCHEMA.names


def campaign_of(segments: pd.Series) -> pd.Series:
    """The campaign of each primary segment: welcome, win_back or theme_picks."""
    return segments.map(SEGMENT_CAMPAIGN).fillna(DEFAULT_CAMPAIGN).astype(object)


def send_ids(user_ids: Sequence[str], channel: Sequence[str] | str, day) -> np.ndarray:
    """``s_`` + 16 hex digits of SHA-256(user_id|channel|day): the same user, channel and
    day always give the same id (so a rerun of the day replaces it, not adds one)."""
    day_text = pd.Timestamp(day).date().isoformat()
    channels = [channel] * len(user_ids) if isinstance(channel, str) else list(channel)
    return np.asarray(
        ["s_" + hashlib.sha256(f"{u}|{c}|{day_text}".encode()).hexdigest()[:16] for u, c in zip(user_ids, channels)],
        dtype=object,
    )


def draw_seed(seed: int, day, *parts: str) -> int:
    """A seed for one day's draws of one (campaign, channel): reruns of the day draw the
    same, another day draws anew."""
    text = "|".join([str(int(seed)), pd.Timestamp(day).date().isoformat(), *parts])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


def pick_items(recommendations: pd.DataFrame, top_theme: pd.Series, item_theme: pd.Series, n: int) -> pd.DataFrame:
    """Up to ``n`` items per user from ``recommendations`` (user_id, rank, item_id,
    title, price; recently bought items already left out): the items of the user's top
    theme (``top_theme``: user_id -> theme_id) first, then the others, each by rank.
    ``item_theme``: item_id -> theme_id. Adds ``position`` (1 = first)."""
    recs = recommendations.copy()
    wanted = recs["user_id"].map(top_theme)
    theme = recs["item_id"].map(item_theme)
    recs["off_theme"] = ~(wanted.notna() & theme.notna() & (wanted == theme)).to_numpy()
    recs = recs.sort_values(["user_id", "off_theme", "rank", "item_id"], kind="stable")
    recs["position"] = recs.groupby("user_id").cumcount().astype(np.int64) + 1
    return recs[recs["position"] <= n].drop(columns="off_theme").reset_index(drop=True)


def items_json(picked: pd.DataFrame) -> pd.DataFrame:
    """Per user: ``items`` (a JSON list of {item_id, title, price} in position order, as
    marketing.personalized_content writes it), ``first_title``, ``first_price``,
    ``n_items``."""
    columns = ["user_id", "items", "first_title", "first_price", "n_items"]
    if picked.empty:
        return pd.DataFrame(columns=columns)
    rows = picked.sort_values(["user_id", "position"], kind="stable").reset_index(drop=True)
    title = pd.Series([None if pd.isna(t) else str(t) for t in rows["title"]], dtype=object)
    price = pd.Series([None if pd.isna(v) else round(float(v), 2) for v in rows["price"]], dtype=object)
    # Each item's JSON object exactly as json.dumps writes it (same escapes and number
    # forms), one string per row, joined per user: no loop over users (200k at L, where
    # a groupby loop building dicts took most of the step).
    encode = json.JSONEncoder(separators=(",", ":")).encode
    rows["item_json"] = ('{"item_id":' + rows["item_id"].astype(str).map(encode) + ',"title":' + title.map(encode)
                         + ',"price":' + price.map(encode) + "}")  # fmt: skip
    grouped = rows.groupby("user_id", sort=True)["item_json"]
    first = ~rows["user_id"].duplicated()
    return pd.DataFrame({
        "user_id": rows.loc[first, "user_id"].to_numpy(),
        "items": ("[" + grouped.agg(",".join) + "]").to_numpy(),
        "first_title": title[first].to_numpy(),
        "first_price": price[first].to_numpy(dtype=float),  # NaN without a price, as before
        "n_items": grouped.size().to_numpy(),
    }, columns=columns)  # fmt: skip


def candidates(audience: pd.DataFrame, channels: Sequence[str]) -> pd.DataFrame:
    """One candidate message per user of ``audience`` (user_id, segment, ...) and
    channel, with the campaign of the user's primary segment."""
    frame = audience.merge(pd.DataFrame({"channel": list(channels)}), how="cross")
    frame["campaign"] = campaign_of(frame["segment"]).to_numpy()
    return frame.sort_values(["user_id", "channel"], kind="stable").reset_index(drop=True)


def send_times(user_ids: pd.Series, hours: pd.Series, day) -> pd.Series:
    """The send day plus each user's usual hour (``hours``: user_id -> 0-23; the
    default hour for users it lacks)."""
    hour = user_ids.map(hours).fillna(DEFAULT_SEND_HOUR).astype(np.int64).to_numpy()
    start = utc_naive(pd.Timestamp(day)).normalize()
    return pd.Series(start + pd.to_timedelta(hour, unit="h"), index=user_ids.index)


def send_table(frame: pd.DataFrame) -> pa.Table:
    """The rows of marketing.campaign_sends, in send_id order, as Arrow with the table's
    types (so an empty day still has them)."""
    rows = frame[SEND_COLUMNS].sort_values("send_id", kind="stable").reset_index(drop=True)
    rows = rows.astype({"theme_id": "Int64"})
    rows["send_at"] = utc_naive(rows["send_at"]).astype("datetime64[us]")
    rows["send_date"] = pd.to_datetime(rows["send_date"]).dt.date
    return pa.Table.from_pandas(rows, schema=SENDS_SCHEMA, preserve_index=False)


def rule_violations(
    log: pd.DataFrame, consent: pd.Series, frequency_cap: int, cap_days: int, unsubscribed_at: pd.Series | None = None
) -> dict[str, int]:
    """What breaks the send rules in a send log (user_id, channel, send_at): sends of a
    user/channel beyond ``frequency_cap`` in some ``cap_days``-day window
    (``over_frequency_cap``: the windows that hold too many), more than one a day
    (``over_daily_limit``: the extra sends), sends to users without consent
    (``without_consent``; ``consent``: user_id -> bool) and sends planned after the
    user unsubscribed (``after_unsubscribe``; ``unsubscribed_at``: user_id -> the first
    unsubscribe's time): a send dated a later day than the unsubscribe (a day's sends
    are planned the night before, so one the same day was already on its way)."""
    if log.empty:
        return {"over_frequency_cap": 0, "over_daily_limit": 0, "without_consent": 0, "after_unsubscribe": 0}
    days = pd.DataFrame({
        "user_id": log["user_id"].to_numpy(), "channel": log["channel"].to_numpy(),
        "day": utc_naive(log["send_at"]).dt.normalize().to_numpy(),
    })
    per_day = days.groupby(["user_id", "channel", "day"]).size().rename("n").reset_index()
    over_daily = int((per_day["n"] - 1).clip(lower=0).sum())
    # The windows ending on a day with a send (the fullest window always ends on one):
    # per (user, channel), the sends of the days in (day - cap_days, day].
    per_day = per_day.sort_values(["user_id", "channel", "day"], kind="stable")
    key = pd.factorize(pd.MultiIndex.from_frame(per_day[["user_id", "channel"]]))[0].astype(np.int64)
    day_number = (per_day["day"].to_numpy().astype("datetime64[D]").astype(np.int64))
    position = key * (1 << 32) + (day_number - day_number.min())
    start = np.searchsorted(position, position - int(cap_days) + 1, side="left")
    total = np.concatenate([[0], np.cumsum(per_day["n"].to_numpy())])
    window = total[1:] - total[start]
    over_cap = int((window > frequency_cap).sum())
    consenting = consent.fillna(False).astype(bool)
    allowed = consenting[consenting].index
    without = int((~isin(log["user_id"], allowed)).sum())
    after = 0
    if unsubscribed_at is not None and len(unsubscribed_at):
        left = utc_naive(log["user_id"].map(unsubscribed_at)).dt.normalize()
        after = int((days["day"] > left.to_numpy()).sum())
    return {"over_frequency_cap": over_cap, "over_daily_limit": over_daily, "without_consent": without,
            "after_unsubscribe": after}  # fmt: skip


@dataclass(frozen=True)
class SendInputs:
    """What the day's sends are made from (frames read from the warehouse):

    ``audience``: user_id, segment, category, theme_id, theme (primary segments and top
    theme); ``consent``: user_id, marketing_consent; ``unsubscribed``: user ids;
    ``recent_sends``: user_id, channel, send_at of the log around the day (or None);
    ``recommendations``: user_id, rank, item_id, title, price; ``recent_purchases``:
    user_id, item_id, event_ts; ``item_theme``: item_id, theme_id; ``activity``:
    user_id, event_ts (for the usual hour); ``posteriors``: marketing.variant_posteriors.
    """

    audience: pd.DataFrame
    consent: pd.DataFrame
    unsubscribed: pd.Series
    recent_sends: pd.DataFrame | None
    recommendations: pd.DataFrame
    recent_purchases: pd.DataFrame
    item_theme: pd.DataFrame
    activity: pd.DataFrame
    posteriors: pd.DataFrame


@dataclass(frozen=True)
class SendPlan:
    candidates: pd.DataFrame  # every (user, channel, campaign) wanted, before the rules
    sends: pd.DataFrame  # the kept ones with items, variant, copy, send_id and send_at
    dropped: pd.DataFrame  # the others, with reason and detail
    rows: pa.Table  # marketing.campaign_sends rows of the day (send_table)


def plan_sends(
    inputs: SendInputs, day: date, now: pd.Timestamp, cfg: CampaignSettings, items_per_channel: Mapping[str, int]
) -> SendPlan:
    """The day's sends: each primary-segment user's campaign on every channel of
    ``cfg.channels``, within the send rules (consent, unsubscribes, the daily limit and
    the frequency cap), with up to ``items_per_channel[channel]`` fresh recommendations
    (favourite theme first; none bought in ``cfg.recently_bought_days``), a copy variant
    drawn by Thompson sampling per campaign and channel (seeded by the day), the rendered
    headline and preheader, and the send time at the user's usual hour."""
    from recs_pipeline.campaigns.bandit import choose_variants
    from recs_pipeline.campaigns.copy import render
    from recs_pipeline.campaigns.send_rules import drop_recent_purchases, eligible_sends, send_hours

    wanted = candidates(inputs.audience, cfg.channels)
    kept, dropped = eligible_sends(wanted, inputs.consent, inputs.unsubscribed, inputs.recent_sends,
                                   pd.Timestamp(day), cfg.frequency_cap, cfg.cap_days)  # fmt: skip
    fresh = drop_recent_purchases(inputs.recommendations, inputs.recent_purchases, now, cfg.recently_bought_days)
    top_theme = inputs.audience.dropna(subset=["theme_id"]).set_index("user_id")["theme_id"]
    item_theme = inputs.item_theme.set_index("item_id")["theme_id"]
    parts = []
    for channel in cfg.channels:  # a channel or two: each is one vectorised pass
        on_channel = kept[kept["channel"] == channel]
        picked = pick_items(fresh[fresh["user_id"].isin(on_channel["user_id"])], top_theme, item_theme,
                            items_per_channel[channel])  # fmt: skip
        parts.append(on_channel.merge(items_json(picked), on="user_id", how="left"))
    frame = pd.concat(parts, ignore_index=True) if parts else kept.iloc[:0]
    empty = frame["items"].isna() if "items" in frame else pd.Series(True, index=frame.index)
    dropped = pd.concat([dropped, frame[empty].assign(reason=NO_ITEMS, detail="")], ignore_index=True)
    frame = frame[~empty].reset_index(drop=True)

    chosen = []
    for (campaign, channel), group in frame.groupby(["campaign", "channel"], sort=True):
        seed = draw_seed(cfg.seed, day, campaign, channel)
        picks = choose_variants(group[["user_id", "segment"]],
                                inputs.posteriors[inputs.posteriors["campaign"] == campaign], cfg.explore_share, seed)  # fmt: skip
        chosen.append(picks.assign(channel=channel))
    if chosen:
        frame = frame.merge(pd.concat(chosen, ignore_index=True), on=["user_id", "channel"], how="left")
    else:
        frame = frame.assign(variant=pd.Series([], dtype=object), policy=pd.Series([], dtype=object))
    frame["headline"], frame["preheader"] = render(frame) if len(frame) else (frame["variant"], frame["variant"])
    frame["send_id"] = send_ids(frame["user_id"].tolist(), frame["channel"].tolist(), day)
    frame["send_date"] = day
    frame["send_at"] = send_times(frame["user_id"], send_hours(inputs.activity), day)
    return SendPlan(candidates=wanted, sends=frame, dropped=dropped, rows=send_table(frame))
