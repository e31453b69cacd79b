"""DuckDB and Spark side by side: the same shop, the same full run, on each engine.

For each scale (S, M by default) the shop is generated once and the whole pipeline runs
on it twice in child processes, once per engine (``RECS_ENGINE``), each in a fresh data
folder; the stage times and the peak RSS of the process tree (the JVM included) are
taken as in benchmarks/pipeline.py. Prints a table and writes
``benchmarks/results/engines.json``; ``make bench ENGINE=spark`` runs it.

    python -m benchmarks.engines --scales S,M
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.pipeline import ROOT, SCALES, fmt_gb, landing_zone, machine, measure_run

RESULTS = ROOT / "benchmarks" / "results" / "engines.json"
ENGINES = ("duckdb", "spark")
# The target of the engine issue: M on Spark within this factor of DuckDB's full run.
SPARK_FACTOR_TARGET = 3.0


def bench_engine(name: str, engine: str, landing: Path, lines: int) -> dict:
    data_dir = Path(tempfile.mkdtemp(prefix=f"recs-engines-{name}-{engine}-", dir="/tmp"))
    (data_dir / "dagster_home").mkdir()
    shutil.copy(ROOT / "dagster.yaml", data_dir / "dagster_home" / "dagster.yaml")
    shutil.copytree(landing, data_dir / "landing")
    print(f"[{name}] full run on {engine}", flush=True)
    run = measure_run(data_dir, None, lines, {"RECS_ENGINE": engine})
    shutil.rmtree(data_dir)
    return {
        "full_s": run.seconds,
        "peak_rss_gb": run.peak_rss / 1024**3,
        "overhead_s": run.overhead_seconds,
        "stages": {stage: {"seconds": v["seconds"], "peak_rss_gb": v["peak_rss"] / 1024**3} for stage, v in run.stages.items()},
    }


def bench_scale(name: str, use_cache: bool) -> dict:
    shop = Path(tempfile.mkdtemp(prefix=f"recs-engines-{name}-shop-", dir="/tmp"))
    lines, _ = landing_zone(name, SCALES[name], shop / "landing", use_cache)
    result = {"event_lines": lines, "engines": {e: bench_engine(name, e, shop / "landing", lines) for e in ENGINES}}
    shutil.rmtree(shop)
    duck, spark = (result["engines"][e]["full_s"] for e in ENGINES)
    result["spark_over_duckdb"] = spark / duck
    return result


def report(results: dict) -> str:
    lines = []
    for name, result in results.items():
        engines = result["engines"]
        stages = sorted({s for e in engines.values() for s in e["stages"]},
                        key=lambda s: -max(e["stages"].get(s, {}).get("seconds", 0) for e in engines.values()))
        lines += [f"### {name}: {result['event_lines']:,} event lines", "",
                  "| stage | DuckDB | Spark | Spark / DuckDB |", "|---|---:|---:|---:|"]
        for stage in stages:
            d = engines["duckdb"]["stages"].get(stage, {}).get("seconds")
            s = engines["spark"]["stages"].get(stage, {}).get("seconds")
            ratio = f"{s / d:.1f}x" if d and s else "-"
            lines.append(f"| {stage} | {d or 0:.1f} s | {s or 0:.1f} s | {ratio} |")
        d, s = engines["duckdb"], engines["spark"]
        lines += [f"| **full run** | **{d['full_s']:.1f} s** | **{s['full_s']:.1f} s** | **{result['spark_over_duckdb']:.1f}x** |",
                  f"| peak RSS (process tree) | {fmt_gb(d['peak_rss_gb'] * 1024**3)} | {fmt_gb(s['peak_rss_gb'] * 1024**3)} | |", ""]
    if "M" in results:
        ratio = results["M"]["spark_over_duckdb"]
        met = "met" if ratio <= SPARK_FACTOR_TARGET else "missed"
        lines.append(f"- target: M on Spark within {SPARK_FACTOR_TARGET:g}x of DuckDB's full run: {ratio:.2f}x ({met})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", default="S,M", help="comma-separated: S, M, L (default S,M)")
    parser.add_argument("--no-cache", action="store_true", help="regenerate the shops instead of copying them")
    args = parser.parse_args(argv)
    scales = [s.strip().upper() for s in args.scales.split(",") if s.strip()]
    unknown = set(scales) - set(SCALES)
    if unknown:
        parser.error(f"unknown scale(s) {', '.join(sorted(unknown))}")
    started = time.perf_counter()
    results = {name: bench_scale(name, not args.no_cache) for name in scales}
    text = report(results)
    print("\n" + text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "command": "python -m benchmarks.engines " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine(), "seconds": time.perf_counter() - started, "scales": results,
    }, indent=2))
    print(f"\nwritten to {RESULTS.relative_to(ROOT)} in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
