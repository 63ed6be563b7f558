"""The built-in synthetic catalog: deterministic from a seed, 100 to 1,000,000 products.

Every product has a category path, attributes (colour, material, style, gender, brand, pattern), a
real-language title and description, a price, and a photo rendered with Pillow from its attributes.
Pixels carry information the text does not fully carry: the description mentions the colour and the
pattern only some of the time, and the exact shade (lightness, saturation) is never written down, while
the shopper's visual taste (``Catalog.visual``) is defined over exactly those traits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from encoders.errors import ConfigError
from encoders.catalog import IMAGE_SIZE, Catalog

# (product type, category path under the gender, price range, silhouette)
PRODUCT_TYPES: tuple[tuple[str, str, tuple[float, float], str], ...] = (
    ("tee", "Tops/Tees", (12, 40), "tee"),
    ("hoodie", "Tops/Hoodies", (35, 90), "tee"),
    ("jacket", "Tops/Jackets", (60, 220), "tee"),
    ("tank", "Tops/Tanks", (10, 35), "tank"),
    ("pants", "Bottoms/Pants", (30, 120), "pants"),
    ("shorts", "Bottoms/Shorts", (18, 60), "shorts"),
    ("leggings", "Bottoms/Leggings", (25, 80), "pants"),
    ("sneakers", "Shoes/Sneakers", (45, 180), "shoe"),
    ("boots", "Shoes/Boots", (70, 260), "boot"),
    ("backpack", "Gear/Bags", (30, 150), "bag"),
    ("duffel bag", "Gear/Bags", (40, 160), "duffel"),
    ("water bottle", "Gear/Fitness", (8, 35), "bottle"),
    ("cap", "Accessories/Hats", (10, 40), "cap"),
    ("watch", "Accessories/Watches", (50, 400), "watch"),
)
GENDERS = ("Women", "Men", "Unisex")
COLOURS: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("red", (200, 40, 40)), ("blue", (40, 80, 200)), ("green", (40, 150, 70)), ("black", (25, 25, 25)),
    ("white", (235, 235, 235)), ("grey", (128, 128, 128)), ("yellow", (230, 200, 40)),
    ("orange", (235, 120, 30)), ("purple", (120, 50, 160)), ("pink", (235, 120, 170)),
    ("navy", (20, 30, 90)), ("brown", (120, 75, 40)),
)
MATERIALS = ("cotton", "polyester", "wool", "nylon", "leather", "fleece", "linen", "recycled")
STYLES = ("classic", "sporty", "casual", "outdoor", "urban", "minimalist", "retro", "performance")
PATTERNS = ("solid", "striped", "dotted", "checked")
BRANDS = ("Apex", "Borealis", "Cobalt", "Driftwood", "Ember", "Fjord", "Granite", "Halcyon", "Ionic",
          "Juniper", "Kestrel", "Lumen", "Meridian", "Nimbus", "Orbit", "Pioneer")
ADJECTIVES = {
    "classic": "timeless", "sporty": "athletic", "casual": "easygoing", "outdoor": "rugged",
    "urban": "streetwise", "minimalist": "clean-lined", "retro": "vintage-inspired", "performance": "technical",
}
USES = ("for training and everyday wear", "built for long days outdoors", "made for the gym and the street",
        "for travel and commuting", "for weekend adventures", "for workouts in any weather")
VISUAL_DIM = 1 + len(PATTERNS)
"""Visual traits per product (what the shopper's visual taste is over): shade lightness, then a one-hot
pattern. Saturation varies the photos too but is not a trait: on black, white and grey products it is
invisible, and a shopper cannot have taste over what the photo does not show."""


@dataclass(frozen=True)
class SyntheticCatalogConfig:
    """Settings of the built-in catalog.

    Attributes:
        n_products: Catalog size, 100 to 1,000,000.
        seed: Seed of the generator; the same seed gives the same catalog, byte for byte.
        p_colour_in_text: Probability that the description names the colour (it is always in the photo).
        p_pattern_in_text: Probability that the description names the pattern (always in the photo).
    """

    n_products: int = 2000
    seed: int = 0
    p_colour_in_text: float = 0.6
    p_pattern_in_text: float = 0.3

    def __post_init__(self) -> None:
        if not 100 <= self.n_products <= 1_000_000:
            raise ConfigError(f"n_products must be between 100 and 1,000,000, got {self.n_products}.")
        for name in ("p_colour_in_text", "p_pattern_in_text"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1], got {value}.")


def generate_catalog(config: SyntheticCatalogConfig = SyntheticCatalogConfig()) -> Catalog:
    """Generate the built-in catalog.

    Args:
        config: Size, seed and how much of the look the text reveals.

    Returns:
        A :class:`Catalog` whose photos are rendered on demand by :func:`render_images`.
    """
    rng = np.random.default_rng(config.seed)
    n = config.n_products
    ptype = rng.integers(len(PRODUCT_TYPES), size=n)
    gender = rng.choice(len(GENDERS), size=n, p=[0.42, 0.42, 0.16])
    colour = rng.integers(len(COLOURS), size=n)
    material = rng.integers(len(MATERIALS), size=n)
    style = rng.integers(len(STYLES), size=n)
    pattern = rng.choice(len(PATTERNS), size=n, p=[0.4, 0.25, 0.2, 0.15])
    brand = rng.integers(len(BRANDS), size=n)
    lightness = rng.uniform(0.0, 1.0, size=n).astype(np.float32)
    saturation = rng.uniform(0.0, 1.0, size=n).astype(np.float32)
    use = rng.integers(len(USES), size=n)
    colour_in_text = rng.random(n) < config.p_colour_in_text
    pattern_in_text = rng.random(n) < config.p_pattern_in_text
    low = np.array([PRODUCT_TYPES[t][2][0] for t in range(len(PRODUCT_TYPES))])[ptype]
    high = np.array([PRODUCT_TYPES[t][2][1] for t in range(len(PRODUCT_TYPES))])[ptype]
    quality = rng.beta(2, 2, size=n)
    prices = np.round(low + (high - low) * quality, 2).astype(np.float32) - 0.01

    titles = np.empty(n, dtype=object)
    descriptions = np.empty(n, dtype=object)
    categories = np.empty(n, dtype=object)
    attributes = np.empty(n, dtype=object)
    for i in range(n):
        tname, tpath, _, _ = PRODUCT_TYPES[ptype[i]]
        g, c, m, s, p, b = GENDERS[gender[i]], COLOURS[colour[i]][0], MATERIALS[material[i]], \
            STYLES[style[i]], PATTERNS[pattern[i]], BRANDS[brand[i]]
        who = {"Women": "women's ", "Men": "men's ", "Unisex": ""}[g]
        titles[i] = f"{b} {s.capitalize()} {m.capitalize()} {tname.title()} #{i}"
        look = []
        if colour_in_text[i]:
            look.append(c)
        if pattern_in_text[i] and p != "solid":
            look.append(p)
        look_text = (" ".join(look) + " ") if look else ""
        descriptions[i] = (
            f"A {ADJECTIVES[s]} {who}{look_text}{tname} in {m}, {USES[use[i]]}. "
            f"{b} designs {s} gear that lasts."
        )
        categories[i] = f"{g}/{tpath}"
        attributes[i] = {"type": tname, "gender": g, "colour": c, "material": m, "style": s,
                         "pattern": p, "brand": b}
    visual = np.zeros((n, VISUAL_DIM), dtype=np.float32)
    visual[:, 0] = lightness
    visual[np.arange(n), 1 + pattern] = 1.0
    params = _RenderParams(ptype=ptype, colour=colour, pattern=pattern, lightness=lightness,
                           saturation=saturation)
    return Catalog(
        name=f"synthetic-{n}-seed{config.seed}",
        ids=np.array([f"SYN{i:07d}" for i in range(n)], dtype=object),
        titles=titles,
        descriptions=descriptions,
        categories=categories,
        attributes=attributes,
        prices=prices,
        has_image=np.ones(n, dtype=bool),
        visual=visual,
        image_source=params.render,
        source_fingerprint=f"synthetic:{config}",
    )


@dataclass(frozen=True)
class _RenderParams:
    """What the renderer needs per product (picklable, unlike a closure)."""

    ptype: np.ndarray
    colour: np.ndarray
    pattern: np.ndarray
    lightness: np.ndarray
    saturation: np.ndarray

    def render(self, rows: np.ndarray) -> np.ndarray:
        return render_images(self, rows)


def _shade(rgb: tuple[int, int, int], lightness: float, saturation: float) -> tuple[int, int, int]:
    """Move a base colour toward grey (low saturation) and toward black/white (lightness)."""
    base = np.array(rgb, dtype=np.float32)
    grey = base.mean()
    colour = grey + (base - grey) * (0.35 + 0.65 * saturation)
    if lightness < 0.5:
        colour = colour * (0.45 + 1.1 * lightness)
    else:
        colour = colour + (255 - colour) * (lightness - 0.5) * 0.9
    return tuple(int(v) for v in np.clip(colour, 0, 255))


_SILHOUETTES: dict[str, list[tuple[float, float]]] = {
    "tee": [(.3, .15), (.7, .15), (.92, .35), (.8, .45), (.72, .38), (.72, .88), (.28, .88), (.28, .38),
            (.2, .45), (.08, .35)],
    "tank": [(.35, .12), (.45, .12), (.5, .22), (.55, .12), (.65, .12), (.7, .88), (.3, .88)],
    "pants": [(.3, .1), (.7, .1), (.75, .9), (.56, .9), (.5, .35), (.44, .9), (.25, .9)],
    "shorts": [(.25, .25), (.75, .25), (.8, .7), (.55, .7), (.5, .45), (.45, .7), (.2, .7)],
    "shoe": [(.1, .45), (.45, .45), (.55, .55), (.9, .62), (.92, .75), (.1, .75)],
    "boot": [(.25, .15), (.5, .15), (.52, .55), (.88, .62), (.9, .82), (.25, .82)],
    "bag": [(.25, .25), (.75, .25), (.8, .88), (.2, .88)],
    "duffel": [(.1, .4), (.9, .4), (.92, .75), (.08, .75)],
    "bottle": [(.42, .1), (.58, .1), (.6, .25), (.66, .3), (.66, .9), (.34, .9), (.34, .3), (.4, .25)],
    "cap": [(.2, .55), (.3, .32), (.5, .25), (.7, .32), (.78, .55), (.95, .6), (.95, .66), (.2, .66)],
    "watch": [(.4, .1), (.6, .1), (.6, .3), (.72, .38), (.72, .62), (.6, .7), (.6, .9), (.4, .9), (.4, .7),
              (.28, .62), (.28, .38), (.4, .3)],
}


def render_images(params: _RenderParams, rows: np.ndarray) -> np.ndarray:
    """Render product photos: the silhouette of the product type filled with its shade and pattern.

    Args:
        params: Per-product render parameters.
        rows: ``(b,)`` product rows.

    Returns:
        ``uint8 (b, IMAGE_SIZE, IMAGE_SIZE, 3)``.
    """
    from PIL import Image, ImageDraw

    size = IMAGE_SIZE
    out = np.empty((len(rows), size, size, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:size, 0:size]
    pattern_masks = {
        0: np.zeros((size, size), dtype=bool),
        1: (yy // 5) % 2 == 0,
        2: ((yy % 8 - 4) ** 2 + (xx % 8 - 4) ** 2) <= 4,
        3: ((yy // 6) + (xx // 6)) % 2 == 0,
    }
    for j, row in enumerate(rows):
        silhouette = _SILHOUETTES[PRODUCT_TYPES[params.ptype[row]][3]]
        fill = _shade(COLOURS[params.colour[row]][1], float(params.lightness[row]),
                      float(params.saturation[row]))
        mask_img = Image.new("L", (size, size), 0)
        ImageDraw.Draw(mask_img).polygon([(x * size, y * size) for x, y in silhouette], fill=255)
        mask = np.asarray(mask_img) > 0
        img = np.full((size, size, 3), 255, dtype=np.uint8)
        img[mask] = fill
        accent_mask = mask & pattern_masks[int(params.pattern[row])]
        accent = tuple(int(0.55 * v + 0.45 * (255 if sum(fill) < 380 else 0)) for v in fill)
        img[accent_mask] = accent
        out[j] = img
    return out
