"""The seeded synthetic shop: the project's built-in default data (pure Python/numpy/pandas)."""

from recs_pipeline.synthetic.dirt import DEFECT_KINDS
from recs_pipeline.synthetic.shop import (
    EVENT_COLUMNS,
    ITEM_COLUMNS,
    USER_COLUMNS,
    GenerationReport,
    ShopConfig,
    SyntheticShop,
    generate_landing_zone,
)

__all__ = [
    "DEFECT_KINDS",
    "EVENT_COLUMNS",
    "ITEM_COLUMNS",
    "USER_COLUMNS",
    "GenerationReport",
    "ShopConfig",
    "SyntheticShop",
    "generate_landing_zone",
]
