"""The synthetic shop: determinism, the landing-zone contract, the ground truth of the
injected dirt, and behaviour with a real taste signal (what a recommender must find)."""

from __future__ import annotations

import csv
import re
from dataclasses import replace
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recs_pipeline.synthetic.dirt import DEFECT_KINDS
from recs_pipeline.synthetic.shop import (
    EVENT_COLUMNS,
    ITEM_COLUMNS,
    USER_COLUMNS,
    ShopConfig,
    SyntheticShop,
    generate_landing_zone,
)

TINY = ShopConfig(seed=11, n_days=4, n_users=200, n_items=120, events_per_day=800, dirt_rate=0.05)
# Big enough for behavioural statistics, small enough to simulate in well under a second.
MEDIUM = ShopConfig(seed=5, n_days=28, n_users=1500, n_items=400, events_per_day=5000)

USER_ID = re.compile(r"U\d{6}")
ITEM_ID = re.compile(r"I\d{5}")
PRICE = re.compile(r"\d+\.\d{2}")
TS_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
ORGANIC_TYPES = {"view", "add_to_cart", "remove_from_cart", "purchase", "search"}


def read_rows(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


def read_defects(landing: Path) -> dict[tuple[str, int], str]:
    with (landing / "_truth" / "defects.csv").open(newline="") as fh:
        return {(d["file"], int(d["line"])): d["kind"] for d in csv.DictReader(fh)}


def violations(fields: list[str], day: date, catalogue: set[str], users: set[str]) -> set[str]:
    """Every rule of the event contract a line breaks (named by defect kind where one applies)."""
    if len(fields) != len(EVENT_COLUMNS):
        return {"malformed_line"}
    user, item, event_type, ts, quantity, price, session, query = fields
    broken = set()
    if user == "":
        broken.add("missing_user_id")
    elif not USER_ID.fullmatch(user) or user not in users:
        broken.add("bad_user_id")
    if event_type not in ORGANIC_TYPES | {"impression", "click"}:
        broken.add("unknown_event_type")
    try:
        when = datetime.strptime(ts, TS_FORMAT).date()
    except ValueError:
        broken.add("unparseable_timestamp")
    else:
        if when >= day + timedelta(days=30):
            broken.add("future_timestamp")
        elif when != day:
            broken.add("timestamp_not_in_day")
    if price.startswith("-"):
        broken.add("negative_price")
        price = price[1:]
    if event_type == "search":
        if item or price or not query:
            broken.add("bad_search")
    else:
        if item not in catalogue:
            broken.add("unknown_item")
        if not PRICE.fullmatch(price) or float(price) <= 0 or query:
            broken.add("bad_price_or_query")
    if not quantity.isdigit() or int(quantity) < 1 or (event_type == "view" and quantity != "1"):
        broken.add("bad_quantity")
    if not re.fullmatch(rf"S{day:%Y%m%d}-\d{{6}}", session):
        broken.add("bad_session_id")
    return broken


@pytest.fixture(scope="module")
def landing(small_shop) -> Path:
    root, _ = small_shop
    return root / "landing"


@pytest.fixture(scope="module")
def snapshots(landing):
    items = pd.read_csv(landing / "items" / "items.csv", dtype=str, keep_default_na=False)
    users = pd.read_csv(landing / "users" / "users.csv", dtype=str, keep_default_na=False)
    return items, users


@pytest.fixture(scope="module")
def medium():
    """MEDIUM simulated in memory: the shop (state after the last day) and all its events."""
    shop = SyntheticShop(MEDIUM)
    frames = [shop.simulate_day(day).assign(day=day) for day in MEDIUM.days]
    events = pd.concat(frames, ignore_index=True)
    events["u"] = pd.Index(shop.users["user_id"]).get_indexer(events["user_id"])
    events["i"] = pd.Index(shop.items["item_id"]).get_indexer(events["item_id"].fillna(""))
    return shop, events


def all_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# --- determinism --------------------------------------------------------------------


def test_same_config_writes_byte_identical_files_and_another_seed_does_not(tmp_path):
    first = all_files(generate_landing_zone(tmp_path / "a", TINY).paths["events"].parent)
    second = all_files(generate_landing_zone(tmp_path / "b", TINY).paths["events"].parent)
    other = all_files(generate_landing_zone(tmp_path / "c", replace(TINY, seed=12)).paths["events"].parent)
    assert "_truth/state.npz" in first and len(first) == TINY.n_days + 4
    assert first == second
    assert other.keys() == first.keys()
    assert all(other[name] != first[name] for name in first)


def test_regenerating_overwrites_and_drops_day_files_of_an_earlier_longer_run(tmp_path):
    generate_landing_zone(tmp_path, TINY)
    report = generate_landing_zone(tmp_path, replace(TINY, n_days=2, dirt_rate=0.0))
    assert sorted(p.name for p in (tmp_path / "events").iterdir()) == ["2026-09-01.csv", "2026-09-02.csv"]
    assert report.event_files == sorted((tmp_path / "events").iterdir())
    assert (tmp_path / "_truth" / "defects.csv").read_text() == "file,line,kind\n"


# --- the landing-zone contract ------------------------------------------------------


def test_event_files_follow_the_contract(small_shop, small_shop_config, landing, snapshots):
    _, report = small_shop
    items, users = snapshots
    catalogue, known_users = set(items["item_id"]), set(users["user_id"])
    defects = read_defects(landing)
    n_lines = 0
    for path in report.event_files:
        rows = read_rows(path)
        day = date.fromisoformat(path.stem)
        assert path.read_text(encoding="utf-8").split("\n", 1)[0] == ",".join(EVENT_COLUMNS)
        clean = [r for n, r in enumerate(rows[1:], start=2) if (f"events/{path.name}", n) not in defects]
        assert clean and all(violations(r, day, catalogue, known_users) == set() for r in clean)
        assert {r[2] for r in clean} == ORGANIC_TYPES  # no impressions or clicks without recommendations
        stamps = [r[3] for r in clean]
        assert stamps == sorted(stamps)
        n_lines += len(rows) - 1
    assert n_lines == report.n_events_written
    assert len(report.event_files) == report.n_days == small_shop_config.n_days


def test_search_queries_describe_the_item_viewed_next(landing, snapshots):
    items, _ = snapshots
    text = dict(zip(items["item_id"], (items["title"] + " " + items["description"]).str.lower()))
    frame = pd.read_csv(landing / "events" / "2026-09-03.csv", dtype=str, keep_default_na=False, on_bad_lines="skip")
    frame = frame[frame["user_id"] != ""]
    searches = frame[frame["event_type"] == "search"]
    views = frame[frame["event_type"] == "view"].drop_duplicates("session_id")  # first view of each session
    paired = searches.merge(views, on="session_id", suffixes=("_search", "_view"))
    assert len(paired) >= 20
    assert all(
        all(word in text[item] for word in query.split())
        for query, item in zip(paired["search_query_search"], paired["item_id_view"])
    )


def test_catalogue_and_user_snapshots_follow_the_contract(landing, snapshots, small_shop_config):
    items, users = snapshots
    cfg = small_shop_config
    assert read_rows(landing / "items" / "items.csv")[0] == list(ITEM_COLUMNS)
    assert read_rows(landing / "users" / "users.csv")[0] == list(USER_COLUMNS)
    assert all(len(r) == len(ITEM_COLUMNS) for r in read_rows(landing / "items" / "items.csv"))

    assert len(items) == cfg.n_items and items["item_id"].is_unique
    assert items["item_id"].str.fullmatch(ITEM_ID).all() and items["price"].str.fullmatch(PRICE).all()
    assert set(items["in_stock"]) == {"true", "false"} and 0.005 < (items["in_stock"] == "false").mean() < 0.15
    assert items["category"].nunique() == 12 and items["brand"].nunique() >= 12
    assert items["description"].str.contains(",").sum() >= 5  # quoting matters
    launch = pd.to_datetime(items["launch_date"], format="%Y-%m-%d").dt.date
    assert launch.max() <= cfg.days[-1]
    assert (launch < cfg.start_date).mean() == pytest.approx(cfg.initial_item_share, abs=0.02)

    assert len(users) == cfg.n_users and users["user_id"].str.fullmatch(USER_ID).all()
    assert set(users["age_band"]) == {"18-24", "25-34", "35-44", "45-54", "55-64", "65+"}
    assert set(users["gender"]) <= {"F", "M", "X"} and {"F", "M"} <= set(users["gender"])
    assert set(users["country"]) <= {"GB", "DE", "FR", "US", "NL", "ES", "IT", "PL", "SE", "IE"}
    assert users["country"].value_counts().index[0] == "GB"
    assert 0.45 < (users["marketing_consent"] == "true").mean() < 0.75
    signup = pd.to_datetime(users["signup_date"], format="%Y-%m-%d").dt.date
    assert (signup < cfg.start_date).mean() == pytest.approx(cfg.initial_user_share, abs=0.02)


# --- dirt and its ground truth ------------------------------------------------------


def test_every_recorded_defect_is_really_there_and_nothing_else_is(small_shop, landing, snapshots):
    _, report = small_shop
    items, users = snapshots
    catalogue, known_users = set(items["item_id"]), set(users["user_id"])
    defects = read_defects(landing)
    found: dict[tuple[str, int], str] = {}
    for path in report.event_files:
        name, day = f"events/{path.name}", date.fromisoformat(path.stem)
        lines = path.read_text(encoding="utf-8").split("\n")
        for n, row in enumerate(read_rows(path)[1:], start=2):
            broken = violations(row, day, catalogue, known_users)
            assert len(broken) <= 1, (name, n, broken)  # one defect per line
            if broken:
                found[(name, n)] = broken.pop()
            elif lines[n - 1] == lines[n - 2]:  # physical line n is lines[n - 1]
                assert (name, n - 1) not in defects  # a copy of a valid line
                found[(name, n)] = "duplicate"
    assert found == defects
    counts = {kind: list(defects.values()).count(kind) for kind in DEFECT_KINDS}
    assert counts == report.n_defects
    assert sum(counts.values()) == pytest.approx(0.03 * report.n_events_written, rel=0.05)
    assert min(counts.values()) >= 0.8 * max(counts.values())  # kinds spread evenly


def test_malformed_lines_are_cut_after_three_fields_or_carry_an_extra_one(landing):
    lengths = []
    for (name, line), kind in read_defects(landing).items():
        if kind == "malformed_line":
            text = (landing / name).read_text(encoding="utf-8").split("\n")[line - 1]
            assert text.count('"') % 2 == 0
            lengths.append(len(next(csv.reader([text]))))
    assert set(lengths) == {3, 9}


def test_zero_dirt_rate_writes_clean_files_without_repeated_lines(tmp_path):
    report = generate_landing_zone(tmp_path, replace(TINY, dirt_rate=0.0))
    assert (tmp_path / "_truth" / "defects.csv").read_text() == "file,line,kind\n"
    assert set(report.n_defects.values()) == {0}
    catalogue = set(pd.read_csv(tmp_path / "items" / "items.csv", dtype=str)["item_id"])
    known_users = set(pd.read_csv(tmp_path / "users" / "users.csv", dtype=str)["user_id"])
    for path in report.event_files:
        rows = read_rows(path)[1:]
        assert all(violations(r, date.fromisoformat(path.stem), catalogue, known_users) == set() for r in rows)
        assert len({tuple(r) for r in rows}) == len(rows)


# --- behaviour ----------------------------------------------------------------------


def test_items_and_users_appear_only_from_their_launch_and_signup(medium):
    shop, events = medium
    launch = np.array(shop.items["launch_date"].tolist())
    signup = np.array(shop.users["signup_date"].tolist())
    with_item = events[events["i"] >= 0]
    assert (launch[with_item["i"]] <= with_item["day"].to_numpy()).all()
    assert (signup[events["u"]] <= events["day"].to_numpy()).all()
    # ...and the newcomers do take part: new items get viewed, new users buy.
    start = MEDIUM.start_date
    assert (launch[with_item["i"]] > start).sum() > 500
    assert events.loc[(signup[events["u"]] > start) & (events["event_type"] == "purchase"), "u"].nunique() > 50


def test_traffic_matches_the_config_with_busier_weekends(medium):
    shop, events = medium
    per_day = events.groupby("day").size()
    weekly = [MEDIUM.weekend_uplift if d.weekday() >= 5 else 1.0 for d in MEDIUM.days]
    assert per_day.sum() == pytest.approx(MEDIUM.events_per_day * sum(weekly), rel=0.08)
    signed_up = shop.users["signup_date"].to_numpy()
    per_user = per_day / [np.sum(signed_up <= d) for d in per_day.index]
    weekend = np.array([d.weekday() >= 5 for d in per_day.index])
    assert per_user[weekend].mean() / per_user[~weekend].mean() == pytest.approx(MEDIUM.weekend_uplift, abs=0.1)


def test_purchases_concentrate_in_the_users_favourite_categories(medium):
    shop, events = medium
    bought = events[events["event_type"] == "purchase"]
    category = shop.items["category"].to_numpy()[bought["i"]]
    top2 = np.array(shop.categories)[np.argsort(-shop.category_taste, axis=1)[:, :2]][bought["u"]]
    share_in_top2 = (top2 == category[:, None]).any(axis=1).mean()
    global_share = pd.Series(category).value_counts(normalize=True)
    expected_without_taste = global_share.reindex(top2.ravel()).fillna(0).to_numpy().reshape(top2.shape).sum(1).mean()
    assert len(bought) > 2000
    assert share_in_top2 > 0.6 and share_in_top2 > 2.5 * expected_without_taste


def test_taste_predicts_future_purchases_far_better_than_popularity(medium):
    """Rank items for the last week's buyers from the first three weeks: the true
    affinity, and a simple learnable taste model, must both beat popularity."""
    shop, events = medium
    split = MEDIUM.days[-7]
    train, test = events[events["day"] < split], events[events["day"] >= split]
    buys = test[test["event_type"] == "purchase"].groupby("u")["i"].agg(set)
    users = buys.index.to_numpy()
    launched = np.array(shop.items["launch_date"].tolist()) <= split
    train_buys = train[train["event_type"] == "purchase"]
    popularity = np.bincount(train_buys["i"], minlength=len(shop.items)).astype(float)

    def hit_rate(scores: np.ndarray) -> float:
        top = np.argsort(-np.where(launched, scores, -np.inf), axis=1)[:, :10]
        return float(np.mean([bool(buys[u] & set(t)) for u, t in zip(users, top)]))

    viewed = train[(train["event_type"] == "view") & train["u"].isin(users)]
    categories = pd.Index(shop.categories).get_indexer(shop.items["category"])
    counts = pd.crosstab(viewed["u"], categories[viewed["i"]]).reindex(index=users, columns=range(12), fill_value=0)
    category_share = (counts.to_numpy() + 0.1) / (counts.to_numpy() + 0.1).sum(axis=1, keepdims=True)

    by_popularity = hit_rate(np.tile(popularity, (len(users), 1)))
    by_learnable_taste = hit_rate(np.log(category_share[:, categories]) + np.log1p(popularity))
    by_true_affinity = hit_rate(shop.affinity(shop.users["user_id"].to_numpy()[users], shop.items["item_id"]))
    assert len(users) > 300
    assert by_learnable_taste > 1.5 * by_popularity
    assert by_true_affinity > by_learnable_taste + 0.1


def test_consumables_are_bought_again_and_one_offs_rarely(medium):
    shop, events = medium
    bought = events[events["event_type"] == "purchase"]
    again = bought["day"] > bought.groupby(["u", "i"])["day"].transform("min")
    consumable = shop.items["category"].isin(["coffee", "skincare", "pet_food"]).to_numpy()[bought["i"]]
    assert again[consumable].mean() > 0.2
    assert again[~consumable].mean() < 0.1
    quantities = bought["quantity"].to_numpy()
    assert quantities[consumable].max() > 1 and quantities[consumable].mean() > quantities[~consumable].mean()


def test_regular_buyers_come_back_for_their_consumable():
    """Existing users start with consumables they buy regularly; most of them come back
    for that very item within four weeks (browsing alone would rarely hit it)."""
    shop = SyntheticShop(MEDIUM)
    regulars = shop.purchase_history
    assert len(regulars) > 200 and (regulars["last_purchase"] < MEDIUM.start_date).all()
    categories = shop.items.set_index("item_id").loc[regulars["item_id"], "category"]
    assert set(categories) == {"coffee", "skincare", "pet_food"}
    events = pd.concat([shop.simulate_day(day) for day in MEDIUM.days])
    bought = events[events["event_type"] == "purchase"]
    again = regulars.merge(bought, on=["user_id", "item_id"]).drop_duplicates(["user_id", "item_id"])
    assert len(again) > 0.5 * len(regulars)
    history = shop.purchase_history.merge(regulars, on=["user_id", "item_id"], suffixes=("", "_before"))
    assert (history["last_purchase"] > history["last_purchase_before"]).sum() == len(again)


def test_affinity_is_a_users_by_items_matrix_of_true_utility(medium):
    shop, _ = medium
    matrix = shop.affinity(["U000003", "U000007"], ["I00001", "I00002", "I00003"])
    assert matrix.shape == (2, 3)
    assert matrix[1, 2] == pytest.approx(shop.affinity(["U000007"], ["I00003"])[0, 0])
    favourite = shop.categories[int(np.argmax(shop.category_taste[3]))]
    in_favourite = shop.items.loc[shop.items["category"] == favourite, "item_id"]
    elsewhere = shop.items.loc[shop.items["category"] != favourite, "item_id"]
    assert shop.affinity(["U000003"], in_favourite).mean() > shop.affinity(["U000003"], elsewhere).mean() + 0.5
    with pytest.raises(KeyError, match="I99999x"):
        shop.affinity(["U000003"], ["I99999x"])


# --- the recommendations hook and saved state ---------------------------------------


@pytest.fixture(scope="module")
def branched(tmp_path_factory):
    """The same day simulated twice from one saved state: without and with recommendations
    (for every user, their five best and five worst items by true affinity)."""
    cfg = replace(MEDIUM, n_days=8)
    shop = SyntheticShop(cfg)
    for day in cfg.days[:-1]:
        shop.simulate_day(day)
    state = shop.save_state(tmp_path_factory.mktemp("state") / "state.npz")
    day = cfg.days[-1]
    users = shop.users.loc[shop.users["signup_date"] <= day, "user_id"].to_numpy()
    items = shop.items.loc[shop.items["launch_date"] <= day, "item_id"].to_numpy()
    order = np.argsort(-shop.affinity(users, items), axis=1)
    picks = np.concatenate([order[:, :5], order[:, -5:]], axis=1)
    recs = pd.DataFrame({
        "user_id": np.repeat(users, 10),
        "item_id": items[picks].ravel(),
        "rank": np.tile(np.arange(1, 11), len(users)),
    })  # fmt: skip
    plain = SyntheticShop.load_state(state).simulate_day(day)
    shown = SyntheticShop.load_state(state).simulate_day(day, recs)
    return plain, shown, recs


def test_recommendations_are_shown_to_visiting_users_and_clicked_by_taste(branched):
    plain, shown, recs = branched
    assert not plain["event_type"].isin(["impression", "click"]).any()
    impressions = shown[shown["event_type"] == "impression"]
    visitors = set(shown.loc[shown["event_type"] != "impression", "user_id"])
    assert set(impressions["user_id"]) == set(plain["user_id"]) & set(recs["user_id"]) <= visitors
    assert (impressions.groupby("user_id").size() == 10).all()

    clicks = shown[shown["event_type"] == "click"]
    clicked = set(zip(clicks["user_id"], clicks["item_id"]))
    seen = impressions.merge(recs, on=["user_id", "item_id"])
    seen["clicked"] = [pair in clicked for pair in zip(seen["user_id"], seen["item_id"])]
    best, worst = seen.loc[seen["rank"] <= 5, "clicked"].mean(), seen.loc[seen["rank"] > 5, "clicked"].mean()
    assert best > 0.1 and best > 5 * worst

    # A click leads to a view of the item in the same session, and sometimes to a purchase.
    def pairs(event_type: str, by: str) -> set[tuple[str, str]]:
        rows = shown[shown["event_type"] == event_type]
        return set(zip(rows[by], rows["item_id"]))

    assert set(zip(clicks["session_id"], clicks["item_id"])) <= pairs("view", "session_id")
    assert len(clicked & pairs("purchase", "user_id")) > 0


def test_recommendations_add_events_without_reshuffling_organic_ones(branched):
    plain, shown, _ = branched
    key = ["user_id", "item_id", "event_type", "event_ts", "session_id"]
    organic = ["view", "search", "add_to_cart"]
    before = plain[plain["event_type"].isin(organic)][key]
    after = shown[shown["event_type"].isin(organic)][key]
    assert len(before.merge(after, how="left", indicator=True).query("_merge == 'left_only'")) == 0
    assert len(after) > len(before)


def test_saved_state_continues_the_simulation_exactly(tmp_path):
    shop = SyntheticShop(TINY)
    for day in TINY.days[:2]:
        shop.simulate_day(day)
    restored = SyntheticShop.load_state(shop.save_state(tmp_path / "state.npz"))
    assert restored.config == TINY and restored.last_simulated_day == TINY.days[1]
    pd.testing.assert_frame_equal(restored.items, shop.items)
    pd.testing.assert_frame_equal(restored.users, shop.users)
    pd.testing.assert_frame_equal(restored.simulate_day(TINY.days[2]), shop.simulate_day(TINY.days[2]))
    with pytest.raises(ValueError, match="not after"):
        restored.simulate_day(TINY.days[0])


def test_scaled_config_multiplies_users_items_and_traffic():
    big = ShopConfig().scaled(0.5)
    assert (big.n_users, big.n_items, big.events_per_day) == (2500, 1000, 8000)
    assert replace(big, n_users=5000, n_items=2000, events_per_day=16000) == ShopConfig()
    with pytest.raises(ValueError):
        ShopConfig().scaled(0)


def test_sampled_choice_for_large_catalogues_follows_the_exact_distribution():
    """Above EXACT_CHOICE_CANDIDATES the generator samples candidates (importance
    resampling) instead of scoring all of them; the chosen items must still follow
    popularity^a x exp(b x taste), here checked on bins of the exact probability."""
    from recs_pipeline.synthetic.shop import EXACT_CHOICE_CANDIDATES

    shop = SyntheticShop(ShopConfig(n_users=20, n_items=4000, events_per_day=10, n_days=2))
    candidates = np.arange(shop.config.n_items)
    assert len(candidates) > EXACT_CHOICE_CANDIDATES
    day = shop.config.days[-1].toordinal()
    user = np.array([3])
    exact = shop.config.popularity_weight * np.log(shop._effective_popularity(day)[candidates])
    exact = exact + shop.config.taste_weight * shop._within_matrix(user, candidates)[0]
    p = np.exp(exact - exact.max())
    p /= p.sum()
    draws = shop._choose(np.repeat(user, 40_000), candidates, day, np.random.default_rng(0))
    # Ten bins holding a tenth of the probability each (items ordered by probability).
    order = np.argsort(-p)
    bin_of = np.empty(len(p), dtype=int)
    bin_of[order] = np.minimum((np.cumsum(p[order]) * 10).astype(int), 9)
    expected = np.bincount(bin_of, weights=p, minlength=10)
    observed = np.bincount(bin_of[draws], minlength=10) / len(draws)
    assert np.abs(observed - expected).max() < 0.03, (observed.round(3), expected.round(3))
