"""The synthetic shop's fixed vocabulary: categories, brands and the words items are made of.

Kept apart from the simulation so that the behaviour code reads as behaviour. Every
word a title, description or search query uses comes from here, so text features
(description words, search terms) carry the same signal as the category and brand.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Category:
    """One catalogue category and how its items look, cost and get bought."""

    name: str
    share: float  # how much of the catalogue and of the users' taste prior it gets
    median_price: float
    price_sigma: float  # spread of the log-normal price
    repurchase_days: int  # typical replenishment cycle of a consumable; 0 = mostly one-off
    attr1: tuple[str, ...]  # colour / origin / feature word
    attr2: tuple[str, ...]  # material / style / type word
    nouns: tuple[str, ...]
    leads: tuple[str, ...]  # first word of a description
    details: tuple[str, ...]  # optional ", detail" ending of a description (the commas in the file)


CATEGORIES: tuple[Category, ...] = (
    Category("dresses", 0.11, 55.0, 0.45, 0,
             ("red", "navy", "black", "white", "emerald", "blush", "mustard"),
             ("cotton midi", "linen maxi", "silk slip", "jersey wrap", "satin mini", "denim shirt"),
             ("dress",), ("Soft", "Elegant", "Flowing", "Relaxed"),
             ("floral print", "polka dots", "with pockets", "belted waist", "v-neck")),
    Category("shoes", 0.10, 80.0, 0.45, 0,
             ("black", "white", "tan", "grey", "burgundy"),
             ("leather", "suede", "canvas", "knit", "patent"),
             ("sneakers", "boots", "loafers", "sandals", "trainers"),
             ("Comfortable", "Classic", "Lightweight", "Handmade"),
             ("cushioned sole", "water resistant", "wide fit", "vegan")),
    Category("electronics", 0.09, 90.0, 0.80, 0,
             ("wireless", "compact", "portable", "smart", "bluetooth"),
             ("noise cancelling", "waterproof", "fast charging", "hi-fi", "mini"),
             ("headphones", "speaker", "earbuds", "charger", "smartwatch", "power bank"),
             ("Powerful", "Sleek", "Rugged", "Clever"),
             ("two year warranty", "usb-c", "long battery life", "voice control")),
    Category("home_decor", 0.09, 35.0, 0.60, 0,
             ("ceramic", "rattan", "velvet", "brass", "linen"),
             ("table", "floor", "scented", "woven", "glazed"),
             ("lamp", "cushion", "vase", "candle", "throw", "mirror"), ("Cosy", "Stylish", "Minimal", "Rustic"),
             ("hand finished", "set of two", "dimmable", "recycled materials")),
    Category("kitchen", 0.08, 40.0, 0.60, 0,
             ("stainless", "cast iron", "non-stick", "bamboo", "enamel"),
             ("large", "small", "professional", "classic", "everyday"),
             ("pan", "knife", "pot", "cutting board", "kettle"), ("Durable", "Practical", "Sturdy", "Essential"),
             ("dishwasher safe", "induction ready", "lifetime guarantee")),
    Category("books", 0.08, 14.0, 0.35, 0,
             ("bestselling", "illustrated", "hardback", "paperback", "award-winning"),
             ("crime", "fantasy", "cookery", "history", "science", "travel"),
             ("novel", "guide", "book", "collection"), ("Gripping", "Beautiful", "Essential", "Thoughtful"),
             ("signed edition", "new author", "book club pick")),
    Category("toys", 0.07, 25.0, 0.60, 0,
             ("wooden", "plush", "magnetic", "educational", "giant"),
             ("building", "puzzle", "animal", "racing", "craft"),
             ("set", "kit", "game", "toy", "blocks"), ("Fun", "Colourful", "Creative", "Clever"),
             ("ages three and up", "batteries included", "eco friendly")),
    Category("sports", 0.08, 35.0, 0.60, 0,
             ("breathable", "lightweight", "padded", "quick-dry", "thermal"),
             ("yoga", "running", "cycling", "training", "hiking"),
             ("mat", "shorts", "leggings", "jacket", "bottle", "gloves"),
             ("Performance", "Flexible", "Tough", "Active"),
             ("reflective details", "sweat wicking", "zip pocket")),
    Category("jewellery", 0.06, 45.0, 0.70, 0,
             ("gold", "silver", "rose gold", "pearl", "crystal"),
             ("hoop", "pendant", "stud", "charm", "chain"),
             ("earrings", "necklace", "bracelet", "ring"), ("Delicate", "Statement", "Timeless", "Dainty"),
             ("gift boxed", "hypoallergenic", "adjustable")),
    Category("coffee", 0.08, 12.0, 0.35, 21,
             ("colombian", "ethiopian", "brazilian", "guatemalan", "kenyan"),
             ("whole bean", "ground", "espresso", "decaf", "single origin"),
             ("coffee", "beans", "capsules"), ("Rich", "Smooth", "Bold", "Fruity"),
             ("notes of chocolate", "fairtrade", "freshly roasted")),
    Category("skincare", 0.08, 22.0, 0.50, 35,
             ("hydrating", "brightening", "gentle", "anti-ageing", "soothing"),
             ("vitamin c", "hyaluronic", "retinol", "aloe", "niacinamide"),
             ("serum", "moisturiser", "cleanser", "toner", "face mask"), ("Nourishing", "Light", "Calming", "Daily"),
             ("fragrance free", "for sensitive skin", "dermatologist tested")),
    Category("pet_food", 0.08, 18.0, 0.45, 28,
             ("grain-free", "senior", "puppy", "kitten", "sensitive"),
             ("chicken", "salmon", "lamb", "turkey", "duck"),
             ("dog food", "cat food", "dog treats", "cat treats"), ("Wholesome", "Tasty", "Complete", "Natural"),
             ("vet approved", "no added sugar", "high protein")),
)  # fmt: skip

BRANDS: tuple[str, ...] = (
    "Luma", "Nordvik", "Aurelle", "Kestrel", "Marlowe", "Oakridge", "Pellam", "Quill", "Rosslyn", "Solenne",
    "Tavira", "Umber", "Vantage", "Wrenfield", "Yarrow", "Zephyr", "Alba", "Brisa", "Corvo", "Dune",
    "Elara", "Fenwick", "Greyling", "Halden", "Isola", "Juniper", "Kova", "Larkin", "Mistral", "Novara",
    "Orla", "Pike", "Rivet", "Saga", "Tundra", "Velo", "Willow", "Astra", "Bramble", "Cinder",
)  # fmt: skip

AGE_BANDS: tuple[str, ...] = ("18-24", "25-34", "35-44", "45-54", "55-64", "65+")
AGE_SHARES: tuple[float, ...] = (0.13, 0.26, 0.22, 0.18, 0.12, 0.09)
GENDERS: tuple[str, ...] = ("F", "M", "X")
GENDER_SHARES: tuple[float, ...] = (0.52, 0.45, 0.03)
COUNTRIES: tuple[str, ...] = ("GB", "DE", "FR", "US", "NL", "ES", "IT", "PL", "SE", "IE")
COUNTRY_SHARES: tuple[float, ...] = (0.30, 0.18, 0.12, 0.10, 0.08, 0.07, 0.06, 0.04, 0.03, 0.02)

PRICE_BANDS: tuple[str, ...] = ("low", "mid", "high")
# P(preferred price band | age band): younger shoppers lean cheap, middle-aged ones premium.
PRICE_BAND_BY_AGE: tuple[tuple[float, float, float], ...] = (
    (0.50, 0.35, 0.15),
    (0.35, 0.40, 0.25),
    (0.28, 0.40, 0.32),
    (0.25, 0.40, 0.35),
    (0.25, 0.42, 0.33),
    (0.32, 0.43, 0.25),
)

# Share of the day's sessions starting in each UTC hour (a European shop: quiet nights,
# a lunch bump and an evening peak).
HOURLY_TRAFFIC: tuple[float, ...] = (
    1.0, 0.6, 0.4, 0.3, 0.3, 0.5, 1.0, 2.0, 3.0, 3.5, 4.0, 4.5,
    5.0, 4.8, 4.5, 4.5, 4.8, 5.2, 6.0, 6.5, 6.5, 5.5, 4.0, 2.2,
)  # fmt: skip
