"""The bad- and odd-image matrix: every kind of input a user may hand the agent, built locally as real files.

Shared by ``tests/test_bad_images.py`` (which runs each case through the agent, the evaluation runner and the
command line) and ``benchmarks/bench_reliability.py`` (which counts the cases handled)::

    for case in CASES:
        image = case.build(folder)      # writes its file(s) under folder; returns the input to pass
        if case.error is None: ...      # a valid image: the agent must answer
        else: ...                       # must raise case.error, its message containing label(image)

:class:`OkBackend` is the stand-in for a remote model: it encodes every image it is sent, as the OpenAI
adapter does, and answers ``"ok"`` (optionally after requesting the ``all`` crop, so the full-resolution
decode is exercised as well).
"""

from __future__ import annotations

import io
import os
import struct
import threading
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from PIL import Image

from awares_agent.errors import ImageDecodeError, ImageError, ImageTooLargeError
from awares_agent.image_store import ImageStore
from awares_agent.images import ImageInput
from awares_agent.messages import ChatMessage, ChatReply, ToolCall, ToolSpec

# --- the stand-in model --------------------------------------------------------------------------------


class OkBackend:
    """A fake remote VLM: resolves and PNG-encodes every image in the request, then answers ``"ok"``.

    Args:
        crop_first: on a turn that offers tools, request the ``all`` crop first (so the full-resolution image
            is decoded and cropped), and answer ``"ok"`` once crops have been sent.

    Attributes:
        calls: how many turns it has answered.
    """

    def __init__(self, *, crop_first: bool = False) -> None:
        self.crop_first = crop_first
        self.calls = 0
        self._lock = threading.Lock()

    @property
    def model_name(self) -> str:
        return "fake-vlm"

    def complete(
        self, messages: Sequence[ChatMessage], *, images: ImageStore, tools: Sequence[ToolSpec] | None = None
    ) -> ChatReply:
        with self._lock:
            self.calls += 1
        sent = [part for message in messages for part in message.images]
        for part in sent:
            images.data_uri(part.image_id, "png")
        if self.crop_first and tools and not any(part.kind == "crop" for part in sent):
            call = ToolCall(id="call_0", name=tools[0].name, arguments='{"crops": ["all"]}')
            return ChatReply(tool_calls=[call], finish_reason="tool_calls")
        return ChatReply(text="ok", finish_reason="stop")

    async def acomplete(
        self, messages: Sequence[ChatMessage], *, images: ImageStore, tools: Sequence[ToolSpec] | None = None
    ) -> ChatReply:
        return self.complete(messages, images=images, tools=tools)


# --- the cases -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageCase:
    """One input and the outcome every entry point must give for it.

    Attributes:
        name: a short id (also the evaluation sample id).
        build: writes the input's file(s) under the given folder and returns what to pass to the agent.
        error: the :class:`~awares_agent.errors.ImageError` subclass it must raise; None for a valid image.
        says: a fragment the error message must contain (what is wrong), besides the input's label.
        size: for a valid image, its (width, height) once the EXIF orientation is applied.
        corner: for a valid image, the colour the view's top-left pixel must have (within a tolerance).
        bomb: its header claims billions of pixels: it must be refused at once, allocating nothing.
        given_as: what ``build`` returns: a ``path`` (or path-like string), a ``url``, ``bytes`` or a ``pil``
            image; the command line takes only the first two.
    """

    name: str
    build: Callable[[Path], ImageInput]
    error: type[ImageError] | None = None
    says: str = ""
    size: tuple[int, int] | None = None
    corner: tuple[int, int, int] | None = None
    bomb: bool = False
    given_as: Literal["path", "url", "bytes", "pil"] = "path"

    @property
    def valid(self) -> bool:
        return self.error is None


def label(image: ImageInput) -> str:
    """How an error message names ``image``: its path or URL, ``<bytes>`` or ``<PIL image>``."""
    if isinstance(image, Image.Image):
        return "<PIL image>"
    if isinstance(image, bytes):
        return "<bytes>"
    return os.fspath(image)


def encode(img: Image.Image, fmt: str, **params: Any) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **params)
    return buffer.getvalue()


def quadrants(width: int = 64, height: int = 48) -> Image.Image:
    """Red, green, blue and yellow quadrants (top-left, top-right, bottom-left, bottom-right)."""
    img = Image.new("RGB", (width, height))
    w2, h2 = width // 2, height // 2
    img.paste((255, 0, 0), (0, 0, w2, h2))
    img.paste((0, 255, 0), (w2, 0, width, h2))
    img.paste((0, 0, 255), (0, h2, w2, height))
    img.paste((255, 255, 0), (w2, h2, width, height))
    return img


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def png_claiming(width: int, height: int, *, extra: bytes = b"", idat: bytes | None = None) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` (8-bit grey) with a few bytes of pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + extra
        + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 16) if idat is None else idat)
        + _png_chunk(b"IEND", b"")
    )


def gif_claiming(width: int, height: int) -> bytes:
    """A GIF whose screen and first frame claim ``width`` x ``height`` with a two-code LZW stream."""
    screen = b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0)
    lzw = b"\x02\x02\x4c\x01\x00"  # min code size 2; one sub-block: clear, 0, end; then the terminator
    return screen + frame + lzw + b"\x3b"


def jpeg_claiming(width: int, height: int) -> bytes:
    """A small real JPEG with its SOF0 frame header patched to claim ``width`` x ``height``."""
    data = bytearray(encode(Image.new("RGB", (16, 16), (90, 90, 90)), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def webp_claiming(width: int, height: int) -> bytes:
    """A small lossless WebP with its VP8L header patched to claim ``width`` x ``height`` (up to 16384)."""
    data = bytearray(encode(Image.new("RGB", (16, 16), (90, 90, 90)), "WEBP", lossless=True))
    at = data.index(b"VP8L") + 9  # chunk tag, chunk size, the 0x2f signature byte
    bits = int.from_bytes(data[at : at + 4], "little") & ~((1 << 28) - 1)
    data[at : at + 4] = (bits | (width - 1) | (height - 1) << 14).to_bytes(4, "little")
    return bytes(data)


def webp_canvas_claiming(width: int, height: int) -> bytes:
    """A small real extended-format WebP (VP8X) whose canvas is patched to ``width`` x ``height``."""
    frames = [Image.new("RGB", (16, 16), colour) for colour in ("red", "blue")]
    data = bytearray(encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], lossless=True))
    assert data[12:16] == b"VP8X"
    data[24:30] = (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    return bytes(data)


def tiff_claiming(width: int, height: int) -> bytes:
    """A small real TIFF whose ImageWidth and ImageLength tags are patched to ``width`` x ``height``."""
    data = bytearray(encode(Image.new("L", (16, 16), 90), "TIFF"))
    assert data[:2] == b"II"
    ifd = struct.unpack_from("<I", data, 4)[0]
    for n in range(struct.unpack_from("<H", data, ifd)[0]):
        entry = ifd + 2 + 12 * n
        tag = struct.unpack_from("<H", data, entry)[0]
        if tag in (256, 257):
            value = width if tag == 256 else height
            struct.pack_into("<HII", data, entry + 2, 4, 1, value)  # type LONG, one value
    return bytes(data)


def bmp_claiming(width: int, height: int) -> bytes:
    """A small real BMP whose info header is patched to claim ``width`` x ``height``."""
    data = bytearray(encode(Image.new("RGB", (16, 16), (90, 90, 90)), "BMP"))
    struct.pack_into("<ii", data, 18, width, height)
    return bytes(data)


def _jpeg_with_bad_exif() -> bytes:
    """A valid JPEG carrying an APP1 EXIF segment of garbage (the image must still be usable)."""
    jpeg = encode(quadrants(), "JPEG", quality=95)
    app1 = b"Exif\x00\x00" + b"\xde\xad" * 10
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", 2 + len(app1)) + app1 + jpeg[2:]


def _file(name: str, data: bytes | str) -> Callable[[Path], Path]:
    def build(folder: Path) -> Path:
        path = folder / name
        if isinstance(data, str):
            path.write_text(data, encoding="utf-8")
        else:
            path.write_bytes(data)
        return path

    return build


def _saved(name: str, make: Callable[[], Image.Image], fmt: str, **params: Any) -> Callable[[Path], Path]:
    def build(folder: Path) -> Path:
        path = folder / name
        make().save(path, fmt, **params)
        return path

    return build


def _truncated(name: str, img: Image.Image, fmt: str) -> Callable[[Path], Path]:
    def build(folder: Path) -> Path:
        data = encode(img, fmt)
        path = folder / name
        path.write_bytes(data[: len(data) * 2 // 3])  # the header survives; the pixel data is cut short
        return path

    return build


def _mode_image(mode: str, width: int = 64, height: int = 48) -> Image.Image:
    """A ``width`` x ``height`` image in ``mode`` with a range of values (a ramp, or colour quadrants)."""
    ramp = Image.linear_gradient("L").resize((width, height))
    if mode == "I":
        return ramp.convert("I").point(lambda v: v * 1000)  # up to 255000: beyond 16 bits
    if mode == "I;16":
        return ramp.convert("I").point(lambda v: v * 250).convert("I;16")
    if mode == "F":
        return ramp.convert("F").point(lambda v: v * 0.01)  # 0 to 2.55
    if mode == "1":
        return ramp.convert("1")
    img = quadrants(width, height).convert("P" if mode == "PA" else mode)
    if mode in ("LA", "PA", "RGBA"):
        img = img.convert(mode)
        img.putalpha(ramp)
    return img


# Modes and a format that stores each one (None: no format PIL writes holds it; passed as a PIL image).
MODE_FORMATS: dict[str, tuple[str, str] | None] = {
    "1": ("png", "PNG"),
    "L": ("png", "PNG"),
    "LA": ("png", "PNG"),
    "P": ("png", "PNG"),
    "PA": ("tif", "TIFF"),
    "RGB": ("png", "PNG"),
    "RGBA": ("png", "PNG"),
    "CMYK": ("jpg", "JPEG"),
    "YCbCr": ("jpg", "JPEG"),
    "LAB": ("tif", "TIFF"),
    "HSV": None,
    "I": ("tif", "TIFF"),
    "I;16": ("png", "PNG"),
    "F": ("tif", "TIFF"),
}


def _mode_cases() -> list[ImageCase]:
    cases = []
    for mode, target in MODE_FORMATS.items():
        slug = mode.replace(";", "-").lower()
        cases.append(
            ImageCase(f"mode-{slug}-pil", lambda _f, m=mode: _mode_image(m), size=(64, 48), given_as="pil")
        )
        if target is not None:
            ext, fmt = target
            build = _saved(f"mode-{slug}.{ext}", lambda m=mode: _mode_image(m), fmt)
            cases.append(ImageCase(f"mode-{slug}-{ext}", build, size=(64, 48)))
    return cases


def _exif_rotated(folder: Path) -> Path:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: displayed upright after a 90-degree clockwise turn
    path = folder / "exif-rotated.jpg"
    quadrants(64, 48).save(path, "JPEG", exif=exif.tobytes(), quality=95)
    return path


def _animated(name: str, fmt: str, **params: Any) -> Callable[[Path], Path]:
    def build(folder: Path) -> Path:
        frames = [Image.new("RGB", (40, 30), colour) for colour in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
        path = folder / name
        frames[0].save(path, fmt, save_all=True, append_images=frames[1:], duration=100, loop=0, **params)
        return path

    return build


def _gradient(width: int, height: int) -> Image.Image:
    return Image.linear_gradient("L").resize((width, height)).convert("RGB")


def _text_chunk_bomb() -> bytes:
    # A zTXt chunk that inflates to 8 MiB, over PIL's 1 MiB text limit (a bomb in metadata, not pixels).
    ztxt = b"Comment\x00\x00" + zlib.compress(b"\x00" * (8 << 20), 9)
    return png_claiming(4, 4, extra=_png_chunk(b"zTXt", ztxt))


MINIMAL_PDF = """%PDF-1.4
1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj
2 0 obj << /Type /Pages /Kids [3 0 R] /Count 1 >> endobj
3 0 obj << /Type /Page /Parent 2 0 R /MediaBox [0 0 200 100] >> endobj
trailer << /Root 1 0 R >>
%%EOF
"""

SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="200" height="100">'
    '<rect width="200" height="100" fill="red"/></svg>\n'
)


def _directory(folder: Path) -> Path:
    path = folder / "a-folder.png"
    path.mkdir(exist_ok=True)
    return path


def _file_url(folder: Path) -> str:
    path = folder / "real.png"
    quadrants().save(path)
    return path.as_uri()  # the file exists: only the URL form is wrong


CASES: list[ImageCase] = [
    # --- valid but odd: the agent must answer ---
    ImageCase(
        "size-1x1", _saved("1x1.png", lambda: Image.new("RGB", (1, 1), (10, 20, 30)), "PNG"), size=(1, 1)
    ),
    ImageCase("size-1x4000", _saved("1x4000.png", lambda: _gradient(1, 4000), "PNG"), size=(1, 4000)),
    ImageCase("size-4000x1", _saved("4000x1.png", lambda: _gradient(4000, 1), "PNG"), size=(4000, 1)),
    ImageCase("size-20000x10", _saved("20000x10.png", lambda: _gradient(20000, 10), "PNG"), size=(20000, 10)),
    ImageCase(
        "size-1x1-jpeg", _saved("1x1.jpg", lambda: Image.new("RGB", (1, 1), "white"), "JPEG"), size=(1, 1)
    ),
    ImageCase("size-4000x1-jpeg", _saved("4000x1.jpg", lambda: _gradient(4000, 1), "JPEG"), size=(4000, 1)),
    *_mode_cases(),
    ImageCase("exif-rotated-jpeg", _exif_rotated, size=(48, 64), corner=(0, 0, 255)),
    ImageCase(
        "jpeg-garbage-exif", _file("bad-exif.jpg", _jpeg_with_bad_exif()), size=(64, 48), corner=(255, 0, 0)
    ),
    ImageCase("animated-gif", _animated("animated.gif", "GIF"), size=(40, 30), corner=(255, 0, 0)),
    ImageCase(
        "animated-webp", _animated("animated.webp", "WEBP", lossless=True), size=(40, 30), corner=(255, 0, 0)
    ),
    ImageCase("animated-apng", _animated("animated.png", "PNG"), size=(40, 30), corner=(255, 0, 0)),
    # --- bad: a typed ImageError naming the input ---
    ImageCase("corrupt-file", _file("corrupt.png", bytes(range(256)) * 8), ImageDecodeError, "not an image"),
    ImageCase(
        "corrupt-bytes",
        lambda _f: b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4,
        ImageDecodeError,
        given_as="bytes",
    ),
    ImageCase(
        "corrupt-png-pixels",
        _file("bad-idat.png", png_claiming(64, 48, idat=b"\x78\x9c" + b"\xff" * 64)),
        ImageDecodeError,
        "could not be decoded",
    ),
    ImageCase("png-0x0", _file("zero.png", png_claiming(0, 0)), ImageDecodeError, "not an image"),
    ImageCase(
        "truncated-png", _truncated("cut.png", _gradient(300, 200), "PNG"), ImageDecodeError, "truncated"
    ),
    ImageCase(
        "truncated-jpeg", _truncated("cut.jpg", _gradient(600, 400), "JPEG"), ImageDecodeError, "truncated"
    ),
    ImageCase(
        "truncated-gif", _truncated("cut.gif", _gradient(300, 200), "GIF"), ImageDecodeError, "truncated"
    ),
    ImageCase(
        "truncated-webp", _truncated("cut.webp", _gradient(300, 200), "WEBP"), ImageDecodeError, "decoded"
    ),
    ImageCase("empty-file", _file("empty.png", b""), ImageDecodeError, "is empty (0 bytes)"),
    ImageCase(
        "bomb-png",
        _file("bomb.png", png_claiming(100_000, 100_000)),
        ImageTooLargeError,
        "100000x100000",
        bomb=True,
    ),
    ImageCase(
        "bomb-png-bytes",
        lambda _f: png_claiming(100_000, 100_000),
        ImageTooLargeError,
        "max_pixels",
        bomb=True,
        given_as="bytes",
    ),
    ImageCase(
        "bomb-gif",
        _file("bomb.gif", gif_claiming(65_535, 65_535)),
        ImageTooLargeError,
        "65535x65535",
        bomb=True,
    ),
    ImageCase(
        "bomb-jpeg",
        _file("bomb.jpg", jpeg_claiming(65_500, 65_500)),
        ImageTooLargeError,
        "65500x65500",
        bomb=True,
    ),
    ImageCase(
        "bomb-webp",
        _file("bomb.webp", webp_claiming(16_384, 16_384)),
        ImageTooLargeError,
        "16384x16384",
        bomb=True,
    ),
    ImageCase(
        "bomb-webp-canvas",
        _file("bomb-canvas.webp", webp_canvas_claiming(100_000, 40_000)),
        ImageTooLargeError,
        "100000x40000",
        bomb=True,
    ),
    ImageCase(
        "bomb-tiff",
        _file("bomb.tif", tiff_claiming(100_000, 100_000)),
        ImageTooLargeError,
        "100000x100000",
        bomb=True,
    ),
    ImageCase(
        "bomb-bmp",
        _file("bomb.bmp", bmp_claiming(100_000, 100_000)),
        ImageTooLargeError,
        "100000x100000",
        bomb=True,
    ),
    ImageCase(
        "bomb-png-text-chunk",
        _file("ztxt.png", _text_chunk_bomb()),
        ImageDecodeError,
        "MAX_TEXT_CHUNK",
        bomb=True,
    ),
    ImageCase("svg", _file("drawing.svg", SVG), ImageDecodeError, "not an image PIL can read"),
    ImageCase("pdf", _file("document.pdf", MINIMAL_PDF), ImageDecodeError, "not an image PIL can read"),
    ImageCase("directory", _directory, ImageDecodeError, "could not be read"),
    ImageCase(
        "url-http",
        lambda _f: "http://example.com/cat.png",
        ImageDecodeError,
        "URLs are not fetched",
        given_as="url",
    ),
    ImageCase(
        "url-https",
        lambda _f: "https://example.com/a/b.jpg?x=1",
        ImageDecodeError,
        "URLs are not fetched",
        given_as="url",
    ),
    ImageCase(
        "url-file",
        _file_url,
        ImageDecodeError,
        "file:// URLs are not opened; pass the path /",
        given_as="url",
    ),
    ImageCase("missing-path", lambda f: f / "does-not-exist.jpg", ImageDecodeError, "does not exist"),
    # Brackets that rich would read as markup if the command line printed the path unescaped.
    ImageCase(
        "missing-path-brackets", lambda f: f / "scan[red]" / "x[/].png", ImageDecodeError, "does not exist"
    ),
    ImageCase(
        "text-renamed-png",
        _file("notes.png", "just some notes\n"),
        ImageDecodeError,
        "not an image PIL can read",
    ),
]
"""Every case; names are unique."""

VALID = [c for c in CASES if c.valid]
BAD = [c for c in CASES if not c.valid]
