"""The campaign assets (recs_pipeline/defs/campaigns.py) on a small generated shop with the
real DuckDB, dbt and Dagster: themes, the send log over consecutive days, the rules'
check, reruns, and ``recs export campaign``."""

from __future__ import annotations

import csv
import json
import re
from datetime import date, timedelta

import dagster as dg
import pandas as pd
import pytest

from recs_pipeline.campaigns.assemble import rule_violations
from recs_pipeline.defs.campaigns import SENDS_KEY
from recs_pipeline.definitions import build_defs
from recs_pipeline.settings import campaign_settings
from recs_pipeline.warehouse import connection

from .conftest import settings_for

pytestmark = pytest.mark.slow

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
CHECK = "campaign_sends_respect_the_rules"
# Two messages a week at most: the third day in a row must send nobody already sent twice.
CAP = 2


def run(defs, selection, days=None):
    job = defs.resolve_job_def("nightly_job")
    tags = {RANGE_START: days[0].isoformat(), RANGE_END: days[-1].isoformat()} if days else {}
    result = job.execute_in_process(asset_selection=list(selection), tags=tags, raise_on_error=False)
    assert result.success, [e.message for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    return result


def check_result(result):
    (evaluation,) = [e.event_specific_data for e in result.all_events
                     if e.event_type_value == "ASSET_CHECK_EVALUATION" and e.event_specific_data.check_name == CHECK]
    return evaluation


def sends_of(settings, day: date) -> list[tuple]:
    with connection(settings.warehouse_path, read_only=True) as con:
        return con.execute("SELECT * FROM marketing.campaign_sends WHERE send_date = ? ORDER BY send_id", [day]).fetchall()


def next_day(settings) -> None:
    """The next day's data in miniature: a copy of the newest event one day later (the
    send day follows the newest event's day; nothing else the sends read changes)."""
    with connection(settings.warehouse_path) as con:
        con.execute(
            "INSERT INTO staging.stg_events SELECT * REPLACE (event_id || '-next' AS event_id, 'view' AS event_type, "
            "event_ts + INTERVAL 1 DAY AS event_ts, event_date + 1 AS event_date, partition_date + 1 AS partition_date) "
            "FROM staging.stg_events WHERE NOT is_anonymous ORDER BY event_ts DESC, event_id LIMIT 1"
        )


@pytest.fixture(scope="module")
def built(small_shop, tmp_path_factory):
    """Everything the campaign assets read (ingest, dbt, text, model, lists; no ranker),
    then the campaign assets: the first day of sends."""
    root, _ = small_shop
    settings = settings_for(tmp_path_factory.mktemp("warehouse"), RECS_LANDING_DIR=str(root / "landing"),
                            RECS_RANKER="0", RECS_CAMPAIGNS_FREQUENCY_CAP=str(CAP))  # fmt: skip
    from recs_pipeline.sources.adapters import build_source

    days = build_source(settings).event_days()
    defs = build_defs(settings)
    graph = defs.resolve_asset_graph()
    # The quality group: the blocking checks on staging read its tables.
    needed = (dg.AssetSelection.assets(SENDS_KEY).upstream() | dg.AssetSelection.groups("quality").upstream())
    first = run(defs, needed.required_multi_asset_neighbors().resolve(graph), days)
    return settings, defs, first


def test_rerunning_the_loop_on_the_same_data_changes_nothing(built, tmp_path):
    """Outcomes, posteriors, sends and results of a rerun equal the first run's: the day
    just planned has no outcome yet, so it does not feed its own posteriors (the bug a
    backfill run twice once showed)."""
    import shutil

    from recs_pipeline.defs.campaign_feedback import RESULTS_KEY
    from recs_pipeline.defs.campaigns import OUTCOMES_KEY, POSTERIORS_KEY

    settings, _, _ = built
    shutil.copy(settings.warehouse_path, tmp_path / "warehouse.duckdb")
    copy = settings_for(tmp_path, RECS_LANDING_DIR=str(settings.landing_dir), RECS_RANKER="0",
                        RECS_CAMPAIGNS_FREQUENCY_CAP=str(CAP))  # fmt: skip
    defs = build_defs(copy)
    tables = ("feedback.campaign_send_outcomes", "marketing.variant_posteriors", "marketing.campaign_sends",
              "feedback.campaign_results")  # fmt: skip

    def contents():
        with connection(copy.warehouse_path, read_only=True) as con:
            return {t: con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall() for t in tables}

    loop = [OUTCOMES_KEY, POSTERIORS_KEY, SENDS_KEY, RESULTS_KEY]
    run(defs, loop)
    first = contents()
    run(defs, loop)
    assert contents() == first
    assert first["marketing.campaign_sends"] and not first["feedback.campaign_send_outcomes"]


@pytest.fixture(scope="module")
def three_days(built):
    """Days 1-3 of sends (day 2 run twice), each with its check and rows."""
    settings, defs, first = built
    with connection(settings.warehouse_path, read_only=True) as con:
        day1 = con.execute("SELECT max(event_date) + 1 FROM staging.stg_events").fetchall()[0][0]
    runs = {day1: [first]}
    rows = {day1: sends_of(settings, day1)}
    for offset in (1, 2):
        next_day(settings)
        day = day1 + timedelta(days=offset)
        runs[day] = [run(defs, [SENDS_KEY])]
        rows[day] = sends_of(settings, day)
    return settings, defs, runs, rows


def test_themes_cover_every_catalogue_item_with_text(built):
    settings, _, _ = built
    with connection(settings.warehouse_path, read_only=True) as con:
        with_text = {r[0] for r in con.execute(
            "SELECT item_id FROM features.item_text_embeddings WHERE theme >= 0").fetchall()}  # fmt: skip
        themed = dict(con.execute("SELECT item_id, theme_id FROM marketing.item_themes").fetchall())
        themes = con.execute("SELECT theme_id, theme_name, n_items FROM marketing.themes ORDER BY theme_id").fetchall()
        user_themes = con.execute(
            "SELECT t.user_id, t.rank, u.marketing_consent FROM marketing.user_themes t "
            "JOIN features.user_features u USING (user_id)"
        ).fetchall()
    assert with_text and set(themed) == with_text
    assert 1 < len(themes) <= settings.campaigns.n_themes
    assert [t[0] for t in themes] == list(range(len(themes))) and len({t[1] for t in themes}) == len(themes)
    assert sum(t[2] for t in themes) == len(themed)
    assert set(themed.values()) == {t[0] for t in themes}
    assert user_themes and all(consent for _, _, consent in user_themes)
    assert {rank for _, rank, _ in user_themes} <= {1, 2, 3}


def test_sends_go_to_consenting_users_with_rendered_copy_and_fresh_items(built):
    settings, _, first = built
    with connection(settings.warehouse_path, read_only=True) as con:
        frame = con.execute(
            "SELECT s.*, u.marketing_consent FROM marketing.campaign_sends s JOIN features.user_features u USING (user_id)"
        ).df()
        segments = dict(con.execute("SELECT user_id, segment FROM marketing.segments WHERE is_primary").fetchall())
        now = con.execute("SELECT max(event_ts) FROM staging.stg_events").fetchall()[0][0]
        recent = set(con.execute(
            "SELECT user_id, item_id FROM staging.stg_events WHERE event_type = 'purchase' AND event_ts >= ?",
            [now - timedelta(days=settings.campaigns.recently_bought_days)]).fetchall())  # fmt: skip
        recommended = set(con.execute("SELECT user_id, item_id FROM serving.recommendations").fetchall())
    assert len(frame) > 0 and frame["marketing_consent"].all()
    assert frame["send_id"].is_unique and not frame.duplicated(["user_id", "channel", "send_date"]).any()
    assert set(frame["channel"]) == {"email"}
    expected = frame["user_id"].map(segments).map({"new_user": "welcome", "lapsed_customer": "win_back"})
    assert (frame["campaign"] == expected.fillna("theme_picks")).all()
    assert (frame["segment"] == frame["user_id"].map(segments)).all()
    assert frame["variant"].str.split(".").str[0].eq(frame["campaign"]).all()
    assert set(frame["policy"]) <= {"thompson", "explore"}
    for text in pd.concat([frame["headline"], frame["preheader"]]):
        assert text and "{" not in text and not re.search(r"\b(None|nan|NULL)\b", text)
    for user_id, items in zip(frame["user_id"], frame["items"]):
        listed = json.loads(items)
        assert 1 <= len(listed) <= 3 and set(listed[0]) == {"item_id", "title", "price"}
        assert all((user_id, i["item_id"]) in recommended and (user_id, i["item_id"]) not in recent for i in listed)
    # send_at: the send day at the user's hour.
    assert (pd.to_datetime(frame["send_at"]).dt.normalize() == pd.to_datetime(frame["send_date"])).all()
    meta = [e for e in first.get_asset_materialization_events() if e.asset_key == SENDS_KEY][0].materialization.metadata
    assert meta["rows"].value == len(frame) and meta["dropped/no_consent"].value > 0
    assert "back_in_stock and price_drop: none sent" in meta["back_in_stock_and_price_drop"].value
    assert "theme_picks" in meta["sends_by_campaign_and_variant"].value and "**" in meta["preview"].value
    assert check_result(first).passed


def test_caps_hold_over_consecutive_days_and_reruns_are_identical(three_days):
    settings, defs, runs, rows = three_days
    day1, day2, day3 = sorted(rows)
    users = {day: {r[2] for r in rows[day]} for day in rows}
    # Day 2: the same audience again (two in a week is within the cap); day 3: nobody
    # who already had two this week, and the drops say why.
    assert users[day1] and users[day2] == users[day1]
    assert not users[day3] & users[day1]
    meta = [e for e in runs[day3][0].get_asset_materialization_events() if e.asset_key == SENDS_KEY][0]
    assert meta.materialization.metadata["dropped/frequency_cap"].value >= len(users[day1])
    assert "window_limit" in meta.materialization.metadata["dropped_by_reason"].value
    for day in rows:
        assert all(r[1] == day for r in rows[day])
        assert check_result(runs[day][-1]).passed
    # Rerunning day 2 (day 3 now in the log too) replaces its rows with the same rows and
    # keeps the other days of the log.
    with connection(settings.warehouse_path) as con:
        con.execute("DELETE FROM staging.stg_events WHERE event_id LIKE '%-next' AND event_date = ?", [day3 - timedelta(days=1)])
    again = run(defs, [SENDS_KEY])
    assert sends_of(settings, day2) == rows[day2]
    assert sends_of(settings, day1) == rows[day1] and sends_of(settings, day3) == rows[day3]
    assert check_result(again).passed
    # Another day draws its own variants: the same users, not all the same copy.
    variants = {day: [r[5] for r in sorted(rows[day], key=lambda r: r[2])] for day in (day1, day2)}
    assert variants[day1] != variants[day2]


def test_the_export_writes_the_days_messages(three_days, tmp_path, monkeypatch, capsys):
    from recs_pipeline.cli import EXPORT_COLUMNS, main

    settings, _, _, rows = three_days
    day1 = min(rows)
    monkeypatch.setenv("RECS_DATA_DIR", str(settings.data_dir))
    target = tmp_path / "out.csv"
    assert main(["export", "campaign", "--date", str(day1), "--format", "csv", "--output", str(target)]) == 0
    assert f"wrote {len(rows[day1])} message(s)" in capsys.readouterr().err
    with target.open(newline="", encoding="utf-8") as fh:
        exported = list(csv.DictReader(fh))
    assert tuple(exported[0]) == EXPORT_COLUMNS == (
        "user_id", "channel", "subject", "preheader", "item_ids", "titles", "prices", "send_at",
        "campaign", "variant", "send_id",
    )
    by_id = {r[0]: r for r in rows[day1]}
    assert {e["send_id"] for e in exported} == set(by_id)
    sample = exported[0]
    stored = by_id[sample["send_id"]]
    items = json.loads(stored[8])
    assert sample["user_id"] == stored[2] and sample["subject"] == stored[6] and sample["preheader"] == stored[7]
    assert sample["item_ids"] == " | ".join(i["item_id"] for i in items)
    assert sample["prices"] == " | ".join(str(i["price"]) for i in items)

    assert main(["export", "campaign", "--date", str(day1), "--format", "jsonl"]) == 0
    capsys.readouterr()
    lines = (settings.data_dir / "exports" / f"campaign-{day1}.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    assert len(lines) == len(rows[day1]) and list(first) == list(EXPORT_COLUMNS)
    assert isinstance(first["item_ids"], list) and len(first["item_ids"]) == len(first["titles"]) == len(first["prices"])

    assert main(["export", "campaign", "--date", str(day1 - timedelta(days=30))]) == 1
    err = capsys.readouterr().err
    assert f"no campaign sends on {day1 - timedelta(days=30)}" in err and "hint: days with sends: " in err
    assert str(day1) in err and "Traceback" not in err


def test_rule_violations_and_the_campaign_settings():
    log = pd.DataFrame({
        "user_id": ["a", "a", "a", "a", "b", "b"], "channel": ["email"] * 6,
        "send_at": pd.to_datetime(["2026-01-01 10:00", "2026-01-03 09:00", "2026-01-07 09:00", "2026-01-08 09:00",
                                   "2026-01-01 09:00", "2026-01-01 12:00"]),
    })
    # a: 3 sends in the windows ending on the 7th and the 8th; b: two on one day; b never consented.
    assert rule_violations(log, pd.Series({"a": True}), 2, 7) == {
        "over_frequency_cap": 2, "over_daily_limit": 1, "without_consent": 2, "after_unsubscribe": 0}
    # a unsubscribed on the 3rd after that day's send: the sends of the 7th and 8th break the rule.
    unsubscribed = pd.Series({"a": pd.Timestamp("2026-01-03 09:30")})
    assert rule_violations(log, pd.Series({"a": True, "b": True}), 3, 7, unsubscribed)["after_unsubscribe"] == 2
    assert rule_violations(log, pd.Series({"a": True, "b": True}), 3, 7)["over_frequency_cap"] == 0
    assert rule_violations(log.iloc[:0], pd.Series(dtype=bool), 3, 7) == {
        "over_frequency_cap": 0, "over_daily_limit": 0, "without_consent": 0, "after_unsubscribe": 0}
    cfg = campaign_settings({"frequency_cap": 5, "channels": ["email", "push"]}, {"RECS_CAMPAIGNS_FREQUENCY_CAP": "2"})
    assert cfg.frequency_cap == 2 and cfg.channels == ("email", "push") and cfg.explore_share == 0.02
    windows = campaign_settings({"open_window_hours": 24}, {"RECS_CAMPAIGNS_PURCHASE_WINDOW_HOURS": "48"})
    assert (windows.open_window_hours, windows.click_window_hours, windows.purchase_window_hours) == (24.0, 72.0, 48.0)
    for bad in ({"channels": "fax"}, {"explore_share": 2}, {"n_theme": 3}, {"click_window_hours": 0}):
        with pytest.raises(ValueError):
            campaign_settings(bad, {})


def test_an_unsubscribe_stops_the_next_sends_and_the_check_sees_a_breach(built, tmp_path):
    import shutil

    settings, _, _ = built
    shutil.copy(settings.warehouse_path, tmp_path / "warehouse.duckdb")
    copy = settings_for(tmp_path, RECS_LANDING_DIR=str(settings.landing_dir), RECS_RANKER="0",
                        RECS_CAMPAIGNS_FREQUENCY_CAP="7")  # fmt: skip
    defs = build_defs(copy)
    with connection(copy.warehouse_path) as con:
        day, user, send_id, send_at = con.execute(
            "SELECT send_date, user_id, send_id, send_at FROM marketing.campaign_sends "
            "WHERE send_date = (SELECT max(send_date) FROM marketing.campaign_sends) ORDER BY send_id LIMIT 1"
        ).fetchall()[0]
        con.execute(
            "INSERT INTO staging.stg_message_events (event_id, user_id, send_id, event_type, event_ts, event_date, "
            "partition_date, source_file, source_line) VALUES ('unsub-test', ?, ?, 'unsubscribe', ?, ?, ?, 'test', 2)",
            [user, send_id, send_at + timedelta(minutes=5), day, day],
        )
    next_day(copy)
    result = run(defs, [SENDS_KEY])
    next_sends = {r[2] for r in sends_of(copy, day + timedelta(days=1))}
    assert next_sends and user not in next_sends
    meta = [e for e in result.get_asset_materialization_events() if e.asset_key == SENDS_KEY][0].materialization.metadata
    assert meta["dropped/unsubscribed"].value == 1
    assert check_result(result).passed
    # A send planned after the unsubscribe anyway (say, loaded by hand) fails the check
    # (two days on: the rerun below replaces only the next day's sends).
    with connection(copy.warehouse_path) as con:
        con.execute(
            "INSERT INTO marketing.campaign_sends SELECT * REPLACE ('s_forced' AS send_id, send_date + 2 AS send_date, "
            "send_at + INTERVAL 2 DAY AS send_at) FROM marketing.campaign_sends WHERE send_id = ?", [send_id]
        )
    evaluation = check_result(run(defs, [SENDS_KEY]))
    assert evaluation.passed is False and evaluation.metadata["after_unsubscribe"].value >= 1
