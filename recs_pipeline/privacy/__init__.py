"""Privacy (pure: no Dagster): keyed pseudonyms of user ids, retention of line-level
history, and erasure of users from the warehouse, landing files, snapshot and models.
See docs/privacy.md."""

from recs_pipeline.privacy.erasure import ErasureReport, ErasureRequest, erase_users, erase_users_on, pending_requests
from recs_pipeline.privacy.pseudonym import Pseudonymizer, warn_if_demo_key
from recs_pipeline.privacy.retention import RetentionReport, apply_retention, apply_retention_on

__all__ = [
    "ErasureReport",
    "ErasureRequest",
    "Pseudonymizer",
    "RetentionReport",
    "apply_retention",
    "apply_retention_on",
    "erase_users",
    "erase_users_on",
    "pending_requests",
    "warn_if_demo_key",
]
