"""Dagster resources: every external thing the pipeline touches, configured in one place
(``build_resources``) from the settings."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb
from dagster_dbt import DbtCliResource, DbtProject

from recs_pipeline.engine import Engine, Session, create_engine
from recs_pipeline.settings import DBT_PROJECT_DIR, EngineSettings, Settings, SourceSettings, load_settings
from recs_pipeline.sources.adapters import build_source
from recs_pipeline.sources.base import Source
from recs_pipeline.warehouse import connection


class EngineResource(dg.ConfigurableResource):
    """The warehouse's tables, through the engine interface (recs_pipeline.engine):
    asset code opens a short-lived session per step and never sees which engine runs it.

    ``kind`` is the engine (``RECS_ENGINE`` / ``[engine] kind``: "duckdb" or "spark"),
    ``path`` the warehouse's location (the DuckDB file, or Spark's folder of Parquet
    tables); the ``spark_*`` fields say where Spark runs (recs_pipeline.settings.EngineSettings)."""

    kind: str = "duckdb"
    path: str
    lock_timeout_s: float = 600.0
    spark_master: str = "local[*]"
    spark_remote: str = ""
    spark_driver_memory: str = "2g"

    def engine(self) -> Engine:
        spark = EngineSettings(
            kind=self.kind,
            spark_master=self.spark_master,
            spark_remote=self.spark_remote,
            spark_driver_memory=self.spark_driver_memory,
        )
        return create_engine(self.kind, self.path, lock_timeout_s=self.lock_timeout_s, spark=spark)

    @contextmanager
    def session(self, read_only: bool = False) -> Iterator[Session]:
        with self.engine().session(read_only=read_only) as db:
            yield db


class WarehouseResource(EngineResource):
    """The engine resource plus a raw DuckDB connection, for the code not yet moved onto
    the engine interface (ingest, feedback, privacy, the CLI). Connections are
    short-lived (see recs_pipeline.warehouse)."""

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        if self.kind != "duckdb":
            raise RuntimeError(
                f"this step does not run on the {self.kind!r} engine yet (it still needs a DuckDB "
                "connection; docs/scale.md lists what runs on Spark)"
            )
        with connection(self.path, read_only=read_only, lock_timeout_s=self.lock_timeout_s) as con:
            yield con


class ShopSourceResource(dg.ConfigurableResource):
    """Where the shop's files come from. ``config_file`` (RECS_CONFIG) carries the column
    mapping of a generic source; the other fields are the common settings."""

    kind: str = "synthetic"
    path: str
    timezone: str = "UTC"
    anonymous_events: str = "quarantine"
    timestamp_format: list[str] = []
    config_file: str = ""

    def source(self) -> Source:
        env = {"RECS_CONFIG": self.config_file} if self.config_file else {}
        settings = load_settings(env)
        cfg = SourceSettings(
            **{
                **settings.source.__dict__,
                "kind": self.kind,
                "path": self.path,
                "timezone": self.timezone,
                "anonymous_events": self.anonymous_events,
                "timestamp_format": tuple(self.timestamp_format),
            }
        )
        return build_source(settings.with_overrides(source=cfg))


class ModelStoreResource(dg.ConfigurableResource):
    """Folder of versioned model artefacts: ``<path>/<version>/`` plus a ``serving`` pointer."""

    path: str

    @property
    def root(self) -> Path:
        return Path(self.path)


def dbt_executable() -> str:
    """dbt from this interpreter's environment, so a venv works without being activated."""
    candidate = Path(sys.executable).parent / "dbt"
    return str(candidate) if candidate.exists() else "dbt"


def _newest_source_mtime(project_dir: Path) -> float:
    skip = {"target", "logs", "dbt_packages"}
    return max(
        (p.stat().st_mtime for p in project_dir.rglob("*") if p.is_file() and not skip & set(p.relative_to(project_dir).parts)),
        default=0.0,
    )


def dbt_project(settings: Settings) -> DbtProject:
    """The dbt project; its manifest is rebuilt with ``dbt parse`` when missing or older
    than any model, macro or YAML file (a stale manifest would silently run old SQL)."""
    settings.export_env()
    project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)
    manifest = project.manifest_path
    if not manifest.exists() or manifest.stat().st_mtime < _newest_source_mtime(DBT_PROJECT_DIR):
        subprocess.run(
            [dbt_executable(), "parse", "--quiet", "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR)],
            check=True,
            cwd=DBT_PROJECT_DIR,
        )
    return project


def build_resources(settings: Settings) -> dict[str, object]:
    settings.export_env()
    return {
        # Under "warehouse": the key every asset and check uses. A WarehouseResource (the
        # engine resource plus raw connections) until the last modules are migrated.
        "warehouse": WarehouseResource(
            kind=settings.engine.kind,
            path=str(settings.engine_path),
            spark_master=settings.engine.spark_master,
            spark_remote=settings.engine.spark_remote,
            spark_driver_memory=settings.engine.spark_driver_memory,
        ),
        "shop_source": ShopSourceResource(
            kind=settings.source.kind,
            path=str(build_source(settings).root),
            timezone=settings.source.timezone,
            anonymous_events=settings.source.anonymous_events,
            timestamp_format=list(settings.source.timestamp_format),
            config_file=settings.config_file,
        ),
        "model_store": ModelStoreResource(path=str(settings.model_dir)),
        "dbt": DbtCliResource(
            project_dir=dbt_project(settings), profiles_dir=str(DBT_PROJECT_DIR), dbt_executable=dbt_executable()
        ),
    }
