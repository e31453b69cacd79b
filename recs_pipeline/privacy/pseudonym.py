"""Keyed pseudonyms of user ids: HMAC-SHA256 with a secret key.

``u_`` + the first 16 hex digits (64 bits) of HMAC-SHA256(key, user id). Without the
key a pseudonym cannot be linked back to the shop's id, not even by hashing every
possible id (which a plain hash would allow); with the same key the same id always
gives the same pseudonym, so every night's load joins with the previous ones.

Collisions: with n distinct users the chance that two share a pseudonym is about
n² / 2^65: 3e-10 for 100,000 users, 3e-6 for 10 million. Loads check the ids they
map (a day's users, the user snapshot) and fail on a collision rather than merge two
people.

Speed: the key schedule is computed once and copied for each id (``hmac`` ``copy``),
about 1.5 µs an id in CPython, so a day with a million distinct users costs ~1.5 s.
Only the distinct ids of a load are hashed, in Python; the rows are replaced by a
join in DuckDB (see :func:`register_pseudonyms`).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Iterable

import duckdb
import pandas as pd

PREFIX = "u_"
HEX_DIGITS = 16
KEY_ENV_VAR = "RECS_PSEUDONYM_KEY"

log = logging.getLogger(__name__)
_warned_demo_key = False


class PseudonymCollisionError(RuntimeError):
    """Two different user ids got the same pseudonym (astronomically unlikely)."""


def normalise_id(user_id: str | None) -> str | None:
    """The form of an id that gets hashed: surrounding spaces trimmed (as staging trims
    them); empty means no user (guests, anonymous events) and stays None."""
    if user_id is None:
        return None
    value = str(user_id).strip(" ")
    return value or None


class Pseudonymizer:
    """Maps user ids to pseudonyms with one key. The key is never printed."""

    def __init__(self, key: str | bytes, *, is_demo_key: bool = False):
        raw = key.encode("utf-8") if isinstance(key, str) else bytes(key)
        if not raw:
            raise ValueError("the pseudonym key is empty")
        self._base = hmac.new(raw, digestmod=hashlib.sha256)
        self.is_demo_key = is_demo_key
        # A short fingerprint of the key (a hash of the hash of a fixed message), safe to
        # log and store: it tells which key made a table's pseudonyms, never the key.
        self.key_fingerprint = hashlib.sha256(self._digest("recs-pipeline key fingerprint")).hexdigest()[:8]

    def __repr__(self) -> str:
        return f"Pseudonymizer(key fingerprint {self.key_fingerprint}{', demo key' if self.is_demo_key else ''})"

    @classmethod
    def from_settings(cls, privacy) -> Pseudonymizer:
        """From :class:`recs_pipeline.settings.PrivacySettings` (demo key when unset)."""
        return cls(privacy.effective_key, is_demo_key=privacy.key_is_demo)

    def _digest(self, value: str) -> bytes:
        h = self._base.copy()
        h.update(value.encode("utf-8"))
        return h.digest()

    def one(self, user_id: str | None) -> str | None:
        """The pseudonym of one id (None for a missing id)."""
        value = normalise_id(user_id)
        if value is None:
            return None
        return PREFIX + self._digest(value).hex()[:HEX_DIGITS]

    def many(self, user_ids: Iterable[str | None]) -> list[str | None]:
        """Pseudonyms of many ids, in order."""
        base, prefix, n = self._base, PREFIX, HEX_DIGITS
        out: list[str | None] = []
        append = out.append
        for user_id in user_ids:
            value = normalise_id(user_id)
            if value is None:
                append(None)
                continue
            h = base.copy()
            h.update(value.encode("utf-8"))
            append(prefix + h.hexdigest()[:n])
        return out

    def _hash_all(self, values: list[str]) -> list[str]:
        """Pseudonyms of already normalised, non-empty ids (the hot loop)."""
        copy, prefix, n = self._base.copy, PREFIX, HEX_DIGITS
        out = []
        append = out.append
        for value in values:
            h = copy()
            h.update(value.encode("utf-8"))
            append(prefix + h.hexdigest()[:n])
        return out

    def mapping(self, user_ids: Iterable[str | None], *, normalised: bool = False) -> dict[str, str]:
        """{normalised id: pseudonym} of the distinct non-empty ids; raises on a collision.
        ``normalised``: the ids are already distinct, trimmed and non-empty (a SELECT
        DISTINCT of the loader), which skips that work."""
        if normalised:
            distinct = list(user_ids)
        else:
            distinct = list({v for v in map(normalise_id, user_ids) if v is not None})
        pseudonyms = self._hash_all(distinct)
        result = dict(zip(distinct, pseudonyms))
        if len(set(pseudonyms)) != len(pseudonyms) or len(result) != len(distinct):
            raise PseudonymCollisionError(
                f"{len(pseudonyms) - len(set(pseudonyms))} pseudonym collision(s) among {len(distinct)} user ids; "
                "see docs/privacy.md"
            )
        return result


def warn_if_demo_key(pseudonymizer: Pseudonymizer, logger=None) -> bool:
    """Warn once per process that the public demo key is in use. Returns whether it warned."""
    global _warned_demo_key
    if not pseudonymizer.is_demo_key or _warned_demo_key:
        return False
    _warned_demo_key = True
    (logger or log).warning(
        f"{KEY_ENV_VAR} is not set: user ids are pseudonymised with the public demo key, which protects "
        "nothing. Set a secret key (e.g. `openssl rand -hex 32`) for real data; see docs/privacy.md."
    )
    return True


def register_pseudonyms(
    con: duckdb.DuckDBPyConnection, table: str, id_sql: str, pseudonymizer: Pseudonymizer
) -> dict[str, str]:
    """Create temp table ``table`` (raw_id, pseudonym) for the distinct ids ``id_sql``
    returns (a SELECT of one VARCHAR column, already normalised). Returns the mapping."""
    ids = con.execute(
        f"SELECT DISTINCT v FROM ({id_sql}) AS t(v) WHERE v IS NOT NULL AND v <> ''"
    ).fetchnumpy()["v"]
    mapping = pseudonymizer.mapping(ids.tolist(), normalised=True)
    frame = pd.DataFrame({"raw_id": list(mapping.keys()), "pseudonym": list(mapping.values())}, dtype=object)
    view = f"{table}_frame"
    con.register(view, frame)
    try:
        # Distinct by construction (and checked for collisions above): no index needed.
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {table} AS "
            f"SELECT raw_id::VARCHAR AS raw_id, pseudonym::VARCHAR AS pseudonym FROM {view}"
        )
    finally:
        con.unregister(view)
    return mapping
