"""Continue a generated shop for more days, shoppers seeing the pipeline's lists.

This is the synthetic half of the feedback loop: the pipeline publishes lists
(``serving.published_recommendations``), the shop shows them to visiting users, who
click and buy according to their *true* tastes, and the new day files land like any
other. The next pipeline run ingests them and measures each variant.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import pandas as pd

from recs_pipeline.engine import Engine
from recs_pipeline.synthetic.dirt import DEFECT_KINDS
from recs_pipeline.synthetic.shop import TRACKED_EVENT_COLUMNS, SyntheticShop, _write_text, write_day, write_snapshots

ListsForDay = Callable[[date], pd.DataFrame | None]
SendsForDay = Callable[[date], pd.DataFrame | None]


class NoListsError(RuntimeError):
    """The warehouse has no published lists yet."""


def lists_from_warehouse(engine: Engine | None, user_map: Mapping[str, str] | None = None) -> ListsForDay:
    """day -> the lists in force that day (the newest ``list_date`` on or before it),
    from ``serving.published_recommendations``.

    The warehouse holds pseudonyms, not the shop's ids: ``user_map`` (pseudonym -> shop
    id, see :func:`pseudonym_map`) translates them back; users it does not know (erased
    ones) are left out."""
    if engine is None:
        raise NoListsError("no warehouse yet")
    with engine.session(read_only=True) as db:
        if not db.table_exists("serving.published_recommendations"):
            raise NoListsError("no published recommendations yet")
        lists = db.df("SELECT list_date, user_id, item_id, rank FROM serving.published_recommendations")
    if user_map is not None and len(lists):
        own = lists["user_id"].map(user_map)
        if own.isna().all():
            raise NoListsError(
                "no published list belongs to a user of this shop: is RECS_PSEUDONYM_KEY the key the pipeline ran with?"
            )
        lists = lists.assign(user_id=own).dropna(subset=["user_id"]).reset_index(drop=True)
    lists["list_date"] = pd.to_datetime(lists["list_date"]).dt.date
    dates = sorted(lists["list_date"].unique())

    def lists_for_day(day: date) -> pd.DataFrame | None:
        in_force = [d for d in dates if d <= day]
        return lists[lists["list_date"] == in_force[-1]] if in_force else None

    return lists_for_day


def sends_from_warehouse(engine: Engine | None, user_map: Mapping[str, str]) -> SendsForDay:
    """day -> the campaign sends dated that day (``marketing.campaign_sends``, the
    columns of :data:`~recs_pipeline.synthetic.messages.SEND_COLUMNS`) with the shop's
    own user ids; None when there are none (no campaigns yet, or campaigns off)."""
    from recs_pipeline.synthetic.messages import SEND_COLUMNS

    sends = None
    if engine is not None:
        with engine.session(read_only=True) as db:
            if db.table_exists("marketing.campaign_sends"):
                sends = db.df(f"SELECT send_date, {', '.join(SEND_COLUMNS)} FROM marketing.campaign_sends ORDER BY send_id")
    if sends is not None:
        sends["user_id"] = sends["user_id"].map(user_map)
        sends = sends.dropna(subset=["user_id"])
        sends["send_date"] = pd.to_datetime(sends["send_date"]).dt.date

    def sends_for_day(day: date) -> pd.DataFrame | None:
        if sends is None:
            return None
        today = sends[sends["send_date"] == day]
        return today.drop(columns="send_date").reset_index(drop=True) if len(today) else None

    return sends_for_day


def pseudonym_map(landing_dir: Path, pseudonymize: Callable[[list[str]], list[str]]) -> dict[str, str]:
    """pseudonym -> shop user id for every user of the generated shop. The shop knows
    the pipeline's key (settings) and hashes its own ids: no reverse table is stored."""
    shop = SyntheticShop.load_state(Path(landing_dir) / "_truth" / "state.npz")
    ids = [str(u) for u in shop.user_ids]
    return dict(zip(pseudonymize(ids), ids))


@dataclass
class ContinuationReport:
    days: list[date]
    n_events_written: int
    n_impressions: int
    n_defects: dict[str, int] = field(default_factory=dict)
    n_sends_answered: int = 0  # campaign sends delivered (their responses may come later)
    n_message_events: int = 0


def continue_landing_zone(
    landing_dir: Path, n_days: int, lists_for_day: ListsForDay | None = None, sends_for_day: SendsForDay | None = None
) -> ContinuationReport:
    """Simulate ``n_days`` more days after the last one in ``landing_dir``.

    ``lists_for_day(day)`` returns the lists in force that day (user_id, item_id, rank)
    or None; ``sends_for_day(day)`` the campaign sends dated that day (see
    :func:`sends_from_warehouse`), which the shop's message tool delivers and whose
    recipients answer (:mod:`recs_pipeline.synthetic.messages`). The day files, the
    defects ground truth and the simulator state are updated; the catalogue and user
    snapshots are rewritten as of the new last day.
    """
    from recs_pipeline.synthetic import messages as tool

    landing_dir = Path(landing_dir)
    state = landing_dir / "_truth" / "state.npz"
    shop = SyntheticShop.load_state(state)
    last = shop.last_simulated_day or shop.config.days[-1]
    days = [last + timedelta(days=i + 1) for i in range(n_days)]
    defects_path = landing_dir / "_truth" / "defects.csv"
    truth_lines = defects_path.read_text().splitlines()[1:] if defects_path.exists() else []
    counts = {kind: 0 for kind in DEFECT_KINDS}
    n_lines = n_impressions = n_sends = n_messages = 0
    truth = landing_dir / "_truth"
    appeal = tool.campaign_appeal(shop.config.seed)
    appeal.to_csv(truth / tool.APPEAL_FILE, index=False)
    pending = tool.read_pending(truth)
    prices = pd.Series(shop.item_price, index=shop.item_ids)
    for day in days:
        sends = sends_for_day(day) if sends_for_day else None
        if sends is not None:
            answered = tool.message_events(sends, appeal, prices, seed=shop.config.seed + day.toordinal())
            pending = answered if pending is None else pd.concat([pending, answered], ignore_index=True)
            n_sends += len(sends)
        due = None
        if pending is not None:
            due, pending = tool.due_on(pending, day)
            n_messages += len(due)
        path, lines, defects = write_day(shop, landing_dir, day, lists_for_day(day) if lists_for_day else None, due,
                                         columns=TRACKED_EVENT_COLUMNS)  # fmt: skip
        name = f"events/{path.name}"
        truth_lines = [t for t in truth_lines if not t.startswith(name + ",")]
        truth_lines += [f"{name},{line},{kind}" for line, kind in defects]
        n_impressions += sum(1 for line in path.read_text().splitlines() if ",impression," in line)
        for _, kind in defects:
            counts[kind] += 1
        n_lines += lines
    _write_text(defects_path, ("file", "line", "kind"), truth_lines)
    tool.write_pending(truth, pending if pending is not None else pd.DataFrame())
    write_snapshots(shop, landing_dir, days[-1] if days else last)
    shop.save_state(state)
    return ContinuationReport(days=days, n_events_written=n_lines, n_impressions=n_impressions, n_defects=counts,
                              n_sends_answered=n_sends, n_message_events=n_messages)  # fmt: skip
