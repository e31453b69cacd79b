"""Text features: every item's WordLlama text vector and text theme, in the warehouse.

The asset is thin: the maths (embedding, k-means themes, theme tokens) lives in
``recs_pipeline.text.embeddings``; the loaders below read the table back for the
model (theme tokens as extra LightFM item features) and for serving (text neighbours
of items without interactions, ``recs_pipeline.recommender.similar``).
"""

from __future__ import annotations

import time

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa

from recs_pipeline.defs.metadata import table_metadata
from recs_pipeline.engine import Session
from recs_pipeline.resources import EngineResource
from recs_pipeline.settings import Settings
from recs_pipeline.text.embeddings import (
    EMBEDDING_DIM,
    THEME_TOKEN_PREFIX,
    THEME_TOKEN_WEIGHT,
    embed_texts,
    item_texts,
    text_themes,
    theme_summary,
    theme_tokens,
)

ITEM_TEXT_TABLE = "features.item_text_embeddings"
ITEM_TEXT_KEY = dg.AssetKey(["features", "item_text_embeddings"])


def build_text_assets(settings: Settings, n_themes: int | None = None) -> list[dg.AssetsDefinition]:
    """``features/item_text_embeddings``. ``n_themes`` None: ``default_n_themes`` of the
    items with text. Themes use the fixed seed ``settings.model.random_state``, so the
    same items give the same table."""
    seed = settings.model.random_state

    @dg.asset(
        key=ITEM_TEXT_KEY,
        deps=[dg.AssetKey(["features", "item_features"])],
        group_name="features",
        kinds={"duckdb", "wordllama"},
        pool="duckdb",
        description="Every item's WordLlama vector (256 floats, L2-normalised; zeros without text) of its title "
        "and description, and its text theme (k-means on the vectors; -1 without text).",
    )
    def item_text_embeddings(warehouse: EngineResource) -> dg.MaterializeResult:
        with warehouse.session(read_only=True) as db:
            items = db.df("SELECT item_id, title, description FROM features.item_features ORDER BY item_id")
        texts = item_texts(items["title"], items["description"])
        started = time.perf_counter()
        vectors = embed_texts(texts)
        embed_seconds = time.perf_counter() - started
        themes = text_themes(vectors, n_themes, seed=seed)
        # The table's types are the Arrow types: VARCHAR, INTEGER, FLOAT[256]; rows in
        # item id order (the query above already sorted them).
        frame = pa.table(
            {
                "item_id": pa.array(items["item_id"].astype(str).tolist(), type=pa.string()),
                "theme": pa.array(themes.astype(np.int32)),
                "embedding": pa.FixedSizeListArray.from_arrays(
                    pa.array(vectors.reshape(-1).astype(np.float32, copy=False), type=pa.float32()), EMBEDDING_DIM
                ),
            }
        )
        with warehouse.session() as db:
            db.replace_table(ITEM_TEXT_TABLE, frame)
            meta = table_metadata(db, ITEM_TEXT_TABLE)
        # The default preview would print 256 floats a row: show the first few instead.
        preview = pd.DataFrame(
            {
                "item_id": items["item_id"].head(5),
                "theme": themes[:5],
                "text": [t[:60] for t in texts[:5]],
                "embedding[:4]": [np.round(v[:4], 3).tolist() for v in vectors[:5]],
            }
        )
        largest = theme_summary(themes, items["title"], top=10, examples=3)
        return dg.MaterializeResult(
            metadata={
                **meta,
                "preview": dg.MetadataValue.md(preview.to_markdown(index=False) if len(preview) else "(no rows)"),
                "n_items": len(items),
                "items_without_text": int((themes < 0).sum()),
                "n_themes": int(len(np.unique(themes[themes >= 0]))),
                "largest_themes": dg.MetadataValue.md(
                    largest.to_markdown(index=False) if len(largest) else "(no themes)"
                ),
                "embed_seconds": dg.MetadataValue.float(round(embed_seconds, 3)),
            }
        )

    return [item_text_embeddings]


def load_item_text(db: Session) -> tuple[pd.Index, np.ndarray, np.ndarray]:
    """``(item_ids, vectors, themes)`` from ``features.item_text_embeddings``, ordered by
    item id: ``vectors`` float32 ``(n_items, 256)``, ``themes`` int64 (-1: no text).
    Align to another index with ``item_ids.get_indexer(ids)`` (-1: no row)."""
    table = db.arrow(f"SELECT item_id, theme, embedding FROM {ITEM_TEXT_TABLE} ORDER BY item_id")
    item_ids = pd.Index(np.asarray(table.column("item_id").to_pylist(), dtype=object), name="item_id")
    themes = table.column("theme").to_numpy().astype(np.int64)
    embeddings = table.column("embedding").combine_chunks()
    vectors = (
        embeddings.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(len(embeddings), -1)
        if len(embeddings)
        else np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
    )
    return item_ids, vectors, themes


def text_theme_tokens_sql(weight: float = THEME_TOKEN_WEIGHT) -> str:
    """A SELECT of ``item_id, feature, weight`` theme tokens from the table (the rows
    :func:`recs_pipeline.text.embeddings.theme_tokens` gives), to UNION ALL with
    ``features.item_feature_tokens``."""
    return (
        f"SELECT item_id, '{THEME_TOKEN_PREFIX}' || CAST(theme AS STRING) AS feature, "
        f"CAST({float(weight)!r} AS DOUBLE) AS weight FROM {ITEM_TEXT_TABLE} WHERE theme >= 0"
    )


def load_theme_tokens(db: Session, weight: float = THEME_TOKEN_WEIGHT) -> pd.DataFrame:
    """The theme tokens as a frame (``item_id, feature, weight``, ordered by all three
    columns), ready to ``pd.concat`` to the item feature tokens."""
    table = db.arrow(f"SELECT item_id, theme FROM {ITEM_TEXT_TABLE} ORDER BY item_id")
    tokens = theme_tokens(
        np.asarray(table.column("item_id").to_pylist(), dtype=object), table.column("theme").to_numpy(), weight
    )
    return tokens.sort_values(["item_id", "feature", "weight"], kind="stable").reset_index(drop=True)
