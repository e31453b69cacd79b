"""Speed of the ranking stage's candidate generators on a large synthetic history.

A seeded history of Zipf-distributed purchases (by default 200k users, 50k items, 2M
purchases over 2025, the size of the L shop's buyers) goes through
``recs_pipeline.ranking.stage``: ``prepare`` at the cut-off 2025-12-01, then
``candidates`` for a block of past buyers, and one block of item-item co-purchase counts
(the 1,000 most-bought items against every item, the kind of block
``item_cosine_similarity`` ranks) through ``top_n_sparse``.
Each step is timed twice: with top_n_sparse's dense-chunk path
for matrices with many stored entries (the default) and with it switched off (the
sparse pre-filter for every matrix, as before that path existed); both must give the
same lists, which the script checks. Prints a table and writes
``benchmarks/results/ranking_speed.json``.

    python -m benchmarks.ranking_speed                   # about 6 minutes on 2 cores
    python -m benchmarks.ranking_speed --users 20000 --items 5000 --purchases 200000
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import pandas as pd

from benchmarks.pipeline import ROOT, machine
from recs_pipeline.ml import scoring
from recs_pipeline.ranking.stage import ShopHistory, StageParams, candidates, prepare

RESULTS = ROOT / "benchmarks" / "results" / "ranking_speed.json"
CUTOFF = pd.Timestamp("2025-12-01")
ITEM_BLOCK_ROWS = 1_000
ITEM_NEIGHBOURS = StageParams().item_neighbours


def synthetic_shop(n_users: int, n_items: int, n_purchases: int, seed: int) -> ShopHistory:
    """Purchases with Zipf-like popular items and active users, in baskets of a day."""
    rng = np.random.default_rng(seed)
    item_weight = 1.0 / np.arange(1, n_items + 1) ** 0.9
    user_weight = 1.0 / np.arange(1, n_users + 1) ** 0.6
    users = rng.choice(n_users, n_purchases, p=user_weight / user_weight.sum())
    items = rng.choice(n_items, n_purchases, p=item_weight / item_weight.sum())
    seconds = rng.integers(0, 365 * 86_400, n_purchases)
    purchases = pd.DataFrame({
        "user_id": pd.Series(users).map("u{:07d}".format),
        "item_id": pd.Series(items).map("i{:06d}".format),
        "event_ts": pd.Timestamp("2025-01-01") + pd.to_timedelta(seconds, unit="s"),
        "price": np.round(rng.gamma(2.0, 5.0, n_purchases), 2),
    })  # fmt: skip
    purchases["basket"] = purchases["user_id"] + "-" + purchases["event_ts"].dt.strftime("%Y-%m-%d")
    item_ids = pd.Index([f"i{i:06d}" for i in range(n_items)], dtype=object)
    segments = pd.Series(np.where(np.arange(n_users) % 7 == 0, "DE", "UK"),
                         index=[f"u{u:07d}" for u in range(n_users)])  # fmt: skip
    return ShopHistory(purchases=purchases, item_ids=item_ids, segments=segments)


def timed(fn):
    started = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - started


def with_dense_path(enabled: bool, fn):
    """``fn()`` with top_n_sparse's dense-chunk path on or off."""
    saved = scoring._DENSE_SHARE
    scoring._DENSE_SHARE = saved if enabled else np.inf
    try:
        return timed(fn)
    finally:
        scoring._DENSE_SHARE = saved


def same_ranked(a: scoring.Ranked, b: scoring.Ranked) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a, b))


def run(n_users: int, n_items: int, n_purchases: int, n_buyers: int, seed: int) -> dict:
    shop = synthetic_shop(n_users, n_items, n_purchases, seed)
    print(f"history: {n_purchases:,} purchases of {n_users:,} users and {n_items:,} items", flush=True)
    result = {}
    for label, enabled in (("sparse", False), ("dense", True)):  # the dense one is kept
        gen, seconds = with_dense_path(enabled, lambda: prepare(shop, CUTOFF, StageParams()))
        result[f"prepare_{label}_s"] = seconds
        print(f"prepare ({label} path): {seconds:.1f} s", flush=True)
        if label == "sparse":
            sparse_similarity = gen.similarity
    result["prepare_same_similarity"] = bool((gen.similarity != sparse_similarity).nnz == 0)
    buyers = gen.user_ids[np.diff(gen.frequency.indptr) > 0][:n_buyers]

    lists = {}
    for label, enabled in (("dense", True), ("sparse", False)):
        lists[label], seconds = with_dense_path(enabled, lambda: candidates(gen, buyers))
        result[f"candidates_{label}_s"] = seconds
        print(f"candidates of {len(buyers):,} buyers ({label} path): {seconds:.1f} s", flush=True)
    key = ["generator", "user_id", "rank"]
    dense_lists = lists["dense"].sort_values(key, ignore_index=True)
    sparse_lists = lists["sparse"].sort_values(key, ignore_index=True)
    result["candidates_same_lists"] = bool(dense_lists[["generator", "user_id", "item_id", "rank"]]
                                           .equals(sparse_lists[["generator", "user_id", "item_id", "rank"]]))  # fmt: skip

    # The block item_cosine_similarity ranks: the most-bought items' co-purchase counts
    # with every item (popular items are co-bought with nearly everything).
    top_items = np.argsort(-np.asarray(gen.seen.sum(axis=0)).ravel(), kind="stable")[:ITEM_BLOCK_ROWS]
    block = (gen.seen[:, top_items].T @ gen.seen).tocsr()
    block.setdiag(0)
    block.eliminate_zeros()
    result["item_block"] = {"rows": int(block.shape[0]), "cols": int(block.shape[1]),
                            "stored_share": float(block.nnz / (block.shape[0] * block.shape[1]))}  # fmt: skip
    ranked = {}
    for label, enabled in (("dense", True), ("sparse", False)):
        ranked[label], seconds = with_dense_path(enabled, lambda: scoring.top_n_sparse(block, top_items, ITEM_NEIGHBOURS))
        result[f"item_block_top_{label}_s"] = seconds
    result["item_block_same_lists"] = same_ranked(ranked["dense"], ranked["sparse"])
    return result


def report(r: dict, n_buyers: int) -> str:
    b = r["item_block"]
    lines = [
        "| step | sparse pre-filter only (s) | with dense chunks (s) | same lists |",
        "|---|---:|---:|---|",
        f"| prepare (cut-off {CUTOFF.date()}) | {r['prepare_sparse_s']:.1f} | {r['prepare_dense_s']:.1f} "
        f"| {r['prepare_same_similarity']} |",
        f"| candidates of {n_buyers:,} buyers | {r['candidates_sparse_s']:.1f} | {r['candidates_dense_s']:.1f} "
        f"| {r['candidates_same_lists']} |",
        f"| co-purchase block top-{ITEM_NEIGHBOURS} ({b['rows']:,} x {b['cols']:,}, {b['stored_share']:.0%} stored) "
        f"| {r['item_block_top_sparse_s']:.2f} | {r['item_block_top_dense_s']:.2f} | {r['item_block_same_lists']} |",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--purchases", type=int, default=2_000_000)
    parser.add_argument("--buyers", type=int, default=20_000, help="users asked for candidates (default 20000)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    result = run(args.users, args.items, args.purchases, args.buyers, args.seed)
    text = report(result, args.buyers)
    print("\n" + text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "command": "python -m benchmarks.ranking_speed " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine(), "seconds": time.perf_counter() - started, "settings": vars(args), "results": result,
    }, indent=2))  # fmt: skip
    print(f"\nwritten to {RESULTS.relative_to(ROOT)} in {time.perf_counter() - started:.0f} s")
    ok = result["prepare_same_similarity"] and result["candidates_same_lists"] and result["item_block_same_lists"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
