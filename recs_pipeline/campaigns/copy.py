"""Copy variants of each campaign: a headline and a preheader (the line an inbox shows
after the subject) as templates over a few named fields, and their rendering over a
frame of sends.

Fields: ``{theme}``, ``{category}``, ``{first_title}``, ``{first_price}``,
``{n_items}``. Every template reads correctly with the neutral fallback of any field
(:data:`FALLBACKS`), so a missing value never shows as "None", "nan" or a brace. Copy
speaks about products only: nothing personal is ever filled in.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

import numpy as np
import pandas as pd

from recs_pipeline.campaigns import CAMPAIGNS

FIELDS = ("theme", "category", "first_title", "first_price", "n_items")
FALLBACKS = {
    "theme": "our favourites",
    "category": "our bestsellers",
    "first_title": "our top pick",
    "first_price": "a great price",
    "n_items": "a few",
}
MAX_TITLE_CHARS = 40  # subject lines are cut by inboxes at about 40-60 characters


@dataclass(frozen=True)
class Variant:
    variant_id: str  # "<campaign>.<letter>"
    campaign: str
    headline: str
    preheader: str


_TEMPLATES: dict[str, list[tuple[str, str]]] = {
    "welcome": [
        ("Welcome! {n_items} picks to start with", "Starting with {first_title} at {first_price}."),
        ("Welcome: start with {category}", "{n_items} picks from {category}, chosen for new customers."),
        ("Hello! Meet {first_title}", "And more ideas from {theme}, picked for you."),
    ],
    "win_back": [
        ("We miss you: new in {category}", "{first_title} and more, at {first_price}."),
        ("It's been a while: {n_items} picks for you", "Back in {theme}: {first_title} at {first_price}."),
        ("Come back to {theme}", "{n_items} new ideas, starting with {first_title}."),
        ("Still into {category}? See what's new", "Starting at {first_price}: {first_title}."),
    ],
    "theme_picks": [
        ("Picked for you: {theme}", "{n_items} ideas, starting with {first_title} at {first_price}."),
        ("More from {theme} you'll love", "{n_items} picks, starting with {first_title}."),
        ("This week in {theme}", "{first_title} leads this week's selection of {n_items}."),
        ("New ideas from {theme}", "See {first_title} and more, at {first_price}."),
    ],
    "back_in_stock": [
        ("Back in stock: {first_title}", "Available again at {first_price}, while it lasts."),
        ("It's back! {first_title}", "{n_items} picks from {category} are available again."),
        ("Good news: {first_title} is back", "Order now at {first_price}."),
    ],
    "price_drop": [
        ("Price drop: {first_title}", "Now at {first_price}, in {category}."),
        ("{first_title}, now at {first_price}", "{n_items} picks from {theme} at lower prices."),
        ("Lower prices in {theme}", "Starting with {first_title} at {first_price}."),
    ],
}

VARIANTS: dict[str, Variant] = {
    f"{campaign}.{letter}": Variant(f"{campaign}.{letter}", campaign, headline, preheader)
    for campaign in CAMPAIGNS
    for letter, (headline, preheader) in zip(string.ascii_lowercase, _TEMPLATES[campaign])
}


def variants_of(campaign: str) -> list[str]:
    """The variant ids of ``campaign``, in order ("theme_picks.a", "theme_picks.b", ...)."""
    if campaign not in CAMPAIGNS:
        raise ValueError(f"unknown campaign {campaign!r}; known: {', '.join(CAMPAIGNS)}")
    return [v for v, variant in VARIANTS.items() if variant.campaign == campaign]


def _text(values: pd.Series, fallback: str) -> pd.Series:
    text = values.astype("string").str.strip()
    return text.mask(text.isna() | (text == "") | text.str.lower().isin(["nan", "none", "null"]), fallback).astype(object)


def _field_values(frame: pd.DataFrame, currency: str) -> dict[str, pd.Series]:
    def column(name: str) -> pd.Series:
        return frame[name] if name in frame else pd.Series(pd.NA, index=frame.index, dtype="object")

    title = _text(column("first_title"), FALLBACKS["first_title"])
    long = title.str.len() > MAX_TITLE_CHARS
    title = title.where(~long, title.str.slice(0, MAX_TITLE_CHARS - 1).str.rstrip() + "…")
    price = pd.to_numeric(column("first_price"), errors="coerce").to_numpy(dtype=float)
    priced = np.isfinite(price) & (price >= 0)
    price_text = np.full(len(frame), FALLBACKS["first_price"], dtype=object)
    if priced.any():
        price_text[priced] = np.char.add(currency, np.char.mod("%.2f", price[priced]))
    n_items = pd.to_numeric(column("n_items"), errors="coerce")
    counted = n_items.notna() & (n_items > 0)
    return {
        "theme": _text(column("theme"), FALLBACKS["theme"]),
        # Category keys are snake_case in the warehouse ("home_decor").
        "category": _text(column("category").astype("string").str.replace("_", " "), FALLBACKS["category"]),
        "first_title": title,
        "first_price": pd.Series(price_text, index=frame.index, dtype=object),
        "n_items": n_items.where(counted, 0).astype(np.int64).astype(str).where(counted, FALLBACKS["n_items"]),
    }


def _fill(template: str, values: dict[str, np.ndarray], rows: np.ndarray) -> np.ndarray:
    # Concatenation of whole columns, not str.format per row: a title holding "{...}"
    # stays literal text and cannot be read as a field.
    out = pd.Series([""] * len(rows), dtype=object)
    for literal, field, _, _ in string.Formatter().parse(template):
        out = out + literal
        if field is not None:
            if field not in values:
                raise ValueError(f"template field {{{field}}} is not one of {FIELDS}")
            out = out + pd.Series(values[field][rows], dtype=object)
    out = out.str.replace("….", "…", regex=False)  # a cut title ending a sentence
    return (out.str.slice(0, 1).str.upper() + out.str.slice(1)).to_numpy(dtype=object)


def render(frame: pd.DataFrame, variant_column: str = "variant", currency: str = "") -> tuple[pd.Series, pd.Series]:
    """``(headline, preheader)`` of every row of ``frame``, by the variant id in
    ``variant_column``, filled from the frame's columns named like the fields (a missing
    column or value gets the field's fallback). Prices have two decimals after
    ``currency``. Both Series share ``frame``'s index."""
    variant_ids = frame[variant_column]
    unknown = sorted(set(variant_ids.dropna().unique()) - set(VARIANTS))
    if unknown or variant_ids.isna().any():
        raise ValueError(f"unknown or missing variant ids: {unknown or 'missing'}")
    positional = frame.reset_index(drop=True)
    values = {name: series.to_numpy(dtype=object) for name, series in _field_values(positional, currency).items()}
    headline = np.empty(len(frame), dtype=object)
    preheader = np.empty(len(frame), dtype=object)
    codes, uniques = pd.factorize(variant_ids, sort=True)
    for code, variant_id in enumerate(uniques):  # one pass per variant, not per row
        rows = np.flatnonzero(codes == code)
        headline[rows] = _fill(VARIANTS[variant_id].headline, values, rows)
        preheader[rows] = _fill(VARIANTS[variant_id].preheader, values, rows)
    return pd.Series(headline, index=frame.index, name="headline"), pd.Series(preheader, index=frame.index, name="preheader")
