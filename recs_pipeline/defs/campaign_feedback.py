"""The campaign loop's feedback, as assets: which send earned which open, click,
purchase and unsubscribe (``feedback.campaign_send_outcomes``), and each campaign
variant's rates with their intervals (``feedback.campaign_results``).

The order within a run closes the loop: the outcomes of the sends logged so far (with
the responses this run ingested) -> the bandit's posteriors -> the day's new sends ->
the results over the whole log. The outcomes read the send log without depending on
``marketing/campaign_sends`` in the graph: the sends depend on the posteriors, which
depend on the outcomes, and a dependency back would be a cycle; what the outcomes read
is the log of the earlier runs. Thin wrappers: attribution is
``recs_pipeline.campaigns.attribution``, the chart ``recs_pipeline.campaigns.charts``.
"""

from __future__ import annotations

import dagster as dg
import pandas as pd

from recs_pipeline.defs.campaigns import MESSAGE_EVENTS_TABLE as MESSAGE_EVENTS
from recs_pipeline.defs.campaigns import OUTCOMES_KEY, OUTCOMES_TABLE, SENDS_KEY, SENDS_TABLE
from recs_pipeline.defs.metadata import table_metadata
from recs_pipeline.engine import Session
from recs_pipeline.resources import EngineResource
from recs_pipeline.settings import Settings

RESULTS_KEY = dg.AssetKey(["feedback", "campaign_results"])
RESULTS_TABLE = "feedback.campaign_results"


def _responses(db: Session, since) -> pd.DataFrame:
    """The events attribution reads: message events (a ``message_sent`` only with its
    send_id) and the purchases since the first send, with their revenue."""
    return db.df(
        f"""
        SELECT user_id, event_type, event_ts, send_id, CAST(NULL AS DOUBLE) AS revenue FROM {MESSAGE_EVENTS}
        WHERE event_type <> 'message_sent' OR send_id IS NOT NULL
        UNION ALL
        SELECT user_id, event_type, event_ts, send_id, revenue FROM staging.stg_events
        WHERE event_type = 'purchase' AND NOT is_anonymous AND event_ts >= ?
        ORDER BY event_ts, user_id, event_type, send_id
        """,
        [since],
    )


def build_campaign_feedback_assets(settings: Settings) -> list[dg.AssetsDefinition]:
    cfg = settings.campaigns
    windows = (f"opens within {cfg.open_window_hours:g} h, clicks and unsubscribes within "
               f"{cfg.click_window_hours:g} h, purchases within {cfg.purchase_window_hours:g} h")  # fmt: skip

    @dg.asset(
        key=OUTCOMES_KEY,
        deps=[dg.AssetKey(["staging", "stg_message_events"]), dg.AssetKey(["staging", "stg_events"])],
        group_name="feedback",
        kinds={"duckdb"},
        pool="duckdb",
        description="One row per logged campaign send up to the newest day of events (marketing.campaign_sends "
        "of the earlier runs; the day being planned has no outcome yet) with what it earned: delivered, opened, clicked, converted, revenue, unsubscribed. A response carrying a send_id "
        f"goes to that send; one without goes to the user's latest send before it ({windows}). Each response is "
        "credited once, each send counts each kind once.",
    )
    def campaign_send_outcomes(warehouse: EngineResource) -> dg.MaterializeResult:
        from recs_pipeline.campaigns.attribution import outcome_table

        with warehouse.session(read_only=True) as db:
            # Only the sends of the days the data has reached: the day a run plans (the one
            # after the newest event) has no outcome yet, so rerunning a run finds the
            # outcomes, posteriors and sends its first attempt found.
            sends = (
                db.df(f"SELECT send_id, send_date, user_id, channel, campaign, segment, variant, policy, send_at "
                      f"FROM {SENDS_TABLE} WHERE send_date <= (SELECT max(event_date) FROM staging.stg_events) "
                      "ORDER BY send_id")
                if db.table_exists(SENDS_TABLE) else None
            )  # fmt: skip
            since = sends["send_at"].min() if sends is not None and len(sends) else None
            events = _responses(db, since.to_pydatetime()) if since is not None else None
        table = outcome_table(sends, events, cfg.open_window_hours, cfg.click_window_hours, cfg.purchase_window_hours)
        with warehouse.session() as db:
            db.replace_table(OUTCOMES_TABLE, table)
            meta = table_metadata(db, OUTCOMES_TABLE)
        frame = table.to_pandas()
        return dg.MaterializeResult(
            metadata={
                **meta,
                "sends": len(frame),
                **{flag: int(frame[flag].sum()) for flag in ("delivered", "opened", "clicked", "converted", "unsubscribed")},
                "revenue": float(frame["revenue"].sum()),
                "responses_read": 0 if events is None else len(events),
            }
        )

    @dg.asset(
        key=RESULTS_KEY,
        deps=[SENDS_KEY, OUTCOMES_KEY],
        group_name="feedback",
        kinds={"duckdb"},
        pool="duckdb",
        description="Per campaign and copy variant: sends (every row of marketing.campaign_sends), "
        "sends_measured (those with outcomes; the newest day's have had no time to answer), delivered, opens, "
        "clicks, conversions, unsubscribes, revenue, and open, click and conversion rates per measured send with "
        "95% Wilson intervals. The metadata charts each variant's share of the sends over the days.",
    )
    def campaign_results(warehouse: EngineResource) -> dg.MaterializeResult:
        from recs_pipeline.campaigns.attribution import reconciled_results
        from recs_pipeline.campaigns.charts import variant_share_chart
        from recs_pipeline.defs.ml import png_markdown

        with warehouse.session(read_only=True) as db:
            logged = db.df(f"SELECT campaign, variant, count(*) AS sends FROM {SENDS_TABLE} "
                           "GROUP BY campaign, variant ORDER BY campaign, variant")  # fmt: skip
            daily = db.df(f"SELECT send_date, campaign, variant, count(*) AS sends FROM {SENDS_TABLE} "
                          "GROUP BY send_date, campaign, variant ORDER BY send_date, campaign, variant")  # fmt: skip
            per_send = db.df(f"SELECT * FROM {OUTCOMES_TABLE} ORDER BY send_id")
        table = reconciled_results(logged, per_send)
        with warehouse.session() as db:
            db.replace_table(RESULTS_TABLE, table)
            meta = table_metadata(db, RESULTS_TABLE, preview_rows=20)
        import matplotlib.pyplot as plt

        chart = "(no sends yet)"
        if len(daily):
            fig = variant_share_chart(daily)
            chart = png_markdown(fig)
            plt.close(fig)
        shown = table[["campaign", "variant", "sends", "sends_measured", "open_rate", "click_rate", "click_rate_low",
                       "click_rate_high", "conversion_rate", "revenue"]].round(4)  # fmt: skip
        return dg.MaterializeResult(
            metadata={
                **meta,
                "sends": int(table["sends"].sum()),
                "sends_measured": int(table["sends_measured"].sum()),
                "send_days": int(daily["send_date"].nunique()) if len(daily) else 0,
                "variants": dg.MetadataValue.md(shown.to_markdown(index=False) if len(shown) else "(none)"),
                "variant_share_by_day": dg.MetadataValue.md(chart),
            }
        )

    return [campaign_send_outcomes, campaign_results]


def build_campaign_feedback_checks(settings: Settings) -> list[dg.AssetChecksDefinition]:
    @dg.asset_check(
        asset=RESULTS_KEY,
        name="campaign_results_reconcile",
        pool="duckdb",
        description="Every logged send is in the results once (sends = rows of marketing.campaign_sends; "
        "sends_measured = rows of the outcomes), and no response is credited twice (credited opens, clicks and "
        "unsubscribes are at most the events of each kind).",
    )
    def campaign_results_reconcile(warehouse: EngineResource) -> dg.AssetCheckResult:
        with warehouse.session(read_only=True) as db:
            counts = db.row(
                f"""SELECT (SELECT count(*) FROM {SENDS_TABLE}), (SELECT coalesce(sum(sends), 0) FROM {RESULTS_TABLE}),
                           (SELECT count(*) FROM {OUTCOMES_TABLE}),
                           (SELECT coalesce(sum(sends_measured), 0) FROM {RESULTS_TABLE}),
                           (SELECT coalesce(sum(clicks), 0) FROM {RESULTS_TABLE}),
                           (SELECT count(*) FROM {MESSAGE_EVENTS} WHERE event_type = 'message_click'),
                           (SELECT coalesce(sum(opens), 0) FROM {RESULTS_TABLE}),
                           (SELECT count(*) FROM {MESSAGE_EVENTS} WHERE event_type IN ('message_open', 'message_click')),
                           (SELECT coalesce(sum(unsubscribes), 0) FROM {RESULTS_TABLE}),
                           (SELECT count(*) FROM {MESSAGE_EVENTS} WHERE event_type = 'unsubscribe')"""
            )
        logged, in_results, outcomes, measured, clicks, click_events, opens, open_events, unsubs, unsub_events = (
            int(v) for v in counts
        )
        return dg.AssetCheckResult(
            passed=logged == in_results and outcomes == measured and clicks <= click_events
            and opens <= open_events and unsubs <= unsub_events,
            metadata={
                "logged_sends": logged, "sends_in_results": in_results, "outcome_rows": outcomes,
                "sends_measured": measured, "credited_clicks": clicks, "click_events": click_events,
                "credited_opens": opens, "open_and_click_events": open_events,
                "credited_unsubscribes": unsubs, "unsubscribe_events": unsub_events,
            },  # fmt: skip
        )

    return [campaign_results_reconcile]
