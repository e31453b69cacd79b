"""The serving blend: repeat slots, model fill-up, strategies, and tuning the share."""

from __future__ import annotations

import pandas as pd
import pytest

from recs_pipeline.ml.blend import blend, repeat_slots, tune_repeat_share


def _lists(rows: list[tuple[str, str, float]]) -> pd.DataFrame:
    """(user, item, score) rows, ranked in the given order per user."""
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "score"])
    frame["rank"] = frame.groupby("user_id").cumcount() + 1
    return frame


BUY_AGAIN = _lists(
    [
        ("ann", "milk", 3.0),
        ("ann", "bread", 2.0),
        ("ann", "eggs", 0.05),  # bought long ago: weak
        ("ann", "tea", 0.0),  # popular fill-up, never bought
        ("bob", "jam", 1.0),
        ("bob", "tea", 0.0),
    ]
)
MODEL = _lists(
    [
        ("ann", "bread", 0.9),
        ("ann", "cheese", 0.8),
        ("ann", "butter", 0.7),
        ("ann", "milk", 0.6),
        ("ann", "honey", 0.5),
        ("ann", "wine", 0.4),
        ("bob", "ham", 0.9),
        ("bob", "jam", 0.8),
        ("bob", "rice", 0.7),
        ("bob", "oil", 0.6),
        ("bob", "salt", 0.5),
    ]
)


def _items(frame: pd.DataFrame, user: str) -> list[str]:
    return frame[frame["user_id"] == user].sort_values("rank")["item_id"].tolist()


def test_repeat_slots_is_the_share_of_n_rounded_down():
    assert [repeat_slots(10, s) for s in (0.0, 0.3, 0.35, 0.7, 1.0)] == [0, 3, 3, 7, 10]


def test_blend_puts_strong_repeats_first_then_model_discoveries():
    result = blend(BUY_AGAIN, MODEL, n=4, repeat_share=0.5, min_repeat_score=0.1)
    assert _items(result, "ann") == ["milk", "bread", "cheese", "butter"]
    assert _items(result, "bob") == ["jam", "ham", "rice", "oil"]
    ann = result[result["user_id"] == "ann"].sort_values("rank")
    assert ann["strategy"].tolist() == ["buy_again", "buy_again", "model", "model"]
    assert ann["rank"].tolist() == [1, 2, 3, 4]


def test_blend_never_exceeds_the_repeat_share_nor_n():
    for share in (0.0, 0.25, 0.5, 1.0):
        result = blend(BUY_AGAIN, MODEL, n=4, repeat_share=share)
        per_user = result.groupby("user_id")
        assert (per_user.size() <= 4).all()
        assert (result.groupby("user_id")["strategy"].apply(lambda s: (s == "buy_again").sum()) <= repeat_slots(4, share)).all()
        assert not result.duplicated(["user_id", "item_id"]).any()


def test_blend_ignores_fill_ups_and_weak_repeats():
    result = blend(BUY_AGAIN, MODEL, n=5, repeat_share=1.0, min_repeat_score=0.1)
    repeats = result[result["strategy"] == "buy_again"]
    assert set(zip(repeats["user_id"], repeats["item_id"])) == {("ann", "milk"), ("ann", "bread"), ("bob", "jam")}
    assert _items(result, "bob") == ["jam", "ham", "rice", "oil", "salt"]


def test_share_zero_is_the_model_alone():
    result = blend(BUY_AGAIN, MODEL, n=3, repeat_share=0.0)
    assert (result["strategy"] == "model").all()
    assert _items(result, "ann") == ["bread", "cheese", "butter"]


def test_tuning_prefers_repeats_in_a_shop_where_customers_reorder():
    relevant = pd.DataFrame({"user_id": ["ann", "ann", "bob"], "item_id": ["milk", "eggs", "jam"]})
    share, table = tune_repeat_share(BUY_AGAIN, MODEL, relevant, n=3, shares=(1.0, 0.0, 0.5))
    # share 0: ann 0/3, bob 1/3 (jam); 0.5: one slot, ann gets milk; 1.0: ann gets milk and eggs.
    assert share == 1.0
    assert table["repeat_share"].tolist() == [0.0, 0.5, 1.0]
    assert table["precision"].tolist() == pytest.approx([1 / 6, 1 / 3, 1 / 2])


def test_tuning_gives_share_zero_in_a_shop_of_one_off_purchases():
    relevant = pd.DataFrame({"user_id": ["ann", "bob"], "item_id": ["cheese", "rice"]})  # only new items bought
    share, table = tune_repeat_share(BUY_AGAIN, MODEL, relevant, n=3, shares=(0.0, 0.5, 1.0))
    assert share == 0.0
    assert table["precision"].iloc[0] == table["precision"].max()
