"""Campaigns a marketer can send: catalogue themes, copy variants, a Thompson-sampling
bandit over the variants, send rules, simulated responses and attribution.

Pure functions over pandas/numpy (no Dagster); the assets wrapping them belong in
``recs_pipeline.defs``. Submodules are imported on demand so that, say, rendering copy
does not load scikit-learn.
"""

CAMPAIGNS = ("welcome", "win_back", "theme_picks", "back_in_stock", "price_drop")
