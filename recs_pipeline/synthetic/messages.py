"""The synthetic shop's e-mail and push tool: it delivers the pipeline's campaign sends
and reports what recipients did with them, as canonical events in the day files.

Each campaign has a hidden appeal per segment and copy variant
(:func:`recs_pipeline.campaigns.simulation.hidden_appeal`, seeded by the shop's seed and
the campaign), which the pipeline never sees: recipients open, click, unsubscribe and
buy the message's first item accordingly. A response happens hours after its send, so
it may belong to a later day than the send: responses due after the day being written
wait in ``_truth/pending_messages.csv`` until their day is simulated. The appeal is
written to ``_truth/campaign_appeal.csv``, so a benchmark can judge the bandit against it.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from recs_pipeline.campaigns import CAMPAIGNS
from recs_pipeline.campaigns.copy import variants_of
from recs_pipeline.campaigns.evaluation import SEGMENTS
from recs_pipeline.campaigns.simulation import APPEAL_COLUMNS, CLICK, expected_click_rate, hidden_appeal, simulate_responses

SENT = "message_sent"
PURCHASE_P_GIVEN_CLICK = 0.2  # a click lands on the item's page; some of those buy it
MEAN_MINUTES_TO_PURCHASE = 15.0
APPEAL_FILE = "campaign_appeal.csv"
PENDING_FILE = "pending_messages.csv"
# The send's columns the tool needs (from marketing.campaign_sends, ids mapped back to the shop's).
SEND_COLUMNS = ["send_id", "user_id", "campaign", "segment", "variant", "send_at", "items"]
_MESSAGE_STREAM = 7  # the appeal's own random stream, apart from the shop's others


def campaign_appeal(seed: int) -> pd.DataFrame:
    """``campaign`` + :data:`APPEAL_COLUMNS` for every campaign, segment and variant: each
    campaign's variants have a best one per segment, drawn from its own seed."""
    parts = []
    for k, campaign in enumerate(CAMPAIGNS):
        own = int(np.random.default_rng([seed, _MESSAGE_STREAM, k]).integers(2**31))
        parts.append(hidden_appeal(variants_of(campaign), SEGMENTS, own).assign(campaign=campaign))
    return pd.concat(parts, ignore_index=True)[["campaign", *APPEAL_COLUMNS]]


def appeal_click_rates(appeal: pd.DataFrame) -> pd.DataFrame:
    """``campaign, segment, variant, click_rate`` (expected clicks per send)."""
    rates = [expected_click_rate(rows).reset_index().assign(campaign=c) for c, rows in appeal.groupby("campaign")]
    return pd.concat(rates, ignore_index=True)[["campaign", "segment", "variant", "click_rate"]]


def message_events(sends: pd.DataFrame, appeal: pd.DataFrame, item_price: pd.Series, seed: int) -> pd.DataFrame:
    """The events ``sends`` bring (:data:`SEND_COLUMNS`; ``items`` a JSON list of
    ``{"item_id": ...}``): a ``message_sent`` at each send's time, then the opens,
    clicks (on the first item) and unsubscribes of
    :func:`~recs_pipeline.campaigns.simulation.simulate_responses`, and a purchase of
    that item after a fifth of the clicks, each with its ``send_id``. Columns: user_id,
    item_id, event_type, event_ts (UTC), quantity, price, session_id, search_query,
    send_id. A send of a segment or variant without appeal gets no response."""
    columns = ["user_id", "item_id", "event_type", "event_ts", "quantity", "price", "session_id", "search_query", "send_id"]
    if sends.empty:
        return pd.DataFrame(columns=columns)
    sends = sends[SEND_COLUMNS].copy()
    sends["send_at"] = pd.to_datetime(sends["send_at"], utc=True).dt.tz_localize(None)
    sends["first_item"] = [json.loads(items)[0]["item_id"] if items else None for items in sends["items"]]
    known = sends.merge(appeal[["campaign", "segment", "variant"]], on=["campaign", "segment", "variant"], how="inner")
    responses = pd.concat(
        [simulate_responses(rows, appeal[appeal["campaign"] == campaign], seed=_seed(seed, campaign))
         for campaign, rows in known.groupby("campaign", sort=True)],
        ignore_index=True,
    ) if len(known) else pd.DataFrame(columns=["send_id", "user_id", "event_type", "event_ts"])  # fmt: skip
    first_item = sends.set_index("send_id")["first_item"]

    clicks = responses[responses["event_type"] == CLICK]
    rng = np.random.default_rng([seed, _MESSAGE_STREAM, len(CAMPAIGNS)])
    clicks = clicks.sort_values("send_id", kind="stable")
    u = rng.random(len(clicks))
    minutes = rng.exponential(MEAN_MINUTES_TO_PURCHASE, len(clicks)) + 0.5
    buys = clicks[u < PURCHASE_P_GIVEN_CLICK].assign(
        event_type="purchase",
        event_ts=clicks["event_ts"].to_numpy()[u < PURCHASE_P_GIVEN_CLICK]
        + pd.to_timedelta(np.round(minutes[u < PURCHASE_P_GIVEN_CLICK] * 60), unit="s"),
    )
    buys = buys[buys["send_id"].map(first_item).notna().to_numpy()]  # nothing to buy in an item-less message
    delivered = sends[["send_id", "user_id", "send_at"]].rename(columns={"send_at": "event_ts"}).assign(event_type=SENT)
    events = pd.concat([delivered, responses, buys], ignore_index=True)
    events["item_id"] = events["send_id"].map(first_item).where(events["event_type"].isin([CLICK, "purchase"]), None)
    is_purchase = (events["event_type"] == "purchase").to_numpy()
    events["quantity"] = np.where(is_purchase, 1, np.nan)
    events["price"] = np.where(is_purchase, events["item_id"].map(item_price).to_numpy(dtype=float), np.nan)
    events["session_id"] = None
    events["search_query"] = None
    events["event_ts"] = pd.to_datetime(events["event_ts"]).dt.tz_localize("UTC")
    order = {SENT: 0, "message_open": 1, CLICK: 2, "unsubscribe": 3, "purchase": 4}
    events["_order"] = events["event_type"].map(order)
    events = events.sort_values(["event_ts", "send_id", "_order"], kind="stable").reset_index(drop=True)
    return events[columns]


def _seed(seed: int, campaign: str) -> int:
    return int(np.random.default_rng([seed, _MESSAGE_STREAM, CAMPAIGNS.index(campaign) + 1000]).integers(2**31))


def due_on(events: pd.DataFrame, day: date) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the events of ``day`` or earlier, the later ones) by the UTC day of event_ts."""
    when = pd.to_datetime(events["event_ts"], utc=True).dt.tz_localize(None).dt.normalize()
    due = (when <= pd.Timestamp(day)).to_numpy()
    return events[due].reset_index(drop=True), events[~due].reset_index(drop=True)


def read_pending(truth_dir: Path) -> pd.DataFrame | None:
    path = Path(truth_dir) / PENDING_FILE
    if not path.exists():
        return None
    frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    frame["event_ts"] = pd.to_datetime(frame["event_ts"], utc=True)
    for column in ("quantity", "price"):
        frame[column] = pd.to_numeric(frame[column])
    return frame


def write_pending(truth_dir: Path, pending: pd.DataFrame) -> None:
    path = Path(truth_dir) / PENDING_FILE
    if pending.empty:
        path.unlink(missing_ok=True)
        return
    pending.to_csv(path, index=False, date_format="%Y-%m-%dT%H:%M:%SZ")
