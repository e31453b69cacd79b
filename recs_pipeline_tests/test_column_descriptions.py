"""Every column of every warehouse table has a description the Dagster UI shows.

dbt models describe their columns in their folder's ``.yml`` (dagster-dbt turns them into
the ``dagster/column_schema`` definition metadata of the asset); the tables the Python
assets write are described in ``recs_pipeline.defs.columns`` (``table_metadata`` puts them
into the ``dagster/column_schema`` of each materialisation). The columns are compared with
what DuckDB reports after one real run of the whole graph over a small generated shop.
"""

from __future__ import annotations

import json

import dagster as dg
import duckdb
import pytest

from recs_pipeline.defs.columns import COLUMN_DESCRIPTIONS, column_description
from recs_pipeline.defs.metadata import table_metadata
from recs_pipeline.engine.duckdb import DuckDBSession
from recs_pipeline.definitions import build_defs
from recs_pipeline.resources import dbt_project
from recs_pipeline.warehouse import connection

from .conftest import settings_for

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
COLUMN_SCHEMA = "dagster/column_schema"

# Tables another change is adding: their descriptions are ready before the tables exist.
TABLES_BEING_ADDED = {
    "ml.ranker_evaluation": ["strategy", "metric", "value"],
    "ml.candidate_recall": ["generator", "depth", "recall", "n_relevant"],
    "features.item_text_embeddings": ["item_id", "theme", "embedding"],
    "ml.tuning_trials": ["study", "trial", "value", "params", "state"],
}


@pytest.fixture(scope="module")
def built(small_shop, tmp_path_factory):
    """The whole graph materialised once over every generated day: the settings, the
    run's result, the definitions, the dbt manifest and every table's DuckDB columns."""
    root, _ = small_shop
    settings = settings_for(tmp_path_factory.mktemp("warehouse"), RECS_LANDING_DIR=str(root / "landing"))
    from recs_pipeline.sources.adapters import build_source

    days = build_source(settings).event_days()
    defs = build_defs(settings)
    result = defs.resolve_job_def("nightly_job").execute_in_process(
        tags={RANGE_START: days[0].isoformat(), RANGE_END: days[-1].isoformat()}, raise_on_error=False
    )
    manifest = json.loads(dbt_project(settings).manifest_path.read_text())
    with connection(settings.warehouse_path, read_only=True) as con:
        tables = {
            f"{schema}.{name}": [row[0] for row in con.execute(f'DESCRIBE "{schema}"."{name}"').fetchall()]
            for schema, name in con.execute(
                "SELECT table_schema, table_name FROM information_schema.tables "
                "WHERE table_catalog = current_database() ORDER BY ALL"
            ).fetchall()
        }
    return settings, result, defs, manifest, tables


def dbt_models(manifest: dict) -> dict[str, dict]:
    """``schema.table`` -> manifest node of every dbt model."""
    return {
        f"{node['schema']}.{node.get('alias') or node['name']}".lower(): node
        for node in manifest["nodes"].values()
        if node["resource_type"] == "model"
    }


def python_tables(tables: dict[str, list[str]], manifest: dict) -> dict[str, list[str]]:
    """The warehouse tables no dbt model builds: those the Python assets write."""
    models = dbt_models(manifest)
    return {
        table: columns
        for table, columns in tables.items()
        if table.lower() not in models and not table.split(".")[0].endswith("dbt_test__audit")
    }


def test_the_run_built_the_graph(built):
    _, result, _, manifest, tables = built
    assert result.success
    missing = sorted(set(dbt_models(manifest)) - {t.lower() for t in tables})
    assert missing == [], f"dbt models absent from the warehouse: {missing}"


def test_every_dbt_model_column_has_a_description(built):
    """Each column a model's SQL produces (DuckDB after the run; the yml when the model
    is absent) is listed in the model's yml with a non-empty description."""
    _, _, _, manifest, tables = built
    by_name = {t.lower(): cols for t, cols in tables.items()}
    undescribed = []
    for table, node in sorted(dbt_models(manifest).items()):
        described = {name.lower(): (col.get("description") or "").strip() for name, col in node["columns"].items()}
        produced = [c.lower() for c in by_name.get(table, [])] or list(described)
        if not produced:
            undescribed.append(f"{table}: no columns listed in {node.get('patch_path') or 'a yml'}")
        undescribed += [f"{table}.{c}" for c in produced if not described.get(c)]
    assert undescribed == [], (
        "columns without a description in their model's yml (dbt_project/models/<folder>/_<folder>.yml): "
        + ", ".join(undescribed)
    )


def test_dbt_ymls_list_only_columns_the_models_produce(built):
    """A column described in a yml but not in the table (renamed, dropped) would show
    in the UI as a column that does not exist."""
    _, _, _, manifest, tables = built
    by_name = {t.lower(): {c.lower() for c in cols} for t, cols in tables.items()}
    stale = [
        f"{table}.{name}"
        for table, node in sorted(dbt_models(manifest).items())
        if table in by_name
        for name in node["columns"]
        if name.lower() not in by_name[table]
    ]
    assert stale == [], f"columns in a yml that the model does not produce: {stale}"


def test_dbt_assets_carry_the_descriptions_as_column_schema(built):
    """What the UI reads: the definition metadata dagster-dbt builds from the manifest."""
    _, _, defs, manifest, tables = built
    by_name = {t.lower(): cols for t, cols in tables.items()}
    specs = {
        spec.key.to_user_string().replace("/", "."): spec
        for assets_def in defs.assets
        if isinstance(assets_def, dg.AssetsDefinition)
        for spec in assets_def.specs
        if "dbt" in (spec.kinds or set())
    }
    models = dbt_models(manifest)
    assert set(models) <= set(specs), f"dbt models without an asset: {sorted(set(models) - set(specs))}"
    problems = []
    for table in sorted(models):
        schema = specs[table].metadata.get(COLUMN_SCHEMA)
        if schema is None:
            problems.append(f"{table}: no {COLUMN_SCHEMA}")
            continue
        problems += [f"{table}.{c.name}: no description" for c in schema.columns if not (c.description or "").strip()]
        shown, produced = {c.name.lower() for c in schema.columns}, {c.lower() for c in by_name.get(table, [])}
        if produced and shown != produced:
            problems.append(f"{table}: the UI shows {sorted(shown)}, the table has {sorted(produced)}")
    assert problems == []


def test_every_python_table_column_has_a_description(built):
    _, _, _, manifest, tables = built
    written = python_tables(tables, manifest)
    # Sanity: the tables every run writes are among them.
    assert {"raw.events", "raw.items", "raw.users", "ml.training_set", "serving.recommendations"} <= set(written)
    undescribed = [
        f"{table}.{column}"
        for table, columns in sorted(written.items())
        for column in columns
        if not (column_description(table, column) or "").strip()
    ]
    assert undescribed == [], "columns missing from recs_pipeline/defs/columns.py: " + ", ".join(undescribed)


def test_python_descriptions_name_only_existing_columns(built):
    """An entry for a column the table does not have is a renamed or dropped column."""
    _, _, _, manifest, tables = built
    written = python_tables(tables, manifest)
    stale = [
        f"{table}.{column}"
        for table, described in sorted(COLUMN_DESCRIPTIONS.items())
        if table in written
        for column in described
        if column not in written[table]
    ]
    assert stale == [], f"entries of recs_pipeline/defs/columns.py the table does not have: {stale}"


def test_every_reported_column_schema_has_descriptions(built):
    """The column schema each materialisation of the run reported (the UI shows the
    latest one) describes every column."""
    _, result, _, _, _ = built
    reported, undescribed = set(), []
    for event in result.all_events:
        if event.event_type_value != "ASSET_MATERIALIZATION":
            continue
        materialization = event.event_specific_data.materialization
        schema = materialization.metadata.get(COLUMN_SCHEMA)
        if schema is None:
            continue
        key = materialization.asset_key.to_user_string()
        reported.add(key)
        undescribed += [f"{key}: {c.name}" for c in schema.value.columns if not (c.description or "").strip()]
    assert {"raw/events", "serving/recommendations", "ml/training_set"} <= reported
    assert undescribed == []


def test_descriptions_are_ready_for_the_tables_being_added():
    for table, columns in TABLES_BEING_ADDED.items():
        assert [c for c in columns if not column_description(table, c)] == [], table


def test_the_descriptions_are_well_formed():
    for table, described in COLUMN_DESCRIPTIONS.items():
        assert table == table.lower() and table.count(".") == 1, table
        for column, text in described.items():
            assert column == column.lower(), (table, column)
            assert isinstance(text, str) and text.strip() == text and len(text) >= 5, (table, column)


def test_table_metadata_describes_known_columns_and_tolerates_unknown_ones():
    con = duckdb.connect()
    con.execute("CREATE SCHEMA ml")
    con.execute("CREATE TABLE ml.evaluation (strategy VARCHAR, metric VARCHAR, value DOUBLE, added_later INTEGER)")
    con.execute("INSERT INTO ml.evaluation VALUES ('blend', 'precision@10', 0.1, 1)")
    con.execute("CREATE TABLE nowhere (x INTEGER)")
    columns = {c.name: c for c in table_metadata(DuckDBSession(con), "ml.evaluation")[COLUMN_SCHEMA].columns}
    assert columns["metric"].description == COLUMN_DESCRIPTIONS["ml.evaluation"]["metric"]
    assert columns["value"].type == "DOUBLE"
    assert columns["added_later"].description is None
    (column,) = table_metadata(DuckDBSession(con), "nowhere")[COLUMN_SCHEMA].columns
    assert column.name == "x" and column.description is None
