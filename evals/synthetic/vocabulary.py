"""What the synthetic images say: words, codes, numbers, dates and money, and the questions asked about them.

Every generator draws from the sample's own ``random.Random``, so the same seed gives the same text; the
order of the pools below is part of that (``rng.choice`` picks by position): do not reorder them.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass


def has_letters(text: str) -> bool:
    """Whether ``text`` holds a letter (small evidence with letters is drawn a pixel larger).

    Args:
        text: the text.
    """
    return any(c.isalpha() for c in text)


def normalize(text: str) -> str:
    """Text compared the way OCR output is: whitespace removed, case folded.

    Args:
        text: the text.
    """
    return "".join(text.split()).casefold()


_CODE_CHARS = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
# Colours: text inks, paper, desks (behind a page or receipt) and accents (bars, signs, stamps).
INKS = ("#111111", "#1c1c1c", "#262626", "#0d1b4c", "#13315c", "#3e2723", "#1b4d2b", "#4a148c", "#7f1010")
PAPERS = ("#ffffff", "#fcfbf6", "#f6f4ec", "#eef3f8", "#f9f2e7", "#f1f7ef", "#fffdf0")
DESKS = ("#8d6e63", "#6d4c41", "#5d6d7e", "#90a4ae", "#a1887f", "#4e5b66", "#b0a89a", "#37474f")
ACCENTS = ("#1565c0", "#2e7d32", "#c62828", "#ef6c00", "#6a1b9a", "#00838f", "#ad1457", "#4e342e", "#455a64")

_FILLER = (
    "please note that all items shipped under this order remain the property of the seller until payment is "
    "received in full returns are accepted within thirty days of delivery in the original packaging contact "
    "our office during business hours for any questions about billing terms warranty service or delivery "
    "schedules the information on this page is provided as a courtesy only and may change without notice "
    "signature required upon receipt keep this copy for your records goods inspected and approved quality "
    "control passed standard shipping applies handle with care store in a cool dry place"
)
_WORDS = tuple(_FILLER.split())


def random_digits(rng: random.Random, n: int) -> str:
    """``n`` random digits, the first not zero.

    Args:
        rng: the sample's random source.
        n: how many digits.
    """
    return str(rng.randint(10 ** (n - 1), 10**n - 1))


def random_code(rng: random.Random, n: int) -> str:
    """``n`` random capitals and digits, without the look-alikes I, O, 0 and 1.

    Args:
        rng: the sample's random source.
        n: how many characters.
    """
    return "".join(rng.choice(_CODE_CHARS) for _ in range(n))


def random_letters(rng: random.Random, n: int) -> str:
    """``n`` random capitals, without I, O and Q.

    Args:
        rng: the sample's random source.
        n: how many letters.
    """
    return "".join(rng.choice("ABCDEFGHJKLMNPRSTUVWXYZ") for _ in range(n))


def random_date(rng: random.Random) -> str:
    """A date from 2015-2029 in one of three formats (``2021-03-07``, ``07/03/2021``, ``07 Mar 2021``).

    Args:
        rng: the sample's random source.
    """
    y, m, d = rng.randint(2015, 2029), rng.randint(1, 12), rng.randint(1, 28)
    months = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
    return rng.choice([f"{y}-{m:02d}-{d:02d}", f"{d:02d}/{m:02d}/{y}", f"{d:02d} {months[m - 1]} {y}"])


def random_money(rng: random.Random, lo: float = 100, hi: float = 99999) -> str:
    """An amount between ``lo`` and ``hi`` with thousands separators and two decimals (``12,345.67``).

    Args:
        rng: the sample's random source.
        lo: the smallest amount.
        hi: the largest amount.
    """
    return f"{rng.uniform(lo, hi):,.2f}"


def random_sentence(rng: random.Random, n_words: int) -> str:
    """``n_words`` consecutive words of the filler text, capitalised and ending with a full stop.

    Args:
        rng: the sample's random source.
        n_words: how many words.
    """
    start = rng.randrange(len(_WORDS))
    words = [_WORDS[(start + i) % len(_WORDS)] for i in range(n_words)]
    text = " ".join(words)
    return text[0].upper() + text[1:] + "."


@dataclass(frozen=True)
class FormField:
    """A labelled field of a form: its label, how its values are drawn, and its own questions.

    Attributes:
        label: the label printed next to the value (``"Invoice No"``).
        value: draws a value from the sample's random source.
        questions: questions asked about this field, besides :data:`FIELD_TEMPLATES`.
    """

    label: str
    value: Callable[[random.Random], str]
    questions: tuple[str, ...]


# Documents: form fields, generic questions about a field, titles and companies.
FORM_FIELDS = (
    FormField("Invoice No", lambda r: random_digits(r, r.choice((5, 6))), ("What is the invoice number?",)),
    FormField("Issue Date", random_date, ("When was the document issued?", "What is the issue date?")),
    FormField("Due Date", random_date, ("What is the due date?", "By what date is payment due?")),
    FormField("Account No", lambda r: f"AC-{random_digits(r, 6)}", ("What is the account number?",)),
    FormField("Order ID", lambda r: f"ORD-{random_digits(r, 5)}", ("What is the order ID?",)),
    FormField("Customer ID", lambda r: random_code(r, 7), ("What is the customer ID?",)),
    FormField(
        "Policy No", lambda r: f"{random_letters(r, 2)}{random_digits(r, 7)}", ("What is the policy number?",)
    ),
    FormField("Tracking No", lambda r: f"1Z{random_code(r, 8)}", ("What is the tracking number?",)),
    FormField("Reference", lambda r: f"REF-{random_code(r, 5)}", ("What is the reference code?",)),
    FormField("Phone", lambda r: f"555-{random_digits(r, 4)}", ("What phone number is given?",)),
    FormField(
        "Amount Due", lambda r: random_money(r, 100, 99999), ("What is the amount due?", "How much is due?")
    ),
    FormField("Tax ID", lambda r: f"{random_digits(r, 2)}-{random_digits(r, 7)}", ("What is the tax ID?",)),
    FormField("PO Number", lambda r: f"PO{random_digits(r, 6)}", ("What is the PO number?",)),
    FormField("Serial No", lambda r: f"SN{random_code(r, 7)}", ("What is the serial number?",)),
    FormField("Employee ID", lambda r: f"E{random_digits(r, 5)}", ("What is the employee ID?",)),
    FormField(
        "Case No", lambda r: f"{r.randint(2015, 2029)}-{random_digits(r, 5)}", ("What is the case number?",)
    ),
    FormField("Batch", lambda r: f"B{random_code(r, 5)}", ("What is the batch code?",)),
    FormField("Claim No", lambda r: f"CL{random_digits(r, 6)}", ("What is the claim number?",)),
    FormField(
        "Vehicle ID", lambda r: f"{random_letters(r, 3)}-{random_digits(r, 4)}", ("What is the vehicle ID?",)
    ),
    FormField("Member No", lambda r: f"M{random_digits(r, 6)}", ("What is the member number?",)),
    FormField("Shipment", lambda r: f"SH-{random_code(r, 6)}", ("What is the shipment code?",)),
    FormField(
        "Contract",
        lambda r: f"K{random_digits(r, 3)}-{random_digits(r, 3)}",
        ("What is the contract number?",),
    ),
)
FIELD_TEMPLATES = (
    "What does the form say for {label}?",
    "Read the {label} field.",
    "What value is given for {label}?",
    'What is written next to "{label}"?',
    "According to the document, what is the {label}?",
)
# fmt: off
TITLES = (
    "INVOICE", "PURCHASE ORDER", "SHIPPING FORM", "APPLICATION FORM", "ACCOUNT STATEMENT", "CLAIM FORM",
    "DELIVERY NOTE", "SERVICE REPORT", "REGISTRATION",
)
COMPANIES = (
    "Northwind Traders", "Acme Supply Co.", "Blue Harbor Logistics", "Greenfield Works", "Summit Office Ltd",
    "Riverside Clinic", "Polar Freight", "Cedar & Stone", "Helios Energy", "Orchard Foods",
)
# Tables: row labels, column sets and questions about a cell.
ROW_LABELS = (
    "North", "South", "East", "West", "Central", "Widget", "Gadget", "Sprocket", "Bracket", "Valve", "Gasket",
    "Spindle", "Rotor", "Oslo", "Lima", "Cairo", "Perth", "Quito", "Dakar", "Hanoi", "Porto", "Riga", "Turin",
    "Alpha", "Bravo", "Delta", "Omega", "Line A", "Line B", "Site 4", "Plant 7", "Team Red", "Team Blue",
)
# fmt: on
COLUMN_SETS = (
    ("Q1", "Q2", "Q3", "Q4"),
    ("Jan", "Feb", "Mar", "Apr", "May"),
    ("2021", "2022", "2023", "2024"),
    ("Units", "Revenue", "Stock", "Price"),
    ("Code", "Lot", "Bin", "Ref"),
    ("Mon", "Tue", "Wed", "Thu", "Fri"),
    ("Min", "Max", "Mean"),
)
TABLE_TEMPLATES = (
    "In the table, what is the {col} value for {row}?",
    "What does the table list under {col} for {row}?",
    'Read the cell in row "{row}" and column "{col}".',
    "According to the table, what is the {col} entry of {row}?",
)
# fmt: off
# Receipts: items, questions about an item or the total, and store names.
ITEMS = (
    "Espresso", "Bagel", "Oat milk", "Notebook", "AA batteries", "Olive oil", "Green tea", "Sourdough",
    "Apples 1kg", "Dish soap", "Pasta", "Tomatoes", "Coffee beans", "Yogurt", "Printer paper", "Light bulb",
    "Cheddar", "Rice 2kg", "Shampoo", "Orange juice", "Croissant", "Pencils", "Tape", "Honey",
)
# fmt: on
ITEM_TEMPLATES = (
    "How much did the {item} cost?",
    "What is the price of {item} on the receipt?",
    "What amount does the receipt list for {item}?",
    "What does the receipt charge for {item}?",
)
TOTAL_TEMPLATES = (
    "What is the total on the receipt?",
    "What is the receipt's TOTAL?",
    "How much is the total amount on the receipt?",
)
STORES = ("CORNER MARKET", "CITY HARDWARE", "CAFE LUMEN", "FRESHWAY", "BOOK NOOK", "QUICKMART", "PAPER & CO")
# fmt: off
# Charts: bar categories, titles and questions about a bar.
CHART_CATEGORIES = (
    "Apples", "Pears", "Plums", "Kiwis", "Figs", "Limes", "Boston", "Denver", "Austin", "Tampa", "Fresno",
    "Reno", "Solar", "Wind", "Hydro", "Coal", "Gas", "Nuclear", "Cars", "Vans", "Bikes", "Buses", "Trams",
    "Ferries", "Maple", "Birch", "Cedar", "Pine", "Oak", "Elm", "Ruby", "Opal", "Jade", "Onyx", "Topaz",
    "Amber",
)
CHART_TITLES = (
    "Sales by region", "Output per site", "Monthly volume", "Energy mix", "Fleet size", "Orders per store",
    "Visitors", "Units shipped",
)
# fmt: on
CHART_TEMPLATES = (
    "What value is shown for {cat} in the bar chart?",
    "What is the value of the {cat} bar?",
    "What number is printed for the {cat} bar?",
    "According to the chart, what is the value for {cat}?",
)
# fmt: off
# Scenes: sign labels, questions about a sign, shop signs and sign colours (plate, ink).
SIGN_LABELS = (
    "GATE", "ROOM", "PLATFORM", "BAY", "DOCK", "LOT", "ZONE", "TRACK", "LEVEL", "ROUTE", "UNIT", "HANGAR",
    "PIER", "WARD", "BLOCK", "SECTOR", "AISLE", "STAND",
)
# fmt: on
SIGN_TEMPLATES = (
    "What is the {lower} number on the {LABEL} sign?",
    "Which {lower} does the sign indicate?",
    'What code follows "{LABEL}" on the sign?',
    "Read the {LABEL} sign: what is written after {LABEL}?",
)
SHOP_WORDS = ("BAKERY", "PHARMACY", "BOOKS", "CAFE", "HOTEL", "MARKET", "TICKETS", "INFO", "TAXI", "PARKING")
SIGN_COLOURS = (
    ("#1565c0", "#ffffff"),
    ("#2e7d32", "#ffffff"),
    ("#b71c1c", "#ffffff"),
    ("#fdd835", "#111111"),
    ("#ffffff", "#111111"),
    ("#212121", "#ffeb3b"),
    ("#ef6c00", "#111111"),
    ("#37474f", "#ffffff"),
)


def random_sign_code(rng: random.Random) -> str:
    """The code on a sign (``B274``, ``B-274``, ``4B-274`` or ``274B``).

    Args:
        rng: the sample's random source.
    """
    pattern = rng.randrange(4)
    if pattern == 0:
        return f"{random_letters(rng, 1)}{random_digits(rng, 3)}"
    if pattern == 1:
        return f"{random_letters(rng, 1)}-{random_digits(rng, 3)}"
    if pattern == 2:
        return f"{rng.randint(1, 9)}{random_letters(rng, 1)}-{random_digits(rng, 3)}"
    return f"{random_digits(rng, 3)}{random_letters(rng, 1)}"


def random_chart_value(rng: random.Random, style: int) -> tuple[str, float]:
    """A bar's value as printed and as a number, in one of three styles of one chart.

    Args:
        rng: the sample's random source.
        style: 0 (``1,234``), 1 (``12.34``) or 2 (``12,345``).
    """
    if style == 0:
        v = rng.randint(1000, 9999)
        return f"{v:,}", float(v)
    if style == 1:
        v = round(rng.uniform(10, 99.99), 2)
        return f"{v:.2f}", v
    v = rng.randint(10000, 99999)
    return f"{v:,}", float(v)


def distinct_values(
    rng: random.Random, make: Callable[[], str], k: int, avoid: Iterable[str] = ()
) -> list[str]:
    """``k`` strings from ``make`` none of which contains another (normalized) or any of ``avoid``.

    Args:
        rng: the sample's random source (``make`` draws from it; unused here, kept for the call sites).
        make: draws one string.
        k: how many strings.
        avoid: strings none of the results may contain or be contained in.

    Raises:
        RuntimeError: ``200 * k`` draws did not give ``k`` distinct strings.
    """
    out: list[str] = []
    banned = [normalize(a) for a in avoid]
    for _ in range(200 * k):
        if len(out) == k:
            break
        s = make()
        n = normalize(s)
        if any(n in o or o in n for o in [normalize(x) for x in out]) or any(
            n in b or b in n for b in banned
        ):
            continue
        out.append(s)
    if len(out) < k:
        raise RuntimeError("could not draw distinct values")
    return out
