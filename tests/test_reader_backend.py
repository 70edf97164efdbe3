"""The OCR reader backend: real OCR on generated forms, through the real agent and both tool protocols."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

from awares_agent import AwaResAgent
from awares_agent.backends.base import ChatBackend
from awares_agent.backends.reader import UNKNOWN, ReaderBackend, parse_question
from awares_agent.image_store import ImageStore
from awares_agent.images import ViewSpec
from awares_agent.messages import ChatMessage, TextPart
from awares_agent.tokens import PixelTokenRule
from evals.metrics import exact

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
def test_small_field_is_read_from_one_quadrant(form: Image.Image, reader: ReaderBackend, protocol: str) -> None:
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
def test_unanswerable_questions_answer_unknown(form: Image.Image, reader: ReaderBackend, question: str) -> None:
    result = AwaResAgent(reader).ask(form, question)
    assert result.answer == UNKNOWN
    assert result.trajectory.errors == []


def test_forced_crops_are_used(form: Image.Image, reader: ReaderBackend) -> None:
    """Crops the reader did not ask for (another policy chose them) are still read and placed."""
    from evals.policies import FixedCropsBackend

    agent = AwaResAgent(FixedCropsBackend(reader, ["8"]))
    result = agent.ask(form, "What is the shipping?")
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
