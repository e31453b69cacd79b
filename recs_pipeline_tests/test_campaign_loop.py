"""The campaign loop's pure parts: the synthetic message tool's events, the outcome and
results tables of feedback, and the judge of a send log against the hidden appeal."""

from __future__ import annotations

import json
from datetime import date

import numpy as np
import pandas as pd
import pytest

from recs_pipeline.campaigns.attribution import OUTCOME_SCHEMA, outcome_table, reconciled_results
from recs_pipeline.campaigns.copy import variants_of
from recs_pipeline.campaigns.evaluation import SEGMENTS, judge_sends
from recs_pipeline.synthetic.messages import appeal_click_rates, campaign_appeal, due_on, message_events


def _sends(n: int = 4000, day: str = "2026-03-02") -> pd.DataFrame:
    rng = np.random.default_rng(3)
    variants = variants_of("theme_picks")
    return pd.DataFrame({
        "send_id": [f"s_{i:06d}" for i in range(n)],
        "user_id": [f"U{i % 900:06d}" for i in range(n)],
        "campaign": "theme_picks",
        "segment": np.asarray(SEGMENTS, dtype=object)[rng.integers(0, len(SEGMENTS), n)],
        "variant": np.asarray(variants, dtype=object)[rng.integers(0, len(variants), n)],
        "send_at": pd.Timestamp(day) + pd.to_timedelta(rng.integers(6, 22, n), unit="h"),
        "items": [json.dumps([{"item_id": f"I{i % 50:05d}", "title": "t", "price": 1.0}]) for i in range(n)],
    })


def test_the_message_tool_answers_every_send_within_the_funnel_and_repeats_itself():
    sends = _sends()
    appeal = campaign_appeal(seed=11)
    prices = pd.Series(9.99, index=[f"I{i:05d}" for i in range(50)])
    events = message_events(sends, appeal, prices, seed=5)
    again = message_events(sends.sample(frac=1.0, random_state=1), appeal, prices, seed=5)
    pd.testing.assert_frame_equal(events, again)
    by_type = {t: set(rows["send_id"]) for t, rows in events.groupby("event_type")}
    # One delivery per send at its time; clicks only after opens, purchases only after clicks.
    assert by_type["message_sent"] == set(sends["send_id"])
    assert (events["event_type"] == "message_sent").sum() == len(sends)
    assert by_type["message_click"] <= by_type["message_open"] and by_type["purchase"] <= by_type["message_click"]
    assert by_type["unsubscribe"] <= by_type["message_open"]
    assert not events.duplicated(["send_id", "event_type"]).any()
    first_item = sends.set_index("send_id")["items"].map(lambda s: json.loads(s)[0]["item_id"])
    bought = events[events["event_type"] == "purchase"]
    assert (bought["item_id"] == bought["send_id"].map(first_item)).all() and (bought["price"] == 9.99).all()
    assert events["event_ts"].is_monotonic_increasing
    sent_at = events[events["event_type"] == "message_sent"].set_index("send_id")["event_ts"]
    opened = events[events["event_type"] == "message_open"].set_index("send_id")["event_ts"]
    assert (opened > sent_at.reindex(opened.index)).all()
    # The rates follow the hidden appeal: the best variant of a segment is clicked most.
    rates = appeal_click_rates(appeal)
    clicked = sends.assign(clicked=sends["send_id"].isin(by_type["message_click"]))
    realised = clicked.groupby(["segment", "variant"])["clicked"].mean()
    truth = rates[rates["campaign"] == "theme_picks"].set_index(["segment", "variant"])["click_rate"]
    assert np.corrcoef(realised.reindex(truth.index), truth)[0, 1] > 0.6
    # Responses of a later day wait for it.
    today, later = due_on(events, date(2026, 3, 2))
    assert len(today) + len(later) == len(events) and len(later) > 0
    assert (today["event_ts"].dt.date <= date(2026, 3, 2)).all() and (later["event_ts"].dt.date > date(2026, 3, 2)).all()


def test_each_campaign_has_its_own_best_variant_per_segment():
    appeal = campaign_appeal(seed=11)
    rates = appeal_click_rates(appeal)
    for campaign, rows in rates.groupby("campaign"):
        assert set(rows["variant"]) == set(variants_of(campaign)) and set(rows["segment"]) == set(SEGMENTS)
        best = rows.loc[rows.groupby("segment")["click_rate"].idxmax(), "variant"]
        assert best.nunique() > 1  # no single variant is best everywhere
    pd.testing.assert_frame_equal(appeal, campaign_appeal(seed=11))
    assert not appeal.equals(campaign_appeal(seed=12))


def test_outcomes_and_results_reconcile_with_the_send_log():
    sends = _sends(400).assign(send_date=date(2026, 3, 2), channel="email", policy="thompson")
    appeal = campaign_appeal(seed=2)
    events = message_events(sends, appeal, pd.Series(5.0, index=[f"I{i:05d}" for i in range(50)]), seed=1)
    events = events.assign(revenue=events["price"] * events["quantity"])
    table = outcome_table(sends.drop(columns="items"), events, 72, 72, 168)
    assert table.schema == OUTCOME_SCHEMA and table.num_rows == len(sends)
    per_send = table.to_pandas()
    assert per_send["delivered"].all()
    assert per_send["clicked"].sum() == (events["event_type"] == "message_click").sum()
    assert per_send["revenue"].sum() == pytest.approx(events.loc[events["event_type"] == "purchase", "revenue"].sum())
    # A day sent but not yet answered counts in sends, not in sends_measured.
    logged = pd.concat([sends, sends.assign(send_id=sends["send_id"] + "n")]).groupby(
        ["campaign", "variant"], as_index=False).size().rename(columns={"size": "sends"})
    results = reconciled_results(logged, per_send)
    assert results["sends"].sum() == 2 * len(sends) and results["sends_measured"].sum() == len(sends)
    assert results["clicks"].sum() == per_send["clicked"].sum()
    assert ((results["click_rate_low"] <= results["click_rate"]) & (results["click_rate"] <= results["click_rate_high"])).all()
    assert outcome_table(None, None, 72, 72, 168).num_rows == 0
    empty = outcome_table(sends.drop(columns="items"), None, 72, 72, 168).to_pandas()
    assert len(empty) == len(sends) and not empty[["opened", "clicked", "converted"]].any().any()


def test_the_judge_measures_the_chosen_variants_against_the_best_and_uniform():
    rates = pd.DataFrame({
        "campaign": "c", "segment": ["x", "x", "y", "y"], "variant": ["c.a", "c.b", "c.a", "c.b"],
        "click_rate": [0.10, 0.02, 0.01, 0.05],
    })
    sends = pd.DataFrame({
        "send_date": [date(2026, 1, 1)] * 4 + [date(2026, 1, 2)] * 4,
        "campaign": "c", "segment": ["x", "x", "y", "y"] * 2,
        "variant": ["c.b", "c.b", "c.a", "c.a", "c.a", "c.a", "c.b", "c.b"],
        "clicked": [False] * 7 + [True],
    })
    days, last = judge_sends(sends, rates, last_days=1)
    first, second = days.to_dict("records")
    assert first["bandit_expected_click_rate"] == pytest.approx((0.02 * 2 + 0.01 * 2) / 4)
    assert first["best_click_rate"] == pytest.approx((0.10 * 2 + 0.05 * 2) / 4)
    assert first["uniform_click_rate"] == pytest.approx((0.06 * 2 + 0.03 * 2) / 4)
    # The best single variant for day 1's audience: c.a (0.22 expected clicks vs 0.14).
    assert first["best_single_click_rate"] == pytest.approx(0.22 / 4)
    assert first["regret"] == pytest.approx(0.30 - 0.06)
    assert second["regret"] == pytest.approx(0.0) and second["bandit_click_rate"] == 0.25
    assert last["days"] == 1 and last["expected_bandit_vs_best"] == pytest.approx(1.0)


def test_a_warehouse_made_before_send_id_gains_the_column_on_the_next_load(small_shop, tmp_path):
    from recs_pipeline.engine import create_engine
    from recs_pipeline.sources.adapters import build_source
    from recs_pipeline.sources.base import RAW_EVENT_COLUMNS
    from recs_pipeline.sources.staged import load_event_files_into

    from .conftest import settings_for

    root, _ = small_shop
    settings = settings_for(tmp_path, RECS_LANDING_DIR=str(root / "landing"))
    source = build_source(settings)
    first, second = source.event_days()[:2]
    engine = create_engine("duckdb", tmp_path / "warehouse.duckdb")
    old = [c for c in RAW_EVENT_COLUMNS if c != "send_id"]
    with engine.session() as db:
        load_event_files_into(db, source, [first])
        # As an older version left it: raw.events without send_id.
        db.execute("ALTER TABLE raw.events DROP COLUMN send_id")
        before = db.scalar("SELECT count(*) FROM raw.events")
        assert "send_id" not in {c for c, _ in db.columns("raw.events")}
        report = load_event_files_into(db, source, [second])
        assert [load.day for load in report.loads] == [second]
        assert {c for c, _ in db.columns("raw.events")} >= {*old, "send_id"}
        assert db.scalar("SELECT count(*) FROM raw.events WHERE partition_date = ?", [first]) == before
        assert db.scalar("SELECT count(*) FROM raw.events WHERE partition_date = ?", [second]) > 0
