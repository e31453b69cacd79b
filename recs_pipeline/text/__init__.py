"""Text of the catalogue as vectors: LLM-derived word embeddings (WordLlama) of each
item's title and description, user profiles built from them, and what they give the
pipeline (text candidates, similar items for items nobody has bought yet, themes)."""

from recs_pipeline.text.embeddings import (
    EMBEDDING_DIM,
    embed_texts,
    item_texts,
    text_candidates,
    text_clusters,
    user_profiles,
)

__all__ = ["EMBEDDING_DIM", "embed_texts", "item_texts", "text_candidates", "text_clusters", "user_profiles"]
