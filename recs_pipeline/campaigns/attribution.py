"""Which send earned which open, click, purchase and unsubscribe, and each campaign
variant's rates with their uncertainty.

A response that names its send (a tracked link or pixel carries the send_id) goes to
that send. One that does not goes to the user's latest send before it, if that send is
recent enough (a window per response type). Each send counts each kind of response at
most once, and each purchase goes to at most one send.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
from scipy.stats import norm

from recs_pipeline.campaigns._frames import isin, utc_naive

RESPONSES = {"message_open": "opened", "message_click": "clicked", "purchase": "converted", "unsubscribe": "unsubscribed"}
FLAGS = ["opened", "clicked", "converted", "unsubscribed"]
Z95 = float(norm.ppf(0.975))


def _credited(sends: pd.DataFrame, events: pd.DataFrame, windows: dict[str, float]) -> pd.DataFrame:
    """``send_id, flag, revenue, event_row`` per credited event."""
    named = events["send_id"].notna() if "send_id" in events else pd.Series(False, index=events.index)
    parts = []
    if named.any():
        # A send id is trusted only for its own user (a forwarded email's clicks are not
        # the recipient's response).
        tagged = events[named].merge(sends[["send_id", "user_id"]], on=["send_id", "user_id"], how="inner")
        parts.append(tagged[["send_id", "flag", "revenue", "event_row"]])
    untagged = events[~named.to_numpy()]
    by_time = sends[["send_id", "user_id", "send_at"]].sort_values(["send_at", "send_id"], kind="stable")
    for flag, hours in windows.items():
        pending = untagged[untagged["flag"] == flag].drop(columns="send_id", errors="ignore").sort_values("event_ts")
        if pending.empty:
            continue
        matched = pd.merge_asof(
            pending, by_time, left_on="event_ts", right_on="send_at", by="user_id",
            tolerance=pd.Timedelta(hours=hours), direction="backward", allow_exact_matches=True,
        )
        parts.append(matched.loc[matched["send_id"].notna(), ["send_id", "flag", "revenue", "event_row"]])
    if not parts:
        return pd.DataFrame({"send_id": sends["send_id"].iloc[:0], "flag": [], "revenue": [], "event_row": []})
    return pd.concat(parts, ignore_index=True)


def attribute(
    sends: pd.DataFrame,
    events: pd.DataFrame,
    open_window_h: float,
    click_window_h: float,
    purchase_window_h: float,
    unsubscribe_window_h: float | None = None,
) -> pd.DataFrame:
    """One row per send (its columns, plus ``campaign`` from the variant id when absent)
    with ``delivered, opened, clicked, converted, revenue, unsubscribed``.

    ``sends``: send_id, user_id, variant, segment, send_at. ``events``: user_id,
    event_type (message_open, message_click, purchase, unsubscribe; others are ignored),
    event_ts, optional send_id and revenue. Events without a send_id go to the user's
    latest send at or before them within the window of their type (unsubscribes: the
    click window unless given); a tagged event counts whenever it comes, but only for
    its own user, and a send_id not among ``sends`` credits nothing. ``revenue`` sums the purchases credited to the send. A
    click counts as an open too: image-blocking clients click without an open pixel.
    """
    if sends["send_id"].duplicated().any():
        raise ValueError("send_id must be unique")
    sends = sends.copy()
    sends["send_at"] = utc_naive(sends["send_at"])
    if "campaign" not in sends:
        sends["campaign"] = sends["variant"].astype(str).str.split(".", n=1).str[0]
    relevant = events[events["event_type"].isin(list(RESPONSES))]
    frame = pd.DataFrame({
        "user_id": relevant["user_id"].to_numpy(),
        "flag": relevant["event_type"].map(RESPONSES).to_numpy(),
        "event_ts": utc_naive(relevant["event_ts"]).to_numpy(),
        "send_id": relevant["send_id"].to_numpy() if "send_id" in relevant else None,
        "revenue": pd.to_numeric(relevant["revenue"], errors="coerce").fillna(0.0).to_numpy()
        if "revenue" in relevant else 0.0,
        "event_row": np.arange(len(relevant)),
    })
    windows = {"opened": open_window_h, "clicked": click_window_h, "converted": purchase_window_h,
               "unsubscribed": click_window_h if unsubscribe_window_h is None else unsubscribe_window_h}
    credited = _credited(sends, frame, windows)
    # Every event row is credited once at most (merge_asof matches one send; a tagged
    # event names one): dropping duplicates by event_row is only a guard.
    credited = credited.drop_duplicates("event_row")
    out = sends.reset_index(drop=True)
    for flag in FLAGS:
        out[flag] = isin(out["send_id"], credited.loc[credited["flag"] == flag, "send_id"])
    out["opened"] = out["opened"] | out["clicked"]
    # Delivered: the sender reported the message sent (only a tagged report counts).
    sent = events["event_type"] == "message_sent"
    out["delivered"] = isin(out["send_id"], events.loc[sent, "send_id"].dropna()) if "send_id" in events else False
    revenue = credited[credited["flag"] == "converted"].groupby("send_id")["revenue"].sum()
    out["revenue"] = out["send_id"].map(revenue).astype(float).fillna(0.0).to_numpy()
    return out


def wilson_interval(successes, trials, z: float = Z95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a binomial proportion (NaN without trials): unlike the
    normal approximation it stays inside [0, 1] and is honest at small counts."""
    k = np.asarray(successes, dtype=float)
    n = np.asarray(trials, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = k / n
        denominator = 1 + z**2 / n
        centre = (p + z**2 / (2 * n)) / denominator
        half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / denominator
    low = np.where(n > 0, np.clip(centre - half, 0.0, 1.0), np.nan)
    high = np.where(n > 0, np.clip(centre + half, 0.0, 1.0), np.nan)
    return low, high


def campaign_results(per_send: pd.DataFrame, by: Sequence[str] = ("campaign", "variant")) -> pd.DataFrame:
    """Per ``by`` group (campaign and variant by default; add ``segment`` to feed the
    bandit): ``sends, opens, clicks, conversions, revenue`` (and ``delivered``,
    ``unsubscribes`` when ``per_send`` has those flags), the rates per send and their
    95% Wilson intervals (``open_rate_low``, ``open_rate_high``, ...)."""
    by = list(by)
    grouped = per_send.groupby(by, sort=True, dropna=False)
    aggregations = {"sends": ("send_id", "size")}
    if "delivered" in per_send:
        aggregations["delivered"] = ("delivered", "sum")
    aggregations.update(opens=("opened", "sum"), clicks=("clicked", "sum"), conversions=("converted", "sum"),
                        revenue=("revenue", "sum"))  # fmt: skip
    if "unsubscribed" in per_send:
        aggregations["unsubscribes"] = ("unsubscribed", "sum")
    out = grouped.agg(**aggregations).reset_index()
    for count in ("sends", "delivered", "opens", "clicks", "conversions", "unsubscribes"):
        if count in out:
            out[count] = out[count].astype(np.int64)
    for rate, count in (("open_rate", "opens"), ("click_rate", "clicks"), ("conversion_rate", "conversions")):
        out[rate] = out[count] / out["sends"]
        out[f"{rate}_low"], out[f"{rate}_high"] = wilson_interval(out[count], out["sends"])
    return out


OUTCOME_SCHEMA = pa.schema(
    [
        ("send_id", pa.string()), ("send_date", pa.date32()), ("user_id", pa.string()), ("channel", pa.string()),
        ("campaign", pa.string()), ("segment", pa.string()), ("variant", pa.string()), ("policy", pa.string()),
        ("send_at", pa.timestamp("us")), ("delivered", pa.bool_()), ("opened", pa.bool_()), ("clicked", pa.bool_()),
        ("converted", pa.bool_()), ("revenue", pa.float64()), ("unsubscribed", pa.bool_()),
    ]
)  # fmt: skip


def outcome_table(
    sends: pd.DataFrame | None,
    events: pd.DataFrame | None,
    open_window_h: float,
    click_window_h: float,
    purchase_window_h: float,
) -> pa.Table:
    """:func:`attribute` as the rows of ``feedback.campaign_send_outcomes``
    (:data:`OUTCOME_SCHEMA`, in send_id order); no rows without sends, and no responses
    without events."""
    if sends is None or sends.empty:
        return OUTCOME_SCHEMA.empty_table()
    if events is None:
        events = pd.DataFrame({"user_id": [], "event_type": [], "event_ts": pd.Series([], dtype="datetime64[us]"),
                               "send_id": [], "revenue": []})  # fmt: skip
    per_send = attribute(sends, events, open_window_h, click_window_h, purchase_window_h)
    rows = per_send[OUTCOME_SCHEMA.names].sort_values("send_id", kind="stable").reset_index(drop=True)
    rows["send_at"] = utc_naive(rows["send_at"]).astype("datetime64[us]")
    rows["send_date"] = pd.to_datetime(rows["send_date"]).dt.date
    return pa.Table.from_pandas(rows, schema=OUTCOME_SCHEMA, preserve_index=False)


def reconciled_results(logged: pd.DataFrame, per_send: pd.DataFrame, by: Sequence[str] = ("campaign", "variant")) -> pd.DataFrame:
    """The rows of ``feedback.campaign_results``: per ``by`` group of the send log
    (``logged``: ``by`` columns and ``sends``, every logged send) the
    :func:`campaign_results` of its measured sends (``per_send``, the outcomes), as
    ``sends`` (all logged) and ``sends_measured``; a group without outcomes has zero
    counts and NaN rates. So ``sends`` adds up to the log, ``sends_measured`` to the
    outcomes."""
    by = list(by)
    measured = campaign_results(per_send, by=by).rename(columns={"sends": "sends_measured"})
    out = logged[[*by, "sends"]].merge(measured, on=by, how="outer", sort=True)
    counts = ["sends", "sends_measured", "delivered", "opens", "clicks", "conversions", "unsubscribes"]
    for column in counts:
        if column in out:
            out[column] = out[column].fillna(0).astype(np.int64)
    out["revenue"] = out["revenue"].fillna(0.0).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        out["revenue_per_send"] = np.where(out["sends_measured"] > 0, out["revenue"] / out["sends_measured"], np.nan)
    return out.reset_index(drop=True)
