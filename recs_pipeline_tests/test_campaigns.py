"""The campaign maths (recs_pipeline.campaigns): themes, copy, the bandit, send rules,
simulated responses, attribution, and a 14-day closed loop of all of them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import beta as beta_distribution

from recs_pipeline.campaigns import CAMPAIGNS
from recs_pipeline.campaigns.attribution import attribute, campaign_results, wilson_interval
from recs_pipeline.campaigns.bandit import choose_variants, posteriors
from recs_pipeline.campaigns.copy import FALLBACKS, VARIANTS, render, variants_of
from recs_pipeline.campaigns.evaluation import LoopConfig, closed_loop
from recs_pipeline.campaigns.send_rules import (
    CAMPAIGN_PRIORITY,
    DAILY_LIMIT,
    WINDOW_LIMIT,
    drop_recent_purchases,
    eligible_sends,
    send_hours,
)
from recs_pipeline.campaigns.simulation import hidden_appeal, simulate_responses
from recs_pipeline.campaigns.themes import fit_themes, user_themes

# --- themes -----------------------------------------------------------------------------

GROUP_WORDS = {
    "candle": ["scented candle glass jar", "candle holder glass", "pillar candle ivory", "candle glass lantern"],
    "mug": ["ceramic coffee mug", "enamel mug ceramic", "stoneware mug", "ceramic espresso mug"],
    "bag": ["canvas tote bag", "leather shoulder bag", "jute bag canvas", "canvas shopping bag"],
}


def _clustered_catalogue(per_group: int = 20, dim: int = 32, noise: float = 0.15, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(GROUP_WORDS), dim))
    truth = np.repeat(np.arange(len(GROUP_WORDS)), per_group)
    vectors = centres[truth] + noise * rng.normal(size=(len(truth), dim)) * np.linalg.norm(centres[truth], axis=1)[:, None] / np.sqrt(dim)
    groups = list(GROUP_WORDS)
    # "gift" and "with" are in every text: a stopword and a word common to all themes,
    # neither of which may name a theme.
    texts = [f"{GROUP_WORDS[groups[g]][i % 4]} gift with love" for i, g in enumerate(truth)]
    ids = [f"i{i:03d}" for i in range(len(truth))]
    return ids, vectors, texts, truth


def test_themes_separate_clusters_and_take_their_names_from_their_words():
    ids, vectors, texts, truth = _clustered_catalogue()
    fitted = fit_themes(ids, vectors, texts, k=3, seed=1)
    item_themes = fitted.item_themes.set_index("item_id").loc[ids]
    # Each true group is exactly one theme, and the three themes differ.
    pairs = pd.crosstab(truth, item_themes["theme_id"].to_numpy())
    assert (pairs > 0).sum(axis=1).eq(1).all() and (pairs > 0).sum(axis=0).eq(1).all()
    for g, group in enumerate(GROUP_WORDS):
        name = item_themes["theme_name"].to_numpy()[truth == g][0]
        assert name.split(" · ")[0] == group.title(), name
        assert "Gift" not in name and "With" not in name and "Love" not in name
        assert 2 <= len(name.split(" · ")) <= 3
    assert item_themes["similarity"].between(0.8, 1.0 + 1e-6).all()
    assert fitted.themes["n_items"].sum() == len(ids)
    assert fitted.themes["theme_id"].tolist() == [0, 1, 2]
    assert np.allclose(np.linalg.norm(fitted.centroids, axis=1), 1.0, atol=1e-5)
    # The same seed gives the same themes.
    again = fit_themes(ids, vectors, texts, k=3, seed=1)
    pd.testing.assert_frame_equal(fitted.item_themes, again.item_themes)
    pd.testing.assert_frame_equal(fitted.themes, again.themes)


def test_themes_cap_k_and_leave_items_without_text_out():
    ids, vectors, texts, _ = _clustered_catalogue(per_group=4)
    vectors = np.repeat(vectors[:5], [3, 3, 2, 2, 2], axis=0)  # 12 items, 5 distinct vectors
    vectors[0] = 0.0  # no text
    fitted = fit_themes(ids, vectors, texts, k=50, seed=0)
    assert len(fitted.themes) <= 5
    assert "i000" not in set(fitted.item_themes["item_id"])
    assert len(fitted.item_themes) == 11
    # More themes than groups: groups split, and the halves still get names of their own.
    ids, vectors, texts, _ = _clustered_catalogue()
    split = fit_themes(ids, vectors, texts, k=6, seed=0)
    assert len(split.themes) == 6 and split.themes["theme_name"].is_unique
    assert split.themes["n_items"].is_monotonic_decreasing


def test_wordllama_embeddings_put_candles_mugs_and_bags_in_different_themes():
    from recs_pipeline.text.embeddings import embed_texts

    titles = {
        "candle": ["scented soy candle in glass jar", "vanilla candle holder glass", "large pillar candle ivory",
                   "tea light candle set"],
        "mug": ["white ceramic coffee mug", "enamel tea mug blue", "stoneware mug with handle", "espresso mug set"],
        "bag": ["canvas tote bag", "leather shoulder bag black", "jute shopping bag", "gift bag with ribbon"],
    }
    texts = [t for group in titles.values() for t in group]
    truth = np.repeat(np.arange(3), 4)
    fitted = fit_themes(list(range(len(texts))), embed_texts(texts), texts, k=3, seed=7)
    theme = fitted.item_themes.sort_values("item_id")["theme_id"].to_numpy()
    assert all(len(set(theme[truth == g])) == 1 for g in range(3))
    assert len(set(theme)) == 3
    names = fitted.item_themes.sort_values("item_id")["theme_name"].to_numpy()
    for g, word in enumerate(titles):
        assert word.title() in names[truth == g][0].split(" · ")


def test_user_themes_rank_share_and_recency():
    item_themes = pd.DataFrame({"item_id": ["a", "b", "c", "d"], "theme_id": [0, 1, 2, 2],
                                "theme_name": ["A", "B", "C", "C"], "similarity": 0.9})
    t0 = pd.Timestamp("2024-01-01")
    purchases = pd.DataFrame({
        "user_id": ["u1"] * 6 + ["u2"] * 2 + ["u3"],
        "item_id": ["a", "a", "b", "c", "d", "zz", "b", "a", "zz"],  # zz has no theme
        "event_ts": [t0, t0, t0 + pd.Timedelta(days=60), t0, t0, t0, t0, t0, t0],
    })
    top = user_themes(purchases, item_themes, top=2)
    u1 = top[top["user_id"] == "u1"]
    # u1: theme 0 twice, theme 2 twice (c and d), theme 1 once; tie 0 vs 2 -> theme 0 first.
    assert u1["theme_id"].tolist() == [0, 2] and u1["rank"].tolist() == [1, 2]
    assert np.allclose(u1["share"], [0.4, 0.4])
    # u2's tie (one purchase each) also goes to the lower theme id; u3 has no themed purchase.
    assert top[top["user_id"] == "u2"]["theme_id"].tolist() == [0, 1]
    assert "u3" not in set(top["user_id"])
    assert (top.groupby("user_id")["share"].sum() <= 1 + 1e-12).all()
    # With a 5-day half-life the recent purchase of b outweighs the old ones.
    recent = user_themes(purchases, item_themes, top=1, half_life_days=5, now=t0 + pd.Timedelta(days=60))
    assert recent.set_index("user_id").loc["u1", "theme_id"] == 1
    assert recent.set_index("user_id").loc["u1", "share"] > 0.99


# --- copy -------------------------------------------------------------------------------

def test_every_campaign_has_three_or_four_variants():
    for campaign in CAMPAIGNS:
        ids = variants_of(campaign)
        assert 3 <= len(ids) <= 4
        assert all(v.startswith(campaign + ".") for v in ids)
    assert len(VARIANTS) == sum(len(variants_of(c)) for c in CAMPAIGNS)


@pytest.mark.parametrize("filled", [True, False])
def test_copy_renders_every_variant_without_placeholders(filled):
    n = len(VARIANTS)
    frame = pd.DataFrame({"variant": list(VARIANTS)}, index=np.arange(100, 100 + n))
    if filled:
        frame = frame.assign(theme="Candle · Glass", category="home_decor", first_title="Scented candle",
                             first_price=12.5, n_items=3)
    else:  # every field present but empty in some way
        frame = frame.assign(theme=[None, np.nan, "", "  "] * (n // 4) + [None] * (n % 4), category=np.nan,
                             first_title=pd.NA, first_price=[np.nan, "nan", None, -1.0] * (n // 4) + [None] * (n % 4),
                             n_items=np.nan)
    headline, preheader = render(frame)
    assert headline.index.equals(frame.index) and preheader.index.equals(frame.index)
    for text in pd.concat([headline, preheader]):
        assert text and text[0] == text[0].upper()
        for bad in ("None", "nan", "NaN", "<NA>", "{", "}"):
            assert bad not in text, text
    if filled:
        assert headline.str.contains("Candle · Glass|Scented candle|home decor|3 ").all()
        priced = preheader[preheader.str.contains("12")]
        assert len(priced) and priced.str.contains("12.50").all()
    else:
        assert pd.concat([headline, preheader]).str.contains("|".join(FALLBACKS.values())).all()


def test_copy_without_field_columns_and_unknown_variants():
    headline, preheader = render(pd.DataFrame({"variant": ["price_drop.a", "welcome.b"]}), currency="£")
    assert headline.tolist() == ["Price drop: our top pick", "Welcome: start with our bestsellers"]
    assert preheader.iloc[0] == "Now at a great price, in our bestsellers."
    priced, _ = render(pd.DataFrame({"variant": ["price_drop.b"], "first_title": ["Lamp"], "first_price": [3]}),
                       currency="£")
    assert priced.iloc[0] == "Lamp, now at £3.00"
    with pytest.raises(ValueError):
        render(pd.DataFrame({"variant": ["price_drop.z"]}))


# --- bandit -----------------------------------------------------------------------------

def test_posteriors_count_clicks_and_keep_empty_cells():
    results = pd.DataFrame({"segment": ["s1", "s1", "s2", "s1"], "variant": ["a", "b", "a", "a"],
                            "sends": [100, 50, 10, 20], "clicks": [10, 1, 0, 2]})
    post = posteriors(results, variants=["a", "b"], segments=["s1", "s2"]).set_index(["segment", "variant"])
    assert len(post) == 4
    row = post.loc[("s1", "a")]
    assert (row["sends"], row["clicks"], row["alpha"], row["beta"]) == (120, 12, 13.0, 109.0)
    assert row["mean"] == pytest.approx(13 / 122)
    assert row["low"] == pytest.approx(beta_distribution.ppf(0.025, 13, 109))
    assert row["high"] == pytest.approx(beta_distribution.ppf(0.975, 13, 109))
    empty = post.loc[("s2", "b")]
    assert (empty["sends"], empty["alpha"], empty["beta"], empty["mean"]) == (0, 1.0, 1.0, 0.5)
    assert empty["low"] == pytest.approx(0.025) and empty["high"] == pytest.approx(0.975)
    assert (post["low"] < post["mean"]).all() and (post["mean"] < post["high"]).all()
    with pytest.raises(ValueError):
        posteriors(results.assign(clicks=500), ["a", "b"], ["s1", "s2"])


def _bandit_users(n: int = 4000) -> pd.DataFrame:
    return pd.DataFrame({"user_id": [f"u{i:05d}" for i in range(n)], "segment": np.where(np.arange(n) % 2, "s1", "s2")})


def test_thompson_picks_the_clearly_better_variant_and_explores_as_asked():
    # In s1 variant b clicks 10% against 2-3%; in s2 variant c is the better one.
    results = pd.DataFrame({
        "segment": ["s1"] * 3 + ["s2"] * 3, "variant": ["a", "b", "c"] * 2,
        "sends": [1000] * 6, "clicks": [20, 100, 30, 25, 20, 90],
    })
    post = posteriors(results, ["a", "b", "c"], ["s1", "s2"])
    users = _bandit_users()
    chosen = choose_variants(users, post, explore_share=0.1, seed=3).merge(users, on="user_id")
    assert chosen["user_id"].tolist() == users["user_id"].tolist()
    assert (chosen["policy"] == "explore").mean() == pytest.approx(0.1, abs=1e-3)
    thompson = chosen[chosen["policy"] == "thompson"]
    best = thompson["segment"].map({"s1": "b", "s2": "c"})
    assert (thompson["variant"] == best).mean() > 0.99
    explored = chosen[chosen["policy"] == "explore"]["variant"].value_counts(normalize=True)
    assert explored.reindex(["a", "b", "c"]).between(0.25, 0.42).all()
    # Deterministic for a seed, whatever the row order; another seed, other draws.
    again = choose_variants(users.iloc[::-1], post, explore_share=0.1, seed=3).set_index("user_id")
    pd.testing.assert_frame_equal(chosen.set_index("user_id")[["variant", "policy"]], again.loc[chosen["user_id"]])
    other = choose_variants(users, post, explore_share=0.1, seed=4)
    assert (other["policy"] != chosen["policy"]).any()


def test_thompson_without_data_spreads_evenly_and_pools_unknown_segments():
    post = posteriors(pd.DataFrame(columns=["segment", "variant", "sends", "clicks"]), ["a", "b", "c", "d"], ["s1"])
    users = _bandit_users(8000)  # s2 is not in the posteriors
    chosen = choose_variants(users, post, explore_share=0.0, seed=0)
    assert (chosen["policy"] == "thompson").all()
    assert chosen["variant"].value_counts(normalize=True).between(0.22, 0.28).all()
    trained = posteriors(pd.DataFrame({"segment": ["s1", "s1"], "variant": ["a", "b"], "sends": [2000, 2000],
                                       "clicks": [200, 20]}), ["a", "b"], ["s1"])
    pooled = choose_variants(users, trained, explore_share=0.0, seed=0)
    assert (pooled["variant"] == "a").mean() > 0.99


# --- send rules -------------------------------------------------------------------------

def test_eligible_sends_reasons_and_the_seven_day_window():
    day = pd.Timestamp("2024-05-10")
    candidates = pd.DataFrame({
        "user_id": ["nc", "un", "ok2", "ok3", "old", "today"],
        "channel": "email", "campaign": "theme_picks",
    })
    consent = pd.Series({"un": True, "ok2": True, "ok3": True, "old": True, "today": True, "nc": False})
    recent = pd.DataFrame({
        "user_id": ["ok2", "ok2", "ok3", "ok3", "ok3", "old", "old", "old", "today", "ok3"],
        "channel": ["email"] * 9 + ["home_page"],
        "send_at": [day - pd.Timedelta(days=1), day - pd.Timedelta(days=6)] + [day - pd.Timedelta(days=d) for d in (1, 2, 6)]
        + [day - pd.Timedelta(days=d) for d in (7, 8, 9)] + [day + pd.Timedelta(hours=8), day - pd.Timedelta(days=1)],
    })
    kept, dropped = eligible_sends(candidates, consent, {"un"}, recent, day, frequency_cap=3)
    assert sorted(kept["user_id"]) == ["ok2", "old"]  # 2 earlier + 1 <= 3; sends 7+ days ago do not count
    reasons = dropped.set_index("user_id")[["reason", "detail"]]
    assert reasons.loc["nc", "reason"] == "no_consent" and reasons.loc["un", "reason"] == "unsubscribed"
    assert tuple(reasons.loc["ok3"]) == ("frequency_cap", WINDOW_LIMIT)  # 3 email sends in the window (not home_page)
    assert tuple(reasons.loc["today"]) == ("frequency_cap", DAILY_LIMIT)  # already had one today
    # A user without any consent record gets nothing.
    kept, dropped = eligible_sends(candidates.assign(user_id="stranger"), consent, set(), None, day, 3)
    assert kept.empty and (dropped["reason"] == "no_consent").all()


def test_send_rules_hold_over_a_generated_send_log():
    rng = np.random.default_rng(11)
    n_users, days, cap = 150, 21, 3
    users = np.array([f"u{i:03d}" for i in range(n_users)], dtype=object)
    consent = pd.Series(rng.random(n_users) < 0.8, index=users)
    unsubscribed = set(users[rng.random(n_users) < 0.1])
    start = pd.Timestamp("2024-06-01")
    log = pd.DataFrame({"user_id": pd.Series([], dtype=object), "channel": pd.Series([], dtype=object),
                        "campaign": pd.Series([], dtype=object), "send_at": pd.Series([], dtype="datetime64[ns]")})
    dropped_all = []
    # Days in a shuffled order: a backfilled day must not overfill a window that ends later.
    for d in rng.permutation(days):
        day = start + pd.Timedelta(days=int(d))
        n = 400
        candidates = pd.DataFrame({
            "user_id": rng.choice(users, n), "channel": rng.choice(["email", "push"], n),
            "campaign": rng.choice(list(CAMPAIGN_PRIORITY), n),
        })
        kept, dropped = eligible_sends(candidates, consent, unsubscribed, log, day, frequency_cap=cap)
        assert len(kept) + len(dropped) == n and set(dropped["reason"]) <= {"no_consent", "unsubscribed", "frequency_cap"}
        # Among a user's candidates for a channel that day, the one kept is the most urgent.
        rank = {c: i for i, c in enumerate(CAMPAIGN_PRIORITY)}
        allowed = candidates[candidates["user_id"].isin(consent[consent].index) & ~candidates["user_id"].isin(unsubscribed)]
        most_urgent = allowed.assign(r=allowed["campaign"].map(rank)).groupby(["user_id", "channel"])["r"].min()
        kept_rank = kept.assign(r=kept["campaign"].map(rank)).set_index(["user_id", "channel"])["r"]
        assert (kept_rank == most_urgent.reindex(kept_rank.index)).all()
        hours = rng.integers(0, 24, len(kept))
        log = pd.concat([log, kept.assign(send_at=day + pd.to_timedelta(hours, unit="h"))], ignore_index=True)
        dropped_all.append(dropped)
    dropped = pd.concat(dropped_all)

    assert not log["user_id"].isin(unsubscribed).any()
    assert consent.reindex(log["user_id"]).all()
    per_day = log.assign(day=log["send_at"].dt.normalize()).groupby(["user_id", "channel", "day"]).size()
    assert per_day.max() == 1
    # Every 7-day window of every (user, channel): at most `cap` sends.
    daily = per_day.unstack("day", fill_value=0).reindex(columns=pd.date_range(start, periods=days), fill_value=0)
    windows = np.lib.stride_tricks.sliding_window_view(daily.to_numpy(), 7, axis=1).sum(axis=2)
    assert windows.max() <= cap
    # The rules did bite: caps were reached and both kinds of frequency drop happened.
    assert windows.max() == cap
    assert {DAILY_LIMIT, WINDOW_LIMIT} <= set(dropped["detail"])


def test_drop_recent_purchases_and_send_hours():
    now = pd.Timestamp("2024-03-31 12:00")
    items = pd.DataFrame({"user_id": ["u1", "u1", "u2", "u2"], "item_id": ["a", "b", "a", "c"], "rank": [1, 2, 1, 2]})
    purchases = pd.DataFrame({"user_id": ["u1", "u2", "u2"], "item_id": ["a", "a", "c"],
                              "event_ts": [now - pd.Timedelta(days=2), now - pd.Timedelta(days=40), now + pd.Timedelta(days=1)]})
    left = drop_recent_purchases(items, purchases, now, days=30)
    assert left[["user_id", "item_id"]].values.tolist() == [["u1", "b"], ["u2", "a"], ["u2", "c"]]
    assert left.index.tolist() == [1, 2, 3]

    events = pd.DataFrame({
        "user_id": ["u1", "u1", "u1", "u2", "u2", "u3"],
        "event_ts": pd.to_datetime(["2024-01-01 09:10", "2024-01-02 09:50", "2024-01-03 20:00",
                                    "2024-01-01 18:00", "2024-01-02 07:00", "2024-01-01 23:30+01:00"], format="mixed", utc=True),
    })
    hours = send_hours(events, default_hour=10, users=["u1", "u2", "u3", "u4"])
    assert hours.to_dict() == {"u1": 9, "u2": 7, "u3": 22, "u4": 10}  # u2: a tie goes to the earlier hour


# --- simulation -------------------------------------------------------------------------

SEGMENTS = ["new_user", "lapsed_customer", "high_value", "category_lover", "active_shopper"]


def test_hidden_appeal_is_realistic_with_a_best_variant_that_changes():
    variants = variants_of("theme_picks")
    appeal = hidden_appeal(variants, SEGMENTS, seed=5)
    assert len(appeal) == len(variants) * len(SEGMENTS)
    assert appeal["open_p"].between(0.15, 0.45).all()
    assert appeal["click_p_given_open"].between(0.05, 0.30).all()
    assert appeal["unsubscribe_p"].between(0.001, 0.01).all()
    rate = (appeal["open_p"] * appeal["click_p_given_open"]).groupby([appeal["segment"], appeal["variant"]]).sum().unstack()
    ordered = np.sort(rate.to_numpy(), axis=1)
    assert (ordered[:, -1] >= 1.3 * ordered[:, -2]).all()  # a clear best
    assert rate.idxmax(axis=1).nunique() > 1  # and not the same everywhere
    pd.testing.assert_frame_equal(appeal, hidden_appeal(variants, SEGMENTS, seed=5))


def _sends(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    variants = variants_of("theme_picks")
    return pd.DataFrame({
        "send_id": [f"s{i:06d}" for i in range(n)], "user_id": [f"u{i % (n // 2):06d}" for i in range(n)],
        "segment": rng.choice(SEGMENTS, n), "variant": rng.choice(variants, n),
        "send_at": pd.Timestamp("2024-04-01 10:00") + pd.to_timedelta(rng.integers(0, 5 * 86400, n), unit="s"),
    })


def test_simulated_responses_follow_the_funnel_and_the_appeal():
    sends = _sends(40_000)
    appeal = hidden_appeal(variants_of("theme_picks"), SEGMENTS, seed=2)
    events = simulate_responses(sends, appeal, seed=9)
    assert set(events["event_type"]) == {"message_open", "message_click", "unsubscribe"}
    assert not events.duplicated(["send_id", "event_type"]).any()
    wide = events.pivot(index="send_id", columns="event_type", values="event_ts")
    clicked, unsub = wide["message_click"].notna(), wide["unsubscribe"].notna()
    assert wide.loc[clicked | unsub, "message_open"].notna().all()
    assert (wide.loc[clicked, "message_click"] > wide.loc[clicked, "message_open"]).all()
    assert (wide.loc[unsub, "unsubscribe"] > wide.loc[unsub, "message_open"]).all()
    opened_after = wide["message_open"] - sends.set_index("send_id")["send_at"].reindex(wide.index)
    assert (opened_after > pd.Timedelta(0)).all() and (opened_after <= pd.Timedelta(hours=48)).all()
    # Click rates per (segment, variant) agree with the appeal within sampling error.
    per_send = sends.assign(clicked=sends["send_id"].isin(wide.index[clicked]))
    observed = per_send.groupby(["segment", "variant"])["clicked"].agg(["mean", "size"])
    expected = (appeal.set_index(["segment", "variant"]).eval("open_p * click_p_given_open")).reindex(observed.index)
    z = (observed["mean"] - expected) / np.sqrt(expected * (1 - expected) / observed["size"])
    assert (z.abs() < 4.5).all()
    assert per_send["send_id"].isin(wide.index[unsub]).mean() == pytest.approx(appeal["unsubscribe_p"].mean(), rel=0.35)
    # Deterministic for a seed, whatever the row order.
    pd.testing.assert_frame_equal(events, simulate_responses(sends.sample(frac=1, random_state=1), appeal, seed=9))


# --- attribution ------------------------------------------------------------------------

def test_attribution_credits_each_response_once():
    t = pd.Timestamp("2024-04-01 09:00")
    h = pd.Timedelta(hours=1)
    sends = pd.DataFrame({
        "send_id": ["s1", "s2", "s3", "s4"], "user_id": ["u1", "u1", "u2", "u3"],
        "variant": ["theme_picks.a", "price_drop.b", "theme_picks.b", "theme_picks.a"],
        "segment": "x", "send_at": [t, t + 24 * h, t, t],
    })
    events = pd.DataFrame([
        ("u1", "message_open", t + 2 * h, "s1", None),
        ("u1", "message_open", t + 3 * h, "s1", None),  # a second open of s1: still one open
        ("u1", "message_click", t + 25 * h, None, None),  # untagged: the latest send, s2
        ("u1", "message_click", t + 26 * h, "s1", None),  # tagged: s1, although s2 is newer
        ("u1", "purchase", t + 27 * h, None, 30.0),  # the latest send before it: s2 only
        ("u1", "purchase", t + 28 * h, None, np.nan),
        ("u2", "message_click", t + 80 * h, None, None),  # outside the 72 h click window
        ("u2", "purchase", t + 100 * h, None, 12.0),  # inside the 168 h purchase window
        ("u3", "message_click", t + h, "s1", None),  # s1 is not u3's: ignored
        ("u3", "message_open", t - h, None, None),  # before any send
        ("u2", "view", t + h, None, None),  # not a response
    ], columns=["user_id", "event_type", "event_ts", "send_id", "revenue"])
    per_send = attribute(sends, events, open_window_h=72, click_window_h=72, purchase_window_h=168).set_index("send_id")
    assert per_send.index.tolist() == ["s1", "s2", "s3", "s4"]
    assert per_send.loc["s1", ["opened", "clicked", "converted"]].tolist() == [True, True, False]
    assert per_send.loc["s2", ["opened", "clicked", "converted", "revenue"]].tolist() == [True, True, True, 30.0]
    assert per_send.loc["s3", ["opened", "clicked", "converted", "revenue"]].tolist() == [False, False, True, 12.0]
    assert not per_send.loc["s4", ["opened", "clicked", "converted", "unsubscribed"]].any()
    assert per_send.loc["s2", "campaign"] == "price_drop"

    results = campaign_results(per_send.reset_index())
    assert results["sends"].sum() == 4 and results["clicks"].sum() == 2 and results["revenue"].sum() == 42.0
    row = results.set_index(["campaign", "variant"]).loc[("theme_picks", "theme_picks.a")]
    assert (row["sends"], row["opens"], row["open_rate"]) == (2, 1, 0.5)
    assert row["open_rate_low"] < 0.5 < row["open_rate_high"]


def test_attribution_reconciles_on_generated_logs():
    rng = np.random.default_rng(4)
    sends = _sends(6000, seed=4)
    sends["user_id"] = rng.choice([f"u{i:04d}" for i in range(800)], len(sends))
    events = simulate_responses(sends, hidden_appeal(variants_of("theme_picks"), SEGMENTS, seed=1), seed=2)
    events["revenue"] = np.nan
    # Untag half of the responses, and add untagged purchases.
    untag = rng.random(len(events)) < 0.5
    events["send_id"] = events["send_id"].astype(object).where(~untag, None)
    n_purchases = 3000
    purchases = pd.DataFrame({
        "user_id": rng.choice(sends["user_id"].unique(), n_purchases), "event_type": "purchase",
        "event_ts": pd.Timestamp("2024-04-01") + pd.to_timedelta(rng.integers(0, 9 * 86400, n_purchases), unit="s"),
        "send_id": None, "revenue": rng.uniform(5, 50, n_purchases).round(2),
    })
    per_send = attribute(sends, pd.concat([events, purchases], ignore_index=True), 72, 72, 168)
    assert len(per_send) == len(sends) and per_send["send_id"].is_unique
    assert set(per_send["send_id"]) == set(sends["send_id"])
    # A send is credited at most what happened: opens and clicks never exceed the events.
    tagged_and_untagged = events.groupby("event_type").size()
    assert per_send["opened"].sum() <= tagged_and_untagged["message_open"] + per_send["clicked"].sum()
    assert per_send["clicked"].sum() <= tagged_and_untagged["message_click"]
    assert (~per_send["opened"] & per_send["clicked"]).sum() == 0
    # Every purchase is credited to one send at most: credited revenue <= all revenue, and
    # equal to the revenue of the purchases that had a send within the window.
    assert per_send["revenue"].sum() <= purchases["revenue"].sum() + 1e-6
    latest = pd.merge_asof(purchases.sort_values("event_ts"), sends.sort_values("send_at")[["user_id", "send_at"]],
                           left_on="event_ts", right_on="send_at", by="user_id", tolerance=pd.Timedelta(hours=168))
    assert per_send["revenue"].sum() == pytest.approx(latest.loc[latest["send_at"].notna(), "revenue"].sum())
    results = campaign_results(per_send, by=("campaign", "segment", "variant"))
    assert results["sends"].sum() == len(sends) and results["clicks"].sum() == per_send["clicked"].sum()
    for rate in ("open_rate", "click_rate", "conversion_rate"):
        assert (results[f"{rate}_low"] <= results[rate]).all() and (results[rate] <= results[f"{rate}_high"]).all()


def test_wilson_interval_known_values():
    low, high = wilson_interval([0, 5, 10], [10, 10, 0])
    assert low[0] == 0.0 and high[0] == pytest.approx(0.2775, abs=1e-4)
    assert (low[1], high[1]) == (pytest.approx(0.2366, abs=1e-4), pytest.approx(0.7634, abs=1e-4))
    assert np.isnan(low[2]) and np.isnan(high[2])


# --- the closed loop --------------------------------------------------------------------

@pytest.fixture(scope="module")
def loop():
    return closed_loop(LoopConfig())


def test_closed_loop_bandit_beats_uniform_and_nears_the_best(loop):
    last7 = loop.last7
    assert last7["sends"] > 7 * 4000
    assert last7["bandit_click_rate"] >= 0.95 * last7["best_click_rate"]
    assert last7["bandit_click_rate"] >= 1.2 * last7["uniform_click_rate"]
    # The same on the hidden click rates of the variants chosen (no response noise).
    assert last7["bandit_expected_click_rate"] >= 0.95 * last7["best_click_rate"]
    assert last7["best_click_rate"] > last7["best_single_click_rate"]  # a per-segment policy is needed
    days = loop.days
    assert days["regret"].tail(7).sum() < 0.5 * days["regret"].head(7).sum()
    assert days["explore_share"].between(0.015, 0.025).all()
    # The final posteriors rank each segment's truly best variant first.
    truth = loop.appeal.assign(rate=loop.appeal.eval("open_p * click_p_given_open"))
    best = truth.loc[truth.groupby("segment")["rate"].idxmax()].set_index("segment")["variant"]
    believed = loop.final_posteriors.loc[loop.final_posteriors.groupby("segment")["mean"].idxmax()].set_index("segment")["variant"]
    assert believed.reindex(best.index).tolist() == best.tolist()


def test_closed_loop_keeps_its_send_rules(loop):
    sends = loop.per_send
    per_day = sends.groupby(["user_id", sends["send_at"].dt.normalize()]).size()
    assert per_day.max() == 1
    # Nobody is mailed once their unsubscribe is known: it comes at most 48 h and some
    # minutes after a send, and counts from the next midnight.
    first_unsub = sends[sends["unsubscribed"]].groupby("user_id")["send_at"].min().dt.normalize()
    later = sends.merge(first_unsub.rename("unsub_day"), left_on="user_id", right_index=True)
    assert not (later["send_at"] >= later["unsub_day"] + pd.Timedelta(days=4)).any()


def test_a_sends_items_are_the_json_that_json_dumps_writes_in_position_order():
    """items_json builds each user's list without a loop over users: the text must be
    exactly json.dumps of the items (escapes, non-ASCII, missing titles and prices)."""
    import json

    from recs_pipeline.campaigns.assemble import items_json

    picked = pd.DataFrame({
        "user_id": ["u2", "u1", "u1", "u2", "u1"],
        "position": [2, 2, 1, 1, 3],
        "item_id": ["I5", "I2", "I1", "I4", "I3"],
        "title": ['Mug "red"', "café cup", None, "back\\slash\ttab", np.nan],
        "price": [1.005, np.nan, 2.5, 10.0, 3.14159],
    })  # fmt: skip
    out = items_json(picked).set_index("user_id")

    def reference(rows):
        return json.dumps([{"item_id": i, "title": None if pd.isna(t) else t, "price": None if pd.isna(p) else round(p, 2)}
                           for i, t, p in rows], separators=(",", ":"))  # fmt: skip

    assert out.loc["u1", "items"] == reference([("I1", None, 2.5), ("I2", "café cup", np.nan), ("I3", np.nan, 3.14159)])
    assert out.loc["u2", "items"] == reference([("I4", "back\\slash\ttab", 10.0), ("I5", 'Mug "red"', 1.005)])
    assert out["n_items"].to_dict() == {"u1": 3, "u2": 2}
    assert pd.isna(out.loc["u1", "first_title"]) and out.loc["u1", "first_price"] == 2.5
    assert out.loc["u2", "first_title"] == "back\\slash\ttab" and out.loc["u2", "first_price"] == 10.0
    assert list(items_json(picked.iloc[:0]).columns) == ["user_id", "items", "first_title", "first_price", "n_items"]
