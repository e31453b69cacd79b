"""The real graph (DuckDB, dbt, great-expectations, Dagster) on a small generated shop."""

from __future__ import annotations

import csv
import hashlib
import re

import dagster as dg
import duckdb
import pytest

from recs_pipeline.definitions import build_defs
from recs_pipeline.warehouse import connection

from .conftest import settings_for

pytestmark = pytest.mark.slow

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


def run_all_days(settings, days):
    defs = build_defs(settings)
    job = defs.resolve_job_def("nightly_job")
    return job.execute_in_process(
        tags={RANGE_START: days[0].isoformat(), RANGE_END: days[-1].isoformat()}, raise_on_error=False
    )


def table_checksum(con: duckdb.DuckDBPyConnection, table: str, exclude: str = "") -> str:
    cols = f"* EXCLUDE ({exclude})" if exclude else "*"
    rows = con.execute(f"SELECT {cols} FROM {table} ORDER BY ALL").fetchall()
    return hashlib.sha256(repr(rows).encode()).hexdigest()


@pytest.fixture(scope="module")
def built(small_shop, tmp_path_factory):
    """The whole graph materialised once over every generated day."""
    root, report = small_shop
    settings = settings_for(tmp_path_factory.mktemp("warehouse"), RECS_LANDING_DIR=str(root / "landing"))
    from recs_pipeline.sources.adapters import build_source

    days = build_source(settings).event_days()
    result = run_all_days(settings, days)
    return settings, result, days, root / "landing"


def test_whole_graph_materialises_and_every_check_passes(built):
    settings, result, days, _ = built
    assert result.success
    evaluations = [e.event_specific_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    assert len(evaluations) >= 20
    # Every data-quality check passes. The model's promotion gate (WARN severity) is
    # not asserted here: on a shop this small the hold-out has a few dozen users.
    errors = [e for e in evaluations if e.severity == dg.AssetCheckSeverity.ERROR]
    assert [e.check_name for e in errors if not e.passed] == []
    with connection(settings.warehouse_path, read_only=True) as con:
        for table in ("staging.stg_events", "quality.quarantine_events", "features.interactions",
                      "features.user_features", "features.item_features", "features.item_feature_tokens"):
            assert con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0] > 0, table
        assert con.execute("SELECT count(DISTINCT partition_date) FROM staging.stg_events").fetchall()[0][0] == len(days)


def test_every_injected_defect_lands_with_its_reason(built):
    settings, _, _, landing = built
    with (landing / "_truth" / "defects.csv").open() as fh:
        defects = list(csv.DictReader(fh))
    assert len(defects) > 50
    with connection(settings.warehouse_path, read_only=True) as con:
        quarantined = {
            (f, int(line)): reason
            for f, line, reason in con.execute(
                "SELECT source_file, source_line, reject_reason FROM quality.quarantine_events"
            ).fetchall()
        }
        duplicates = {(f, int(line)) for f, line in con.execute(
            "SELECT source_file, source_line FROM quality.duplicate_events").fetchall()}
    wrong = []
    for d in defects:
        key = (d["file"], int(d["line"]))
        if d["kind"] == "duplicate":
            if key not in duplicates:
                wrong.append((key, d["kind"], "not in duplicate_events"))
        elif quarantined.get(key) != d["kind"]:
            wrong.append((key, d["kind"], quarantined.get(key)))
    assert wrong == []
    # ... and nothing else was rejected: the generator's clean rows all pass.
    assert len(quarantined) == sum(d["kind"] != "duplicate" for d in defects)
    assert len(duplicates) == sum(d["kind"] == "duplicate" for d in defects)


def test_raw_rows_reconcile_with_clean_quarantined_and_duplicates(built):
    settings, _, days, landing = built
    n_lines = sum(sum(1 for _ in p.open()) - 1 for p in (landing / "events").glob("*.csv"))
    with connection(settings.warehouse_path, read_only=True) as con:
        raw, clean, quarantined, dups, balanced = con.execute(
            "SELECT sum(raw_rows), sum(clean_rows), sum(quarantined_rows), sum(duplicate_rows), bool_and(is_balanced) "
            "FROM quality.event_reconciliation"
        ).fetchall()[0]
    assert raw == n_lines
    assert raw == clean + quarantined + dups and balanced


def test_rematerialising_a_partition_gives_identical_tables(built):
    settings, _, days, _ = built
    tables = ["raw.events", "staging.stg_events", "quality.quarantine_events", "quality.duplicate_events",
              "features.interactions", "features.item_features", "ml.evaluation", "serving.recommendations",
              "serving.similar_items", "marketing.personalized_content"]
    with connection(settings.warehouse_path, read_only=True) as con:
        before = {t: table_checksum(con, t, "loaded_at" if t == "raw.events" else "") for t in tables}
    defs = build_defs(settings)
    job = defs.resolve_job_def("nightly_job")
    result = job.execute_in_process(partition_key=days[2].isoformat())
    assert result.success
    with connection(settings.warehouse_path, read_only=True) as con:
        after = {t: table_checksum(con, t, "loaded_at" if t == "raw.events" else "") for t in tables}
    assert after == before


def test_dbt_steps_keep_their_parse_state_and_the_daily_models_get_their_window(built):
    """Each dbt step keeps dbt's partial-parse state between runs, and the partition
    window reaches the daily models (as env vars, so it does not force a full parse)."""
    import os

    from recs_pipeline.defs.transform import PARTIAL_PARSE_FILE, WINDOW_ENV

    settings, _, days, _ = built
    states = sorted(p.name for p in (settings.data_dir / "dbt").iterdir())
    assert states == [f"{step}.{PARTIAL_PARSE_FILE}" for step in ("after_serving_dbt_models", "daily_dbt_models",
                                                                  "dbt_models")]  # fmt: skip
    job = build_defs(settings).resolve_job_def("nightly_job")
    day = days[3].isoformat()
    assert job.execute_in_process(partition_key=day, asset_selection=[dg.AssetKey(["staging", "stg_events"])]).success
    log = (settings.data_dir / "logs" / "dbt" / "dbt.log").read_text()
    assert f"partition_date between cast('{day}' as date) and cast('{day}' as date)" in log
    assert not set(WINDOW_ENV) & set(os.environ)  # the window does not leak into later steps


def test_a_failing_blocking_check_stops_downstream_assets(built, tmp_path):
    """Corrupt the raw layer behind the pipeline's back: the lineage check fails and
    nothing downstream of raw/events runs."""
    settings, _, days, _ = built
    import shutil

    copy = tmp_path / "warehouse.duckdb"
    shutil.copy(settings.warehouse_path, copy)
    bad = settings.with_overrides(warehouse_path=copy)
    with connection(copy) as con:
        # A day inside the retention period (older rows are dropped at the next load).
        con.execute(
            "INSERT INTO raw.events (partition_date, user_id, item_id, event_type, event_ts) "
            "VALUES (DATE '2026-08-01', 'u_0000000000000001', 'I1', 'view', '2026-08-01T00:00:00Z')"
        )
    defs = build_defs(bad)
    result = dg.materialize(
        [*defs.assets, *defs.asset_checks],
        resources=defs.resources,
        partition_key=days[0].isoformat(),
        selection=dg.AssetSelection.keys(["raw", "events"], ["staging", "int_events_validated"], ["staging", "stg_events"]),
        raise_on_error=False,
    )
    failed_checks = [
        e.event_specific_data.check_name
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION" and not e.event_specific_data.passed
    ]
    assert failed_checks == ["raw_events_have_lineage"]
    materialized = {event.asset_key.to_user_string() for event in result.get_asset_materialization_events()}
    assert "raw/events" in materialized
    assert "staging/int_events_validated" not in materialized and "staging/stg_events" not in materialized


def test_training_interactions_follow_the_dbt_definition(built):
    """ml.training_set re-computes interactions for a cut-off; on all days it must equal
    features.interactions (the dbt model) row for row."""
    settings, _, _, _ = built
    from recs_pipeline.defs.ml import weighted_interactions_sql
    from recs_pipeline.engine.duckdb import DuckDBSession

    with connection(settings.warehouse_path, read_only=True) as con:
        sql = weighted_interactions_sql(settings, "true", "(SELECT max(event_ts) FROM staging.stg_events)", DuckDBSession(con))
        diff = con.execute(
            f"""SELECT count(*) FROM ({sql}) p FULL OUTER JOIN features.interactions d USING (user_id, item_id)
                WHERE p.weight IS NULL OR d.weight IS NULL OR abs(p.weight - d.weight) > 1e-9 * greatest(1, d.weight)"""
        ).fetchall()[0][0]
        n = con.execute("SELECT count(*) FROM features.interactions").fetchall()[0][0]
    assert n > 0 and diff == 0


def test_serving_tables_cover_every_user_with_reasons(built):
    settings, _, _, _ = built
    with connection(settings.warehouse_path, read_only=True) as con:
        missing = con.execute(
            "SELECT count(*) FROM features.user_features WHERE user_id NOT IN (SELECT user_id FROM serving.recommendations)"
        ).fetchall()[0][0]
        strategies = {r[0] for r in con.execute("SELECT DISTINCT strategy FROM serving.recommendations").fetchall()}
        out_of_stock = con.execute(
            "SELECT count(*) FROM serving.recommendations r JOIN features.item_features i USING (item_id) "
            "WHERE NOT i.in_stock"
        ).fetchall()[0][0]
        no_reason = con.execute(
            "SELECT count(*) FROM serving.recommendations WHERE reason IS NULL OR reason = ''"
        ).fetchall()[0][0]
        similar = con.execute("SELECT count(DISTINCT item_id) FROM serving.similar_items").fetchall()[0][0]
        n_items = con.execute("SELECT count(*) FROM features.item_features").fetchall()[0][0]
        versions = con.execute("SELECT count(DISTINCT model_version) FROM serving.recommendations").fetchall()[0][0]
    assert missing == 0
    assert {"buy_again", "model"} <= strategies or len(strategies) >= 4  # the blend's, or the ranker's sources
    assert out_of_stock == 0 and no_reason == 0
    assert similar == n_items and versions == 1
    assert (settings.model_dir / "serving.json").exists()


def test_the_ranking_stage_is_evaluated_gated_and_its_lists_name_their_sources(built):
    """ml/ranker scores the ranker and every generator on the hold-out, reports candidate
    recall, and records its gate; when it serves, the lists' strategies are generators."""
    import json

    settings, result, _, _ = built
    with connection(settings.warehouse_path, read_only=True) as con:
        evaluation = {(s, m): v for s, m, v in con.execute("SELECT * FROM ml.ranker_evaluation").fetchall()}
        recall = dict(con.execute("SELECT generator, recall FROM ml.candidate_recall").fetchall())
        strategies = {r[0] for r in con.execute("SELECT DISTINCT strategy FROM serving.recommendations").fetchall()}
        blend = con.execute(
            "SELECT value FROM ml.evaluation WHERE strategy = 'blend' AND metric = 'precision@10'"
        ).fetchall()[0][0]
    for source in ("ranker", "buy_again", "tifu_knn", "item_knn", "segment_popular", "text", "model"):
        assert (source, "precision@10") in evaluation, source
        repeat, explore = evaluation[(source, "repeat_precision@10")], evaluation[(source, "explore_precision@10")]
        assert repeat + explore == pytest.approx(evaluation[(source, "precision@10")])
    assert evaluation[("buy_again", "repeat_share@10")] == 1.0
    assert recall["union"] == max(recall.values()) and 0 < recall["union"] <= 1
    pointer = json.loads((settings.model_dir / "ranker" / "serving.json").read_text())
    rivals = max(blend, evaluation[("tifu_knn", "precision@10")])
    assert pointer["promoted"] == (evaluation[("ranker", "precision@10")] > rivals), pointer
    if pointer["promoted"]:
        assert len(strategies & {"buy_again", "tifu_knn", "item_knn", "segment_popular", "text", "model"}) >= 3
    else:
        assert strategies <= {"buy_again", "model", "new_item_content", "cold_start_features", "popular"}
    check = [e.event_specific_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"
             and e.event_specific_data.check_name == "ranker_beats_blend_and_tifu_knn"]  # fmt: skip
    assert len(check) == 1 and check[0].passed == pointer["promoted"]


def test_a_rerun_of_the_ranker_reuses_the_periods_rankers_and_scores_the_same(built, tmp_path):
    """A training cut-off's LightFM is stored by the hash of its inputs, and the rankers
    by their retraining period: rerunning ml/ranker on the same data trains nothing (no
    new model or ranker, the stored ones unchanged), gives the same evaluation and serves
    the same ranker; every stored model ends before the cut-offs it serves, and the
    reused evaluated ranker was trained as of a day at or before tonight's hold-out."""
    import json
    import shutil

    import pandas as pd

    from recs_pipeline.defs.ranking import CUTOFF_MODELS, RANKER_POINTER, RANKERS, training_cutoffs

    settings, _, days, landing = built
    shutil.copy(settings.warehouse_path, tmp_path / "warehouse.duckdb")
    shutil.copytree(settings.model_dir, tmp_path / "models")
    copy = settings_for(tmp_path, RECS_LANDING_DIR=str(landing))
    cache = copy.model_dir / CUTOFF_MODELS
    def stored_models():  # a retraining rewrites the folder (a new file), even with equal bytes
        return {d.name: ((d / "model.npz").read_bytes(), (d / "model.npz").stat().st_mtime_ns) for d in cache.iterdir()}

    stored = stored_models()
    assert stored, "the full run trained the cut-off models"
    with connection(copy.warehouse_path, read_only=True) as con:
        first_event, last_event = con.execute("SELECT min(event_ts), max(event_ts) FROM staging.stg_events").fetchone()
    holdout_days = copy.model.holdout_days
    first_holdout = pd.Timestamp(last_event).normalize() + pd.Timedelta(days=1 - holdout_days)
    cutoffs = [str(c.date()) for c in training_cutoffs(first_holdout, pd.Timestamp(first_event), holdout_days,
                                                       copy.ranking.cutoffs)]  # fmt: skip
    assert cutoffs
    horizons = [json.loads((cache / name / "metrics.json").read_text())["training"]["horizon"] for name in stored]
    assert all(h < c for h in horizons for c in cutoffs)

    def evaluation():
        with connection(copy.warehouse_path, read_only=True) as con:
            return con.execute("SELECT * FROM ml.ranker_evaluation ORDER BY ALL").fetchall()

    rankers = copy.model_dir / RANKERS
    def stored_rankers():
        return {p.relative_to(rankers): (p.read_bytes(), p.stat().st_mtime_ns) for p in rankers.rglob("ranker.*")}

    first, first_rankers = evaluation(), stored_rankers()
    pointer = json.loads((rankers / RANKER_POINTER).read_text())
    assert pointer["version"] and any(p.parts[1:] == ("evaluated", "ranker.txt") for p in first_rankers)
    anchor = json.loads((rankers / pointer["version"] / "ranker.json").read_text())["stage"]["anchor"]
    assert pd.Timestamp(anchor) <= first_holdout
    job = build_defs(copy).resolve_job_def("nightly_job")
    result = job.execute_in_process(asset_selection=[dg.AssetKey(["ml", "ranker"])],
                                    tags={RANGE_START: days[0].isoformat(), RANGE_END: days[-1].isoformat()})  # fmt: skip
    assert result.success
    assert stored_models() == stored
    assert stored_rankers() == first_rankers
    assert evaluation() == first
    assert json.loads((rankers / RANKER_POINTER).read_text())["version"] == pointer["version"]
    trained = result.asset_materializations_for_node("ml__ranker")[0].metadata["ranker_trained"].text
    assert trained.startswith("reused"), trained


def test_campaign_content_respects_consent_and_recent_purchases(built):
    settings, _, _, _ = built
    with connection(settings.warehouse_path, read_only=True) as con:
        n_rows, n_users = con.execute(
            "SELECT count(*), count(DISTINCT user_id) FROM marketing.personalized_content"
        ).fetchall()[0]
        without_consent = con.execute(
            "SELECT count(*) FROM marketing.personalized_content c JOIN features.user_features u USING (user_id) "
            "WHERE NOT u.marketing_consent"
        ).fetchall()[0][0]
        sizes = dict(con.execute(
            "SELECT channel, max(json_array_length(items)) FROM marketing.personalized_content GROUP BY 1"
        ).fetchall())
        recently_bought_shown = con.execute(
            """SELECT count(*) FROM marketing.personalized_content c,
                      unnest(from_json(c.items, '[{"item_id": "VARCHAR"}]')) AS t(item)
               JOIN staging.stg_events e ON e.user_id = c.user_id AND e.item_id = t.item.item_id
               WHERE e.event_type = 'purchase'
                 AND e.event_ts >= (SELECT max(event_ts) FROM staging.stg_events) - INTERVAL 7 DAY"""
        ).fetchall()[0][0]
    assert n_rows > 0 and n_rows <= 2 * n_users
    assert without_consent == 0
    assert sizes == {"email": 3, "home_page": 5}
    assert recently_bought_shown == 0


def test_feedback_loop_reconciles(built, tmp_path):
    """Shoppers see the published lists for three more days; the next run measures them."""
    import shutil

    from recs_pipeline.cli import published_lists
    from recs_pipeline.synthetic.continuation import continue_landing_zone

    settings, _, days, landing = built
    # Work on copies: the other tests keep reading the original warehouse and landing zone.
    shutil.copytree(landing, tmp_path / "landing")
    shutil.copy(settings.warehouse_path, tmp_path / "warehouse.duckdb")
    shutil.copytree(settings.model_dir, tmp_path / "models")
    loop = settings_for(tmp_path, RECS_LANDING_DIR=str(tmp_path / "landing"))
    report = continue_landing_zone(loop.landing_dir, 3, *published_lists(loop))
    assert report.n_impressions > 0
    result = run_all_days(loop, report.days)
    assert result.success
    with connection(loop.warehouse_path, read_only=True) as con:
        served = con.execute("SELECT count(*) FROM feedback.served_recommendations").fetchall()[0][0]
        impressions = con.execute("SELECT sum(impressions) FROM feedback.daily_variant_metrics").fetchall()[0][0]
        raw_impressions = con.execute(
            "SELECT count(*) FROM staging.stg_events WHERE event_type = 'impression'"
        ).fetchall()[0][0]
        clicks = con.execute("SELECT count(*) FROM staging.stg_events WHERE event_type = 'click'").fetchall()[0][0]
        attributed_clicks = con.execute(
            "SELECT count(*) FROM feedback.attributed_events WHERE event_type = 'click'"
        ).fetchall()[0][0]
        counted_twice = con.execute(
            "SELECT count(*) - count(DISTINCT event_id) FROM feedback.attributed_events"
        ).fetchall()[0][0]
        unattributed = con.execute(
            "SELECT count(*) FROM feedback.served_recommendations WHERE variant = 'unattributed'"
        ).fetchall()[0][0]
        variants = {r[0] for r in con.execute("SELECT DISTINCT variant_b FROM feedback.experiment_results").fetchall()}
    assert served == impressions == raw_impressions > 0
    assert unattributed == 0
    # The campaign loop: the first day's sends were delivered and answered, the run
    # attributed the answers, and every logged send is in the results once.
    assert report.n_sends_answered > 0 and report.n_message_events > report.n_sends_answered
    with connection(loop.warehouse_path, read_only=True) as con:
        answered_day = con.execute("SELECT min(send_date) FROM marketing.campaign_sends").fetchall()[0][0]
        first_sends = con.execute("SELECT count(*) FROM marketing.campaign_sends WHERE send_date = ?",
                                  [answered_day]).fetchall()[0][0]  # fmt: skip
        delivered = con.execute("SELECT count(*) FROM staging.stg_message_events WHERE event_type = 'message_sent'"
                                ).fetchall()[0][0]  # fmt: skip
        logged = con.execute("SELECT count(*) FROM marketing.campaign_sends").fetchall()[0][0]
        results = con.execute("SELECT sum(sends), sum(sends_measured), sum(delivered), sum(opens) "
                              "FROM feedback.campaign_results").fetchall()[0]  # fmt: skip
        behaviour = con.execute("SELECT count(*) FROM staging.stg_events WHERE event_type LIKE 'message%'").fetchall()[0][0]
    assert answered_day == report.days[0] and delivered == first_sends == report.n_sends_answered
    assert results[0] == logged > first_sends and results[1] == results[2] == first_sends and results[3] > 0
    assert behaviour == 0  # message events are not shopper behaviour (features, models)
    reconcile = [e.event_specific_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"
                 and e.event_specific_data.check_name == "campaign_results_reconcile"]  # fmt: skip
    assert reconcile and reconcile[0].passed
    assert 0 < attributed_clicks <= clicks and counted_twice == 0
    assert "hybrid" in variants
    # The next night continues yesterday's models instead of training from scratch.
    training = {
        event.asset_key.to_user_string(): event.materialization.metadata["training"].value
        for event in result.get_asset_materialization_events()
        if event.asset_key.to_user_string() in ("ml/model", "ml/evaluation")
    }
    assert training["ml/model"].startswith("warm start of") and training["ml/evaluation"].startswith("warm start of")
    first = {
        event.asset_key.to_user_string(): event.materialization.metadata["training"].value
        for event in built[1].get_asset_materialization_events()
        if event.asset_key.to_user_string() in ("ml/model", "ml/evaluation")
    }
    # The first run trains the hold-out model from scratch and the serving model continues it.
    assert first["ml/evaluation"].startswith("from scratch")
    # ...on what the hold-out model has not seen (the hold-out days) and as many replayed.
    assert re.fullmatch(
        r"warm start of \w+ \(5 epochs on [\d,]+ new and [\d,]+ replayed interactions; 1 in a row .*\)",
        first["ml/model"],
    ), first["ml/model"]


def test_cli_reads_the_published_snapshot(built, monkeypatch, capsys):
    from recs_pipeline.cli import main
    from recs_pipeline.defs.publish import snapshot_path

    settings, _, _, landing = built
    assert snapshot_path(settings.warehouse_path).exists()
    monkeypatch.setenv("RECS_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("RECS_LANDING_DIR", str(landing))
    with connection(settings.warehouse_path, read_only=True) as con:
        user = con.execute("SELECT min(user_id) FROM serving.recommendations").fetchall()[0][0]

    assert main(["recommend", user]) == 0
    out = capsys.readouterr()
    assert "published snapshot" in out.err
    assert out.out.count("\n") == 2 + settings.model.top_n and "reason" in out.out

    assert main(["sql", "SELECT count(*) AS n FROM quality.event_reconciliation WHERE NOT is_balanced"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].strip() == "0"

    # A shopper the pipeline has never seen gets the fallback list, with its reason.
    assert main(["recommend", "no-such-user"]) == 0
    out = capsys.readouterr()
    assert "no list of their own yet" in out.err and "the list for everyone" in out.err
    assert out.out.count("\n") == 2 + settings.model.top_n and "fallback_global" in out.out
    assert "Popular with shoppers in the last 30 days" in out.out and "Traceback" not in out.err
    with connection(settings.warehouse_path, read_only=True) as con:
        country = con.execute(
            "SELECT segment_value FROM serving.fallback_recommendations WHERE segment_kind = 'country' "
            "ORDER BY segment_value LIMIT 1"
        ).fetchall()[0][0]
    assert main(["recommend", "no-such-user", "--country", country]) == 0
    out = capsys.readouterr()
    assert f"the list for country {country}" in out.err and f"of your country ({country})" in out.out


def test_fallback_lists_cover_every_segment_with_in_stock_best_sellers(built):
    """serving.fallback_recommendations: a global list and one per country, age band and
    segment, each the segment's most bought in-stock items of the last 30 days."""
    settings, _, _, _ = built
    n = settings.model.top_n
    with connection(settings.warehouse_path, read_only=True) as con:
        lists = con.execute(
            "SELECT segment_kind, count(DISTINCT segment_value), min(n), max(n) FROM (SELECT segment_kind, "
            "segment_value, count(*) AS n FROM serving.fallback_recommendations GROUP BY ALL) GROUP BY 1 ORDER BY 1"
        ).fetchall()
        countries = con.execute(
            "SELECT count(DISTINCT country) FROM features.user_features WHERE country IS NOT NULL"
        ).fetchall()[0][0]
        out_of_stock = con.execute(
            "SELECT count(*) FROM serving.fallback_recommendations JOIN features.item_features USING (item_id) "
            "WHERE NOT in_stock"
        ).fetchall()[0][0]
        # The global list, recomputed: distinct buyers of the last 30 days, in-stock items.
        expected = con.execute(
            f"""SELECT item_id FROM staging.stg_events JOIN features.item_features USING (item_id)
                WHERE event_type = 'purchase' AND NOT is_anonymous AND in_stock
                  AND event_date > (SELECT max(event_date) FROM staging.stg_events) - INTERVAL 30 DAY
                GROUP BY item_id ORDER BY count(DISTINCT user_id) DESC, item_id LIMIT {n}"""
        ).fetchall()
        got = con.execute(
            "SELECT item_id FROM serving.fallback_recommendations WHERE segment_kind = 'global' ORDER BY rank"
        ).fetchall()
    kinds = {kind: (values, lo, hi) for kind, values, lo, hi in lists}
    assert kinds["global"] == (1, n, n) and kinds["country"][0] == countries and set(kinds) >= {"global", "country", "age_band"}
    assert out_of_stock == 0 and got == expected


def test_report_writes_a_self_contained_html_file_with_charts(built, tmp_path):
    import re

    from recs_pipeline.report import write_report

    settings, _, _, _ = built
    path = write_report(settings.warehouse_path, tmp_path / "reports")
    document = path.read_text()
    assert (tmp_path / "reports" / "latest.html").read_text() == document
    assert re.findall(r"<h2>(.*?)</h2>", document) == [
        "Data quality", "Model vs baselines on the hold-out", "What is served", "Experiment: lift over time"
    ]
    assert document.count("data:image/png;base64,") == 2  # lines per day, metrics; no experiment data yet
    with connection(settings.warehouse_path, read_only=True) as con:
        raw = con.execute("SELECT sum(raw_rows) FROM quality.event_reconciliation").fetchall()[0][0]
    assert f"raw {raw:,} = clean" in document
    assert "nothing to measure" in document and "<td>blend</td>" in document


def test_cli_run_shows_each_step_as_it_finishes(built, tmp_path, monkeypatch, capsys):
    import shutil

    from recs_pipeline.cli import main

    settings, _, days, landing = built
    shutil.copy(settings.warehouse_path, tmp_path / "warehouse.duckdb")
    monkeypatch.setenv("RECS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("RECS_LANDING_DIR", str(landing))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    assert main(["run", "--select", "raw/items,raw/users", "--start", days[0].isoformat()]) == 0
    err = capsys.readouterr().err
    assert re.search(r"\[1/2\] raw__(items|users) done", err) and re.search(r"\[2/2\] raw__(items|users) done", err)
