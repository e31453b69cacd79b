"""What every column of the tables written by the Python assets means.

One entry per table (``"schema.table"``), one short sentence per column. ``table_metadata``
(recs_pipeline.defs.metadata) attaches these to the ``dagster/column_schema`` it reports,
so they show in the Dagster UI's Columns panel. The dbt models describe their columns in
their own ``.yml`` files (dbt_project/models/*/_*.yml). docs/tables.md says the same in
prose; keep the two consistent.

A column missing here is reported without a description (nothing fails at run time);
recs_pipeline_tests/test_column_descriptions.py fails instead, naming it.
"""

from __future__ import annotations

# Sentences used by several tables.
_USER_ID = "Keyed pseudonym of the shopper (u_ + 16 hex digits), never the shop's own id."
_ITEM_ID = "The shop's item id."
_PARTITION_DATE = "Day of the landing file the line came from (the daily partition)."
_SOURCE_FILE = "Landing file the line was read from."
_SOURCE_LINE = "Line number in that file (the header is line 1)."
_MODEL_VERSION = "Version of the LightFM model that produced the row (folder under data/models/)."
_EXPERIMENT_ID = "The experiment the assignment belongs to."
_VARIANT = "Experiment variant of the user (by default hybrid, popularity, or holdout: shown no list)."
_STRATEGY = (
    "Path that produced the row, e.g. buy_again, model, new_item_content, cold_start_features or popular."
)
_REASON = "A sentence a shop can show next to the item."
_PSEUDONYM_SHA256 = "SHA-256 of the erased user's pseudonym; the table never holds the pseudonym itself."
_REQUEST_ID = "Id of the erasure request."

COLUMN_DESCRIPTIONS: dict[str, dict[str, str]] = {
    # --- raw (text as it arrived) ----------------------------------------------------
    "raw.events": {
        "partition_date": _PARTITION_DATE,
        "user_id": _USER_ID + " Text as it arrived; NULL when the line had none.",
        "item_id": "Item id as it arrived (text).",
        "event_type": "Event type as it arrived (view, click, add_to_cart, purchase, ...), not yet checked.",
        "event_ts": "Event timestamp as it arrived (text, any zone); staging converts it to UTC.",
        "quantity": "Quantity as it arrived (text).",
        "price": "Unit price as it arrived (text).",
        "session_id": "Session id as it arrived.",
        "search_query": "Search text of a search event, as it arrived.",
        "rating": "Rating of a rating event, as it arrived (text).",
        "send_id": "The campaign message a message event or tracked purchase answers, as it arrived; NULL otherwise.",
        "source_file": _SOURCE_FILE,
        "source_line": _SOURCE_LINE,
        "parse_error": "Why the line could not be split into the header's fields; NULL for a well-formed line.",
        "raw_line": "Text of a malformed line (user field pseudonymised); NULL for a well-formed line.",
        "loaded_at": "When the pipeline loaded the line (UTC).",
    },
    "raw.items": {
        "item_id": "Item id as it arrived.",
        "title": "Item title.",
        "category": "Catalogue category as it arrived.",
        "brand": "Brand as it arrived.",
        "price": "List price as it arrived (text).",
        "description": "Free-text item description.",
        "in_stock": "Whether the item can be bought, as it arrived (text: true/false, 1/0, yes/no).",
        "launch_date": "Date the item entered the catalogue, as it arrived (text).",
        "source_file": "Catalogue snapshot file the line was read from.",
        "source_line": _SOURCE_LINE,
    },
    "raw.users": {
        "user_id": _USER_ID,
        "signup_date": "Sign-up date as it arrived (text).",
        "age_band": "Age band, e.g. 25-34.",
        "gender": "Gender as it arrived.",
        "country": "Country code, e.g. GB.",
        "segment": "The shop's own customer segment.",
        "marketing_consent": "Whether the user accepts marketing, as it arrived (text).",
        "source_file": "User snapshot file the line was read from.",
        "source_line": _SOURCE_LINE,
    },
    # --- quality -----------------------------------------------------------------------
    "quality.rejected_files": {
        "partition_date": "Day of the refused file.",
        "source_file": "The refused landing file.",
        "reason": "Why the whole file was refused, naming the file, the line and the field.",
        "first_offending_line": "First line of the file that breaks the rule (NULL when no single line does).",
        "rejected_lines": "Lines of the file after the header: counted, not loaded.",
        "detected_at": "When the load refused the file (UTC).",
        "resolved_at": "When a later delivery of the day loaded (UTC); NULL while the day is still refused.",
    },
    # --- privacy -----------------------------------------------------------------------
    "privacy.erasure_log": {
        "request_id": _REQUEST_ID,
        "pseudonym_sha256": _PSEUDONYM_SHA256,
        "origin": "Where the request came from: cli (recs erase) or file:<name> in erasure_requests/.",
        "key_fingerprint": "Short fingerprint of the pseudonym key in use (never the key).",
        "requested_at": "When the request was made (UTC).",
        "erased_at": "When the user's data was erased (UTC).",
        "tables_touched": "Warehouse tables rows were deleted from.",
        "rows_deleted": "Rows deleted per table, as JSON.",
        "rows_deleted_total": "Warehouse rows deleted in all.",
        "snapshot_rows_deleted": "Rows deleted from the published warehouse snapshot.",
        "files_rewritten": "Landing files rewritten without the user's lines.",
        "lines_removed": "Lines removed from those files.",
        "models_scrubbed": "Stored model versions the user was removed from.",
    },
    "privacy.suppressed_users": {
        "pseudonym_sha256": "SHA-256 of a pseudonym kept out of every later load.",
        "request_id": "The erasure request that put the user on the list.",
        "suppressed_at": "When the user joined the list (UTC).",
    },
    # --- features written by Python ----------------------------------------------------
    "features.item_text_embeddings": {
        "item_id": _ITEM_ID,
        "theme": "Text theme of the item: k-means cluster of the text vectors (-1 when the item has no text).",
        "embedding": "WordLlama vector (256 numbers) of the item's title and description.",
    },
    # --- ml ----------------------------------------------------------------------------
    "ml.training_set": {
        "user_id": _USER_ID,
        "item_id": _ITEM_ID,
        "weight": "Event-weighted, time-decayed interaction strength over the days before the hold-out cut-off.",
        "n_purchases": "Purchases of the item by the user before the cut-off.",
    },
    "ml.holdout": {
        "user_id": _USER_ID,
        "item_id": "An item the user bought after the cut-off (any positive event when the shop has no purchases).",
        "is_known_user": "Whether the user has interactions in the training set (false: a cold-start user).",
    },
    "ml.evaluation": {
        "strategy": "What was scored: lightfm, blend, buy_again, item_based or popularity.",
        "metric": "Metric name, e.g. precision@10, recall@10, ndcg@10, coverage, repeat_share.",
        "value": "The metric's value on the hold-out days.",
    },
    "ml.ranker_evaluation": {
        "strategy": "What was scored: ranker, or a candidate generator it is compared with (e.g. model, buy_again, "
        "item_knn, tifu_knn, text, segment_popular).",
        "metric": "Metric name, e.g. precision@10, recall@10, ndcg@10, repeat_precision@10, explore_recall@10.",
        "value": "The metric's value on the hold-out days.",
    },
    "ml.candidate_recall": {
        "generator": "Candidate generator, or union for all of them together.",
        "depth": "How many candidates per user the generator proposed.",
        "recall": "Share of the hold-out's relevant (user, item) pairs among the candidates.",
        "n_relevant": "Relevant (user, item) pairs in the hold-out.",
    },
    "ml.tuning_trials": {
        "study": "Name of the tuning study.",
        "trial": "Trial number within the study.",
        "value": "Objective the trial reached (e.g. the hold-out metric being tuned).",
        "params": "Hyper-parameters the trial tried, as JSON.",
        "state": "How the trial ended: complete, pruned or fail.",
    },
    # --- serving -----------------------------------------------------------------------
    "serving.recommendations": {
        "user_id": _USER_ID,
        "rank": "Position in the user's list (1 = first).",
        "item_id": "The recommended item (in stock).",
        "score": "Score the strategy gave the item; comparable within one user's list only.",
        "strategy": _STRATEGY,
        "reason": _REASON,
        "model_version": _MODEL_VERSION,
        "generated_at": "As-of time of the data the list was built from (the newest event, UTC).",
    },
    "serving.similar_items": {
        "item_id": "The item the neighbours are for.",
        "rank": "Position among the item's neighbours (1 = most similar).",
        "similar_item_id": "A similar in-stock item.",
        "score": "Cosine similarity of the two items' representations (higher: more similar).",
        "basis": "What the similarity compares: model (LightFM representations) or text (WordLlama text vectors, "
        "for an item nobody has interacted with yet).",
        "model_version": _MODEL_VERSION,
    },
    "serving.experiment_assignments": {
        "user_id": _USER_ID,
        "variant": _VARIANT + " Chosen by a salted hash: stable across runs.",
        "experiment_id": _EXPERIMENT_ID,
    },
    "serving.published_recommendations": {
        "list_date": "First day the shop shows this list.",
        "user_id": _USER_ID,
        "rank": "Position in the user's list (1 = first).",
        "item_id": "The recommended item.",
        "score": "Score of the item (for popularity lists: its distinct buyers this month).",
        "strategy": _STRATEGY,
        "reason": _REASON,
        "variant": "Experiment variant the list was published for: hybrid or popularity.",
        "experiment_id": _EXPERIMENT_ID,
    },
    # --- marketing (campaigns) -----------------------------------------------------------
    "marketing.item_themes": {
        "item_id": _ITEM_ID,
        "theme_id": "The item's catalogue theme (marketing.themes; 0 is the largest).",
        "theme_name": "The theme's name: its two or three most telling words, e.g. Candle · Holder · Glass.",
        "similarity": "Cosine of the item's text vector to its theme's centre (1: the most typical).",
    },
    "marketing.themes": {
        "theme_id": "Id of the theme, from 0 (the largest) up.",
        "theme_name": "Name of the theme, from the words that tell its items apart from the rest of the catalogue.",
        "n_items": "Items in the theme.",
        "top_words": "The theme's most characteristic words, best first, comma-separated.",
    },
    "marketing.user_themes": {
        "user_id": _USER_ID + " Consenting users only.",
        "rank": "1 = the user's favourite theme, up to 3.",
        "theme_id": "The theme (marketing.themes).",
        "theme_name": "The theme's name.",
        "share": "The theme's part of the user's (time-decayed) purchases of items with a theme.",
    },
    "marketing.variant_posteriors": {
        "campaign": "The campaign: welcome, win_back, theme_picks, back_in_stock or price_drop.",
        "segment": "Primary marketing segment of the recipients (marketing.segments).",
        "variant": "Copy variant id, <campaign>.<letter>.",
        "sends": "Measured sends of the variant to the segment so far (feedback.campaign_send_outcomes).",
        "clicks": "Sends of those that were clicked.",
        "alpha": "Alpha of the Beta posterior of the click rate (1 + clicks).",
        "beta": "Beta of the Beta posterior (1 + sends - clicks).",
        "mean": "Posterior mean click rate.",
        "low": "Lower bound of the 95% posterior interval.",
        "high": "Upper bound of the 95% posterior interval.",
    },
    "marketing.campaign_sends": {
        "send_id": "Id of the message: s_ + 16 hex digits of SHA-256(user_id, channel, send_date); the same on reruns.",
        "send_date": "Day the message goes out (the day after the newest event of the run that wrote it).",
        "user_id": _USER_ID + " A user with marketing consent.",
        "channel": "Where the message goes (email: 3 items; push: 1).",
        "campaign": "welcome (new users), win_back (lapsed customers) or theme_picks (everyone else).",
        "variant": "Copy variant sent, <campaign>.<letter>, chosen by Thompson sampling per segment.",
        "headline": "Subject line of the message, rendered from the variant.",
        "preheader": "The line an inbox shows after the subject.",
        "items": "The promoted items as a JSON list of {item_id, title, price}: the user's top recommendations "
        "(top theme first), never an item they bought in the last recently_bought_days days.",
        "send_at": "When to send (UTC): the send day at the user's usual hour of activity.",
        "segment": "The user's primary marketing segment.",
        "theme_id": "The user's favourite theme (marketing.user_themes rank 1); NULL without purchases of themed items.",
        "policy": "How the variant was chosen: thompson (the posterior draw) or explore (uniformly at random).",
    },
    # --- feedback ----------------------------------------------------------------------
    "feedback.campaign_send_outcomes": {
        "send_id": "The send (marketing.campaign_sends.send_id).",
        "send_date": "Day the message went out.",
        "user_id": _USER_ID,
        "channel": "email or push.",
        "campaign": "The campaign of the send.",
        "segment": "The recipient's primary segment when it was sent.",
        "variant": "Copy variant sent, <campaign>.<letter>.",
        "policy": "thompson or explore.",
        "send_at": "When it was sent (UTC).",
        "delivered": "The sender reported it sent (a message_sent event with its send_id).",
        "opened": "Opened (or clicked: image-blocking clients click without an open).",
        "clicked": "Clicked.",
        "converted": "A purchase credited to it: through its tracked link, or the user's next purchase within "
        "purchase_window_hours while it was their latest send.",
        "revenue": "Revenue of the purchases credited to it.",
        "unsubscribed": "The recipient unsubscribed in answer to it.",
    },
    "feedback.campaign_results": {
        "campaign": "The campaign.",
        "variant": "Copy variant, <campaign>.<letter>.",
        "sends": "Every logged send of the variant (rows of marketing.campaign_sends).",
        "sends_measured": "Sends with outcomes (logged by an earlier run); the rates are per measured send.",
        "delivered": "Measured sends the sender reported sent.",
        "opens": "Measured sends opened.",
        "clicks": "Measured sends clicked.",
        "conversions": "Measured sends with a credited purchase.",
        "revenue": "Revenue credited to the variant's sends.",
        "unsubscribes": "Measured sends answered by an unsubscribe.",
        "open_rate": "opens / sends_measured.",
        "open_rate_low": "Lower bound of the 95% Wilson interval of the open rate.",
        "open_rate_high": "Upper bound of that interval.",
        "click_rate": "clicks / sends_measured.",
        "click_rate_low": "Lower bound of the 95% Wilson interval of the click rate.",
        "click_rate_high": "Upper bound of that interval.",
        "conversion_rate": "conversions / sends_measured.",
        "conversion_rate_low": "Lower bound of the 95% Wilson interval of the conversion rate.",
        "conversion_rate_high": "Upper bound of that interval.",
        "revenue_per_send": "revenue / sends_measured (NULL without measured sends).",
    },
    "feedback.experiment_results": {
        "experiment_id": _EXPERIMENT_ID,
        "metric": "Compared metric: ctr, conversion or revenue_per_user.",
        "variant_a": "The control variant.",
        "variant_b": "The variant compared with the control.",
        "value_a": "The metric in the control.",
        "value_b": "The metric in variant_b.",
        "abs_diff": "value_b - value_a.",
        "lift": "Relative lift, (value_b - value_a) / value_a; NULL when the control is 0.",
        "ci_low": "Lower bound of the 95% confidence interval of the lift.",
        "ci_high": "Upper bound of the 95% confidence interval of the lift.",
        "p_value": "Two-sided p-value of the difference.",
        "n_a": "Sample size of the control (impressions for CTR, users otherwise).",
        "n_b": "Sample size of variant_b.",
        "underpowered": "True when an arm is too small or the difference is below the minimum detectable effect.",
        "method": "Statistical method: two_proportion_z or bootstrap.",
        "min_detectable_effect": "Smallest absolute difference these sample sizes would detect with 80% power.",
    },
}


def _table_key(table: str) -> str:
    """``schema.table`` in lower case, without quotes or a catalogue prefix."""
    parts = [p.strip().strip('"').lower() for p in table.split(".")]
    return ".".join(parts[-2:])


def table_column_descriptions(table: str) -> dict[str, str]:
    """Column -> description of ``table`` (empty when the table has no entry)."""
    return COLUMN_DESCRIPTIONS.get(_table_key(table), {})


def column_description(table: str, column: str) -> str | None:
    """The description of ``table.column``, or None when there is none."""
    described = table_column_descriptions(table)
    return described.get(column) or described.get(column.lower()) or None
