"""Source adapters: the synthetic shop, UCI Online Retail, MovieLens 100K and a generic
CSV/Parquet source whose column mapping comes from configuration."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb

from recs_pipeline.settings import SHARED_DATA_DIR, Settings, SourceSettings
from recs_pipeline.sources.base import (
    LINEAGE_COLUMNS,
    RAW_EVENT_COLUMNS,
    RAW_ITEM_COLUMNS,
    RAW_USER_COLUMNS,
    Source,
    SourceError,
    check_header,
    days_from_filenames,
    drop_parsed_files,
    files_by_day,
    header_warnings,
    parse_delimited,
    parse_delimited_files,
    quote_ident,
    read_header,
    rejects_as_events,
    select_mapped,
    sql_literal,
    with_user_id_checks,
)


def _events_with_lineage(parsed_table: str, select_list: str, source_file: str) -> str:
    return (
        f"SELECT {select_list}, {sql_literal(source_file)} AS source_file, source_line, "
        f"NULL::VARCHAR AS parse_error, NULL::VARCHAR AS raw_line FROM {parsed_table}"
    )


class CsvSource(Source):
    """Shop files already in (or mapped onto) the canonical layout:

    ``<root>/events/YYYY-MM-DD.csv``, ``<root>/items/items.csv``, ``<root>/users/users.csv``.
    The synthetic shop writes exactly this; other shops map their column names in config.
    """

    kind = "generic"

    def __init__(self, root: Path, cfg: SourceSettings):
        self.root = Path(root)
        self.cfg = cfg

    def event_files(self) -> dict[date, Path]:
        return self._day_files(strict=True)

    def event_days(self) -> list[date]:
        # Two files for one day fail that day's load (event_files), not the listing of days:
        # the partitions (and so the whole code location) still build.
        return sorted(self._day_files(strict=False))

    def _day_files(self, strict: bool) -> dict[date, Path]:
        folder = self.root / Path(self.cfg.events_glob).parent
        pattern = Path(self.cfg.events_glob).name
        if not folder.is_dir():
            return {}
        return days_from_filenames(folder, pattern, self.cfg.date_from_filename, strict=strict)

    def _relpath(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)

    def events_sql(self, con: duckdb.DuckDBPyConnection, day: date) -> str:
        folder = self.root / Path(self.cfg.events_glob).parent
        paths = files_by_day(folder, Path(self.cfg.events_glob).name, self.cfg.date_from_filename).get(day, [])
        if not paths:
            raise SourceError(f"no events file for {day} under {self.root / self.cfg.events_glob}")
        if len(paths) > 1:
            raise SourceError(f"two files for {day}: {paths[0]} and {paths[1]}")
        path = paths[0]
        required = self._required_event_fields()
        rel = self._relpath(path)
        if self.cfg.file_format == "parquet":
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE _parsed_events AS SELECT row_number() OVER () AS source_line, * "
                f"FROM read_parquet({sql_literal(path)})"
            )
            cols = [r[0] for r in con.execute("DESCRIBE _parsed_events").fetchall()]
            missing = [c for c in required if c not in cols]
            if missing:
                raise SourceError(f"{path}: lacks required column(s) {', '.join(missing)}")
            return with_user_id_checks(_events_with_lineage("_parsed_events", self._mapped_events(cols), rel))
        parsed = parse_delimited(con, path, name="events", required=required, delimiter=self.cfg.delimiter)
        self._check_schema_drift(day, path, parsed.header)
        good = _events_with_lineage(parsed.table, self._mapped_events(parsed.header), rel)
        return with_user_id_checks(f"{good} UNION ALL {rejects_as_events(parsed, rel)}")

    def loads_ranges(self) -> bool:
        return self.cfg.file_format == "csv"

    def _required_event_fields(self) -> tuple[str, ...]:
        mapping = self.cfg.event_columns
        return tuple(mapping.get(c, c) for c in ("user_id", "item_id", "event_type", "event_ts"))

    def check_event_days(self, days: list[date]) -> tuple[list[date], dict[date, SourceError]]:
        """The checks events_sql makes before reading a day (file present, header, drift),
        for every day: the days that pass, and the error of each day that does not."""
        folder = self.root / Path(self.cfg.events_glob).parent
        by_day = files_by_day(folder, Path(self.cfg.events_glob).name, self.cfg.date_from_filename)
        good, errors = [], {}
        for day in days:
            paths = by_day.get(day, [])
            path = paths[0] if paths else None
            try:
                if path is None:
                    raise SourceError(f"no events file for {day} under {self.root / self.cfg.events_glob}")
                if len(paths) > 1:
                    raise SourceError(f"two files for {day}: {paths[0]} and {paths[1]}")
                header = read_header(path, self.cfg.delimiter)
                check_header(path, header, self.cfg.delimiter, self._required_event_fields())
                self._check_schema_drift(day, path, header)
                good.append(day)
            except SourceError as exc:
                errors[day] = exc
        return good, errors

    def file_for(self, day: date) -> Path | None:
        return self._day_files(strict=False).get(day)

    def header_warnings(self, days: list[date]) -> list[str]:
        files = self._day_files(strict=False)
        return [
            w for day in days if day in files
            for w in header_warnings(self._relpath(files[day]), read_header(files[day], self.cfg.delimiter))
        ]  # fmt: skip

    def events_range_sql(self, con: duckdb.DuckDBPyConnection, days: list[date]) -> str:
        """events_sql for several days at once (files checked by check_event_days), with
        partition_date first: one DuckDB scan reads every file (parse_delimited_files)."""
        files = self._day_files(strict=False)
        paths = [files[day] for day in days]
        parsed = parse_delimited_files(
            con, paths, name="events", required=self._required_event_fields(), delimiter=self.cfg.delimiter
        )
        self._parsed_range = parsed
        # Each row's day and file by its file's index: a lookup in a constant list, not a
        # join (the planner cannot size the scan behind the view and would hash the big side).
        day_of = "[" + ", ".join(f"DATE {sql_literal(day.isoformat())}" for day in days) + "]"
        file_of = "[" + ", ".join(sql_literal(self._relpath(path)) for path in paths) + "]"
        available = list(dict.fromkeys(c for header in parsed.headers for c in header))
        nulls = ", ".join(f"NULL::VARCHAR AS {c}" for c in RAW_EVENT_COLUMNS)
        good = (
            f"SELECT {day_of}[_file + 1] AS partition_date, {self._mapped_events(available)}, "
            f"{file_of}[_file + 1] AS source_file, source_line, "
            f"NULL::VARCHAR AS parse_error, NULL::VARCHAR AS raw_line FROM {parsed.table}"
        )
        bad = (
            f"SELECT {day_of}[_file + 1] AS partition_date, {nulls}, {file_of}[_file + 1] AS source_file, "
            f"line AS source_line, 'malformed_line: ' || error AS parse_error, csv_line AS raw_line "
            f"FROM {parsed.rejects}"
        )
        return with_user_id_checks(f"{good} UNION ALL {bad}")

    def drop_range_tables(self, con: duckdb.DuckDBPyConnection) -> None:
        """Free the temp tables of the last events_range_sql."""
        parsed = getattr(self, "_parsed_range", None)
        if parsed is not None:
            drop_parsed_files(con, parsed)
            self._parsed_range = None

    def _check_schema_drift(self, day: date, path: Path, header: list[str]) -> None:
        """Fail a day whose file lost a field that the previous day's file had.

        A missing optional field would otherwise load silently as NULL for the whole day
        (e.g. ``price`` renamed ``unit_price``: every purchase without revenue). Added
        fields are fine (ignored). Only the first day without the field fails - until its
        file is fixed or re-delivered; the days after it compare with that day and load."""
        files = self._day_files(strict=False)
        earlier = [d for d in files if d < day]
        if not earlier:
            return
        previous = files[max(earlier)]
        previous_header = read_header(previous, self.cfg.delimiter)
        mapped = {self.cfg.event_columns.get(c, c) for c in RAW_EVENT_COLUMNS}
        lost = [c for c in previous_header if c in mapped and c not in header]
        if lost:
            new = [c for c in header if c not in previous_header]
            raise SourceError(
                f"{path}: line 1 (header) lacks the field(s) {', '.join(lost)} that the previous day's file "
                f"{self._relpath(previous)} has"
                + (f"; new field(s) {', '.join(new)} - renamed?" if new else "")
                + " (schema drift between days: fix or re-deliver the file)"
            )

    def _mapped_events(self, available: list[str]) -> str:
        select = select_mapped("", available, self.cfg.event_columns, RAW_EVENT_COLUMNS)
        if self.cfg.event_type_values:
            # Map the shop's own event names (e.g. "pageview") to canonical ones.
            src = self.cfg.event_columns.get("event_type", "event_type")
            cases = " ".join(
                f"WHEN {sql_literal(k)} THEN {sql_literal(v)}" for k, v in self.cfg.event_type_values.items()
            )
            select = select.replace(
                f"{quote_ident(src)}::VARCHAR AS event_type",
                f"CASE {quote_ident(src)} {cases} ELSE {quote_ident(src)} END AS event_type",
            )
        return select

    def _snapshot_sql(
        self, con: duckdb.DuckDBPyConnection, file: str, name: str, canonical: tuple[str, ...], mapping: dict
    ) -> str:
        path = self.root / file
        if not path.is_file():
            # A shop without a catalogue/user file still runs: attributes stay unknown.
            nulls = ", ".join(f"NULL::VARCHAR AS {c}" for c in canonical)
            return f"SELECT {nulls}, NULL::VARCHAR AS source_file, NULL::BIGINT AS source_line WHERE false"
        key = mapping.get(canonical[0], canonical[0])
        parsed = parse_delimited(con, path, name=name, required=(key,), delimiter=self.cfg.delimiter)
        n_rejects = con.execute(f"SELECT count(*) FROM {parsed.rejects}").fetchall()[0][0]
        if n_rejects:
            line, text = con.execute(f"SELECT line, csv_line FROM {parsed.rejects} ORDER BY line LIMIT 1").fetchall()[0]
            raise SourceError(f"{path}: line {line} cannot be parsed ({n_rejects} bad line(s)): {text[:200]!r}")
        select = select_mapped("", parsed.header, mapping, canonical)
        return f"SELECT {select}, {sql_literal(self._relpath(path))} AS source_file, source_line FROM {parsed.table}"

    def items_sql(self, con: duckdb.DuckDBPyConnection) -> str:
        return self._snapshot_sql(con, self.cfg.items_file, "items", RAW_ITEM_COLUMNS, self.cfg.item_columns)

    def users_sql(self, con: duckdb.DuckDBPyConnection) -> str:
        return self._snapshot_sql(con, self.cfg.users_file, "users", RAW_USER_COLUMNS, self.cfg.user_columns)


class SyntheticShopSource(CsvSource):
    """The built-in synthetic shop: its landing zone already uses the canonical layout."""

    kind = "synthetic"


class OnlineRetailSource(Source):
    """UCI Online Retail invoice lines, one CSV per trading day.

    Each invoice line is a purchase; invoices starting with ``C`` are cancellations and
    become returns (with a positive quantity). Postage, fees and manual adjustments are
    not shopper behaviour: they become ``adjustment`` events, which staging quarantines
    with their own reason. Guest lines (no CustomerID) are kept with a NULL user.
    The shop has no catalogue or customer file: both are derived from the invoices.
    """

    kind = "online_retail"
    HEADER = ("InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID", "Country")
    NON_PRODUCT_CODES = ("POST", "DOT", "M", "m", "C2", "D", "S", "B", "BANK CHARGES", "AMAZONFEE", "CRUK", "PADS")

    def __init__(self, root: Path, timestamp_formats: tuple[str, ...] = ("%m/%d/%Y %H:%M",)):
        self.root = Path(root)
        self.timestamp_formats = tuple(timestamp_formats)

    def event_files(self) -> dict[date, Path]:
        return days_from_filenames(self.root, "*.csv") if self.root.is_dir() else {}

    def event_days(self) -> list[date]:
        return sorted(days_from_filenames(self.root, "*.csv", strict=False)) if self.root.is_dir() else []

    def file_for(self, day: date) -> Path | None:
        return days_from_filenames(self.root, "*.csv", strict=False).get(day) if self.root.is_dir() else None

    def header_warnings(self, days: list[date]) -> list[str]:
        files = days_from_filenames(self.root, "*.csv", strict=False) if self.root.is_dir() else {}
        return [w for day in days if day in files for w in header_warnings(files[day].name, read_header(files[day]))]

    def events_sql(self, con: duckdb.DuckDBPyConnection, day: date) -> str:
        paths = files_by_day(self.root, "*.csv").get(day, [])
        if not paths:
            raise SourceError(f"no Online Retail file for {day} in {self.root}")
        if len(paths) > 1:
            raise SourceError(f"two files for {day}: {paths[0]} and {paths[1]}")
        path = paths[0]
        parsed = parse_delimited(con, path, name="events", required=self.HEADER)
        non_product = ", ".join(sql_literal(c) for c in self.NON_PRODUCT_CODES)
        select = f"""
            NULLIF(regexp_replace(trim(CustomerID), '\\.0$', ''), '') AS user_id,
            trim(StockCode) AS item_id,
            CASE WHEN trim(StockCode) IN ({non_product}) THEN 'adjustment'
                 WHEN InvoiceNo LIKE 'C%' THEN 'return' ELSE 'purchase' END AS event_type,
            InvoiceDate AS event_ts,
            CASE WHEN InvoiceNo LIKE 'C%' THEN ltrim(Quantity, '-') ELSE Quantity END AS quantity,
            UnitPrice AS price,
            InvoiceNo AS session_id,
            NULL::VARCHAR AS search_query,
            NULL::VARCHAR AS rating,
            NULL::VARCHAR AS send_id"""  # no campaign messages in this data set
        rel = path.name
        good = _events_with_lineage(parsed.table, select, rel)
        return with_user_id_checks(f"{good} UNION ALL {rejects_as_events(parsed, rel)}")

    def _all_lines(self) -> str:
        """Every invoice line of every file with the data set's fields (one scan per header,
        so files with extra or unnamed columns are read too; files lacking a field are
        left out: their days are rejected by the events load) and ``invoice_ts``, the
        invoice time parsed as ISO or as one of ``timestamp_formats``."""
        groups: dict[tuple[str, ...], list[Path]] = {}
        for path in sorted(self.root.glob("*.csv")) if self.root.is_dir() else []:
            header = tuple(read_header(path))
            if all(c in header for c in self.HEADER) and len(set(header)) == len(header):
                groups.setdefault(header, []).append(path)
        if not groups:
            nulls = ", ".join(f"NULL::VARCHAR AS {c}" for c in self.HEADER)
            return f"(SELECT {nulls}, NULL::TIMESTAMP AS invoice_ts WHERE false)"
        formats = "[" + ", ".join(sql_literal(f) for f in self.timestamp_formats) + "]"
        parsed_ts = "try_cast(trim(InvoiceDate) AS TIMESTAMP)"
        if self.timestamp_formats:
            parsed_ts = f"coalesce({parsed_ts}, try_strptime(trim(InvoiceDate), {formats})::TIMESTAMP)"
        scans = []
        for header, paths in groups.items():
            columns = "{" + ", ".join(f"{sql_literal(c)}: 'VARCHAR'" for c in header) + "}"
            files = "[" + ", ".join(sql_literal(p) for p in paths) + "]"
            scans.append(
                f"SELECT {', '.join(quote_ident(c) for c in self.HEADER)} FROM read_csv({files}, header = true, "
                "delim = ',', quote = '\"', escape = '\"', auto_detect = false, ignore_errors = true, "
                f"columns = {columns})"
            )
        return f"(SELECT *, {parsed_ts} AS invoice_ts FROM ({' UNION ALL '.join(scans)}))"

    def items_sql(self, con: duckdb.DuckDBPyConnection) -> str:
        # The latest description wins; the category is the description's last word
        # ("... T-LIGHT HOLDER" -> holder), a crude but useful content feature.
        return f"""
            SELECT trim(StockCode) AS item_id,
                   arg_max(trim(Description), invoice_ts) AS title,
                   lower(regexp_extract(arg_max(trim(Description), invoice_ts), '([A-Za-z]+)\\s*$', 1)) AS category,
                   NULL::VARCHAR AS brand,
                   median(TRY_CAST(UnitPrice AS DOUBLE)) FILTER (WHERE TRY_CAST(UnitPrice AS DOUBLE) > 0)::VARCHAR AS price,
                   arg_max(trim(Description), invoice_ts) AS description,
                   'true' AS in_stock,
                   strftime(min(invoice_ts), '%Y-%m-%d') AS launch_date,
                   'by-day/*.csv' AS source_file,
                   NULL::BIGINT AS source_line
            FROM {self._all_lines()}
            WHERE trim(StockCode) <> '' AND Description IS NOT NULL AND trim(Description) <> ''
            GROUP BY 1
        """

    def users_sql(self, con: duckdb.DuckDBPyConnection) -> str:
        return f"""
            SELECT NULLIF(regexp_replace(trim(CustomerID), '\\.0$', ''), '') AS user_id,
                   strftime(min(invoice_ts), '%Y-%m-%d') AS signup_date,
                   NULL::VARCHAR AS age_band, NULL::VARCHAR AS gender,
                   mode(Country) AS country, NULL::VARCHAR AS segment,
                   NULL::VARCHAR AS marketing_consent,
                   'by-day/*.csv' AS source_file, NULL::BIGINT AS source_line
            FROM {self._all_lines()}
            WHERE CustomerID IS NOT NULL AND trim(CustomerID) <> ''
            GROUP BY 1
        """


class MovieLensSource(Source):
    """MovieLens 100K: each rating is a ``rating`` event; u.user and u.item give attributes.

    All ratings live in one file (u.data), so a day's partition is the ratings whose
    timestamp falls on that day; ``source_line`` is the line in u.data.
    """

    kind = "movielens"
    GENRES = (
        "unknown", "action", "adventure", "animation", "children", "comedy", "crime", "documentary",
        "drama", "fantasy", "film-noir", "horror", "musical", "mystery", "romance", "sci-fi",
        "thriller", "war", "western",
    )  # fmt: skip

    def __init__(self, root: Path):
        self.root = Path(root)
        self._days: dict[date, Path] | None = None

    def _ratings(self) -> str:
        return (
            f"(SELECT row_number() OVER () AS source_line, * FROM read_csv({sql_literal(self.root / 'u.data')}, "
            "delim = '\t', header = false, auto_detect = false, "
            "columns = {'user_id': 'VARCHAR', 'item_id': 'VARCHAR', 'rating': 'VARCHAR', 'ts': 'VARCHAR'}))"
        )

    def event_files(self) -> dict[date, Path]:
        if self._days is None:
            path = self.root / "u.data"
            if not path.is_file():
                return {}
            con = duckdb.connect()
            rows = con.execute(
                f"SELECT DISTINCT to_timestamp(ts::BIGINT)::DATE FROM {self._ratings()} ORDER BY 1"
            ).fetchall()
            con.close()
            self._days = {r[0]: path for r in rows}
        return self._days

    def events_sql(self, con: duckdb.DuckDBPyConnection, day: date) -> str:
        con.execute("SET TimeZone = 'UTC'")
        return f"""
            SELECT user_id, item_id, 'rating' AS event_type,
                   strftime(to_timestamp(ts::BIGINT), '%Y-%m-%dT%H:%M:%SZ') AS event_ts,
                   '1' AS quantity, NULL::VARCHAR AS price, NULL::VARCHAR AS session_id,
                   NULL::VARCHAR AS search_query, rating, NULL::VARCHAR AS send_id,
                   'u.data' AS source_file, source_line, NULL::VARCHAR AS parse_error, NULL::VARCHAR AS raw_line
            FROM {self._ratings()}
            WHERE to_timestamp(ts::BIGINT)::DATE = DATE {sql_literal(day.isoformat())}
        """

    def items_sql(self, con: duckdb.DuckDBPyConnection) -> str:
        flags = ", ".join(f"'g{i}': 'VARCHAR'" for i in range(len(self.GENRES)))
        genre_words = " || ".join(
            f"CASE WHEN g{i} = '1' THEN ' {g}' ELSE '' END" for i, g in enumerate(self.GENRES)
        )
        first_genre = " ".join(f"WHEN g{i} = '1' THEN '{g}'" for i, g in enumerate(self.GENRES))
        return f"""
            SELECT item_id, title, CASE {first_genre} END AS category, NULL::VARCHAR AS brand,
                   NULL::VARCHAR AS price, trim({genre_words}) AS description, 'true' AS in_stock,
                   strftime(try_strptime(release_date, '%d-%b-%Y'), '%Y-%m-%d') AS launch_date,
                   'u.item' AS source_file, row_number() OVER () AS source_line
            FROM read_csv({sql_literal(self.root / 'u.item')}, delim = '|', header = false, quote = '',
                          auto_detect = false, encoding = 'latin-1',
                          columns = {{'item_id': 'VARCHAR', 'title': 'VARCHAR', 'release_date': 'VARCHAR',
                                     'video_release_date': 'VARCHAR', 'url': 'VARCHAR', {flags}}})
        """

    def users_sql(self, con: duckdb.DuckDBPyConnection) -> str:
        return f"""
            SELECT user_id, NULL::VARCHAR AS signup_date,
                   CASE WHEN age::INT < 18 THEN 'under-18' WHEN age::INT < 25 THEN '18-24'
                        WHEN age::INT < 35 THEN '25-34' WHEN age::INT < 45 THEN '35-44'
                        WHEN age::INT < 55 THEN '45-54' WHEN age::INT < 65 THEN '55-64' ELSE '65+' END AS age_band,
                   gender, NULL::VARCHAR AS country, occupation AS segment, NULL::VARCHAR AS marketing_consent,
                   'u.user' AS source_file, row_number() OVER () AS source_line
            FROM read_csv({sql_literal(self.root / 'u.user')}, delim = '|', header = false, auto_detect = false,
                          columns = {{'user_id': 'VARCHAR', 'age': 'VARCHAR', 'gender': 'VARCHAR',
                                     'occupation': 'VARCHAR', 'zip': 'VARCHAR'}})
        """


def build_source(settings: Settings) -> Source:
    """The configured source adapter."""
    cfg = settings.source
    if cfg.kind == "synthetic":
        return SyntheticShopSource(Path(cfg.path) if cfg.path else settings.landing_dir, cfg)
    if cfg.kind == "online_retail":
        return OnlineRetailSource(
            Path(cfg.path) if cfg.path else SHARED_DATA_DIR / "online-retail" / "by-day", cfg.timestamp_format
        )
    if cfg.kind == "movielens":
        return MovieLensSource(Path(cfg.path) if cfg.path else SHARED_DATA_DIR / "movielens-100k")
    if cfg.kind == "generic":
        if not cfg.path:
            raise SourceError("source kind 'generic' needs [source] path = '<folder with the shop files>'")
        return CsvSource(Path(cfg.path), cfg)
    raise SourceError(f"unknown source kind {cfg.kind!r}")


__all__ = [
    "CsvSource",
    "LINEAGE_COLUMNS",
    "MovieLensSource",
    "OnlineRetailSource",
    "SyntheticShopSource",
    "build_source",
]
