"""The Spark warehouse's layout on disk, readable without starting Spark:
table ``schema.name`` is the Parquet folder ``<warehouse>/<schema>.db/<name>/``, a table
partitioned by day has ``partition_date=YYYY-MM-DD/`` subfolders (hive style), and
folders starting with a dot are the engine's scratch copies, never tables."""

from __future__ import annotations

from pathlib import Path

SCRATCH_PREFIX = "."


def table_path(warehouse: Path, schema: str, table: str) -> Path:
    return Path(warehouse) / f"{schema}.db" / table


def has_data(path: Path) -> bool:
    """Whether a folder holds a written table (Spark marks a finished write with _SUCCESS)."""
    return any(p.suffix == ".parquet" or p.name == "_SUCCESS" for p in path.rglob("*"))


def table_folders(warehouse: Path) -> dict[str, Path]:
    """``schema.table`` -> folder, for every table under ``warehouse``, sorted by name."""
    warehouse = Path(warehouse)
    found: dict[str, Path] = {}
    if not warehouse.exists():
        return found
    for schema_dir in sorted(warehouse.glob("*.db")):
        for table_dir in sorted(schema_dir.iterdir()):
            if table_dir.is_dir() and not table_dir.name.startswith(SCRATCH_PREFIX) and has_data(table_dir):
                found[f"{schema_dir.name[:-3]}.{table_dir.name}"] = table_dir
    return found


def spark_table_names(warehouse: Path) -> list[str]:
    """The tables a new Spark process must register (what dbt receives as ``spark_tables``)."""
    return list(table_folders(warehouse))


def partition_columns(path: Path) -> list[str]:
    """The hive-style partition column of a table folder ([] when it is not partitioned)."""
    for child in sorted(path.iterdir()) if path.exists() else []:
        if child.is_dir() and "=" in child.name and not child.name.startswith(SCRATCH_PREFIX):
            return [child.name.split("=", 1)[0]]
    return []
