"""Erasure through the engine interface (``erase_users_on``): DuckDB always, Spark in
`make test-spark` (marker ``spark``). DuckDB's own path (``erase_users``: one
transaction, then the file compacted) is tested over a whole pipeline in test_privacy.py."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import date
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recs_pipeline.engine import Engine, create_engine
from recs_pipeline.privacy import ErasureRequest, Pseudonymizer, erase_users_on, pending_requests
from recs_pipeline.privacy.erasure import ERASURE_LOG
from recs_pipeline.privacy.lines import id_pattern
from recs_pipeline.privacy.suppression import (
    ERASURE_LOG_ARROW_SCHEMA,
    ERASURE_LOG_DDL,
    SUPPRESSED_ARROW_SCHEMA,
    SUPPRESSED_DDL,
    SUPPRESSED_TABLE,
    suppress,
)

ENGINES = ["duckdb", pytest.param("spark", marks=pytest.mark.spark)]

USER, OTHER, LONGER = "U000042", "U000043", "U0000421"  # LONGER holds USER: not the same token
PSEUDONYMS = Pseudonymizer("test-spark-erasure-key")
P, Q, R = PSEUDONYMS.one(USER), PSEUDONYMS.one(OTHER), PSEUDONYMS.one(LONGER)
D1, D2 = date(2024, 1, 1), date(2024, 1, 2)
# The user's events: by id (e1, e5), by the pseudonym in a malformed line (e3), by the
# shop's id in a line loaded before pseudonymisation (e4).
ERASED_KEYS = {"e1", "e3", "e4", "e5"}
EXPECTED = {
    "feedback.attributed_events": 4,  # event keys only
    "marketing.referrals": 1,  # referrer_user_id
    "raw.events": 4,
    "serving.recommendations": 2,
    "staging.stg_events": 2,
}
TABLES = sorted([*EXPECTED, "marts.items"])


@pytest.fixture(scope="module", params=ENGINES)
def engine(request, tmp_path_factory) -> Engine:
    """One warehouse per engine for the module (a Spark session per warehouse costs
    seconds); each test uses tables of its own."""
    root = tmp_path_factory.mktemp(request.param)
    if request.param == "duckdb":
        return create_engine("duckdb", root / "warehouse.duckdb")
    return create_engine("spark", root / "spark-warehouse")


def _events(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["event_id", "user_id", "item_id", "raw_line", "partition_date"])


def build_warehouse(engine: Engine) -> None:
    raw = [
        ("e1", P, "I1", None, D1),
        ("e2", Q, "I2", None, D1),
        ("e3", None, None, f"{P},I9,2024-01-01 10:00:00,bro\"ken", D1),
        ("e4", None, None, f"{USER};I7;legacy", D2),
        ("e5", P, "I3", None, D2),
        ("e6", None, None, f"{LONGER},I8,bad", D2),
        ("e7", R, "I4", None, D2),
    ]
    with engine.session() as db:
        for day in (D1, D2):
            db.replace_partition("raw.events", _events([r for r in raw if r[4] == day]), "partition_date", day)
            stg = [(e, u, i, d) for e, u, i, _, d in raw if u is not None and d == day]
            db.replace_partition(
                "staging.stg_events",
                pd.DataFrame(stg, columns=["event_id", "user_id", "item_id", "partition_date"]),
                "partition_date",
                day,
            )
        db.replace_table(
            "feedback.attributed_events",
            pd.DataFrame({"event_id": ["e1", "e2", "e3", "e4", "e5", "e7"], "clicks": [1, 2, 3, 4, 5, 7]}),
        )
        db.replace_table(
            "serving.recommendations",
            pd.DataFrame({"user_id": [P, P, Q], "item_id": ["I5", "I6", "I5"], "rank": [1, 2, 1]}).astype({"rank": "int32"}),
        )
        db.replace_table("marketing.referrals", pd.DataFrame({"referrer_user_id": [P, Q], "item_id": ["I1", "I2"]}))
        db.replace_table("marts.items", pd.DataFrame({"item_id": ["I1", "I2"], "title": ["kettle", "teapot"]}))


def table_rows(engine: Engine) -> dict[str, list[tuple]]:
    with engine.session(read_only=True) as db:
        return {t: sorted(db.rows(f"SELECT * FROM {t}"), key=repr) for t in TABLES}


def names_user(row: tuple, values=(P, USER)) -> bool:
    rx = re.compile(id_pattern(values))
    return any(isinstance(v, str) and (rx.search(v) or v in ERASED_KEYS) for v in row)


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def traces(root: Path, values: list[str]) -> list[str]:
    """Files under ``root`` holding one of ``values`` as a token: in their bytes, or
    (Parquet compresses strings) in any value of any column, read back as text."""
    rx = re.compile(id_pattern(values))
    rx_bytes = re.compile(id_pattern(values).encode())
    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if rx_bytes.search(path.read_bytes()):
            found.append(str(path.relative_to(root)))
        elif path.suffix == ".parquet":
            table = pq.read_table(path)
            if any(rx.search(str(v)) for column in table.columns for v in column.to_pylist() if v is not None):
                found.append(str(path.relative_to(root)))
    return found


def test_a_user_leaves_every_table_and_joins_the_suppression_list(engine, tmp_path):
    build_warehouse(engine)
    before = table_rows(engine)
    snapshot = engine.publish_snapshot(tmp_path / "published" / "warehouse.duckdb").path
    assert snapshot.read_bytes().count(P.encode()) > 0
    spark_root = getattr(engine, "warehouse", None)
    if spark_root is not None:  # the scan sees the user before the erasure
        assert traces(spark_root, [P, USER])

    requests = tmp_path / "erasure_requests"
    requests.mkdir()
    (requests / "ticket-7.csv").write_text(f"user_id\n{USER}\n")
    [request] = pending_requests(requests)
    report = erase_users_on(engine, request, PSEUDONYMS, snapshot_path=snapshot)

    assert report.rows_deleted == EXPECTED
    assert report.snapshot_rows_deleted == sum(EXPECTED.values())
    assert report.warehouse_bytes is None  # nothing to compact
    assert not (requests / "ticket-7.csv").exists()  # it names the user in clear text
    after = table_rows(engine)
    # Not one row of the user, by id, raw_line or event key; everyone else's untouched.
    for table in TABLES:
        assert after[table] == [r for r in before[table] if not names_user(r)], table
    assert any(LONGER in str(r) for r in after["raw.events"]) and after["marts.items"] == before["marts.items"]
    with engine.session(read_only=True) as db:
        assert db.rows(f"SELECT pseudonym_sha256, request_id FROM {SUPPRESSED_TABLE}") == [
            (sha256_hex(P), request.request_id)
        ]
        log = db.arrow(f"SELECT * FROM {ERASURE_LOG}")
        # Both tables have the columns and types of their DuckDB DDL.
        assert log.schema == ERASURE_LOG_ARROW_SCHEMA
        assert db.arrow(f"SELECT * FROM {SUPPRESSED_TABLE}").schema == SUPPRESSED_ARROW_SCHEMA
    [audit] = log.to_pylist()
    assert audit["pseudonym_sha256"] == sha256_hex(P) and audit["origin"] == "file:ticket-7.csv"
    assert audit["key_fingerprint"] == PSEUDONYMS.key_fingerprint and audit["request_id"] == request.request_id
    assert json.loads(audit["rows_deleted"]) == EXPECTED and audit["tables_touched"] == sorted(EXPECTED)
    assert audit["rows_deleted_total"] == audit["snapshot_rows_deleted"] == sum(EXPECTED.values())
    assert audit["files_rewritten"] == [] and audit["lines_removed"] == 0 and audit["models_scrubbed"] == []

    # The rebuilt snapshot: no row of the user, not one byte of the pseudonym.
    with duckdb.connect(str(snapshot), read_only=True) as con:
        for table in TABLES:
            assert not any(names_user(r) for r in con.execute(f"SELECT * FROM {table}").fetchall()), table
    assert snapshot.read_bytes().count(P.encode()) == 0
    if spark_root is not None:
        # delete_rows wrote the tables' files anew: no file of the warehouse, data or
        # metadata, holds the pseudonym or the shop's id (the privacy tables hold digests).
        assert traces(spark_root, [P, USER]) == []
        assert traces(spark_root, [Q])  # other users' pseudonyms are still found

    # Again (the same user in a new request): nothing left to delete, no second listing.
    again = erase_users_on(engine, ErasureRequest([USER, f" {USER} "], origin="cli"), PSEUDONYMS, snapshot_path=snapshot)
    assert again.rows_deleted == {} and again.snapshot_rows_deleted == 0
    assert table_rows(engine) == after
    with engine.session(read_only=True) as db:
        assert db.scalar(f"SELECT count(*) FROM {SUPPRESSED_TABLE}") == 1
        assert sorted(db.rows(f"SELECT origin, rows_deleted_total FROM {ERASURE_LOG}")) == [
            ("cli", 0), ("file:ticket-7.csv", sum(EXPECTED.values()))
        ]
    if engine.kind == "duckdb":
        # The file's suppression list kept its primary key: DuckDB's own path still works on it.
        with duckdb.connect(engine.path) as con:
            assert suppress(con, [P, Q], "req-later") == 1


@pytest.mark.parametrize(
    "ids",
    [["U0001"], ["17850", "17850.0"], ["a.b", "a-b+c"], ["we ird", "tab\there"], ["(x)[y]{z}|*?^$"], ["back\\slash"],
     ["q'uo\"te"], ["éü", "x#y&z~"]],
)
def test_regex_matches_means_the_same_on_every_engine(engine, ids):
    """id_pattern's regex (re.escape'd ids) read by RE2 (DuckDB), Java (Spark) and Python alike."""
    lines = [None, "", *ids, *(f"{i},I1" for i in ids), *(f"x;{i}" for i in ids), *(f"{i}1,I1" for i in ids),
             *(f"_{i}" for i in ids), *(f"{i}\n" for i in ids), "U00012,I1", "nothing here"]
    table = pa.table({"n": list(range(len(lines))), "line": pa.array(lines, pa.string())})
    pattern = id_pattern(ids)
    with engine.session() as db:
        db.replace_table("contract.lines", table)
        matched = [n for (n,) in db.rows(f"SELECT n FROM contract.lines WHERE {db.regex_matches('line', '?')} ORDER BY n", [pattern])]
        # False, never NULL, for a NULL line: NOT keeps it.
        unmatched = db.scalar(f"SELECT count(*) FROM contract.lines WHERE NOT {db.regex_matches('line', '?')}", [pattern])
    expected = [n for n, line in enumerate(lines) if line is not None and re.search(pattern, line)]
    assert matched == expected and unmatched == len(lines) - len(expected)


def test_append_rows_adds_by_name_and_keeps_the_table(engine):
    with engine.session() as db:
        assert db.append_rows("contract.appended", pd.DataFrame({"id": [1], "name": ["a"]})) == 1  # created
        assert db.append_rows("contract.appended", pa.table({"name": ["b", "c"], "id": [2, 3]})) == 2
        assert db.append_rows("contract.appended", pa.table({"id": [4]})) == 1  # a missing column is NULL
        assert db.rows("SELECT id, name FROM contract.appended ORDER BY id") == [(1, "a"), (2, "b"), (3, "c"), (4, None)]
        with pytest.raises(Exception):
            db.append_rows("contract.appended", pa.table({"id": [5], "colour": ["red"]}))
        assert db.scalar("SELECT count(*) FROM contract.appended") == 4
        # A day-partitioned table stays partitioned.
        day = pd.DataFrame({"v": ["x"], "partition_date": [D1]})
        db.replace_partition("contract.days", day, "partition_date", D1)
        assert db.append_rows("contract.days", day.assign(v="y", partition_date=D2)) == 1
        assert db.replace_partition("contract.days", day.assign(v="z"), "partition_date", D1) == 1
        assert db.rows("SELECT v, partition_date FROM contract.days ORDER BY v") == [("y", D2), ("z", D1)]
    if engine.kind == "spark":
        folder = engine.table_path("contract", "days")
        assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == ["partition_date=2024-01-01", "partition_date=2024-01-02"]
    else:
        # An INSERT, not a rebuild: a table's constraints stay (the privacy tables' primary key).
        with engine.session() as db:
            db.execute(SUPPRESSED_DDL.replace(SUPPRESSED_TABLE, "contract.suppressed"))
            row = pa.table({"pseudonym_sha256": ["d1"], "request_id": ["r"], "suppressed_at": [None]}, schema=SUPPRESSED_ARROW_SCHEMA)
            db.append_rows("contract.suppressed", row)
            with pytest.raises(duckdb.ConstraintException):
                db.append_rows("contract.suppressed", row)


def test_the_arrow_schemas_are_the_ddl_of_the_privacy_tables():
    with duckdb.connect() as con:
        con.execute("CREATE SCHEMA privacy")
        con.execute(SUPPRESSED_DDL)
        con.execute(ERASURE_LOG_DDL)
        assert con.sql(f"SELECT * FROM {SUPPRESSED_TABLE}").to_arrow_table().schema == SUPPRESSED_ARROW_SCHEMA
        assert con.sql(f"SELECT * FROM {ERASURE_LOG}").to_arrow_table().schema == ERASURE_LOG_ARROW_SCHEMA


@pytest.mark.spark
def test_the_erasure_asset_runs_on_spark(tmp_path):
    """`privacy/erasure_log` on RECS_ENGINE=spark: the pending request is carried out
    (it used to fail the run), landing files included."""
    import dagster as dg

    from recs_pipeline.defs.privacy import ERASURE_LOG_KEY
    from recs_pipeline.definitions import build_defs
    from recs_pipeline.synthetic.shop import ShopConfig, generate_landing_zone

    from .conftest import settings_for

    generate_landing_zone(tmp_path / "landing", ShopConfig(seed=5, n_days=2, n_users=40, n_items=20, events_per_day=150))
    settings = settings_for(tmp_path, RECS_ENGINE="spark", RECS_LANDING_DIR=str(tmp_path / "landing"))
    users = pd.read_csv(settings.landing_dir / "users" / "users.csv", dtype=str)["user_id"].tolist()
    pseudonymizer = Pseudonymizer.from_settings(settings.privacy)
    user, other = users[0], users[1]
    engine = create_engine("spark", settings.engine_path, spark=settings.engine)
    with engine.session() as db:
        frame = pd.DataFrame({"user_id": pseudonymizer.many([user, user, other]), "item_id": ["I1", "I2", "I1"]})
        db.replace_table("serving.recommendations", frame)
    request = settings.erasure_requests_path / "ticket-9.txt"
    request.parent.mkdir(parents=True)
    request.write_text(f"{user}\n")

    defs = build_defs(settings)
    result = dg.materialize([*defs.assets, *defs.asset_checks], resources=defs.resources, selection=[ERASURE_LOG_KEY])
    assert result.success
    meta = result.get_asset_materialization_events()[0].materialization.metadata
    assert meta["users_erased"].value == 1 and meta["warehouse_rows_deleted"].value == 2
    assert meta["landing_lines_removed"].value > 0
    assert meta["audit_rows_total"].value == 1 and meta["suppressed_users_total"].value == 1
    assert not request.exists()
    assert user not in pd.read_csv(settings.landing_dir / "users" / "users.csv", dtype=str)["user_id"].tolist()
    assert engine.df("SELECT user_id FROM serving.recommendations")["user_id"].tolist() == [pseudonymizer.one(other)]
