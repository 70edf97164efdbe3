"""Opening source images safely and deriving the low-resolution view and high-resolution crops from them.

A :class:`SourceImage` reads only the image header when it is opened (so its size, format and EXIF orientation
are known and a decompression bomb is refused before any pixel is allocated) and decodes pixels lazily. The
low-resolution view of a JPEG is decoded with libjpeg's DCT scaling (1/2, 1/4, 1/8), which is several times
faster than decoding the full image and resizing it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import os
import stat
import struct
import threading
import urllib.parse
from collections.abc import Callable
from numbers import Integral
from pathlib import Path
from typing import TypeAlias

from PIL import Image, UnidentifiedImageError

from awares_agent.boxes import PixelBox, validate_box
from awares_agent.errors import ConfigError, ImageDecodeError, ImageTooLargeError
from awares_agent.image_headers import png_pixel_bytes, webp_size
from awares_agent.image_limits import DEFAULT_MAX_IMAGE_PIXELS, pil_limit_lifted
from awares_agent.image_modes import to_rgb
from awares_agent.views import ViewSpec

# ViewSpec, to_rgb, png_pixel_bytes, validate_box and DEFAULT_MAX_IMAGE_PIXELS have modules of their own; they
# are importable from here too, where image users have always found them.
__all__ = [
    "DEFAULT_MAX_IMAGE_PIXELS",
    "MAX_IMAGE_FILE_BYTES",
    "ImageInput",
    "SourceImage",
    "ViewSpec",
    "open_image",
    "png_pixel_bytes",
    "to_rgb",
    "validate_box",
]

ImageInput: TypeAlias = str | os.PathLike[str] | bytes | Image.Image
"""What :func:`open_image` accepts: a file path, encoded bytes, a ``data:`` URI string or a PIL image."""

MAX_IMAGE_FILE_BYTES = 1 << 30
"""The most bytes read from an image file (an uncompressed 100 MP, 16-bit RGB TIFF is about 600 MiB)."""

_ORIENTATION_TAG = 0x0112
# EXIF orientation -> the transpose that displays the image upright (the table ImageOps.exif_transpose uses).
_ORIENTATION_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SWAPS_AXES = frozenset({5, 6, 7, 8})
_JPEG_FORMATS = frozenset({"JPEG", "MPO"})
# What PIL raises on corrupt or truncated data (struct.error, IndexError: malformed headers in some plugins).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, struct.error, IndexError, EOFError)


# --- orientation and size ----------------------------------------------------------------------------


def _orient(img: Image.Image, orientation: int) -> Image.Image:
    """``img`` transposed so an image stored with EXIF ``orientation`` displays upright."""
    method = _ORIENTATION_TRANSPOSE.get(orientation)
    return img if method is None else img.transpose(method)


def _resize(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    return img.copy() if img.size == size else img.resize(size, Image.Resampling.LANCZOS)


# --- the source image ----------------------------------------------------------------------------------


class SourceImage:
    """One source image: its header is read on construction, its pixels are decoded lazily. Thread-safe.

    Prefer :func:`open_image` to build one.

    Args:
        src: a path, encoded bytes, a ``data:`` URI or a PIL image (copied: the caller may go on changing it).
        max_pixels: refuse images with more pixels than this.
        image_id: use this id instead of hashing the input (for reopening bytes persisted under a known id).
        label: name the input by this in messages instead of the default label.
        on_full: for an owner that budgets memory (:class:`~awares_agent.image_store.ImageStore`): called,
            outside this image's lock, with this image and the decoded full image each time :meth:`full`
            returns it (just decoded or kept from before; not when it is a PIL input's own RGB copy, which is
            kept anyway), so the owner can account for it and drop it with :meth:`release`. None (the
            default): the decoded full image is kept until :meth:`release`.

    Attributes:
        id: sha256 hex digest of the encoded bytes (path, bytes and data-URI input) or, for a PIL image, of
            its mode, size, palette and pixels.
        width: width in pixels, after the EXIF orientation is applied.
        height: height in pixels, after the EXIF orientation is applied.
        format: the file format PIL identified (``"JPEG"``, ``"PNG"``...), or None.
        label: the input in words: the path, ``"<bytes>"``, ``"<data-uri>"`` or ``"<PIL image>"``.
        orientation: the EXIF orientation (1 to 8) the pixels are corrected for.
        encoded: the encoded file bytes, or None for a PIL image input.
        on_full: the ``on_full`` hook (see Args); may be replaced, or set to None to detach the owner.

    Raises:
        ImageDecodeError: the input is missing, empty, not an image, or its header is corrupt.
        ImageTooLargeError: the image has more than ``max_pixels`` pixels.
    """

    def __init__(
        self,
        src: ImageInput,
        *,
        max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
        image_id: str | None = None,
        label: str | None = None,
        on_full: Callable[[SourceImage, Image.Image], None] | None = None,
    ) -> None:
        if isinstance(max_pixels, bool) or not isinstance(max_pixels, Integral) or max_pixels < 1:
            raise ConfigError(f"max_pixels must be a positive integer, got {max_pixels!r}")
        self.max_pixels = int(max_pixels)
        self._lock = threading.Lock()
        self._full: Image.Image | None = None
        self._pil: Image.Image | None = None
        self.on_full = on_full

        if isinstance(src, Image.Image):
            self.label = label or "<PIL image>"
            self.encoded: bytes | None = None
            self._pil = self._copy_pil(src)
            with pil_limit_lifted(self.width * self.height):
                self.id = image_id or _pil_digest(self._pil)
        else:
            default_label, data = _read_input(src)
            self.label = label or default_label
            self.encoded = data
            self._init_from_header(data)
            self.id = image_id or hashlib.sha256(data).hexdigest()

    def _copy_pil(self, img: Image.Image) -> Image.Image:
        """An upright private copy of a caller's PIL image; sets the size, orientation and format."""
        raw_w, raw_h = img.size
        self._check_size(raw_w, raw_h)
        try:
            with pil_limit_lifted(raw_w * raw_h):
                copy = img.copy()
        except _DECODE_ERRORS as exc:
            raise self._decode_error(exc) from exc
        self.orientation = _exif_orientation(img.getexif)
        upright = _orient(copy, self.orientation)
        self.width, self.height = upright.size
        self.format = img.format
        return upright

    def _init_from_header(self, data: bytes) -> None:
        if not data:
            raise ImageDecodeError(f"{self.label} is empty (0 bytes), not an image", source=self.label)
        claimed = webp_size(data)
        if claimed is not None:
            self._check_size(*claimed)
        im = self._open(data, pixels=None)
        raw_w, raw_h = im.size
        self._check_size(raw_w, raw_h)
        self.format = im.format
        # The base-class getexif reads only what the header gave; PngImageFile.getexif would decode the
        # whole image to look for an eXIf chunk after the pixel data.
        self.orientation = _exif_orientation(lambda: Image.Image.getexif(im))
        if self.orientation in _SWAPS_AXES:
            raw_w, raw_h = raw_h, raw_w
        self.width, self.height = raw_w, raw_h

    def _check_size(self, width: int, height: int) -> None:
        if width * height > self.max_pixels:
            raise ImageTooLargeError(
                f"{self.label} is {width}x{height} = {width * height:,} pixels, more than the limit of "
                f"{self.max_pixels:,} pixels (a decompression-bomb guard); if you trust this image, pass a "
                f"larger max_pixels (e.g. max_pixels={width * height}) to open_image or ImageStore",
                source=self.label,
            )

    def _decode_error(self, exc: BaseException) -> ImageDecodeError:
        return ImageDecodeError(
            f"{self.label} could not be decoded ({type(exc).__name__}: {exc}); the file may be truncated "
            "or corrupt",
            source=self.label,
        )

    def _check_png_rows(self, im: Image.Image) -> None:
        """Refuse a PNG whose pixel data is shorter than its header promises; ``im`` is its loaded PIL image.

        PIL decodes such a file without an error when its compressed stream is complete but short (a header
        that claims more rows than were written, or data cut at a clean boundary), and leaves the missing
        rows as it allocated them, all zero bytes: a model would be shown a picture that is not the file's.

        Counting the pixel data (:func:`png_pixel_bytes`) inflates it a second time, which costs as much as
        PIL's whole decode, so it is counted only when the row that the file's last scanline fills is still
        all zero bytes. Short data always leaves that row so (PIL zeroes the image memory it decodes into,
        reused blocks included); a decoded row is so only when it is pure black (or palette index 0), and
        then the count decides.
        """
        assert self.encoded is not None
        last = _png_last_scanline_row(im.height, interlaced=bool(im.info.get("interlace")))
        if last is not None:
            row = im.crop((0, last, im.width, last + 1)).tobytes()
            if row.count(0) < len(row):
                return  # PIL's decoder wrote the last scanline: the data was long enough
        found = png_pixel_bytes(self.encoded)
        if found is not None and found[0] < found[1]:
            have, want = found
            raise ImageDecodeError(
                f"{self.label} holds {have:,} bytes of pixel data where its header "
                f"({self.width}x{self.height}) promises {want:,}: the file is truncated, or its header lies; "
                "re-export the image",
                source=self.label,
            )

    def _open(self, data: bytes, *, pixels: int | None) -> Image.Image:
        """A lazily-loaded PIL image of ``data`` (header read only)."""
        try:
            with pil_limit_lifted(pixels):
                return Image.open(io.BytesIO(data))
        except UnidentifiedImageError as exc:
            raise ImageDecodeError(
                f"{self.label} is not an image PIL can read ({len(data):,} bytes starting {data[:8]!r})",
                source=self.label,
            ) from exc
        except Image.DecompressionBombError as exc:
            # Only if someone else re-armed PIL's global limit between our check and this call.
            raise ImageTooLargeError(f"{self.label}: {exc}", source=self.label) from exc
        except _DECODE_ERRORS as exc:
            raise self._decode_error(exc) from exc

    @property
    def full_decoded(self) -> bool:
        """Whether the full-resolution pixels have been decoded (and are cached)."""
        return self._full is not None

    def full(self) -> Image.Image:
        """The full-resolution image: RGB, EXIF orientation applied, first frame of an animation.

        Decoded on the first call and kept until :meth:`release`; treat it as read-only (it is shared).

        Raises:
            ImageDecodeError: the pixel data is truncated or corrupt.
        """
        with self._lock:
            image = self._full
            if image is None:
                image = self._full = self._decode_full()
        on_full = self.on_full
        if on_full is not None and image is not self._pil:
            on_full(self, image)
        return image

    def _decode_full(self) -> Image.Image:
        if self._pil is not None:
            return to_rgb(self._pil)
        assert self.encoded is not None
        pixels = self.width * self.height
        try:
            with pil_limit_lifted(pixels):
                im = self._open(self.encoded, pixels=pixels)
                im.load()
                if im.format == "PNG":
                    self._check_png_rows(im)
                return _orient(to_rgb(im), self.orientation)
        except Image.DecompressionBombError as exc:
            raise ImageTooLargeError(f"{self.label}: {exc}", source=self.label) from exc
        except _DECODE_ERRORS as exc:
            raise self._decode_error(exc) from exc

    def release(self, image: Image.Image | None = None) -> None:
        """Drop the decoded full image to free memory; :meth:`full` decodes it again when next needed.

        Args:
            image: drop it only if it is this very image (so a stale request cannot drop a newer decode).
        """
        with self._lock:
            if image is None or self._full is image:
                self._full = None

    def low_res(self, spec: ViewSpec) -> Image.Image:
        """The low-resolution view: an RGB image of size ``spec.size(width, height)``.

        JPEGs are decoded at a reduced size (DCT scaling) and then resized with LANCZOS, without decoding
        the full image; other formats are resized (LANCZOS) from :meth:`full`. The result depends only on
        the source and ``spec``, not on what was decoded before, so a view can be re-derived bit for bit.

        Args:
            spec: the view to produce.

        Raises:
            ImageDecodeError: the pixel data is truncated or corrupt.
        """
        target = spec.size(self.width, self.height)
        # libjpeg reduces only by 2, 4 or 8; below 2 a reduced decode is a full one, so share full().
        reduction = min(self.width // target[0], self.height // target[1])
        if self.format in _JPEG_FORMATS and self.encoded is not None and reduction >= 2:
            raw_target = target[::-1] if self.orientation in _SWAPS_AXES else target
            return self._low_res_jpeg(raw_target, target)
        return _resize(self.full(), target)

    def _low_res_jpeg(self, raw_target: tuple[int, int], target: tuple[int, int]) -> Image.Image:
        assert self.encoded is not None
        pixels = self.width * self.height
        try:
            with pil_limit_lifted(pixels):
                im = self._open(self.encoded, pixels=pixels)
                # draft() takes the size in the file's stored (un-rotated) orientation and picks the largest
                # DCT reduction that still gives at least that size.
                im.draft("RGB", raw_target)
                im.load()
                oriented = _orient(to_rgb(im), self.orientation)
        except _DECODE_ERRORS as exc:
            raise self._decode_error(exc) from exc
        # DCT scaling rounds odd sizes up by one pixel. Trimming that pixel moves the view by under one pixel;
        # a LANCZOS pass to drop it would cost more than the whole reduced decode on large photos.
        if 0 <= oriented.width - target[0] <= 1 and 0 <= oriented.height - target[1] <= 1:
            return oriented.crop((0, 0, *target)) if oriented.size != target else oriented
        return _resize(oriented, target)

    def crop(self, box: PixelBox) -> Image.Image:
        """A crop of the full-resolution image (decoding it if needed).

        Args:
            box: ``(left, top, right, bottom)`` in pixels of the orientation-corrected image; must lie within
                it and be non-empty.

        Raises:
            ConfigError: the box is malformed, empty or outside the image.
            ImageDecodeError: the pixel data is truncated or corrupt.
        """
        left, top, right, bottom = validate_box(box, self.width, self.height, label=self.label)
        full = self.full()
        with pil_limit_lifted((right - left) * (bottom - top)):
            return full.crop((left, top, right, bottom))

    def __repr__(self) -> str:
        return (
            f"SourceImage(id={self.id[:12]}..., label={self.label!r}, size={self.width}x{self.height}, "
            f"format={self.format!r}, full_decoded={self.full_decoded})"
        )


def open_image(src: ImageInput, *, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> SourceImage:
    """Open an image: read and check its header now, decode its pixels only when they are needed.

    Args:
        src: a file path (``str`` or path-like), encoded bytes, a ``data:image/...;base64,...`` URI string,
            or a PIL image. ``http(s)://`` URLs are refused: this toolkit does not fetch; so are ``file://``
            URLs (the message names the path to pass instead).
        max_pixels: refuse images with more pixels than this (a decompression-bomb guard). PIL's own global
            limit does not apply; this one does, whether higher or lower.

    Returns:
        The :class:`SourceImage`.

    Raises:
        ImageDecodeError: the input is a URL, a missing file, empty, not an image, or corrupt.
        ImageTooLargeError: the image has more than ``max_pixels`` pixels.
    """
    return SourceImage(src, max_pixels=max_pixels)


# --- helpers -------------------------------------------------------------------------------------------


def _read_input(src: str | os.PathLike[str] | bytes) -> tuple[str, bytes]:
    """The label and the encoded bytes of a non-PIL input."""
    if isinstance(src, bytes | bytearray | memoryview):
        return "<bytes>", bytes(src)
    if isinstance(src, str):
        head = src[:8].lower()
        if head.startswith("data:"):
            return "<data-uri>", _decode_data_uri(src)
        if head.startswith(("http://", "https://")):
            shown = src if len(src) <= 200 else src[:200] + "..."
            raise ImageDecodeError(
                f"{shown}: URLs are not fetched; download the image and pass the path", source=shown
            )
        if head.startswith("file://"):
            # Read as a path it would be reported missing even when the file exists; name the path to pass.
            shown = src if len(src) <= 200 else src[:200] + "..."
            path = urllib.parse.unquote(urllib.parse.urlsplit(src).path)
            raise ImageDecodeError(
                f"{shown}: file:// URLs are not opened; pass the path {path}", source=shown
            )
    elif not isinstance(src, os.PathLike):
        raise TypeError(
            f"an image must be a path, bytes, a data: URI or a PIL image, not {type(src).__name__}"
        )
    path = Path(os.fsdecode(os.fspath(src)))
    label = str(path)
    try:
        data = _read_bounded(path)
    except FileNotFoundError as exc:
        raise ImageDecodeError(f"image file {label} does not exist", source=label) from exc
    except OSError as exc:
        raise ImageDecodeError(f"image file {label} could not be read: {exc}", source=label) from exc
    if data is None:
        raise ImageTooLargeError(
            f"image file {label} is larger than {MAX_IMAGE_FILE_BYTES // 2**20} MiB; no image this toolkit "
            "accepts is that large (is it the right file?)",
            source=label,
        )
    return label, data


def _read_bounded(path: Path) -> bytes | None:
    """The file's bytes; ``None`` when there are more than :data:`MAX_IMAGE_FILE_BYTES` (or endless).

    A path may name something endless (``/dev/zero``, a pipe) or a file far larger than any image this
    toolkit accepts. A regular file's size is known before reading; anything else is read in chunks (one
    ``read(cap)`` would reserve the whole cap at once).
    """
    with path.open("rb") as fh:
        info = os.fstat(fh.fileno())
        if stat.S_ISREG(info.st_mode):
            return fh.read() if info.st_size <= MAX_IMAGE_FILE_BYTES else None
        data = bytearray()
        while len(data) <= MAX_IMAGE_FILE_BYTES:
            chunk = fh.read(1 << 20)
            if not chunk:
                return bytes(data)
            data += chunk
        return None


def _decode_data_uri(uri: str) -> bytes:
    header, sep, payload = uri.partition(",")
    if not sep:
        raise ImageDecodeError("<data-uri> is malformed: no ',' after the media type", source="<data-uri>")
    try:
        if header.lower().endswith(";base64"):
            return base64.b64decode("".join(payload.split()), validate=True)
        return urllib.parse.unquote_to_bytes(payload)
    except (binascii.Error, ValueError) as exc:
        raise ImageDecodeError(f"<data-uri> has invalid base64 data: {exc}", source="<data-uri>") from exc


def _exif_orientation(read_exif: Callable[[], Image.Exif]) -> int:
    """The EXIF orientation (1 to 8) that ``read_exif`` finds; 1 when there is none or it is malformed."""
    try:
        orientation = int(read_exif().get(_ORIENTATION_TAG, 1))
    except Exception:  # a malformed EXIF block must not make an otherwise readable image unusable
        return 1
    return orientation if orientation in _ORIENTATION_TRANSPOSE else 1


def _png_last_scanline_row(height: int, *, interlaced: bool) -> int | None:
    """The image row that a PNG's last scanline fills whole; None when no row is filled by it alone.

    Without interlacing that is the bottom row. With Adam7 the last pass fills the odd rows whole, so it is
    the last odd row; a one-row image has no such pass.
    """
    if not interlaced:
        return height - 1
    return height - 1 - height % 2 if height > 1 else None


def _pil_digest(img: Image.Image) -> str:
    """sha256 of a PIL image's mode, size, palette, transparency and pixels (hashed in bands)."""
    digest = hashlib.sha256()
    digest.update(f"{img.mode}|{img.size[0]}x{img.size[1]}|".encode())
    if img.palette is not None:
        digest.update(b"palette|" + img.palette.mode.encode() + b"|" + bytes(img.palette.tobytes()))
    if "transparency" in img.info:
        digest.update(b"|transparency|" + repr(img.info["transparency"]).encode())
    width, height = img.size
    row_bytes = max(1, len(img.crop((0, 0, width, 1)).tobytes())) if width and height else 1
    band = max(1, (4 << 20) // row_bytes)
    for top in range(0, height, band):
        digest.update(img.crop((0, top, width, min(height, top + band))).tobytes())
    return digest.hexdigest()
