"""What an image file's header says, read by hand where PIL would act on it before we could check it.

* :func:`webp_size`: PIL's WebP plugin allocates the whole canvas while it opens a file, so the size its
  header claims is read first.
* :func:`png_pixel_bytes`: PIL decodes a PNG whose pixel data is shorter than its header promises without an
  error, leaving the missing rows black; the pixel data is measured against the header.
"""

from __future__ import annotations

import struct
import zlib

__all__ = ["png_pixel_bytes", "webp_size"]

#: Samples per pixel of each PNG colour type (grey, RGB, palette, grey + alpha, RGBA).
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}

#: Adam7 passes: (first column, first row, column step, row step).
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def png_pixel_bytes(data: bytes) -> tuple[int, int] | None:
    """``(decompressed IDAT bytes, the bytes the IHDR implies)`` of a PNG, or ``None`` if it cannot say.

    Decompression stops once the expected size is reached, so a small file that inflates hugely costs no
    more than a valid one. ``None`` for data that is not a PNG with a well-formed IHDR and IDAT chunks (PIL
    reports what is wrong with those).

    Args:
        data: the encoded file.
    """
    if data[:8] != b"\x89PNG\r\n\x1a\n" or len(data) < 33 or data[12:16] != b"IHDR":
        return None
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", data[16:29])
    channels = _PNG_CHANNELS.get(colour)
    if channels is None or depth not in (1, 2, 4, 8, 16) or interlace not in (0, 1):
        return None

    def row_bytes(w: int) -> int:
        return 1 + (w * channels * depth + 7) // 8 if w else 0

    if interlace:
        passes = [
            (max(0, (width - x0 + dx - 1) // dx), max(0, (height - y0 + dy - 1) // dy))
            for x0, y0, dx, dy in _ADAM7
        ]
        want = sum(row_bytes(w) * h for w, h in passes if w and h)
    else:
        want = row_bytes(width) * height
    inflate = zlib.decompressobj()
    have, at = 0, 8
    try:
        while at + 8 <= len(data) and have < want:
            length, kind = struct.unpack(">I4s", data[at : at + 8])
            chunk = data[at + 8 : at + 8 + length]
            at += 12 + length
            if kind == b"IDAT":
                have += len(inflate.decompress(chunk, want - have + 1))
                while inflate.unconsumed_tail and have < want:
                    have += len(inflate.decompress(inflate.unconsumed_tail, want - have + 1))
            elif kind == b"IEND":
                break
    except zlib.error:
        return None  # corrupt compressed data: PIL says so itself
    return have, want


def webp_size(data: bytes) -> tuple[int, int] | None:
    """The size a WebP file's header claims; None if ``data`` is not WebP (or the header is not recognised).

    Read here because PIL's WebP plugin allocates the whole canvas, twice, while it opens the file: a header
    claiming 100000x40000 pixels would reserve 32 GB before its size could be checked.

    Args:
        data: the encoded file.
    """
    if len(data) < 30 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return None
    chunk = data[12:16]
    if chunk == b"VP8X":  # extended format: the canvas size, 24 bits each, minus one
        return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
    if chunk == b"VP8L" and data[20] == 0x2F:  # lossless: 14 bits each, minus one
        bits = int.from_bytes(data[21:25], "little")
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":  # lossy key frame: 14 bits each
        return int.from_bytes(data[26:28], "little") & 0x3FFF, int.from_bytes(data[28:30], "little") & 0x3FFF
    return None
