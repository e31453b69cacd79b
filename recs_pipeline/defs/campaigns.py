"""Campaigns a marketer can send, as assets: catalogue themes, each user's themes, the
bandit's posteriors over the copy variants, and the day's sends with a check of the
send rules over the whole send log.

Thin wrappers: the maths is in ``recs_pipeline.campaigns`` (themes, copy, bandit, send
rules) and the frames are put together by ``recs_pipeline.campaigns.assemble``.
Settings: ``[campaigns]`` (recs_pipeline/settings.py, ``CampaignSettings``).
"""

from __future__ import annotations

import json
from datetime import date, timedelta

import dagster as dg
import numpy as np
import pandas as pd

from recs_pipeline.campaigns import CAMPAIGNS
from recs_pipeline.campaigns import assemble
from recs_pipeline.defs.metadata import table_metadata
from recs_pipeline.defs.text import ITEM_TEXT_KEY, load_item_text
from recs_pipeline.engine import Session
from recs_pipeline.resources import EngineResource
from recs_pipeline.settings import CAMPAIGN_CHANNELS, Settings

ITEM_THEMES_KEY = dg.AssetKey(["marketing", "item_themes"])
THEMES_KEY = dg.AssetKey(["marketing", "themes"])
USER_THEMES_KEY = dg.AssetKey(["marketing", "user_themes"])
POSTERIORS_KEY = dg.AssetKey(["marketing", "variant_posteriors"])
SENDS_KEY = dg.AssetKey(["marketing", "campaign_sends"])
SENDS_TABLE = "marketing.campaign_sends"
# What each logged send earned (recs_pipeline/defs/campaign_feedback.py): the bandit's
# counts; before the first responses every posterior is its prior.
OUTCOMES_KEY = dg.AssetKey(["feedback", "campaign_send_outcomes"])
OUTCOMES_TABLE = "feedback.campaign_send_outcomes"
MESSAGE_EVENTS_TABLE = "staging.stg_message_events"
# The primary segments of the dbt model marketing.segments (its accepted values).
SEGMENTS = ("new_user", "lapsed_customer", "high_value", "category_lover", "active_shopper")
TOP_THEMES = 3


def load_variant_counts(db: Session) -> pd.DataFrame:
    """``campaign, segment, variant, sends, clicks`` of the sends measured so far
    (``feedback.campaign_send_outcomes``); no rows while that table does not exist."""
    if not db.table_exists(OUTCOMES_TABLE):
        return pd.DataFrame({"campaign": pd.Series([], dtype=object), "segment": pd.Series([], dtype=object),
                             "variant": pd.Series([], dtype=object), "sends": pd.Series([], dtype=np.int64),
                             "clicks": pd.Series([], dtype=np.int64)})
    return db.df(
        f"SELECT campaign, segment, variant, count(*) AS sends, "
        f"sum(CASE WHEN clicked THEN 1 ELSE 0 END) AS clicks FROM {OUTCOMES_TABLE} "
        "GROUP BY campaign, segment, variant ORDER BY campaign, segment, variant"
    ).astype({"sends": np.int64, "clicks": np.int64})


def load_unsubscribed(db: Session) -> pd.Series:
    """Every user who has unsubscribed (from any message: every channel stops)."""
    if not db.table_exists(MESSAGE_EVENTS_TABLE):
        return pd.Series([], dtype=object, name="user_id")
    return db.df(
        f"SELECT DISTINCT user_id FROM {MESSAGE_EVENTS_TABLE} WHERE event_type = 'unsubscribe' ORDER BY user_id"
    )["user_id"]


def send_day(db: Session) -> date:
    """The day the next sends go out: the day after the newest event (the as-of day of the
    data, never the wall clock, so rerunning on the same data gives the same day)."""
    newest = db.scalar("SELECT max(event_date) FROM staging.stg_events")
    if newest is None:
        raise dg.Failure("staging.stg_events is empty: no day to send for")
    return pd.Timestamp(newest).date() + timedelta(days=1)


def _preview(rows: pd.DataFrame) -> str:
    blocks = []
    for r in rows.itertuples():
        lines = [f"**{r.user_id}** · {r.channel} · `{r.variant}` ({r.policy}) · segment `{r.segment}` · {r.send_at}",
                 f"> **{r.headline}**", f"> _{r.preheader}_"]
        lines += [f"> - {i['title']} — {i['price']:.2f}" if i.get("price") is not None else f"> - {i['title']}"
                  for i in json.loads(r.items)]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) or "(no sends)"


def _md(frame: pd.DataFrame) -> dg.MetadataValue:
    return dg.MetadataValue.md(frame.to_markdown(index=False) if len(frame) else "(none)")


def build_campaign_assets(settings: Settings) -> list[dg.AssetsDefinition]:
    cfg = settings.campaigns

    @dg.multi_asset(
        specs=[
            dg.AssetSpec(
                ITEM_THEMES_KEY,
                deps=[ITEM_TEXT_KEY, dg.AssetKey(["features", "item_features"])],
                group_name="marketing",
                kinds={"duckdb", "wordllama"},
                description=f"Every catalogue item with text in one of up to {cfg.n_themes} themes (k-means over the "
                "WordLlama text vectors): item_id, theme_id, theme_name, similarity to the theme's centre.",
            ),
            dg.AssetSpec(
                THEMES_KEY,
                deps=[ITEM_TEXT_KEY, dg.AssetKey(["features", "item_features"])],
                group_name="marketing",
                kinds={"duckdb"},
                description="The catalogue themes a campaign can be about: theme_id, theme_name (its most telling "
                "words), n_items, top_words.",
            ),
        ],
        name="catalogue_themes",
        pool="duckdb",
    )
    def catalogue_themes(warehouse: EngineResource):
        from recs_pipeline.campaigns.themes import fit_themes
        from recs_pipeline.text.embeddings import item_texts

        with warehouse.session(read_only=True) as db:
            ids, vectors, _ = load_item_text(db)
            items = db.df("SELECT item_id, title, description FROM features.item_features ORDER BY item_id")
        row = ids.get_indexer(items["item_id"])
        aligned = np.zeros((len(items), vectors.shape[1]), dtype=np.float32)
        aligned[row >= 0] = vectors[row[row >= 0]]
        themes = fit_themes(items["item_id"].to_numpy(dtype=object), aligned,
                            item_texts(items["title"], items["description"]), cfg.n_themes, cfg.seed)  # fmt: skip
        with warehouse.session() as db:
            db.replace_table("marketing.item_themes", themes.item_themes)
            db.replace_table("marketing.themes", themes.themes)
            item_meta = table_metadata(db, "marketing.item_themes")
            theme_meta = table_metadata(db, "marketing.themes", preview_rows=20)
        yield dg.MaterializeResult(
            asset_key=ITEM_THEMES_KEY,
            metadata={**item_meta, "items": len(items), "items_without_text": int(len(items) - len(themes.item_themes))},
        )
        yield dg.MaterializeResult(asset_key=THEMES_KEY, metadata={**theme_meta, "n_themes": len(themes.themes)})

    @dg.asset(
        key=USER_THEMES_KEY,
        deps=[ITEM_THEMES_KEY, dg.AssetKey(["features", "user_features"]), dg.AssetKey(["staging", "stg_events"])],
        group_name="marketing",
        kinds={"duckdb"},
        pool="duckdb",
        description=f"Each consenting user's top {TOP_THEMES} catalogue themes from their purchases (halved every "
        f"{settings.decay_half_life_days:g} days): user_id, rank, theme_id, theme_name, share of their purchases.",
    )
    def user_themes(warehouse: EngineResource) -> dg.MaterializeResult:
        from recs_pipeline.campaigns.themes import user_themes as top_themes

        with warehouse.session(read_only=True) as db:
            purchases = db.df(
                "SELECT e.user_id, e.item_id, e.event_ts FROM staging.stg_events e "
                "JOIN features.user_features u ON u.user_id = e.user_id "
                "WHERE e.event_type = 'purchase' AND NOT e.is_anonymous AND e.item_id IS NOT NULL "
                "AND u.marketing_consent ORDER BY e.user_id, e.item_id, e.event_ts"
            )
            item_themes = db.df("SELECT item_id, theme_id, theme_name FROM marketing.item_themes ORDER BY item_id")
            now = db.scalar("SELECT max(event_ts) FROM staging.stg_events")
        table = top_themes(purchases, item_themes, top=TOP_THEMES, half_life_days=settings.decay_half_life_days,
                           now=pd.Timestamp(now) if now is not None else None)  # fmt: skip
        with warehouse.session() as db:
            db.replace_table("marketing.user_themes", table.astype({"rank": "int32"}))
            meta = table_metadata(db, "marketing.user_themes")
        return dg.MaterializeResult(metadata={**meta, "users": int(table["user_id"].nunique())})

    @dg.asset(
        key=POSTERIORS_KEY,
        deps=[dg.AssetKey(["marketing", "segments"]), OUTCOMES_KEY],
        group_name="marketing",
        kinds={"duckdb"},
        pool="duckdb",
        description="The Beta posterior of the click rate of every campaign, segment and copy variant (the bandit "
        "draws the variants from these): sends, clicks, alpha, beta, mean and a 95% interval, from the outcomes of "
        "the sends so far (feedback.campaign_send_outcomes); the Beta(1, 1) priors before any.",
    )
    def variant_posteriors(warehouse: EngineResource) -> dg.MaterializeResult:
        from recs_pipeline.campaigns.bandit import posteriors
        from recs_pipeline.campaigns.copy import variants_of

        with warehouse.session(read_only=True) as db:
            counts = load_variant_counts(db)
            found = [r[0] for r in db.rows("SELECT DISTINCT segment FROM marketing.segments ORDER BY segment")]
        segments = list(SEGMENTS) + sorted(set(found) - set(SEGMENTS))
        table = pd.concat(
            [posteriors(counts[counts["campaign"] == c], variants_of(c), segments).assign(campaign=c) for c in CAMPAIGNS],
            ignore_index=True,
        )
        table = table[["campaign", *[c for c in table.columns if c != "campaign"]]]
        with warehouse.session() as db:
            db.replace_table("marketing.variant_posteriors", table)
            meta = table_metadata(db, "marketing.variant_posteriors")
        return dg.MaterializeResult(
            metadata={**meta, "sends_counted": int(table["sends"].sum()),
                      "counts_from": OUTCOMES_TABLE if len(counts) else "none yet: the priors"}  # fmt: skip
        )

    @dg.asset(
        key=SENDS_KEY,
        deps=[
            POSTERIORS_KEY, USER_THEMES_KEY, ITEM_THEMES_KEY,
            dg.AssetKey(["marketing", "segments"]), dg.AssetKey(["serving", "recommendations"]),
            dg.AssetKey(["features", "user_features"]), dg.AssetKey(["features", "item_features"]),
            dg.AssetKey(["staging", "stg_events"]), dg.AssetKey(["staging", "stg_message_events"]),
        ],  # fmt: skip
        group_name="marketing",
        kinds={"duckdb"},
        pool="duckdb",
        description=f"The send log: one message per user, channel ({', '.join(cfg.channels)}) and day, with its "
        "campaign (by primary segment), copy variant (Thompson sampling), headline, preheader, items (JSON) and "
        f"send time (the user's usual hour), within the send rules (consent, one a day, at most {cfg.frequency_cap} "
        f"in {cfg.cap_days} days). Each run writes the day after the newest event; rerunning a day replaces it.",
    )
    def campaign_sends(warehouse: EngineResource) -> dg.MaterializeResult:
        with warehouse.session(read_only=True) as db:
            day = send_day(db)
            now = pd.Timestamp(db.scalar("SELECT max(event_ts) FROM staging.stg_events"))
            audience = db.df(
                "SELECT s.user_id, s.segment, s.favourite_category AS category, t.theme_id, t.theme_name AS theme "
                "FROM marketing.segments s LEFT JOIN marketing.user_themes t ON t.user_id = s.user_id AND t.rank = 1 "
                "WHERE s.is_primary ORDER BY s.user_id"
            )
            consent = db.df("SELECT user_id, marketing_consent FROM features.user_features ORDER BY user_id")
            recs = db.df(
                "SELECT r.user_id, r.rank, r.item_id, coalesce(i.title, r.item_id) AS title, i.price "
                "FROM serving.recommendations r LEFT JOIN features.item_features i ON i.item_id = r.item_id "
                "ORDER BY r.user_id, r.rank"
            )
            item_theme = db.df("SELECT item_id, theme_id FROM marketing.item_themes ORDER BY item_id")
            purchases = db.df(
                "SELECT user_id, item_id, event_ts FROM staging.stg_events WHERE event_type = 'purchase' "
                "AND NOT is_anonymous AND item_id IS NOT NULL AND event_ts >= ? ORDER BY user_id, item_id, event_ts",
                [(now - pd.Timedelta(days=cfg.recently_bought_days)).to_pydatetime()],
            )
            events = db.df(
                "SELECT user_id, event_ts FROM staging.stg_events WHERE NOT is_anonymous AND event_ts >= ? "
                "ORDER BY user_id, event_ts",
                [(now - pd.Timedelta(days=assemble.SEND_HOUR_HISTORY_DAYS)).to_pydatetime()],
            )
            # The log around the day (any other day within the cap's reach, later ones too:
            # a backfilled day must not overfill a window that ends later).
            recent = (
                db.df(
                    f"SELECT user_id, channel, send_at FROM {SENDS_TABLE} WHERE send_date <> ? "
                    "AND send_date > ? AND send_date < ? ORDER BY user_id, channel, send_at",
                    [day, day - timedelta(days=cfg.cap_days), day + timedelta(days=cfg.cap_days)],
                )
                if db.table_exists(SENDS_TABLE) else None
            )  # fmt: skip
            posterior = db.df("SELECT * FROM marketing.variant_posteriors ORDER BY campaign, segment, variant")
            unsubscribed = load_unsubscribed(db)

        plan = assemble.plan_sends(
            assemble.SendInputs(audience=audience, consent=consent, unsubscribed=unsubscribed, recent_sends=recent,
                                recommendations=recs, recent_purchases=purchases, item_theme=item_theme,
                                activity=events, posteriors=posterior),
            day, now, cfg, CAMPAIGN_CHANNELS,
        )  # fmt: skip
        frame, dropped, wanted, rows = plan.sends, plan.dropped, plan.candidates, plan.rows

        with warehouse.session() as db:
            db.replace_partition(SENDS_TABLE, rows, "send_date", day)
            meta = table_metadata(db, SENDS_TABLE, where=f"send_date = DATE '{day.isoformat()}'")
            sample = db.df(
                f"SELECT user_id, channel, variant, policy, segment, send_at, headline, preheader, items "
                f"FROM {SENDS_TABLE} WHERE send_date = ? ORDER BY send_id LIMIT 3",
                [day],
            )
        sent = frame.groupby(["campaign", "variant"], as_index=False).size().rename(columns={"size": "sends"})
        reasons = dropped.groupby(["reason", "detail"], as_index=False).size().rename(columns={"size": "dropped"})
        return dg.MaterializeResult(
            metadata={
                **meta,
                "send_date": day.isoformat(),
                "rows": len(frame),
                "candidates": len(wanted),
                "sends_by_campaign_and_variant": _md(sent),
                "dropped_by_reason": _md(reasons),
                **{f"dropped/{reason}": int((dropped["reason"] == reason).sum())
                   for reason in ("no_consent", "unsubscribed", "frequency_cap", assemble.NO_ITEMS)},
                "back_in_stock_and_price_drop": assemble.NO_CATALOGUE_HISTORY,
                "preview": dg.MetadataValue.md(_preview(sample)),
            }
        )

    return [catalogue_themes, user_themes, variant_posteriors, campaign_sends]


def build_campaign_checks(settings: Settings) -> list[dg.AssetChecksDefinition]:
    cfg = settings.campaigns

    @dg.asset_check(
        asset=SENDS_KEY,
        name="campaign_sends_respect_the_rules",
        pool="duckdb",
        description=f"Over the whole send log: no user over {cfg.frequency_cap} messages per channel in any "
        f"{cfg.cap_days}-day window, at most one per user, channel and day, none without marketing consent, none "
        "planned after the user unsubscribed; "
        "the metadata shows a preview.",
    )
    def campaign_sends_respect_the_rules(warehouse: EngineResource) -> dg.AssetCheckResult:
        with warehouse.session(read_only=True) as db:
            log = db.df(f"SELECT user_id, channel, send_at FROM {SENDS_TABLE} ORDER BY user_id, channel, send_at")
            consent = db.df("SELECT user_id, marketing_consent FROM features.user_features ORDER BY user_id")
            unsubscribed_at = (
                db.df(f"SELECT user_id, min(event_ts) AS first_ts FROM {MESSAGE_EVENTS_TABLE} "
                      "WHERE event_type = 'unsubscribe' GROUP BY user_id ORDER BY user_id").set_index("user_id")["first_ts"]
                if db.table_exists(MESSAGE_EVENTS_TABLE) else None
            )  # fmt: skip
            days = db.scalar(f"SELECT count(DISTINCT send_date) FROM {SENDS_TABLE}")
            sample = db.df(
                f"SELECT user_id, channel, variant, policy, segment, send_at, headline, preheader, items "
                f"FROM {SENDS_TABLE} WHERE send_date = (SELECT max(send_date) FROM {SENDS_TABLE}) "
                "ORDER BY send_id LIMIT 3"
            )
        broken = assemble.rule_violations(log, consent.set_index("user_id")["marketing_consent"],
                                          cfg.frequency_cap, cfg.cap_days, unsubscribed_at)  # fmt: skip
        return dg.AssetCheckResult(
            passed=not any(broken.values()),
            metadata={"sends": len(log), "days": int(days or 0), **broken, "preview": dg.MetadataValue.md(_preview(sample))},
        )

    return [campaign_sends_respect_the_rules]
