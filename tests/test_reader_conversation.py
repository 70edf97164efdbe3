"""What the reader sees of a conversation: only the messages' text and pixels, never the graph's image labels.

The crops' regions come from the text a model receives (``"Crop 3 (bottom-right):"`` before each image with
the ``json`` protocol) or from its own request (``GET_CROPS: ['3']`` with ``awares-text``, whose crops come
back as bare images). The messages are the ones the real protocols build; the OCR is real.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw, ImageFont

from awares_agent.baselines.reader import ReaderBackend
from awares_agent.baselines.reader.conversation import read_turn
from awares_agent.image_store import ImageStore
from awares_agent.images import ViewSpec
from awares_agent.messages import ChatMessage, ChatReply, ImagePart, TextPart
from awares_agent.tools.crop_sets import crop_set
from awares_agent.tools.protocols import AwaresTextProtocol, JsonProtocol, ToolProtocol

_DEJAVU = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
_PAPER = crop_set("paper")


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    if _DEJAVU.exists():
        return ImageFont.truetype(str(_DEJAVU), size)
    return ImageFont.load_default(size)


@pytest.fixture(scope="module")
def page() -> Image.Image:
    """A 1600x1200 invoice: a large field top-left, a 12 px total in the bottom-right quadrant (region 3)."""
    image = Image.new("RGB", (1600, 1200), "white")
    draw = ImageDraw.Draw(image)
    draw.text((60, 60), "Invoice No: 48213", font=_font(36), fill="black")
    draw.text((60, 200), "Customer: Northwind Traders", font=_font(24), fill="black")
    draw.text((1200, 1100), "Total: 1,284.50", font=_font(12), fill="black")
    return image


@pytest.fixture(scope="module")
def reader() -> ReaderBackend:
    return ReaderBackend()


class _Blind(ImagePart):
    """An image part whose graph-side bookkeeping (``kind``, ``label``) cannot be read: reading it fails."""

    def __getattribute__(self, name: str) -> Any:
        if name in ("kind", "label"):
            raise AssertionError(f"the reader read ImagePart.{name}, which a VLM never receives")
        return super().__getattribute__(name)


def _bare(part: ImagePart, **fields: Any) -> ImagePart:
    """``part`` as pixels and size only (``fields`` may give it a misleading kind or label)."""
    return ImagePart(image_id=part.image_id, width=part.width, height=part.height, **fields)


def _blind(part: ImagePart) -> ImagePart:
    return _Blind(image_id=part.image_id, width=part.width, height=part.height)


def _messages(
    protocol: ToolProtocol,
    store: ImageStore,
    source_id: str,
    request: ChatReply,
    *,
    view: Any = None,
    crop: Any = None,
) -> list[ChatMessage]:
    """The conversation the graph builds for one crop round: the view and question, the model's request,
    and the crops it returned (made by the protocol itself). ``view`` and ``crop`` rewrite the image parts
    (default: as the store makes them, labelled and with their kind)."""
    real_view = store.view(source_id, ViewSpec(0.5))
    decision = protocol.parse(request)
    assert decision.kind == "crop"
    served = []
    for rid in decision.crops:
        region = _PAPER.region(rid, 1600, 1200)
        part = store.crop(source_id, region.box, label=f"crop {region.id} ({region.name})")
        served.append((region.id, region.name, crop(part) if crop else part))
    return [
        ChatMessage.text_message("system", protocol.system_prompt()),
        ChatMessage(
            role="user",
            content=[view(real_view) if view else real_view, TextPart(text="What is the total?")],
        ),
        protocol.assistant_message(request),
        *protocol.crops_messages(decision, served),
    ]


_REQUESTS = {
    "json": ChatReply(tool_calls=[{"id": "call_0", "name": "get_crops", "arguments": '{"crops": ["3"]}'}]),
    "awares-text": ChatReply(text="GET_CROPS: ['3']"),
}


def _protocol(key: str) -> ToolProtocol:
    return JsonProtocol(_PAPER) if key == "json" else AwaresTextProtocol(_PAPER)


@pytest.mark.parametrize("key", ["json", "awares-text"])
def test_a_crop_without_label_or_kind_is_placed_at_its_region(
    page: Image.Image, reader: ReaderBackend, key: str
) -> None:
    """Bare crop images (no label, the default kind): the region comes from the text, and the crop's text is
    placed where it is on the original."""
    store = ImageStore()
    source = store.add(page)
    messages = _messages(_protocol(key), store, source.id, _REQUESTS[key], view=_bare, crop=_bare)
    turn = read_turn(messages, None, _PAPER)
    assert [rid for rid, _ in turn.crops] == ["3"]
    assert turn.final
    boxes, size, scale = reader.policy.images.boxes(turn, store)
    assert size == (1600, 1200) and scale == pytest.approx(0.5)
    total = next(b for b in boxes if b.source == "crop" and "total" in b.text.lower())
    # Drawn at (1200, 1100) on the original: placed there, not at another region's offset.
    assert 1190 <= total.box[0] <= 1210 and 1095 <= total.box[1] <= 1110
    reply = reader.complete(messages, images=store)
    assert reply.tool_calls == [] and reply.text == "1,284.50"


@pytest.mark.parametrize("key", ["json", "awares-text"])
def test_the_reader_never_reads_image_labels_or_kinds(
    page: Image.Image, reader: ReaderBackend, key: str
) -> None:
    """Misleading labels and kinds change nothing, and parts whose label or kind cannot be read at all are
    read the same: neither is ever looked at, on the first turn or after the crops."""
    store = ImageStore()
    source = store.add(page)
    protocol = _protocol(key)
    honest = _messages(protocol, store, source.id, _REQUESTS[key])
    misleading = _messages(
        protocol,
        store,
        source.id,
        _REQUESTS[key],
        view=lambda p: _bare(p, kind="crop", label="crop 8 (right)"),
        crop=lambda p: _bare(p, kind="view", label="crop 0 (top-left)"),
    )
    blind = _messages(protocol, store, source.id, _REQUESTS[key], view=_blind, crop=_blind)
    assert isinstance(blind[1].images[0], _Blind) and isinstance(blind[-1].images[0], _Blind)
    replies = [reader.complete(m, images=store).text for m in (honest, misleading, blind)]
    assert replies == ["1,284.50"] * 3
    # The first turn too: the view is the first image of the first user message, whatever it says it is.
    tools = protocol.tools()
    first = [reader.complete(m[:2], images=store, tools=tools) for m in (honest, misleading, blind)]
    calls = [(r.text, [(c.name, c.arguments) for c in r.tool_calls]) for r in first]
    assert calls[0] == calls[1] == calls[2]
    assert calls[0] == (
        ("", [("get_crops", '{"crops": ["3"]}')]) if key == "json" else ("GET_CROPS: ['3']", [])
    )


def test_crops_come_back_in_request_order_and_by_name(page: Image.Image) -> None:
    """awares-text: bare images follow the request's order, names resolve, and crops the budget withheld
    (the note says which) are skipped."""
    store = ImageStore()
    source = store.add(page)
    protocol = AwaresTextProtocol(_PAPER)
    messages = _messages(protocol, store, source.id, ChatReply(text="GET_CROPS: ['bottom right', 'top']"))
    assert [rid for rid, _ in read_turn(messages, None, _PAPER).crops] == ["3", "5"]
    # The budget withheld crop 5 of a request for 5 and 3: the one image is crop 3.
    view = store.view(source.id, ViewSpec(0.5))
    region = _PAPER.region("3", 1600, 1200)
    crop = _bare(store.crop(source.id, region.box))
    decision = protocol.parse(ChatReply(text="GET_CROPS: ['5', '3']"))
    note = "Crops 5 were withheld: they would exceed this question's visual-token budget."
    withheld = [
        ChatMessage(role="user", content=[view, TextPart(text="What is the total?")]),
        ChatMessage(role="assistant", content=[TextPart(text="GET_CROPS: ['5', '3']")]),
        *protocol.crops_messages(decision, [("3", region.name, crop)], note=note),
    ]
    assert [rid for rid, _ in read_turn(withheld, None, _PAPER).crops] == ["3"]


def test_a_crop_whose_region_cannot_be_told_is_not_placed(page: Image.Image, reader: ReaderBackend) -> None:
    """An image after no request and with no "Crop N" text: its region is unknown, it is not placed on the
    original, and the reader answers from what it can place (the view), as it did for a crop without label."""
    store = ImageStore()
    source = store.add(page)
    view = store.view(source.id, ViewSpec(0.5))
    region = _PAPER.region("3", 1600, 1200)
    crop = store.crop(source.id, region.box, label="crop 3 (bottom-right)")  # the label must not help
    messages = [
        ChatMessage.text_message("system", AwaresTextProtocol(_PAPER).system_prompt()),
        ChatMessage(role="user", content=[view, TextPart(text="What is the total?")]),
        ChatMessage(role="assistant", content=[TextPart(text="I need a closer look.")]),
        ChatMessage(role="user", content=[crop, TextPart(text="Here is part of the image.")]),
    ]
    turn = read_turn(messages, None, _PAPER)
    assert [rid for rid, _ in turn.crops] == [None]
    boxes, _, _ = reader.policy.images.boxes(turn, store)
    assert boxes and all(b.source == "view" for b in boxes)
    reply = reader.complete(messages, images=store)
    assert reply.tool_calls == [] and reply.text and "GET_CROPS" not in reply.text
