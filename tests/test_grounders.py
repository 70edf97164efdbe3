"""Tests for the labelling grounders: the dataset's box, offline OCR on real rendered images, a VLM asked for
Qwen-style boxes through a real loopback OpenAI-compatible server, chains and the factory."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import pytest
from chat_server import FAST_RETRY, Completion, Garbage, HTTPError, ScriptedChatServer
from PIL import Image, ImageDraw, ImageFont

from awares_agent.backends.openai_compat import OpenAIBackend
from awares_agent.baselines.reader import DEFAULT_CONFIG
from awares_agent.collect import (
    ChainGrounder,
    DatasetGrounder,
    Grounder,
    GrounderOptions,
    Grounding,
    OCRGrounder,
    VLMGrounder,
    make_grounder,
)
from awares_agent.collect.grounders import DEFAULT_VLM_MAX_PIXELS, parse_boxes
from awares_agent.errors import BackendHTTPError, BackendResponseError, ConfigError
from awares_agent.ocr import OcrSettings, RawBox
from awares_agent.tokens import QWEN2_5_VL, QWEN3_VL, smart_resize

FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")  # evals/synthetic/fonts.py's font folder
QWEN25 = "Qwen/Qwen2.5-VL-7B-Instruct"
QWEN3 = "Qwen/Qwen3-VL-8B-Instruct"

Box = tuple[float, float, float, float]


def iou(a: Box, b: Box) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


class Page:
    """A white page with text drawn on it; ``boxes`` records each text's line box (ink left/right, and the
    font's ascent + descent from the drawing position), the box a reader would draw around the line."""

    def __init__(self, width: int, height: int, size: int = 14) -> None:
        if not FONT.exists():
            pytest.skip(f"DejaVu font not installed at {FONT}")
        self.image = Image.new("RGB", (width, height), "white")
        self.draw = ImageDraw.Draw(self.image)
        self.font = ImageFont.truetype(str(FONT), size)
        self.boxes: dict[str, Box] = {}
        self.fonts: dict[str, ImageFont.FreeTypeFont] = {}

    def text(self, x: int, y: int, text: str, *, size: int | None = None) -> Box:
        font = ImageFont.truetype(str(FONT), size) if size else self.font
        self.draw.text((x, y), text, font=font, fill="black")
        left, _, right, _ = self.draw.textbbox((x, y), text, font=font)
        ascent, descent = font.getmetrics()
        self.boxes[text] = (left, y, right, y + ascent + descent)
        self.fonts[text] = font
        return self.boxes[text]

    def part(self, text: str, part: str) -> Box:
        """The line box of the substring ``part`` of the drawn ``text``."""
        x0, y0, _, y1 = self.boxes[text]
        start = text.index(part)
        font = self.fonts[text]
        left = x0 + font.getlength(text[:start])
        return (left, y0, left + font.getlength(part), y1)


# --- the dataset's box -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bbox", "box", "reason"),
    [
        ([10, 20, 110, 70], (10.0, 20.0, 110.0, 70.0), "box given by the dataset"),
        ((-5.0, 50.0, 250.0, 120.5), (0.0, 50.0, 200.0, 100.0), "clipped from [-5, 50, 250, 120]"),
        (None, None, "gives no box"),
        ([10, 20, 10, 70], None, "empty or inverted"),
        ([100, 20, 10, 70], None, "empty or inverted"),
        ([300, 300, 400, 400], None, "outside the 200x100 image"),
        ([float("nan"), 0, 10, 10], None, "four finite numbers"),
        ([1, 2, 3], None, "four finite numbers"),
        (["a", "b", "c", "d"], None, "not four numbers"),
    ],
)
def test_dataset_grounder(bbox: list | None, box: Box | None, reason: str) -> None:
    grounding = DatasetGrounder().ground(Image.new("RGB", (200, 100)), "q", ["a"], bbox=bbox)
    assert grounding.box == box
    assert grounding.source == "dataset"
    assert reason in grounding.reason


def test_grounding_rejects_inverted_boxes() -> None:
    with pytest.raises(ValueError, match="x0 < x1"):
        Grounding(box=(10, 10, 5, 20), source="vlm", reason="")


# --- OCR ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def invoice() -> tuple[Page, list]:
    """A 1600x1000 page of 14 px text (4 to 5 px in the half view: unreadable there) and its OCR lines."""
    page = Page(1600, 1000)
    page.text(60, 40, "NORTHWIND TRADING COMPANY", size=32)
    page.text(80, 200, "Invoice No")
    page.text(200, 200, "INV-2024-0042")
    page.text(80, 240, "Year 2012")
    page.text(80, 280, "Qty")
    page.text(160, 280, "12")
    page.text(900, 300, "Tax")
    page.text(1000, 300, "4.20 ")
    page.text(900, 340, "Shipping")
    page.text(1000, 340, "4.20")
    page.text(1200, 700, "Order")
    page.text(1290, 700, "Confirmed")  # a separate box: the answer "Order Confirmed" spans two
    page.text(700, 800, "Reference: ZX-9731-QT")
    page.text(1450, 960, "PAGE 7 OF 9")
    return page, OCRGrounder().read(page.image)


@pytest.mark.parametrize(
    ("question", "answer", "drawn", "part"),
    [
        ("What is the invoice number?", "INV-2024-0042", "INV-2024-0042", None),
        ("What is the invoice number?", "inv 2024 0042", "INV-2024-0042", None),  # case, spaces, dashes
        ("What is the page number?", "Page 7 of 9", "PAGE 7 OF 9", None),  # in a corner
        ("What is the reference?", "ZX-9731-QT", "Reference: ZX-9731-QT", "ZX-9731-QT"),  # inside a line
        ("What is the reference?", "ZX-9731-0T", "Reference: ZX-9731-QT", "ZX-9731-QT"),  # one OCR-ish error
        ("What is the shipping cost?", "4.20", "4.20", None),  # the line that names "shipping", not "tax"
        ("What is the quantity?", "12", "12", None),  # the whole number, not the "12" inside "2012"
    ],
)
def test_ocr_grounder_finds_the_answer(
    invoice: tuple[Page, list], question: str, answer: str, drawn: str, part: str | None
) -> None:
    page, lines = invoice
    grounding = OCRGrounder().locate(lines, question, [answer], page.image.size)
    assert grounding.box is not None, grounding.reason
    truth = page.part(drawn, part) if part else page.boxes[drawn]
    assert iou(grounding.box, truth) > 0.5, (grounding.box, truth)
    assert grounding.source == "ocr" and answer in grounding.reason
    assert grounding.score == pytest.approx(0.875 if "0T" in answer else 1.0)  # 1 error in 8


def test_ocr_grounder_merges_boxes_split_on_a_line(invoice: tuple[Page, list]) -> None:
    page, lines = invoice
    words = {line.text for line in lines}
    assert {"Order", "Confirmed"} <= words  # the engine really read two boxes
    grounding = OCRGrounder().locate(lines, "What is the status?", ["order confirmed"], page.image.size)
    assert grounding.box is not None, grounding.reason
    truth = (
        page.boxes["Order"][0],
        page.boxes["Order"][1],
        page.boxes["Confirmed"][2],
        page.boxes["Order"][3],
    )
    assert iou(grounding.box, truth) > 0.5


def line(text: str, box: Box, confidence: float = 0.99) -> RawBox:
    """An OCR line as the engine reports it (to test the matching rules with chosen confidences)."""
    return RawBox(text, confidence, box, box[3] - box[1])


@pytest.mark.parametrize(
    ("question", "answer", "box"),
    [
        # Equal matches: the one on the row that names the question's subject wins, even if read less surely.
        ("What is the shipping cost?", "4.20", (100.0, 40.0, 140.0, 60.0)),
        ("How much is the tax?", "4.20", (100.0, 0.0, 140.0, 20.0)),
        # A match inside a longer number loses to a whole one, even if read more surely.
        ("What is the quantity?", "12", (300.0, 40.0, 320.0, 60.0)),
        # The matched characters' share of the line: "INV-42" is characters 9 to 14 of 15.
        ("Which invoice?", "inv 42", (390.0, 80.0, 450.0, 100.0)),
        # Split over neighbouring boxes on a row; the box after the gap of 100 px (5 heights) is not merged.
        ("What is the status?", "order confirmed", (0.0, 120.0, 130.0, 140.0)),
    ],
)
def test_ocr_matching_rules(question: str, answer: str, box: Box) -> None:
    lines = [
        line("Tax", (0, 0, 40, 20)),
        line("4.20", (100, 0, 140, 20), 0.999),
        line("Shipping", (0, 40, 80, 60)),
        line("4.20", (100, 40, 140, 60), 0.9),
        line("Year 2012", (200, 40, 290, 60), 0.999),
        line("12", (300, 40, 320, 60), 0.9),
        line("Invoice: INV-42", (300, 80, 450, 100)),
        line("Order", (0, 120, 50, 140)),
        line("Confirmed", (60, 120, 130, 140)),
        line("Confirmed", (230, 120, 300, 140)),
    ]
    grounding = OCRGrounder().locate(lines, question, [answer], (500, 200))
    assert grounding.box == pytest.approx(box)


def test_ocr_grounder_takes_any_accepted_answer(invoice: tuple[Page, list]) -> None:
    page, lines = invoice
    grounding = OCRGrounder().locate(lines, "Which company?", ["Acme", "Northwind Trading"], page.image.size)
    assert grounding.box is not None
    truth = page.part("NORTHWIND TRADING COMPANY", "NORTHWIND TRADING")
    assert iou(grounding.box, truth) > 0.5  # the matched words only, not the whole title


@pytest.mark.parametrize(
    ("answers", "reason"),
    [
        (["Purchase Order"], "none of 'Purchase Order' found among"),
        (["INV-2024-9999"], "none of"),  # 4 of 11 characters wrong: below the similarity threshold
        (["?!"], "no answer has a letter or digit"),
    ],
)
def test_ocr_grounder_not_found(invoice: tuple[Page, list], answers: list[str], reason: str) -> None:
    page, lines = invoice
    grounding = OCRGrounder().locate(lines, "q", answers, page.image.size)
    assert grounding.box is None and reason in grounding.reason


def test_ocr_grounder_min_similarity_is_applied(invoice: tuple[Page, list]) -> None:
    page, lines = invoice
    near = ["ZX-9731-0T"]  # similarity 0.875
    assert OCRGrounder(min_similarity=0.95).locate(lines, "q", near, page.image.size).box is None
    assert OCRGrounder(min_similarity=0.85).locate(lines, "q", near, page.image.size).box is not None
    with pytest.raises(ConfigError, match="min_similarity"):
        OCRGrounder(min_similarity=0)


def test_ocr_grounder_reads_large_images_in_tiles() -> None:
    page = Page(1100, 420)
    page.text(420, 100, "Reference: ZX-9731-QT")  # across the first tile's right edge (x = 500)
    page.text(700, 300, "TOTAL 1,284.50")  # across the second tile's right edge (x = 800)
    page.text(40, 300, "Lot 77")
    grounder = OCRGrounder(tile_size=500, overlap=200)
    assert grounder._tiles(1100, 420) == [(0, 0, 500, 420), (300, 0, 800, 420), (600, 0, 1100, 420)]
    lines = grounder.read(page.image)
    # Every line read once and whole: the cut readings at the tiles' edges were dropped.
    assert sorted(line.text.replace(" ", "") for line in lines) == [
        "Lot77",
        "Reference:ZX-9731-QT",
        "TOTAL1,284.50",
    ]
    grounding = grounder.ground(page.image, "What is the total?", ["1,284.50"])
    assert grounding.box is not None
    assert iou(grounding.box, page.part("TOTAL 1,284.50", "1,284.50")) > 0.5


def test_ocr_grounder_async_and_blank_image() -> None:
    grounding = asyncio.run(OCRGrounder().aground(Image.new("RGB", (300, 120), "white"), "q", ["42"]))
    assert grounding.box is None and "no text" in grounding.reason


# --- a VLM against a loopback server ------------------------------------------------------------------------


def scene(width: int = 3000, height: int = 2000) -> Image.Image:
    """A grey image with a red block at (600, 400)-(900, 700)."""
    image = Image.new("RGB", (width, height), (128, 128, 128))
    ImageDraw.Draw(image).rectangle((600, 400, 899, 699), fill=(255, 0, 0))
    return image


def vlm(server: ScriptedChatServer, model: str = QWEN25, **kwargs: object) -> VLMGrounder:
    backend = OpenAIBackend(model, base_url=server.base_url, max_retries=2, timeout=10)
    return VLMGrounder(backend, **kwargs)  # type: ignore[arg-type]


def boxes_reply(*boxes: list[float], fence: bool = False) -> Completion:
    body = "[" + ", ".join(f'{{"bbox_2d": {list(b)}, "label": "evidence"}}' for b in boxes) + "]"
    return Completion(text=f"```json\n{body}\n```" if fence else body)


def red_extent(image: Image.Image) -> tuple[int, int, int, int]:
    mask = Image.eval(image.convert("RGB").split()[1], lambda g: 255 if g < 64 else 0)  # red: no green
    box = mask.getbbox()
    assert box is not None
    return box


def test_vlm_grounder_absolute_coordinates_map_back(chat_server: ScriptedChatServer) -> None:
    grounder = vlm(chat_server)
    assert grounder.coords == "absolute" and grounder.rule == QWEN2_5_VL
    height, width = smart_resize(2000, 3000, 28, QWEN2_5_VL.min_pixels, QWEN2_5_VL.max_pixels)
    assert (width, height) == (1540, 1008)
    # The model saw 1540x1008: x scales by 3000/1540, y by 2000/1008.
    chat_server.enqueue(boxes_reply([154, 126, 308, 252]))
    grounding = grounder.ground(scene(), "What is the red thing?", ["a block"])
    assert grounding.box == pytest.approx((300.0, 250.0, 600.0, 500.0))
    assert grounding.source == "vlm" and "1540x1008" in grounding.reason

    request = chat_server.requests[0]
    (sent,) = request.images()
    assert sent.size == (1540, 1008)  # the size the model's processor works at: it will not resize again
    x0, y0, x1, y1 = red_extent(sent)  # the whole image, resized (not a crop)
    assert abs(x0 - 600 * 1540 / 3000) <= 2 and abs(x1 - 900 * 1540 / 3000) <= 2
    assert abs(y0 - 400 * 1008 / 2000) <= 2 and abs(y1 - 700 * 1008 / 2000) <= 2
    prompt = request.messages[0]["content"][1]["text"]
    assert 'Answer: "a block"' in prompt and "bbox_2d" in prompt
    assert "1540 pixels wide and 1008 pixels high" in prompt


def test_vlm_grounder_relative_1000(chat_server: ScriptedChatServer) -> None:
    grounder = vlm(chat_server, model=QWEN3)
    assert grounder.coords == "relative-1000" and grounder.rule == QWEN3_VL
    chat_server.enqueue(boxes_reply([100, 250, 200, 500], fence=True))
    grounding = grounder.ground(scene(), "q", ["a", "b"])
    assert grounding.box == pytest.approx((300.0, 500.0, 600.0, 1000.0))
    (sent,) = chat_server.requests[0].images()
    height, width = smart_resize(2000, 3000, 32, QWEN3_VL.min_pixels, QWEN3_VL.max_pixels)
    assert sent.size == (width, height) and width % 32 == 0 and height % 32 == 0
    prompt = chat_server.requests[0].messages[0]["content"][1]["text"]
    assert "from 0 to 1000" in prompt and '(also accepted: "b")' in prompt


def test_vlm_grounder_explicit_coords_and_token_rule(chat_server: ScriptedChatServer) -> None:
    # A model name that says nothing: the configured rule decides the size, the option the convention.
    grounder = vlm(chat_server, model="my-finetune", token_rule="qwen2.5-vl", coords="relative-1000")
    chat_server.enqueue(boxes_reply([0, 0, 500, 500]))
    assert grounder.ground(scene(), "q", ["a"]).box == pytest.approx((0.0, 0.0, 1500.0, 1000.0))
    assert chat_server.requests[0].images()[0].size == (1540, 1008)


def test_vlm_grounder_unknown_model_and_max_pixels(chat_server: ScriptedChatServer) -> None:
    # Not a Qwen-VL: the image is scaled (not rounded) to the pixel budget, and boxes are absolute in it.
    grounder = vlm(chat_server, model="gpt-4o-mini")
    assert grounder.coords == "absolute"
    chat_server.enqueue(boxes_reply([100, 100, 200, 200]))
    grounding = grounder.ground(scene(), "q", ["a"])
    (sent,) = chat_server.requests[0].images()
    assert sent.width * sent.height <= DEFAULT_VLM_MAX_PIXELS
    assert sent.width / sent.height == pytest.approx(1.5, abs=0.01)
    assert grounding.box == pytest.approx(
        (100 * 3000 / sent.width, 100 * 2000 / sent.height, 200 * 3000 / sent.width, 200 * 2000 / sent.height)
    )

    small = vlm(chat_server, max_pixels=256 * 28 * 28)
    chat_server.enqueue(boxes_reply([10, 10, 20, 20]))
    small.ground(scene(), "q", ["a"])
    height, width = smart_resize(2000, 3000, 28, QWEN2_5_VL.min_pixels, 256 * 28 * 28)
    assert chat_server.requests[1].images()[0].size == (width, height)


@pytest.mark.parametrize(
    ("text", "box"),
    [
        ('{"bbox_2d": [154, 126, 308, 252], "label": "x"}', (300.0, 250.0, 600.0, 500.0)),  # one object
        ('Sure! ```json\n[{"bbox_2d": [154, 126, 308, 252]}]\n``` Done.', (300.0, 250.0, 600.0, 500.0)),
        ("[154, 126, 308, 252]", (300.0, 250.0, 600.0, 500.0)),  # a bare list
        ('[{"bbox_2d": [154, 126, 308, 252]}, {"bbox_2d": [770, 504, 924, 630]}]', (300, 250, 1800, 1250)),
        ('[{"bbox_2d": ["154", "126", "308", "252"]}]', (300.0, 250.0, 600.0, 500.0)),  # numbers as strings
        ('[{"bbox_2d": [154, 126, 308, 252]}, {"bbox_2d": [1', (300.0, 250.0, 600.0, 500.0)),  # cut off
        ("<|box_start|>(154,126),(308,252)<|box_end|>", (300.0, 250.0, 600.0, 500.0)),  # Qwen2-VL
        ('[{"bbox_2d": [-100, 126, 308, 9999]}]', (0.0, 250.0, 600.0, 2000.0)),  # clipped to the image
    ],
)
def test_vlm_grounder_reply_formats(chat_server: ScriptedChatServer, text: str, box: Box) -> None:
    chat_server.enqueue(Completion(text=text))
    grounding = vlm(chat_server).ground(scene(), "q", ["a"])
    assert grounding.box == pytest.approx(box)


def test_vlm_grounder_first_box_only(chat_server: ScriptedChatServer) -> None:
    chat_server.enqueue(boxes_reply([154, 126, 308, 252], [770, 504, 924, 630]))
    grounding = vlm(chat_server, combine="first").ground(scene(), "q", ["a"])
    assert grounding.box == pytest.approx((300.0, 250.0, 600.0, 500.0))


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("The answer is in the top left corner.", "no box in the model's reply"),
        ("", "no box in the model's reply"),
        ('[{"bbox_2d": [300, 200, 300, 250]}]', "empty or inverted"),
        ('[{"bbox_2d": [300, 250, 200, 200]}]', "empty or inverted"),
        ('[{"bbox_2d": [1600, 1100, 1700, 1200]}]', "outside the image"),
        ('[{"bbox_2d": [100, 100]}]', "no box in the model's reply"),
    ],
)
def test_vlm_grounder_unusable_replies(chat_server: ScriptedChatServer, text: str, reason: str) -> None:
    chat_server.enqueue(Completion(text=text))
    grounding = vlm(chat_server).ground(scene(), "q", ["a"])
    assert grounding.box is None and reason in grounding.reason


def test_vlm_grounder_drops_bad_boxes_but_keeps_good_ones(chat_server: ScriptedChatServer) -> None:
    chat_server.enqueue(boxes_reply([300, 250, 200, 200], [154, 126, 308, 252]))
    grounding = vlm(chat_server).ground(scene(), "q", ["a"])
    assert grounding.box == pytest.approx((300.0, 250.0, 600.0, 500.0))
    assert "dropped [300, 250, 200, 200] is empty or inverted" in grounding.reason


def test_vlm_grounder_backend_faults(chat_server: ScriptedChatServer) -> None:
    chat_server.enqueue(HTTPError(429, headers=FAST_RETRY), HTTPError(500, headers=FAST_RETRY))
    chat_server.enqueue(boxes_reply([154, 126, 308, 252]))
    assert vlm(chat_server).ground(scene(), "q", ["a"]).box == pytest.approx((300, 250, 600, 500))
    assert len(chat_server.requests) == 3

    chat_server.enqueue(Garbage(b"{not json"))
    with pytest.raises(BackendResponseError):
        vlm(chat_server).ground(scene(), "q", ["a"])
    chat_server.enqueue(*[HTTPError(500, headers=FAST_RETRY)] * 3)
    with pytest.raises(BackendHTTPError):
        vlm(chat_server).ground(scene(), "q", ["a"])


def test_vlm_grounder_async(chat_server: ScriptedChatServer) -> None:
    chat_server.enqueue(boxes_reply([154, 126, 308, 252]))
    grounding = asyncio.run(vlm(chat_server).aground(scene(), "q", ["a"]))
    assert grounding.box == pytest.approx((300.0, 250.0, 600.0, 500.0))


def test_vlm_grounder_options(chat_server: ScriptedChatServer) -> None:
    with pytest.raises(ConfigError, match="coords"):
        vlm(chat_server, coords="normalized")
    with pytest.raises(ConfigError, match="combine"):
        vlm(chat_server, combine="all")
    with pytest.raises(ConfigError, match="max_pixels"):
        vlm(chat_server, max_pixels=0)
    with pytest.raises(ConfigError, match="chat backend"):
        VLMGrounder("Qwen2.5-VL")  # type: ignore[arg-type]


def test_parse_boxes_ignores_non_boxes() -> None:
    assert parse_boxes('{"answer": 42, "points": [1, 2]}') == []
    assert parse_boxes('[{"bbox_2d": [1, 2, 3, true]}]') == []
    assert parse_boxes(f'[{{"bbox_2d": [1, 2, 3, {math.inf}]}}]') == []


# --- chains and the factory --------------------------------------------------------------------------------


def test_chain_first_box_wins(chat_server: ScriptedChatServer) -> None:
    chain = ChainGrounder([DatasetGrounder(), vlm(chat_server)])
    assert chain.name == "dataset,vlm" and isinstance(chain, Grounder)
    grounding = chain.ground(scene(), "q", ["a"], bbox=[10, 10, 50, 50])
    assert grounding.box == (10.0, 10.0, 50.0, 50.0) and grounding.source == "dataset"
    assert chat_server.requests == []  # the VLM was never asked


def test_chain_falls_through_and_keeps_reasons(chat_server: ScriptedChatServer) -> None:
    chain = ChainGrounder([DatasetGrounder(), vlm(chat_server)])
    chat_server.enqueue(boxes_reply([154, 126, 308, 252]))
    grounding = chain.ground(scene(), "q", ["a"])
    assert grounding.box == pytest.approx((300.0, 250.0, 600.0, 500.0)) and grounding.source == "vlm"
    assert grounding.reason.startswith("dataset: the dataset gives no box; vlm: 1 box(es)")

    chat_server.enqueue(Completion(text="no idea"))
    nothing = asyncio.run(chain.aground(scene(), "q", ["a"], bbox=[5, 5, 5, 5]))
    assert nothing.box is None and nothing.source == "dataset+vlm"
    assert "dataset: the dataset's box [5, 5, 5, 5] is empty" in nothing.reason
    assert "vlm: no box in the model's reply" in nothing.reason


def test_make_grounder(chat_server: ScriptedChatServer) -> None:
    assert isinstance(make_grounder("dataset"), DatasetGrounder)
    ocr = make_grounder(" OCR ", min_similarity=0.9)
    assert isinstance(ocr, OCRGrounder) and ocr.min_similarity == 0.9
    backend = OpenAIBackend(QWEN3, base_url=chat_server.base_url)
    chain = make_grounder("dataset,ocr,vlm", backend=backend, min_similarity=0.7, coords="absolute")
    assert isinstance(chain, ChainGrounder)
    kinds = [type(g) for g in chain.grounders]
    assert kinds == [DatasetGrounder, OCRGrounder, VLMGrounder]
    assert chain.grounders[1].min_similarity == 0.7 and chain.grounders[2].coords == "absolute"


@pytest.mark.parametrize(
    ("spec", "kwargs", "message"),
    [
        ("dataset,sam", {}, "unknown grounder"),
        ("", {}, "empty grounder spec"),
        ("ocr,ocr", {}, "twice"),
        ("dataset,vlm", {}, "needs backend"),
        ("dataset,ocr", {"coords": "absolute"}, "no grounder takes"),
    ],
)
def test_make_grounder_errors(spec: str, kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_grounder(spec, **kwargs)


def test_make_grounder_takes_typed_options(chat_server: ScriptedChatServer) -> None:
    backend = OpenAIBackend(QWEN3, base_url=chat_server.base_url)
    options = GrounderOptions(backend=backend, tile_size=1000, overlap=100, combine="first")
    chain = make_grounder("ocr,vlm", options, max_run=2)  # keywords add to (and override) the options
    assert isinstance(chain, ChainGrounder)
    ocr, vlm = chain.grounders
    assert isinstance(ocr, OCRGrounder) and isinstance(vlm, VLMGrounder)
    assert (ocr.tile_size, ocr.overlap, ocr.max_run) == (1000, 100, 2)
    assert ocr.min_similarity == 0.8  # not given: the grounder's own default
    assert vlm.backend is backend and vlm.combine == "first"
    with pytest.raises(ConfigError, match=r"no grounder takes \['tile_size'\]; valid here: \[\]"):
        make_grounder("dataset", GrounderOptions(tile_size=1000))
    with pytest.raises(ConfigError, match=r"no grounder takes \['colour'\]"):
        make_grounder("ocr", colour="red")


def test_the_ocr_grounder_reads_with_the_readers_default_thresholds() -> None:
    # One engine, one set of default thresholds: what the grounder reads is what the reader would.
    assert OcrSettings() == OcrSettings(
        box_thresh=DEFAULT_CONFIG.ocr_box_thresh,
        text_score=DEFAULT_CONFIG.ocr_text_score,
        unclip_ratio=DEFAULT_CONFIG.ocr_unclip_ratio,
        char_width_to_px=DEFAULT_CONFIG.char_width_to_px,
        char_width_min_chars=DEFAULT_CONFIG.char_width_min_chars,
    )
