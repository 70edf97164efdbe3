"""Real images nobody in this project made, found through the installed packages, and broken copies of them.

scikit-image's wheel ships a scanned page, a photo of handwriting and a few photos in ``skimage/data/``;
matplotlib ships a JPEG portrait in ``mpl-data/sample_data/``. They are located on disk through the packages
(never by a fixed path) and read as files: nothing here calls a scikit-image loader, some of which download.

:data:`REAL` describes each file as it is on disk, with the visual-token counts of it and of its half-size
view measured with transformers' own Qwen2-VL image processor (``Qwen2VLImageProcessorPil`` at the paper's
32-to-2048-token budget, ``prod(image_grid_thw) / 4``), so the project's token rule is checked against
numbers it did not compute. :data:`BAD_COPIES` are broken copies of these files (cut short, a corrupted JPEG
header, a PNG whose header lies about its size, a photo upscaled past the pixel limit), each with the typed
error the project must raise for it and where it must be raised.
"""

from __future__ import annotations

import importlib.util
import io
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest
from PIL import Image

from awares_agent.errors import ImageDecodeError, ImageError, ImageTooLargeError

SETUP_HINT = "run `make setup` (it installs the dev extra, which includes scikit-image)"


@dataclass(frozen=True)
class RealImage:
    """One real image file and what is known about it.

    Attributes:
        name: the file name in its package's data folder.
        package: ``"skimage"`` or ``"matplotlib"``.
        size: ``(width, height)`` as stored (every one of these files has EXIF orientation 1 or none).
        mode: the PIL mode it is stored in.
        qwen_view_tokens: Qwen2.5-VL visual tokens of the half-size view (``size // 2``), per transformers.
        qwen_full_tokens: Qwen2.5-VL visual tokens of the full-resolution image, per transformers.
    """

    name: str
    package: Literal["skimage", "matplotlib"]
    size: tuple[int, int]
    mode: str
    qwen_view_tokens: int
    qwen_full_tokens: int

    @property
    def format(self) -> str:
        return "JPEG" if self.name.endswith(".jpg") else "PNG"

    @property
    def view_size(self) -> tuple[int, int]:
        """The default view's size: half of each side, rounded down."""
        return self.size[0] // 2, self.size[1] // 2

    @property
    def path(self) -> Path:
        """Where the installed package keeps the file.

        Raises:
            pytest.fail.Exception: the package is not installed or no longer ships the file (the test
                fails, it is not skipped: the set-up is incomplete).
        """
        folder = skimage_data_dir() if self.package == "skimage" else matplotlib_sample_dir()
        path = folder / self.name
        if not path.is_file():
            pytest.fail(
                f"{path} is missing: the installed {self.package} no longer ships {self.name}; "
                f"{SETUP_HINT}, or pick another bundled image in tests/real_images.py",
                pytrace=False,
            )
        return path


REAL: dict[str, RealImage] = {
    image.name: image
    for image in (
        RealImage("page.png", "skimage", (384, 191), "L", 36, 98),  # a scanned page of a book
        RealImage("text.png", "skimage", (448, 172), "L", 40, 96),  # handwriting photographed at an angle
        RealImage("camera.png", "skimage", (512, 512), "L", 81, 324),
        RealImage("coffee.png", "skimage", (600, 400), "RGB", 77, 294),
        RealImage("astronaut.png", "skimage", (512, 512), "RGB", 81, 324),
        RealImage("logo.png", "skimage", (500, 500), "RGBA", 81, 324),  # RGBA, every pixel opaque
        RealImage("hubble_deep_field.jpg", "skimage", (1000, 872), "RGB", 288, 1116),  # carries EXIF
        RealImage("rocket.jpg", "skimage", (640, 427), "RGB", 88, 345),
        RealImage("grace_hopper.jpg", "matplotlib", (512, 600), "RGB", 99, 378),
    )
}
"""Every real image the tests use, by file name."""

JPEGS = [name for name, image in REAL.items() if image.format == "JPEG"]


def skimage_data_dir() -> Path:
    """scikit-image's bundled data folder, found without importing scikit-image (nothing is downloaded).

    Raises:
        pytest.fail.Exception: scikit-image is not installed.
    """
    spec = importlib.util.find_spec("skimage")
    if spec is None or spec.origin is None:
        pytest.fail(
            "scikit-image is not installed: the real-image tests read the images its wheel ships; "
            + SETUP_HINT,
            pytrace=False,
        )
    return Path(spec.origin).parent / "data"


def matplotlib_sample_dir() -> Path:
    """matplotlib's bundled sample data folder (``mpl-data/sample_data``)."""
    import matplotlib  # a dependency of the project itself, but slow to import: only when needed

    return Path(matplotlib.get_data_path()) / "sample_data"


def rgb_original(image: RealImage) -> Image.Image:
    """The file decoded by PIL alone and converted to RGB: the reference the project's pixels must equal.

    Every file here is opaque and upright, so a plain conversion is the right reference.
    """
    with Image.open(image.path) as im:
        return im.convert("RGB")


# --- broken copies -------------------------------------------------------------------------------------


def jpeg_segments(data: bytes) -> list[tuple[int, int, int]]:
    """``(marker, offset, length)`` of each JPEG header segment up to and including the start of scan."""
    segments = []
    at = 2  # after SOI
    while True:
        if data[at] != 0xFF:
            raise ValueError(f"no JPEG marker at byte {at}")
        marker = data[at + 1]
        length = struct.unpack_from(">H", data, at + 2)[0]
        segments.append((marker, at, length))
        if marker == 0xDA:  # start of scan: entropy-coded data follows
            return segments
        at += 2 + length


def _segment(data: bytes, marker: int) -> int:
    """Offset of the first segment with ``marker``."""
    return next(at for m, at, _ in jpeg_segments(data) if m == marker)


def jpeg_frame_header_corrupted(data: bytes) -> bytes:
    """``data`` with its frame header (SOF0) claiming 0-bit samples: the header is unreadable."""
    out = bytearray(data)
    out[_segment(data, 0xC0) + 4] = 0
    return bytes(out)


def jpeg_huffman_table_corrupted(data: bytes) -> bytes:
    """``data`` with its first Huffman table's code counts overwritten: the header reads, no pixel does."""
    out = bytearray(data)
    at = _segment(data, 0xC4) + 5  # after marker, length and the table class/id byte
    out[at : at + 16] = b"\xff" * 16
    return bytes(out)


def with_exif_orientation(data: bytes, orientation: int) -> bytes:
    """A JPEG with an EXIF segment carrying ``orientation`` put after its JFIF header; pixels untouched."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    app1 = exif.tobytes()  # starts with b"Exif\0\0"
    first = jpeg_segments(data)[0]
    at = first[1] + 2 + first[2] if first[0] == 0xE0 else 2
    return data[:at] + b"\xff\xe1" + struct.pack(">H", 2 + len(app1)) + app1 + data[at:]


def png_claiming_size(data: bytes, width: int, height: int) -> bytes:
    """A PNG whose IHDR is rewritten (CRC included, so it reads as valid) to claim ``width`` x ``height``."""
    if data[12:16] != b"IHDR":
        raise ValueError("not a PNG with IHDR first")
    ihdr = struct.pack(">II", width, height) + data[24:29]
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF)
    return data[:16] + ihdr + crc + data[33:]


def resaved_png(image: RealImage) -> bytes:
    """The image re-encoded by PIL as a plain PNG (one IHDR at byte 8, IDAT chunks, IEND)."""
    buffer = io.BytesIO()
    with Image.open(image.path) as im:
        im.save(buffer, "PNG")
    return buffer.getvalue()


UPSCALED_SIDE = 10240
"""The upscaled photo's side: 10240 x 10240 = 104,857,600 pixels, just over the default limit."""


def upscaled_png(image: RealImage) -> bytes:
    """The photo upscaled (nearest neighbour) to :data:`UPSCALED_SIDE` square, as a fast-compressed PNG."""
    with Image.open(image.path) as im:
        big = im.resize((UPSCALED_SIDE, UPSCALED_SIDE), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    big.save(buffer, "PNG", compress_level=1)  # about 1 MB and 0.3 s for a grey photo
    return buffer.getvalue()


@dataclass(frozen=True)
class BadCopy:
    """A broken copy of a real image and how the project must refuse it.

    Attributes:
        name: a short id.
        source: the real image it is made from.
        make: the broken file's bytes, from the source.
        error: the :class:`~awares_agent.errors.ImageError` subclass it must raise.
        says: a fragment the message must contain besides the file's path.
        when: ``"open"``: refused while the header is read (by ``open_image`` and ``ImageStore.add``
            themselves); ``"decode"``: the header reads, and the first decode (the view or a crop) is refused.
    """

    name: str
    source: RealImage
    make: Callable[[RealImage], bytes]
    error: type[ImageError]
    says: str
    when: Literal["open", "decode"]

    def build(self, folder: Path) -> Path:
        """Write the broken file under ``folder``, named after the case, and return its path."""
        path = folder / f"{self.name}{self.source.path.suffix}"
        path.write_bytes(self.make(self.source))
        return path


def cut(at: Callable[[int], int]) -> Callable[[RealImage], bytes]:
    """A maker of the file cut to its first ``at(length)`` bytes."""

    def make(image: RealImage) -> bytes:
        data = image.path.read_bytes()
        return data[: at(len(data))]

    return make


def changed(change: Callable[[bytes], bytes]) -> Callable[[RealImage], bytes]:
    """A maker of the file's bytes passed through ``change``."""
    return lambda image: change(image.path.read_bytes())


def lying_png(width: int, height: int) -> Callable[[RealImage], bytes]:
    """A maker of the image re-saved as PNG with its header claiming ``width`` x ``height``."""
    return lambda image: png_claiming_size(resaved_png(image), width, height)


_PAGE, _HUBBLE, _GRACE = REAL["page.png"], REAL["hubble_deep_field.jpg"], REAL["grace_hopper.jpg"]
_COFFEE, _CAMERA = REAL["coffee.png"], REAL["camera.png"]
_TRUNCATED = "could not be decoded (OSError: image file is truncated"
_UNREADABLE = "is not an image PIL can read"
_SHORT_HEADER = "could not be decoded (OSError: Truncated File Read)"

BAD_COPIES: list[BadCopy] = [
    # Cut short at several points: inside the header, right after it, in the pixel data, near the end.
    BadCopy("page-cut-in-ihdr", _PAGE, cut(lambda n: 20), ImageDecodeError, _SHORT_HEADER, "open"),
    BadCopy("page-cut-after-ihdr", _PAGE, cut(lambda n: 33), ImageDecodeError, _UNREADABLE, "open"),
    BadCopy("page-cut-at-a-third", _PAGE, cut(lambda n: n // 3), ImageDecodeError, _TRUNCATED, "decode"),
    BadCopy(
        "page-cut-at-two-thirds", _PAGE, cut(lambda n: 2 * n // 3), ImageDecodeError, _TRUNCATED, "decode"
    ),
    BadCopy("page-cut-100-from-end", _PAGE, cut(lambda n: n - 100), ImageDecodeError, _TRUNCATED, "decode"),
    BadCopy("hubble-cut-in-exif", _HUBBLE, cut(lambda n: 1000), ImageDecodeError, _SHORT_HEADER, "open"),
    BadCopy("hubble-cut-at-a-third", _HUBBLE, cut(lambda n: n // 3), ImageDecodeError, _TRUNCATED, "decode"),
    BadCopy(
        "hubble-cut-at-two-thirds", _HUBBLE, cut(lambda n: 2 * n // 3), ImageDecodeError, _TRUNCATED, "decode"
    ),
    BadCopy("hubble-cut-before-eoi", _HUBBLE, cut(lambda n: n - 2), ImageDecodeError, _TRUNCATED, "decode"),
    # The JPEG's header corrupted: its frame header (unreadable at once), or a Huffman table (at decode).
    BadCopy(
        "grace-frame-header",
        _GRACE,
        changed(jpeg_frame_header_corrupted),
        ImageDecodeError,
        _UNREADABLE,
        "open",
    ),
    BadCopy(
        "grace-huffman-table",
        _GRACE,
        changed(jpeg_huffman_table_corrupted),
        ImageDecodeError,
        "could not be decoded (OSError: broken data stream",
        "decode",
    ),
    # A PNG re-saved with its header lying about the size.
    BadCopy(
        "coffee-claims-a-column-more",
        _COFFEE,
        lying_png(601, 400),
        ImageDecodeError,
        "could not be decoded",
        "decode",
    ),
    BadCopy(
        "coffee-claims-twice-the-rows",
        _COFFEE,
        lying_png(600, 800),
        ImageDecodeError,
        "where its header (600x800) promises",
        "decode",
    ),
    BadCopy(
        "coffee-claims-10-gigapixels",
        _COFFEE,
        lying_png(100_000, 100_000),
        ImageTooLargeError,
        "100000x100000 = 10,000,000,000 pixels",
        "open",
    ),
    # A real photo upscaled past the default limit: refused from its header, before any pixel is decoded.
    BadCopy(
        "camera-upscaled",
        _CAMERA,
        upscaled_png,
        ImageTooLargeError,
        f"{UPSCALED_SIDE}x{UPSCALED_SIDE} = {UPSCALED_SIDE**2:,} pixels, more than the limit",
        "open",
    ),
]
"""Every broken copy; names are unique."""

KNOWN_GAPS: dict[str, str] = {}
"""Broken copies the project accepts today, with why (their tests are strict expected failures)."""
