"""The suppression list: digests of erased users' pseudonyms, kept out of every future load.

An erased user can come back: a read-only source still holds their lines, or the shop
re-delivers a file. The loaders drop every row of a suppressed user (and every
malformed line whose redacted text holds their pseudonym), so the warehouse never sees
them again.

Neither the shop's id nor the pseudonym is stored: the list (and the erasure audit,
``privacy.erasure_log``) holds ``pseudonym_sha256``, the hex SHA-256 of the pseudonym
(DuckDB's ``sha256(pseudonym)`` is the same string as Python's
``hashlib.sha256(pseudonym.encode()).hexdigest()``). A load hashes the pseudonyms of
its distinct users and compares digests, so the list still works, while a byte scan of
the compacted warehouse finds no trace of an erased pseudonym.

Warehouses made before the digest keep a ``pseudonym`` column in both tables: the first
:func:`ensure_privacy_schema` rewrites them in place (digest computed, old column gone),
in one transaction. Until then :func:`suppressed_digests` hashes the old column on read.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import datetime, timezone

import duckdb
import pyarrow as pa

from recs_pipeline.engine.base import Session

SCHEMA = "privacy"
SUPPRESSED_TABLE = "privacy.suppressed_users"
SUPPRESSED_DDL = (
    "CREATE TABLE IF NOT EXISTS privacy.suppressed_users ("
    "pseudonym_sha256 VARCHAR PRIMARY KEY, request_id VARCHAR, suppressed_at TIMESTAMP)"
)
# The erasure audit (written by privacy/erasure.py); defined here so that ensuring the
# privacy schema migrates it too.
ERASURE_LOG = "privacy.erasure_log"
ERASURE_LOG_DDL = """
CREATE TABLE IF NOT EXISTS privacy.erasure_log (
    request_id VARCHAR, pseudonym_sha256 VARCHAR, origin VARCHAR, key_fingerprint VARCHAR,
    requested_at TIMESTAMP, erased_at TIMESTAMP,
    tables_touched VARCHAR[], rows_deleted VARCHAR, rows_deleted_total BIGINT,
    snapshot_rows_deleted BIGINT, files_rewritten VARCHAR[], lines_removed BIGINT,
    models_scrubbed VARCHAR[]
)"""
# The same columns as Arrow types, for engines that build the tables from data (Spark):
# VARCHAR[] is list<string>, TIMESTAMP a naive microsecond timestamp (UTC).
SUPPRESSED_ARROW_SCHEMA = pa.schema(
    [("pseudonym_sha256", pa.string()), ("request_id", pa.string()), ("suppressed_at", pa.timestamp("us"))]
)
ERASURE_LOG_ARROW_SCHEMA = pa.schema(
    [
        ("request_id", pa.string()), ("pseudonym_sha256", pa.string()), ("origin", pa.string()),
        ("key_fingerprint", pa.string()), ("requested_at", pa.timestamp("us")), ("erased_at", pa.timestamp("us")),
        ("tables_touched", pa.list_(pa.string())), ("rows_deleted", pa.string()), ("rows_deleted_total", pa.int64()),
        ("snapshot_rows_deleted", pa.int64()), ("files_rewritten", pa.list_(pa.string())),
        ("lines_removed", pa.int64()), ("models_scrubbed", pa.list_(pa.string())),
    ]
)
DIGEST_COLUMN = "pseudonym_sha256"
LEGACY_COLUMN = "pseudonym"  # the clear pseudonym, stored before the digest
PRIVACY_TABLES = {"suppressed_users": SUPPRESSED_DDL, "erasure_log": ERASURE_LOG_DDL}


def pseudonym_digest(pseudonym: str) -> str:
    """Hex SHA-256 of a pseudonym: what the privacy tables store (= DuckDB ``sha256``)."""
    return hashlib.sha256(pseudonym.encode("utf-8")).hexdigest()


def names_suppressed(pseudonyms: Iterable[str], digests: set[str]) -> bool:
    """Whether one of ``pseudonyms`` is on the list given by its ``digests``."""
    return bool(digests) and any(pseudonym_digest(p) in digests for p in pseudonyms)


def table_columns(con: duckdb.DuckDBPyConnection, table: str, catalog: str | None = None) -> list[str]:
    """Columns of ``privacy.<table>`` in order (empty: no such table)."""
    catalog_sql = "?" if catalog else "current_database()"
    return [
        r[0]
        for r in con.execute(
            f"SELECT column_name FROM information_schema.columns WHERE table_catalog = {catalog_sql} "
            "AND table_schema = 'privacy' AND table_name = ? ORDER BY ordinal_position",
            [catalog, table] if catalog else [table],
        ).fetchall()
    ]


def digest_select_list(columns: list[str]) -> str:
    """SELECT list of a privacy table's ``columns`` with a legacy clear ``pseudonym``
    replaced by its digest, in the same position."""
    return ", ".join(
        f'sha256("{c}") AS {DIGEST_COLUMN}' if c == LEGACY_COLUMN else '"' + c.replace('"', '""') + '"'
        for c in columns
    )


def _legacy_tables(con: duckdb.DuckDBPyConnection) -> dict[str, list[str]]:
    """Privacy tables that still hold the clear pseudonym: table -> its columns."""
    found = {}
    for table in PRIVACY_TABLES:
        columns = table_columns(con, table)
        if LEGACY_COLUMN in columns and DIGEST_COLUMN not in columns:
            found[table] = columns
    return found


def migrate_privacy_tables(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Rewrite the privacy tables made before the digest (a ``pseudonym`` column) into
    their current form, ``pseudonym_sha256`` in its place, in one transaction. Returns
    the tables migrated (none: nothing to do, no transaction opened). The old values
    stay in freed blocks of the file until it is compacted (every erasure compacts)."""
    legacy = _legacy_tables(con)
    if not legacy:
        return []
    con.execute("BEGIN TRANSACTION")
    try:
        for table, columns in legacy.items():
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE _privacy_migration AS "
                f"SELECT {digest_select_list(columns)} FROM privacy.{table}"
            )
            con.execute(f"DROP TABLE privacy.{table}")
            con.execute(PRIVACY_TABLES[table])
            con.execute(f"INSERT INTO privacy.{table} BY NAME SELECT * FROM _privacy_migration")
            con.execute("DROP TABLE _privacy_migration")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return sorted(legacy)


def ensure_privacy_schema(con: duckdb.DuckDBPyConnection) -> None:
    """The privacy schema and the suppression list, legacy tables migrated first."""
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    migrate_privacy_tables(con)
    con.execute(SUPPRESSED_DDL)


def suppressed_digests(con: duckdb.DuckDBPyConnection) -> set[str]:
    """The digest of every suppressed pseudonym (empty when the list does not exist
    yet). Reads a list not yet migrated too, hashing its clear pseudonyms."""
    columns = table_columns(con, "suppressed_users")
    if DIGEST_COLUMN in columns:
        sql = f"SELECT {DIGEST_COLUMN} FROM {SUPPRESSED_TABLE}"
    elif LEGACY_COLUMN in columns:
        sql = f"SELECT sha256({LEGACY_COLUMN}) FROM {SUPPRESSED_TABLE}"
    else:
        return set()
    return {r[0] for r in con.execute(sql).fetchall()}


def suppress(con: duckdb.DuckDBPyConnection, pseudonyms: list[str], request_id: str) -> int:
    """Add pseudonyms to the list, as digests (idempotent). Returns how many were new."""
    ensure_privacy_schema(con)
    before = con.execute(f"SELECT count(*) FROM {SUPPRESSED_TABLE}").fetchall()[0][0]
    for digest in sorted({pseudonym_digest(p) for p in pseudonyms}):
        con.execute(
            f"INSERT INTO {SUPPRESSED_TABLE} VALUES (?, ?, now()::TIMESTAMP) ON CONFLICT DO NOTHING",
            [digest, request_id],
        )
    return con.execute(f"SELECT count(*) FROM {SUPPRESSED_TABLE}").fetchall()[0][0] - before


def suppress_on(db: Session, pseudonyms: list[str], request_id: str) -> int:
    """:func:`suppress` through the engine interface (Spark): the digests not yet listed
    are appended. Returns how many were new."""
    digests = sorted({pseudonym_digest(p) for p in pseudonyms})
    listed: set[str] = set()
    if db.table_exists(SUPPRESSED_TABLE):
        listed = {r[0] for r in db.rows(f"SELECT {DIGEST_COLUMN} FROM {SUPPRESSED_TABLE}")}
    new = [d for d in digests if d not in listed]
    if new:
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        rows = {"pseudonym_sha256": new, "request_id": [request_id] * len(new), "suppressed_at": [now] * len(new)}
        db.append_rows(SUPPRESSED_TABLE, pa.table(rows, schema=SUPPRESSED_ARROW_SCHEMA))
    return len(new)
