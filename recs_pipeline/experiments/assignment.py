"""Deterministic assignment of users to experiment variants.

A user's variant is a pure function of ``(salt, experiment_id, user_id)`` and the
traffic shares, so it can be recomputed anywhere, at any time, without storing an
assignment table:

1. hash the string ``f"{salt}:{experiment_id}:{user_id}"`` (UTF-8) with MD5;
2. read the first 8 bytes of the digest as a big-endian unsigned 64-bit integer and keep
   its top 53 bits, which gives ``u = (h >> 11) / 2**53``, a float exactly representable
   and uniformly distributed in ``[0, 1)``;
3. give the user the first variant (in the order of the ``variants`` mapping) whose
   cumulative share exceeds ``u``.

Why MD5: the hash only has to spread ids uniformly, not resist attackers, and MD5 is
fixed by a standard (RFC 1321), identical on every platform and Python version, immune
to ``PYTHONHASHSEED``, and available in SQL engines, so the same assignment can be
reproduced in the warehouse. In DuckDB::

    (('0x' || left(md5(salt || ':' || experiment_id || ':' || user_id), 16))::UBIGINT >> 11)
        / 2^53                                                   -- = u

Consequences of this design:

- adding users never moves existing users (each user is hashed on its own);
- a different ``experiment_id`` (or ``salt``) gives an independent shuffle, so two
  experiments running on the same users are not correlated;
- changing the shares only moves the users whose ``u`` lies between an old and a new
  boundary: ramping ``{"treatment": 0.1, "control": 0.9}`` up to
  ``{"treatment": 0.2, "control": 0.8}`` moves 10 % of users from control to treatment
  and nobody else. Re-ordering the mapping, however, re-buckets everyone;
- a holdout is just another variant (``{"holdout": 0.05, "control": 0.475, ...}``).

User ids are hashed through ``str()``: ``123`` and ``"123"`` get the same variant, but
``123.0`` (a float id, e.g. after a pandas column picked up a missing value) hashes as
``"123.0"`` — cast ids to their canonical text before assigning.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

#: Largest allowed difference between the sum of the traffic shares and 1.
SHARE_SUM_TOLERANCE = 1e-9

_UNIT_SCALE = 2.0**-53  # top 53 bits of the 64-bit hash -> a float in [0, 1)


def validate_traffic_shares(variants: Mapping[str, float]) -> dict[str, float]:
    """Check a ``{variant: share}`` mapping and return it as a plain dict.

    Raises ``ValueError`` when it is empty, a name is not a non-empty string, a share is
    not a finite number in ``[0, 1]``, or the shares do not sum to 1 (within
    :data:`SHARE_SUM_TOLERANCE`). A share of 0 is allowed (the variant gets nobody).
    """
    if not isinstance(variants, Mapping) or len(variants) == 0:
        raise ValueError("variants must be a non-empty mapping of variant name -> traffic share")
    shares: dict[str, float] = {}
    for name, share in variants.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"variant names must be non-empty strings, got {name!r}")
        try:
            value = float(share)
        except (TypeError, ValueError):
            raise ValueError(f"traffic share of variant {name!r} is not a number: {share!r}") from None
        if not math.isfinite(value) or not 0.0 <= value <= 1.0:
            raise ValueError(f"traffic share of variant {name!r} must be in [0, 1], got {share!r}")
        shares[name] = value
    total = math.fsum(shares.values())
    if abs(total - 1.0) > SHARE_SUM_TOLERANCE:
        raise ValueError(f"traffic shares must sum to 1, got {total!r} for {shares}")
    return shares


def hash_to_unit_interval(
    user_ids: Sequence[object] | pd.Series, experiment_id: str, salt: str = ""
) -> np.ndarray:
    """The uniform number in ``[0, 1)`` of every user for this experiment (see module doc).

    Distinct ids are hashed once (``pd.factorize``), so repeated ids cost nothing; the
    per-id work is a single C-level ``hashlib.md5`` call, everything else is numpy
    (about 0.5 s per million distinct ids).
    """
    if not isinstance(experiment_id, str) or not experiment_id:
        raise ValueError(f"experiment_id must be a non-empty string, got {experiment_id!r}")
    if not isinstance(salt, str):
        raise ValueError(f"salt must be a string, got {salt!r}")
    values = user_ids.to_numpy() if isinstance(user_ids, pd.Series) else np.asarray(user_ids, dtype=object)
    if values.ndim != 1:
        raise ValueError(f"user_ids must be one-dimensional, got shape {values.shape}")
    if len(values) == 0:
        return np.empty(0, dtype=np.float64)
    if pd.isna(values).any():
        raise ValueError("user_ids contain missing values (None/NaN); every user needs an id to be assigned")

    codes, distinct = pd.factorize(values)
    prefix = f"{salt}:{experiment_id}:"
    md5 = hashlib.md5
    digests = b"".join(
        [md5((prefix + str(uid)).encode("utf-8"), usedforsecurity=False).digest()[:8] for uid in distinct]
    )
    hashes = np.frombuffer(digests, dtype=">u8").astype(np.uint64)
    unit = (hashes >> np.uint64(11)).astype(np.float64) * _UNIT_SCALE
    return unit[codes]


def assign_variants(
    user_ids: Sequence[object] | pd.Series,
    experiment_id: str,
    variants: Mapping[str, float],
    salt: str = "",
) -> pd.Series:
    """Assign every user to a variant of ``experiment_id``, deterministically.

    Args:
        user_ids: the users, a sequence or a Series (its index is kept). Duplicates are
            fine (same id, same variant); missing ids raise ``ValueError``.
        experiment_id: name of the experiment; a different id reshuffles everyone.
        variants: ``{variant name: traffic share}``; shares in ``[0, 1]`` summing to 1.
            The mapping's order fixes which slice of ``[0, 1)`` each variant owns.
        salt: optional extra key (e.g. to re-randomise a restarted experiment).

    Returns:
        A Series named ``"variant"``, aligned with ``user_ids`` (same index for a Series,
        a RangeIndex otherwise), holding the variant name of each user.
    """
    validate_traffic_shares(variants)  # fail before hashing a million ids
    unit = hash_to_unit_interval(user_ids, experiment_id, salt)
    index = user_ids.index if isinstance(user_ids, pd.Series) else pd.RangeIndex(len(unit))
    return pd.Series(bucket_variants(unit, variants), index=index, name="variant")


def bucket_variants(units: np.ndarray, variants: Mapping[str, float]) -> np.ndarray:
    """Map numbers in ``[0, 1)`` to variant names by cumulative traffic share.

    Variant ``i`` owns the half-open slice ``[share_0 + ... + share_{i-1}, ... + share_i)``
    in the mapping's order, so a zero-share variant owns nothing.
    """
    shares = validate_traffic_shares(variants)
    units = np.asarray(units, dtype=np.float64)
    if units.size and not (units.min() >= 0.0 and units.max() < 1.0):
        raise ValueError("units must lie in [0, 1)")
    names = np.array(list(shares), dtype=object)
    share_values = np.array(list(shares.values()))
    upper_bounds = np.cumsum(share_values)
    # Rounding must neither leave numbers past the last bucket nor hand a sliver of [0, 1)
    # to trailing zero-share variants: everything from the last real variant on ends at 1.
    upper_bounds[np.flatnonzero(share_values > 0)[-1] :] = 1.0
    return names[np.searchsorted(upper_bounds, units, side="right")]
