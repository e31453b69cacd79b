"""The ``recs`` command: generate the demo shop, run the pipeline, query the warehouse.

    recs generate            # write the synthetic shop's landing zone
    recs run                 # materialise every asset for every day with a file
    recs simulate --days 7   # shoppers see the published lists (and get the campaign sends) for 7 more days
    recs simulate --days 14 --nightly   # ... with the pipeline run after each day, as in production
    recs run --start 2026-10-31 --end 2026-11-06
    recs run --start 2026-10-01 --end 2026-10-07
    recs sql "SELECT * FROM features.interactions LIMIT 5"
    recs recommend U000042
    recs export campaign --date 2026-11-07 --format csv   # the day's messages for the shop's sender
    recs tune [--trials 4]   # Optuna over LightFM, TIFU-KNN and the ranker -> data/models/tuned.json
    recs report              # also writes data/reports/latest.html with charts
    recs bench [quality]     # benchmarks (from a source checkout)
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
import warnings
from datetime import date
from pathlib import Path

from recs_pipeline.settings import Settings, load_settings

SUMMARY_TABLES = (
    "raw.events",
    "staging.stg_events",
    "quality.quarantine_events",
    "quality.duplicate_events",
    "features.interactions",
    "features.user_features",
    "features.item_features",
)

EXAMPLE_QUERY = """SELECT reject_reason, count(*) AS n_rows
FROM quality.quarantine_events
GROUP BY reject_reason
ORDER BY n_rows DESC"""


class CliError(Exception):
    """A user-facing error: printed as one line plus a hint, without a traceback."""

    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.hint = hint


def _print_table(columns: list[str], rows: list[tuple], max_rows: int = 50) -> None:
    shown = [tuple("NULL" if v is None else str(v) for v in r) for r in rows[:max_rows]]
    widths = [max([len(c)] + [len(r[i]) for r in shown]) for i, c in enumerate(columns)]
    print(" | ".join(c.ljust(w) for c, w in zip(columns, widths)))
    print("-+-".join("-" * w for w in widths))
    for r in shown:
        print(" | ".join(v.ljust(w) for v, w in zip(r, widths)))
    if len(rows) > max_rows:
        print(f"... {len(rows) - max_rows} more rows")


def cmd_generate(settings: Settings, args: argparse.Namespace) -> None:
    from recs_pipeline.synthetic.shop import ShopConfig, generate_landing_zone

    config = ShopConfig(seed=args.seed or settings.synthetic_seed, n_days=args.days or settings.synthetic_days)
    config = config.scaled(args.scale or settings.synthetic_scale)
    if args.dirt_rate is not None:
        from dataclasses import replace

        config = replace(config, dirt_rate=args.dirt_rate)
    report = generate_landing_zone(settings.landing_dir, config)
    print(
        f"generated {report.n_days} days, {report.n_events_written:,} event lines "
        f"({sum(report.n_defects.values()):,} injected defects) in {report.seconds:.1f}s -> {settings.landing_dir}"
    )


def published_lists(settings: Settings):
    """(day -> the lists in force that day, day -> the campaign sends of that day), read
    from the warehouse with the shop's own user ids."""
    from recs_pipeline.privacy import Pseudonymizer
    from recs_pipeline.synthetic.continuation import NoListsError, lists_from_warehouse, pseudonym_map, sends_from_warehouse

    engine = warehouse_engine(settings)
    user_map = pseudonym_map(settings.landing_dir, Pseudonymizer.from_settings(settings.privacy).many)
    try:
        lists = lists_from_warehouse(engine, user_map)
    except NoListsError as exc:
        raise CliError(str(exc), "run `recs run` first so that there are lists to show") from None
    return lists, sends_from_warehouse(engine, user_map)


def cmd_simulate(settings: Settings, args: argparse.Namespace) -> None:
    from recs_pipeline.synthetic.continuation import continue_landing_zone

    if settings.source.kind != "synthetic":
        raise CliError("only the synthetic shop can be simulated", "unset RECS_SOURCE")
    if not (settings.landing_dir / "_truth" / "state.npz").exists():
        raise CliError(f"no generated shop in {settings.landing_dir}", "run `recs generate` first")
    if args.days < 1:
        raise CliError("--days must be at least 1")
    # With --nightly the pipeline runs after every simulated day, as the nightly schedule
    # would: the next day's lists and campaign sends then learn from the day before.
    steps = [1] * args.days if args.nightly else [args.days]
    t0 = time.perf_counter()
    for n_days in steps:
        lists, sends = published_lists(settings)
        report = continue_landing_zone(settings.landing_dir, n_days, lists, sends)
        print(
            f"simulated {len(report.days)} more day(s) ({report.days[0]} to {report.days[-1]}): "
            f"{report.n_events_written:,} event lines, {report.n_impressions:,} recommendation impressions, "
            f"{report.n_sends_answered:,} campaign sends delivered, {report.n_message_events:,} message events"
        )
        if args.nightly:
            day = report.days[-1]
            result = run_pipeline(settings, day, day, progress=False)
            if not result.success:
                for line in failure_lines(result):
                    print(f"  - {line}", file=sys.stderr)
                raise CliError(f"the nightly run for {day} failed", "see the lines above; rerun with --debug for logs")
            print(f"  nightly run for {day} done ({time.perf_counter() - t0:.0f}s so far)")


def _instance():
    import dagster as dg

    if os.environ.get("DAGSTER_HOME"):
        Path(os.environ["DAGSTER_HOME"]).mkdir(parents=True, exist_ok=True)
        return dg.DagsterInstance.get()
    return dg.DagsterInstance.ephemeral()


def run_pipeline(
    settings: Settings,
    start: date | None = None,
    end: date | None = None,
    selection: str | None = None,
    progress: bool = False,
):
    """Materialise the graph for a range of days in one in-process run; returns the result.
    With ``progress`` the steps are shown as they finish."""
    from recs_pipeline.definitions import build_defs
    from recs_pipeline.sources.adapters import build_source

    days = build_source(settings).event_days()
    if not days:
        raise CliError(
            f"no event files found for the {settings.source.kind} source",
            "run `recs generate` first (synthetic shop), or check RECS_SOURCE / RECS_SOURCE_PATH",
        )
    start = start or days[0]
    end = end or days[-1]
    defs = build_defs(settings)
    job = defs.resolve_job_def("nightly_job")
    tags = {
        "dagster/asset_partition_range_start": start.isoformat(),
        "dagster/asset_partition_range_end": end.isoformat(),
    }
    kwargs = {"asset_selection": _parse_selection(selection)} if selection else {}
    # Step-by-step logs go to the Dagster UI (DAGSTER_HOME); the terminal shows the steps
    # and, when one fails, its error in one line (failure_lines). --debug shows Dagster's log.
    level = "DEBUG" if os.environ.get("RECS_DEBUG") == "1" else "CRITICAL"
    quiet = {"loggers": {"console": {"config": {"log_level": level}}}}
    instance = _instance()
    if not progress:
        # No progress lines, and what the steps print (dbt's log lines) goes to the log file.
        import contextlib
        import uuid

        run_id = str(uuid.uuid4())
        log_dir = settings.data_dir / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        with (log_dir / f"{run_id}.log").open("w") as log_file, contextlib.redirect_stdout(log_file):
            return job.execute_in_process(
                instance=instance, tags=tags, raise_on_error=False, run_config=quiet, run_id=run_id, **kwargs
            )
    n_steps = len((job.get_subset(asset_selection=set(kwargs["asset_selection"])) if selection else job).graph.nodes)
    return _with_progress(
        instance,
        n_steps,
        settings.data_dir / "logs",
        lambda run_id: job.execute_in_process(
            instance=instance, tags=tags, raise_on_error=False, run_config=quiet, run_id=run_id, **kwargs
        ),
    )


def _with_progress(instance, n_steps: int, log_dir: Path, execute):
    """Run ``execute(run_id)`` in a thread and show the run's steps as they finish: a
    progress bar on a terminal, one line per step otherwise (logs of `make run`).
    What the steps print (dbt's log lines) goes to ``log_dir/<run id>.log``."""
    import contextlib
    import threading
    import uuid

    import dagster as dg
    from tqdm import tqdm

    run_id = str(uuid.uuid4())  # Dagster run ids are UUID4 strings
    outcome: dict = {}

    def target() -> None:
        try:
            outcome["result"] = execute(run_id)
        except BaseException as exc:  # re-raised in the caller's thread
            outcome["error"] = exc

    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{run_id}.log"
    kinds = {dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE}
    on_terminal = sys.stderr.isatty()
    with log_path.open("w") as log_file, contextlib.redirect_stdout(log_file):
        worker = threading.Thread(target=target, name="recs-run", daemon=True)
        worker.start()
        bar = tqdm(total=n_steps, unit="step", disable=not on_terminal, dynamic_ncols=True, file=sys.stderr)
        seen = 0
        started = time.perf_counter()
        while True:
            alive = worker.is_alive()
            try:
                finished = instance.all_logs(run_id, of_type=kinds)
            except Exception:  # noqa: BLE001 - the run may not be registered yet
                finished = []
            for record in finished[seen:]:
                step = record.step_key or "?"
                failed = record.dagster_event.event_type == dg.DagsterEventType.STEP_FAILURE
                bar.set_postfix_str(("FAILED " if failed else "") + step[:40])
                bar.update(1)
                if not on_terminal:
                    print(f"[{seen + 1}/{n_steps}] {step} {'FAILED' if failed else 'done'} "
                          f"({time.perf_counter() - started:.0f}s)", file=sys.stderr, flush=True)
                seen += 1
            if not alive:
                break
            worker.join(timeout=0.5)
        bar.close()
    print(f"step output (dbt's log lines): {log_path}", file=sys.stderr)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def _parse_selection(selection: str):
    import dagster as dg

    return [dg.AssetKey(s.strip().split("/")) for s in selection.split(",") if s.strip()]


def failure_lines(result) -> list[str]:
    lines = []
    for event in result.all_events:
        if event.event_type_value == "STEP_FAILURE":
            # Dagster wraps the asset's own error ("Error occurred while executing op ...");
            # the innermost cause is the one that names the file, line and field.
            error = event.event_specific_data.error
            while error.cause is not None:
                error = error.cause
            if error.cls_name == "DagsterAssetCheckFailedError":
                continue  # the failed check has a line of its own
            message = error.message.strip().splitlines()
            first = re.sub(r"^(?:\w+\.)+(?=\w*(?:Error|Exception|Failure):)", "", message[0]) if message else "failed"
            # A Failure raised on purpose carries its own one-line description.
            first = re.sub(r"^Failure: ", "", first)
            lines.append(f"{event.step_key}: {first}")
        elif event.event_type_value == "ASSET_CHECK_EVALUATION" and not event.event_specific_data.passed:
            data = event.event_specific_data
            why = f": {data.description}" if getattr(data, "description", None) else ""
            lines.append(f"check {data.check_name} on {data.asset_key.to_user_string()} failed{why}")
    return lines


def warehouse_engine(settings: Settings):
    """The engine on the run's warehouse (None before the first run wrote anything)."""
    from recs_pipeline.engine import create_engine

    if not settings.engine_path.exists():
        return None
    return create_engine(settings.engine.kind, settings.engine_path, spark=settings.engine)


def rejected_files(settings: Settings, start: date | None, end: date | None) -> list[tuple]:
    """The files of the run's days that the load refused and no later delivery replaced."""
    engine = warehouse_engine(settings)
    if engine is None:
        return []
    with engine.session(read_only=True) as db:
        if not db.table_exists("quality.rejected_files"):
            return []
        return db.rows(
            "SELECT partition_date, source_file, reason FROM quality.rejected_files "
            "WHERE resolved_at IS NULL AND partition_date BETWEEN coalesce(?, DATE '0001-01-01') "
            "AND coalesce(?, DATE '9999-12-31') ORDER BY 1",
            [start, end],
        )


def loaded_days(settings: Settings) -> set[date]:
    engine = warehouse_engine(settings)
    if engine is None:
        return set()
    with engine.session(read_only=True) as db:
        if not db.table_exists("raw.events"):
            return set()
        return {r[0] for r in db.rows("SELECT DISTINCT partition_date FROM raw.events")}


def cmd_run(settings: Settings, args: argparse.Namespace) -> None:
    from recs_pipeline.sources.adapters import build_source

    t0 = time.perf_counter()
    start = date.fromisoformat(args.start) if args.start else None
    end = date.fromisoformat(args.end) if args.end else start if args.start and not args.end else None
    if args.new:
        new = sorted(set(build_source(settings).event_days()) - loaded_days(settings))
        if not new:
            print("no new days to load")
            return
        start, end = new[0], new[-1]
        print(f"loading {len(new)} new day(s): {start} to {end}")
    from recs_pipeline.privacy.pseudonym import KEY_ENV_VAR

    if not os.environ.get(KEY_ENV_VAR):
        print(f"warning: {KEY_ENV_VAR} is not set: user ids are pseudonymised with the public demo key; "
              "set a secret key for real data (docs/privacy.md)", file=sys.stderr)
    result = run_pipeline(settings, start, end, args.select, progress=not args.quiet)
    elapsed = time.perf_counter() - t0
    rejected = rejected_files(settings, start, end)
    if not result.success:
        for line in failure_lines(result):
            print(f"  - {line}", file=sys.stderr)
        raise CliError(f"the run failed after {elapsed:.0f}s", "see the lines above; rerun with --debug for logs")
    print(f"\nrun succeeded in {elapsed:.1f}s{' for the other days' if rejected else ''}; "
          f"warehouse: {settings.engine_path}\n")
    print_summary(settings)
    if rejected:
        for day, source_file, reason in rejected:
            print(f"  - rejected {source_file or '(no file)'} ({day}): {reason}", file=sys.stderr)
        files = ", ".join(f"{f or d}" for d, f, _ in rejected)
        raise CliError(
            f"{len(rejected)} file(s) rejected, the other days loaded: {files}",
            "fix or re-deliver each file, then `recs run --start DAY`; "
            "recs sql \"SELECT * FROM quality.rejected_files WHERE resolved_at IS NULL\"",
        )


def cmd_tune(settings: Settings, args: argparse.Namespace) -> None:
    """tuning_job in-process: the best parameters go to <model_dir>/tuned.json (next runs use them)."""
    import json

    from recs_pipeline.definitions import build_defs
    from recs_pipeline.settings import TUNED_FILE

    t0 = time.perf_counter()
    trials = {f"{s}_trials": args.trials for s in ("lightfm", "tifu_knn", "ranker")} if args.trials is not None else {}
    level = "DEBUG" if os.environ.get("RECS_DEBUG") == "1" else "CRITICAL"
    config = {"ops": {"ml__tuned_parameters": {"config": trials}}, "loggers": {"console": {"config": {"log_level": level}}}}
    result = build_defs(settings).resolve_job_def("tuning_job").execute_in_process(
        instance=_instance(), run_config=config, raise_on_error=False)  # fmt: skip
    if not result.success:
        for line in failure_lines(result):
            print(f"  - {line}", file=sys.stderr)
        raise CliError(f"tuning failed after {time.perf_counter() - t0:.0f}s", "run `recs run` first; --debug for logs")
    tuned = json.loads((settings.model_dir / TUNED_FILE).read_text())
    for study, decision in tuned["decisions"].items():
        print(f"{study}: {decision}")
    print(f"tuned in {time.perf_counter() - t0:.0f}s: {settings.model_dir / TUNED_FILE} (used by the next runs)")


def print_summary(settings: Settings) -> None:
    engine = warehouse_engine(settings)
    if engine is None:
        return
    with engine.session(read_only=True) as db:
        rows = [(t, db.scalar(f"SELECT count(*) FROM {t}")) for t in SUMMARY_TABLES if db.table_exists(t)]
        _print_table(["table", "rows"], [(t, f"{n:,}") for t, n in rows])
        if db.table_exists("quality.event_reconciliation"):
            r = db.row(
                "SELECT sum(raw_rows), sum(clean_rows), sum(quarantined_rows), sum(duplicate_rows), "
                "min(CASE WHEN is_balanced THEN 1 ELSE 0 END) = 1, "
                "sum(rejected_lines), sum(rejected_files) FROM quality.event_reconciliation"
            )
            rejected = f"; {r[5]:,} lines of {r[6]} rejected file(s) (quality.rejected_files)" if r[5] or r[6] else ""
            print(f"\nreconciliation: raw {r[0]:,} = clean {r[1]:,} + quarantined {r[2]:,} + duplicates {r[3]:,} -> "
                  f"{'balanced' if r[4] else 'NOT BALANCED'}{rejected}")
        print(f"\nexample query (recs sql \"...\"):\n{EXAMPLE_QUERY}\n")
        example = db.df(EXAMPLE_QUERY)
        _print_table(list(example.columns), list(example.itertuples(index=False, name=None)))


REPORT_QUERIES = {
    "model vs baselines on the hold-out (ml.evaluation)": """
        PIVOT (SELECT strategy, metric, round(value, 4) AS value FROM ml.evaluation
               WHERE metric IN ('precision@10', 'recall@10', 'ndcg@10', 'coverage'))
        ON metric USING first(value) ORDER BY "precision@10" DESC""",
    "lists served (serving.recommendations)": """
        SELECT strategy, count(DISTINCT user_id) AS users, count(*) AS rows
        FROM serving.recommendations GROUP BY 1 ORDER BY 2 DESC""",
    "experiment results (feedback.experiment_results)": """
        SELECT metric, variant_b || ' vs ' || variant_a AS comparison, round(value_a, 4) AS control,
               round(value_b, 4) AS variant, round(lift, 3) AS lift,
               '[' || round(ci_low, 3) || ', ' || round(ci_high, 3) || ']' AS lift_ci_95,
               round(p_value, 5) AS p_value, n_a, n_b, underpowered
        FROM feedback.experiment_results ORDER BY metric, comparison""",
}


def cmd_report(settings: Settings, args: argparse.Namespace) -> None:
    from recs_pipeline.warehouse import connection, table_exists

    with connection(readable_warehouse(settings), read_only=True, lock_timeout_s=30, shared=True) as con:
        for title, query in REPORT_QUERIES.items():
            table = title.split("(")[-1].rstrip(")")
            if not table_exists(con, table):
                continue
            print(f"\n{title}")
            cur = con.execute(query)
            _print_table([d[0] for d in cur.description], cur.fetchall())
    from recs_pipeline.report import write_report

    path = write_report(readable_warehouse(settings), settings.data_dir / "reports")
    print(f"\nHTML report with charts: {path} (also {path.parent / 'latest.html'})")


def cmd_bench(settings: Settings, args: argparse.Namespace) -> None:
    """Run a benchmark script of the source checkout (benchmarks/ is not installed)."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    if not (root / "benchmarks" / "pipeline.py").exists():
        raise CliError("the benchmarks are not installed with the package", "run `recs bench` from a git checkout")
    module = "benchmarks.quality" if args.what == "quality" else "benchmarks.pipeline"
    extra = [] if args.what == "quality" else ["--scales", args.scales] + (["--quick"] if args.quick else [])
    completed = subprocess.run([sys.executable, "-m", module, *extra], cwd=root)
    if completed.returncode:
        raise CliError(f"{module} failed with exit status {completed.returncode}", "see its output above")


def readable_warehouse(settings: Settings, live: bool = False) -> Path:
    """The published snapshot (never locked by a run) unless ``live``; the live file otherwise."""
    from recs_pipeline.defs.publish import snapshot_path

    snapshot = snapshot_path(settings.engine_path)
    if not live and snapshot.exists():
        stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime(snapshot.stat().st_mtime))
        print(f"(published snapshot of {stamp}; --live queries the warehouse itself)", file=sys.stderr)
        return snapshot
    if settings.engine.kind != "duckdb":
        # The snapshot is a DuckDB copy of the Spark tables: SQL users read that.
        raise CliError(
            f"no published snapshot at {snapshot} (on the {settings.engine.kind} engine the CLI reads the "
            "snapshot the run publishes; --live reads a DuckDB warehouse only)",
            "run `recs run` first; query the Spark tables themselves with spark-sql or dbt",
        )
    if not settings.warehouse_path.exists():
        raise CliError(f"no warehouse at {settings.warehouse_path}", "run `make run` (or `recs run`) first")
    return settings.warehouse_path


def cmd_sql(settings: Settings, args: argparse.Namespace) -> None:
    from recs_pipeline.warehouse import StatementTimeout, analyst_connection, run_with_timeout

    import duckdb

    limits = settings.sql
    with analyst_connection(
        readable_warehouse(settings, args.live),
        memory_limit=limits.memory_limit,
        threads=limits.threads,
        spill_limit=limits.spill_limit,
    ) as con:
        try:
            result = run_with_timeout(con, args.query, limits.timeout_s, max_rows=max(args.max_rows, 0))
        except StatementTimeout:
            raise CliError(
                f"the query was stopped after {limits.timeout_s:g} s "
                "(statement timeout; set RECS_SQL_TIMEOUT_S or [sql] timeout_s)",
                "filter or aggregate more (WHERE, LIMIT), or raise the timeout for this query: "
                "RECS_SQL_TIMEOUT_S=300 recs sql ...",
            ) from None
        except duckdb.OutOfMemoryException as exc:
            spilled = "max_temp_directory_size" in str(exc)
            raise CliError(
                f"the query needs more than {limits.memory_limit} of memory"
                + (f" and {limits.spill_limit} of temporary disk" if spilled else "")
                + " (memory limit; set RECS_SQL_MEMORY_LIMIT or [sql] memory_limit"
                + (", RECS_SQL_SPILL_LIMIT or [sql] spill_limit)" if spilled else ")"),
                "filter before joining or sorting, select fewer columns, or raise the limit for this query: "
                "RECS_SQL_MEMORY_LIMIT=8GB recs sql ...",
            ) from None
        except duckdb.Error as exc:
            raise CliError(
                str(exc).splitlines()[0],
                "recs sql is read-only and cannot read or write other files; the tables are described in docs/tables.md",
            ) from exc
    if result.columns is None:
        print("(statement ran; it returned no rows)")
        return
    _print_table(result.columns, result.rows, max_rows=args.max_rows)
    if result.n_rows > len(result.rows):
        print(f"... {result.n_rows - len(result.rows)} more rows")

def cmd_recommend(settings: Settings, args: argparse.Namespace) -> None:
    from recs_pipeline.privacy import Pseudonymizer
    from recs_pipeline.warehouse import connection

    # The tables hold pseudonyms: accept the shop's own id (hashed with the key) or a pseudonym.
    candidates = [args.user_id, Pseudonymizer.from_settings(settings.privacy).one(args.user_id) or args.user_id]
    with connection(readable_warehouse(settings, args.live), read_only=True, lock_timeout_s=30, shared=True) as con:
        cur = con.execute(
            """SELECT r.rank, r.item_id, coalesce(i.title, '') AS title, i.category, round(i.price, 2) AS price,
                      r.strategy, r.reason
               FROM serving.recommendations r LEFT JOIN features.item_features i USING (item_id)
               WHERE r.user_id IN (?, ?) ORDER BY r.rank""",
            candidates,
        )
        rows = cur.fetchall()
        if rows:
            _print_table([d[0] for d in cur.description], rows)
            return
        from recs_pipeline.warehouse import table_exists

        if not table_exists(con, "serving.fallback_recommendations"):
            raise CliError(
                f"no recommendations for user {args.user_id!r}",
                "check the id (the shop's id, e.g. U000042, or its pseudonym: "
                "recs sql \"SELECT user_id FROM serving.recommendations LIMIT 5\"); "
                "RECS_PSEUDONYM_KEY must be the key the pipeline ran with",
            )
        # A shopper never seen before: the list of what we know of them (--country, or the
        # profile of a known user without a list), else the global one.
        known = con.execute(
            "SELECT country, age_band, segment FROM features.user_features WHERE user_id IN (?, ?) LIMIT 1", candidates
        ).fetchall()
        wanted = [("country", args.country)] if args.country else []
        if known:
            wanted += [(kind, value) for kind, value in zip(("country", "age_band", "segment"), known[0]) if value]
        wanted.append(("global", "*"))
        query = """SELECT f.rank, f.item_id, coalesce(i.title, '') AS title, i.category, round(i.price, 2) AS price,
                          'fallback_' || f.segment_kind AS strategy, f.reason
                   FROM serving.fallback_recommendations f LEFT JOIN features.item_features i USING (item_id)
                   WHERE f.segment_kind = ? AND f.segment_value = ? ORDER BY f.rank"""
        for kind, value in wanted:
            cur = con.execute(query, [kind, value])
            rows = cur.fetchall()
            if rows:
                label = "everyone" if kind == "global" else f"{kind.replace('_', ' ')} {value}"
                print(f"user {args.user_id!r} has no list of their own yet (a shopper the last run has not seen): "
                      f"the list for {label}", file=sys.stderr)
                _print_table([d[0] for d in cur.description], rows)
                return
        raise CliError(f"no recommendations for user {args.user_id!r}, and no fallback list", "run `recs run` first")


EXPORT_COLUMNS = ("user_id", "channel", "subject", "preheader", "item_ids", "titles", "prices", "send_at",
                  "campaign", "variant", "send_id")


def campaign_messages(con, day: date) -> list[dict]:
    """The messages of ``marketing.campaign_sends`` for ``day``, one dict per message with
    :data:`EXPORT_COLUMNS` (lists of item ids, titles and prices; no images)."""
    import json

    cur = con.execute(
        "SELECT user_id, channel, headline, preheader, items, send_at, campaign, variant, send_id "
        "FROM marketing.campaign_sends WHERE send_date = ? ORDER BY send_at, send_id",
        [day],
    )
    messages = []
    for user_id, channel, headline, preheader, items, send_at, campaign, variant, send_id in cur.fetchall():
        listed = json.loads(items)
        messages.append({
            "user_id": user_id, "channel": channel, "subject": headline, "preheader": preheader,
            "item_ids": [i["item_id"] for i in listed], "titles": [i["title"] for i in listed],
            "prices": [i["price"] for i in listed], "send_at": send_at.isoformat(sep=" "),
            "campaign": campaign, "variant": variant, "send_id": send_id,
        })
    return messages


def write_messages(messages: list[dict], fmt: str, path: Path) -> None:
    """``messages`` as CSV (lists joined with " | ") or JSON lines (lists as arrays),
    written to a temporary file and renamed: a reader never sees half a file."""
    import csv
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        if fmt == "jsonl":
            for message in messages:
                fh.write(json.dumps(message, ensure_ascii=False) + "\n")
        else:
            writer = csv.DictWriter(fh, fieldnames=list(EXPORT_COLUMNS), lineterminator="\n")
            writer.writeheader()
            for message in messages:
                writer.writerow({k: " | ".join("" if v is None else str(v) for v in message[k])
                                 if isinstance(message[k], list) else message[k] for k in EXPORT_COLUMNS})
    tmp.replace(path)


def cmd_export(settings: Settings, args: argparse.Namespace) -> None:
    from recs_pipeline.warehouse import connection, table_exists

    try:
        day = date.fromisoformat(args.date)
    except ValueError:
        raise CliError(f"--date {args.date!r} is not a date", "give the send day as YYYY-MM-DD") from None
    with connection(readable_warehouse(settings, args.live), read_only=True, lock_timeout_s=30, shared=True) as con:
        if not table_exists(con, "marketing.campaign_sends"):
            raise CliError("there are no campaign sends yet (no table marketing.campaign_sends)",
                           "run `recs run` first: marketing/campaign_sends writes the day's sends")  # fmt: skip
        messages = campaign_messages(con, day)
        if not messages:
            days = [str(r[0]) for r in con.execute(
                "SELECT DISTINCT send_date FROM marketing.campaign_sends ORDER BY 1 DESC LIMIT 5").fetchall()]  # fmt: skip
            raise CliError(
                f"no campaign sends on {day}",
                f"days with sends: {', '.join(days)}" if days else "the send log is empty: run `recs run` first",
            )
    path = Path(args.output) if args.output else settings.data_dir / "exports" / f"campaign-{day}.{args.format}"
    write_messages(messages, args.format, path)
    print(f"wrote {len(messages)} message(s) for {day} to {path}", file=sys.stderr)


def cmd_erase(settings: Settings, args: argparse.Namespace) -> None:
    from recs_pipeline.defs.publish import snapshot_path
    from recs_pipeline.privacy import ErasureRequest, Pseudonymizer, erase_users, erase_users_on, warn_if_demo_key
    from recs_pipeline.privacy.erasure import parse_request_text
    from recs_pipeline.sources.adapters import build_source

    ids = list(args.user_ids)
    if args.file:
        ids += parse_request_text(Path(args.file).read_text(encoding="utf-8"))
    if not ids:
        raise CliError("no user ids to erase", "recs erase U000123 [U000456 ...] or --file ids.csv")
    pseudonymizer = Pseudonymizer.from_settings(settings.privacy)
    warn_if_demo_key(pseudonymizer, _StderrLog())
    request = ErasureRequest(user_ids=ids, origin="cli")
    steps = dict(
        snapshot_path=snapshot_path(settings.engine_path),
        model_dir=settings.model_dir,
        source=build_source(settings),
        owned_roots=[settings.landing_dir, settings.data_dir],
    )
    if settings.engine.kind == "duckdb":
        report = erase_users(request, pseudonymizer, settings.warehouse_path, **steps)
    else:  # the engine's own warehouse (a DuckDB file here would be another, empty one)
        from recs_pipeline.engine import create_engine

        engine = create_engine(settings.engine.kind, settings.engine_path, spark=settings.engine)
        report = erase_users_on(engine, request, pseudonymizer, **steps)
    print(report.summary())
    rows = [(u.pseudonym, sum(u.rows_deleted.values()), sum(u.snapshot_rows_deleted.values()),
             sum(u.files_rewritten.values()), len(u.models_scrubbed)) for u in report.users]
    _print_table(["pseudonym", "warehouse_rows", "snapshot_rows", "landing_lines", "models"], rows)
    # The pseudonyms are shown here, once; the warehouse keeps only their SHA-256.
    print(f"\naudit: recs sql --live \"SELECT * FROM privacy.erasure_log WHERE request_id = '{report.request_id}'\"")
    print("(the audit and the suppression list store pseudonym_sha256 = sha256(pseudonym), never the pseudonym)")
    print("the next run trains the model from scratch without the erased user(s)")


class _StderrLog:
    def warning(self, message: str) -> None:
        print(f"warning: {message}", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recs", description="recs-pipeline: shop logs to recommendations.")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="write the synthetic shop's landing zone")
    gen.add_argument("--days", type=int, help="days to simulate (default 60)")
    gen.add_argument("--scale", type=float, help="multiply users, items and events (default 1.0)")
    gen.add_argument("--seed", type=int, help="random seed (default 42)")
    gen.add_argument("--dirt-rate", type=float, help="share of defective event lines (default 0.01)")
    gen.set_defaults(func=cmd_generate)

    sim = sub.add_parser("simulate", help="continue the synthetic shop: shoppers see the published lists")
    sim.add_argument("--days", type=int, default=7, help="days to simulate (default 7)")
    sim.add_argument("--nightly", action="store_true",
                     help="run the pipeline after each simulated day (the lists and campaign sends learn day by day)")
    sim.set_defaults(func=cmd_simulate)

    run = sub.add_parser("run", help="materialise the pipeline for a day or a range of days")
    run.add_argument("--start", help="first day (default: the first file)")
    run.add_argument("--end", help="last day (default: --start, or the last file)")
    run.add_argument("--select", help="comma-separated asset keys, e.g. raw/events,staging/stg_events")
    run.add_argument("--new", action="store_true", help="only the days whose files are not loaded yet")
    run.add_argument("--quiet", action="store_true", help="no progress output (step output still goes to data/logs/)")
    run.set_defaults(func=cmd_run)

    tune = sub.add_parser("tune", help="tune LightFM, TIFU-KNN and the ranker on the days before the hold-out")
    tune.add_argument("--trials", type=int, help="trials per study (default: 6 LightFM, 10 TIFU-KNN, 8 ranker)")
    tune.set_defaults(func=cmd_tune)

    rep = sub.add_parser("report", help="print model quality, served lists and experiment results; write an HTML report")
    rep.set_defaults(func=cmd_report)

    bench = sub.add_parser("bench", help="measure speed (stage times, rows/s, memory) or model quality")
    bench.add_argument("what", nargs="?", choices=("pipeline", "quality"), default="pipeline")
    bench.add_argument("--scales", default="S,M", help="pipeline scales: S, M, L (default S,M)")
    bench.add_argument("--quick", action="store_true", help="S only, a smoke run")
    bench.set_defaults(func=cmd_bench)

    sql = sub.add_parser("sql", help="run a read-only SQL query on the warehouse")
    sql.add_argument("query")
    sql.add_argument("--max-rows", type=int, default=50)
    sql.add_argument("--live", action="store_true", help="query the live warehouse, not the published snapshot")
    sql.set_defaults(func=cmd_sql)

    rec = sub.add_parser("recommend", help="print a user's list with the reasons")
    rec.add_argument("user_id", help="the shop's user id (or its pseudonym)")
    rec.add_argument("--country", help="for a shopper never seen before: the list of this country")
    rec.add_argument("--live", action="store_true", help="read the live warehouse, not the published snapshot")
    rec.set_defaults(func=cmd_recommend)

    export = sub.add_parser("export", help="write the day's campaign messages for the shop's sender (CSV or JSON lines)")
    export.add_argument("what", choices=("campaign",))
    export.add_argument("--date", required=True, help="the send day, YYYY-MM-DD (marketing.campaign_sends.send_date)")
    export.add_argument("--format", choices=("csv", "jsonl"), default="csv")
    export.add_argument("--output", help="file to write (default: $RECS_DATA_DIR/exports/campaign-<date>.<format>)")
    export.add_argument("--live", action="store_true", help="read the live warehouse, not the published snapshot")
    export.set_defaults(func=cmd_export)

    erase = sub.add_parser("erase", help="erase users from the warehouse, landing files, snapshot and models")
    erase.add_argument("user_ids", nargs="*", help="the shop's user ids, e.g. U000123")
    erase.add_argument("--file", help="a file of user ids, one per line (or a CSV whose first column is the id)")
    erase.set_defaults(func=cmd_erase)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    if not args.debug:
        warnings.filterwarnings("ignore", message=".*(beta|preview|deprecated).*", module="dagster.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
    if args.debug:
        os.environ["RECS_DEBUG"] = "1"
    try:
        settings = load_settings()
        args.func(settings, args)
        return 0
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - the CLI's last line of defence
        if args.debug:
            raise
        print(f"error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}", file=sys.stderr)
        print("hint: rerun with `recs --debug ...` for the full traceback", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
