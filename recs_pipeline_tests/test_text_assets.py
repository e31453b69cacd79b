"""Text features: theme tokens, text neighbours of new items, and the
features/item_text_embeddings asset on a hand-made warehouse (WordLlama, offline)."""

from __future__ import annotations

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest

from recs_pipeline.defs.text import (
    ITEM_TEXT_TABLE,
    build_text_assets,
    load_item_text,
    load_theme_tokens,
    text_theme_tokens_sql,
)
from recs_pipeline.recommender.similar import text_similar_items, with_text_neighbours
from recs_pipeline.resources import WarehouseResource
from recs_pipeline.text.embeddings import (
    default_n_themes,
    embed_texts,
    item_texts,
    text_themes,
    theme_summary,
    theme_tokens,
)
from recs_pipeline_tests.conftest import settings_for

# id, title, in stock, new (no interactions yet)
CATALOGUE = pd.DataFrame(
    [
        ("i0", "red wool scarf", False, False),
        ("i1", "blue wool scarf", True, True),
        ("i2", "green knitted wool scarf", True, False),
        ("i3", "steel kitchen knife", True, False),
        ("i4", "sharp chef knife for the kitchen", True, True),
        ("i5", "ceramic coffee mug", True, False),
        ("i6", "porcelain tea cup", True, True),
        ("i7", None, True, True),
    ],
    columns=["item_id", "title", "in_stock", "new"],
)


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    return embed_texts(item_texts(CATALOGUE["title"], pd.Series([None] * len(CATALOGUE))))


def test_new_items_get_their_semantic_neighbours_in_stock(vectors):
    ids = pd.Index(CATALOGUE["item_id"])
    new, in_stock = CATALOGUE["new"].to_numpy(), CATALOGUE["in_stock"].to_numpy()
    table = text_similar_items(vectors, ids, new, in_stock, n=3, batch_size=2)
    assert list(table.columns) == ["item_id", "rank", "similar_item_id", "score"]
    # Every new item with text gets a list; the item without text (i7) gets none and is never listed.
    assert sorted(table["item_id"].unique()) == ["i1", "i4", "i6"]
    assert "i7" not in set(table["similar_item_id"])
    nearest = table[table["rank"] == 1].set_index("item_id")["similar_item_id"].to_dict()
    # The red scarf is the blue scarf's nearest text but out of stock: the green one comes first.
    assert nearest == {"i1": "i2", "i4": "i3", "i6": "i5"}
    assert "i0" not in set(table["similar_item_id"])  # out of stock, never listed
    assert not (table["item_id"] == table["similar_item_id"]).any()  # never itself
    for _, rows in table.groupby("item_id"):
        assert rows["rank"].tolist() == [1, 2, 3]
        assert rows["score"].is_monotonic_decreasing
    scarf = table[table["item_id"] == "i1"].iloc[0]
    assert scarf["score"] == pytest.approx(float(vectors[1] @ vectors[2]), abs=1e-6)
    # Without the stock filter the red scarf is the nearest; batches do not change the answer.
    unfiltered = text_similar_items(vectors, ids, new, None, n=3)
    assert unfiltered.set_index(["item_id", "rank"]).loc[("i1", 1), "similar_item_id"] == "i0"
    pd.testing.assert_frame_equal(table, text_similar_items(vectors, ids, new, in_stock, n=3, batch_size=1024))


def test_text_neighbours_replace_the_lists_of_their_items(vectors):
    ids = pd.Index(CATALOGUE["item_id"])
    text = text_similar_items(vectors, ids, CATALOGUE["new"].to_numpy(), CATALOGUE["in_stock"].to_numpy(), n=2)
    model = pd.DataFrame(
        {"item_id": ["i1", "i1", "i3"], "rank": [1, 2, 1], "similar_item_id": ["i5", "i6", "i4"], "score": [0.9, 0.8, 0.7]}
    )
    combined = with_text_neighbours(model, text)
    assert combined[combined["item_id"] == "i1"]["similar_item_id"].tolist() == text[text["item_id"] == "i1"][
        "similar_item_id"
    ].tolist()
    assert combined[combined["item_id"] == "i3"]["similar_item_id"].tolist() == ["i4"]
    assert len(combined) == len(text) + 1


def test_no_query_or_no_candidate_gives_an_empty_table(vectors):
    ids = pd.Index(CATALOGUE["item_id"])
    none = np.zeros(len(ids), dtype=bool)
    for table in (text_similar_items(vectors, ids, none, None, n=3), text_similar_items(vectors, ids, None, none, n=3)):
        assert table.empty and list(table.columns) == ["item_id", "rank", "similar_item_id", "score"]
    with pytest.raises(ValueError):
        text_similar_items(vectors, ids[:3], None, None, n=3)


def test_theme_tokens_one_per_item_with_text(vectors):
    themes = text_themes(vectors, k=3, seed=42)
    assert themes[7] == -1 and (themes[:7] >= 0).all()
    assert themes[1] == themes[2] and themes[3] == themes[4]  # scarves together, knives together
    assert np.array_equal(themes, text_themes(vectors, k=3, seed=42))
    tokens = theme_tokens(CATALOGUE["item_id"], themes, weight=0.75)
    assert list(tokens.columns) == ["item_id", "feature", "weight"]
    assert tokens["item_id"].tolist() == [f"i{i}" for i in range(7)]  # one per item with text, none for i7
    assert tokens["feature"].tolist() == [f"text_theme:{t}" for t in themes[:7]]
    assert (tokens["weight"] == 0.75).all()
    assert theme_tokens(["a", "b"], np.array([-1, -1]), 1.0).empty
    with pytest.raises(ValueError):
        theme_tokens(["a"], np.array([0, 1]))


def test_default_number_of_themes_grows_like_the_square_root():
    assert default_n_themes(0) == 0
    assert default_n_themes(1) == 1 and default_n_themes(3) == 2
    assert default_n_themes(150) == 12 and default_n_themes(4_000) == 63
    assert default_n_themes(10_000_000) == 200


def test_theme_summary_lists_the_largest_themes_first():
    summary = theme_summary(np.array([1, 0, 1, -1, 1, 0]), pd.Series(["a", "b", "c", "d", "e", None]), top=2, examples=2)
    assert summary.to_dict("list") == {"theme": [1, 0], "n_items": [3, 2], "examples": ["a; c", "b; "]}


# --- the asset -----------------------------------------------------------------------


def _warehouse(tmp_path) -> WarehouseResource:
    path = tmp_path / "warehouse.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE SCHEMA features")
    frame = CATALOGUE.assign(
        description=[None, "a warm scarf", "a warm scarf", "", None, "holds 300 ml", None, None],
        n_events=[5, 0, 3, 4, 0, 2, 0, 0],
    )
    # Rows inserted out of order: the asset orders by item id.
    con.register("catalogue", frame.iloc[::-1])
    con.execute(
        "CREATE TABLE features.item_features AS SELECT item_id, title, description, in_stock, "
        "n_events::BIGINT AS n_events FROM catalogue"
    )
    con.execute(
        "CREATE TABLE features.item_feature_tokens AS SELECT item_id, 'category:x' AS feature, 1.0 AS weight "
        "FROM catalogue"
    )
    con.close()
    return WarehouseResource(path=str(path))


def test_asset_materialises_the_same_table_twice(tmp_path):
    warehouse = _warehouse(tmp_path)
    assets = build_text_assets(settings_for(tmp_path))
    assert [a.key for a in assets] == [dg.AssetKey(["features", "item_text_embeddings"])]
    spec = assets[0]
    assert dg.AssetKey(["features", "item_features"]) in spec.asset_deps[spec.key]
    assert spec.group_names_by_key[spec.key] == "features"

    def materialise() -> tuple[list[tuple], dict]:
        result = dg.materialize(assets, resources={"warehouse": warehouse})
        assert result.success
        (event,) = result.get_asset_materialization_events()
        with warehouse.connect(read_only=True) as con:
            rows = con.execute(f"SELECT item_id, theme, embedding::FLOAT[] FROM {ITEM_TEXT_TABLE} ORDER BY ALL").fetchall()
        return rows, event.materialization.metadata

    rows, metadata = materialise()
    with warehouse.session(read_only=True) as db:
        schema = dict(db.columns(ITEM_TEXT_TABLE))
        item_ids, loaded, themes = load_item_text(db)
        tokens = load_theme_tokens(db)
        union = db.df(
            f"SELECT item_id, feature, weight FROM features.item_feature_tokens UNION ALL {text_theme_tokens_sql()} "
            "ORDER BY item_id, feature, weight"
        )
    assert schema == {"item_id": "VARCHAR", "theme": "INTEGER", "embedding": "FLOAT[256]"}
    assert [r[0] for r in rows] == [f"i{i}" for i in range(8)]
    assert metadata["n_items"].value == 8 and metadata["items_without_text"].value == 1
    assert metadata["dagster/row_count"].value == 8
    assert 1 <= metadata["n_themes"].value <= default_n_themes(7)
    assert "green knitted wool scarf" in metadata["largest_themes"].value
    assert metadata["embed_seconds"].value >= 0

    # Read back: aligned arrays, the same vectors the pure functions give.
    assert item_ids.tolist() == [f"i{i}" for i in range(8)]
    assert loaded.shape == (8, 256) and loaded.dtype == np.float32 and themes.dtype == np.int64
    descriptions = pd.Series([None, "a warm scarf", "a warm scarf", "", None, "holds 300 ml", None, None])
    expected = embed_texts(item_texts(CATALOGUE["title"], descriptions))
    assert np.allclose(loaded, expected, atol=1e-6)
    assert themes[7] == -1 and not loaded[7].any() and (themes[:7] >= 0).all()
    assert np.array_equal(themes, text_themes(expected, seed=settings_for(tmp_path).model.random_state))

    # Theme tokens: one per item with text, the same from SQL and from the frame.
    assert tokens["item_id"].tolist() == [f"i{i}" for i in range(7)]
    pd.testing.assert_frame_equal(tokens, theme_tokens(item_ids, themes).reset_index(drop=True))
    text_rows = union[union["feature"].str.startswith("text_theme:")].reset_index(drop=True)
    pd.testing.assert_frame_equal(text_rows, tokens, check_dtype=False)
    assert len(union) == 8 + 7

    again, _ = materialise()
    assert again == rows
