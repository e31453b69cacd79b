"""The engine interface's contract, the same on every engine: DuckDB always, Spark in
`make test-spark` (marker ``spark``). Only portable SQL here, as in asset code."""

from __future__ import annotations

from datetime import date, datetime

import pandas as pd
import pyarrow as pa
import pytest

from recs_pipeline.engine import Engine, Session, create_engine

ENGINES = ["duckdb", pytest.param("spark", marks=pytest.mark.spark)]


@pytest.fixture(params=ENGINES)
def engine(request, tmp_path) -> Engine:
    if request.param == "duckdb":
        return create_engine("duckdb", tmp_path / "warehouse.duckdb")
    return create_engine("spark", tmp_path / "spark-warehouse")


def _days(rows: list[tuple[date, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["day", "item_id"])


def test_reads_come_back_as_frames_arrow_and_python_values(engine):
    with engine.session() as db:
        assert isinstance(db, Session)
        db.replace_table(
            "s.t", pd.DataFrame({"id": [1, 2], "name": ["a", "b"], "score": [0.5, None]}).astype({"id": "int32"})
        )
        frame = db.df("SELECT * FROM s.t WHERE id >= ? ORDER BY id", [1])
        table = db.arrow("SELECT id, name FROM s.t ORDER BY id")
        assert isinstance(frame, pd.DataFrame) and frame["name"].tolist() == ["a", "b"]
        assert isinstance(table, pa.Table) and table.column("id").to_pylist() == [1, 2]
        assert table.schema.field("id").type == pa.int32()
        assert db.scalar("SELECT count(*) FROM s.t") == 2
        assert db.scalar("SELECT id FROM s.t WHERE id > 5") is None
        assert db.row("SELECT id, name FROM s.t ORDER BY id") == (1, "a")
        assert db.rows("SELECT id FROM s.t ORDER BY id") == [(1,), (2,)]
        assert [c for c, _ in db.columns("s.t")] == ["id", "name", "score"]
        assert db.table_exists("s.t") and not db.table_exists("s.nothing")
    assert engine.scalar("SELECT max(id) FROM s.t") == 2
    assert engine.tables() == ["s.t"]


def test_timestamps_come_back_naive_in_utc_at_microseconds(engine):
    ts = pd.to_datetime(["2024-03-31 01:30:00.123456", "2024-10-27 23:59:59"], format="ISO8601").as_unit("ns")
    with engine.session() as db:
        db.replace_table("s.ts", pd.DataFrame({"ts": ts, "day": [date(2024, 3, 31), date(2024, 10, 27)]}))
        back = db.arrow("SELECT ts, day FROM s.ts ORDER BY ts")
        assert back.schema.field("ts").type == pa.timestamp("us")
        assert back.column("ts").to_pylist() == [datetime(2024, 3, 31, 1, 30, 0, 123456), datetime(2024, 10, 27, 23, 59, 59)]
        assert db.scalar("SELECT count(*) FROM s.ts WHERE day = ?", [date(2024, 3, 31)]) == 1


def test_replace_table_rebuilds_and_a_failure_keeps_the_old_table(engine):
    with engine.session() as db:
        assert db.replace_table("ml.t", pd.DataFrame({"id": [1, 2]})) == 2
        # A SELECT over the table itself: the new version is built before the old goes.
        assert db.replace_table("ml.t", "SELECT id * 10 AS id FROM ml.t WHERE id > ?", [1]) == 1
        assert db.rows("SELECT id FROM ml.t") == [(20,)]
        with pytest.raises(Exception):
            db.replace_table("ml.t", "SELECT id FROM ml.nowhere")
        assert db.rows("SELECT id FROM ml.t") == [(20,)]
        vectors = pa.FixedSizeListArray.from_arrays(pa.array([1.0, 2.0, 3.0, 4.0], type=pa.float32()), 2)
        assert db.replace_table("ml.v", pa.table({"id": pa.array(["x", "y"]), "v": vectors})) == 2
        assert [list(v) for v in db.df("SELECT v FROM ml.v ORDER BY id")["v"]] == [[1.0, 2.0], [3.0, 4.0]]
        assert db.replace_table("ml.empty", pd.DataFrame({"id": pd.Series([], dtype="int64")})) == 0
        assert db.tables() == ["ml.empty", "ml.t", "ml.v"]
        with pytest.raises(TypeError):
            db.replace_table("ml.t", [(1,)])
    with engine.session() as db:
        assert db.replace_table("ml.t", "SELECT 7 AS id") == 1


def test_replace_partition_replaces_one_day_only(engine):
    d1, d2 = date(2024, 1, 1), date(2024, 1, 2)
    with engine.session() as db:
        assert db.replace_partition("raw.t", _days([(d1, "a"), (d1, "b")]), "day", d1) == 2
        assert db.replace_partition("raw.t", _days([(d2, "c")]), "day", d2) == 1
        assert db.replace_partition("raw.t", _days([(d1, "z")]), "day", d1) == 1
        assert db.rows("SELECT day, item_id FROM raw.t ORDER BY day, item_id") == [(d1, "z"), (d2, "c")]
        for _ in range(2):  # the same rows again: the same table, no duplicates
            db.replace_partition("raw.t", _days([(d2, "c"), (d2, "d")]), "day", d2)
        assert db.rows("SELECT day, item_id FROM raw.t ORDER BY day, item_id") == [(d1, "z"), (d2, "c"), (d2, "d")]
        db.replace_partition("raw.t", "SELECT 'e' AS item_id, CAST(? AS DATE) AS day", "day", d2, [d2])
        assert db.rows("SELECT day, item_id FROM raw.t ORDER BY day, item_id") == [(d1, "z"), (d2, "e")]
        with pytest.raises(ValueError, match="other than"):
            db.replace_partition("raw.t", _days([(d1, "b"), (d2, "c")]), "day", d1)
        assert db.rows("SELECT day, item_id FROM raw.t ORDER BY day, item_id") == [(d1, "z"), (d2, "e")]
    # Another session (another process, on Spark) sees the days as written.
    with engine.session(read_only=True) as db:
        assert db.scalar("SELECT count(*) FROM raw.t") == 2


def test_add_text_columns_widens_a_table_and_keeps_its_rows_and_days(engine):
    d1, d2 = date(2024, 1, 1), date(2024, 1, 2)
    with engine.session() as db:
        db.replace_partitions("raw.t", _days([(d1, "a"), (d2, "b")]), "day", [d1, d2])
        db.add_text_columns("raw.t", ["item_id", "send_id"])  # one it has, one it lacks
        assert sorted(c for c, _ in db.columns("raw.t")) == ["day", "item_id", "send_id"]  # Spark: day last
        assert db.rows("SELECT day, item_id, send_id FROM raw.t ORDER BY day") == [(d1, "a", None), (d2, "b", None)]
        # The widened table takes a day with the new column and still replaces days alone.
        db.replace_partition("raw.t", _days([(d2, "c")]).assign(send_id="s_1"), "day", d2)
        assert db.rows("SELECT day, item_id, send_id FROM raw.t ORDER BY day") == [(d1, "a", None), (d2, "c", "s_1")]


def test_replace_partitions_replaces_several_days_in_one_write(engine):
    d1, d2, d3 = date(2024, 1, 1), date(2024, 1, 2), date(2024, 1, 3)
    with engine.session() as db:
        assert db.replace_partitions("raw.t", _days([(d1, "a"), (d2, "b"), (d3, "c")]), "day", [d1, d2, d3]) == 3
        # Days 1 and 2 again: day 1 rewritten, day 2 now empty (no rows for it), day 3 untouched.
        assert db.replace_partitions("raw.t", _days([(d1, "x"), (d1, "y")]), "day", [d1, d2]) == 2
        assert db.rows("SELECT day, item_id FROM raw.t ORDER BY day, item_id") == [(d1, "x"), (d1, "y"), (d3, "c")]
        for _ in range(2):  # the same rows again: no duplicates
            db.replace_partitions("raw.t", _days([(d2, "b"), (d3, "d")]), "day", [d2, d3])
        assert db.rows("SELECT day, item_id FROM raw.t ORDER BY day, item_id") == [
            (d1, "x"), (d1, "y"), (d2, "b"), (d3, "d")]  # fmt: skip
        with pytest.raises(ValueError, match="other than"):
            db.replace_partitions("raw.t", _days([(d1, "q"), (d3, "r")]), "day", [d1, d2])
        assert db.scalar("SELECT count(*) FROM raw.t") == 4
    with engine.session(read_only=True) as db:
        assert db.rows("SELECT day, count(*) FROM raw.t GROUP BY day ORDER BY day") == [(d1, 2), (d2, 1), (d3, 1)]


def test_sample_is_reproducible_and_bounded(engine):
    with engine.session() as db:
        db.replace_table("s.big", pd.DataFrame({"id": range(1000)}))
        first = db.sample("s.big", 50)
        assert len(first) == 50 and first["id"].is_unique
        assert sorted(first["id"]) == sorted(db.sample("s.big", 50)["id"])
        assert len(db.sample("s.big", 5000)) == 1000
        assert set(db.sample("s.big", 50, where="id < 10")["id"]) <= set(range(10))


def test_publish_snapshot_is_a_duckdb_file_with_every_table(engine, tmp_path):
    d1 = date(2024, 1, 1)
    with engine.session() as db:
        db.replace_table("serving.t", pd.DataFrame({"x": [1]}))
        db.replace_partition("raw.t", _days([(d1, "a")]), "day", d1)
    target = engine.publish_snapshot(tmp_path / "published" / "warehouse.duckdb").path
    snapshot = create_engine("duckdb", target)
    assert snapshot.tables() == ["raw.t", "serving.t"]
    assert snapshot.scalar("SELECT x FROM serving.t") == 1
    assert snapshot.df("SELECT day, item_id FROM raw.t").to_dict("records") == [{"day": pd.Timestamp(d1), "item_id": "a"}] or \
        snapshot.rows("SELECT day, item_id FROM raw.t") == [(d1, "a")]


def test_the_next_snapshot_copies_only_the_changed_day_and_equals_the_tables(engine, tmp_path):
    d1, d2, d3 = date(2024, 1, 1), date(2024, 1, 2), date(2024, 1, 3)

    def day(d: date, items: list[str]) -> pd.DataFrame:
        return pd.DataFrame({"partition_date": [d] * len(items), "item_id": items})

    with engine.session() as db:
        db.replace_table("serving.t", pd.DataFrame({"x": [1]}))
        for d in (d1, d2, d3):
            db.replace_partition("raw.e", day(d, ["a", "b", "c"]), "partition_date", d)
    target = tmp_path / "published" / "warehouse.duckdb"
    assert engine.publish_snapshot(target).mode == "full"
    with engine.session() as db:
        db.replace_partition("raw.e", day(d2, ["z"]), "partition_date", d2)
    report = engine.publish_snapshot(target)
    assert report.mode == "incremental", report.reason
    assert report.partitions_copied == {"raw.e": ["2024-01-02"]} and report.tables_copied == []
    snapshot = create_engine("duckdb", target)
    with snapshot.session(read_only=True) as db:
        rows = sorted((str(d), i) for d, i in db.rows("SELECT partition_date, item_id FROM raw.e"))
    assert rows == [(str(d), i) for d, items in ((d1, "abc"), (d2, "z"), (d3, "abc")) for i in items]
    assert snapshot.scalar("SELECT x FROM serving.t") == 1


def test_delete_rows_removes_exactly_the_matching_rows_and_keeps_the_days(engine):
    d1, d2 = date(2024, 1, 1), date(2024, 1, 2)
    with engine.session() as db:
        db.replace_partition("raw.t", _days([(d1, "a"), (d1, "b")]), "day", d1)
        db.replace_partition("raw.t", pd.DataFrame({"day": [d2, d2], "item_id": ["c", None]}), "day", d2)
        assert db.delete_rows("raw.t", "day < ?", [d2]) == 2
        # A row where the condition is NULL stays, as with SQL's DELETE.
        assert db.delete_rows("raw.t", "item_id = ?", ["zzz"]) == 0
        assert db.rows("SELECT day, item_id FROM raw.t ORDER BY item_id") == [(d2, "c"), (d2, None)] or \
            db.rows("SELECT day, item_id FROM raw.t ORDER BY item_id NULLS LAST") == [(d2, "c"), (d2, None)]
        # Still partitioned by day: the next day replaces only itself.
        db.replace_partition("raw.t", _days([(d1, "z")]), "day", d1)
        assert db.scalar("SELECT count(*) FROM raw.t") == 3


def test_retention_through_the_engine_trims_every_dated_table(engine):
    from recs_pipeline.privacy import apply_retention_on

    days = [date(2024, 1, d) for d in (1, 5, 10)]
    with engine.session() as db:
        for day in days:
            frame = pd.DataFrame({"partition_date": [day], "user_id": ["u"]})
            db.replace_partition("raw.events", frame, "partition_date", day)
            db.replace_partition("staging.stg_events", frame, "partition_date", day)
        db.replace_table("serving.published_recommendations", pd.DataFrame({"list_date": days, "item_id": ["i"] * 3}))
        db.replace_table("features.interactions", pd.DataFrame({"user_id": ["u"]}))
        report = apply_retention_on(db, 5)
        assert report.cutoff == date(2024, 1, 5)
        assert report.rows_dropped == {"raw.events": 1, "staging.stg_events": 1, "serving.published_recommendations": 1}
        for table, column in [("raw.events", "partition_date"), ("serving.published_recommendations", "list_date")]:
            assert db.scalar(f"SELECT min({column}) FROM {table}") == date(2024, 1, 5)
        assert db.scalar("SELECT count(*) FROM features.interactions") == 1
        assert apply_retention_on(db, None).total_dropped == 0


def test_a_table_made_by_sql_is_seen_by_the_next_session_even_empty(engine):
    with engine.session() as db:
        db.execute("CREATE SCHEMA IF NOT EXISTS serving")
        db.execute("CREATE TABLE IF NOT EXISTS serving.log (list_date DATE, user_id STRING, score DOUBLE)")
        db.execute("CREATE TABLE IF NOT EXISTS serving.log (list_date DATE, user_id STRING, score DOUBLE)")
        db.replace_partition("serving.log", pd.DataFrame({"list_date": [date(2024, 1, 1)], "user_id": ["u"], "score": [1.0]}),
                             "list_date", date(2024, 1, 1))
        db.execute("CREATE TABLE IF NOT EXISTS serving.empty (user_id STRING, n BIGINT)")
    with engine.session(read_only=True) as db:
        assert db.rows("SELECT user_id, score FROM serving.log") == [("u", 1.0)]
        assert db.scalar("SELECT count(*) FROM serving.empty") == 0
        assert [c for c, _ in db.columns("serving.empty")] == ["user_id", "n"]


def test_frames_give_decimals_as_floats(engine):
    with engine.session() as db:
        frame = db.df("SELECT CAST(1.5 AS DECIMAL(4, 1)) AS weight, 2 AS n")
        assert frame["weight"].dtype == "float64" and frame["weight"].tolist() == [1.5]


def test_map_batches_scores_like_the_driver_and_keeps_the_asked_order(engine):
    """Scoring mapped over row batches (Spark: mapInPandas on the executors, the items'
    factors broadcast) gives the lists the driver computes, users in the order asked."""
    import numpy as np
    import scipy.sparse as sp

    from recs_pipeline.ml import scoring

    rng = np.random.default_rng(7)
    n_users, n_items = 300, 120
    user_biases = rng.normal(size=n_users).astype(np.float32)
    user_embeddings = rng.normal(size=(n_users, 6)).astype(np.float32)
    item_biases = rng.normal(size=n_items).astype(np.float32)
    item_embeddings = rng.normal(size=(n_items, 6)).astype(np.float32)
    exclude = sp.random(n_users, n_items, density=0.05, format="csr", random_state=3)

    class Factors:  # what scoring.top_n reads from a LightFM model
        def get_user_representations(self, features=None):
            return user_biases, user_embeddings

        def get_item_representations(self, features=None):
            return item_biases, item_embeddings

    users = rng.permutation(n_users)[:250]
    local = scoring.top_n(Factors(), 10, users=users, exclude=exclude)
    mapped = scoring.top_n(Factors(), 10, users=users, exclude=exclude,
                           map_batches=lambda *a: engine.map_batches(*a, batch_rows=64))  # fmt: skip
    assert len(local.user) == 250 * 10
    # Exactly, scores too: BLAS may round a product differently for a 64-row batch than
    # for the whole block, so the chosen items' scores are recomputed row by row.
    for field in ("user", "rank", "item", "score"):
        np.testing.assert_array_equal(np.asarray(getattr(mapped, field)), np.asarray(getattr(local, field)))
    expected = (user_embeddings[mapped.user].astype(np.float64) * item_embeddings[mapped.item]).sum(axis=1)
    expected += user_biases[mapped.user] + item_biases[mapped.item].astype(np.float64)
    np.testing.assert_allclose(mapped.score, expected, rtol=1e-6)
    # Nothing excluded comes back.
    assert not np.asarray(exclude[mapped.user, mapped.item]).ravel().any()
