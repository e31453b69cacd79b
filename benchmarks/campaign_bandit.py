"""The campaign bandit in a 14-day closed loop against a hidden appeal.

Each day a few thousand users are candidates for one campaign (theme_picks, four copy
variants); the send rules (consent, unsubscribes, frequency cap) decide who gets a
message, Thompson sampling picks each user's variant from the results attributed so
far, and the synthetic users answer according to a hidden appeal per segment and
variant (recs_pipeline.campaigns.evaluation, only the package's own functions).

Per day: the bandit's realised click rate (clicks per send), the hidden click rate of
the variants it chose, of the best variant per segment, of the best single variant and
of a uniformly random variant, and the regret (expected clicks lost against the best
variant of each user's segment). Prints the table and writes
``benchmarks/results/campaign_bandit.json``; pure numpy/pandas, a few seconds.

    python -m benchmarks.campaign_bandit --users-per-day 5000 --seed 42
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path

from recs_pipeline.campaigns.evaluation import LoopConfig, closed_loop

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "campaign_bandit.json"
# The targets of the closed-loop test (recs_pipeline_tests/test_campaigns.py).
TARGET_VS_BEST, TARGET_VS_UNIFORM = 0.95, 1.2


def main(argv: list[str] | None = None) -> int:
    defaults = LoopConfig()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users-per-day", type=int, default=defaults.users_per_day, help="candidates a day")
    parser.add_argument("--population", type=int, default=None, help="users in the shop (default 7 x users per day)")
    parser.add_argument("--days", type=int, default=defaults.days)
    parser.add_argument("--explore-share", type=float, default=defaults.explore_share)
    parser.add_argument("--frequency-cap", type=int, default=defaults.frequency_cap, help="messages per user in 7 days")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"results file (default {RESULTS})")
    args = parser.parse_args(argv)

    config = LoopConfig(days=args.days, users_per_day=args.users_per_day,
                        population=args.population or 7 * args.users_per_day, explore_share=args.explore_share,
                        frequency_cap=args.frequency_cap, seed=args.seed)  # fmt: skip
    started = time.perf_counter()
    result = closed_loop(config)
    seconds = time.perf_counter() - started

    days = result.days.assign(day=result.days["day"].dt.strftime("%Y-%m-%d"))
    print(days.to_markdown(index=False, floatfmt=".4f"))
    last7 = result.last7
    print(f"\nlast 7 days ({last7['sends']} sends): bandit {last7['bandit_click_rate']:.4f} "
          f"(its variants' hidden rate {last7['bandit_expected_click_rate']:.4f}), "
          f"best per segment {last7['best_click_rate']:.4f}, best single variant {last7['best_single_click_rate']:.4f}, "
          f"uniform {last7['uniform_click_rate']:.4f}")
    print(f"bandit / best {last7['bandit_vs_best']:.3f} (target >= {TARGET_VS_BEST}), "
          f"bandit / uniform {last7['bandit_vs_uniform']:.3f} (target >= {TARGET_VS_UNIFORM}); {seconds:.1f} s")

    out = {
        "config": {k: (str(v) if k == "start" else v) for k, v in asdict(config).items()},
        "days": days.to_dict("records"),
        "last7": last7,
        "final_posteriors": result.final_posteriors.to_dict("records"),
        "hidden_appeal": result.appeal.to_dict("records"),
        "seconds": seconds,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(out, indent=2, default=float) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
