"""Engine parity: do two engines' versions of a table hold the same rows?

Pure pandas (no Dagster, no engine import), for comparing a DuckDB table with the Spark
table of the same name. Values are compared in a canonical spelling, so that what is
the same data on both engines compares equal:

- columns are matched by name (Spark puts partition columns last);
- numbers are rounded to 6 decimals, and ints, floats and decimals of the same value
  are equal (DuckDB's BIGINT or HUGEINT vs Spark's INT, DECIMAL vs DOUBLE);
- timestamps are UTC microseconds (a naive timestamp is taken as UTC);
- dates (``datetime.date`` values, or an Arrow date type) are ISO text;
- text holding a JSON array or object is parsed and written back compactly with sorted
  keys and canonical numbers (Spark's and DuckDB's to_json differ in spacing);
- NaN, NaT and None are all null; booleans stay booleans (True is not 1), and text is
  never equal to a number or a date.

The row order never matters; duplicate rows do (the checksum is over the multiset).
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import json
import math
from typing import Any

import numpy as np
import pandas as pd

_NULL = "\x00null"
_DIGITS = 6
_SAMPLES = 3


def _number_text(values: pd.Series) -> pd.Series:
    """Numbers as text: rounded to 6 decimals, no trailing zeros, integral values as ints."""
    out = pd.Series(_NULL, index=values.index, dtype=object)
    if pd.api.types.is_integer_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
        present = values.notna()
        # Exact (a float64 would round ids beyond 2**53).
        out[present] = "\x00n" + values[present].astype("int64").astype(str)
        return out
    floats = pd.to_numeric(values, errors="coerce").astype("float64")
    present = np.isfinite(floats.to_numpy())
    rounded = np.round(floats[present].to_numpy(), _DIGITS) + 0.0  # + 0.0 turns -0.0 into 0.0
    text = pd.Series(np.char.mod(f"%.{_DIGITS}f", rounded), index=floats.index[present], dtype=object)
    out[present] = "\x00n" + text.str.rstrip("0").str.rstrip(".").replace("-0", "0")
    infinite = np.isinf(floats.to_numpy())
    out[infinite] = np.where(floats[infinite] > 0, "\x00ninf", "\x00n-inf")
    return out


def _json_value(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            return str(value)
        rounded = round(float(value), _DIGITS) + 0.0
        return int(rounded) if rounded.is_integer() and abs(rounded) < 2**53 else rounded
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    return value


def _canonical_json(text: str) -> str:
    stripped = text.strip()
    if not stripped or stripped[0] not in "[{":
        return text
    try:
        parsed = json.loads(stripped)
    except ValueError:
        return text
    return "\x00json" + json.dumps(_json_value(parsed), sort_keys=True, separators=(",", ":"))


def _object_text(values: pd.Series) -> pd.Series:
    """An object column: strings (JSON canonicalised), dates, or numbers/timestamps held as objects."""
    present = values[values.notna()]
    sample = present.iloc[0] if len(present) else None
    if isinstance(sample, (bool, np.bool_)):
        return _bool_text(values)
    if isinstance(sample, (int, float, decimal.Decimal, np.integer, np.floating)):
        return _number_text(values.map(lambda v: float(v) if v is not None else np.nan))
    if isinstance(sample, (dt.datetime, pd.Timestamp)):
        return _timestamp_text(pd.to_datetime(values, utc=True))
    if isinstance(sample, dt.date):
        return values.map(lambda v: _NULL if v is None or v is pd.NaT else "\x00d" + v.isoformat())
    out = pd.Series(_NULL, index=values.index, dtype=object)
    strings = present.astype(str)
    maybe_json = strings.str.lstrip().str[:1].isin(["[", "{"])
    strings[maybe_json] = strings[maybe_json].map(_canonical_json)
    out[strings.index] = strings
    return out


def _bool_text(values: pd.Series) -> pd.Series:
    out = pd.Series(_NULL, index=values.index, dtype=object)
    present = values.notna()
    out[present] = np.where(values[present].astype(bool), "\x00true", "\x00false")
    return out


def _timestamp_text(values: pd.Series) -> pd.Series:
    stamps = pd.to_datetime(values)
    if stamps.dt.tz is None:
        stamps = stamps.dt.tz_localize("UTC")
    stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[us]")
    out = pd.Series(_NULL, index=values.index, dtype=object)
    present = stamps.notna()
    out[present] = "\x00ts" + stamps[present].astype("int64").astype(str)
    return out


def _column_text(values: pd.Series) -> pd.Series:
    """One column in canonical text: equal text means the same value on either engine."""
    dtype = values.dtype
    if isinstance(dtype, pd.ArrowDtype):
        import pyarrow as pa

        arrow_type = dtype.pyarrow_dtype
        if pa.types.is_date(arrow_type):
            return _object_text(pd.Series(values.astype(object), index=values.index))
        if pa.types.is_decimal(arrow_type):
            return _number_text(values.astype("float64"))
        values = values.astype(arrow_type.to_pandas_dtype()) if not pa.types.is_string(arrow_type) else values.astype(object)
        dtype = values.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return _bool_text(values)
    if pd.api.types.is_numeric_dtype(dtype):
        return _number_text(values)
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return _timestamp_text(values)
    return _object_text(values.astype(object))


def _canonical(frame: pd.DataFrame) -> pd.DataFrame:
    columns = sorted(frame.columns, key=str)
    return pd.DataFrame(
        {str(c): _column_text(frame[c].reset_index(drop=True)) for c in columns}, index=pd.RangeIndex(len(frame))
    )


def _row_hashes(canonical: pd.DataFrame) -> np.ndarray:
    if canonical.shape[1] == 0:
        return np.zeros(len(canonical), dtype=np.uint64)
    rows = canonical.iloc[:, 0].astype(str)
    for name in canonical.columns[1:]:
        rows = rows + "\x1f" + canonical[name].astype(str)
    return pd.util.hash_pandas_object(rows, index=False).to_numpy(dtype=np.uint64)


def table_fingerprint(frame: pd.DataFrame) -> tuple[int, str]:
    """Row count and an order-independent checksum of a table's content (see the module doc)."""
    canonical = _canonical(frame)
    total = int(_row_hashes(canonical).sum(dtype=np.uint64))  # wraps modulo 2**64: order-independent
    digest = hashlib.sha256()
    digest.update("\x1f".join(canonical.columns).encode())
    digest.update(total.to_bytes(8, "little"))
    digest.update(len(canonical).to_bytes(8, "little"))
    return len(canonical), digest.hexdigest()[:32]


def _readable(text: str) -> str:
    return "NULL" if text == _NULL else text.lstrip("\x00")


def compare_frames(a: pd.DataFrame, b: pd.DataFrame) -> dict[str, Any]:
    """Compare table ``a`` (DuckDB's) with ``b`` (Spark's).

    Returns ``duckdb_rows``, ``spark_rows`` and ``equal``; when not equal also
    ``differences``: the columns only one side has, and the first columns (by name) whose
    values differ as multisets, with a few values found on one side only.
    """
    rows_a, sum_a = table_fingerprint(a)
    rows_b, sum_b = table_fingerprint(b)
    result: dict[str, Any] = {"duckdb_rows": rows_a, "spark_rows": rows_b, "equal": sum_a == sum_b}
    if result["equal"]:
        return result
    differences: list[str] = []
    names_a, names_b = {str(c) for c in a.columns}, {str(c) for c in b.columns}
    if names_a - names_b:
        differences.append(f"only in duckdb: {sorted(names_a - names_b)}")
    if names_b - names_a:
        differences.append(f"only in spark: {sorted(names_b - names_a)}")
    if rows_a != rows_b:
        differences.append(f"rows: duckdb {rows_a}, spark {rows_b}")
    canon_a, canon_b = _canonical(a), _canonical(b)
    for name in sorted(names_a & names_b):
        counts_a, counts_b = canon_a[name].value_counts(), canon_b[name].value_counts()
        joined = pd.concat([counts_a.rename("a"), counts_b.rename("b")], axis=1).fillna(0)
        diff = joined[joined["a"] != joined["b"]]
        if len(diff):
            only_a = [_readable(v) for v in diff.index[diff["a"] > diff["b"]][:_SAMPLES]]
            only_b = [_readable(v) for v in diff.index[diff["b"] > diff["a"]][:_SAMPLES]]
            differences.append(f"{name}: {len(diff)} values differ; duckdb has {only_a}, spark has {only_b}")
            if len(differences) >= 5:
                break
    if not differences:
        differences.append("same values per column, paired differently across rows")
    result["differences"] = differences
    return result
