"""A deterministic synthetic high-resolution benchmark: documents, tables, receipts, charts and scenes.

Every image carries one question whose answer is a short string printed in it (a code, a number, a date).
The evidence (the answer and the label or key next to it) is printed either LARGE, so it stays readable in
the half-size low-resolution view (``needs_hr=False``), or SMALL, so it is readable only at full resolution or
in a crop (``needs_hr=True``). Distractor text of mixed sizes fills the rest of the image, and the evidence is
spread over the whole image: its position is drawn from a seeded distribution over the 3x3 grid, inside one
quadrant most of the time and straddling the centre lines otherwise.

Sizes were tuned against the offline OCR reader (``rapidocr-onnxruntime``, see :func:`verify_readability`):
it reads text down to about 4.5-5 px em, so the 6-7 px that 12-14 px text becomes at half size is still often
read. Small evidence is therefore drawn at 8 px (numbers) or 9 px (codes with letters), 4-4.5 px in the view,
in regular weights, with answers of at least four characters; large evidence at 28-44 px.

Usage::

    from awares_agent.evals.synthetic import build_synthetic, generate

    samples = generate(50, seed=0)  # list[EvalSample], PIL images in memory
    build_synthetic("data/synthetic", n=500, seed=0)  # a `datasets` dataset on disk
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from awares_agent.evals.schema import EvalSample, features
from PIL import Image, ImageDraw, ImageFont

Box = tuple[int, int, int, int]
"""``(x0, y0, x1, y1)`` in pixels."""

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont

CATEGORIES = ("document", "table", "receipt", "chart", "scene")
"""The kinds of image, in the round-robin order of :func:`generate`; each sample's ``category``."""

DEFAULT_FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
"""Where the DejaVu fonts are looked for; PIL's built-in font is used for any that is missing."""

SMALL_PX = (8, 9)
"""Font sizes (px em) of evidence that needs high resolution: ``(answers of digits and punctuation only,
answers with letters)``; 4-4.5 px in the half view. At 9 px the OCR still reads a number in the half view one
time in eight, and at 8 px it misses one code with letters in six even at full resolution."""

LARGE_PX = (28, 44)
"""Font sizes (px em, inclusive range) of evidence readable in the half view: 14-22 px there."""

DEFAULT_SIZE_RANGE = ((1000, 750), (1500, 1100))
"""``((min_width, min_height), (max_width, max_height))`` of the generated images."""

MIN_SIZE = (800, 600)
"""The smallest image size accepted: large evidence (up to 44 px) must fit, with its table or receipt."""

_ATTEMPTS = 20

FONT_FILES = {
    "sans": "DejaVuSans.ttf",
    "sans-bold": "DejaVuSans-Bold.ttf",
    "serif": "DejaVuSerif.ttf",
    "serif-bold": "DejaVuSerif-Bold.ttf",
    "mono": "DejaVuSansMono.ttf",
    "mono-bold": "DejaVuSansMono-Bold.ttf",
    "sans-condensed": "DejaVuSansCondensed.ttf",
    "sans-condensed-bold": "DejaVuSansCondensed-Bold.ttf",
    "serif-condensed": "DejaVuSerifCondensed.ttf",
    "serif-condensed-bold": "DejaVuSerifCondensed-Bold.ttf",
}
"""Font styles and their DejaVu file names."""

REGULAR_STYLES = ("sans", "serif", "mono", "sans-condensed", "serif-condensed")
ALL_STYLES = tuple(FONT_FILES)
# Small evidence values are drawn in regular weights: bold digits stay legible to OCR even at 4 px.
_SMALL_VALUE_STYLES = ("sans", "serif", "sans-condensed", "serif-condensed", "mono")


def _has_letters(text: str) -> bool:
    return any(c.isalpha() for c in text)


def _norm(text: str) -> str:
    """Text compared the way OCR output is: whitespace removed, case folded."""
    return "".join(text.split()).casefold()


# --- fonts ---------------------------------------------------------------------------------------------


class FontBook:
    """Fonts by style and pixel size: the DejaVu files found in ``font_dir``, else PIL's default font.

    Args:
        font_dir: folder holding the DejaVu ``.ttf`` files (:data:`FONT_FILES`); styles whose file is missing
            fall back to ``ImageFont.load_default(size)``, so generation runs anywhere (the images then differ
            from those made with DejaVu, but are still deterministic).
    """

    def __init__(self, font_dir: str | Path | None = DEFAULT_FONT_DIR) -> None:
        folder = Path(font_dir) if font_dir is not None else None
        self.paths: dict[str, Path] = {}
        if folder is not None:
            for style, name in FONT_FILES.items():
                if (folder / name).is_file():
                    self.paths[style] = folder / name
        self._cache: dict[tuple[str, int], Font] = {}

    @property
    def fallback(self) -> bool:
        """True when no DejaVu file was found and every style is PIL's default font."""
        return not self.paths

    def styles(self, wanted: Sequence[str]) -> list[str]:
        """The styles of ``wanted`` that have a file, or ``["default"]`` when none has."""
        return [s for s in wanted if s in self.paths] or ["default"]

    def font(self, style: str, size: int) -> Font:
        """The font of ``style`` (a key of :data:`FONT_FILES` or ``"default"``) at ``size`` px."""
        key = (style, size)
        if key not in self._cache:
            path = self.paths.get(style)
            self._cache[key] = (
                ImageFont.truetype(str(path), size) if path is not None else ImageFont.load_default(size)
            )
        return self._cache[key]

    def bold(self, style: str) -> str:
        """The bold variant of ``style`` if there is one (else ``style``)."""
        if style.endswith("-bold"):
            return style
        candidate = f"{style}-bold"
        return candidate if candidate in self.paths else style


_MEASURE = ImageDraw.Draw(Image.new("RGB", (1, 1)))


def _ink(x: float, y: float, text: str, font: Font) -> Box:
    """The ink box of ``text`` drawn at ``(x, y)`` (anchor left-ascender)."""
    x0, y0, x1, y1 = _MEASURE.textbbox((x, y), text, font=font)
    return math.floor(x0), math.floor(y0), math.ceil(x1), math.ceil(y1)


def _width(text: str, font: Font) -> int:
    return math.ceil(font.getlength(text))


def _line_height(font: Font) -> int:
    if isinstance(font, ImageFont.FreeTypeFont):
        ascent, descent = font.getmetrics()
        return ascent + descent
    return _ink(0, 0, "Ag", font)[3]


def _union(*boxes: Box) -> Box:
    return (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )


def _shift(box: Box, dx: int, dy: int) -> Box:
    return box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy


def _overlaps(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


# --- drawing blocks ------------------------------------------------------------------------------------


@dataclass
class _Block:
    """Drawing operations in block coordinates, placed on a page later as one unit."""

    ops: list[tuple[Any, ...]] = field(default_factory=list)
    bounds: Box | None = None
    evidence: Box | None = None
    texts: list[str] = field(default_factory=list)

    def _grow(self, box: Box) -> None:
        self.bounds = box if self.bounds is None else _union(self.bounds, box)

    def text(self, x: float, y: float, text: str, font: Font, fill: str) -> Box:
        """Draw ``text`` with its line box's top-left at ``(x, y)``; returns its ink box."""
        x, y = int(x), int(y)
        self.ops.append(("text", x, y, text, font, fill))
        self.texts.append(text)
        ink = _ink(x, y, text, font)
        self._grow(ink)
        return ink

    def rect(
        self, box: Box, fill: str | None = None, outline: str | None = None, width: int = 1, radius: int = 0
    ) -> None:
        self.ops.append(("rect", tuple(int(v) for v in box), fill, outline, width, radius))
        self._grow(tuple(int(v) for v in box))  # type: ignore[arg-type]

    def ellipse(self, box: Box, fill: str | None = None, outline: str | None = None, width: int = 1) -> None:
        self.ops.append(("ellipse", tuple(int(v) for v in box), fill, outline, width))
        self._grow(tuple(int(v) for v in box))  # type: ignore[arg-type]

    def line(self, points: Sequence[tuple[float, float]], fill: str, width: int = 1) -> None:
        pts = [(int(x), int(y)) for x, y in points]
        self.ops.append(("line", pts, fill, width))
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        half = max(1, width // 2 + 1)
        self._grow((min(xs) - half, min(ys) - half, max(xs) + half, max(ys) + half))

    def draw(self, draw: ImageDraw.ImageDraw, dx: int, dy: int) -> None:
        """Draw every operation, offset by ``(dx, dy)``."""
        for op in self.ops:
            kind = op[0]
            if kind == "text":
                _, x, y, text, font, fill = op
                draw.text((x + dx, y + dy), text, font=font, fill=fill)
            elif kind == "rect":
                _, box, fill, outline, width, radius = op
                shifted = _shift(box, dx, dy)
                if radius:
                    draw.rounded_rectangle(shifted, radius=radius, fill=fill, outline=outline, width=width)
                else:
                    draw.rectangle(shifted, fill=fill, outline=outline, width=width)
            elif kind == "ellipse":
                _, box, fill, outline, width = op
                draw.ellipse(_shift(box, dx, dy), fill=fill, outline=outline, width=width)
            elif kind == "line":
                _, pts, fill, width = op
                draw.line([(x + dx, y + dy) for x, y in pts], fill=fill, width=width)


class _Page:
    """An image being drawn, with the boxes already taken so that blocks do not overlap."""

    def __init__(self, size: tuple[int, int], background: str, margin: int = 16) -> None:
        self.img = Image.new("RGB", size, background)
        self.draw = ImageDraw.Draw(self.img)
        self.width, self.height = size
        self.area: Box = (margin, margin, size[0] - margin, size[1] - margin)
        self.occupied: list[Box] = []
        self.forbidden: list[str] = []  # normalized strings no distractor text may contain

    def allowed(self, block: _Block) -> bool:
        return not any(f in _norm(t) for t in block.texts for f in self.forbidden)

    def place(self, block: _Block, dx: int, dy: int, pad: int = 10) -> None:
        assert block.bounds is not None
        block.draw(self.draw, dx, dy)
        b = _shift(block.bounds, dx, dy)
        self.occupied.append((b[0] - pad, b[1] - pad, b[2] + pad, b[3] + pad))

    def try_place(
        self, block: _Block, rng: random.Random, *, area: Box | None = None, tries: int = 40
    ) -> bool:
        """Place ``block`` at a random free spot inside ``area`` (default: the page area); False if none."""
        if block.bounds is None or not self.allowed(block):
            return False
        ax0, ay0, ax1, ay1 = area or self.area
        bx0, by0, bx1, by1 = block.bounds
        if bx1 - bx0 > ax1 - ax0 or by1 - by0 > ay1 - ay0:
            return False
        for _ in range(tries):
            dx = rng.randint(ax0 - bx0, ax1 - bx1)
            dy = rng.randint(ay0 - by0, ay1 - by1)
            box = _shift(block.bounds, dx, dy)
            if not any(_overlaps(box, o) for o in self.occupied):
                self.place(block, dx, dy)
                return True
        return False

    def fill(
        self,
        rng: random.Random,
        makers: Sequence[tuple[float, Callable[[], _Block | None]]],
        *,
        max_blocks: int,
        max_failures: int = 25,
        area: Box | None = None,
    ) -> int:
        """Place distractor blocks from ``makers`` (weight, factory) until full; returns how many."""
        weights = [w for w, _ in makers]
        placed = failures = 0
        while placed < max_blocks and failures < max_failures:
            maker = rng.choices([m for _, m in makers], weights=weights)[0]
            block = maker()
            if block is not None and self.try_place(block, rng, area=area):
                placed += 1
            else:
                failures += 1
        return placed


# --- where the evidence goes ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Spot:
    """Where a sample's evidence should lie: a 3x3 grid cell, or straddling the centre line(s)."""

    row: int
    col: int
    straddle: str | None  # None, "v" (the vertical centre line), "h" or "both"


def _target(spot: _Spot, rng: random.Random, w: int, h: int) -> tuple[float, float]:
    tx = (spot.col + rng.uniform(0.1, 0.9)) * w / 3
    ty = (spot.row + rng.uniform(0.1, 0.9)) * h / 3
    if spot.straddle in ("v", "both"):
        tx = w / 2
    if spot.straddle in ("h", "both"):
        ty = h / 2
    return tx, ty


def _fits_quadrant(lo: int, hi: int, side: int, gap: int) -> int:
    """0 if ``[lo, hi)`` lies in one crop-set half of ``[0, side)``; else the shift that puts it there."""
    half = side // 2
    if hi <= half - gap or lo >= side - half + gap:
        return 0
    if (lo + hi) / 2 < side / 2:
        return (half - gap) - hi
    return (side - half + gap) - lo


def _crosses(lo: int, hi: int, side: int, gap: int) -> bool:
    half = side // 2
    return lo < half - gap and hi > side - half + gap


class _NoFit(Exception):
    """The evidence block is larger than the page: the sample is drawn again."""


def _place_evidence(page: _Page, block: _Block, spot: _Spot, rng: random.Random, tries: int = 30) -> Box:
    """Place ``block`` so that its evidence box lands where ``spot`` asks; returns that box on the page."""
    assert block.bounds is not None and block.evidence is not None
    ax0, ay0, ax1, ay1 = page.area
    bx0, by0, bx1, by1 = block.bounds
    if bx1 - bx0 > ax1 - ax0 or by1 - by0 > ay1 - ay0:
        raise _NoFit
    ex0, ey0, ex1, ey1 = block.evidence
    w, h = page.width, page.height
    gap = 3

    def clamp(dx: float, dy: float) -> tuple[int, int]:
        dx = min(max(dx, ax0 - bx0), max(ax0 - bx0, ax1 - bx1))
        dy = min(max(dy, ay0 - by0), max(ay0 - by0, ay1 - by1))
        return round(dx), round(dy)

    best: tuple[int, int] | None = None
    for _ in range(tries):
        tx, ty = _target(spot, rng, w, h)
        jitter = rng.uniform(-0.3, 0.3)
        dx, dy = clamp(
            tx - (ex0 + ex1) / 2 + jitter * (ex1 - ex0), ty - (ey0 + ey1) / 2 + jitter * (ey1 - ey0)
        )
        if best is None:
            best = dx, dy
        if spot.straddle is None:
            dx, dy = clamp(dx + _fits_quadrant(ex0 + dx, ex1 + dx, w, gap), dy)
            dx, dy = clamp(dx, dy + _fits_quadrant(ey0 + dy, ey1 + dy, h, gap))
            ok = not _fits_quadrant(ex0 + dx, ex1 + dx, w, gap) and not _fits_quadrant(
                ey0 + dy, ey1 + dy, h, gap
            )
        else:
            ok = (spot.straddle == "h" or _crosses(ex0 + dx, ex1 + dx, w, gap)) and (
                spot.straddle == "v" or _crosses(ey0 + dy, ey1 + dy, h, gap)
            )
        if ok:
            best = dx, dy
            break
    assert best is not None
    page.place(block, *best)
    return _shift(block.evidence, *best)


# --- content -------------------------------------------------------------------------------------------

_CODE_CHARS = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
_INKS = ("#111111", "#1c1c1c", "#262626", "#0d1b4c", "#13315c", "#3e2723", "#1b4d2b", "#4a148c", "#7f1010")
_PAPERS = ("#ffffff", "#fcfbf6", "#f6f4ec", "#eef3f8", "#f9f2e7", "#f1f7ef", "#fffdf0")
_DESKS = ("#8d6e63", "#6d4c41", "#5d6d7e", "#90a4ae", "#a1887f", "#4e5b66", "#b0a89a", "#37474f")
_ACCENTS = ("#1565c0", "#2e7d32", "#c62828", "#ef6c00", "#6a1b9a", "#00838f", "#ad1457", "#4e342e", "#455a64")

_FILLER = (
    "please note that all items shipped under this order remain the property of the seller until payment is "
    "received in full returns are accepted within thirty days of delivery in the original packaging contact "
    "our office during business hours for any questions about billing terms warranty service or delivery "
    "schedules the information on this page is provided as a courtesy only and may change without notice "
    "signature required upon receipt keep this copy for your records goods inspected and approved quality "
    "control passed standard shipping applies handle with care store in a cool dry place"
)
_WORDS = tuple(_FILLER.split())


def _digits(rng: random.Random, n: int) -> str:
    return str(rng.randint(10 ** (n - 1), 10**n - 1))


def _code(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(_CODE_CHARS) for _ in range(n))


def _letters(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("ABCDEFGHJKLMNPRSTUVWXYZ") for _ in range(n))


def _date(rng: random.Random) -> str:
    y, m, d = rng.randint(2015, 2029), rng.randint(1, 12), rng.randint(1, 28)
    months = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
    return rng.choice([f"{y}-{m:02d}-{d:02d}", f"{d:02d}/{m:02d}/{y}", f"{d:02d} {months[m - 1]} {y}"])


def _money(rng: random.Random, lo: float = 100, hi: float = 99999) -> str:
    return f"{rng.uniform(lo, hi):,.2f}"


def _sentence(rng: random.Random, n_words: int) -> str:
    start = rng.randrange(len(_WORDS))
    words = [_WORDS[(start + i) % len(_WORDS)] for i in range(n_words)]
    text = " ".join(words)
    return text[0].upper() + text[1:] + "."


@dataclass(frozen=True)
class _Field:
    label: str
    value: Callable[[random.Random], str]
    questions: tuple[str, ...]


_FIELDS = (
    _Field("Invoice No", lambda r: _digits(r, r.choice((5, 6))), ("What is the invoice number?",)),
    _Field("Issue Date", _date, ("When was the document issued?", "What is the issue date?")),
    _Field("Due Date", _date, ("What is the due date?", "By what date is payment due?")),
    _Field("Account No", lambda r: f"AC-{_digits(r, 6)}", ("What is the account number?",)),
    _Field("Order ID", lambda r: f"ORD-{_digits(r, 5)}", ("What is the order ID?",)),
    _Field("Customer ID", lambda r: _code(r, 7), ("What is the customer ID?",)),
    _Field("Policy No", lambda r: f"{_letters(r, 2)}{_digits(r, 7)}", ("What is the policy number?",)),
    _Field("Tracking No", lambda r: f"1Z{_code(r, 8)}", ("What is the tracking number?",)),
    _Field("Reference", lambda r: f"REF-{_code(r, 5)}", ("What is the reference code?",)),
    _Field("Phone", lambda r: f"555-{_digits(r, 4)}", ("What phone number is given?",)),
    _Field("Amount Due", lambda r: _money(r, 100, 99999), ("What is the amount due?", "How much is due?")),
    _Field("Tax ID", lambda r: f"{_digits(r, 2)}-{_digits(r, 7)}", ("What is the tax ID?",)),
    _Field("PO Number", lambda r: f"PO{_digits(r, 6)}", ("What is the PO number?",)),
    _Field("Serial No", lambda r: f"SN{_code(r, 7)}", ("What is the serial number?",)),
    _Field("Employee ID", lambda r: f"E{_digits(r, 5)}", ("What is the employee ID?",)),
    _Field("Case No", lambda r: f"{r.randint(2015, 2029)}-{_digits(r, 5)}", ("What is the case number?",)),
    _Field("Batch", lambda r: f"B{_code(r, 5)}", ("What is the batch code?",)),
    _Field("Claim No", lambda r: f"CL{_digits(r, 6)}", ("What is the claim number?",)),
    _Field("Vehicle ID", lambda r: f"{_letters(r, 3)}-{_digits(r, 4)}", ("What is the vehicle ID?",)),
    _Field("Member No", lambda r: f"M{_digits(r, 6)}", ("What is the member number?",)),
    _Field("Shipment", lambda r: f"SH-{_code(r, 6)}", ("What is the shipment code?",)),
    _Field("Contract", lambda r: f"K{_digits(r, 3)}-{_digits(r, 3)}", ("What is the contract number?",)),
)
_FIELD_TEMPLATES = (
    "What does the form say for {label}?",
    "Read the {label} field.",
    "What value is given for {label}?",
    'What is written next to "{label}"?',
    "According to the document, what is the {label}?",
)
# fmt: off
_TITLES = (
    "INVOICE", "PURCHASE ORDER", "SHIPPING FORM", "APPLICATION FORM", "ACCOUNT STATEMENT", "CLAIM FORM",
    "DELIVERY NOTE", "SERVICE REPORT", "REGISTRATION",
)
_COMPANIES = (
    "Northwind Traders", "Acme Supply Co.", "Blue Harbor Logistics", "Greenfield Works", "Summit Office Ltd",
    "Riverside Clinic", "Polar Freight", "Cedar & Stone", "Helios Energy", "Orchard Foods",
)
_ROW_LABELS = (
    "North", "South", "East", "West", "Central", "Widget", "Gadget", "Sprocket", "Bracket", "Valve", "Gasket",
    "Spindle", "Rotor", "Oslo", "Lima", "Cairo", "Perth", "Quito", "Dakar", "Hanoi", "Porto", "Riga", "Turin",
    "Alpha", "Bravo", "Delta", "Omega", "Line A", "Line B", "Site 4", "Plant 7", "Team Red", "Team Blue",
)
# fmt: on
_COLUMN_SETS = (
    ("Q1", "Q2", "Q3", "Q4"),
    ("Jan", "Feb", "Mar", "Apr", "May"),
    ("2021", "2022", "2023", "2024"),
    ("Units", "Revenue", "Stock", "Price"),
    ("Code", "Lot", "Bin", "Ref"),
    ("Mon", "Tue", "Wed", "Thu", "Fri"),
    ("Min", "Max", "Mean"),
)
_TABLE_TEMPLATES = (
    "In the table, what is the {col} value for {row}?",
    "What does the table list under {col} for {row}?",
    'Read the cell in row "{row}" and column "{col}".',
    "According to the table, what is the {col} entry of {row}?",
)
# fmt: off
_ITEMS = (
    "Espresso", "Bagel", "Oat milk", "Notebook", "AA batteries", "Olive oil", "Green tea", "Sourdough",
    "Apples 1kg", "Dish soap", "Pasta", "Tomatoes", "Coffee beans", "Yogurt", "Printer paper", "Light bulb",
    "Cheddar", "Rice 2kg", "Shampoo", "Orange juice", "Croissant", "Pencils", "Tape", "Honey",
)
# fmt: on
_ITEM_TEMPLATES = (
    "How much did the {item} cost?",
    "What is the price of {item} on the receipt?",
    "What amount does the receipt list for {item}?",
    "What does the receipt charge for {item}?",
)
_TOTAL_TEMPLATES = (
    "What is the total on the receipt?",
    "What is the receipt's TOTAL?",
    "How much is the total amount on the receipt?",
)
_STORES = ("CORNER MARKET", "CITY HARDWARE", "CAFE LUMEN", "FRESHWAY", "BOOK NOOK", "QUICKMART", "PAPER & CO")
# fmt: off
_CATEGORIES_POOL = (
    "Apples", "Pears", "Plums", "Kiwis", "Figs", "Limes", "Boston", "Denver", "Austin", "Tampa", "Fresno",
    "Reno", "Solar", "Wind", "Hydro", "Coal", "Gas", "Nuclear", "Cars", "Vans", "Bikes", "Buses", "Trams",
    "Ferries", "Maple", "Birch", "Cedar", "Pine", "Oak", "Elm", "Ruby", "Opal", "Jade", "Onyx", "Topaz",
    "Amber",
)
_CHART_TITLES = (
    "Sales by region", "Output per site", "Monthly volume", "Energy mix", "Fleet size", "Orders per store",
    "Visitors", "Units shipped",
)
# fmt: on
_CHART_TEMPLATES = (
    "What value is shown for {cat} in the bar chart?",
    "What is the value of the {cat} bar?",
    "What number is printed for the {cat} bar?",
    "According to the chart, what is the value for {cat}?",
)
# fmt: off
_SIGNS = (
    "GATE", "ROOM", "PLATFORM", "BAY", "DOCK", "LOT", "ZONE", "TRACK", "LEVEL", "ROUTE", "UNIT", "HANGAR",
    "PIER", "WARD", "BLOCK", "SECTOR", "AISLE", "STAND",
)
# fmt: on
_SIGN_TEMPLATES = (
    "What is the {lower} number on the {LABEL} sign?",
    "Which {lower} does the sign indicate?",
    'What code follows "{LABEL}" on the sign?',
    "Read the {LABEL} sign: what is written after {LABEL}?",
)
_SHOP_WORDS = ("BAKERY", "PHARMACY", "BOOKS", "CAFE", "HOTEL", "MARKET", "TICKETS", "INFO", "TAXI", "PARKING")
_SIGN_COLOURS = (
    ("#1565c0", "#ffffff"),
    ("#2e7d32", "#ffffff"),
    ("#b71c1c", "#ffffff"),
    ("#fdd835", "#111111"),
    ("#ffffff", "#111111"),
    ("#212121", "#ffeb3b"),
    ("#ef6c00", "#111111"),
    ("#37474f", "#ffffff"),
)


def _sign_code(rng: random.Random) -> str:
    pattern = rng.randrange(4)
    if pattern == 0:
        return f"{_letters(rng, 1)}{_digits(rng, 3)}"
    if pattern == 1:
        return f"{_letters(rng, 1)}-{_digits(rng, 3)}"
    if pattern == 2:
        return f"{rng.randint(1, 9)}{_letters(rng, 1)}-{_digits(rng, 3)}"
    return f"{_digits(rng, 3)}{_letters(rng, 1)}"


def _chart_value(rng: random.Random, style: int) -> tuple[str, float]:
    if style == 0:
        v = rng.randint(1000, 9999)
        return f"{v:,}", float(v)
    if style == 1:
        v = round(rng.uniform(10, 99.99), 2)
        return f"{v:.2f}", v
    v = rng.randint(10000, 99999)
    return f"{v:,}", float(v)


def _distinct(rng: random.Random, make: Callable[[], str], k: int, avoid: Iterable[str] = ()) -> list[str]:
    """``k`` strings from ``make`` none of which contains another (normalized) or any of ``avoid``."""
    out: list[str] = []
    banned = [_norm(a) for a in avoid]
    for _ in range(200 * k):
        if len(out) == k:
            break
        s = make()
        n = _norm(s)
        if any(n in o or o in n for o in [_norm(x) for x in out]) or any(n in b or b in n for b in banned):
            continue
        out.append(s)
    if len(out) < k:
        raise RuntimeError("could not draw distinct values")
    return out


# --- one sample ----------------------------------------------------------------------------------------


@dataclass
class _Ctx:
    """What one sample's builder needs."""

    rng: random.Random
    fonts: FontBook
    size: tuple[int, int]
    needs_hr: bool
    spot: _Spot
    small_px: tuple[int, int]
    large_px: tuple[int, int]
    label_same_size: bool

    def evidence_fonts(self, *, letters: bool) -> tuple[Font, Font]:
        """``(label_font, value_font)`` of the evidence; ``letters``: whether the answer has letters."""
        rng = self.rng
        if self.needs_hr:
            style = rng.choice(self.fonts.styles(_SMALL_VALUE_STYLES))
            size = self.small_px[1] if letters else self.small_px[0]
            label_size = size if self.label_same_size else rng.randint(*self.large_px)
        else:
            style = rng.choice(self.fonts.styles(ALL_STYLES))
            size = rng.randint(*self.large_px)
            label_size = size
        label_style = self.fonts.bold(style) if rng.random() < 0.4 else style
        return self.fonts.font(label_style, label_size), self.fonts.font(style, size)

    def mixed_font(self, *, bold: bool | None = None, size: int | None = None) -> Font:
        """A distractor font: any style, a size small (8-10), medium (12-22) or large (26-48)."""
        rng = self.rng
        if size is None:
            r = rng.random()
            size = (
                rng.randint(8, 10) if r < 0.35 else rng.randint(12, 22) if r < 0.75 else rng.randint(26, 48)
            )
        style = rng.choice(self.fonts.styles(REGULAR_STYLES))
        if bold or (bold is None and rng.random() < 0.25):
            style = self.fonts.bold(style)
        return self.fonts.font(style, size)


@dataclass
class _Result:
    image: Image.Image
    question: str
    answer: str
    bbox: Box


def _paragraph(ctx: _Ctx, ink: str, max_width: int, font: Font | None = None) -> _Block:
    rng = ctx.rng
    font = font or ctx.mixed_font(bold=False)
    lh = _line_height(font)
    block = _Block()
    y = 0
    for _ in range(rng.randint(1, 5)):
        words = _sentence(rng, rng.randint(4, 14)).split()
        line = ""
        for word in words:
            trial = f"{line} {word}".strip()
            if _width(trial, font) > max_width and line:
                break
            line = trial
        block.text(0, y, line, font, ink)
        y += int(lh * rng.uniform(1.15, 1.5))
    return block


def _field_block(
    ctx: _Ctx, label: str, value: str, label_font: Font, value_font: Font, ink: str, label_ink: str
) -> _Block:
    """A labelled field in one of several layouts; its evidence is the union of label and value."""
    rng = ctx.rng
    block = _Block()
    style = rng.choice(("colon", "tab", "stacked", "boxed"))
    lh = _line_height(value_font)
    if style == "colon":
        lb = block.text(0, 0, f"{label}:", label_font, label_ink)
        vb = block.text(lb[2] + _width(" ", value_font), 0, value, value_font, ink)
    elif style == "tab":
        lb = block.text(0, 0, label, label_font, label_ink)
        gap = int(value_font.size * rng.uniform(1.5, 4)) if hasattr(value_font, "size") else 30
        vb = block.text(lb[2] + gap, 0, value, value_font, ink)
    elif style == "stacked":
        lb = block.text(0, 0, label, label_font, label_ink)
        vb = block.text(0, lb[3] + max(2, lh // 4), value, value_font, ink)
    else:
        lb = block.text(0, 0, f"{label}:", label_font, label_ink)
        pad = max(3, lh // 4)
        x = lb[2] + 2 * pad
        w = _width(value, value_font) + 2 * pad
        block.rect((x, -pad // 2, x + w + int(rng.uniform(0, 3) * lh), lh + pad), outline="#777777", width=1)
        vb = block.text(x + pad, 0, value, value_font, ink)
    block.evidence = _union(lb, vb)
    return block


def _document(ctx: _Ctx) -> _Result:
    rng = ctx.rng
    w, h = ctx.size
    paper = rng.choice(_PAPERS)
    if rng.random() < 0.4:
        page = _Page(ctx.size, rng.choice(_DESKS))
        inset = rng.randint(20, 60)
        page.draw.rectangle((inset, inset, w - inset, h - inset), fill=paper)
        page.area = (inset + 24, inset + 24, w - inset - 24, h - inset - 24)
    else:
        page = _Page(ctx.size, paper, margin=rng.randint(24, 60))
    ink = rng.choice(_INKS)
    label_ink = ink if rng.random() < 0.6 else rng.choice(_INKS)
    fields = rng.sample(_FIELDS, k=12)
    main = fields[0]
    answer = main.value(rng)
    label_font, value_font = ctx.evidence_fonts(letters=_has_letters(answer))
    block = _field_block(ctx, main.label, answer, label_font, value_font, ink, label_ink)
    page.forbidden.append(_norm(answer))
    bbox = _place_evidence(page, block, ctx.spot, rng)

    title = _Block()
    tfont = ctx.mixed_font(bold=True, size=rng.randint(30, 56))
    tb = title.text(0, 0, rng.choice(_TITLES), tfont, rng.choice(_INKS))
    title.text(0, tb[3] + 10, rng.choice(_COMPANIES), ctx.mixed_font(size=rng.randint(14, 26)), ink)
    ax0, ay0, ax1, ay1 = page.area
    if not page.try_place(title, rng, area=(ax0, ay0, ax1, ay0 + (ay1 - ay0) // 4)):
        page.try_place(title, rng)

    others = iter(fields[1:])

    def field_maker() -> _Block | None:
        f = next(others, None)
        if f is None:
            return None
        font = ctx.mixed_font()
        lfont = ctx.fonts.font(ctx.fonts.bold(rng.choice(ctx.fonts.styles(REGULAR_STYLES))), font.size)
        return _field_block(ctx, f.label, f.value(rng), lfont, font, ink, label_ink)

    def rule_maker() -> _Block:
        b = _Block()
        b.line(
            [(0, 0), (rng.randint(150, max(200, (ax1 - ax0) // 2)), 0)], rng.choice(_INKS), rng.randint(1, 3)
        )
        return b

    def stamp_maker() -> _Block:
        b = _Block()
        colour = rng.choice(("#c62828", "#1565c0", "#2e7d32"))
        font = ctx.mixed_font(bold=True, size=rng.randint(22, 40))
        tb = b.text(0, 0, rng.choice(("PAID", "APPROVED", "COPY", "RECEIVED", "DRAFT")), font, colour)
        b.rect((tb[0] - 12, tb[1] - 10, tb[2] + 12, tb[3] + 10), outline=colour, width=3)
        return b

    page.fill(
        rng,
        [
            (4, field_maker),
            (4, lambda: _paragraph(ctx, ink, rng.randint(250, max(300, (ax1 - ax0) // 2)))),
            (1, rule_maker),
            (0.5, stamp_maker),
        ],
        max_blocks=22,
    )
    templates = (*main.questions, *_FIELD_TEMPLATES)
    question = rng.choice(templates).format(label=main.label)
    return _Result(page.img, question, answer, bbox)


def _table_block(
    ctx: _Ctx,
    rows: Sequence[str],
    cols: Sequence[str],
    cells: Sequence[Sequence[str]],
    head_font: Font,
    row_font: Font,
    cell_font: Font,
    ink: str,
    target: tuple[int, int] | None = None,
) -> _Block:
    """A table with a header row and a row-label column; ``target`` (row, col) sets the evidence."""
    rng = ctx.rng
    size = max(getattr(f, "size", 12) for f in (head_font, row_font, cell_font))
    padx, pady = max(4, int(size * 0.5)), max(2, int(size * 0.3))
    col0 = max(_width(r, row_font) for r in rows) + 2 * padx
    widths = [
        max(_width(c, head_font), *(_width(cells[i][j], cell_font) for i in range(len(rows)))) + 2 * padx
        for j, c in enumerate(cols)
    ]
    rh = max(_line_height(f) for f in (head_font, row_font, cell_font)) + 2 * pady
    total_w = col0 + sum(widths)
    total_h = rh * (len(rows) + 1)
    block = _Block()
    accent = rng.choice(_ACCENTS)
    header_fill = rng.choice(("#e3e8ef", "#eeeeee", "#dfeee2", "#f3e5d8", None))
    if header_fill:
        block.rect((0, 0, total_w, rh), fill=header_fill)
    if rng.random() < 0.5:
        for i in range(1, len(rows) + 1, 2):
            block.rect((0, i * rh, total_w, (i + 1) * rh), fill="#f4f4f4")
    grid = rng.choice(("full", "rows", "frame"))
    line_colour = rng.choice(("#555555", "#999999", accent))
    for i in range(len(rows) + 2):
        if grid != "frame" or i in (0, 1, len(rows) + 1):
            block.line([(0, i * rh), (total_w, i * rh)], line_colour, 1)
    xs = [0, col0]
    for wj in widths:
        xs.append(xs[-1] + wj)
    if grid == "full":
        for x in xs:
            block.line([(x, 0), (x, total_h)], line_colour, 1)
    head_boxes = [block.text(xs[j + 1] + padx, pady, c, head_font, ink) for j, c in enumerate(cols)]
    row_boxes = [block.text(padx, (i + 1) * rh + pady, r, row_font, ink) for i, r in enumerate(rows)]
    right = rng.random() < 0.5
    cell_boxes: dict[tuple[int, int], Box] = {}
    for i in range(len(rows)):
        for j in range(len(cols)):
            text = cells[i][j]
            x = xs[j + 2] - padx - _width(text, cell_font) if right else xs[j + 1] + padx
            cell_boxes[i, j] = block.text(x, (i + 1) * rh + pady, text, cell_font, ink)
    if target is not None:
        i, j = target
        block.evidence = _union(head_boxes[j], row_boxes[i], cell_boxes[i, j])
    return block


def _cell_maker(rng: random.Random) -> tuple[Callable[[], str], bool]:
    """A maker of table cells of one style, and whether its values have letters."""
    style = rng.randrange(4)
    if style == 0:
        return (lambda: f"{rng.randint(1000, 99999):,}"), False
    if style == 1:
        return (lambda: f"{rng.uniform(10, 999):.2f}"), False
    if style == 2:
        return (lambda: f"{_letters(rng, 1)}-{_digits(rng, 4)}"), True
    return (lambda: _code(rng, 5)), True


def _table(ctx: _Ctx) -> _Result:
    rng = ctx.rng
    page = _Page(ctx.size, rng.choice(_PAPERS), margin=rng.randint(24, 60))
    ink = rng.choice(_INKS)
    make, letters = _cell_maker(rng)
    label_font, value_font = ctx.evidence_fonts(letters=letters)
    row_pool = list(_ROW_LABELS)
    rng.shuffle(row_pool)
    cols_all = list(rng.choice(_COLUMN_SETS))
    if ctx.needs_hr:
        n_rows, n_cols = rng.randint(4, 9), rng.randint(3, len(cols_all))
    else:
        n_rows, n_cols = rng.randint(3, 5), rng.randint(2, min(4, len(cols_all)))
    for _ in range(10):
        rows = [row_pool.pop() for _ in range(n_rows)]
        cols = cols_all[:n_cols]
        cells_flat = _distinct(rng, make, n_rows * n_cols, avoid=[*rows, *cols])
        cells = [cells_flat[i * n_cols : (i + 1) * n_cols] for i in range(n_rows)]
        target = (rng.randrange(n_rows), rng.randrange(n_cols))
        block = _table_block(ctx, rows, cols, cells, label_font, label_font, value_font, ink, target)
        assert block.bounds is not None
        if block.bounds[2] - block.bounds[0] <= (page.area[2] - page.area[0]) * 0.9 or n_cols == 1:
            break
        n_cols -= 1
        row_pool.extend(rows)
    answer = cells[target[0]][target[1]]
    page.forbidden.append(_norm(answer))
    bbox = _place_evidence(page, block, ctx.spot, rng)

    def other_table() -> _Block | None:
        k_rows = rng.randint(3, 7)
        if len(row_pool) < k_rows:
            return None
        t_rows = [row_pool.pop() for _ in range(k_rows)]
        t_cols = list(rng.choice(_COLUMN_SETS))[: rng.randint(2, 4)]
        flat = _distinct(rng, _cell_maker(rng)[0], k_rows * len(t_cols), avoid=[answer])
        t_cells = [flat[i * len(t_cols) : (i + 1) * len(t_cols)] for i in range(k_rows)]
        font = ctx.mixed_font(size=rng.choice((9, 10, 12, 14, 16, 20, 24)))
        return _table_block(ctx, t_rows, t_cols, t_cells, font, font, font, rng.choice(_INKS))

    def heading() -> _Block:
        b = _Block()
        b.text(0, 0, rng.choice((*_TITLES, *_CHART_TITLES, *_COMPANIES)), ctx.mixed_font(bold=True), ink)
        return b

    ax0, _, ax1, _ = page.area
    page.fill(
        rng,
        [
            (2, other_table),
            (3, lambda: _paragraph(ctx, ink, rng.randint(250, max(300, (ax1 - ax0) // 2)))),
            (1, heading),
        ],
        max_blocks=16,
    )
    row, col = rows[target[0]], cols[target[1]]
    question = rng.choice(_TABLE_TEMPLATES).format(row=row, col=col)
    return _Result(page.img, question, answer, bbox)


def _receipt(ctx: _Ctx) -> _Result:
    rng = ctx.rng
    page = _Page(ctx.size, rng.choice(_DESKS), margin=30)
    w, h = ctx.size
    for _ in range(rng.randint(10, 40)):  # wood grain / texture
        y = rng.randint(0, h)
        page.draw.line(
            [(0, y), (w, y + rng.randint(-40, 40))], fill=rng.choice(_DESKS), width=rng.randint(1, 4)
        )
    label_font, value_font = ctx.evidence_fonts(letters=False)  # prices
    ink = rng.choice(_INKS[:4])
    style = rng.choice(ctx.fonts.styles(("mono", "sans-condensed", "sans", "mono-bold")))
    body_size = value_font.size if rng.random() < 0.7 else ctx.mixed_font().size
    body_font = ctx.fonts.font(style, body_size)
    n_items = rng.randint(3, 5) if not ctx.needs_hr else rng.randint(4, 9)
    store_font = ctx.fonts.font(ctx.fonts.bold(style), max(body_size + 4, rng.randint(18, 40)))
    pitch = int(max(_line_height(f) for f in (body_font, label_font, value_font)) * 1.35)
    room = page.area[3] - page.area[1] - int(_line_height(store_font) * 1.35) - 2 * max(12, body_size) - 40
    n_items = max(2, min(n_items, room // pitch - 6))  # six more lines: address... THANK YOU
    items = rng.sample(_ITEMS, n_items)
    for _ in range(1000):
        prices = [f"{rng.uniform(10, 250):.2f}" for _ in items]
        subtotal = sum(float(p) for p in prices)
        tax = round(subtotal * rng.choice((0.05, 0.07, 0.08, 0.1)), 2)
        money = [*prices, f"{subtotal:.2f}", f"{tax:.2f}", f"{subtotal + tax:.2f}"]
        norms = [_norm(m) for m in money]
        if all(a not in b for i, a in enumerate(norms) for j, b in enumerate(norms) if i != j):
            break
    else:
        raise RuntimeError("could not draw distinct prices")
    ev_index = rng.randrange(n_items) if rng.random() < 0.7 else n_items + 2
    lines: list[tuple[str, str | None, Font, Font]] = []  # left, right, left font, right font
    lines.append((rng.choice(_STORES), None, store_font, store_font))
    lines.append(
        (f"{rng.randint(1, 999)} {rng.choice(('Main St', 'High St', 'Oak Ave'))}", None, body_font, body_font)
    )
    lines.append((f"Receipt {_code(rng, 6)}", None, body_font, body_font))
    labels = [*items, "SUBTOTAL", "TAX", "TOTAL"]
    for k, (lab, price) in enumerate(zip(labels, money, strict=True)):
        if k == ev_index:
            lines.append((lab, price, label_font, value_font))
        else:
            lines.append((lab, price, body_font, body_font))
    lines.append(("THANK YOU", None, body_font, body_font))

    pad = max(12, body_size)
    inner = max(
        _width(left, lf) + (_width(right, rf) + 3 * max(lf.size, rf.size) if right else 0)
        for left, right, lf, rf in lines
    )
    width = inner + 2 * pad
    block = _Block()
    heights = [max(_line_height(lf), _line_height(rf)) for _, _, lf, rf in lines]
    total_h = sum(int(hh * 1.35) for hh in heights) + 2 * pad + 20
    paper = rng.choice(("#ffffff", "#fbfbf7", "#f7f5ee"))
    block.rect((6, 6, width + 6, total_h + 6), fill="#3a3a3a")  # a shadow
    block.rect((0, 0, width, total_h), fill=paper)
    y = pad
    for k, ((left, right, lf, rf), lh) in enumerate(zip(lines, heights, strict=True)):
        if right is None:
            block.text((width - _width(left, lf)) / 2, y, left, lf, ink)
        else:
            lb = block.text(pad, y, left, lf, ink)
            rb = block.text(width - pad - _width(right, rf), y, right, rf, ink)
            if k - 3 == ev_index:
                block.evidence = _union(lb, rb)
        y += int(lh * 1.35)
        if k in (2, 2 + n_items):
            block.line([(pad, y), (width - pad, y)], "#888888", 1)
            y += 8
    answer = money[ev_index]
    page.forbidden.append(_norm(answer))
    bbox = _place_evidence(page, block, ctx.spot, rng)

    def note() -> _Block:
        b = _Block()
        colour = rng.choice(("#fff59d", "#ffe0b2", "#c8e6c9", "#bbdefb", "#ffffff"))
        inner_block = _paragraph(ctx, rng.choice(_INKS), rng.randint(160, 420))
        assert inner_block.bounds is not None
        x0, y0, x1, y1 = inner_block.bounds
        b.rect((x0 - 14, y0 - 14, x1 + 14, y1 + 14), fill=colour)
        b.ops.extend(inner_block.ops)
        b.texts.extend(inner_block.texts)
        return b

    def coupon() -> _Block:
        b = _Block()
        font = ctx.mixed_font()
        lb = b.text(12, 10, f"SAVE {rng.randint(5, 50)}%", font, "#b71c1c")
        cb = b.text(12, lb[3] + 6, f"CODE {_code(rng, 6)}", font, "#111111")
        b.rect((0, 0, max(lb[2], cb[2]) + 12, cb[3] + 10), fill=None, outline="#b71c1c", width=2)
        b.ops.insert(0, ("rect", (0, 0, max(lb[2], cb[2]) + 12, cb[3] + 10), "#ffffff", None, 1, 0))
        return b

    def thing() -> _Block:
        b = _Block()
        s = rng.randint(60, 220)
        if rng.random() < 0.5:
            b.ellipse(
                (0, 0, s, s), fill=rng.choice(("#eeeeee", "#5d4037", "#fafafa")), outline="#333333", width=3
            )
        else:
            b.rect((0, 0, s, int(s * 1.8)), fill="#212121", radius=s // 8)
        return b

    page.fill(rng, [(3, note), (2, coupon), (2, thing)], max_blocks=12)
    if ev_index >= n_items:
        question = rng.choice(_TOTAL_TEMPLATES)
    else:
        question = rng.choice(_ITEM_TEMPLATES).format(item=items[ev_index])
    return _Result(page.img, question, answer, bbox)


def _bar_chart(
    ctx: _Ctx,
    cats: Sequence[str],
    values: Sequence[tuple[str, float]],
    cat_font: Font,
    value_font: Font,
    target: int | None,
    title: str,
) -> _Block:
    """A vertical or horizontal bar chart on a panel; ``target`` is the evidence bar's index."""
    rng = ctx.rng
    ink = rng.choice(_INKS[:5])
    tick_font = ctx.mixed_font(bold=False, size=rng.choice((8, 9, 10, 12, 14)))
    title_font = ctx.mixed_font(bold=True, size=rng.randint(14, 36))
    colours = [rng.choice(_ACCENTS)] * len(cats) if rng.random() < 0.5 else rng.sample(_ACCENTS, len(cats))
    vmax = max(v for _, v in values)
    step = 10 ** math.floor(math.log10(vmax))
    top = math.ceil(vmax * 1.15 / step) * step
    block = _Block()
    tb = block.text(0, 0, title, title_font, ink)
    y0 = tb[3] + 12
    lh_cat, lh_val = _line_height(cat_font), _line_height(value_font)
    boxes: list[tuple[Box, Box]] = []
    if rng.random() < 0.6:  # vertical bars
        slot = max(max(_width(c, cat_font) for c in cats), max(_width(v, value_font) for v, _ in values)) + 16
        slot = max(slot, 30)
        plot_h = rng.randint(140, 380)
        ticks = [f"{top * k / 4:g}" for k in range(5)]
        axis_x = max(_width(t, tick_font) for t in ticks) + 10
        base = y0 + lh_val + 8 + plot_h
        for k, t in enumerate(ticks):
            ty = base - plot_h * k / 4
            block.text(axis_x - 6 - _width(t, tick_font), ty - _line_height(tick_font) / 2, t, tick_font, ink)
            block.line([(axis_x, ty), (axis_x + slot * len(cats) + 10, ty)], "#dddddd", 1)
        block.line([(axis_x, base - plot_h - 4), (axis_x, base)], ink, 2)
        block.line([(axis_x, base), (axis_x + slot * len(cats) + 10, base)], ink, 2)
        for i, (cat, (vtext, v)) in enumerate(zip(cats, values, strict=True)):
            x = axis_x + 10 + i * slot
            bh = max(2, int(plot_h * v / top))
            block.rect((x + 4, base - bh, x + slot - 4, base), fill=colours[i])
            vb = block.text(
                x + (slot - _width(vtext, value_font)) / 2, base - bh - lh_val - 2, vtext, value_font, ink
            )
            cb = block.text(x + (slot - _width(cat, cat_font)) / 2, base + 6, cat, cat_font, ink)
            boxes.append((cb, vb))
        if rng.random() < 0.5:
            block.text(
                0, base + lh_cat + 14, rng.choice(("Units", "Count", "Value", "Total")), tick_font, ink
            )
    else:  # horizontal bars
        label_w = max(_width(c, cat_font) for c in cats) + 12
        bar_h = max(lh_cat, lh_val) + 8
        plot_w = rng.randint(220, 520)
        for i, (cat, (vtext, v)) in enumerate(zip(cats, values, strict=True)):
            y = y0 + i * (bar_h + 8)
            cb = block.text(label_w - 8 - _width(cat, cat_font), y + (bar_h - lh_cat) / 2, cat, cat_font, ink)
            bw = max(2, int(plot_w * v / top))
            block.rect((label_w, y, label_w + bw, y + bar_h), fill=colours[i])
            vb = block.text(label_w + bw + 6, y + (bar_h - lh_val) / 2, vtext, value_font, ink)
            boxes.append((cb, vb))
        block.line([(label_w, y0 - 4), (label_w, y0 + len(cats) * (bar_h + 8))], ink, 2)
    assert block.bounds is not None
    x0, by0, x1, by1 = block.bounds
    panel = _Block()
    panel.rect((x0 - 16, by0 - 16, x1 + 16, by1 + 16), fill="#ffffff", outline="#cccccc", width=1, radius=8)
    panel.ops.extend(block.ops)
    panel.texts.extend(block.texts)
    panel._grow(block.bounds)
    if target is not None:
        panel.evidence = _union(*boxes[target])
    return panel


def _chart(ctx: _Ctx) -> _Result:
    rng = ctx.rng
    page = _Page(ctx.size, rng.choice(("#f4f6f8", "#eceff1", "#ffffff", "#f5f5f0", "#e8eef5")), margin=24)
    cat_pool = list(_CATEGORIES_POOL)
    rng.shuffle(cat_pool)
    label_font, value_font = ctx.evidence_fonts(letters=False)  # numbers
    n = rng.randint(4, 7) if ctx.needs_hr else rng.randint(3, 5)
    cats = [cat_pool.pop() for _ in range(n)]
    style = rng.randrange(3)
    texts = _distinct(rng, lambda: _chart_value(rng, style)[0], n, avoid=cats)
    values = [(t, float(t.replace(",", ""))) for t in texts]
    target = rng.randrange(n)
    block = _bar_chart(ctx, cats, values, label_font, value_font, target, rng.choice(_CHART_TITLES))
    answer = values[target][0]
    page.forbidden.append(_norm(answer))
    bbox = _place_evidence(page, block, ctx.spot, rng)

    def other_chart() -> _Block | None:
        k = rng.randint(3, 6)
        if len(cat_pool) < k:
            return None
        o_cats = [cat_pool.pop() for _ in range(k)]
        o_style = rng.randrange(3)
        o_texts = _distinct(rng, lambda: _chart_value(rng, o_style)[0], k, avoid=[answer])
        o_values = [(t, float(t.replace(",", ""))) for t in o_texts]
        font = ctx.mixed_font(bold=False, size=rng.choice((9, 10, 12, 14, 18, 24, 30)))
        return _bar_chart(ctx, o_cats, o_values, font, font, None, rng.choice(_CHART_TITLES))

    def kpi() -> _Block:
        b = _Block()
        lf = ctx.mixed_font(size=rng.randint(10, 20))
        vf = ctx.mixed_font(bold=True, size=rng.randint(24, 48))
        lb = b.text(
            14, 12, rng.choice(("Revenue", "Users", "Orders", "Uptime", "Growth", "Churn")), lf, "#555555"
        )
        vb = b.text(14, lb[3] + 8, f"{rng.uniform(1, 99):.1f}{rng.choice(('k', 'M', '%'))}", vf, "#111111")
        b.ops.insert(0, ("rect", (0, 0, max(lb[2], vb[2]) + 14, vb[3] + 12), "#ffffff", "#cccccc", 1, 6))
        b._grow((0, 0, max(lb[2], vb[2]) + 14, vb[3] + 12))
        return b

    ink = rng.choice(_INKS)
    ax0, _, ax1, _ = page.area
    page.fill(
        rng,
        [
            (3, other_chart),
            (2, kpi),
            (2, lambda: _paragraph(ctx, ink, rng.randint(220, max(260, (ax1 - ax0) // 3)))),
        ],
        max_blocks=14,
    )
    question = rng.choice(_CHART_TEMPLATES).format(cat=cats[target])
    return _Result(page.img, question, answer, bbox)


def _sign_block(
    ctx: _Ctx,
    label: str,
    code: str,
    label_font: Font,
    code_font: Font,
    colours: tuple[str, str],
    evidence: bool,
) -> _Block:
    rng = ctx.rng
    fill, ink = colours
    block = _Block()
    size = max(getattr(label_font, "size", 12), getattr(code_font, "size", 12))
    pad = max(4, int(size * 0.45))
    if rng.random() < 0.5:  # one line: "GATE B274"
        lb = block.text(pad, pad, label, label_font, ink)
        cb = block.text(lb[2] + _width("  ", code_font), pad, code, code_font, ink)
    else:  # label above the code
        lw, cw = _width(label, label_font), _width(code, code_font)
        inner = max(lw, cw)
        lb = block.text(pad + (inner - lw) / 2, pad, label, label_font, ink)
        cb = block.text(pad + (inner - cw) / 2, lb[3] + max(2, pad // 2), code, code_font, ink)
    x0, y0, x1, y1 = _union(lb, cb)
    plate = (x0 - pad, y0 - pad, x1 + pad, y1 + pad)
    outline = "#ffffff" if fill in ("#212121", "#37474f", "#1565c0") else "#333333"
    block.ops.insert(0, ("rect", plate, fill, outline, max(1, size // 10), max(2, pad // 2)))
    block._grow(plate)
    if rng.random() < 0.5:  # a post under the sign
        px = (plate[0] + plate[2]) // 2
        block.rect(
            (px - max(2, size // 6), plate[3], px + max(2, size // 6), plate[3] + rng.randint(20, 120)),
            fill="#616161",
        )
    if evidence:
        block.evidence = _union(lb, cb)
    return block


def _scene(ctx: _Ctx) -> _Result:
    rng = ctx.rng
    w, h = ctx.size
    page = _Page(ctx.size, "#87ceeb", margin=20)
    sky_top = rng.choice(((90, 150, 220), (40, 60, 120), (200, 220, 240), (250, 180, 120)))
    sky_bottom = rng.choice(((200, 230, 250), (250, 220, 180), (170, 190, 210)))
    horizon = int(h * rng.uniform(0.35, 0.65))
    for y in range(horizon):
        t = y / max(1, horizon - 1)
        colour = tuple(int(a + (b - a) * t) for a, b in zip(sky_top, sky_bottom, strict=True))
        page.draw.line([(0, y), (w, y)], fill=colour)
    page.draw.rectangle(
        (0, horizon, w, h), fill=rng.choice(("#6d8b3a", "#7a7a7a", "#9e8b6e", "#556b2f", "#5f6a72"))
    )
    if rng.random() < 0.6:
        page.draw.polygon(
            [
                (w * rng.uniform(0.3, 0.45), h),
                (w * rng.uniform(0.45, 0.5), horizon),
                (w * rng.uniform(0.5, 0.55), horizon),
                (w * rng.uniform(0.55, 0.7), h),
            ],
            fill="#4a4a4a",
        )
    sun = rng.randint(40, 120)
    sx, sy = rng.randint(0, w), rng.randint(0, max(1, horizon // 2))
    page.draw.ellipse(
        (sx - sun, sy - sun, sx + sun, sy + sun), fill=rng.choice(("#fff59d", "#ffcc80", "#ffffff"))
    )
    for _ in range(rng.randint(4, 12)):  # buildings with windows
        bw, bh = rng.randint(80, 300), rng.randint(120, max(120, int(horizon * 0.9)))
        bx = rng.randint(-40, w)
        colour = rng.choice(("#8d6e63", "#a1887f", "#b0bec5", "#78909c", "#bcaaa4", "#d7ccc8", "#546e7a"))
        page.draw.rectangle((bx, horizon - bh, bx + bw, horizon + 10), fill=colour, outline="#444444")
        win = rng.choice(("#fff9c4", "#90caf9", "#455a64"))
        for wy in range(horizon - bh + 15, horizon - 20, 36):
            for wx in range(bx + 12, bx + bw - 20, 32):
                page.draw.rectangle((wx, wy, wx + 16, wy + 20), fill=win)
    for _ in range(rng.randint(3, 10)):  # trees
        tx, ty = rng.randint(0, w), rng.randint(horizon, h)
        r = rng.randint(25, 90)
        page.draw.rectangle((tx - r // 8, ty - r, tx + r // 8, ty + r // 2), fill="#5d4037")
        page.draw.ellipse(
            (tx - r, ty - 2 * r, tx + r, ty), fill=rng.choice(("#2e7d32", "#388e3c", "#1b5e20", "#558b2f"))
        )

    labels = list(_SIGNS)
    rng.shuffle(labels)
    label = labels.pop()
    answer = _sign_code(rng)
    label_font, code_font = ctx.evidence_fonts(letters=_has_letters(answer))
    if not ctx.needs_hr:  # signs are mostly bold
        label_font = ctx.fonts.font(
            ctx.fonts.bold(rng.choice(ctx.fonts.styles(REGULAR_STYLES))), label_font.size
        )
    block = _sign_block(ctx, label, answer, label_font, code_font, rng.choice(_SIGN_COLOURS), evidence=True)
    page.forbidden.append(_norm(answer))
    bbox = _place_evidence(page, block, ctx.spot, rng)

    def other_sign() -> _Block | None:
        if not labels:
            return None
        font = ctx.mixed_font(bold=rng.random() < 0.6)
        code = _distinct(rng, lambda: _sign_code(rng), 1, avoid=[answer])[0]
        return _sign_block(ctx, labels.pop(), code, font, font, rng.choice(_SIGN_COLOURS), evidence=False)

    def shop_sign() -> _Block:
        font = ctx.mixed_font(bold=True, size=rng.randint(14, 48))
        b = _Block()
        tb = b.text(0, 0, rng.choice(_SHOP_WORDS), font, "#ffffff")
        b.ops.insert(
            0, ("rect", (tb[0] - 10, tb[1] - 8, tb[2] + 10, tb[3] + 8), rng.choice(_ACCENTS), None, 1, 4)
        )
        b._grow((tb[0] - 10, tb[1] - 8, tb[2] + 10, tb[3] + 8))
        return b

    def poster() -> _Block:
        inner = _paragraph(ctx, "#111111", rng.randint(140, 360))
        assert inner.bounds is not None
        x0, y0, x1, y1 = inner.bounds
        b = _Block()
        b.rect(
            (x0 - 12, y0 - 12, x1 + 12, y1 + 12),
            fill=rng.choice(("#ffffff", "#fff8e1", "#e3f2fd")),
            outline="#333333",
        )
        b.ops.extend(inner.ops)
        b.texts.extend(inner.texts)
        return b

    def plate() -> _Block:
        b = _Block()
        font = ctx.mixed_font(bold=True, size=rng.randint(9, 30))
        text = f"{_letters(rng, 2)} {_digits(rng, 4)}"
        tb = b.text(0, 0, text, font, "#111111")
        car_w = (tb[2] - tb[0]) * 4
        car_h = int(car_w * 0.45)
        cx = (tb[0] + tb[2]) // 2
        body = (cx - car_w // 2, tb[3] + 8 - car_h, cx + car_w // 2, tb[3] + 8 + car_h // 4)
        b.ops.insert(0, ("rect", body, rng.choice(_ACCENTS), None, 1, car_h // 5))
        b.ops.insert(1, ("rect", (tb[0] - 6, tb[1] - 4, tb[2] + 6, tb[3] + 4), "#ffffff", "#111111", 1, 2))
        b._grow(body)
        return b

    page.fill(rng, [(4, other_sign), (2, shop_sign), (2, poster), (1, plate)], max_blocks=14)
    question = rng.choice(_SIGN_TEMPLATES).format(lower=label.lower(), LABEL=label)
    return _Result(page.img, question, answer, bbox)


_BUILDERS: dict[str, Callable[[_Ctx], _Result]] = {
    "document": _document,
    "table": _table,
    "receipt": _receipt,
    "chart": _chart,
    "scene": _scene,
}


# --- the public API ------------------------------------------------------------------------------------


def _stratified(seed: int, key: str, block: int, options: Sequence[Any], index: int) -> Any:
    """``options`` shuffled per block of ``len(options)`` draws, so that every block holds each once."""
    order = list(options)
    random.Random(f"awares-synthetic:{seed}:{key}:{block}").shuffle(order)
    return order[index]


def _needs_hr(seed: int, kind: str, j: int, hr_fraction: float) -> bool:
    """Whether the ``j``-th sample of ``kind`` needs high resolution: exactly ``hr_fraction`` per 20."""
    n_hr = round(20 * hr_fraction)
    return _stratified(seed, f"hr:{kind}", j // 20, [True] * n_hr + [False] * (20 - n_hr), j % 20)


def _spot(seed: int, kind: str, j: int, rng: random.Random, straddle_fraction: float) -> _Spot:
    cell = _stratified(seed, f"cell:{kind}", j // 9, range(9), j % 9)
    straddle = rng.choice(("v", "h", "both")) if rng.random() < straddle_fraction else None
    return _Spot(cell // 3, cell % 3, straddle)


def iter_samples(
    n: int,
    *,
    seed: int = 0,
    size_range: tuple[tuple[int, int], tuple[int, int]] = DEFAULT_SIZE_RANGE,
    hr_fraction: float = 0.4,
    straddle_fraction: float = 0.2,
    categories: Sequence[str] = CATEGORIES,
    small_px: tuple[int, int] = SMALL_PX,
    large_px: tuple[int, int] = LARGE_PX,
    label_same_size: bool = True,
    font_dir: str | Path | None = DEFAULT_FONT_DIR,
) -> Iterator[EvalSample]:
    """Yield the samples of :func:`generate` one at a time (same arguments), holding one image at a time."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not 0 <= hr_fraction <= 1 or not 0 <= straddle_fraction <= 1:
        raise ValueError("hr_fraction and straddle_fraction must be in [0, 1]")
    unknown = [c for c in categories if c not in _BUILDERS]
    if unknown or not categories:
        raise ValueError(f"unknown categories {unknown}; use some of {', '.join(CATEGORIES)}")
    (wmin, hmin), (wmax, hmax) = size_range
    if not (MIN_SIZE[0] <= wmin <= wmax and MIN_SIZE[1] <= hmin <= hmax):
        raise ValueError(f"size_range {size_range!r} must be ordered and at least {MIN_SIZE}")
    fonts = FontBook(font_dir)
    for i in range(n):
        kind = categories[i % len(categories)]
        j = i // len(categories)
        needs_hr = _needs_hr(seed, kind, j, hr_fraction)
        for attempt in range(_ATTEMPTS):  # a layout that does not fit the image is drawn again
            rng = random.Random(f"awares-synthetic:{seed}:{i}" + (f":{attempt}" if attempt else ""))
            size = (rng.randint(wmin, wmax), rng.randint(hmin, hmax))
            spot = _spot(seed, kind, j, rng, straddle_fraction)
            ctx = _Ctx(rng, fonts, size, needs_hr, spot, small_px, large_px, label_same_size)
            try:
                result = _BUILDERS[kind](ctx)
            except _NoFit:
                continue
            x0, y0, x1, y1 = result.bbox
            if 0 <= x0 < x1 <= size[0] and 0 <= y0 < y1 <= size[1]:
                break
        else:
            raise RuntimeError(
                f"sample {i} ({kind}) does not fit a {size[0]}x{size[1]} image; use larger sizes"
            )
        yield EvalSample(
            id=f"syn-{i:06d}",
            image=result.image,
            question=result.question,
            answers=[result.answer],
            bbox=result.bbox,
            needs_hr=needs_hr,
            metric="exact",
            category=kind,
        )


def generate(
    n: int,
    *,
    seed: int = 0,
    size_range: tuple[tuple[int, int], tuple[int, int]] = DEFAULT_SIZE_RANGE,
    hr_fraction: float = 0.4,
    straddle_fraction: float = 0.2,
    categories: Sequence[str] = CATEGORIES,
    small_px: tuple[int, int] = SMALL_PX,
    large_px: tuple[int, int] = LARGE_PX,
    label_same_size: bool = True,
    font_dir: str | Path | None = DEFAULT_FONT_DIR,
) -> list[EvalSample]:
    """Generate ``n`` synthetic samples, deterministically from ``seed``.

    Sample ``i`` depends only on ``seed`` and ``i`` (not on ``n``), so a smaller ``n`` gives a prefix.

    Args:
        n: number of samples; ids are ``syn-000000`` onwards.
        seed: the seed; the same seed (and fonts) gives byte-identical images and the same questions.
        size_range: ``((min_w, min_h), (max_w, max_h))``; each side is drawn uniformly.
        hr_fraction: the fraction of samples whose evidence is small (``needs_hr=True``); exact within
            every 20 samples of a category (rounded to a multiple of 1/20).
        straddle_fraction: the fraction of samples whose evidence straddles a centre line (the rest lie
            inside one quadrant); positions are otherwise spread evenly over the 3x3 grid.
        categories: the kinds of image, used round-robin (:data:`CATEGORIES`).
        small_px: font sizes (px) of evidence that needs high resolution: ``(size for answers of digits and
            punctuation only, size for answers with letters)``, see :data:`SMALL_PX`.
        large_px: font sizes (inclusive range, px) of evidence readable in the half-size view.
        label_same_size: print the evidence's label in the value's size (default); when False, the label of
            small evidence is printed large, so that it can be found in the low-resolution view.
        font_dir: folder of the DejaVu fonts; missing files fall back to PIL's default font.

    Returns:
        the samples, images as RGB PIL images, ``answers`` the exact printed string, ``metric="exact"``.
    """
    return list(
        iter_samples(
            n,
            seed=seed,
            size_range=size_range,
            hr_fraction=hr_fraction,
            straddle_fraction=straddle_fraction,
            categories=categories,
            small_px=small_px,
            large_px=large_px,
            label_same_size=label_same_size,
            font_dir=font_dir,
        )
    )


def to_row(sample: EvalSample) -> dict[str, Any]:
    """A sample as a row of the :func:`awares_agent.evals.schema.features` dataset."""
    return {
        "id": sample.id,
        "image": sample.image,
        "question": sample.question,
        "answers": list(sample.answers),
        "bbox": list(sample.bbox) if sample.bbox is not None else None,
        "needs_hr": sample.needs_hr,
        "metric": sample.metric,
        "category": sample.category,
    }


def build_synthetic(path: str | Path, n: int = 500, seed: int = 0, *, chunk: int = 32, **kwargs: Any) -> Path:
    """Generate the synthetic benchmark and save it as a `datasets` dataset (``save_to_disk``) at ``path``.

    Images are stored in the Arrow files (PNG, lossless); load it with ``datasets.load_from_disk(path)``.

    Args:
        path: the folder to write (created if missing; a dataset saved there before is overwritten).
        n: number of samples.
        seed: the seed (see :func:`generate`).
        chunk: samples encoded at a time, which bounds memory (images are freed once encoded).
        **kwargs: passed to :func:`iter_samples` (``size_range``, ``hr_fraction``, ``font_dir``...).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    from datasets import Dataset, concatenate_datasets

    feats = features()
    parts = []
    rows: list[dict[str, Any]] = []
    for sample in iter_samples(n, seed=seed, **kwargs):
        rows.append(to_row(sample))
        if len(rows) >= chunk:
            parts.append(Dataset.from_list(rows, features=feats))
            rows = []
    if rows or not parts:
        parts.append(Dataset.from_list(rows, features=feats))
    dataset = parts[0] if len(parts) == 1 else concatenate_datasets(parts)
    out = Path(path)
    dataset.save_to_disk(str(out))
    return out


# --- checking readability with the offline OCR ---------------------------------------------------------


@dataclass(frozen=True)
class Readability:
    """What the OCR reader found for one sample.

    Attributes:
        id: the sample id.
        category: the sample's category.
        needs_hr: the sample's label.
        full: the answer was read in the full-resolution image.
        half: the answer was read in the half-size (LANCZOS) view.
        crop: the answer was read in the smallest crop-set region holding the bbox (None: not checked).
        region: that region's name.
    """

    id: str
    category: str | None
    needs_hr: bool
    full: bool
    half: bool
    crop: bool | None
    region: str

    @property
    def ok(self) -> bool:
        """Whether the sample behaves as labelled: read in both views, or only in the full image and crop."""
        if self.needs_hr:
            return self.full and not self.half and self.crop is not False
        return self.full and self.half


@dataclass
class ReadabilityReport:
    """The results of :func:`verify_readability`."""

    results: list[Readability]

    def fraction(self, needs_hr: bool | None = None, attr: str = "ok") -> float:
        """The fraction of samples (all, or those with the given label) for which ``attr`` is true."""
        rs = [r for r in self.results if needs_hr is None or r.needs_hr == needs_hr]
        return sum(bool(getattr(r, attr)) for r in rs) / len(rs) if rs else float("nan")

    def summary(self) -> str:
        """A few lines of figures: overall and per label, per category."""
        lines = [f"{len(self.results)} samples: {self.fraction():.1%} behave as labelled"]
        for label in (False, True):
            rs = [r for r in self.results if r.needs_hr == label]
            if not rs:
                continue
            part = f"  needs_hr={label} ({len(rs)}): ok {self.fraction(label):.1%}, read full "
            part += f"{self.fraction(label, 'full'):.1%}, read half {self.fraction(label, 'half'):.1%}"
            if label:
                part += f", read crop {sum(r.crop is True for r in rs) / len(rs):.1%}"
            lines.append(part)
        for cat in sorted({r.category or "" for r in self.results}):
            rs = [r for r in self.results if (r.category or "") == cat]
            lines.append(f"  {cat}: {sum(r.ok for r in rs)}/{len(rs)} ok")
        return "\n".join(lines)


def ocr_text(image: Image.Image, ocr: Any, *, use_cls: bool = False) -> str:
    """All text ``ocr`` (a ``RapidOCR``) reads in ``image``, normalized (no whitespace, case folded).

    Args:
        image: the image.
        ocr: a ``rapidocr_onnxruntime.RapidOCR``.
        use_cls: run RapidOCR's 0/180-degree line classifier; off by default, since these images are upright
            and on text of 8-9 px it sometimes turns a correctly read line upside down ("D-569" -> "695-0").
    """
    result, _ = ocr(image.convert("RGB"), use_cls=use_cls)
    return "|".join(_norm(item[1]) for item in result or [])


def _crop_region(bbox: Sequence[float], width: int, height: int) -> tuple[str, Box]:
    from awares_agent.tools.crop_sets import PaperCropSet

    regions = PaperCropSet().regions(width, height)
    holding = [
        r
        for r in regions
        if r.box[0] <= bbox[0] and r.box[1] <= bbox[1] and bbox[2] <= r.box[2] and bbox[3] <= r.box[3]
    ]
    best = min(holding, key=lambda r: r.width * r.height)  # "all" always holds it
    return best.name, best.box


def verify_readability(
    samples: Iterable[EvalSample],
    *,
    ocr: Any = None,
    check_crop: bool = True,
    max_side_len: int = 4096,
    use_cls: bool = False,
    progress: Callable[[Readability], None] | None = None,
) -> ReadabilityReport:
    """Check each sample's ``needs_hr`` label with the offline OCR reader (``rapidocr-onnxruntime``).

    The answer counts as read in an image when the OCR text, whitespace removed and case folded, contains
    the answer so normalized. A ``needs_hr=False`` sample behaves as labelled when its answer is read in both
    the full image and the half-size view (``awares_agent.images.ViewSpec()``, LANCZOS); a ``needs_hr=True``
    sample when it is read in the full image and in the smallest crop-set region holding its bbox, but not in
    the half-size view.

    Args:
        samples: samples with PIL images, answers and (for the crop) bboxes.
        ocr: a ``RapidOCR`` instance (default: one with ``max_side_len``).
        check_crop: also OCR the crop of ``needs_hr=True`` samples.
        max_side_len: the OCR's input limit; the default 4096 reads these images at full resolution
            (RapidOCR's own default, 2000, would shrink the widest ones).
        use_cls: run RapidOCR's angle classifier (see :func:`ocr_text`).
        progress: called with each sample's result as it is done.

    Returns:
        the per-sample results and summary figures.
    """
    from awares_agent.images import ViewSpec

    if ocr is None:
        from rapidocr_onnxruntime import RapidOCR

        ocr = RapidOCR(max_side_len=max_side_len)
    spec = ViewSpec()
    results = []
    for sample in samples:
        img = sample.image if isinstance(sample.image, Image.Image) else Image.open(sample.image)
        img = img.convert("RGB")
        answer = _norm(sample.answers[0])
        w, h = img.size
        full = answer in ocr_text(img, ocr, use_cls=use_cls)
        half = answer in ocr_text(img.resize(spec.size(w, h), Image.Resampling.LANCZOS), ocr, use_cls=use_cls)
        bbox = sample.bbox or (0, 0, w, h)
        region, box = _crop_region(bbox, w, h)
        crop = None
        if check_crop and sample.needs_hr:
            crop = answer in ocr_text(img.crop(box), ocr, use_cls=use_cls)
        result = Readability(sample.id, sample.category, bool(sample.needs_hr), full, half, crop, region)
        results.append(result)
        if progress is not None:
            progress(result)
    return ReadabilityReport(results)


__all__ = [
    "CATEGORIES",
    "DEFAULT_FONT_DIR",
    "LARGE_PX",
    "SMALL_PX",
    "FontBook",
    "Readability",
    "ReadabilityReport",
    "build_synthetic",
    "generate",
    "iter_samples",
    "ocr_text",
    "to_row",
    "verify_readability",
]
