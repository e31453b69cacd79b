"""recs_pipeline.engine.parity: the same data on two engines compares equal, other data does not."""

import datetime as dt
import decimal

import numpy as np
import pandas as pd

from recs_pipeline.engine.parity import compare_frames, table_fingerprint


def _duckdb_like() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": ["u1", "u2", "u3", None],
            "n_events": np.array([3, 1, 7, 0], dtype="int64"),
            "weight": [1.5, 0.123456789, 2.0, np.nan],
            "event_ts": pd.to_datetime(["2026-09-01 10:00:00.123456", "2026-09-02 00:00:00.000000", None, "2026-09-03 00:00:00.000000"]),
            "event_date": [dt.date(2026, 9, 1), dt.date(2026, 9, 2), None, dt.date(2026, 9, 3)],
            "is_anonymous": [False, False, True, True],
            "items": ['[{"item_id": "i1", "title": null, "price": 10.0}]', None, "[]", '{"b": 1, "a": 2}'],
        }
    )


def _spark_like() -> pd.DataFrame:
    """The same table as Spark hands it over: other column order and row order, INT and
    DECIMAL instead of BIGINT and DOUBLE, tz-aware timestamps, compact JSON, None for NaN."""
    frame = _duckdb_like().iloc[[2, 0, 3, 1]].reset_index(drop=True)
    frame["n_events"] = frame["n_events"].astype("int32")
    frame["weight"] = [2.0, decimal.Decimal("1.50"), None, 0.1234568]
    frame["event_ts"] = frame["event_ts"].dt.tz_localize("UTC").dt.tz_convert("Europe/Paris")
    frame["items"] = ["[]", '[{"item_id":"i1","title":null,"price":10}]', '{"a":2,"b":1}', None]
    return frame[list(reversed(frame.columns))]


def test_same_data_compares_equal_across_engine_spellings():
    duck, spark = _duckdb_like(), _spark_like()
    assert table_fingerprint(duck) == table_fingerprint(spark)
    assert compare_frames(duck, spark) == {"duckdb_rows": 4, "spark_rows": 4, "equal": True}


def test_a_changed_value_is_found():
    spark = _spark_like()
    spark.loc[spark["user_id"] == "u2", "n_events"] = 2
    result = compare_frames(_duckdb_like(), spark)
    assert not result["equal"]
    assert result["differences"][0].startswith("n_events:")


def test_values_paired_differently_are_not_equal():
    spark = _spark_like()
    spark["user_id"] = spark["user_id"].iloc[::-1].to_numpy()
    result = compare_frames(_duckdb_like(), spark)
    assert not result["equal"]
    assert result["differences"] == ["same values per column, paired differently across rows"]


def test_rows_columns_types_and_duplicates_count():
    duck = _duckdb_like()
    assert table_fingerprint(duck) != table_fingerprint(duck.iloc[:3])
    assert table_fingerprint(duck) != table_fingerprint(pd.concat([duck, duck.iloc[:1]]))
    assert table_fingerprint(duck) != table_fingerprint(duck.rename(columns={"weight": "score"}))
    # A shifted timestamp, a date one day off, a number as text, true as 1: all differ.
    changes = {
        "event_ts": duck["event_ts"] + pd.Timedelta(microseconds=1),
        "event_date": [dt.date(2026, 9, 1), dt.date(2026, 9, 2), None, dt.date(2026, 9, 4)],
        "n_events": duck["n_events"].astype(str),
        "is_anonymous": duck["is_anonymous"].astype(int),
    }
    for column, values in changes.items():
        assert table_fingerprint(duck) != table_fingerprint(duck.assign(**{column: values})), column
    result = compare_frames(duck, duck.drop(columns=["items"]))
    assert result["differences"][0] == "only in duckdb: ['items']"
