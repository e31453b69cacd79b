"""Privacy in Dagster: the pseudonym key and retention as a resource, erasure requests
as an asset. The logic lives in recs_pipeline.privacy; see docs/privacy.md."""

import os
from pathlib import Path
from typing import Optional

import dagster as dg
import pandas as pd

from recs_pipeline.defs.publish import snapshot_path
from recs_pipeline.privacy import Pseudonymizer, erase_users, erase_users_on, pending_requests, warn_if_demo_key
from recs_pipeline.privacy.erasure import ERASURE_LOG, ERASURE_LOG_DDL
from recs_pipeline.privacy.pseudonym import KEY_ENV_VAR
from recs_pipeline.privacy.suppression import ensure_privacy_schema
from recs_pipeline.resources import ModelStoreResource, ShopSourceResource, WarehouseResource
from recs_pipeline.settings import DEMO_PSEUDONYM_KEY, Settings

ERASURE_LOG_KEY = dg.AssetKey(["privacy", "erasure_log"])


class PrivacyResource(dg.ConfigurableResource):
    """The pseudonym key, retention and where erasure requests land.

    ``pseudonym_key`` is bound to the environment variable (``dg.EnvVar``) whenever the
    key comes from it, so the UI shows the variable's name, never the key; empty means
    the public demo key (with a warning)."""

    pseudonym_key: str = ""
    retention_days: Optional[int] = None
    erasure_requests_dir: str
    owned_roots: list[str] = []

    def pseudonymizer(self, log=None) -> Pseudonymizer:
        key = self.pseudonym_key
        if isinstance(key, dg.EnvVar):  # not resolved yet (the resource used outside a run)
            key = key.get_value() or ""
        pseudonymizer = Pseudonymizer(key or DEMO_PSEUDONYM_KEY, is_demo_key=not key)
        warn_if_demo_key(pseudonymizer, log)
        return pseudonymizer


def privacy_resource(settings: Settings) -> PrivacyResource:
    key = settings.privacy.pseudonym_key
    key_config = dg.EnvVar(KEY_ENV_VAR) if key and os.environ.get(KEY_ENV_VAR) == key else key
    return PrivacyResource(
        pseudonym_key=key_config,
        retention_days=settings.privacy.retention_days,
        erasure_requests_dir=str(settings.erasure_requests_path),
        owned_roots=[str(settings.landing_dir), str(settings.data_dir)],
    )


@dg.asset(
    key=ERASURE_LOG_KEY,
    group_name="privacy",
    kinds={"duckdb"},
    pool="duckdb",
    description="Erasure requests (files of user ids in <landing>/erasure_requests/, or `recs erase`) carried out: "
    "the users leave every warehouse table, the landing files the project owns, the published snapshot and the "
    "stored models, and join the suppression list that keeps them out of later loads. One audit row per user "
    "and request, with a SHA-256 digest of the pseudonym only (the file never holds the pseudonym itself). "
    "Runs before ingest.",
)
def erasure_log(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    shop_source: ShopSourceResource,
    model_store: ModelStoreResource,
    privacy: PrivacyResource,
) -> dg.MaterializeResult:
    requests = pending_requests(Path(privacy.erasure_requests_dir))
    reports = []
    if requests:
        pseudonymizer = privacy.pseudonymizer(context.log)
        source = shop_source.source()
        steps = dict(
            snapshot_path=snapshot_path(warehouse.path),
            model_dir=model_store.root,
            source=source,
            owned_roots=[Path(r) for r in privacy.owned_roots],
            lock_timeout_s=warehouse.lock_timeout_s,
        )
        for request in requests:
            if warehouse.kind == "duckdb":  # one transaction, then the file compacted
                report = erase_users(request, pseudonymizer, Path(warehouse.path), **steps)
            else:  # through the engine interface, table by table (docs/privacy.md)
                report = erase_users_on(warehouse.engine(), request, pseudonymizer, **steps)
            context.log.info(report.summary())  # request id and counts: never an id
            reports.append(report)
    if warehouse.kind == "duckdb":
        with warehouse.connect() as con:
            ensure_privacy_schema(con)
            con.execute(ERASURE_LOG_DDL)
            logged, suppressed = con.execute(
                f"SELECT (SELECT count(*) FROM {ERASURE_LOG}), (SELECT count(*) FROM privacy.suppressed_users)"
            ).fetchall()[0]
    else:
        with warehouse.session(read_only=True) as db:
            logged, suppressed = (
                db.scalar(f"SELECT count(*) FROM {t}") if db.table_exists(t) else 0
                for t in (ERASURE_LOG, "privacy.suppressed_users")
            )
    rows: dict[str, int] = {}
    for report in reports:
        for table, n in report.rows_deleted.items():
            rows[table] = rows.get(table, 0) + n
    table = pd.DataFrame(sorted(rows.items()), columns=["table", "rows_deleted"])
    return dg.MaterializeResult(
        metadata={
            "requests_processed": len(reports),
            "users_erased": sum(len(r.users) for r in reports),
            "warehouse_rows_deleted": sum(rows.values()),
            "rows_deleted_by_table": dg.MetadataValue.md(table.to_markdown(index=False) if rows else "(none)"),
            "snapshot_rows_deleted": sum(r.snapshot_rows_deleted for r in reports),
            "landing_lines_removed": sum(r.lines_removed for r in reports),
            "models_scrubbed": sum(len(r.models_scrubbed) for r in reports),
            "audit_rows_total": int(logged),
            "suppressed_users_total": int(suppressed),
            "requests_dir": dg.MetadataValue.path(privacy.erasure_requests_dir),
        }
    )
