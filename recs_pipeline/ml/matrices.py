"""Id mappings and the sparse matrices LightFM trains on.

Every matrix of the model lives in one index space, fixed by :class:`Mappings`:
row ``i`` of the user matrices is ``mappings.user_ids[i]``, column ``j`` of the
item matrices is ``mappings.item_ids[j]``. Users and items that only have
features (cold start) are part of the mappings too, so a model trained today
can score a customer who signed up but has not bought anything yet.

Feature matrices follow LightFM's convention: the first block of columns is
one identity feature per entity (its own embedding), the second block the
attribute tokens (``country:GB``, ``category:coffee``...), and each row is
normalised to sum 1 so that an entity with many tokens is not pushed further
from the origin than one with few.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

FeatureMode = Literal["hybrid", "cf", "content"]
"""``hybrid``: identity + tokens; ``cf``: identity only (pure collaborative
filtering); ``content``: tokens only (every entity is described by its
attributes, which generalises to unseen entities but cannot memorise)."""


@dataclass(frozen=True)
class Mappings:
    """The index space of a model: ids and feature vocabularies in column order.

    ``*_identity`` records whether the feature matrices start with an identity
    block, which decides where token ``j`` sits (column ``n_entities + j`` or ``j``).
    """

    user_ids: pd.Index
    item_ids: pd.Index
    user_tokens: pd.Index
    item_tokens: pd.Index
    user_identity: bool = True
    item_identity: bool = True

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_user_features(self) -> int:
        return self.n_users * self.user_identity + len(self.user_tokens)

    @property
    def n_item_features(self) -> int:
        return self.n_items * self.item_identity + len(self.item_tokens)

    @property
    def user_index(self) -> dict[str, int]:
        return dict(zip(self.user_ids, range(self.n_users)))

    @property
    def item_index(self) -> dict[str, int]:
        return dict(zip(self.item_ids, range(self.n_items)))

    @property
    def user_feature_index(self) -> dict[str, int]:
        """Token -> column of the user feature matrix."""
        offset = self.n_users if self.user_identity else 0
        return dict(zip(self.user_tokens, range(offset, offset + len(self.user_tokens))))

    @property
    def item_feature_index(self) -> dict[str, int]:
        """Token -> column of the item feature matrix."""
        offset = self.n_items if self.item_identity else 0
        return dict(zip(self.item_tokens, range(offset, offset + len(self.item_tokens))))

    def user_codes(self, user_ids) -> np.ndarray:
        """Row index of each user id; -1 for ids outside the mapping."""
        return self.user_ids.get_indexer(pd.Index(user_ids))

    def item_codes(self, item_ids) -> np.ndarray:
        """Column index of each item id; -1 for ids outside the mapping."""
        return self.item_ids.get_indexer(pd.Index(item_ids))

    def to_dict(self) -> dict:
        """JSON-serialisable form (ids as strings), for the model store."""
        return {
            "user_ids": [str(u) for u in self.user_ids],
            "item_ids": [str(i) for i in self.item_ids],
            "user_tokens": [str(t) for t in self.user_tokens],
            "item_tokens": [str(t) for t in self.item_tokens],
            "user_identity": self.user_identity,
            "item_identity": self.item_identity,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Mappings:
        return cls(
            user_ids=pd.Index(data["user_ids"], dtype=object),
            item_ids=pd.Index(data["item_ids"], dtype=object),
            user_tokens=pd.Index(data["user_tokens"], dtype=object),
            item_tokens=pd.Index(data["item_tokens"], dtype=object),
            user_identity=bool(data["user_identity"]),
            item_identity=bool(data["item_identity"]),
        )


@dataclass(frozen=True)
class TrainingData:
    """Everything ``LightFM.fit`` needs, in one index space."""

    mappings: Mappings
    interactions: sp.coo_matrix  # users x items, 1 where the user interacted
    weights: sp.coo_matrix  # same pattern, the interaction strength (sample weights)
    user_features: sp.csr_matrix  # users x user features
    item_features: sp.csr_matrix  # items x item features


def _sorted_unique(*columns: pd.Series | None) -> pd.Index:
    """Sorted distinct string values of the given columns: a stable, reproducible order."""
    present = [c.astype(str) for c in columns if c is not None]
    if not present:
        return pd.Index([], dtype=object)
    values = pd.concat(present, ignore_index=True)
    return pd.Index(np.sort(values.unique()), dtype=object)


def build_mappings(
    interactions: pd.DataFrame,
    user_tokens: pd.DataFrame | None = None,
    item_tokens: pd.DataFrame | None = None,
    mode: FeatureMode = "hybrid",
) -> Mappings:
    """Index users, items and feature tokens.

    Users and items come from the interactions *and* the token tables, so
    entities known only by their features get a row (cold start). In ``cf``
    mode the token vocabularies are empty.
    """
    use_tokens = mode != "cf"
    user_tokens = user_tokens if use_tokens else None
    item_tokens = item_tokens if use_tokens else None
    return Mappings(
        user_ids=_sorted_unique(
            interactions["user_id"], None if user_tokens is None else user_tokens["user_id"]
        ),
        item_ids=_sorted_unique(
            interactions["item_id"], None if item_tokens is None else item_tokens["item_id"]
        ),
        user_tokens=_sorted_unique(None if user_tokens is None else user_tokens["feature"]),
        item_tokens=_sorted_unique(None if item_tokens is None else item_tokens["feature"]),
        user_identity=mode != "content",
        item_identity=mode != "content",
    )


def _codes(values: pd.Series, index: pd.Index) -> np.ndarray:
    """Integer code of each value in ``index`` (a hash lookup over the whole column; -1 when unknown)."""
    return index.get_indexer(values.astype(str)).astype(np.int64)


def build_interaction_matrices(
    interactions: pd.DataFrame, mappings: Mappings, weight_column: str = "weight"
) -> tuple[sp.coo_matrix, sp.coo_matrix]:
    """Binary interaction matrix and the matching weight matrix (users x items).

    Rows whose user or item is outside the mappings are dropped; duplicate
    (user, item) rows are summed into one weight. Both matrices share one
    sparsity pattern in one order, which LightFM requires of ``sample_weight``.
    """
    rows = _codes(interactions["user_id"], mappings.user_ids)
    cols = _codes(interactions["item_id"], mappings.item_ids)
    weights = interactions[weight_column].to_numpy(dtype=np.float32)
    known = (rows >= 0) & (cols >= 0)
    shape = (mappings.n_users, mappings.n_items)
    summed = sp.coo_matrix((weights[known], (rows[known], cols[known])), shape=shape).tocsr()
    summed.sum_duplicates()
    summed.eliminate_zeros()
    weight_matrix = summed.tocoo()
    binary = sp.coo_matrix(
        (np.ones_like(weight_matrix.data), (weight_matrix.row, weight_matrix.col)), shape=shape
    )
    return binary, weight_matrix


def _normalise_rows(matrix: sp.csr_matrix) -> sp.csr_matrix:
    """Scale each row to sum 1 (rows that are all zero stay zero)."""
    sums = np.asarray(matrix.sum(axis=1)).ravel()
    scale = np.divide(1.0, sums, out=np.zeros_like(sums), where=sums > 0)
    return (sp.diags(scale.astype(np.float32)) @ matrix).tocsr()


def build_feature_matrix(
    ids: pd.Index,
    tokens: pd.DataFrame | None,
    vocabulary: pd.Index,
    id_column: str,
    identity: bool = True,
    identity_weight: float = 1.0,
    normalise: bool = True,
) -> sp.csr_matrix:
    """Entity feature matrix: ``[identity block | token block]``, rows normalised.

    ``identity_weight`` sets the identity feature's weight relative to the
    token weights before normalisation: above 1 the model leans on each
    entity's own embedding, below 1 on its attributes. Token rows whose entity
    or token is not in the index space are ignored.
    """
    n = len(ids)
    offset = n if identity else 0
    rows, cols, data = [], [], []
    if identity:
        rows.append(np.arange(n))
        cols.append(np.arange(n))
        data.append(np.full(n, identity_weight, dtype=np.float32))
    if tokens is not None and len(vocabulary):
        token_rows = _codes(tokens[id_column], ids)
        token_cols = _codes(tokens["feature"], vocabulary)
        known = (token_rows >= 0) & (token_cols >= 0)
        rows.append(token_rows[known])
        cols.append(token_cols[known] + offset)
        data.append(tokens["weight"].to_numpy(dtype=np.float32)[known])
    shape = (n, offset + len(vocabulary))
    if not rows:
        return sp.csr_matrix(shape, dtype=np.float32)
    matrix = sp.csr_matrix(
        (np.concatenate(data), (np.concatenate(rows), np.concatenate(cols))), shape=shape
    )
    matrix.sum_duplicates()
    return _normalise_rows(matrix) if normalise else matrix.tocsr()


def cold_feature_matrix(
    tokens: pd.DataFrame,
    ids: pd.Index,
    mappings: Mappings,
    side: Literal["user", "item"] = "user",
    normalise: bool = True,
) -> sp.csr_matrix:
    """Feature rows for entities outside the model (known only by their tokens).

    The matrix has the model's full width so ``model.get_user_representations``
    accepts it; the identity block is empty (these entities have no embedding
    of their own) and tokens the model never saw are ignored.
    """
    n_entities, vocabulary, identity = (
        (mappings.n_users, mappings.user_tokens, mappings.user_identity)
        if side == "user"
        else (mappings.n_items, mappings.item_tokens, mappings.item_identity)
    )
    token_block = build_feature_matrix(
        ids, tokens, vocabulary, id_column=f"{side}_id", identity=False, normalise=normalise
    )
    if not identity:
        return token_block
    return sp.hstack([sp.csr_matrix((len(ids), n_entities), dtype=np.float32), token_block], format="csr")


def build_training_data(
    interactions: pd.DataFrame,
    user_tokens: pd.DataFrame | None = None,
    item_tokens: pd.DataFrame | None = None,
    mode: FeatureMode = "hybrid",
    user_identity_weight: float = 1.0,
    item_identity_weight: float = 1.0,
    normalise: bool = True,
    weight_column: str = "weight",
) -> TrainingData:
    """Mappings, interaction/weight matrices and feature matrices in one call."""
    mappings = build_mappings(interactions, user_tokens, item_tokens, mode)
    binary, weights = build_interaction_matrices(interactions, mappings, weight_column)
    user_features = build_feature_matrix(
        mappings.user_ids,
        user_tokens if mode != "cf" else None,
        mappings.user_tokens,
        "user_id",
        identity=mappings.user_identity,
        identity_weight=user_identity_weight,
        normalise=normalise,
    )
    item_features = build_feature_matrix(
        mappings.item_ids,
        item_tokens if mode != "cf" else None,
        mappings.item_tokens,
        "item_id",
        identity=mappings.item_identity,
        identity_weight=item_identity_weight,
        normalise=normalise,
    )
    return TrainingData(mappings, binary, weights, user_features, item_features)


def with_weak_negatives(data: TrainingData, negatives: pd.DataFrame, weight: float = 0.2) -> TrainingData:
    """Add shown-but-ignored (user, item) pairs as explicit negatives (-1).

    Only LightFM's ``logistic`` loss reads negative interactions; WARP and BPR sample
    their own negatives, so the pipeline calls this for ``logistic`` only. Pairs outside
    the index space or already positive are skipped; each negative gets ``weight`` as its
    sample weight. Interactions and weights keep one sparsity pattern in one order, as
    LightFM requires.
    """
    rows = data.mappings.user_codes(negatives["user_id"])
    cols = data.mappings.item_codes(negatives["item_id"])
    known = (rows >= 0) & (cols >= 0)
    rows, cols = rows[known], cols[known]
    positive = data.interactions.tocsr()
    is_positive = np.asarray(positive[rows, cols]).ravel() > 0 if len(rows) else np.zeros(0, dtype=bool)
    rows, cols = rows[~is_positive], cols[~is_positive]
    base = data.weights.tocoo()
    all_rows = np.concatenate([base.row, rows])
    all_cols = np.concatenate([base.col, cols])
    shape = base.shape
    labels = np.concatenate([np.ones(len(base.data), dtype=np.float32), -np.ones(len(rows), dtype=np.float32)])
    weights = np.concatenate([base.data.astype(np.float32), np.full(len(rows), weight, dtype=np.float32)])
    return TrainingData(
        data.mappings,
        sp.coo_matrix((labels, (all_rows, all_cols)), shape=shape),
        sp.coo_matrix((weights, (all_rows, all_cols)), shape=shape),
        data.user_features,
        data.item_features,
    )
