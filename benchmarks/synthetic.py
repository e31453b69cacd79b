"""The synthetic shop's quality next to its ceiling: every method against the oracle.

    python -m benchmarks.synthetic                       # generate + run the `make run` shop in /tmp (~4-5 min)
    python -m benchmarks.synthetic --data-dir DIR        # reuse DIR if it holds a finished first run, else run there
    python -m benchmarks.synthetic --data-dir DIR --keep # (without --data-dir: keep the temporary folder)

The pipeline runs exactly as the first half of ``make run`` does (``recs generate``
then ``recs run``, with ``RECS_DATA_DIR`` and ``DAGSTER_HOME`` pointing into the
folder). Its hold-out evaluation then holds every method's precision, recall and
NDCG at 10 on the "report half" of the hold-out users (``ml.evaluation``: popularity,
buy-again, item-based, LightFM, the blend; ``ml.ranker_evaluation``: TIFU-KNN, text,
the ranker and the ranking stage's own generators).

The oracle (:mod:`recs_pipeline.synthetic.oracle`) ranks, for exactly those users,
the items by their true probability of being bought at least once in the hold-out
days, computed from the generator's state of the evening before the hold-out (the
shop re-simulated up to then: the saved state is the one after the last day, which
knows the hold-out's purchases). Its lists are scored against the same
``ml.holdout`` rows, so every method can be read as a share of the best possible.
``served`` is what the pipeline serves: the ranker when its gate promoted it
(``<model_dir>/ranker/serving.json``), otherwise the blend.

Output: the printed table, the returned ``{method: {precision_at_10, recall_at_10,
ndcg_at_10}}`` (the ``"synthetic"`` block of ``benchmarks/results/quality.json``, see
``benchmarks.quality``) and ``benchmarks/results/synthetic_details.json`` (served /
buy-again, shares of the oracle, the users evaluated, seconds).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from recs_pipeline.ml import metrics
from recs_pipeline.privacy import Pseudonymizer
from recs_pipeline.recommender.evaluation import sample_users, split_users
from recs_pipeline.settings import Settings, load_settings
from recs_pipeline.synthetic.oracle import oracle_lists, purchase_probabilities, shop_before, simulate_purchases
from recs_pipeline.synthetic.shop import ShopConfig, SyntheticShop

ROOT = Path(__file__).resolve().parents[1]
DETAILS = ROOT / "benchmarks" / "results" / "synthetic_details.json"
K = 10
TARGET_RATIO = 1.6  # served P@10 >= 1.6 x buy-again

# quality.json method key -> (warehouse table, strategy).
METHODS = {
    "popularity": ("ml.evaluation", "popularity"),
    "buy_again": ("ml.evaluation", "buy_again"),
    "item_knn": ("ml.evaluation", "item_based"),
    "tifu_knn": ("ml.ranker_evaluation", "tifu_knn"),
    "lightfm_hybrid": ("ml.evaluation", "lightfm"),
    "text": ("ml.ranker_evaluation", "text"),
    "blend": ("ml.evaluation", "blend"),
    "ranker": ("ml.ranker_evaluation", "ranker"),
}
# The ranking stage's own versions of some baselines: in the details, not in quality.json.
RANKING_STAGE_EXTRA = ("buy_again", "item_knn", "segment_popular", "model")
JSON_METRICS = {f"precision@{K}": f"precision_at_{K}", f"recall@{K}": f"recall_at_{K}", f"ndcg@{K}": f"ndcg_at_{K}"}
REQUIRED_TABLES = ("staging.stg_events", "ml.holdout", "ml.evaluation", "ml.ranker_evaluation")


def pipeline_env(data_dir: Path) -> dict[str, str]:
    """The environment of ``make run`` for a folder: settings that would change the shop
    or the run (RECS_SEED, RECS_CONFIG, ...) are dropped; the pseudonym key is kept."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECS_") or k == "RECS_PSEUDONYM_KEY"}
    env.update(RECS_DATA_DIR=str(data_dir), DAGSTER_HOME=str(data_dir / "dh"), GX_ANALYTICS_ENABLED="false")
    return env


def run_pipeline(data_dir: Path) -> float:
    """``recs generate`` then ``recs run`` in ``data_dir`` (the first half of ``make run``); seconds."""
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "dh").mkdir(exist_ok=True)
    shutil.copy(ROOT / "dagster.yaml", data_dir / "dh" / "dagster.yaml")
    recs = Path(sys.executable).parent / "recs"
    command = [str(recs)] if recs.exists() else [sys.executable, "-m", "recs_pipeline.cli"]
    started = time.perf_counter()
    with (data_dir / "benchmark.log").open("w") as log:
        for step in (["generate"], ["run", "--quiet"]):
            print(f"$ recs {' '.join(step)}  (RECS_DATA_DIR={data_dir})", flush=True)
            done = subprocess.run([*command, *step], cwd=ROOT, env=pipeline_env(data_dir), stdout=log,
                                  stderr=subprocess.STDOUT)  # fmt: skip
            if done.returncode:
                log_path = data_dir / "benchmark.log"
                raise RuntimeError(f"recs {' '.join(step)} failed ({done.returncode}): see {log_path}")
    return time.perf_counter() - started


def finished_run(settings: Settings) -> str | None:
    """None when the folder holds a finished first run of the synthetic shop, else why not."""
    state = settings.landing_dir / "_truth" / "state.npz"
    if not state.exists() or not settings.warehouse_path.exists():
        return f"no generated shop and warehouse in {settings.data_dir}"
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        found = con.execute("SELECT table_schema, table_name FROM information_schema.tables").fetchall()
    tables = {f"{schema}.{name}" for schema, name in found}
    missing = [t for t in REQUIRED_TABLES if t not in tables]
    if missing:
        return f"the warehouse has no {', '.join(missing)} (the run did not finish)"
    return None


def report_users(con, settings: Settings) -> tuple[np.ndarray, pd.DataFrame]:
    """The users every number of ml.evaluation is reported on, and their hold-out
    purchases, recomputed as the pipeline does (``sample_users`` then the second half
    of ``split_users``)."""
    relevant = con.execute("SELECT user_id, item_id FROM ml.holdout WHERE is_known_user ORDER BY ALL").df()
    eval_users = sample_users(relevant["user_id"].unique(), settings.model.evaluation_users)
    _, users = split_users(eval_users)
    return users, relevant[relevant["user_id"].isin(users)].reset_index(drop=True)


def warehouse_metrics(con) -> dict[str, dict[str, dict[str, float]]]:
    """table -> strategy -> metric -> value."""
    out: dict = {}
    for table in ("ml.evaluation", "ml.ranker_evaluation"):
        rows = con.execute(f"SELECT strategy, metric, value FROM {table}").df()
        out[table] = {s: dict(zip(g["metric"], g["value"].astype(float))) for s, g in rows.groupby("strategy")}
    return out


def evaluate(data_dir: Path, pipeline_seconds: float | None = None) -> tuple[dict, dict]:
    """(the "synthetic" block, the details) for a folder holding a finished first run."""
    started = time.perf_counter()
    settings = load_settings(pipeline_env(data_dir))
    why = finished_run(settings)
    if why:
        raise RuntimeError(why)
    cfg = settings.model
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        last = con.execute("SELECT max(event_ts) FROM staging.stg_events").fetchall()[0][0]
        first_holdout = pd.Timestamp(last).normalize() + pd.Timedelta(days=1 - cfg.holdout_days)
        users, relevant = report_users(con, settings)
        in_stock = con.execute("SELECT item_id, in_stock FROM features.item_features").df()
        stored = warehouse_metrics(con)
        all_holdout = con.execute("SELECT user_id, item_id FROM ml.holdout").df()
    n_reported = stored["ml.evaluation"]["buy_again"].get("n_users")
    if n_reported is not None and int(n_reported) != len(users):
        raise RuntimeError(f"recomputed {len(users)} report users, ml.evaluation reports {int(n_reported)}")

    saved = SyntheticShop.load_state(settings.landing_dir / "_truth" / "state.npz")
    config = saved.config
    start = first_holdout.date()
    if saved.last_simulated_day != config.days[-1] or last.date() != config.days[-1]:
        raise RuntimeError(
            f"{data_dir} is not a first run: the shop was continued to {saved.last_simulated_day} after its "
            f"{config.n_days} generated days (the oracle would need the lists shown then)"
        )
    if config != ShopConfig():
        print(f"note: not the `make run` shop: {config.to_json()}", file=sys.stderr)

    # Shop ids of the report users: the warehouse holds their keyed pseudonyms.
    pseudonyms = Pseudonymizer.from_settings(settings.privacy).many([str(u) for u in saved.user_ids])
    shop_id = dict(zip(pseudonyms, saved.user_ids))
    missing = [u for u in users if u not in shop_id]
    if missing:
        raise RuntimeError(f"{len(missing)} report users are no pseudonym of the shop's ids: is RECS_PSEUDONYM_KEY "
                           "the key the pipeline ran with?")  # fmt: skip

    t0 = time.perf_counter()
    shop = shop_before(config, start)
    resimulate_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    mask = in_stock.set_index("item_id")["in_stock"].astype(bool)  # the mask the pipeline's lists obey
    oracle = oracle_lists(shop, [shop_id[u] for u in users], K, start, cfg.holdout_days, item_mask=mask)
    oracle_seconds = time.perf_counter() - t0
    oracle["user_id"] = oracle["user_id"].map(dict(zip(saved.user_ids, pseudonyms)))
    oracle_metrics = metrics.ranking_metrics(oracle, relevant, K)
    # The oracle's own forecast of its precision on users who buy something (the report
    # users are those): E[hits] / P(at least one purchase), items taken as independent.
    rows = shop._positions(shop._user_index, [shop_id[u] for u in users], "user")
    chance = purchase_probabilities(shop, rows, start, cfg.holdout_days)
    p_any = -np.expm1(np.log1p(-np.minimum(chance, 1 - 1e-12)).sum(axis=1))
    hits = oracle.groupby("user_id", sort=False)["score"].sum().reindex(users).fillna(0.0).to_numpy()
    forecast = float(np.mean(hits / np.maximum(p_any, 1e-12)) / K)

    # How much of the warehouse's hold-out the re-simulated days reproduce (the rest:
    # purchase lines the injected defects broke and the quarantine dropped).
    bought = simulate_purchases(shop, start, cfg.holdout_days)
    bought["user_id"] = bought["user_id"].map(dict(zip(saved.user_ids, pseudonyms)))
    matched = all_holdout.merge(bought, on=["user_id", "item_id"], how="inner")
    reproduced = len(matched) / max(len(all_holdout), 1)

    pointer_path = settings.model_dir / "ranker" / "serving.json"
    pointer = json.loads(pointer_path.read_text()) if pointer_path.exists() else {}
    served_by = "ranker" if pointer.get("promoted") else "blend"

    block: dict[str, dict[str, float]] = {}
    for method, (table, strategy) in METHODS.items():
        values = stored[table].get(strategy)
        if values is None:
            continue  # e.g. the ranker switched off (RECS_RANKER=0)
        block[method] = {key: round(float(values[m]), 6) for m, key in JSON_METRICS.items()}
    block["oracle"] = {key: round(float(oracle_metrics[m]), 6) for m, key in JSON_METRICS.items()}
    block["served"] = dict(block[served_by])

    shares = {m: {key: (v[key] / block["oracle"][key] if block["oracle"][key] else None) for key in v}
              for m, v in block.items()}  # fmt: skip
    served_p, buy_again_p = block["served"][f"precision_at_{K}"], block["buy_again"][f"precision_at_{K}"]
    stage_buy_again = stored["ml.ranker_evaluation"].get("buy_again", {}).get(f"precision@{K}")
    ratio = served_p / buy_again_p if buy_again_p else None
    details = {
        "shop": json.loads(config.to_json()),
        "make_run_shop": config == ShopConfig(),
        "data_dir": str(data_dir),
        "holdout": {"start": str(start), "days": cfg.holdout_days, "pairs": len(all_holdout),
                    "resimulated_pairs": len(bought), "reproduced_by_resimulation": round(reproduced, 4)},  # fmt: skip
        "served_by": served_by,
        "serving_pointer": pointer,
        "served_over_buy_again": {
            "ratio": round(ratio, 4) if ratio is not None else None,
            "target": f">= {TARGET_RATIO}x",
            "status": "MET" if ratio is not None and ratio >= TARGET_RATIO else "MISSED",
            "versus_ranking_stage_buy_again": round(served_p / stage_buy_again, 4) if stage_buy_again else None,
        },
        "share_of_oracle": {m: {k: (round(x, 4) if x is not None else None) for k, x in s.items()}
                            for m, s in shares.items()},  # fmt: skip
        "metrics": block,
        "ranking_stage_generators": {
            g: {key: round(float(stored["ml.ranker_evaluation"][g][m]), 6) for m, key in JSON_METRICS.items()}
            for g in RANKING_STAGE_EXTRA if g in stored["ml.ranker_evaluation"]
        },
        "oracle": {
            "definition": "per user, the k items with the highest true probability of at least one purchase on the "
            "hold-out days, from the generator's state of the evening before (recs_pipeline/synthetic/oracle.py)",
            "mean_list_length": round(float(oracle.groupby("user_id").size().mean()), 3) if len(oracle) else 0.0,
            "mean_probability_at_1": round(float(oracle.loc[oracle["rank"] == 1, "score"].mean()), 4),
            "expected_precision_at_10": round(float(hits.mean() / K), 4),
            "expected_precision_at_10_given_a_purchase": round(forecast, 4),
        },
        "users_evaluated": int(len(users)),
        "users": [str(u) for u in users],
        "seconds": {
            "pipeline": round(pipeline_seconds, 1) if pipeline_seconds is not None else None,
            "resimulate_shop": round(resimulate_seconds, 1),
            "oracle_lists": round(oracle_seconds, 2),
            "evaluation": round(time.perf_counter() - started, 1),
        },
    }
    return block, details


def print_table(block: dict, details: dict) -> None:
    rows = []
    oracle_p = block["oracle"][f"precision_at_{K}"]
    for method, values in block.items():
        p = values[f"precision_at_{K}"]
        rows.append({"method": method, f"P@{K}": p, f"R@{K}": values[f"recall_at_{K}"], f"NDCG@{K}": values[f"ndcg_at_{K}"],
                     f"share of oracle (P@{K})": p / oracle_p if oracle_p else None})  # fmt: skip
    ratio = details["served_over_buy_again"]
    print(f"\n## Synthetic shop, hold-out {details['holdout']['start']} + {details['holdout']['days']} days, "
          f"{details['users_evaluated']:,} report users (served = {details['served_by']})\n")  # fmt: skip
    print(pd.DataFrame(rows).to_markdown(index=False, floatfmt=".4f"))
    print(f"\nserved / buy_again (P@{K}): {ratio['ratio']:.3f}x (target {ratio['target']}: {ratio['status']}; "
          f"{ratio['versus_ranking_stage_buy_again']:.3f}x the ranking stage's buy-again)")  # fmt: skip
    print(f"served share of oracle: P@{K} {details['share_of_oracle']['served'][f'precision_at_{K}']:.1%}, "
          f"NDCG@{K} {details['share_of_oracle']['served'][f'ndcg_at_{K}']:.1%}")  # fmt: skip
    reproduced = details["holdout"]["reproduced_by_resimulation"]
    print(f"hold-out pairs reproduced by re-simulating the shop: {reproduced:.1%}")


def run(data_dir: str | Path | None = None, keep: bool = False, details_path: Path | None = DETAILS) -> dict:
    """Run (or reuse) the first pipeline run of the synthetic shop, print the table,
    write the details and return the ``"synthetic"`` block of quality.json."""
    started = time.perf_counter()
    temporary = data_dir is None
    folder = Path(tempfile.mkdtemp(prefix="recs-synthetic-", dir="/tmp")) if temporary else Path(data_dir).resolve()
    try:
        pipeline_seconds = None
        why = None if temporary else finished_run(load_settings(pipeline_env(folder)))
        if temporary or why:
            if not temporary:
                print(f"{why}: running the pipeline there", flush=True)
            pipeline_seconds = run_pipeline(folder)
        else:
            print(f"reusing the finished run in {folder}", flush=True)
        block, details = evaluate(folder, pipeline_seconds)
    finally:
        if temporary and not keep:
            shutil.rmtree(folder, ignore_errors=True)
    details["seconds"]["total"] = round(time.perf_counter() - started, 1)
    if temporary and not keep:
        details["data_dir"] = None
    print_table(block, details)
    print(f"seconds: {details['seconds']}")
    if details_path is not None:
        details_path.parent.mkdir(parents=True, exist_ok=True)
        details_path.write_text(json.dumps(details, indent=2, default=str))
        print(f"wrote {details_path.relative_to(ROOT) if details_path.is_relative_to(ROOT) else details_path}")
    return block


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="reuse this folder's finished first run (or run the pipeline there)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder of the run")
    args = parser.parse_args(argv)
    run(args.data_dir, args.keep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
