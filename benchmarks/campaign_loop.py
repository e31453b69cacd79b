"""The campaign bandit in the whole pipeline: `recs simulate --days 14 --nightly` after
`make run`, judged against the synthetic shop's hidden appeal.

Every simulated day the shop's message tool delivers that day's sends
(``marketing.campaign_sends``), its users open, click, buy and unsubscribe according to
a hidden appeal per campaign, segment and copy variant (written to
``<landing>/_truth/campaign_appeal.csv``), and the nightly run ingests the answers,
attributes them (``feedback.campaign_send_outcomes``), updates the posteriors and
draws the next day's variants. Afterwards, per send day: the hidden click rate of the
variants the bandit chose, of the best variant per campaign and segment, of the best
single variant per campaign, of a uniformly random variant, the regret, and the
realised click rate. Prints the table and writes ``benchmarks/results/campaign_loop.json``.

    python -m benchmarks.campaign_loop                       # on a fresh copy of data/ (after `make run`)
    python -m benchmarks.campaign_loop --data-dir /tmp/loop --fresh   # make run's steps first, in that folder
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from recs_pipeline.campaigns.evaluation import judge_sends
from recs_pipeline.synthetic.messages import APPEAL_FILE, appeal_click_rates

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "campaign_loop.json"
TARGET_VS_BEST_SINGLE, TARGET_VS_UNIFORM = 0.95, 1.2
MAKE_RUN = (["generate"], ["run", "--quiet"], ["simulate", "--days", "7"], ["run", "--new", "--quiet"])


def recs(data_dir: Path, *args: str) -> None:
    env = {**os.environ, "RECS_DATA_DIR": str(data_dir), "DAGSTER_HOME": str(data_dir / "dagster_home")}
    (data_dir / "dagster_home").mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "recs_pipeline.cli", *args], env=env, check=True, stdout=subprocess.DEVNULL)
    print(f"  recs {' '.join(args)}: {time.perf_counter() - started:.0f} s", flush=True)


def measure(data_dir: Path, since) -> tuple[pd.DataFrame, dict]:
    """Judge the sends dated after ``since`` (the loop's) against the hidden appeal."""
    import duckdb

    rates = appeal_click_rates(pd.read_csv(data_dir / "landing" / "_truth" / APPEAL_FILE))
    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as con:
        sends = con.execute(
            "SELECT s.send_date, s.campaign, s.segment, s.variant, coalesce(o.clicked, false) AS clicked, "
            "o.send_id IS NOT NULL AS measured FROM marketing.campaign_sends s "
            "LEFT JOIN feedback.campaign_send_outcomes o USING (send_id) WHERE s.send_date > ? ORDER BY s.send_id",
            [since],
        ).df()
    # The newest day's sends have had no answers yet: judged on the others.
    sends = sends[sends["measured"]]
    return judge_sends(sends.drop(columns="measured"), rates)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=ROOT / "data", help="a data folder after `make run` (copied)")
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/recs-campaign-loop"), help="where the loop runs")
    parser.add_argument("--fresh", action="store_true", help="run make run's steps in --data-dir instead of copying")
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    started = time.perf_counter()
    data = args.data_dir
    if data.exists():
        shutil.rmtree(data)
    if args.fresh:
        data.mkdir(parents=True)
        for step in MAKE_RUN:
            recs(data, *step)
    else:
        if not (args.source / "warehouse.duckdb").exists():
            raise SystemExit(f"no warehouse in {args.source}: run `make run` first, or pass --fresh")
        shutil.copytree(args.source, data, ignore=shutil.ignore_patterns("logs", "published"))
    import duckdb

    with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as con:
        since = con.execute("SELECT max(event_date) FROM staging.stg_events").fetchall()[0][0]
    loop_started = time.perf_counter()
    recs(data, "simulate", "--days", str(args.days), "--nightly")
    loop_seconds = time.perf_counter() - loop_started
    days, last = measure(data, since)

    shown = days.assign(send_date=pd.to_datetime(days["send_date"]).dt.strftime("%Y-%m-%d"))
    print(shown.to_markdown(index=False, floatfmt=".4f"))
    print(f"\nlast {last['days']} send days ({last['sends']} sends): hidden click rate of the bandit's variants "
          f"{last['bandit_expected_click_rate']:.4f} (realised {last['bandit_click_rate']:.4f}); best per segment "
          f"{last['best_click_rate']:.4f}, best single variant {last['best_single_click_rate']:.4f}, uniform "
          f"{last['uniform_click_rate']:.4f}")
    print(f"bandit / best single variant {last['expected_bandit_vs_best_single']:.3f} (target >= {TARGET_VS_BEST_SINGLE}), "
          f"/ best per segment {last['expected_bandit_vs_best']:.3f}, / uniform {last['expected_bandit_vs_uniform']:.3f} "
          f"(target >= {TARGET_VS_UNIFORM}); regret {last['regret']:.1f} clicks; loop {loop_seconds:.0f} s")
    out = {
        "command": "python -m benchmarks.campaign_loop" + (" --fresh" if args.fresh else ""),
        "days": shown.to_dict("records"),
        "last7": last,
        "targets": {"vs_best_single": TARGET_VS_BEST_SINGLE, "vs_uniform": TARGET_VS_UNIFORM,
                    "met": bool(last["expected_bandit_vs_best_single"] >= TARGET_VS_BEST_SINGLE
                                and last["expected_bandit_vs_uniform"] >= TARGET_VS_UNIFORM)},  # fmt: skip
        "loop_seconds": loop_seconds,
        "seconds": time.perf_counter() - started,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(out, indent=2, default=float) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
