"""Injecting known defects into a day's event lines, with their ground truth.

Real shop logs are dirty; the pipeline's quarantine must catch every bad line with the
right reason and keep every good one. To test that line by line, each defect is a
corrupted copy of a clean line inserted right after it (so no clean event is lost and
the clean events in a file are exactly what the simulator produced), and its physical
line number and kind are recorded. Each defect line breaks exactly one rule.
"""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, timedelta

import numpy as np

# The exact strings written to _truth/defects.csv (and the pipeline's reject reasons).
DEFECT_KINDS: tuple[str, ...] = (
    "duplicate",
    "missing_user_id",
    "unknown_event_type",
    "unparseable_timestamp",
    "future_timestamp",
    "negative_price",
    "unknown_item",
    "malformed_line",
)

# Event names a careless client might send; none is a canonical type in any letter case.
UNKNOWN_EVENT_TYPES = ("viewed", "wishlist", "page_view", "checkout", "add-to-basket")
UNPARSEABLE_TIMESTAMPS = ("not-a-date", "2026-13-45 25:61", "31/02/2026 10:00", "yesterday")
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"

# Field positions in the canonical event line.
USER, ITEM, EVENT_TYPE, EVENT_TS, PRICE = 0, 1, 2, 3, 5


def n_defects_for(n_clean: int, dirt_rate: float) -> int:
    """Defects to add so that they are ``dirt_rate`` of all lines (clean + defects)."""
    if dirt_rate <= 0 or n_clean == 0:
        return 0
    return min(n_clean, round(n_clean * dirt_rate / (1.0 - dirt_rate)))


def _render(fields: list[str]) -> str:
    out = io.StringIO()
    csv.writer(out, quoting=csv.QUOTE_MINIMAL, lineterminator="").writerow(fields)
    return out.getvalue()


def corrupt(line: str, kind: str, rng: np.random.Generator) -> str:
    """A copy of the clean, non-search event ``line`` with exactly one defect of ``kind``."""
    if kind == "duplicate":
        return line
    fields = next(csv.reader([line]))
    if kind == "missing_user_id":
        fields[USER] = ""
    elif kind == "unknown_event_type":
        fields[EVENT_TYPE] = str(rng.choice(UNKNOWN_EVENT_TYPES))
    elif kind == "unparseable_timestamp":
        fields[EVENT_TS] = str(rng.choice(UNPARSEABLE_TIMESTAMPS))
    elif kind == "future_timestamp":
        ts = datetime.strptime(fields[EVENT_TS], TIMESTAMP_FORMAT) + timedelta(days=int(rng.integers(30, 366)))
        fields[EVENT_TS] = ts.strftime(TIMESTAMP_FORMAT)
    elif kind == "negative_price":
        fields[PRICE] = "-" + fields[PRICE]
    elif kind == "unknown_item":
        # The letter suffix guarantees the id can never be a catalogue id.
        fields[ITEM] = f"I{int(rng.integers(90000, 100000))}x"
    elif kind == "malformed_line":
        # The first three fields (ids, event type) never hold a comma or a quote, so the
        # truncated line is cut cleanly; an extra field keeps every quote balanced.
        fields = fields[:3] if rng.random() < 0.5 else [*fields, "web"]
    else:
        raise ValueError(f"unknown defect kind {kind!r}")
    return _render(fields)


def inject_defects(
    lines: list[str], can_template: np.ndarray, day: date, dirt_rate: float, rng: np.random.Generator
) -> tuple[list[str], list[tuple[int, str]]]:
    """Insert defect lines into a day's clean data lines (no header).

    ``can_template`` marks the lines a defect may copy (events with an item and a price).
    Kinds rotate with the day so that they are spread evenly over a landing zone.
    Returns the new data lines and ``(physical line number, kind)`` of every defect,
    counting the header as line 1.
    """
    candidates = np.flatnonzero(can_template)
    k = min(n_defects_for(len(lines), dirt_rate), len(candidates))
    if k == 0:
        return list(lines), []
    templates = np.sort(rng.choice(candidates, size=k, replace=False))
    kinds = rng.permutation(np.resize(np.roll(DEFECT_KINDS, -(day.toordinal() % len(DEFECT_KINDS))), k))
    defect_lines = [corrupt(lines[t], str(kind), rng) for t, kind in zip(templates, kinds)]
    merged = np.insert(np.array(lines, dtype=object), templates + 1, np.array(defect_lines, dtype=object))
    # The j-th defect follows its template (data index t) and the j defects before it;
    # data index i is physical line i + 2.
    truth = [(int(t) + j + 3, str(kind)) for j, (t, kind) in enumerate(zip(templates, kinds))]
    return merged.tolist(), truth
