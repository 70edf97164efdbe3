"""The OCR reader backend: real OCR on generated forms, through the real agent and both tool protocols."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

from awares_agent import AwaResAgent
from awares_agent.backends.base import ChatBackend
from awares_agent.baselines.reader import (
    UNKNOWN,
    ReaderBackend,
    TextBox,
    find_bar_charts,
    key_likelihood,
    parse_question,
    plausible,
    read,
    text_blocks,
)
from awares_agent.baselines.reader.guess import likeliest
from awares_agent.baselines.reader.keys import find_key
from awares_agent.baselines.reader.tables import is_tabular
from awares_agent.baselines.reader.text import fix_digits
from awares_agent.evals.metrics import exact
from awares_agent.graphs.context import RunOptions
from awares_agent.image_store import ImageStore
from awares_agent.images import ViewSpec
from awares_agent.messages import ChatMessage, TextPart
from awares_agent.tokens import PixelTokenRule

_DEJAVU = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    if _DEJAVU.exists():
        return ImageFont.truetype(str(_DEJAVU), size)
    return ImageFont.load_default(size)


@pytest.fixture(scope="module")
def form() -> Image.Image:
    """A 1600x1200 invoice: one large field top-left, one 12 px field bottom-right, and distractors."""
    image = Image.new("RGB", (1600, 1200), "white")
    draw = ImageDraw.Draw(image)
    draw.text((60, 60), "Invoice No: 48213", font=_font(36), fill="black")
    draw.text((60, 140), "ACME Supplies Ltd", font=_font(28), fill="black")
    draw.text((60, 200), "Customer: Northwind Traders", font=_font(24), fill="black")
    draw.text((900, 500), "Payment due within 30 days", font=_font(22), fill="black")
    draw.text((1200, 1060), "Shipping: 94.50", font=_font(12), fill="black")
    draw.text((1200, 1100), "Total: 1,284.50", font=_font(12), fill="black")
    return image


@pytest.fixture(scope="module")
def reader() -> ReaderBackend:
    """One backend for the module: its OCR cache makes repeated questions about the form cheap."""
    return ReaderBackend()


def _crop_ids(result) -> list[str]:
    return [c.region_id for c in result.trajectory.crops]


def test_is_a_chat_backend_with_pixel_token_rule(reader: ReaderBackend) -> None:
    assert isinstance(reader, ChatBackend)
    assert reader.model_name == "awares-reader"
    assert ReaderBackend(model_name="my-reader").model_name == "my-reader"
    assert reader.token_rule == PixelTokenRule()


@pytest.mark.parametrize(
    ("question", "kind", "key", "column"),
    [
        ("What is the invoice number?", "field", "invoice number", ""),
        ("What is the total amount shown on the receipt?", "field", "total amount", ""),
        ("Read the Account ID field.", "field", "account id", ""),
        ("How much is the tax?", "field", "tax", ""),
        ('What is written next to "Policy No"?', "field", "policy no", ""),
        ("What does the form say for Issue Date?", "field", "issue date", ""),
        ("How much did the Orange juice cost?", "field", "orange juice", ""),
        ("What is the value of the Coffee bar?", "bar", "coffee", ""),
        ("According to the chart, what is the value for Ferries?", "bar", "ferries", ""),
        ("What value is shown for Coal in the bar chart?", "bar", "coal", ""),
        ("What is the price of Espresso?", "cell", "espresso", "price"),
        ("In the table, what is the Q1 value for Line A?", "cell", "line a", "q1"),
        ('Read the cell in row "Cairo" and column "Mean".', "cell", "cairo", "mean"),
        ("What does the table list under Min for Valve?", "cell", "valve", "min"),
        ('What code follows "TRACK" on the sign?', "field", "track", ""),
        ("Which gate does the sign indicate?", "field", "gate", ""),
        ("What does the sign say?", "sign", "", ""),
        ("Is it raining?", "none", "", ""),
        ("What colour is the car?", "none", "", ""),
        ("How many people are in the picture?", "none", "", ""),
    ],
)
def test_parse_question(question: str, kind: str, key: str, column: str) -> None:
    query = parse_question(question)
    assert (query.kind, query.key, query.column) == (kind, key, column)


def test_large_field_is_answered_from_the_view(form: Image.Image, reader: ReaderBackend) -> None:
    result = AwaResAgent(reader).ask(form, "What is the invoice number?")
    assert result.answer == "48213"
    assert _crop_ids(result) == []
    assert result.rtr == pytest.approx(0.25, abs=0.01)
    assert result.trajectory.usage.prompt_tokens == 0
    assert result.trajectory.model == "awares-reader"


@pytest.mark.parametrize("protocol", ["json", "awares-text"])
def test_small_field_is_read_from_one_quadrant(
    form: Image.Image, reader: ReaderBackend, protocol: str
) -> None:
    result = AwaResAgent(reader, protocol=protocol).ask(form, "What is the total?")
    assert _crop_ids(result) == ["3"]
    assert exact(result.answer, ["1,284.50"]) == 1.0
    assert result.rtr == pytest.approx(0.5, abs=0.01)
    request = next(m for m in result.trajectory.messages if m.role == "assistant")
    if protocol == "json":
        assert request.tool_calls[0].name == "get_crops"
        assert json.loads(request.tool_calls[0].arguments) == {"crops": ["3"]}
    else:
        assert request.text == "GET_CROPS: ['3']"
    assert result.trajectory.errors == []


def test_low_res_only_answers_from_the_view(form: Image.Image, reader: ReaderBackend) -> None:
    # With no crop round the reader must answer from the view, whatever it makes of the small text.
    for protocol in ("json", "awares-text"):
        result = AwaResAgent(reader, protocol=protocol, max_rounds=0).ask(form, "What is the total?")
        assert result.answer
        assert _crop_ids(result) == []
        assert result.rtr == pytest.approx(0.25, abs=0.01)


def test_full_resolution_view_reads_small_text(form: Image.Image, reader: ReaderBackend) -> None:
    result = AwaResAgent(reader, view_scale=1.0, max_rounds=0).ask(form, "What is the shipping?")
    assert exact(result.answer, ["94.50"]) == 1.0
    assert result.rtr == pytest.approx(1.0)


@pytest.mark.parametrize(
    "question", ["What colour is the car?", "What is the VAT registration number?", "Why?"]
)
def test_unanswerable_questions_answer_unknown(
    form: Image.Image, reader: ReaderBackend, question: str
) -> None:
    result = AwaResAgent(reader).ask(form, question)
    assert result.answer == UNKNOWN
    assert result.trajectory.errors == []


@pytest.mark.parametrize("protocol", ["json", "awares-text"])
def test_forced_crops_are_used(form: Image.Image, reader: ReaderBackend, protocol: str) -> None:
    """Crops the reader did not ask for (another policy chose them) are still read and placed."""
    agent = AwaResAgent(reader, protocol=protocol)
    result = agent.ask(form, "What is the shipping?", options=RunOptions(crops=("8",)))
    assert _crop_ids(result) == ["8"]
    assert exact(result.answer, ["94.50"]) == 1.0


def test_ask_many_in_threads(form: Image.Image) -> None:
    fresh = ReaderBackend()  # a cold cache: the threads OCR concurrently
    agent = AwaResAgent(fresh)
    questions = ["What is the invoice number?", "What is the total?", "What is the customer?", "What is it?"]
    results = agent.ask_many([(form, q) for q in questions], max_concurrency=4)
    answers = [r.answer for r in results]  # type: ignore[union-attr]
    assert answers[0] == "48213"
    assert exact(answers[1], ["1,284.50"]) == 1.0
    assert exact(answers[2], ["Northwind Traders"]) == 1.0
    assert answers[3] == UNKNOWN


def test_async_complete_and_reply_shape(form: Image.Image, reader: ReaderBackend) -> None:
    store = ImageStore()
    source = store.add(form)
    view = store.view(source.id, ViewSpec(0.5))
    messages = [
        ChatMessage.text_message("system", "Answer."),
        ChatMessage(role="user", content=[view, TextPart(text="What is the invoice number?")]),
    ]
    reply = asyncio.run(reader.acomplete(messages, images=store))
    assert reply.text == "48213"
    assert reply.tool_calls == []
    assert reply.usage.prompt_tokens == reply.usage.completion_tokens == 0
    assert reply.image_tokens is None
    assert reply.model == "awares-reader"
    assert reply.latency_s >= 0


def test_messages_without_a_view_answer_unknown(reader: ReaderBackend) -> None:
    reply = reader.complete([ChatMessage.text_message("user", "What is the total?")], images=ImageStore())
    assert reply.text == UNKNOWN


@pytest.mark.parametrize(
    ("question", "value", "ok"),
    [
        ("Read the Order ID field.", "office during business hours", False),
        ("Read the Order ID field.", "ORD-39266", True),
        ("What is the customer ID?", "HLWZZAS", True),
        ("What is the invoice number?", "Northwind", False),
        ("How much did the Tea cost?", "juice", False),
        ("How much did the Tea cost?", "12.50", True),
        ('What is written next to "Shipment"?', "Account No", False),
        ('What is written next to "Shipment"?', "SH-6NWTXW", True),
        ("What is the customer name?", "Northwind Traders", True),
    ],
)
def test_plausible_values(question: str, value: str, ok: bool) -> None:
    assert plausible(parse_question(question), value) is ok


@pytest.fixture(scope="module")
def decoy_form() -> Image.Image:
    """A large, legible "Order ID:" key whose 9 px value is unreadable at half size, a legible sentence
    right of it, and the value's digits also printed nowhere else."""
    image = Image.new("RGB", (1400, 1000), "white")
    draw = ImageDraw.Draw(image)
    draw.text((80, 80), "SHIPPING FORM", font=_font(40), fill="black")
    draw.text((900, 640), "Order ID:", font=_font(30), fill="black")
    draw.text((1045, 650), "ORD-57314", font=_font(9), fill="black")
    draw.text((900, 700), "office during business hours", font=_font(26), fill="black")
    return image


def test_a_value_of_the_wrong_kind_is_not_trusted(decoy_form: Image.Image, reader: ReaderBackend) -> None:
    """The sentence under the key is legible but is no ID: the reader crops next to the key instead."""
    result = AwaResAgent(reader).ask(decoy_form, "Read the Order ID field.")
    assert _crop_ids(result) == ["3"]
    assert exact(result.answer, ["ORD-57314"]) == 1.0


@pytest.fixture(scope="module")
def straddling_form() -> Image.Image:
    """A 12 px field whose key and value lie on both sides of the vertical centre line."""
    image = Image.new("RGB", (1200, 900), "white")
    draw = ImageDraw.Draw(image)
    draw.text((60, 60), "DELIVERY NOTE", font=_font(40), fill="black")
    draw.text((530, 300), "Tracking No:", font=_font(12), fill="black")
    draw.text((612, 300), "1ZK83HD2P", font=_font(12), fill="black")
    return image


def test_crops_are_read_as_one_canvas(straddling_form: Image.Image, reader: ReaderBackend) -> None:
    """Two quadrant crops cut the line at the centre; read stitched, the key and the value stay together."""
    result = AwaResAgent(reader).ask(
        straddling_form, "What is the tracking number?", options=RunOptions(crops=("0", "1"))
    )
    assert _crop_ids(result) == ["0", "1"]
    assert exact(result.answer, ["1ZK83HD2P"]) == 1.0


@pytest.fixture(scope="module")
def small_key_form() -> Image.Image:
    """Small fields (9 px, 4.5 px in the view: neither key nor value readable there) in two quadrants, among
    large legible text."""
    image = Image.new("RGB", (1400, 1000), "white")
    draw = ImageDraw.Draw(image)
    draw.text((80, 60), "APPLICATION FORM", font=_font(40), fill="black")
    draw.text((760, 200), "Northwind Traders", font=_font(28), fill="black")
    draw.text((120, 820), "Contract No: K184-325", font=_font(9), fill="black")
    draw.text((900, 420), "Phone: 555-7286", font=_font(9), fill="black")
    draw.text((760, 760), "Please keep this copy for your records", font=_font(24), fill="black")
    return image


@pytest.mark.parametrize(
    ("question", "crop", "answer"),
    [("What is the contract number?", "2", "K184-325"), ("What phone number is given?", "1", "555-7286")],
)
def test_a_key_too_small_to_read_is_located(
    small_key_form: Image.Image, reader: ReaderBackend, question: str, crop: str, answer: str
) -> None:
    """Neither key nor value can be read in the view; the enlarged view still says where they are."""
    low = AwaResAgent(reader, max_rounds=0).ask(small_key_form, question)
    assert exact(low.answer, [answer]) == 0.0  # not readable at low resolution
    result = AwaResAgent(reader).ask(small_key_form, question)
    assert _crop_ids(result) == [crop]
    assert exact(result.answer, [answer]) == 1.0


def test_digits_misread_as_letters_are_fixed() -> None:
    assert fix_digits("2024-0l-13") == "2024-01-13"
    assert fix_digits("1O5") == "105"
    assert fix_digits("SH-ZE9LYL") == "SH-ZE9LYL"


@pytest.mark.parametrize(
    ("question", "lines", "answer"),
    [
        # A date under its key that OCR read as one word (tuning seed 107): "26Jul2024", not "26".
        (
            "What value is given for Due Date?",
            [("DueDate", (440, 590, 582, 620)), ("26Jul2024", (438, 622, 610, 660))],
            "26 Jul 2024",
        ),
        ("What is the Issue Date?", [("Issue Date: 3March2025", (100, 100, 400, 130))], "3 March 2025"),
        # A small colon read as "1" glued to its key (tuning seed 107): the value is the next box.
        (
            "What is the due date?",
            [("Due Date1", (167, 234, 215, 245)), ("24/04/2028", (221, 233, 271, 246))],
            "24/04/2028",
        ),
        ("What is the Qty?", [("Qty1", (100, 100, 160, 130))], "1"),
        # The next label OCR glued to a value is still cut off.
        ("What is the Invoice No?", [("Invoice No: 25134Tax ID", (100, 100, 400, 130))], "25134"),
    ],
)
def test_glued_values_are_read_whole(question: str, lines: list[tuple[str, tuple]], answer: str) -> None:
    boxes = [TextBox(text, 0.99, box, (box[3] - box[1]) / 2) for text, box in lines]
    reading = read(parse_question(question), boxes)
    assert reading is not None
    assert reading.answer == answer


def _bar_chart(
    draw: ImageDraw.ImageDraw, origin: tuple[int, int], labels: list[str], values: list[str], size: int
) -> None:
    """A vertical bar chart drawn at ``origin`` (top-left), labels and values in ``size`` px text."""
    x0, y0 = origin
    font = _font(size)
    base, slot = y0 + 260, max(60, 5 * size)
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        x = x0 + i * slot
        top = base - 40 - 35 * ((i * 3) % 5)
        draw.rectangle((x + 8, top, x + slot - 8, base), fill="#1565c0")
        draw.text((x + 10, top - size - 6), value, font=font, fill="black")
        draw.text((x + 10, base + 6), label, font=font, fill="black")
    draw.line((x0, base, x0 + slot * len(labels) + 10, base), fill="black", width=2)


@pytest.fixture(scope="module")
def charts_page() -> Image.Image:
    """A legible chart top-left and a chart in 8 px text (4 px in the view) bottom-right, among large text."""
    image = Image.new("RGB", (1400, 1000), "#f4f6f8")
    draw = ImageDraw.Draw(image)
    draw.text((60, 40), "QUARTERLY REVIEW", font=_font(40), fill="black")
    _bar_chart(draw, (60, 120), ["North", "South", "East", "West"], ["120", "340", "560", "780"], 26)
    labels = ["Cedar", "Maple", "Birch", "Aspen", "Larch"]
    _bar_chart(draw, (820, 560), labels, ["7,214", "3,905", "5,977", "1,338", "8,420"], 8)
    draw.text((80, 760), "Figures are in thousands of units", font=_font(26), fill="black")
    return image


def test_bar_charts_are_found_by_their_bars(charts_page: Image.Image) -> None:
    view = charts_page.resize((700, 500), Image.Resampling.LANCZOS)
    charts = sorted(find_bar_charts(view), key=lambda c: c.bars[0])
    assert [(c.vertical, c.count) for c in charts] == [(True, 4), (True, 5)]
    assert charts[0].pitch == pytest.approx(65, abs=1)
    x0, y0, x1, y1 = charts[1].bars
    assert 410 <= x0 < x1 <= 560 and 280 <= y0 < y1 <= 411
    # Text alone, however large, is no chart; nor are two bars.
    page = Image.new("RGB", (700, 500), "white")
    draw = ImageDraw.Draw(page)
    draw.text((20, 20), "MMMM IIII llll", font=_font(60), fill="black")
    draw.rectangle((100, 300, 130, 400), fill="#2e7d32")
    draw.rectangle((160, 330, 190, 400), fill="#2e7d32")
    assert find_bar_charts(page) == []


def test_a_bar_whose_label_cannot_be_read_is_looked_for_in_its_chart(
    charts_page: Image.Image, reader: ReaderBackend
) -> None:
    """The label "Birch" is 4 px in the view; the chart with unreadable labels is cropped whole."""
    low = AwaResAgent(reader, max_rounds=0).ask(charts_page, "What is the value of the Birch bar?")
    assert exact(low.answer, ["5,977"]) == 0.0
    result = AwaResAgent(reader).ask(charts_page, "What is the value of the Birch bar?")
    assert _crop_ids(result) == ["3"]
    assert exact(result.answer, ["5,977"]) == 1.0
    # A bar of the legible chart is read from the view.
    direct = AwaResAgent(reader).ask(charts_page, "What is the value of the East bar?")
    assert _crop_ids(direct) == [] and exact(direct.answer, ["560"]) == 1.0


def test_key_likelihood_tells_the_key_in_text_too_small_to_read() -> None:
    """9 px text halved (4.5 px) reads as garbage, but the recogniser still ranks the written key first."""
    keys = ["invoice no", "member no", "tax id", "serial no", "due date", "account no", "phone"]
    for text in ("Invoice No", "Member No", "Tax ID", "Serial No", "Due Date"):
        image = Image.new("RGB", (200, 24), "white")
        ImageDraw.Draw(image).text((6, 6), text, font=_font(9), fill="black")
        small = image.resize((100, 12), Image.Resampling.LANCZOS)
        scores = {k: key_likelihood(small, k) for k in keys}
        own = scores.pop(text.lower())
        assert own is not None and -2.0 < own <= 0.05  # about 0: read as the key (either case summed)
        assert all(s is not None and s < own - 1.0 for s in scores.values()), (text, own, scores)
    blank = Image.new("RGB", (100, 12), "white")
    assert key_likelihood(blank, "phone") is None
    assert key_likelihood(small, "") is None


def test_key_likelihood_of_the_whole_patch_counts_the_other_letters() -> None:
    """``whole=True``: the key must be all the patch holds: "Pine" scores as before, "Pinewood" far lower
    (its last four letters are no gap), though the key alone is found in it as well as in "Pine"."""

    def small(text: str) -> Image.Image:
        image = Image.new("RGB", (200, 24), "white")
        ImageDraw.Draw(image).text((6, 6), text, font=_font(9), fill="black")
        return image.resize((100, 12), Image.Resampling.LANCZOS)

    pine, pinewood = small("Pine"), small("Pinewood")
    free = {t: key_likelihood(p, "pine") for t, p in (("Pine", pine), ("Pinewood", pinewood))}
    whole = {t: key_likelihood(p, "pine", whole=True) for t, p in (("Pine", pine), ("Pinewood", pinewood))}
    assert all(v is not None for v in (*free.values(), *whole.values()))
    assert abs(whole["Pine"] - free["Pine"]) < 0.3  # type: ignore[operator]
    assert abs(free["Pinewood"] - free["Pine"]) < 0.5  # type: ignore[operator]
    assert whole["Pinewood"] < whole["Pine"] - 2.0  # type: ignore[operator]


def test_the_only_amount_on_a_receipt_line_is_trusted(reader: ReaderBackend) -> None:
    """A receipt has no "Price" header: the one amount on the item's line is its price, read from the view."""
    image = Image.new("RGB", (1200, 900), "#fcfbf6")
    draw = ImageDraw.Draw(image)
    draw.text((300, 80), "CORNER BAKERY", font=_font(40), fill="black")
    lines = [("Sourdough", "90.52"), ("Bagel", "4.75"), ("Coffee beans", "170.50")]
    for k, (item, price) in enumerate(lines):
        draw.text((300, 200 + 60 * k), item, font=_font(30), fill="black")
        draw.text((800, 200 + 60 * k), price, font=_font(30), fill="black")
    result = AwaResAgent(reader).ask(image, "What is the price of Sourdough on the receipt?")
    assert _crop_ids(result) == []
    assert exact(result.answer, ["90.52"]) == 1.0


def test_two_charts_about_as_likely_are_both_requested(reader: ReaderBackend) -> None:
    """Two charts in 8 px text with the same labels: neither is likelier, and the bottom half shows both."""
    image = Image.new("RGB", (1400, 1000), "#f4f6f8")
    draw = ImageDraw.Draw(image)
    draw.text((60, 40), "QUARTERLY REVIEW", font=_font(40), fill="black")
    labels = ["Cedar", "Maple", "Birch", "Aspen", "Larch"]
    _bar_chart(draw, (100, 560), labels, ["7,214", "3,905", "5,977", "1,338", "8,420"], 8)
    _bar_chart(draw, (820, 560), labels, ["2,116", "9,042", "6,530", "4,471", "3,318"], 8)
    result = AwaResAgent(reader).ask(image, "What is the value of the Birch bar?")
    assert _crop_ids(result) == ["6"]
    assert result.answer in ("5,977", "6,530")


def _sign(draw: ImageDraw.ImageDraw, at: tuple[int, int], text: str, size: int, fill: str) -> None:
    """A plate on a pole with ``text`` on it, its top-left corner at ``at``."""
    font = _font(size)
    x0, y0, x1, y1 = draw.textbbox(at, text, font=font)
    draw.rectangle((x0 - 4, y0 - 4, x1 + 4, y1 + 4), fill=fill, outline="black")
    draw.rectangle(((x0 + x1) // 2 - 2, y1 + 5, (x0 + x1) // 2 + 2, y1 + 60), fill="#555555")
    draw.text(at, text, font=font, fill="black")


@pytest.fixture(scope="module")
def street() -> Image.Image:
    """A street scene: a large legible sign, a notice in sentences, and five 8 px signs (4 px in the view) in
    all four quadrants."""
    image = Image.new("RGB", (1400, 1000), "#87b5e0")
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 620, 1400, 1000), fill="#5c7a3a")
    _sign(draw, (560, 120), "GATE L112", 30, "white")
    draw.rectangle((180, 80, 520, 150), fill="#fffbe8")
    draw.text((190, 90), "Passed standard shipping applies", font=_font(12), fill="black")
    draw.text((190, 115), "Keep this copy for your records", font=_font(12), fill="black")
    for at, text, fill in [
        ((330, 290), "LEVEL E479", "#f2c744"),
        ((1050, 240), "SECTOR 186Y", "#dddddd"),
        ((240, 760), "BLOCK 1M-466", "#7fd08a"),
        ((1100, 700), "UNIT W-735", "#e08080"),
        ((820, 820), "PIER 8S-327", "#f0a040"),
    ]:
        _sign(draw, at, text, 8, fill)
    return image


@pytest.mark.parametrize(
    ("question", "crop", "answer"),
    [
        ("Read the LEVEL sign: what is written after LEVEL?", "0", "E479"),
        ('What code follows "UNIT" on the sign?', "3", "W-735"),
    ],
)
def test_a_sign_whose_label_cannot_be_read_is_found_by_its_label(
    street: Image.Image, reader: ReaderBackend, question: str, crop: str, answer: str
) -> None:
    """Five small signs look alike in the view; the one whose blurred label is likeliest the key is asked
    for."""
    low = AwaResAgent(reader, max_rounds=0).ask(street, question)
    assert exact(low.answer, [answer]) == 0.0
    result = AwaResAgent(reader).ask(street, question)
    assert _crop_ids(result) == [crop]
    assert exact(result.answer, [answer]) == 1.0


def test_a_block_is_tabular_with_cells_or_numbers() -> None:
    """A table's lines have cells or numbers; a garbled paragraph's lines, one box of letters each, do not."""

    def line(*texts: str) -> list[TextBox]:
        return [TextBox(t, 0.5, (100 * i, 0, 100 * i + 80, 10), 5.0, "enlarged") for i, t in enumerate(texts)]

    assert is_tabular([line("Riga", "X-41"), line("Oslo", "K-77"), line("Lima 12")])
    assert not is_tabular([line("Reilapeg t eer dhedog"), line("Relr led y a"), line("Sh f g d ed")])


def test_a_key_is_not_the_start_of_a_longer_word() -> None:
    """ "stand" is not found in "Passed standard shipping" (the word goes on), "total" is in "TOTAL:"."""
    line = TextBox("Passed standard shipping applies", 0.99, (0, 0, 300, 20), 14.0, "view")
    assert find_key("stand", [line]) == []
    assert find_key("total", [TextBox("TOTAL: 12.50", 0.99, (0, 0, 100, 20), 14.0, "view")])


@pytest.mark.parametrize(
    ("seed", "index", "category"),
    [
        (106, 6, "table"),
        (108, 26, "table"),
        (110, 6, "table"),
        # A receipt's items and prices, not the garbled paragraph beside it (no cells, no numbers).
        (107, 12, "receipt"),
        # Bar labels 3 px tall in the view: "Pears" and "Pine" among other charts' labels.
        (107, 3, "chart"),
        (108, 18, "chart"),
    ],
)
def test_evidence_whose_labels_cannot_be_read_is_found_by_its_shape(
    reader: ReaderBackend, seed: int, index: int, category: str
) -> None:
    """Synthetic pages with several tables or charts, the asked one in 3-4 px text in the view, its labels
    unreadable there: the block of small text (or the chart) likeliest to hold the key is asked for, and
    covers the evidence."""
    from awares_agent.evals.synthetic import iter_samples

    sample = list(iter_samples(index + 1, seed=seed))[index]
    assert sample.category == category and sample.needs_crop
    result = AwaResAgent(reader).ask(sample.image, sample.question)
    boxes = [c.box for c in result.trajectory.crops]
    assert 1 <= len(boxes) <= 2
    x0, y0 = min(b[0] for b in boxes), min(b[1] for b in boxes)
    x1, y1 = max(b[2] for b in boxes), max(b[3] for b in boxes)
    e = sample.evidence
    assert x0 - 4 <= e[0] and y0 - 4 <= e[1] and e[2] <= x1 + 4 and e[3] <= y1 + 4


def test_text_blocks_group_lines_and_join_a_column_of_amounts() -> None:
    """Stacked lines make a block; a sentence is left out; a receipt's prices far right join their items."""

    def box(text: str, x: float, y: float, w: float = 60) -> TextBox:
        return TextBox(text, 0.5, (x, y, x + w, y + 10), 5.0, "enlarged")

    items = [box(t, 100, 300 + 14 * i) for i, t in enumerate(["Bagel", "Honey", "Pasta"])]
    prices = [box(t, 600, 300 + 14 * i, 40) for i, t in enumerate(["4.75", "12.90", "3.10"])]
    table = [box(t, 900, 50 + 14 * i, 120) for i, t in enumerate(["Oslo 12 44", "Riga 17 31", "Lima 9 80"])]
    sentence = box("Goods remain the property of the seller", 100, 600, 300)
    blocks = text_blocks([*items, *prices, *table, sentence])
    texts = sorted([[b.text for b in line] for line in block] for block in blocks)
    assert texts == [
        [["Bagel", "4.75"], ["Honey", "12.90"], ["Pasta", "3.10"]],
        [["Oslo 12 44"], ["Riga 17 31"], ["Lima 9 80"]],
    ]


@pytest.mark.parametrize(
    ("question", "boxes", "crop"),
    [
        # "total" inside "SUBTOTAL" is another label: the unlabelled amount is the likelier total.
        (
            "What is the total on the receipt?",
            [
                ("SUBTOTAL", (1000, 200, 1060, 214)),
                ("596.12", (1140, 200, 1190, 214)),
                ("655.73", (300, 700, 350, 714)),
            ],
            "2",
        ),
        # "Dat" is the part of "Issue Date" that could be read: that date, not another one.
        (
            'What is written next to "Issue Date"?',
            [("04/12/243", (300, 200, 360, 214)), ("Dat162025", (1000, 700, 1090, 714))],
            "3",
        ),
        # A value after its own label unlike the key is another field's ("Tx ID:" for the Reference).
        (
            "According to the document, what is the Reference?",
            [("Tx ID:10-7024469", (1000, 200, 1110, 214)), ("CH0-465", (300, 700, 360, 714))],
            "2",
        ),
    ],
)
def test_guesses_from_unreadable_text_weigh_labels(
    reader: ReaderBackend, question: str, boxes: list[tuple[str, tuple]], crop: str
) -> None:
    """The region guessed from garbled small text: keys inside longer words, partial keys and other fields'
    labels are told apart (no OCR: the garbled readings are given)."""
    hard = [TextBox(text, 0.5, box, 5.0, "enlarged") for text, box in boxes]
    assert likeliest(parse_question(question), hard, 1400, 1000, reader.crop_set, reader.config, hard) == [
        crop
    ]


def test_guesses_from_unreadable_text_take_only_fields_labels(reader: ReaderBackend) -> None:
    """A sentence ending left of a number is not the number's label, and a label whose box touches its
    value's (OCR boxes overlap by a pixel) still labels it: the unlabelled number is the likelier phone."""
    phone = TextBox("58451", 0.5, (676, 482, 718, 499), 5.0, "enlarged")
    invoice = TextBox("82770", 0.5, (981, 666, 1045, 689), 5.0, "enlarged")
    context = [
        TextBox(
            "Are accepted within thirty days of delivery in the", 0.9, (82, 481, 567, 504), 9.0, "enlarged"
        ),
        TextBox("InvoiceNo", 0.9, (981, 640, 1084, 667), 9.0, "enlarged"),
        phone,
        invoice,
    ]
    query = parse_question("According to the document, what is the Phone?")
    assert likeliest(query, [phone, invoice], 1400, 1000, reader.crop_set, reader.config, context) == ["4"]
