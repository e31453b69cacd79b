"""The suppression list: pseudonyms of erased users, kept out of every future load.

An erased user can come back: a read-only source still holds their lines, or the shop
re-delivers a file. The loaders drop every row of a suppressed pseudonym (and every
malformed line whose redacted text holds one), so the warehouse never sees them again.
Only pseudonyms are stored, never the shop's ids.
"""

from __future__ import annotations

import duckdb

SCHEMA = "privacy"
SUPPRESSED_TABLE = "privacy.suppressed_users"
SUPPRESSED_DDL = (
    "CREATE TABLE IF NOT EXISTS privacy.suppressed_users ("
    "pseudonym VARCHAR PRIMARY KEY, request_id VARCHAR, suppressed_at TIMESTAMP)"
)


def ensure_privacy_schema(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    con.execute(SUPPRESSED_DDL)


def suppressed_pseudonyms(con: duckdb.DuckDBPyConnection) -> set[str]:
    """Every suppressed pseudonym (empty when the list does not exist yet)."""
    exists = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'privacy' AND table_name = 'suppressed_users'"
    ).fetchall()[0][0]
    if not exists:
        return set()
    return {r[0] for r in con.execute("SELECT pseudonym FROM privacy.suppressed_users").fetchall()}


def suppress(con: duckdb.DuckDBPyConnection, pseudonyms: list[str], request_id: str) -> int:
    """Add pseudonyms to the list (idempotent). Returns how many were new."""
    ensure_privacy_schema(con)
    before = con.execute("SELECT count(*) FROM privacy.suppressed_users").fetchall()[0][0]
    for pseudonym in sorted(set(pseudonyms)):
        con.execute(
            "INSERT INTO privacy.suppressed_users VALUES (?, ?, now()::TIMESTAMP) ON CONFLICT DO NOTHING",
            [pseudonym, request_id],
        )
    return con.execute("SELECT count(*) FROM privacy.suppressed_users").fetchall()[0][0] - before
