"""Continue a generated shop for more days, shoppers seeing the pipeline's lists.

This is the synthetic half of the feedback loop: the pipeline publishes lists
(``serving.published_recommendations``), the shop shows them to visiting users, who
click and buy according to their *true* tastes, and the new day files land like any
other. The next pipeline run ingests them and measures each variant.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import pandas as pd

from recs_pipeline.synthetic.dirt import DEFECT_KINDS, inject_defects
from recs_pipeline.synthetic.shop import (
    DIRT_STREAM,
    EVENT_COLUMNS,
    SyntheticShop,
    _events_text,
    _write_text,
)

ListsForDay = Callable[[date], pd.DataFrame | None]


@dataclass
class ContinuationReport:
    days: list[date]
    n_events_written: int
    n_impressions: int
    n_defects: dict[str, int] = field(default_factory=dict)


def continue_landing_zone(landing_dir: Path, n_days: int, lists_for_day: ListsForDay | None = None) -> ContinuationReport:
    """Simulate ``n_days`` more days after the last one in ``landing_dir``.

    ``lists_for_day(day)`` returns the lists in force that day (user_id, item_id, rank)
    or None. The day files, the defects ground truth and the simulator state are
    updated; the catalogue and user snapshots are rewritten as of the new last day.
    """
    landing_dir = Path(landing_dir)
    state = landing_dir / "_truth" / "state.npz"
    shop = SyntheticShop.load_state(state)
    last = shop.last_simulated_day or shop.config.days[-1]
    days = [last + timedelta(days=i + 1) for i in range(n_days)]
    defects_path = landing_dir / "_truth" / "defects.csv"
    truth_lines = defects_path.read_text().splitlines()[1:] if defects_path.exists() else []
    counts = {kind: 0 for kind in DEFECT_KINDS}
    n_lines = n_impressions = 0
    for day in days:
        lists = lists_for_day(day) if lists_for_day else None
        frame = shop.simulate_day(day, lists)
        n_impressions += int((frame["event_type"] == "impression").sum())
        lines = _events_text(frame[list(EVENT_COLUMNS)])
        can_template = (frame["item_id"].notna() & frame["price"].notna()).to_numpy()
        lines, defects = inject_defects(lines, can_template, day, shop.config.dirt_rate, shop._day_rng(day, DIRT_STREAM))
        name = f"events/{day.isoformat()}.csv"
        truth_lines = [t for t in truth_lines if not t.startswith(name + ",")]
        truth_lines += [f"{name},{line},{kind}" for line, kind in defects]
        _write_text(landing_dir / name, EVENT_COLUMNS, lines)
        for _, kind in defects:
            counts[kind] += 1
        n_lines += len(lines)
    _write_text(defects_path, ("file", "line", "kind"), truth_lines)
    new_last = days[-1] if days else last
    items = shop.items[shop.items["launch_date"] <= new_last]
    items = items.assign(in_stock=items["in_stock"].map({True: "true", False: "false"}))
    items.to_csv(landing_dir / "items" / "items.csv", columns=["item_id", "title", "category", "brand", "price",
                 "description", "in_stock", "launch_date"], index=False, lineterminator="\n", float_format="%.2f")
    users = shop.users[shop.users["signup_date"] <= new_last]
    users = users.assign(marketing_consent=users["marketing_consent"].map({True: "true", False: "false"}))
    users.to_csv(landing_dir / "users" / "users.csv", columns=["user_id", "signup_date", "age_band", "gender",
                 "country", "marketing_consent"], index=False, lineterminator="\n")
    shop.save_state(state)
    return ContinuationReport(days=days, n_events_written=n_lines, n_impressions=n_impressions, n_defects=counts)
