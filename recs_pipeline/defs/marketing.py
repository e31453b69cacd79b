"""Marketing: a check that the campaign content is sendable, with a readable preview."""

import json

import dagster as dg

from recs_pipeline.resources import EngineResource


def _preview(rows) -> str:
    blocks = []
    for user_id, channel, headline, items, reason, segment in rows:
        lines = [f"**{user_id}** · {channel} · segment `{segment}`", f"> {headline}"]
        lines += [f"> - {i['title']} — {i['price']:.2f}" if i.get("price") is not None else f"> - {i['title']}"
                  for i in json.loads(items)]
        lines.append(f"> _{reason}_")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) or "(no content)"


@dg.asset_check(
    asset=dg.AssetKey(["marketing", "personalized_content"]),
    name="campaign_content_is_sendable",
    pool="duckdb",
    description="Every row goes to a consenting user, has a headline and 1-5 items; the metadata shows a preview.",
)
def campaign_content_is_sendable(warehouse: EngineResource) -> dg.AssetCheckResult:
    with warehouse.session(read_only=True) as db:
        bad_rows, no_consent, n_rows = db.row(
            """SELECT coalesce(sum(CASE WHEN headline IS NULL OR json_array_length(items) NOT BETWEEN 1 AND 5
                                        THEN 1 ELSE 0 END), 0),
                      coalesce(sum(CASE WHEN NOT coalesce(u.marketing_consent, false) THEN 1 ELSE 0 END), 0),
                      count(*)
               FROM marketing.personalized_content c LEFT JOIN features.user_features u USING (user_id)"""
        )
        sample = db.rows(
            "SELECT user_id, channel, headline, items, reason, segment FROM marketing.personalized_content "
            "WHERE channel = 'email' ORDER BY hash(user_id) LIMIT 4"
        )
    return dg.AssetCheckResult(
        passed=bad_rows == 0 and no_consent == 0,
        metadata={
            "rows": int(n_rows),
            "rows_without_headline_or_items": int(bad_rows),
            "rows_for_users_without_consent": int(no_consent),
            "preview": dg.MetadataValue.md(_preview(sample)),
        },
    )
