"""Statistics for A/B tests: two-proportion z-test, bootstrap of a mean difference, and
the per-metric comparison table behind ``feedback.experiment_results``.

Conventions used everywhere in this module:

- ``a`` is the control, ``b`` the treatment; ``abs_diff = b - a`` and
  ``relative_lift = (b - a) / a`` (NaN when the control value is 0).
- Confidence intervals are two-sided at level ``1 - alpha``; p-values are two-sided.
- ``min_detectable_effect`` (MDE) is the absolute difference the experiment, with its
  sample sizes and variance, would detect with probability ``power`` (80 % by default)
  in a two-sided test at ``alpha``: ``(z_{1-alpha/2} + z_{power}) * SE``.
- ``underpowered`` is True when either arm has fewer than ``min_n_per_arm`` units
  (trials for proportions, users for means) or when ``|abs_diff| < MDE`` (or the MDE is
  undefined). Read it as "this comparison cannot tell an effect of the observed size
  from noise": a non-significant result is inconclusive rather than evidence of no
  effect, and a significant one is likely to over-state the true effect (winner's
  curse). It is the same rule for both methods, so the column means one thing.
- Nothing here corrects for multiple comparisons: every (metric, variant) p-value is
  for that comparison alone; apply Holm/Bonferroni when reading many at once.

Which approximation is used where, and why:

- **Test of a difference in proportions: pooled standard error.** Under the null
  hypothesis both arms share one rate, and the pooled rate ``(s_a + s_b) / (n_a + n_b)``
  is its best estimate, so the z statistic has the right null distribution (this is
  the textbook two-proportion z-test; ``z**2`` equals Pearson's chi-square of the 2x2
  table without continuity correction).
- **Confidence interval of the difference: unpooled (Wald) standard error.** An interval
  must cover differences other than 0, so it cannot assume the rates are equal; each
  arm's variance comes from its own rate. The interval and the test can therefore
  disagree at the margin (p slightly above alpha with an interval excluding 0, or the
  reverse). Wald intervals are poor for tiny counts (with 0 or all successes in both arms
  the interval collapses to a point) — such comparisons are flagged underpowered.
- **Confidence interval of the relative lift: delta method on the log of the rate
  ratio** (the Katz log interval for a risk ratio):
  ``Var(log(p_b / p_a)) ~ (1 - p_a) / (n_a p_a) + (1 - p_b) / (n_b p_b)``, and the
  interval ``exp(log(p_b / p_a) +- z * SE) - 1``. On the log scale the sampling
  distribution is closer to normal than on the ratio scale, and the interval can never
  go below a lift of -100 %. Undefined (NaN) when either rate is 0.
- **Means (revenue per user): bootstrap.** Revenue is heavily skewed (most users spend
  0, a few spend a lot), so instead of trusting a normal approximation we resample users
  within each arm (independently: the arms are independent samples) and take percentile
  intervals of the difference and of the lift. The p-value inverts the percentile
  interval — twice the share of bootstrap differences on the far side of 0 — so
  ``p < alpha`` exactly when the interval excludes 0 (up to the quantile
  interpolation), with a +1 correction so it is never reported as exactly 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy.stats import norm

DEFAULT_ALPHA = 0.05
DEFAULT_POWER = 0.8
#: Arms smaller than this (trials for proportions, users for means) are flagged underpowered.
DEFAULT_MIN_N_PER_ARM = 100
DEFAULT_N_BOOT = 2000
#: Bootstrap resamples are drawn as (rows x n) index matrices of at most this many cells
#: (32 MB of int64 indices plus as much of gathered values) to bound memory.
BOOTSTRAP_CHUNK_CELLS = 1 << 22

METHOD_PROPORTION = "two_proportion_z"
METHOD_BOOTSTRAP = "bootstrap"

#: Columns of :func:`compare_variants`' result (the ``feedback.experiment_results`` shape).
RESULT_COLUMNS = [
    "metric",
    "variant_a",
    "variant_b",
    "value_a",
    "value_b",
    "abs_diff",
    "lift",
    "ci_low",
    "ci_high",
    "p_value",
    "n_a",
    "n_b",
    "underpowered",
    "method",
    "min_detectable_effect",
]


# --------------------------------------------------------------------------- helpers


def _check_probability(value: float, name: str) -> float:
    value = float(value)
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be strictly between 0 and 1, got {value!r}")
    return value


def _two_sided_critical_value(alpha: float) -> float:
    """``z_{1 - alpha/2}``: 1.959964... for alpha = 0.05."""
    return float(norm.ppf(1.0 - _check_probability(alpha, "alpha") / 2.0))


def _as_count(value: object, name: str) -> int:
    """A non-negative whole number (Python/numpy int, or a float holding one)."""
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be a count, got the boolean {value!r}")
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a count, got {value!r}") from None
    if not math.isfinite(number) or number < 0 or not number.is_integer():
        raise ValueError(f"{name} must be a non-negative whole number, got {value!r}")
    return int(number)


def _is_underpowered(abs_diff: float, mde: float, n_a: int, n_b: int, min_n_per_arm: int) -> bool:
    if min(n_a, n_b) < min_n_per_arm:
        return True
    # NaN-safe: an undefined MDE or difference cannot show the comparison has enough power.
    return not (abs(abs_diff) >= mde)


# ---------------------------------------------------------------------- proportions


@dataclass(frozen=True)
class ProportionTestResult:
    """Two-proportion comparison of treatment ``b`` against control ``a``.

    ``ci_low``/``ci_high`` bound the absolute difference ``rate_b - rate_a`` (unpooled
    Wald); ``lift_ci_low``/``lift_ci_high`` bound the relative lift (delta method on the
    log rate ratio); ``z``/``p_value`` are the pooled two-sided z-test. See the module
    docstring for why each approximation is used.
    """

    successes_a: int
    n_a: int
    successes_b: int
    n_b: int
    rate_a: float
    rate_b: float
    abs_diff: float
    relative_lift: float
    ci_low: float
    ci_high: float
    lift_ci_low: float
    lift_ci_high: float
    z: float
    p_value: float
    alpha: float
    min_detectable_effect: float
    underpowered: bool

    @property
    def significant(self) -> bool:
        """True when ``p_value < alpha`` (False when the p-value is undefined)."""
        return bool(self.p_value < self.alpha)


def proportion_min_detectable_effect(
    baseline_rate: float,
    n_a: int,
    n_b: int,
    alpha: float = DEFAULT_ALPHA,
    power: float = DEFAULT_POWER,
) -> float:
    """Smallest absolute difference in rates detected with probability ``power``.

    ``MDE = (z_{1-alpha/2} + z_{power}) * sqrt(p (1 - p) (1/n_a + 1/n_b))`` with ``p`` the
    baseline (control) rate: the usual planning formula, which takes the baseline
    variance for both arms and ignores rejections in the wrong direction (negligible).
    NaN when the baseline is 0 or 1 — its variance estimate is then 0, which would claim
    any difference is detectable.
    """
    p = float(baseline_rate)
    if not 0.0 < p < 1.0 or n_a <= 0 or n_b <= 0:
        return math.nan
    z_sum = _two_sided_critical_value(alpha) + float(norm.ppf(_check_probability(power, "power")))
    return z_sum * math.sqrt(p * (1.0 - p) * (1.0 / n_a + 1.0 / n_b))


def two_proportion_test(
    successes_a: int,
    trials_a: int,
    successes_b: int,
    trials_b: int,
    alpha: float = DEFAULT_ALPHA,
    *,
    power: float = DEFAULT_POWER,
    min_n_per_arm: int = DEFAULT_MIN_N_PER_ARM,
) -> ProportionTestResult:
    """Compare the success rate of treatment ``b`` with control ``a``.

    Counts must be whole numbers with ``0 <= successes <= trials`` and ``trials > 0``
    (``ValueError`` otherwise: a rate over zero trials does not exist). Zero successes
    are fine; whatever they make undefined comes back as NaN instead of raising:
    ``relative_lift`` and its interval when ``rate_a == 0``, the lift interval when
    ``rate_b == 0``, and ``z``/``p_value`` when both arms are all-failures or
    all-successes (the pooled variance is 0). ``min_n_per_arm`` and ``power`` drive the
    ``underpowered`` flag (see the module docstring).
    """
    s_a, n_a = _as_count(successes_a, "successes_a"), _as_count(trials_a, "trials_a")
    s_b, n_b = _as_count(successes_b, "successes_b"), _as_count(trials_b, "trials_b")
    for arm, s, n in (("a", s_a, n_a), ("b", s_b, n_b)):
        if n == 0:
            raise ValueError(f"trials_{arm} is 0: a success rate needs at least one trial")
        if s > n:
            raise ValueError(f"successes_{arm} ({s}) exceeds trials_{arm} ({n})")
    z_crit = _two_sided_critical_value(alpha)

    rate_a, rate_b = s_a / n_a, s_b / n_b
    abs_diff = rate_b - rate_a

    # Interval of the difference: unpooled Wald (each arm's own variance).
    se_unpooled = math.sqrt(rate_a * (1 - rate_a) / n_a + rate_b * (1 - rate_b) / n_b)
    ci_low, ci_high = abs_diff - z_crit * se_unpooled, abs_diff + z_crit * se_unpooled

    # Test of "no difference": pooled variance (the rates are equal under the null).
    pooled = (s_a + s_b) / (n_a + n_b)
    se_pooled = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    if se_pooled > 0:
        z = abs_diff / se_pooled
        p_value = float(2.0 * norm.sf(abs(z)))
    else:
        z = p_value = math.nan

    # Relative lift and its interval: delta method on log(rate_b / rate_a).
    relative_lift = abs_diff / rate_a if rate_a > 0 else math.nan
    if rate_a > 0 and rate_b > 0:
        log_ratio = math.log(rate_b / rate_a)
        se_log_ratio = math.sqrt((1 - rate_a) / s_a + (1 - rate_b) / s_b)  # (1-p)/(n p) = (1-p)/s
        lift_ci_low = math.exp(log_ratio - z_crit * se_log_ratio) - 1
        lift_ci_high = math.exp(log_ratio + z_crit * se_log_ratio) - 1
    else:
        lift_ci_low = lift_ci_high = math.nan

    mde = proportion_min_detectable_effect(rate_a, n_a, n_b, alpha, power)
    return ProportionTestResult(
        successes_a=s_a,
        n_a=n_a,
        successes_b=s_b,
        n_b=n_b,
        rate_a=rate_a,
        rate_b=rate_b,
        abs_diff=abs_diff,
        relative_lift=relative_lift,
        ci_low=ci_low,
        ci_high=ci_high,
        lift_ci_low=lift_ci_low,
        lift_ci_high=lift_ci_high,
        z=z,
        p_value=p_value,
        alpha=float(alpha),
        min_detectable_effect=mde,
        underpowered=_is_underpowered(abs_diff, mde, n_a, n_b, min_n_per_arm),
    )


# ------------------------------------------------------------------------- bootstrap


@dataclass(frozen=True)
class BootstrapResult:
    """Bootstrap comparison of the mean of treatment ``b`` with control ``a``.

    ``ci_low``/``ci_high`` are percentile bounds of ``mean_b - mean_a``;
    ``lift_ci_low``/``lift_ci_high`` percentile bounds of the relative lift;
    ``standard_error`` the standard deviation of the bootstrap differences.
    """

    mean_a: float
    mean_b: float
    abs_diff: float
    relative_lift: float
    ci_low: float
    ci_high: float
    lift_ci_low: float
    lift_ci_high: float
    p_value: float
    standard_error: float
    n_a: int
    n_b: int
    n_boot: int
    alpha: float
    min_detectable_effect: float
    underpowered: bool

    @property
    def significant(self) -> bool:
        """True when ``p_value < alpha``."""
        return bool(self.p_value < self.alpha)


def _as_sample(values: object, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} is empty: a mean needs at least one value")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite values (a user without revenue counts as 0)")
    return array


def bootstrap_means(values: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Means of ``n_boot`` resamples (with replacement, same size) of ``values``.

    Resamples are drawn as index matrices of at most :data:`BOOTSTRAP_CHUNK_CELLS` cells
    and averaged row-wise, so memory stays bounded whatever ``n`` is; the cost is
    ``O(n_boot * n)`` random draws (about 1 s per 100k values at 2000 resamples).
    """
    n = len(values)
    rows_per_chunk = max(1, BOOTSTRAP_CHUNK_CELLS // n)
    means = np.empty(n_boot, dtype=np.float64)
    for start in range(0, n_boot, rows_per_chunk):
        stop = min(start + rows_per_chunk, n_boot)
        indices = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = values[indices].mean(axis=1)
    return means


def bootstrap_mean_diff(
    values_a: np.ndarray,
    values_b: np.ndarray,
    n_boot: int = DEFAULT_N_BOOT,
    alpha: float = DEFAULT_ALPHA,
    seed: int = 0,
    *,
    power: float = DEFAULT_POWER,
    min_n_per_arm: int = DEFAULT_MIN_N_PER_ARM,
) -> BootstrapResult:
    """Compare the mean of ``values_b`` (treatment) with ``values_a`` (control).

    Meant for per-user metrics such as revenue per user: one value per user, users
    without revenue as 0. Each arm is resampled on its own (its own random stream,
    derived from ``seed``, so the control's resamples do not depend on the treatment's
    size); the percentile intervals, the p-value and the standard error (hence the MDE,
    ``(z_{1-alpha/2} + z_{power}) * SE``) all come from the ``n_boot`` bootstrap
    differences. The same inputs and seed always give the same result.

    ``relative_lift`` and its interval are NaN when the control mean is 0; the lift
    interval is also NaN when some resample of the control has mean 0 (the ratio is then
    unbounded — typical of tiny, mostly-zero samples). ``ValueError`` for empty arms,
    non-finite values, ``n_boot < 10`` or alpha/power outside (0, 1).
    """
    a = _as_sample(values_a, "values_a")
    b = _as_sample(values_b, "values_b")
    n_boot = int(n_boot)
    if n_boot < 10:
        raise ValueError(f"n_boot must be at least 10 (use thousands for a 95% interval), got {n_boot}")
    z_crit = _two_sided_critical_value(alpha)
    z_power = float(norm.ppf(_check_probability(power, "power")))
    quantiles = [alpha / 2, 1 - alpha / 2]

    mean_a, mean_b = float(a.mean()), float(b.mean())
    abs_diff = mean_b - mean_a
    relative_lift = abs_diff / mean_a if mean_a != 0 else math.nan

    rng_a, rng_b = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    boot_a = bootstrap_means(a, n_boot, rng_a)
    boot_b = bootstrap_means(b, n_boot, rng_b)
    boot_diff = boot_b - boot_a

    ci_low, ci_high = (float(q) for q in np.quantile(boot_diff, quantiles))
    if mean_a != 0 and np.all(boot_a != 0):
        lift_ci_low, lift_ci_high = (float(q) for q in np.quantile(boot_diff / boot_a, quantiles))
    else:
        lift_ci_low = lift_ci_high = math.nan

    # Inverting the percentile interval: the smallest alpha whose interval excludes 0.
    at_or_below = int(np.count_nonzero(boot_diff <= 0))
    at_or_above = int(np.count_nonzero(boot_diff >= 0))
    p_value = min(1.0, 2.0 * (min(at_or_below, at_or_above) + 1) / (n_boot + 1))

    standard_error = float(boot_diff.std(ddof=1))
    mde = (z_crit + z_power) * standard_error
    return BootstrapResult(
        mean_a=mean_a,
        mean_b=mean_b,
        abs_diff=abs_diff,
        relative_lift=relative_lift,
        ci_low=ci_low,
        ci_high=ci_high,
        lift_ci_low=lift_ci_low,
        lift_ci_high=lift_ci_high,
        p_value=p_value,
        standard_error=standard_error,
        n_a=len(a),
        n_b=len(b),
        n_boot=n_boot,
        alpha=float(alpha),
        min_detectable_effect=mde,
        underpowered=_is_underpowered(abs_diff, mde, len(a), len(b), min_n_per_arm),
    )


# ------------------------------------------------------------------ variant table


@dataclass(frozen=True)
class MetricSpec:
    """How to compute one metric from a per-user frame (one row per assigned user).

    - ``method="two_proportion_z"`` with ``trials_column``: the rate
      ``sum(column) / sum(trials_column)`` over the arm's users (e.g. CTR =
      clicks / impressions); ``n`` is the number of trials.
    - ``method="two_proportion_z"`` without ``trials_column``: each user is one trial and
      a success is ``column > 0`` (e.g. conversion = purchasers / users); ``n`` is users.
    - ``method="bootstrap"``: the mean of ``column`` per user (e.g. revenue per user),
      compared with :func:`bootstrap_mean_diff`; ``n`` is users.
    """

    name: str
    method: Literal["two_proportion_z", "bootstrap"]
    column: str
    trials_column: str | None = None

    def __post_init__(self) -> None:
        if self.method not in (METHOD_PROPORTION, METHOD_BOOTSTRAP):
            raise ValueError(f"metric {self.name!r}: unknown method {self.method!r}")
        if self.method == METHOD_BOOTSTRAP and self.trials_column is not None:
            raise ValueError(f"metric {self.name!r}: a bootstrap metric has no trials_column")

    @property
    def columns(self) -> list[str]:
        return [self.column] if self.trials_column is None else [self.column, self.trials_column]


#: The metrics of ``feedback.experiment_results``.
#:
#: - ``ctr`` = clicks / impressions. Caveat: the z-test treats impressions as independent
#:   trials although users (the randomised unit) see many of them, so its p-value and
#:   interval are too optimistic when a few users generate most impressions.
#: - ``conversion`` = purchasers / users (users with at least one purchase), a true
#:   per-user proportion — unlike purchases / users, which can exceed 1.
#: - ``revenue_per_user`` = mean revenue over all assigned users, zeros included.
DEFAULT_METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("ctr", METHOD_PROPORTION, column="clicks", trials_column="impressions"),
    MetricSpec("conversion", METHOD_PROPORTION, column="purchases"),
    MetricSpec("revenue_per_user", METHOD_BOOTSTRAP, column="revenue"),
)


def _undefined_row(
    spec: MetricSpec, control: object, treatment: object, s_a: float, n_a: float, s_b: float, n_b: float
) -> dict[str, object]:
    """A result row for a proportion with no trials in an arm: only the defined rate is kept."""
    return {
        "metric": spec.name,
        "variant_a": control,
        "variant_b": treatment,
        "value_a": s_a / n_a if n_a else math.nan,
        "value_b": s_b / n_b if n_b else math.nan,
        "abs_diff": math.nan,
        "lift": math.nan,
        "ci_low": math.nan,
        "ci_high": math.nan,
        "p_value": math.nan,
        "n_a": int(n_a),
        "n_b": int(n_b),
        "underpowered": True,
        "method": spec.method,
        "min_detectable_effect": math.nan,
    }


def compare_variants(
    frame: pd.DataFrame,
    control: str,
    metric_specs: Sequence[MetricSpec] = DEFAULT_METRICS,
    *,
    variant_column: str = "variant",
    alpha: float = DEFAULT_ALPHA,
    power: float = DEFAULT_POWER,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = 0,
    min_n_per_arm: int = DEFAULT_MIN_N_PER_ARM,
) -> pd.DataFrame:
    """Compare every variant with ``control`` on every metric.

    Args:
        frame: one row per *assigned* user with the variant and the columns the metric
            specs name (by default ``impressions, clicks, purchases, revenue``). Users
            who did nothing must be present with zeros: dropping them inflates
            conversion and revenue per user. Metric columns must not hold missing values.
        control: the variant every other variant is compared with.
        metric_specs: the metrics (:data:`DEFAULT_METRICS`: ctr, conversion,
            revenue_per_user).
        variant_column: the column holding the variant.
        alpha, power, min_n_per_arm: as in :func:`two_proportion_test` /
            :func:`bootstrap_mean_diff`; ``n_boot`` and ``seed`` for the bootstrap (every
            comparison uses ``seed``, so each row is reproducible on its own).

    Returns:
        One row per (metric, treatment variant), metrics in spec order and variants
        sorted, with :data:`RESULT_COLUMNS`: ``value_a``/``value_b`` are the control and
        treatment rates or means, ``abs_diff = value_b - value_a``,
        ``lift = abs_diff / value_a``, ``ci_low``/``ci_high`` the interval *of the lift*,
        ``n_a``/``n_b`` the trials or users behind each value, and
        ``min_detectable_effect`` the absolute MDE behind ``underpowered``. A proportion
        with no trials in an arm (e.g. no impressions yet) gives a row of NaN statistics
        flagged underpowered rather than an error. Empty (with these columns) when only
        the control has users.
    """
    if variant_column not in frame.columns:
        raise ValueError(f"frame has no variant column {variant_column!r}")
    needed = sorted({c for spec in metric_specs for c in spec.columns})
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise ValueError(f"frame lacks the metric columns {missing} (has {list(frame.columns)})")
    for column in needed:
        if frame[column].isna().any():
            raise ValueError(f"column {column!r} has missing values; users without activity count as 0")
    if frame[variant_column].isna().any():
        raise ValueError(f"column {variant_column!r} has missing values: every user needs a variant")

    rows_of_variant = frame.groupby(variant_column, sort=True, observed=True).indices
    if control not in rows_of_variant:
        raise ValueError(f"control variant {control!r} has no users (variants: {sorted(rows_of_variant)})")
    treatments = [v for v in rows_of_variant if v != control]

    rows: list[dict[str, object]] = []
    for spec in metric_specs:
        column = frame[spec.column].to_numpy(dtype=np.float64)
        trials = None if spec.trials_column is None else frame[spec.trials_column].to_numpy(dtype=np.float64)

        def proportion_counts(variant: object) -> tuple[float, float]:
            positions = rows_of_variant[variant]
            if trials is None:
                return float(np.count_nonzero(column[positions] > 0)), float(len(positions))
            return float(column[positions].sum()), float(trials[positions].sum())

        for treatment in treatments:
            if spec.method == METHOD_PROPORTION:
                s_a, n_a = proportion_counts(control)
                s_b, n_b = proportion_counts(treatment)
                if n_a == 0 or n_b == 0:
                    # e.g. no impressions yet in an arm: no rate to compare, but no reason
                    # to fail the other rows of the table either.
                    rows.append(_undefined_row(spec, control, treatment, s_a, n_a, s_b, n_b))
                    continue
                try:
                    result = two_proportion_test(
                        s_a, n_a, s_b, n_b, alpha, power=power, min_n_per_arm=min_n_per_arm
                    )
                except ValueError as error:
                    raise ValueError(f"metric {spec.name!r}, {control!r} vs {treatment!r}: {error}") from None
                value_a, value_b = result.rate_a, result.rate_b
            else:
                result = bootstrap_mean_diff(
                    column[rows_of_variant[control]],
                    column[rows_of_variant[treatment]],
                    n_boot=n_boot,
                    alpha=alpha,
                    seed=seed,
                    power=power,
                    min_n_per_arm=min_n_per_arm,
                )
                value_a, value_b = result.mean_a, result.mean_b
            rows.append(
                {
                    "metric": spec.name,
                    "variant_a": control,
                    "variant_b": treatment,
                    "value_a": value_a,
                    "value_b": value_b,
                    "abs_diff": result.abs_diff,
                    "lift": result.relative_lift,
                    "ci_low": result.lift_ci_low,
                    "ci_high": result.lift_ci_high,
                    "p_value": result.p_value,
                    "n_a": result.n_a,
                    "n_b": result.n_b,
                    "underpowered": result.underpowered,
                    "method": spec.method,
                    "min_detectable_effect": result.min_detectable_effect,
                }
            )
    table = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    return table.astype(
        {
            "value_a": "float64",
            "value_b": "float64",
            "abs_diff": "float64",
            "lift": "float64",
            "ci_low": "float64",
            "ci_high": "float64",
            "p_value": "float64",
            "n_a": "int64",
            "n_b": "int64",
            "underpowered": "bool",
            "min_detectable_effect": "float64",
        }
    )
