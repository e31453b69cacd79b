"""Erasure ("right to be forgotten"): remove users from everything the pipeline holds.

A request is a list of the shop's own user ids (``recs erase U000123 ...``, or a file
dropped in ``<landing>/erasure_requests/``). For each user, in this order:

1. the pseudonym's SHA-256 goes on the suppression list (committed first: from now on
   no load brings the user back, even from a read-only source or a re-delivered file);
2. the landing files the project owns are rewritten without the user's lines
   (atomically; shared and external data sets are never touched);
3. the user is removed from every stored model (id and own embedding; the model is
   then never warm-started from, so the next training starts from scratch);
4. the published snapshot is rebuilt without the user's rows (a new file, swapped in);
5. every warehouse table with a user id column loses the user's rows, and every
   ``raw_line`` mentioning the user (by pseudonym or, in rows loaded before
   pseudonymisation existed, by the original id) goes too; the audit row is written
   in the same transaction;
6. the live warehouse file is compacted: rewritten into a fresh file (``COPY FROM
   DATABASE``) swapped in by a rename, because DuckDB's DELETE leaves the old bytes in
   freed blocks of the file. The writer lock is held from step 5 to the swap.

The suppression list and the audit (``privacy.erasure_log``) hold the SHA-256 of the
pseudonym (``pseudonym_sha256``), never the pseudonym or the shop's id, so after the
compaction the erased pseudonym's bytes are nowhere in the file (nor in the rebuilt
snapshot). Steps are idempotent: a request that failed half-way is simply processed
again.

On another engine (Spark) :func:`erase_users_on` does steps 1-5 through the engine
interface, table by table (no multi-table transaction); step 6 is not needed there, as
deleting rows writes a table's Parquet files anew and removes the old ones.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pyarrow as pa

from recs_pipeline.engine.base import Engine, Session
from recs_pipeline.privacy.files import owned_files
from recs_pipeline.privacy.lines import id_pattern, rewrite_without
from recs_pipeline.privacy.pseudonym import Pseudonymizer, normalise_id
from recs_pipeline.privacy.suppression import (
    ERASURE_LOG,
    ERASURE_LOG_ARROW_SCHEMA,
    ERASURE_LOG_DDL,
    LEGACY_COLUMN,
    digest_select_list,
    ensure_privacy_schema,
    pseudonym_digest,
    suppress,
    suppress_on,
    table_columns,
)
from recs_pipeline.sources.base import Source, sql_literal
from recs_pipeline.warehouse import attach_with_retry, connection, writer_lock

# ERASURE_LOG and its DDL live in privacy/suppression.py (ensure_privacy_schema migrates
# both privacy tables); imported above and re-exported from here.
SKIP_SCHEMAS = ("privacy",)  # the audit and the suppression list: digests of pseudonyms, no user rows
REQUEST_SUFFIXES = (".csv", ".txt")


def ensure_erasure_log(con: duckdb.DuckDBPyConnection) -> None:
    """The privacy schema, the suppression list and the audit table; tables made before
    the digest (a clear ``pseudonym`` column) are migrated first, in one transaction."""
    ensure_privacy_schema(con)
    con.execute(ERASURE_LOG_DDL)


@dataclass
class ErasureRequest:
    """Original user ids to erase. They live in memory only: nothing stores them."""

    user_ids: list[str]
    origin: str  # "cli" or "file:<name>"
    requested_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    path: Path | None = None  # the request file, deleted once processed
    request_id: str = field(default_factory=lambda: f"req-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}")


@dataclass
class UserErasure:
    pseudonym: str
    rows_deleted: dict[str, int] = field(default_factory=dict)  # warehouse table -> rows
    snapshot_rows_deleted: dict[str, int] = field(default_factory=dict)
    files_rewritten: dict[str, int] = field(default_factory=dict)  # file -> lines removed
    models_scrubbed: list[str] = field(default_factory=list)


@dataclass
class ErasureReport:
    request_id: str
    origin: str
    users: list[UserErasure]
    # Size of the live warehouse file before and after its compaction (None: not compacted).
    warehouse_bytes: tuple[int, int] | None = None

    @property
    def rows_deleted(self) -> dict[str, int]:
        total: dict[str, int] = defaultdict(int)
        for u in self.users:
            for table, n in u.rows_deleted.items():
                total[table] += n
        return dict(sorted(total.items()))

    @property
    def snapshot_rows_deleted(self) -> int:
        return sum(sum(u.snapshot_rows_deleted.values()) for u in self.users)

    @property
    def lines_removed(self) -> int:
        return sum(sum(u.files_rewritten.values()) for u in self.users)

    @property
    def files_rewritten(self) -> list[str]:
        return sorted({f for u in self.users for f in u.files_rewritten})

    @property
    def models_scrubbed(self) -> list[str]:
        return sorted({m for u in self.users for m in u.models_scrubbed})

    def summary(self) -> str:
        return (
            f"{self.request_id}: {len(self.users)} user(s) erased, {sum(self.rows_deleted.values())} warehouse row(s) "
            f"in {len(self.rows_deleted)} table(s), {self.snapshot_rows_deleted} snapshot row(s), "
            f"{self.lines_removed} landing line(s) in {len(self.files_rewritten)} file(s), "
            f"{len(self.models_scrubbed)} model(s) scrubbed"
            + (
                f"; warehouse compacted {self.warehouse_bytes[0] / 1e6:.1f} -> {self.warehouse_bytes[1] / 1e6:.1f} MB"
                if self.warehouse_bytes
                else ""
            )
        )


def parse_request_text(text: str) -> list[str]:
    """User ids of a request file: one per line (a CSV whose first column is the id, or
    plain text); a ``user_id`` header, blank lines and ``#`` comments are skipped."""
    ids = []
    for number, line in enumerate(text.splitlines()):
        value = normalise_id(line.split(",")[0].strip().strip('"'))
        if value is None or value.startswith("#") or (number == 0 and value.lower() == "user_id"):
            continue
        ids.append(value)
    return list(dict.fromkeys(ids))


def pending_requests(folder: Path) -> list[ErasureRequest]:
    """The request files waiting in ``folder`` (oldest first)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    files = sorted(
        (p for p in folder.iterdir() if p.is_file() and p.suffix in REQUEST_SUFFIXES and not p.name.startswith(".")),
        key=lambda p: (p.stat().st_mtime, p.name),
    )
    return [
        ErasureRequest(
            user_ids=parse_request_text(p.read_text(encoding="utf-8")),
            origin=f"file:{p.name}",
            requested_at=datetime.fromtimestamp(p.stat().st_mtime, timezone.utc),
            path=p,
        )
        for p in files
    ]


# --- the warehouse ------------------------------------------------------------------


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


KEY_COLUMNS = ("event_id", "serve_id")  # ids of a user's events, in tables that name no user


def user_columns(con: duckdb.DuckDBPyConnection, catalog: str | None = None) -> dict[tuple[str, str], dict]:
    """(schema, table) -> {"ids": user id columns, "raw_line": bool, "keys": event key
    columns} for every base table that can hold a user's rows: a text column named
    ``user_id`` (or ``..._user_id``), ``raw_line``, or an event key (``event_id``,
    ``serve_id``: e.g. feedback.attributed_events credits a user's clicks by key only)."""
    catalog_sql = sql_literal(catalog) if catalog else "current_database()"
    keys = ", ".join(sql_literal(k) for k in KEY_COLUMNS)
    rows = con.execute(
        f"""SELECT c.table_schema, c.table_name, c.column_name
            FROM information_schema.columns c
            JOIN information_schema.tables t USING (table_catalog, table_schema, table_name)
            WHERE t.table_type = 'BASE TABLE' AND c.table_catalog = {catalog_sql}
              AND c.data_type = 'VARCHAR'
              AND (c.column_name = 'user_id' OR c.column_name LIKE '%\\_user\\_id' ESCAPE '\\'
                   OR c.column_name = 'raw_line' OR c.column_name IN ({keys}))
            ORDER BY ALL"""
    ).fetchall()
    found: dict[tuple[str, str], dict] = {}
    for schema, table, column in rows:
        if schema in SKIP_SCHEMAS:
            continue
        entry = found.setdefault((schema, table), {"ids": [], "raw_line": False, "keys": []})
        if column == "raw_line":
            entry["raw_line"] = True
        elif column in KEY_COLUMNS:
            entry["keys"].append(column)
        else:
            entry["ids"].append(column)
    return found


def _predicate(columns: dict, ids: list[str], pattern: str, keys_table: str | None = None) -> tuple[str, list]:
    """SQL condition (and its parameters) true for the rows of a table that belong to
    ``ids``; ``keys_table`` (one column ``k``) holds the keys of their events."""
    parts, params = [], []
    for column in columns["ids"]:
        parts.append(f"{_quote(column)} IN ({', '.join('?' for _ in ids)})")
        params += ids
    if columns["raw_line"]:
        parts.append("coalesce(regexp_matches(raw_line, ?), false)")
        params.append(pattern)
    if keys_table:
        parts += [f"{_quote(column)} IN (SELECT k FROM {keys_table})" for column in columns["keys"]]
    return " OR ".join(parts) or "false", params


def _collect_event_keys(
    con: duckdb.DuckDBPyConnection, holding: dict, prefix: str, ids: list[str], keys_table: str
) -> None:
    """Fill temp table ``keys_table`` with the event keys of rows that name ``ids``."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE {keys_table} (k VARCHAR)")
    pattern = id_pattern(ids)
    for (schema, table), columns in holding.items():
        if not columns["keys"] or not (columns["ids"] or columns["raw_line"]):
            continue
        where, params = _predicate({**columns, "keys": []}, ids, pattern)
        for column in columns["keys"]:
            con.execute(
                f"INSERT INTO {keys_table} SELECT DISTINCT {_quote(column)} FROM {prefix}{_quote(schema)}.{_quote(table)} "
                f"WHERE ({where}) AND {_quote(column)} IS NOT NULL",
                params,
            )


def delete_user_rows(con: duckdb.DuckDBPyConnection, pseudonym: str, original: str) -> dict[str, int]:
    """Delete one user's rows from every table of the open warehouse; table -> rows.
    Event keys are collected first, so rows that hold only a key of the user's events
    go too."""
    ids = [pseudonym, original]
    pattern = id_pattern(ids)
    holding = user_columns(con)
    _collect_event_keys(con, holding, "", ids, "_erased_event_keys")
    deleted = {}
    for (schema, table), columns in holding.items():
        where, params = _predicate(columns, ids, pattern, "_erased_event_keys")
        n = con.execute(f"DELETE FROM {_quote(schema)}.{_quote(table)} WHERE {where}", params).fetchall()[0][0]
        if n:
            deleted[f"{schema}.{table}"] = int(n)
    con.execute("DROP TABLE IF EXISTS _erased_event_keys")
    return deleted


def rebuild_snapshot_without(
    snapshot: Path, users: dict[str, str], lock_timeout_s: float = 600.0
) -> dict[str, dict[str, int]]:
    """Replace the published snapshot by a copy without the users' rows (a new file, so
    no deleted bytes linger in it). ``users``: pseudonym -> original id. Returns
    pseudonym -> {table: rows left out}."""
    counts: dict[str, dict[str, int]] = {p: {} for p in users}
    if not snapshot.exists():
        return counts
    tmp = snapshot.with_name(f".{snapshot.stem}.erasure.tmp.duckdb")
    tmp.unlink(missing_ok=True)
    everyone = [i for pair in users.items() for i in pair]
    with connection(":memory:") as con:
        attach_with_retry(con, f"ATTACH {sql_literal(snapshot)} AS old (READ_ONLY)", lock_timeout_s)
        con.execute(f"ATTACH {sql_literal(tmp)} AS new")
        holding = user_columns(con, "old")
        tables = con.execute(
            "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = 'old' ORDER BY ALL"
        ).fetchall()
        for pseudonym, original in users.items():
            ids, keys = [pseudonym, original], "_keys_user"
            _collect_event_keys(con, holding, "old.", ids, keys)
            for (schema, table), columns in holding.items():
                where, params = _predicate(columns, ids, id_pattern(ids), keys)
                n = con.execute(
                    f"SELECT count(*) FROM old.{_quote(schema)}.{_quote(table)} WHERE {where}", params
                ).fetchall()[0][0]
                if n:
                    counts[pseudonym][f"{schema}.{table}"] = int(n)
        _collect_event_keys(con, holding, "old.", everyone, "_keys_all")
        for schema, table in tables:
            con.execute(f"CREATE SCHEMA IF NOT EXISTS new.{_quote(schema)}")
            source = f"old.{_quote(schema)}.{_quote(table)}"
            target = f"new.{_quote(schema)}.{_quote(table)}"
            columns = holding.get((schema, table))
            if not columns:
                legacy = table_columns(con, table, "old") if schema == "privacy" else []
                # A snapshot published before the digest: its privacy tables hold clear
                # pseudonyms (earlier erasures'); the new file gets their digests.
                select = digest_select_list(legacy) if LEGACY_COLUMN in legacy else "*"
                con.execute(f"CREATE TABLE {target} AS SELECT {select} FROM {source}")
                continue
            where, params = _predicate(columns, everyone, id_pattern(everyone), "_keys_all")
            con.execute(f"CREATE TABLE {target} AS SELECT * FROM {source} WHERE NOT coalesce(({where}), false)", params)
        con.execute("DETACH new")
        con.execute("DETACH old")
    os.replace(tmp, snapshot)
    return counts


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def compact_warehouse(warehouse_path: Path, lock_timeout_s: float = 600.0) -> tuple[int, int]:
    """Rewrite the live warehouse into a fresh file and swap it in; returns its size in
    bytes before and after.

    DuckDB's DELETE marks rows deleted and frees their blocks for reuse, but the bytes
    stay in the file until overwritten: an erased user's pseudonym could still be read
    from it. ``COPY FROM DATABASE`` writes only live rows (and the schemas, views,
    macros and sequences) to a new file, as ``publish_snapshot`` does. Crash-safe: the
    copy is written under a temporary name in the same folder, checkpointed and
    fsynced, then ``os.replace``d over the live file, so a crash leaves the old file or
    the new one, whole. The writer lock is held throughout, so no run writes in
    between; a stale ``.wal`` of the live file is removed before the swap (it would be
    replayed onto the new file). A reader holding the old file open (``recs sql
    --live``) keeps reading the old file until it reconnects."""
    warehouse_path = Path(warehouse_path)
    tmp = warehouse_path.with_name(f".{warehouse_path.stem}.compact.tmp{warehouse_path.suffix}")
    tmp_wal, live_wal = Path(f"{tmp}.wal"), Path(f"{warehouse_path}.wal")
    # Attached under its own catalog name, so views that name it (dbt's do) still bind.
    alias = _quote(warehouse_path.stem)
    with writer_lock(warehouse_path, lock_timeout_s):
        tmp.unlink(missing_ok=True)  # left by a compaction that crashed: never swapped in
        tmp_wal.unlink(missing_ok=True)
        try:
            with connection(":memory:") as con:
                # Read-write, so that a WAL left by a crashed writer is replayed and
                # checkpointed first (the copy must hold every committed row).
                attach_with_retry(con, f"ATTACH {sql_literal(warehouse_path)} AS {alias}", lock_timeout_s)
                con.execute(f"CHECKPOINT {alias}")
                before = warehouse_path.stat().st_size
                con.execute(f"ATTACH {sql_literal(tmp)} AS compacted")
                try:
                    con.execute(f"COPY FROM DATABASE {alias} TO compacted")
                    con.execute("CHECKPOINT compacted")
                finally:
                    con.execute("DETACH compacted")
                    con.execute(f"DETACH {alias}")
            if tmp_wal.exists() and tmp_wal.stat().st_size:
                raise RuntimeError(f"{tmp_wal} is not empty after the checkpoint: the compaction is not whole")
            tmp_wal.unlink(missing_ok=True)
            _fsync(tmp)
        except BaseException:
            tmp.unlink(missing_ok=True)  # the live file is untouched
            tmp_wal.unlink(missing_ok=True)
            raise
        live_wal.unlink(missing_ok=True)  # checkpointed above: anything left is stale
        os.replace(tmp, warehouse_path)
        _fsync(warehouse_path.parent)  # the rename itself
        return before, warehouse_path.stat().st_size


# --- landing files --------------------------------------------------------------------


def _renumber_truth(root: Path, removed: dict[Path, list[int]]) -> None:
    """Keep the synthetic shop's defect ground truth (file, line, kind) in step with
    rewritten files: removed lines leave it, later lines move up."""
    truth = root / "_truth" / "defects.csv"
    if not truth.is_file() or not removed:
        return
    by_name = {str(path.relative_to(root)): sorted(lines) for path, lines in removed.items() if path.is_relative_to(root)}
    out = []
    lines = truth.read_text().splitlines()
    for row in lines[1:]:
        name, line, kind = row.rsplit(",", 2)
        gone = by_name.get(name)
        if gone:
            number = int(line)
            if number in gone:
                continue
            row = f"{name},{number - sum(1 for g in gone if g < number)},{kind}"
        out.append(row)
    tmp = truth.with_name(f".{truth.name}.erasure.tmp")
    tmp.write_text("\n".join([lines[0], *out]) + "\n")
    tmp.replace(truth)


def rewrite_landing_files(source: Source | None, owned_roots: list[Path], ids: set[str]) -> dict[str, dict[str, int]]:
    """Remove the users' lines from every landing file the project owns; returns
    original id -> {file: lines removed}."""
    result: dict[str, dict[str, int]] = {i: {} for i in ids}
    if source is None:
        return result
    removed_lines: dict[Path, list[int]] = {}
    for path, layout in owned_files(source, owned_roots):
        rewrite = rewrite_without(path, layout, ids)
        if not rewrite.removed:
            continue
        removed_lines[path] = [n for n, _ in rewrite.removed]
        name = str(path.relative_to(source.root)) if path.is_relative_to(source.root) else str(path)
        for _, owner in rewrite.removed:
            result[owner][name] = result[owner].get(name, 0) + 1
    _renumber_truth(Path(source.root), removed_lines)
    return result


# --- the whole request ----------------------------------------------------------------


def _erase_outside_warehouse(
    by_pseudonym: dict[str, UserErasure],
    users: dict[str, str],
    originals: list[str],
    snapshot_path: Path | None,
    model_dir: Path | None,
    source: Source | None,
    owned_roots: Iterable[Path],
    lock_timeout_s: float,
) -> None:
    """Steps 2-4, the same on every engine: landing files, stored models and the
    published snapshot (a DuckDB file on every engine). ``users``: pseudonym -> id."""
    files = rewrite_landing_files(source, [Path(r) for r in owned_roots], set(originals))
    for pseudonym, original in users.items():
        by_pseudonym[pseudonym].files_rewritten = files.get(original, {})

    if model_dir is not None:
        from recs_pipeline.privacy.models import scrub_models  # imports LightFM

        for pseudonym, versions in scrub_models(Path(model_dir), set(users)).items():
            by_pseudonym[pseudonym].models_scrubbed = versions

    if snapshot_path is not None:
        for pseudonym, counts in rebuild_snapshot_without(Path(snapshot_path), users, lock_timeout_s).items():
            by_pseudonym[pseudonym].snapshot_rows_deleted = counts


def _audit_row(
    request: ErasureRequest, pseudonymizer: Pseudonymizer, erasure: UserErasure, requested_at: datetime, erased_at: datetime
) -> list:
    """One user's row of ``privacy.erasure_log``, in its column order."""
    return [
        request.request_id,
        pseudonym_digest(erasure.pseudonym),  # never the pseudonym itself
        request.origin,
        pseudonymizer.key_fingerprint,
        requested_at,
        erased_at,
        sorted(erasure.rows_deleted),
        json.dumps(erasure.rows_deleted, sort_keys=True),
        sum(erasure.rows_deleted.values()),
        sum(erasure.snapshot_rows_deleted.values()),
        sorted(erasure.files_rewritten),
        sum(erasure.files_rewritten.values()),
        erasure.models_scrubbed,
    ]


def erase_users(
    request: ErasureRequest,
    pseudonymizer: Pseudonymizer,
    warehouse_path: Path,
    *,
    snapshot_path: Path | None = None,
    model_dir: Path | None = None,
    source: Source | None = None,
    owned_roots: Iterable[Path] = (),
    lock_timeout_s: float = 600.0,
    compact: bool = True,
) -> ErasureReport:
    """Carry out one erasure request everywhere (see the module docstring). ``compact``:
    rewrite the live warehouse file afterwards (step 6), so no freed block keeps the
    erased rows' bytes."""
    originals = [i for i in dict.fromkeys(normalise_id(u) for u in request.user_ids) if i is not None]
    users = {pseudonymizer.one(i): i for i in originals}  # pseudonym -> original id
    report = ErasureReport(request.request_id, request.origin, [UserErasure(p) for p in users])
    if not users:
        if request.path is not None:
            request.path.unlink(missing_ok=True)
        return report
    by_pseudonym = {u.pseudonym: u for u in report.users}

    with connection(warehouse_path, lock_timeout_s=lock_timeout_s) as con:
        suppress(con, list(users), request.request_id)

    _erase_outside_warehouse(by_pseudonym, users, originals, snapshot_path, model_dir, source, owned_roots, lock_timeout_s)

    erased_at = datetime.now(timezone.utc).replace(tzinfo=None)
    requested_at = request.requested_at.astimezone(timezone.utc).replace(tzinfo=None)
    # The lock is held from the deletion to the compaction's swap: no run writes between.
    with writer_lock(warehouse_path, lock_timeout_s):
        with connection(warehouse_path, lock_timeout_s=lock_timeout_s) as con:
            ensure_erasure_log(con)
            con.execute("BEGIN TRANSACTION")
            try:
                for pseudonym, original in users.items():
                    erasure = by_pseudonym[pseudonym]
                    erasure.rows_deleted = delete_user_rows(con, pseudonym, original)
                    con.execute(
                        f"INSERT INTO {ERASURE_LOG} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        _audit_row(request, pseudonymizer, erasure, requested_at, erased_at),
                    )
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("CHECKPOINT")
        if compact:
            report.warehouse_bytes = compact_warehouse(Path(warehouse_path), lock_timeout_s)
    if request.path is not None:
        request.path.unlink(missing_ok=True)  # it names the users in clear text
    return report


# --- any engine (Spark): the same request through the engine interface ----------------

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _plain(name: str) -> str:
    """A table or column name as portable SQL: unquoted, so it must be a plain
    identifier (DuckDB quotes with ", Spark with `; with ANSI mode off " is a string)."""
    if not all(_IDENTIFIER.match(part) for part in name.split(".")):
        # Refused rather than skipped: a skipped column would keep the user's rows.
        raise ValueError(f"cannot erase from {name!r}: not a plain identifier")
    return name


def _is_text(type_name: str) -> bool:
    t = type_name.lower()
    return t in ("varchar", "string") or t.startswith("varchar(")


def user_columns_on(db: Session) -> dict[str, dict]:
    """:func:`user_columns` through the engine interface: ``schema.table`` -> {"ids",
    "raw_line", "keys"} of every table (not view) that can hold a user's rows."""
    found: dict[str, dict] = {}
    for table in db.tables():
        if table.split(".", 1)[0] in SKIP_SCHEMAS:
            continue
        entry: dict = {"ids": [], "raw_line": False, "keys": []}
        for column, type_name in db.columns(table):
            if not _is_text(type_name):
                continue
            if column == "raw_line":
                entry["raw_line"] = True
            elif column in KEY_COLUMNS:
                entry["keys"].append(_plain(column))
            elif column == "user_id" or column.endswith("_user_id"):
                entry["ids"].append(_plain(column))
        if entry["ids"] or entry["raw_line"] or entry["keys"]:
            found[_plain(table)] = entry
    return found


def _predicate_on(db: Session, columns: dict, ids: list[str], pattern: str, keys: list[str]) -> tuple[str, list]:
    """:func:`_predicate` in portable SQL: the user's event ``keys`` as an IN list."""
    parts, params = [], []
    for column in columns["ids"]:
        parts.append(f"{column} IN ({', '.join('?' for _ in ids)})")
        params += ids
    if columns["raw_line"]:
        parts.append(db.regex_matches("raw_line", "?"))
        params.append(pattern)
    if keys:
        for column in columns["keys"]:
            parts.append(f"{column} IN ({', '.join('?' for _ in keys)})")
            params += keys
    return " OR ".join(parts) or "false", params


def _event_keys_on(db: Session, holding: dict, ids: list[str], pattern: str) -> list[str]:
    """The event keys of the rows that name ``ids`` (:func:`_collect_event_keys`)."""
    keys: set[str] = set()
    for table, columns in holding.items():
        if not columns["keys"] or not (columns["ids"] or columns["raw_line"]):
            continue
        where, params = _predicate_on(db, columns, ids, pattern, [])
        for column in columns["keys"]:
            keys.update(
                r[0]
                for r in db.rows(f"SELECT DISTINCT {column} FROM {table} WHERE ({where}) AND {column} IS NOT NULL", params)
            )
    return sorted(keys)


def delete_user_rows_on(db: Session, pseudonym: str, original: str) -> dict[str, int]:
    """:func:`delete_user_rows` through the engine interface, table by table (each
    ``delete_rows`` is atomic on its own; there is no multi-table transaction)."""
    ids = [pseudonym, original]
    pattern = id_pattern(ids)
    holding = user_columns_on(db)
    keys = _event_keys_on(db, holding, ids, pattern)
    deleted = {}
    # Tables that hold only event keys go first: their rows are found through the other
    # tables, so a run stopped half-way still finds them when the request is redone.
    for table in sorted(holding, key=lambda t: bool(holding[t]["ids"] or holding[t]["raw_line"])):
        where, params = _predicate_on(db, holding[table], ids, pattern, keys)
        if where == "false":
            continue
        n = db.delete_rows(table, where, params)
        if n:
            deleted[table] = int(n)
    return deleted


def erase_users_on(
    engine: Engine,
    request: ErasureRequest,
    pseudonymizer: Pseudonymizer,
    *,
    snapshot_path: Path | None = None,
    model_dir: Path | None = None,
    source: Source | None = None,
    owned_roots: Iterable[Path] = (),
    lock_timeout_s: float = 600.0,
) -> ErasureReport:
    """:func:`erase_users` on any engine (the Spark engine's way; DuckDB keeps
    :func:`erase_users`, one transaction and a compaction). The same steps 1-5, the
    warehouse's through a session: the suppression list first, then each table rewritten
    without the user on its own, the user's audit row after their rows. A request
    stopped half-way is redone whole (each step is idempotent). No compaction: on Spark
    ``delete_rows`` writes the table's files anew and deletes the old ones, so no freed
    page of a live file keeps the erased bytes."""
    originals = [i for i in dict.fromkeys(normalise_id(u) for u in request.user_ids) if i is not None]
    users = {pseudonymizer.one(i): i for i in originals}  # pseudonym -> original id
    report = ErasureReport(request.request_id, request.origin, [UserErasure(p) for p in users])
    if not users:
        if request.path is not None:
            request.path.unlink(missing_ok=True)
        return report
    by_pseudonym = {u.pseudonym: u for u in report.users}

    if engine.kind == "duckdb":
        # A DuckDB file's privacy tables keep their DDL (the primary key suppress() relies
        # on) and are migrated from the clear pseudonym first; appends then keep both.
        with connection(engine.path, lock_timeout_s=lock_timeout_s) as con:  # type: ignore[attr-defined]
            ensure_erasure_log(con)
    with engine.session() as db:
        suppress_on(db, list(users), request.request_id)

    _erase_outside_warehouse(by_pseudonym, users, originals, snapshot_path, model_dir, source, owned_roots, lock_timeout_s)

    erased_at = datetime.now(timezone.utc).replace(tzinfo=None)
    requested_at = request.requested_at.astimezone(timezone.utc).replace(tzinfo=None)
    with engine.session() as db:
        for pseudonym, original in users.items():
            erasure = by_pseudonym[pseudonym]
            erasure.rows_deleted = delete_user_rows_on(db, pseudonym, original)
            row = _audit_row(request, pseudonymizer, erasure, requested_at, erased_at)
            audit = pa.Table.from_pylist(
                [dict(zip(ERASURE_LOG_ARROW_SCHEMA.names, row))], schema=ERASURE_LOG_ARROW_SCHEMA
            )
            db.append_rows(ERASURE_LOG, audit)
    if request.path is not None:
        request.path.unlink(missing_ok=True)  # it names the users in clear text
    return report
