"""Every setting of the pipeline, read in one place.

Precedence (highest first): environment variables, the TOML file named by
``RECS_CONFIG``, the parameters the tuning job stored in ``<model_dir>/tuned.json``
(see :func:`apply_tuned`), the defaults below. Settings are read when definitions are
built (never at import time), so tests can point the pipeline at a temporary
directory by setting environment variables first.

Paths are made absolute here: dbt runs in its own working directory, and a
relative DuckDB path would silently create a second warehouse there.
"""

from __future__ import annotations

import json
import os
import tomllib
import warnings
from dataclasses import dataclass, field, fields, replace
from datetime import date
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DBT_PROJECT_DIR = PROJECT_ROOT / "dbt_project"
SHARED_DATA_DIR = PROJECT_ROOT.parent / "shared" / "data"

SOURCE_KINDS = ("synthetic", "online_retail", "movielens", "generic")
# Engines behind recs_pipeline.engine (RECS_ENGINE / [engine] kind).
ENGINE_KINDS = ("duckdb", "spark")


def check_engine_kind(kind: str) -> str:
    """``kind`` normalised, or a ValueError saying what is available."""
    normalised = str(kind).strip().lower()
    if normalised in ENGINE_KINDS:
        return normalised
    raise ValueError(f"engine kind {kind!r} is not one of {', '.join(ENGINE_KINDS)}")


ENGINE_KEYS = {"kind", "spark_master", "spark_remote", "spark_driver_memory", "spark_warehouse", "executor"}
# How a run executes its steps (RECS_EXECUTOR / [engine] executor): one process (the
# default, what a single DuckDB file wants), a process per step, or a Kubernetes job per
# step (dagster-k8s; docs/scale.md).
EXECUTORS = ("in_process", "multiprocess", "k8s")


@dataclass(frozen=True)
class EngineSettings:
    """Which engine runs the warehouse's tables (``[engine]``, ``RECS_ENGINE``), and where
    Spark runs when it is Spark (``RECS_SPARK_*``)."""

    kind: str = "duckdb"
    # local[*] runs Spark inside the pipeline's processes; spark://host:7077, yarn or
    # k8s://... a cluster (docs/scale.md). spark_remote (sc://host:15002) uses Spark Connect.
    spark_master: str = "local[*]"
    spark_remote: str = ""
    # The driver holds what the models train on (docs/scale.md): set it explicitly.
    spark_driver_memory: str = "2g"
    # Folder of the Parquet tables (<schema>.db/<table>/); default <data_dir>/spark-warehouse.
    spark_warehouse: Path | None = None
    executor: str = "in_process"


def engine_settings(
    section: dict[str, Any], env: dict[str, str], data_dir: Path | None = None, base: Path | None = None
) -> EngineSettings:
    """``[engine]`` of the TOML file, each key overridden by its environment variable."""
    unknown = set(section) - ENGINE_KEYS
    if unknown:
        raise ValueError(f"[engine] has unknown key(s) {', '.join(sorted(unknown))}")
    kind = env.get("RECS_ENGINE") or section.get("kind") or "duckdb"
    warehouse = env.get("RECS_SPARK_WAREHOUSE") or section.get("spark_warehouse")
    if not warehouse and data_dir is not None:
        warehouse = data_dir / "spark-warehouse"
    executor = str(env.get("RECS_EXECUTOR") or section.get("executor") or "in_process").strip().lower()
    if executor not in EXECUTORS:
        raise ValueError(f"executor {executor!r} is not one of {', '.join(EXECUTORS)}")
    return EngineSettings(
        kind=check_engine_kind(kind),
        executor=executor,
        spark_master=env.get("RECS_SPARK_MASTER") or section.get("spark_master") or "local[*]",
        spark_remote=env.get("RECS_SPARK_REMOTE") or section.get("spark_remote") or "",
        spark_driver_memory=env.get("RECS_SPARK_DRIVER_MEMORY") or section.get("spark_driver_memory") or "2g",
        spark_warehouse=_abs(warehouse, base or Path.cwd()) if warehouse else None,
    )


@dataclass(frozen=True)
class SourceSettings:
    """Where the shop's files come from and how to read them."""

    kind: str = "synthetic"
    # Folder (or file, for MovieLens) holding the source files. Empty means the
    # default for the kind: the landing zone for the synthetic shop, ../shared/data
    # for the public data sets.
    path: str = ""
    # Time zone of timestamps that carry no offset (Online Retail invoices are UK time).
    timezone: str = "UTC"
    # Other timestamp layouts the shop sends, as strptime formats tried in order after
    # ISO 8601 (e.g. "%m/%d/%Y %H:%M" for "12/1/2010 8:26"); a TOML string or list, or
    # RECS_TIMESTAMP_FORMAT (formats separated by "|"). Read in `timezone` unless the
    # format has %z. Text that matches none is quarantined as unparseable_timestamp.
    timestamp_format: tuple[str, ...] = ()
    # Events without a user id: "quarantine" (a defect) or "anonymous" (kept for
    # item popularity but never trained on, e.g. guest checkouts).
    anonymous_events: str = "quarantine"
    # Generic source only: file patterns and column mapping (canonical -> source).
    events_glob: str = "events/*.csv"
    items_file: str = "items/items.csv"
    users_file: str = "users/users.csv"
    date_from_filename: str = r"(\d{4}-\d{2}-\d{2})"
    file_format: str = "csv"
    delimiter: str = ","
    event_columns: dict[str, str] = field(default_factory=dict)
    item_columns: dict[str, str] = field(default_factory=dict)
    user_columns: dict[str, str] = field(default_factory=dict)
    event_type_values: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelSettings:
    """LightFM hyper-parameters, the hold-out evaluation and the promotion gate."""

    loss: str = "warp"
    no_components: int = 48
    epochs: int = 20
    # ...but at most this many interaction updates (interactions x epochs) per training
    # from scratch. The `make run` shop (~0.6M interactions) keeps its 20 epochs; the
    # 10M-event shop (5.9M) gets 5: its hold-out P@10 was the same after 5 and 10 epochs
    # (model 0.0081 / 0.0082, blend 0.0646 / 0.0646) at 40 s an epoch. 0 = no limit.
    max_updates: int = 30_000_000
    # Tuned on the synthetic shop's hold-out: P@10 of the model alone rises smoothly from
    # 0.014 (lr 0.025) to 0.036 (lr 0.5) and flattens above; other knobs moved it < 0.002.
    learning_rate: float = 0.5
    item_alpha: float = 1e-6
    user_alpha: float = 1e-6
    max_sampled: int = 10
    # One thread: LightFM's Hogwild training with more threads is faster but not
    # bit-for-bit repeatable, and every run of this pipeline must be.
    num_threads: int = 1
    random_state: int = 42
    # Shown-but-ignored recommendations as negatives: used by the 'logistic' loss only.
    negative_weight: float = 0.2
    user_identity_weight: float = 1.0
    item_identity_weight: float = 1.0
    # Nightly runs continue the newest model trained on earlier days for a few epochs
    # instead of training from scratch (the bulk of a nightly run's time otherwise);
    # after `full_retrain_every` warm starts in a row the next run trains from scratch.
    # 0 turns warm starts off.
    warm_start_epochs: int = 5
    # A warm start trains on the interactions touched since the base model's data and
    # this many times as many older ones, replayed at random (so one new day costs a
    # few percent of an epoch, not an epoch). A large value replays everything.
    warm_start_replay: float = 1.0
    full_retrain_every: int = 7
    keep_model_versions: int = 8  # model folders kept in the store (the serving one always)
    holdout_days: int = 7  # the last N days are the hold-out
    # Hold-out users scored by the evaluation: above this many, a fixed sample (by a hash
    # of the user id, so the same users every night). 20k users give P@10 to about
    # +-0.002; scoring every one of 200k users cost minutes. 0 = all.
    evaluation_users: int = 20_000
    item_neighbours: int = 100  # neighbours per item of the item-based baseline (item-kNN)
    k: int = 10  # metrics @k
    top_n: int = 10  # list length in serving.recommendations
    similar_n: int = 10
    promotion_margin: float = 0.0  # relative margin over the best baseline
    serving_tolerance: float = 0.05  # allowed relative drop against the serving model


@dataclass(frozen=True)
class RankingSettings:
    """The ranking stage (``[ranking]``): candidate generators and the LightGBM ranker.

    The ranker learns from past cut-offs: the ``cutoffs`` periods of ``holdout_days``
    before the hold-out, each with candidates and features from the events before it and
    labels from the purchases of the period after it. Parameters found by the tuning job
    (``recs tune`` / ``tuning_job``) replace these defaults, unless the TOML file sets them.
    """

    enabled: bool = True  # False (RECS_RANKER=0): serve the slot blend, as before the ranker
    cutoffs: int = 2
    # The rankers are trained as of the start of each `retrain_every_days` step of a fixed
    # grid (Mondays for 7), by the first run of the step, and reused by its other runs:
    # each night still scores the reused evaluated ranker on its own hold-out (the gate),
    # but builds no training cut-off and fits no LightGBM. 1 = train every run.
    retrain_every_days: int = 7
    depth: int = 50  # candidates per generator and user (evaluation and training)
    serving_depth: int = 30  # per generator and user for the served lists (200k users at L)
    # Labelled users per training cut-off (a fixed sample by hash): LightGBM's time grows with
    # them, and the `make run` shop has ~1,600 a cut-off.
    train_users: int = 5_000
    # Interaction updates (interactions x epochs) of the LightFM of a training cut-off (it
    # only proposes candidates; trained once a week and stored): 12M keeps the `make run`
    # shop's 20 epochs and gives the 10M-event shop 2 instead of 5.
    cutoff_model_max_updates: int = 12_000_000
    batch_users: int = 20_000  # users per block when scoring (bounds memory)
    # The served lists score through the ranker compiled to machine code (lleaves) when at
    # least this many users are ranked: compiling costs ~10 s once per ranker and machine
    # (cached with it), scoring then ~3x faster than LightGBM's predict (0 = never compile).
    compile_min_users: int = 20_000
    # TIFU-KNN: the paper's defaults (k, r_b, r_g, alpha, m).
    tifu_neighbours: int = 300
    tifu_within_decay: float = 0.9
    tifu_group_decay: float = 0.7
    tifu_alpha: float = 0.7
    tifu_groups: int = 7
    buy_again_half_life_days: float = 90.0
    popularity_window_days: int = 30
    min_segment_buyers: int = 20
    # LightGBM lambdarank. 150 trees at 0.1: on the `make run` shop P@10 0.0768 against
    # 0.0780 for 300 at 0.05, at half the scoring time (2.6M candidate rows per 20k
    # shoppers at L).
    n_estimators: int = 150
    learning_rate: float = 0.1
    num_leaves: int = 31
    min_child_samples: int = 20
    # Negatives per user and cut-off the ranker trains on (0 = all of them).
    negatives_per_user: int = 40
    num_threads: int = 1
    seed: int = 42
    # The ranker serves when its hold-out precision@k beats the best of the baselines,
    # TIFU-KNN and the slot blend by this relative margin; otherwise the blend serves.
    promotion_margin: float = 0.0


@dataclass(frozen=True)
class ExperimentSettings:
    """The A/B experiment on the served lists: users are split by a salted hash."""

    experiment_id: str = "recs-v1"
    salt: str = "recs-pipeline"
    # variant -> traffic share. hybrid: the LightFM blend; popularity: most popular items;
    # holdout: no recommendations at all (measures what recommending adds).
    variants: dict[str, float] = field(default_factory=lambda: {"hybrid": 0.45, "popularity": 0.45, "holdout": 0.10})
    control: str = "popularity"


# The key used when RECS_PSEUDONYM_KEY is not set: public (it is in the docs), so the
# pseudonyms it gives protect nothing against someone who has the code. Demo data only.
DEMO_PSEUDONYM_KEY = "recs-pipeline-demo-key-not-secret"
DEFAULT_RETENTION_DAYS = 400


@dataclass(frozen=True)
class PrivacySettings:
    """Pseudonymisation, retention and erasure (docs/privacy.md)."""

    # HMAC-SHA256 key of the user pseudonyms. Read from RECS_PSEUDONYM_KEY only, never
    # from the TOML file (config files get committed); empty means the demo key.
    # repr=False: printing the settings never shows it.
    pseudonym_key: str = field(default="", repr=False)
    # Raw and line-level event rows older than this many days before the newest loaded
    # day are dropped at each load; None keeps everything.
    retention_days: int | None = DEFAULT_RETENTION_DAYS
    # Folder (under the landing dir) where erasure requests are dropped as files.
    erasure_requests_dir: str = "erasure_requests"

    @property
    def key_is_demo(self) -> bool:
        return not self.pseudonym_key

    @property
    def effective_key(self) -> str:
        return self.pseudonym_key or DEMO_PSEUDONYM_KEY


def _retention_days(value: Any) -> int | None:
    """``RECS_RETENTION_DAYS`` / ``[privacy] retention_days``: a number of days, or
    ``none`` / ``keep`` / ``0`` / empty to keep everything."""
    if value is None or str(value).strip().lower() in ("", "none", "keep", "0"):
        return None
    days = int(value)
    if days < 0:
        raise ValueError(f"retention_days must be >= 0 (0 or none keeps everything): {value!r}")
    return days


# Channels a campaign can go out on, with the items a message of each carries.
CAMPAIGN_CHANNELS = {"email": 3, "push": 1}
CAMPAIGN_KEYS = (
    "n_themes", "frequency_cap", "cap_days", "recently_bought_days", "explore_share", "seed", "channels",
    "open_window_hours", "click_window_hours", "purchase_window_hours",
)  # fmt: skip


@dataclass(frozen=True)
class CampaignSettings:
    """Campaigns a marketer can send (``[campaigns]`` in the TOML file, or
    ``RECS_CAMPAIGNS_<KEY>``, e.g. ``RECS_CAMPAIGNS_FREQUENCY_CAP=2``): the catalogue
    themes, the send rules and the bandit over the copy variants
    (recs_pipeline/defs/campaigns.py)."""

    n_themes: int = 12  # k-means themes of the catalogue (capped by the items with text)
    frequency_cap: int = 3  # messages per user and channel in any cap_days-day window
    cap_days: int = 7
    # Items bought this recently are never promoted; also the dbt var of the same name
    # (marketing.personalized_content), so both leave out the same purchases.
    recently_bought_days: int = 7
    # Users who get a uniformly random copy variant (Thompson sampling explores by itself;
    # at 5% and more the loop of benchmarks/campaign_bandit.py falls under 95% of the best).
    explore_share: float = 0.02
    seed: int = 42  # with the send day, seeds the variant draws: reruns are identical
    channels: tuple[str, ...] = ("email",)  # of CAMPAIGN_CHANNELS
    # Attribution: a response without a send_id goes to the user's latest send this
    # recent (unsubscribes use the click window); a tagged one always to its send.
    open_window_hours: float = 72.0
    click_window_hours: float = 72.0
    purchase_window_hours: float = 168.0


def campaign_settings(section: dict[str, Any], env: dict[str, str]) -> CampaignSettings:
    """``[campaigns]`` of the TOML file, each key overridden by ``RECS_CAMPAIGNS_<KEY>``
    (channels: comma-separated in the variable, a list or a string in TOML)."""
    unknown = set(section) - set(CAMPAIGN_KEYS)
    if unknown:
        raise ValueError(f"[campaigns] has unknown key(s) {', '.join(sorted(unknown))}")
    values = {**CampaignSettings().__dict__, **section}
    for name in CAMPAIGN_KEYS:
        if env.get(f"RECS_CAMPAIGNS_{name.upper()}"):
            values[name] = env[f"RECS_CAMPAIGNS_{name.upper()}"]
    channels = values["channels"]
    if isinstance(channels, str):
        channels = channels.split(",")
    channels = tuple(dict.fromkeys(str(c).strip().lower() for c in channels if str(c).strip()))
    cfg = CampaignSettings(
        n_themes=int(values["n_themes"]),
        frequency_cap=int(values["frequency_cap"]),
        cap_days=int(values["cap_days"]),
        recently_bought_days=int(values["recently_bought_days"]),
        explore_share=float(values["explore_share"]),
        seed=int(values["seed"]),
        channels=channels,
        open_window_hours=float(values["open_window_hours"]),
        click_window_hours=float(values["click_window_hours"]),
        purchase_window_hours=float(values["purchase_window_hours"]),
    )
    if min(cfg.open_window_hours, cfg.click_window_hours, cfg.purchase_window_hours) <= 0:
        raise ValueError("[campaigns] open_window_hours, click_window_hours and purchase_window_hours must be > 0")
    if cfg.n_themes < 1 or cfg.frequency_cap < 1 or cfg.cap_days < 1 or cfg.recently_bought_days < 0:
        raise ValueError("[campaigns] n_themes, frequency_cap and cap_days must be >= 1, recently_bought_days >= 0")
    if not 0.0 <= cfg.explore_share <= 1.0:
        raise ValueError(f"[campaigns] explore_share must be in [0, 1]: {cfg.explore_share!r}")
    bad = [c for c in cfg.channels if c not in CAMPAIGN_CHANNELS]
    if bad or not cfg.channels:
        raise ValueError(f"[campaigns] channels must be some of {', '.join(CAMPAIGN_CHANNELS)}: {channels!r}")
    return cfg


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    warehouse_path: Path
    landing_dir: Path
    model_dir: Path
    source: SourceSettings
    config_file: str = ""  # the TOML file the settings came from (RECS_CONFIG), if any
    # First day of the daily partitions (None: taken from the source's first file).
    partitions_start: date | None = None
    # Nightly schedule.
    schedule_cron: str = "0 3 * * *"
    schedule_timezone: str = "UTC"
    # Synthetic shop generator.
    synthetic_seed: int = 42
    synthetic_days: int = 60
    synthetic_scale: float = 1.0
    # Interaction weights and decay, passed to dbt as vars.
    event_weights: dict[str, float] = field(
        default_factory=lambda: {
            "view": 1.0,
            "click": 2.0,
            "add_to_cart": 3.0,
            "purchase": 5.0,
            "rating": 1.0,  # multiplied by the rating value
        }
    )
    decay_half_life_days: float = 30.0
    # Timestamps more than this many days before their file's day are out of range.
    max_event_age_days: int = 3650
    # A day of the run with more than this share of its lines quarantined fails the
    # blocking check days_within_quarantine_share (a wrong timestamp format, a broken
    # export); 1.0 turns the check off.
    max_quarantine_share: float = 0.5
    # Model, evaluation and serving.
    model: ModelSettings = field(default_factory=lambda: ModelSettings())
    ranking: RankingSettings = field(default_factory=lambda: RankingSettings())
    experiment: ExperimentSettings = field(default_factory=lambda: ExperimentSettings())
    privacy: PrivacySettings = field(default_factory=lambda: PrivacySettings())
    sql: SqlSettings = field(default_factory=lambda: SqlSettings())  # recs sql limits (below)
    engine: EngineSettings = field(default_factory=lambda: EngineSettings())
    campaigns: CampaignSettings = field(default_factory=lambda: CampaignSettings())

    @property
    def erasure_requests_path(self) -> Path:
        return self.landing_dir / self.privacy.erasure_requests_dir

    @property
    def engine_path(self) -> Path:
        """Where the engine keeps the tables: the DuckDB file, or Spark's warehouse folder."""
        if self.engine.kind == "spark":
            return self.engine.spark_warehouse or self.data_dir / "spark-warehouse"
        return self.warehouse_path

    def export_env(self) -> None:
        """Expose the engine to dbt's profiles.yml: the target (``RECS_DBT_TARGET``), the
        DuckDB file (`env_var('RECS_WAREHOUSE')`) and Spark's settings."""
        os.environ["RECS_WAREHOUSE"] = str(self.warehouse_path)
        os.environ["RECS_DBT_TARGET"] = "spark" if self.engine.kind == "spark" else "local"
        if self.engine.kind == "spark":
            os.environ["RECS_SPARK_WAREHOUSE"] = str(self.engine_path)
            os.environ["RECS_SPARK_MASTER"] = self.engine.spark_master
            os.environ["RECS_SPARK_DRIVER_MEMORY"] = self.engine.spark_driver_memory

    def with_overrides(self, **kwargs: Any) -> "Settings":
        return replace(self, **kwargs)

    def dbt_vars(self) -> dict[str, Any]:
        """The vars every dbt invocation receives (window vars are added per run)."""
        return {
            "event_weights": self.event_weights,
            "decay_half_life_days": self.decay_half_life_days,
            "anonymous_events": self.source.anonymous_events,
            "source_timezone": self.source.timezone,
            "max_event_age_days": self.max_event_age_days,
            "timestamp_formats": list(self.source.timestamp_format),
            "top_n": self.model.top_n,
            "recently_bought_days": self.campaigns.recently_bought_days,
        }


def _abs(path: str | Path, base: Path) -> Path:
    p = Path(os.path.expanduser(str(path)))
    return (p if p.is_absolute() else base / p).resolve()


def _read_toml(path: str | None) -> dict[str, Any]:
    if not path:
        return {}
    config_path = Path(path)
    if not config_path.is_file():
        raise FileNotFoundError(f"RECS_CONFIG points to {config_path}, which does not exist")
    with config_path.open("rb") as fh:
        return tomllib.load(fh)


def load_settings(env: dict[str, str] | None = None) -> Settings:
    """Build the settings from the environment (default: ``os.environ``) and RECS_CONFIG."""
    env = dict(os.environ if env is None else env)
    config_file = env.get("RECS_CONFIG")
    toml = _read_toml(config_file)
    base = Path(config_file).resolve().parent if config_file else PROJECT_ROOT

    paths = toml.get("paths", {})
    data_dir = _abs(env.get("RECS_DATA_DIR") or paths.get("data_dir", "data"), base)
    warehouse = _abs(
        env.get("RECS_WAREHOUSE") or paths.get("warehouse", data_dir / "warehouse.duckdb"), base
    )
    landing = _abs(env.get("RECS_LANDING_DIR") or paths.get("landing_dir", data_dir / "landing"), base)
    models = _abs(env.get("RECS_MODEL_DIR") or paths.get("model_dir", data_dir / "models"), base)

    src = dict(toml.get("source", {}))
    if env.get("RECS_SOURCE"):
        src["kind"] = env["RECS_SOURCE"]
    if env.get("RECS_SOURCE_PATH"):
        src["path"] = env["RECS_SOURCE_PATH"]
    kind = src.get("kind", "synthetic")
    if kind not in SOURCE_KINDS:
        raise ValueError(f"source kind {kind!r} is not one of {', '.join(SOURCE_KINDS)}")
    if env.get("RECS_TIMESTAMP_FORMAT"):
        src["timestamp_format"] = env["RECS_TIMESTAMP_FORMAT"].split("|")
    if kind == "online_retail":
        src.setdefault("timezone", "Europe/London")
        src.setdefault("anonymous_events", "anonymous")
        # The data set as UCI publishes it writes "12/1/2010 8:26" (month first, no seconds).
        src.setdefault("timestamp_format", ["%m/%d/%Y %H:%M"])
    if isinstance(src.get("timestamp_format"), str):
        src["timestamp_format"] = [src["timestamp_format"]]
    src["timestamp_format"] = tuple(f for f in src.get("timestamp_format", ()) if f)
    if src.get("path"):
        src["path"] = str(_abs(src["path"], base))
    source = SourceSettings(**src)

    pipeline = toml.get("pipeline", {})
    synthetic = toml.get("synthetic", {})
    start = env.get("RECS_PARTITIONS_START") or pipeline.get("partitions_start")
    settings = Settings(
        data_dir=data_dir,
        warehouse_path=warehouse,
        landing_dir=landing,
        model_dir=models,
        source=source,
        config_file=str(Path(config_file).resolve()) if config_file else "",
        partitions_start=date.fromisoformat(str(start)) if start else None,
        schedule_cron=pipeline.get("schedule_cron", "0 3 * * *"),
        schedule_timezone=pipeline.get("schedule_timezone", "UTC"),
        synthetic_seed=int(env.get("RECS_SEED") or synthetic.get("seed", 42)),
        synthetic_days=int(env.get("RECS_DAYS") or synthetic.get("days", 60)),
        synthetic_scale=float(env.get("RECS_SCALE") or synthetic.get("scale", 1.0)),
        max_quarantine_share=float(
            env.get("RECS_MAX_QUARANTINE_SHARE") or toml.get("quality", {}).get("max_quarantine_share", 0.5)
        ),
    )
    weights = toml.get("interactions", {}).get("event_weights")
    if weights:
        settings = replace(settings, event_weights={**settings.event_weights, **weights})
    if toml.get("experiment"):
        settings = replace(settings, experiment=ExperimentSettings(**toml["experiment"]))
    model = dict(toml.get("model", {}))
    if env.get("RECS_HOLDOUT_DAYS"):
        model["holdout_days"] = int(env["RECS_HOLDOUT_DAYS"])
    if model:
        settings = replace(settings, model=ModelSettings(**model))
    ranking = dict(toml.get("ranking", {}))
    if env.get("RECS_RANKER"):
        ranking["enabled"] = env["RECS_RANKER"].strip().lower() not in ("0", "false", "no", "off")
    if ranking:
        settings = replace(settings, ranking=RankingSettings(**ranking))
    half_life = toml.get("interactions", {}).get("decay_half_life_days")
    if half_life:
        settings = replace(settings, decay_half_life_days=float(half_life))
    privacy = dict(toml.get("privacy", {}))
    if "pseudonym_key" in privacy:
        raise ValueError("[privacy] pseudonym_key is not read from the config file: set RECS_PSEUDONYM_KEY instead")
    retention = env["RECS_RETENTION_DAYS"] if "RECS_RETENTION_DAYS" in env else privacy.get(
        "retention_days", DEFAULT_RETENTION_DAYS
    )
    settings = replace(
        settings,
        privacy=PrivacySettings(
            pseudonym_key=env.get("RECS_PSEUDONYM_KEY", ""),
            retention_days=_retention_days(retention),
            erasure_requests_dir=privacy.get("erasure_requests_dir", "erasure_requests"),
        ),
    )
    settings = replace(settings, sql=sql_settings(toml.get("sql", {}), env))
    settings = replace(settings, engine=engine_settings(toml.get("engine", {}), env, data_dir, base))
    settings = replace(settings, campaigns=campaign_settings(toml.get("campaigns", {}), env))
    return apply_tuned(settings, toml, env)


# --- parameters found by the tuning job (recs tune / tuning_job) ----------------------

TUNED_FILE = "tuned.json"  # in the model dir, written by ml/tuned_parameters
# The keys the tuning job may set, per TOML section.
TUNED_KEYS = {
    "model": ("no_components", "learning_rate", "item_alpha", "user_alpha", "epochs"),
    "ranking": (
        "tifu_neighbours", "tifu_within_decay", "tifu_group_decay", "tifu_alpha", "tifu_groups",
        "n_estimators", "learning_rate", "num_leaves", "min_child_samples", "negatives_per_user",
    ),
}


def read_tuned(model_dir: str | Path) -> dict | None:
    """``<model_dir>/tuned.json``, or None when there is none (or it cannot be read:
    a warning, and the run goes on with the configured parameters)."""
    path = Path(model_dir) / TUNED_FILE
    try:
        tuned = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        warnings.warn(f"ignoring {path}: {exc}", stacklevel=2)
        return None
    return tuned if isinstance(tuned, dict) else None


def ignore_tuned(env: dict[str, str]) -> bool:
    return env.get("RECS_IGNORE_TUNED", "").strip().lower() in ("1", "true", "yes", "on")


def apply_tuned(settings: Settings, toml: dict[str, Any], env: dict[str, str]) -> Settings:
    """The tuned parameters of ``<model_dir>/tuned.json`` in ``[model]`` and ``[ranking]``,
    for the keys of :data:`TUNED_KEYS` the TOML file does not set (what is configured
    explicitly wins). ``RECS_IGNORE_TUNED=1`` ignores the file."""
    if ignore_tuned(env):
        return settings
    tuned = read_tuned(settings.model_dir)
    if not tuned:
        return settings
    for section, keys in TUNED_KEYS.items():
        current = getattr(settings, section)
        kinds = {f.name: type(getattr(current, f.name)) for f in fields(current)}
        explicit = set(toml.get(section, {}))
        values = {
            key: kinds[key](value)
            for key, value in (tuned.get(section) or {}).items()
            if key in keys and key not in explicit and isinstance(value, (int, float)) and not isinstance(value, bool)
        }
        if values:
            settings = replace(settings, **{section: replace(current, **values)})
    return settings


# --- recs sql: the guard rails of queries typed by a person ---------------------------

_SIZE = r"^\s*\d+(\.\d+)?\s*(b|bytes|kb|mb|gb|tb|kib|mib|gib|tib)\s*$"


@dataclass(frozen=True)
class SqlSettings:
    """Limits of one ``recs sql`` query (``[sql]`` in the TOML file, or ``RECS_SQL_*``):
    a runaway query is stopped instead of hanging the machine or the nightly run."""

    # Statement timeout in seconds (0: none). RECS_SQL_TIMEOUT_S.
    timeout_s: float = 60.0
    # DuckDB memory_limit of the query's connection, e.g. "2GB". RECS_SQL_MEMORY_LIMIT.
    memory_limit: str = "2GB"
    # DuckDB threads of the query's connection. RECS_SQL_THREADS.
    threads: int = 2
    # Temporary files a sort or join that does not fit in memory may spill to disk
    # (DuckDB max_temp_directory_size; by default 90% of the free disk). RECS_SQL_SPILL_LIMIT.
    spill_limit: str = "4GB"


def sql_settings(section: dict[str, Any], env: dict[str, str]) -> SqlSettings:
    """``[sql]`` of the TOML file, overridden by ``RECS_SQL_TIMEOUT_S``,
    ``RECS_SQL_MEMORY_LIMIT``, ``RECS_SQL_THREADS``, ``RECS_SQL_SPILL_LIMIT``."""
    import re

    values = {**SqlSettings().__dict__, **section}
    for name in ("timeout_s", "memory_limit", "threads", "spill_limit"):
        if env.get(f"RECS_SQL_{name.upper()}"):
            values[name] = env[f"RECS_SQL_{name.upper()}"]
    unknown = set(values) - set(SqlSettings().__dict__)
    if unknown:
        raise ValueError(f"[sql] has unknown key(s) {', '.join(sorted(unknown))}")
    sql = SqlSettings(
        timeout_s=float(values["timeout_s"]),
        memory_limit=str(values["memory_limit"]).strip(),
        threads=int(values["threads"]),
        spill_limit=str(values["spill_limit"]).strip(),
    )
    if sql.timeout_s < 0:
        raise ValueError(f"sql timeout_s must be >= 0 (0: no timeout): {sql.timeout_s!r}")
    if sql.threads < 1:
        raise ValueError(f"sql threads must be >= 1: {sql.threads!r}")
    for name in ("memory_limit", "spill_limit"):
        if not re.match(_SIZE, getattr(sql, name), re.IGNORECASE):
            raise ValueError(f"sql {name} must be a size such as 2GB or 512MB: {getattr(sql, name)!r}")
    return sql
