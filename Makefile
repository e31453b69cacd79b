# The front door: `make run` builds the demo warehouse, `make test` runs the tests.
VENV      ?= .venv
PYTHON    ?= python3
PY        := $(VENV)/bin/python
STAMP     := $(VENV)/.installed
DAGSTER_HOME ?= $(CURDIR)/.dagster_home
export DAGSTER_HOME
export GX_ANALYTICS_ENABLED = false

.PHONY: install install-spark run dev test test-ui test-reliability test-spark test-all bench bench-quality clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP) ## create .venv and install the project

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $(DAGSTER_HOME)/dagster.yaml

# RECS_ENGINE=spark make run: the same on the Spark engine (Java 17 and the spark extra first).
run: install $(if $(filter spark,$(RECS_ENGINE)),install-spark) $(DAGSTER_HOME)/dagster.yaml ## generate the synthetic shop, run the pipeline, close the loop once
	$(VENV)/bin/recs generate
	$(VENV)/bin/recs run
	$(VENV)/bin/recs simulate --days 7
	$(VENV)/bin/recs run --new
	$(VENV)/bin/recs report

dev: install $(DAGSTER_HOME)/dagster.yaml ## the Dagster UI on http://127.0.0.1:3000
	$(VENV)/bin/dagster dev -m recs_pipeline.definitions -h 127.0.0.1 -p 3000

# Test files run side by side on every core (a file's tests stay together, so its
# module fixtures are built once); the marked suites below run one test at a time.
test: install ## the test suite (real DuckDB, dbt and Dagster on small generated data)
	$(PY) -m pytest -q -n auto --dist loadfile

# Debian's Chromium and its chromedriver (Selenium is told where they are, so it never downloads one).
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

test-ui: install ## the Dagster UI driven in headless Chromium: every asset group shown, one asset materialised
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
		$(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; \
	fi
	$(PY) -m pytest -q -m ui

test-reliability: install ## slower suites: bad-input matrix, backfill twice, two runs at once, SIGKILL mid-run, fuzzed day files (checksums of every table)
	$(PY) -m pytest -q -m reliability

# Java 17+ (Debian's headless JRE) and the spark extra (PySpark, dbt-spark), when missing.
install-spark: install ## the Spark engine's needs: Java 17 (apt) and the spark extra
	@if ! java -version 2>&1 | grep -qE 'version "(1[7-9]|2[0-9])'; then \
		$(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless; \
	fi
	@$(PY) -c "import pyspark, dbt.adapters.spark" 2>/dev/null || $(PY) -m pip install --quiet -e ".[dev,spark]"

test-spark: install-spark ## the Spark engine: its contract, and dbt on Spark table for table equal to DuckDB (writes benchmarks/results/engine_parity.json)
	$(PY) -m pytest -q -m spark

SCALES ?= S,M
ENGINE ?= duckdb
# ENGINE=spark: both engines side by side on the same shops (benchmarks/engines.py).
bench: install $(if $(filter spark,$(ENGINE)),install-spark) ## pipeline performance: stage times, rows/s, peak RSS at S and M scale (about 5 minutes; SCALES=L for 10M events; ENGINE=spark compares Spark with DuckDB)
	$(if $(filter spark,$(ENGINE)),$(PY) -m benchmarks.engines --scales $(SCALES),$(PY) -m benchmarks.pipeline --scales $(SCALES))

bench-quality: install ## model quality on MovieLens 100K, Online Retail and the synthetic shop (with its oracle), ranking stage included (about 10 minutes)
	$(PY) -m benchmarks.quality

clean:
	rm -rf data/landing data/warehouse.duckdb* data/spark-warehouse data/models data/published dbt_project/target $(DAGSTER_HOME)
