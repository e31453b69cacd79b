"""Experiments: deterministic variant assignment and the statistics that compare variants.

Expected values are computed independently in the tests (hashlib, DuckDB SQL, scipy) or
taken from a published worked example, never from the functions under test.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

import recs_pipeline.experiments.stats as experiment_stats
from recs_pipeline.experiments import (
    DEFAULT_METRICS,
    RESULT_COLUMNS,
    MetricSpec,
    assign_variants,
    bootstrap_mean_diff,
    bucket_variants,
    compare_variants,
    hash_to_unit_interval,
    proportion_min_detectable_effect,
    two_proportion_test,
)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
Z_975 = sps.norm.ppf(0.975)
Z_80 = sps.norm.ppf(0.80)


# ------------------------------------------------------------------------ assignment


def reference_unit(user_id: str, experiment_id: str, salt: str) -> float:
    """The documented hash, one user at a time, with hashlib only."""
    digest = hashlib.md5(f"{salt}:{experiment_id}:{user_id}".encode()).digest()
    return (int.from_bytes(digest[:8], "big") >> 11) / 2**53


def reference_variant(unit: float, variants: dict[str, float]) -> str:
    cumulative = 0.0
    for name, share in variants.items():
        cumulative += share
        if unit < cumulative:
            return name
    return list(variants)[-1]


def test_assignment_follows_the_documented_salted_hash():
    variants = {"control": 0.45, "treatment": 0.45, "holdout": 0.10}
    ids = [f"user-{i}" for i in range(2_000)]
    assigned = assign_variants(ids, "home-carousel-v2", variants, salt="2024")
    expected = [reference_variant(reference_unit(u, "home-carousel-v2", "2024"), variants) for u in ids]
    assert assigned.tolist() == expected
    assert set(assigned) == set(variants)


def test_assignment_golden_values_pin_the_algorithm():
    # Frozen outputs: if these change, every running experiment silently reshuffles.
    ids = ["alice", "bob", "carol", "dave", "erin", "frank"]
    units = hash_to_unit_interval(ids, "home-carousel-v2", salt="2024")
    np.testing.assert_array_equal(
        units,
        [0.3619829940630417, 0.005333426747624714, 0.708848740747619,
         0.45812017851945486, 0.47666731304469656, 0.8832778666561324],
    )
    assigned = assign_variants(ids, "home-carousel-v2", {"control": 0.5, "treatment": 0.5}, salt="2024")
    assert assigned.tolist() == ["control", "control", "treatment", "control", "control", "treatment"]


def test_assignment_can_be_reproduced_in_duckdb_sql():
    duckdb = pytest.importorskip("duckdb")
    ids = pd.DataFrame({"user_id": [f"u{i}" for i in range(1_000)]})
    sql = """
        SELECT (('0x' || left(md5('s1' || ':' || 'exp-7' || ':' || user_id), 16))::UBIGINT >> 11)
               / 2^53 AS unit
        FROM ids
    """
    con = duckdb.connect()
    con.register("ids", ids)
    from_sql = con.execute(sql).fetchnumpy()["unit"]
    np.testing.assert_array_equal(hash_to_unit_interval(ids["user_id"], "exp-7", salt="s1"), from_sql)


def test_assignment_is_the_same_in_other_processes_whatever_the_hash_seed():
    ids = [f"user-{i}" for i in range(500)]
    variants = {"a": 0.3, "b": 0.3, "c": 0.4}
    here = assign_variants(ids, "exp", variants, salt="x").tolist()
    script = (
        "import json, sys\n"
        "from recs_pipeline.experiments import assign_variants\n"
        "ids, variants = json.loads(sys.stdin.read())\n"
        "print(json.dumps(assign_variants(ids, 'exp', variants, salt='x').tolist()))\n"
    )
    for hash_seed in ("0", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
        out = subprocess.run(
            [sys.executable, "-c", script],
            input=json.dumps([ids, variants]),
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        assert json.loads(out.stdout) == here


def test_adding_users_never_moves_existing_users_and_the_index_is_kept():
    variants = {"control": 0.5, "treatment": 0.5}
    old = pd.Series([f"u{i}" for i in range(1_000)], index=np.arange(1_000) * 10)
    grown = pd.Series([f"u{i}" for i in range(3_000)][::-1])  # more users, other order
    old_assigned = assign_variants(old, "exp", variants)
    grown_assigned = assign_variants(grown, "exp", variants)

    assert old_assigned.index.equals(old.index)
    assert grown_assigned.index.equals(grown.index)
    by_user = dict(zip(grown, grown_assigned))
    assert [by_user[u] for u in old] == old_assigned.tolist()


def test_duplicate_and_numeric_ids_are_assigned_consistently():
    variants = {"a": 0.5, "b": 0.5}
    assigned = assign_variants([7, "7", 8, 7, np.int64(8)], "exp", variants)
    assert assigned.iloc[0] == assigned.iloc[1] == assigned.iloc[3]
    assert assigned.iloc[2] == assigned.iloc[4]
    assert assign_variants([], "exp", variants).empty


def test_changing_the_experiment_id_reshuffles_users():
    ids = [f"u{i}" for i in range(20_000)]
    variants = {"control": 0.5, "treatment": 0.5}
    first = assign_variants(ids, "exp-1", variants)
    again = assign_variants(ids, "exp-1", variants)
    other = assign_variants(ids, "exp-2", variants)
    resalted = assign_variants(ids, "exp-1", variants, salt="restart")
    assert first.equals(again)
    # Independent shuffles agree on about half of the users, not on all of them.
    for reshuffled in (other, resalted):
        agreement = (first == reshuffled).mean()
        assert abs(agreement - 0.5) < 0.02


def test_traffic_shares_hold_on_100k_users():
    n = 100_000
    variants = {"control": 0.5, "treatment": 0.3, "holdout": 0.2}
    assigned = assign_variants([f"user-{i}" for i in range(n)], "share-test", variants)
    counts = assigned.value_counts()
    for name, share in variants.items():
        sigma = math.sqrt(n * share * (1 - share))
        assert abs(counts[name] - n * share) < 4 * sigma, (name, counts[name])
    observed = [counts[name] for name in variants]
    expected = [n * share for share in variants.values()]
    assert sps.chisquare(observed, expected).pvalue > 0.001
    units = hash_to_unit_interval([f"user-{i}" for i in range(n)], "share-test")
    assert sps.kstest(units, "uniform").pvalue > 0.001
    assert units.min() >= 0.0 and units.max() < 1.0


def test_two_experiments_on_the_same_users_are_independent():
    ids = [f"user-{i}" for i in range(100_000)]
    first = assign_variants(ids, "ranking-model", {"control": 0.5, "treatment": 0.5})
    second = assign_variants(ids, "email-subject", {"a": 0.2, "b": 0.3, "c": 0.5})
    table = pd.crosstab(first, second)
    assert table.shape == (2, 3)
    assert sps.chi2_contingency(table, correction=False).pvalue > 0.001


def test_ramping_a_share_only_moves_users_across_the_moved_boundary():
    ids = [f"u{i}" for i in range(50_000)]
    at_10 = assign_variants(ids, "ramp", {"treatment": 0.1, "control": 0.9})
    at_20 = assign_variants(ids, "ramp", {"treatment": 0.2, "control": 0.8})
    assert (at_20[at_10 == "treatment"] == "treatment").all()  # nobody leaves treatment
    moved = (at_10 != at_20).mean()
    assert abs(moved - 0.1) < 0.01


def test_a_zero_share_variant_gets_nobody():
    ids = [f"u{i}" for i in range(20_000)]
    for variants in ({"off": 0.0, "a": 0.5, "b": 0.5}, {"a": 0.5, "b": 0.5, "off": 0.0}):
        assert "off" not in set(assign_variants(ids, "exp", variants))


def test_buckets_are_half_open_slices_in_mapping_order():
    variants = {"off": 0.0, "a": 0.25, "b": 0.75, "retired": 0.0}
    units = [0.0, 0.2499999, 0.25, 0.5, 0.9999999999]
    assert bucket_variants(units, variants).tolist() == ["a", "a", "b", "b", "b"]
    # Shares summing to 1 only up to rounding still cover all of [0, 1).
    tenths = {**{str(i): 0.1 for i in range(10)}, "retired": 0.0}  # 0.1 * 10 sums to 1 - 2**-53
    assert bucket_variants([0.0, 0.95, np.nextafter(1.0, 0.0)], tenths).tolist() == ["0", "9", "9"]
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        bucket_variants([1.0], variants)


@pytest.mark.parametrize(
    ("variants", "message"),
    [
        ({"control": 0.5, "treatment": 0.4}, "sum to 1"),
        ({"control": 0.6, "treatment": 0.6}, "sum to 1"),
        ({"control": 1.5, "treatment": -0.5}, r"in \[0, 1\]"),
        ({"control": float("nan"), "treatment": 1.0}, r"in \[0, 1\]"),
        ({"control": "half", "treatment": 0.5}, "not a number"),
        ({}, "non-empty"),
        ({"": 1.0}, "non-empty strings"),
    ],
)
def test_invalid_traffic_shares_are_rejected(variants, message):
    with pytest.raises(ValueError, match=message):
        assign_variants(["u1", "u2"], "exp", variants)


def test_invalid_users_and_experiment_ids_are_rejected():
    with pytest.raises(ValueError, match="missing values"):
        assign_variants(pd.Series(["u1", None]), "exp", {"a": 1.0})
    with pytest.raises(ValueError, match="experiment_id"):
        assign_variants(["u1"], "", {"a": 1.0})
    # Shares that are not exactly 1 through floating point are fine.
    assert len(assign_variants(["u1"], "exp", {str(i): 0.1 for i in range(10)})) == 1


# ----------------------------------------------------------------------- proportions


def test_two_proportion_test_matches_the_textbook_formulas():
    s_a, n_a, s_b, n_b = 486, 5000, 527, 5000
    p_a, p_b = s_a / n_a, s_b / n_b
    pooled = (s_a + s_b) / (n_a + n_b)
    z = (p_b - p_a) / math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    se_wald = math.sqrt(p_a * (1 - p_a) / n_a + p_b * (1 - p_b) / n_b)

    result = two_proportion_test(s_a, n_a, s_b, n_b)

    assert result.rate_a == pytest.approx(0.0972) and result.rate_b == pytest.approx(0.1054)
    assert result.abs_diff == pytest.approx(0.0082)
    assert result.relative_lift == pytest.approx(0.0082 / 0.0972)
    assert result.z == pytest.approx(z, rel=1e-12)
    assert abs(result.p_value - 2 * sps.norm.sf(abs(z))) < 1e-9
    # Pearson's chi-square of the 2x2 table (no continuity correction) is the same test.
    chi2 = sps.chi2_contingency([[s_a, n_a - s_a], [s_b, n_b - s_b]], correction=False)
    assert abs(result.p_value - chi2.pvalue) < 1e-9
    assert result.p_value == pytest.approx(0.1742, abs=1e-4)
    assert (result.ci_low, result.ci_high) == pytest.approx(
        (0.0082 - Z_975 * se_wald, 0.0082 + Z_975 * se_wald), rel=1e-12
    )
    log_se = math.sqrt((1 - p_a) / s_a + (1 - p_b) / s_b)
    assert result.lift_ci_low == pytest.approx(math.exp(math.log(p_b / p_a) - Z_975 * log_se) - 1)
    assert result.lift_ci_high == pytest.approx(math.exp(math.log(p_b / p_a) + Z_975 * log_se) - 1)
    assert (result.n_a, result.n_b) == (5000, 5000)
    assert not result.significant


def test_two_proportion_test_reproduces_published_worked_examples():
    # Physicians' Health Study (Agresti, An Introduction to Categorical Data Analysis,
    # ch. 2): myocardial infarction in 104 / 11037 on aspirin vs 189 / 11034 on placebo.
    # Published: difference 0.0077 with 95% CI (0.005, 0.011), relative risk 1.82,
    # Pearson X^2 = 25.01.
    result = two_proportion_test(104, 11037, 189, 11034)
    assert result.abs_diff == pytest.approx(0.0077, abs=5e-5)
    assert result.ci_low == pytest.approx(0.005, abs=5e-4)
    assert result.ci_high == pytest.approx(0.011, abs=5e-4)
    assert result.relative_lift + 1 == pytest.approx(1.82, abs=5e-3)
    assert result.z**2 == pytest.approx(25.01, abs=5e-3)
    assert result.significant and not result.underpowered

    # Moore, McCabe & Craig, Introduction to the Practice of Statistics (9th ed.),
    # Example 8.18: major vascular events in 73 / 411 on placebo vs 45 / 411 on aspirin;
    # relative risk 0.6164, "software gives the 95% confidence interval as 0.4364 to
    # 0.8707" (the log-scale interval).
    blood_clots = two_proportion_test(73, 411, 45, 411)
    assert blood_clots.relative_lift + 1 == pytest.approx(0.6164, abs=5e-5)
    assert blood_clots.lift_ci_low + 1 == pytest.approx(0.4364, abs=5e-5)
    assert blood_clots.lift_ci_high + 1 == pytest.approx(0.8707, abs=5e-5)


def test_min_detectable_effect_is_the_difference_found_with_80_percent_power():
    p, n_a, n_b = 0.1, 4000, 6000
    mde = proportion_min_detectable_effect(p, n_a, n_b)
    se = math.sqrt(p * (1 - p) * (1 / n_a + 1 / n_b))
    assert mde == pytest.approx((Z_975 + Z_80) * se, rel=1e-12)
    # Power of the two-sided test when the true difference equals the MDE.
    power = sps.norm.sf(Z_975 - mde / se) + sps.norm.cdf(-Z_975 - mde / se)
    assert power == pytest.approx(0.80, abs=1e-3)
    assert proportion_min_detectable_effect(p, n_a, n_b, power=0.9) > mde
    assert math.isnan(proportion_min_detectable_effect(0.0, n_a, n_b))


def test_underpowered_flags_small_arms_and_differences_below_the_mde():
    # 486 vs 527 out of 5000: observed 0.0082 < MDE ~0.0166.
    assert two_proportion_test(486, 5000, 527, 5000).underpowered
    big = two_proportion_test(4_860, 50_000, 5_600, 50_000)  # 0.0148 > MDE ~0.0053
    assert big.min_detectable_effect < big.abs_diff and not big.underpowered
    # A huge difference on tiny arms is still flagged ...
    tiny = two_proportion_test(5, 50, 30, 50)
    assert tiny.abs_diff > tiny.min_detectable_effect and tiny.underpowered
    # ... unless the minimum arm size is lowered.
    assert not two_proportion_test(5, 50, 30, 50, min_n_per_arm=20).underpowered


def test_zero_counts_give_nan_where_undefined_instead_of_raising():
    none_anywhere = two_proportion_test(0, 100, 0, 100)
    assert none_anywhere.abs_diff == 0.0
    assert math.isnan(none_anywhere.z) and math.isnan(none_anywhere.p_value)
    assert math.isnan(none_anywhere.relative_lift) and math.isnan(none_anywhere.lift_ci_low)
    assert none_anywhere.underpowered and not none_anywhere.significant

    from_zero = two_proportion_test(0, 1000, 12, 1000)
    assert math.isnan(from_zero.relative_lift) and math.isnan(from_zero.lift_ci_high)
    assert 0 < from_zero.p_value < 0.01

    to_zero = two_proportion_test(12, 1000, 0, 1000)
    assert to_zero.relative_lift == -1.0 and math.isnan(to_zero.lift_ci_low)

    all_successes = two_proportion_test(100, 100, 200, 200)
    assert math.isnan(all_successes.p_value) and all_successes.relative_lift == 0.0


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((0, 0, 5, 10), {}, "trials_a is 0"),
        ((0, 10, 0, 0), {}, "trials_b is 0"),
        ((11, 10, 5, 10), {}, r"successes_a \(11\) exceeds trials_a \(10\)"),
        ((-1, 10, 5, 10), {}, "non-negative whole number"),
        ((2.5, 10, 5, 10), {}, "non-negative whole number"),
        ((1, 10, 5, 10), {"alpha": 1.5}, "alpha"),
        ((1, 10, 5, 10), {"power": 0.0}, "power"),
    ],
)
def test_invalid_counts_are_rejected(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        two_proportion_test(*args, **kwargs)


def test_counts_may_be_numpy_or_whole_floats():
    plain = two_proportion_test(486, 5000, 527, 5000)
    assert two_proportion_test(np.int64(486), 5000.0, 527.0, np.int32(5000)) == plain


def test_proportion_intervals_and_test_have_their_nominal_rates_in_simulation():
    rng = np.random.default_rng(2024)
    n, p_a, p_b, sims = 3_000, 0.10, 0.12, 1_000
    s_a, s_b = rng.binomial(n, p_a, sims), rng.binomial(n, p_b, sims)
    results = [two_proportion_test(a, n, b, n) for a, b in zip(s_a, s_b)]
    diff_coverage = np.mean([r.ci_low <= p_b - p_a <= r.ci_high for r in results])
    lift_coverage = np.mean([r.lift_ci_low <= p_b / p_a - 1 <= r.lift_ci_high for r in results])
    assert 0.93 <= diff_coverage <= 0.97
    assert 0.93 <= lift_coverage <= 0.97

    null_a, null_b = rng.binomial(n, p_a, sims), rng.binomial(n, p_a, sims)
    null_p_values = [two_proportion_test(a, n, b, n).p_value for a, b in zip(null_a, null_b)]
    false_positive_rate = np.mean(np.array(null_p_values) < 0.05)
    assert 0.03 <= false_positive_rate <= 0.07


# ------------------------------------------------------------------------- bootstrap


def test_bootstrap_interval_covers_the_true_difference_about_95_percent_of_the_time():
    true_diff = 0.5
    covered = []
    for seed in range(200):
        rng = np.random.default_rng(seed)
        a, b = rng.normal(10.0, 2.0, 200), rng.normal(10.0 + true_diff, 2.0, 200)
        result = bootstrap_mean_diff(a, b, n_boot=1_000, seed=seed)
        covered.append(result.ci_low <= true_diff <= result.ci_high)
    assert 0.90 <= np.mean(covered) <= 0.99


def test_bootstrap_p_value_is_small_for_a_big_difference_and_calibrated_under_the_null():
    rng = np.random.default_rng(1)
    big = bootstrap_mean_diff(rng.normal(10, 2, 500), rng.normal(11, 2, 500), n_boot=2_000)
    assert big.p_value < 0.001 and big.ci_low > 0 and big.significant
    assert big.p_value == pytest.approx(2 / 2_001)  # no resample crossed 0: the +1 floor

    null_p_values = []
    for seed in range(200):
        rng = np.random.default_rng(10_000 + seed)
        result = bootstrap_mean_diff(rng.normal(10, 2, 200), rng.normal(10, 2, 200), n_boot=500, seed=seed)
        null_p_values.append(result.p_value)
    null_p_values = np.array(null_p_values)
    assert 0.01 <= np.mean(null_p_values < 0.05) <= 0.10
    assert np.median(null_p_values) > 0.3  # roughly uniform: median near 0.5


def test_bootstrap_agrees_with_welch_t_test_on_large_samples():
    rng = np.random.default_rng(7)
    a, b = rng.normal(10.0, 3.0, 5_000), rng.normal(10.1, 4.0, 5_000)
    result = bootstrap_mean_diff(a, b, n_boot=4_000, seed=3)
    welch = sps.ttest_ind(b, a, equal_var=False)
    se = math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    assert result.abs_diff == pytest.approx(b.mean() - a.mean(), rel=1e-12)
    assert result.relative_lift == pytest.approx((b.mean() - a.mean()) / a.mean(), rel=1e-12)
    assert abs(result.p_value - welch.pvalue) < 0.03
    assert result.standard_error == pytest.approx(se, rel=0.05)
    assert result.ci_low == pytest.approx(result.abs_diff - Z_975 * se, abs=0.1 * se)
    assert result.ci_high == pytest.approx(result.abs_diff + Z_975 * se, abs=0.1 * se)
    assert result.min_detectable_effect == pytest.approx((Z_975 + Z_80) * result.standard_error, rel=1e-12)
    # The lift interval is the difference interval scaled by the control mean, roughly.
    assert result.lift_ci_low == pytest.approx(result.ci_low / a.mean(), abs=0.01 * se)
    assert result.lift_ci_high == pytest.approx(result.ci_high / a.mean(), abs=0.01 * se)


def test_bootstrap_is_deterministic_with_its_seed_and_independent_of_chunking(monkeypatch):
    rng = np.random.default_rng(0)
    revenue_a = rng.exponential(5.0, 3_000) * (rng.random(3_000) < 0.1)
    revenue_b = rng.exponential(5.5, 2_500) * (rng.random(2_500) < 0.1)
    first = bootstrap_mean_diff(revenue_a, revenue_b, seed=42)
    assert bootstrap_mean_diff(revenue_a, revenue_b, seed=42) == first
    assert bootstrap_mean_diff(revenue_a, revenue_b, seed=43).ci_low != first.ci_low
    monkeypatch.setattr(experiment_stats, "BOOTSTRAP_CHUNK_CELLS", 10_000)  # many small chunks
    assert bootstrap_mean_diff(revenue_a, revenue_b, seed=42) == first


def test_bootstrap_flags_small_or_noisy_comparisons_as_underpowered():
    rng = np.random.default_rng(3)
    small = bootstrap_mean_diff(rng.normal(10, 2, 50), rng.normal(15, 2, 50))
    assert small.p_value < 0.01 and small.underpowered  # fewer than 100 users per arm
    noisy = bootstrap_mean_diff(rng.normal(10, 20, 1_000), rng.normal(10.5, 20, 1_000))
    assert abs(noisy.abs_diff) < noisy.min_detectable_effect and noisy.underpowered
    clear = bootstrap_mean_diff(rng.normal(10, 2, 1_000), rng.normal(11, 2, 1_000))
    assert not clear.underpowered


def test_bootstrap_lift_is_nan_when_the_control_mean_can_be_zero():
    zero_control = bootstrap_mean_diff(np.zeros(200), np.ones(200))
    assert zero_control.abs_diff == 1.0 and math.isnan(zero_control.relative_lift)
    assert math.isnan(zero_control.lift_ci_low) and math.isnan(zero_control.lift_ci_high)
    # One buyer among 20 control users: some resamples have no buyer, the ratio is unbounded.
    sparse = bootstrap_mean_diff(np.r_[np.zeros(19), 50.0], np.full(20, 3.0))
    assert sparse.relative_lift == pytest.approx(0.2)
    assert math.isnan(sparse.lift_ci_low)
    same = bootstrap_mean_diff(np.full(150, 2.0), np.full(150, 2.0))
    assert same.p_value == 1.0 and same.ci_low == same.ci_high == 0.0


@pytest.mark.parametrize(
    ("values_a", "kwargs", "message"),
    [
        (np.array([]), {}, "empty"),
        (np.array([1.0, np.nan]), {}, "NaN"),
        (np.ones((2, 2)), {}, "one-dimensional"),
        (np.ones(5), {"n_boot": 5}, "n_boot"),
        (np.ones(5), {"alpha": 0.0}, "alpha"),
    ],
)
def test_bootstrap_rejects_invalid_input(values_a, kwargs, message):
    with pytest.raises(ValueError, match=message):
        bootstrap_mean_diff(values_a, np.ones(5), **kwargs)


# -------------------------------------------------------------------- compare_variants


def per_user_frame(seed: int = 0, n_per_variant: int = 3_000) -> pd.DataFrame:
    """Synthetic per-user outcomes; variant "b" converts better, "c" is like control."""
    rng = np.random.default_rng(seed)
    parts = []
    for variant, click_rate, buy_rate in (("control", 0.05, 0.04), ("b", 0.06, 0.06), ("c", 0.05, 0.04)):
        impressions = rng.poisson(8, n_per_variant)
        clicks = rng.binomial(impressions, click_rate)
        purchases = rng.binomial(2, buy_rate / 2 + 0.01, n_per_variant) * (rng.random(n_per_variant) < 0.8)
        revenue = purchases * rng.gamma(2.0, 20.0, n_per_variant)
        parts.append(
            pd.DataFrame(
                {"variant": variant, "impressions": impressions, "clicks": clicks,
                 "purchases": purchases, "revenue": revenue}
            )
        )
    return pd.concat(parts, ignore_index=True).sample(frac=1.0, random_state=seed).reset_index(drop=True)


def test_compare_variants_builds_one_row_per_metric_and_treatment_from_per_user_data():
    frame = per_user_frame()
    table = compare_variants(frame, "control", n_boot=500, seed=5)

    assert list(table.columns) == RESULT_COLUMNS
    assert list(zip(table["metric"], table["variant_b"])) == [
        (m, v) for m in ("ctr", "conversion", "revenue_per_user") for v in ("b", "c")
    ]
    assert (table["variant_a"] == "control").all()
    assert table["underpowered"].dtype == bool and table["n_a"].dtype == np.int64

    arm = {v: g for v, g in frame.groupby("variant")}
    for _, row in table.iterrows():
        a, b = arm["control"], arm[row["variant_b"]]
        if row["metric"] == "ctr":
            expected = two_proportion_test(
                a["clicks"].sum(), a["impressions"].sum(), b["clicks"].sum(), b["impressions"].sum()
            )
            assert row["value_a"] == a["clicks"].sum() / a["impressions"].sum()
            assert row["n_a"] == a["impressions"].sum()
        elif row["metric"] == "conversion":  # purchasers / users, not purchases / users
            purchasers_a, purchasers_b = (a["purchases"] > 0).sum(), (b["purchases"] > 0).sum()
            expected = two_proportion_test(purchasers_a, len(a), purchasers_b, len(b))
            assert row["value_b"] == (b["purchases"] > 0).mean()
            assert row["n_b"] == len(b)
        else:
            expected = bootstrap_mean_diff(
                a["revenue"].to_numpy(), b["revenue"].to_numpy(), n_boot=500, seed=5
            )
            assert row["value_a"] == pytest.approx(a["revenue"].mean(), rel=1e-12)
        assert row["method"] == ("bootstrap" if row["metric"] == "revenue_per_user" else "two_proportion_z")
        assert row["abs_diff"] == pytest.approx(expected.abs_diff, rel=1e-12)
        assert row["lift"] == pytest.approx(expected.relative_lift, rel=1e-12)
        assert (row["ci_low"], row["ci_high"]) == pytest.approx((expected.lift_ci_low, expected.lift_ci_high))
        assert row["p_value"] == pytest.approx(expected.p_value, rel=1e-12)
        assert row["underpowered"] == expected.underpowered
        assert row["min_detectable_effect"] == pytest.approx(expected.min_detectable_effect, rel=1e-12)

    conversion = table.set_index(["metric", "variant_b"]).loc["conversion"]
    assert conversion.loc["b", "p_value"] < 0.01 and conversion.loc["b", "lift"] > 0


def test_compare_variants_end_to_end_with_hashed_assignment():
    rng = np.random.default_rng(11)
    users = pd.Series([f"user-{i}" for i in range(20_000)])
    variant = assign_variants(users, "checkout-v3", {"control": 0.5, "treatment": 0.5})
    uplift = np.where(variant == "treatment", 1.5, 1.0)
    purchases = (rng.random(len(users)) < 0.05 * uplift).astype(int)
    frame = pd.DataFrame(
        {"variant": variant, "impressions": rng.poisson(5, len(users)), "purchases": purchases,
         "revenue": purchases * rng.gamma(2.0, 25.0, len(users))}
    )
    frame["clicks"] = rng.binomial(frame["impressions"], 0.1)
    table = compare_variants(frame, "control", n_boot=1_000).set_index("metric")
    assert table.loc["conversion", "p_value"] < 0.001
    assert table.loc["conversion", "ci_low"] < 0.5 < table.loc["conversion", "ci_high"]
    assert table.loc["revenue_per_user", "lift"] > 0 and table.loc["revenue_per_user", "p_value"] < 0.01
    assert table.loc["ctr", "p_value"] > 0.01  # no true CTR effect


def test_compare_variants_keeps_going_when_an_arm_has_no_trials():
    frame = per_user_frame(n_per_variant=300)
    frame.loc[frame["variant"] == "c", ["impressions", "clicks"]] = 0
    table = compare_variants(frame, "control", n_boot=200).set_index(["metric", "variant_b"])
    no_impressions = table.loc[("ctr", "c")]
    assert no_impressions["n_b"] == 0 and no_impressions["underpowered"]
    assert math.isnan(no_impressions["value_b"]) and math.isnan(no_impressions["p_value"])
    assert not math.isnan(table.loc[("ctr", "b"), "p_value"])
    assert not math.isnan(table.loc[("conversion", "c"), "p_value"])


def test_compare_variants_with_custom_metrics_and_only_a_control():
    frame = per_user_frame(n_per_variant=500)
    specs = [MetricSpec("clicks_per_user", "bootstrap", column="clicks")]
    table = compare_variants(frame, "control", specs, n_boot=200)
    assert table["metric"].tolist() == ["clicks_per_user"] * 2 and (table["method"] == "bootstrap").all()

    only_control = compare_variants(frame[frame["variant"] == "control"], "control")
    assert only_control.empty and list(only_control.columns) == RESULT_COLUMNS


def test_compare_variants_rejects_bad_input():
    frame = per_user_frame(n_per_variant=200)
    with pytest.raises(ValueError, match="control variant 'ctrl' has no users"):
        compare_variants(frame, "ctrl")
    with pytest.raises(ValueError, match=r"lacks the metric columns \['revenue'\]"):
        compare_variants(frame.drop(columns="revenue"), "control")
    with_missing = frame.astype({"revenue": float})
    with_missing.loc[0, "revenue"] = np.nan
    with pytest.raises(ValueError, match="'revenue' has missing values"):
        compare_variants(with_missing, "control")
    more_clicks = frame.copy()
    more_clicks.loc[more_clicks["variant"] == "b", "clicks"] += 100
    with pytest.raises(ValueError, match="metric 'ctr', 'control' vs 'b': successes_b"):
        compare_variants(more_clicks, "control", DEFAULT_METRICS[:1])
    with pytest.raises(ValueError, match="unknown method"):
        MetricSpec("x", "t_test", column="revenue")  # type: ignore[arg-type]
