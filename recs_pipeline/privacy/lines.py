"""Where the user id sits in a source's delimited lines, and what to do with such lines.

Two jobs need it: redacting ``raw_line`` (the original text of a line the CSV parser
could not split, kept for debugging) at ingest, and rewriting the project's own landing
files without an erased user's lines. Both find the user field by position, from the
file's header and the source's column mapping; a field equal to an id known to belong
to a user is caught wherever it is.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from recs_pipeline.privacy.pseudonym import normalise_id


@dataclass(frozen=True)
class LineLayout:
    """How to split a source line and which field holds the user id (None: unknown)."""

    delimiter: str = ","
    user_index: int | None = None


def layout_from_header(header: list[str], user_column: str | None, delimiter: str = ",") -> LineLayout:
    index = header.index(user_column) if user_column and user_column in header else None
    return LineLayout(delimiter, index)


def split_line(line: str, layout: LineLayout) -> list[str]:
    """The fields of one physical line (lenient: a broken quote does not raise)."""
    try:
        return next(csv.reader([line], delimiter=layout.delimiter), [])
    except csv.Error:
        return line.split(layout.delimiter)


def render_line(fields: list[str], layout: LineLayout) -> str:
    out = io.StringIO()
    csv.writer(out, delimiter=layout.delimiter, quoting=csv.QUOTE_MINIMAL, lineterminator="").writerow(fields)
    return out.getvalue()


def _canonical(value: str, known: dict[str, str]) -> str | None:
    """The id a field holds, as the adapter would have read it (Online Retail writes
    customer 17850 as ``17850.0``)."""
    v = normalise_id(value)
    if v is None:
        return None
    if v not in known and v.endswith(".0") and v[:-2] in known:
        return v[:-2]
    return v


def redact_line(
    line: str,
    layout: LineLayout,
    known: dict[str, str],
    pseudonym_of: Callable[[str], str | None],
) -> tuple[str, set[str]]:
    """``line`` with its user field, and any field equal to a known id, replaced by the
    pseudonym. Returns the new line and the pseudonyms it now holds."""
    fields = split_line(line, layout)
    found: set[str] = set()
    changed = False
    for i, value in enumerate(fields):
        canonical = _canonical(value, known)
        if canonical is None:
            continue
        if canonical in known:
            pseudonym = known[canonical]
        elif i == layout.user_index:
            pseudonym = pseudonym_of(canonical)
        else:
            continue
        fields[i] = pseudonym
        found.add(pseudonym)
        changed = True
    return (render_line(fields, layout) if changed else line), found


def owner_of_line(line: str, layout: LineLayout, ids: set[str]) -> str | None:
    """Which of ``ids`` a physical line of a source file belongs to (None: nobody's):
    its user field, or (when the position is unknown) any field, equals the id."""
    fields = split_line(line, layout)
    if layout.user_index is not None:
        candidates = [fields[layout.user_index]] if layout.user_index < len(fields) else []
    else:
        candidates = fields
    for field in candidates:
        value = normalise_id(field)
        if value is None:
            continue
        if value in ids:
            return value
        if value.endswith(".0") and value[:-2] in ids:
            return value[:-2]
    return None


def id_pattern(values: Iterable[str]) -> str:
    """An RE2/Python regex matching any of ``values`` as a whole token (not inside a
    longer id: U0001 does not match U00012)."""
    alternatives = "|".join(re.escape(v) for v in sorted(set(values), key=len, reverse=True))
    return f"(^|[^A-Za-z0-9_])({alternatives})([^A-Za-z0-9_]|$)"


@dataclass
class RewriteResult:
    path: Path
    removed: list[tuple[int, str]]  # (physical line number, header = 1; whose line) of each removed line


def rewrite_without(path: Path, layout: LineLayout, ids: set[str], encoding: str = "utf-8") -> RewriteResult:
    """Rewrite a delimited file without the lines of ``ids``, atomically (temp file +
    rename, keeping the file's mode). The header and every other byte stay as they were."""
    text = path.read_bytes().decode(encoding, errors="surrogateescape")
    parts = text.split("\n")  # physical lines as DuckDB counts them (not str.splitlines' many breaks)
    lines = [part + "\n" for part in parts[:-1]] + ([parts[-1]] if parts[-1] else [])
    kept, removed = [], []
    for number, line in enumerate(lines, start=1):
        owner = owner_of_line(line.rstrip("\r\n"), layout, ids) if number > 1 else None
        if owner is None:
            kept.append(line)
        else:
            removed.append((number, owner))
    if removed:
        tmp = path.with_name(f".{path.name}.erasure.tmp")
        tmp.write_bytes("".join(kept).encode(encoding, errors="surrogateescape"))
        tmp.chmod(path.stat().st_mode & 0o7777)
        tmp.replace(path)
    return RewriteResult(path, removed)
