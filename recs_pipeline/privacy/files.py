"""The source files as the privacy code sees them: where their user field is, and which
of them the project owns (may rewrite) rather than only reads."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from recs_pipeline.privacy.lines import LineLayout, layout_from_header
from recs_pipeline.settings import SHARED_DATA_DIR
from recs_pipeline.sources.adapters import CsvSource, OnlineRetailSource
from recs_pipeline.sources.base import Source, read_header


def event_line_layout(source: Source, day: date) -> LineLayout:
    """How the day's events file splits into fields and where its user id is."""
    path = source.event_files().get(day)
    if isinstance(source, OnlineRetailSource):
        return layout_from_header(list(source.HEADER), "CustomerID")
    if isinstance(source, CsvSource) and path is not None and source.cfg.file_format == "csv":
        delimiter = source.cfg.delimiter
        user_column = source.cfg.event_columns.get("user_id", "user_id")
        return layout_from_header(read_header(path, delimiter), user_column, delimiter)
    return LineLayout()


def _is_within(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


def owned_files(source: Source, owned_roots: list[Path]) -> list[tuple[Path, LineLayout]]:
    """The delimited files of ``source`` the project may rewrite, with their layout.

    Only CSV sources whose folder lies inside one of ``owned_roots`` (the landing zone,
    the data folder) qualify, and never anything under ../shared/data: shared and
    external data sets are read-only, erased users are kept out of them at ingest by
    the suppression list instead.
    """
    if not isinstance(source, CsvSource) or source.cfg.file_format != "csv":
        return []
    root = Path(source.root)
    if _is_within(root, SHARED_DATA_DIR) or not any(_is_within(root, r) for r in owned_roots):
        return []
    cfg = source.cfg
    files = []
    for path in source.event_files().values():
        if _is_within(path, SHARED_DATA_DIR):
            continue
        header = read_header(path, cfg.delimiter)
        files.append((path, layout_from_header(header, cfg.event_columns.get("user_id", "user_id"), cfg.delimiter)))
    users = root / cfg.users_file
    if users.is_file() and not _is_within(users, SHARED_DATA_DIR):
        header = read_header(users, cfg.delimiter)
        files.append((users, layout_from_header(header, cfg.user_columns.get("user_id", "user_id"), cfg.delimiter)))
    return files
