"""Tests for awares_agent.images: inputs, the decompression-bomb guard, colour modes, orientation, views."""

from __future__ import annotations

import base64
import hashlib
import io
import re
import struct
import threading
import time
import warnings
import zlib
from pathlib import Path

import pytest
from bad_images import encode, quadrants
from PIL import Image, ImageChops, ImageOps, ImageStat

from awares_agent.errors import AwaresError, ConfigError, ImageDecodeError, ImageTooLargeError
from awares_agent.images import (
    DEFAULT_MAX_IMAGE_PIXELS,
    SourceImage,
    ViewSpec,
    open_image,
    png_pixel_bytes,
    to_rgb,
)

# --- helpers -------------------------------------------------------------------------------------------


def smooth_image(width: int, height: int) -> Image.Image:
    """A smooth colour image: horizontal red ramp, vertical green ramp, blue from a radial gradient."""
    red = Image.linear_gradient("L").rotate(90).resize((width, height))
    green = Image.linear_gradient("L").resize((width, height))
    blue = Image.radial_gradient("L").resize((width, height))
    return Image.merge("RGB", (red, green, blue))


def pixels(img: Image.Image) -> list[tuple[int, ...]]:
    """Every pixel, row by row."""
    return [img.getpixel((x, y)) for y in range(img.height) for x in range(img.width)]  # type: ignore[misc]


def mean_abs_diff(a: Image.Image, b: Image.Image) -> float:
    return sum(ImageStat.Stat(ImageChops.difference(a, b)).mean) / 3


def close(color: tuple[int, ...], expected: tuple[int, ...], tolerance: int = 12) -> bool:
    return all(abs(c - e) <= tolerance for c, e in zip(color, expected, strict=True))


def png_header_claiming(width: int, height: int) -> bytes:
    """A well-formed PNG whose IHDR claims ``width`` x ``height`` but whose pixel data is tiny."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(tag + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + chunk(b"IEND", b"")
    )


# --- inputs and ids ------------------------------------------------------------------------------------


def test_path_bytes_and_data_uri_give_the_same_id(tmp_path: Path) -> None:
    data = encode(quadrants(), "PNG")
    path = tmp_path / "q.png"
    path.write_bytes(data)
    uri = "data:image/png;base64," + base64.b64encode(data).decode()

    by_path, by_str, by_bytes, by_uri = (open_image(s) for s in (path, str(path), data, uri))

    expected = hashlib.sha256(data).hexdigest()
    assert {by_path.id, by_str.id, by_bytes.id, by_uri.id} == {expected}
    assert by_path.label == str(path)
    assert by_bytes.label == "<bytes>"
    assert by_uri.label == "<data-uri>"
    assert by_bytes.format == "PNG"
    assert (by_uri.width, by_uri.height) == (64, 48)
    assert by_bytes.encoded == data
    assert pixels(by_uri.full()) == pixels(quadrants())


def test_pil_input_id_is_stable_and_the_image_is_copied() -> None:
    img = quadrants()
    first, second = open_image(img), open_image(img.copy())
    assert first.id == second.id
    assert first.label == "<PIL image>"
    assert first.encoded is None

    img.paste((1, 2, 3), (0, 0, 64, 48))  # the caller changes theirs afterwards
    assert first.full().getpixel((0, 0)) == (255, 0, 0)
    assert open_image(img).id != first.id


def test_pil_palette_is_part_of_the_id() -> None:
    a = Image.new("P", (4, 4), 0)
    a.putpalette([255, 0, 0] * 256)
    b = a.copy()
    b.putpalette([0, 0, 255] * 256)
    assert open_image(a).id != open_image(b).id


def test_url_is_refused() -> None:
    with pytest.raises(ImageDecodeError, match="URLs are not fetched; download the image and pass the path"):
        open_image("https://example.com/cat.png")
    with pytest.raises(ImageDecodeError, match="URLs are not fetched"):
        open_image("HTTP://example.com/cat.png")


def test_missing_path_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jpg"
    with pytest.raises(ImageDecodeError, match=re.escape(str(missing))) as info:
        open_image(str(missing))
    assert info.value.source == str(missing)
    assert isinstance(info.value, AwaresError)


def test_empty_file_text_file_and_garbage(tmp_path: Path) -> None:
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ImageDecodeError, match=r"empty\.png is empty"):
        open_image(empty)

    text = tmp_path / "notes.txt"
    text.write_text("hello, this is not an image\n")
    with pytest.raises(ImageDecodeError, match=r"notes\.txt is not an image PIL can read"):
        open_image(text)

    with pytest.raises(ImageDecodeError, match="<bytes> is not an image PIL can read"):
        open_image(bytes(range(256)) * 4)


def test_corrupt_png_header() -> None:
    data = bytearray(encode(quadrants(), "PNG"))
    data[16:24] = b"\xff" * 8  # width/height fields: the IHDR CRC no longer matches
    with pytest.raises(ImageDecodeError, match="<bytes>"):
        open_image(bytes(data)).full()


def test_truncated_jpeg_fails_at_decode_naming_the_input(tmp_path: Path) -> None:
    data = encode(smooth_image(400, 300), "JPEG", quality=90)
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])

    source = open_image(path)  # the header is intact
    assert (source.width, source.height) == (400, 300)
    with pytest.raises(ImageDecodeError, match=re.escape(str(path))) as info:
        source.full()
    assert info.value.source == str(path)
    assert isinstance(info.value.__cause__, OSError)
    with pytest.raises(ImageDecodeError, match=re.escape(str(path))):
        source.low_res(ViewSpec())
    assert not source.full_decoded


def test_invalid_data_uri() -> None:
    with pytest.raises(ImageDecodeError, match="base64"):
        open_image("data:image/png;base64,@@@not-base64@@@")
    with pytest.raises(ImageDecodeError, match="malformed"):
        open_image("data:image/png;base64")


def test_wrong_input_type() -> None:
    with pytest.raises(TypeError, match="int"):
        open_image(42)  # type: ignore[arg-type]


# --- the decompression-bomb guard ----------------------------------------------------------------------


def test_huge_header_is_refused_without_allocating() -> None:
    data = png_header_claiming(30000, 30000)
    limit_before = Image.MAX_IMAGE_PIXELS
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # PIL's DecompressionBombWarning must not escape either
        with pytest.raises(ImageTooLargeError) as info:
            open_image(data)
    assert time.perf_counter() - started < 1.0
    message = str(info.value)
    assert "<bytes>" in message
    assert "30000x30000" in message
    assert f"{DEFAULT_MAX_IMAGE_PIXELS:,}" in message
    assert "max_pixels" in message
    assert limit_before == Image.MAX_IMAGE_PIXELS


def test_limit_higher_than_pils_applies() -> None:
    # 200 M pixels: over twice PIL's default limit, so PIL alone would raise DecompressionBombError.
    data = png_header_claiming(20000, 10000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        source = open_image(data, max_pixels=300_000_000)
        assert (source.width, source.height) == (20000, 10000)
        # 100 M pixels: between PIL's warning and error thresholds, and exactly our default limit.
        assert open_image(png_header_claiming(10000, 10000)).width == 10000


def test_decoding_above_pils_limit_works(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        source = open_image(encode(quadrants(200, 100), "PNG"))
        assert source.full().size == (200, 100)
        assert source.crop((0, 0, 200, 100)).size == (200, 100)
        jpeg = open_image(encode(smooth_image(200, 100), "JPEG"))
        assert jpeg.low_res(ViewSpec()).size == (100, 50)
    assert Image.MAX_IMAGE_PIXELS == 1000


def test_lower_custom_limit_refuses_a_normal_image() -> None:
    with pytest.raises(ImageTooLargeError, match="max_pixels"):
        open_image(encode(quadrants(100, 100), "PNG"), max_pixels=5000)
    with pytest.raises(ImageTooLargeError, match="<PIL image>"):
        open_image(quadrants(100, 100), max_pixels=5000)
    assert open_image(encode(quadrants(100, 50), "PNG"), max_pixels=5000).width == 100


# --- laziness and caching ------------------------------------------------------------------------------


def test_full_is_lazy_and_decoded_once(tmp_path: Path) -> None:
    path = tmp_path / "q.png"
    quadrants().save(path)
    source = open_image(path)
    assert not source.full_decoded
    full = source.full()
    assert source.full_decoded
    assert source.full() is full
    assert full.mode == "RGB"
    source.release()
    assert not source.full_decoded
    assert pixels(source.full()) == pixels(full)


def test_full_from_many_threads_decodes_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = 0
    original = SourceImage._decode_full

    def counting(self: SourceImage) -> Image.Image:
        nonlocal calls
        calls += 1
        time.sleep(0.01)
        return original(self)

    monkeypatch.setattr(SourceImage, "_decode_full", counting)
    source = open_image(encode(smooth_image(300, 200), "PNG"))
    results: list[Image.Image] = []
    threads = [threading.Thread(target=lambda: results.append(source.full())) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert calls == 1
    assert len(results) == 16 and all(r is results[0] for r in results)


# --- views -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "size", "expected"),
    [
        (ViewSpec(), (4000, 3000), (2000, 1500)),
        (ViewSpec(), (1001, 751), (500, 375)),
        (ViewSpec(), (1, 1), (1, 1)),
        (ViewSpec(), (10000, 3), (5000, 1)),
        (ViewSpec(scale=0.25), (1000, 3), (250, 1)),
        (ViewSpec(scale=1), (37, 11), (37, 11)),
        (ViewSpec(scale=0.7), (10, 10), (7, 7)),
        (ViewSpec(longest_side=1000), (4000, 3000), (1000, 750)),
        (ViewSpec(longest_side=1000), (3000, 4000), (750, 1000)),
        (ViewSpec(longest_side=1000), (800, 600), (800, 600)),
        (ViewSpec(longest_side=10), (10000, 3), (10, 1)),
        (ViewSpec(scale=0.1, longest_side=500), (1000, 1000), (500, 500)),
    ],
)
def test_view_spec_size(spec: ViewSpec, size: tuple[int, int], expected: tuple[int, int]) -> None:
    assert spec.size(*size) == expected


def test_view_spec_half_is_integer_halving() -> None:
    spec = ViewSpec()
    for width, height in [(1, 2), (3, 5), (999, 1), (4001, 2999), (12345, 6789)]:
        assert spec.size(width, height) == (max(1, width // 2), max(1, height // 2))


def test_view_spec_key_is_stable() -> None:
    assert ViewSpec().key() == "scale=0.5"
    assert ViewSpec(scale=1).key() == ViewSpec(scale=1.0).key()
    assert ViewSpec(longest_side=768).key() == "longest_side=768"
    assert ViewSpec(scale=0.25).key() != ViewSpec().key()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"scale": 0},
        {"scale": 1.5},
        {"scale": -0.5},
        {"scale": float("nan")},
        {"scale": True},
        {"scale": "0.5"},
        {"longest_side": 0},
        {"longest_side": 2.5},
        {"longest_side": True},
    ],
)
def test_view_spec_validation(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        ViewSpec(**kwargs)  # type: ignore[arg-type]


def test_jpeg_reduced_decoding_is_exact_size_lazy_and_close_to_full() -> None:
    data = encode(smooth_image(1600, 1200), "JPEG", quality=95)
    source = open_image(data)
    view = source.low_res(ViewSpec())
    assert view.size == (800, 600)
    assert view.mode == "RGB"
    assert not source.full_decoded

    reference = source.full().resize((800, 600), Image.Resampling.LANCZOS)
    assert mean_abs_diff(view, reference) < 6

    # The view does not depend on whether the full image was decoded first: it re-derives bit for bit.
    assert source.full_decoded
    assert view.tobytes() == source.low_res(ViewSpec()).tobytes()


@pytest.mark.parametrize(
    ("size", "spec"),
    [((1001, 751), ViewSpec()), ((1600, 1200), ViewSpec(longest_side=300)), ((1600, 1200), ViewSpec(0.3))],
)
def test_jpeg_reduced_decoding_odd_sizes(size: tuple[int, int], spec: ViewSpec) -> None:
    source = open_image(encode(smooth_image(*size), "JPEG", quality=95))
    view = source.low_res(spec)
    assert view.size == spec.size(*size)
    assert not source.full_decoded
    reference = source.full().resize(view.size, Image.Resampling.LANCZOS)
    assert mean_abs_diff(view, reference) < 6


def test_small_reduction_uses_the_full_image() -> None:
    source = open_image(encode(smooth_image(300, 200), "JPEG"))
    assert source.low_res(ViewSpec(scale=0.75)).size == (225, 150)
    assert source.full_decoded  # libjpeg cannot reduce by less than 2, so the full decode is shared


def test_png_view_is_full_plus_lanczos() -> None:
    img = smooth_image(301, 201)
    source = open_image(encode(img, "PNG"))
    view = source.low_res(ViewSpec())
    assert view.size == (150, 100)
    assert view.tobytes() == img.resize((150, 100), Image.Resampling.LANCZOS).tobytes()


def test_view_is_a_copy_when_sizes_match() -> None:
    source = open_image(quadrants(8, 8))
    view = source.low_res(ViewSpec(scale=1))
    view.paste((0, 0, 0), (0, 0, 8, 8))
    assert source.full().getpixel((0, 0)) == (255, 0, 0)


def test_one_pixel_image() -> None:
    source = open_image(encode(Image.new("RGB", (1, 1), (10, 20, 30)), "PNG"))
    assert source.low_res(ViewSpec()).size == (1, 1)
    assert source.low_res(ViewSpec(longest_side=1)).getpixel((0, 0)) == (10, 20, 30)
    assert source.crop((0, 0, 1, 1)).size == (1, 1)
    jpeg = open_image(encode(Image.new("RGB", (1, 1), (200, 100, 50)), "JPEG"))
    assert jpeg.low_res(ViewSpec()).size == (1, 1)


def test_extreme_aspect_ratio() -> None:
    img = Image.linear_gradient("L").resize((10000, 3)).convert("RGB")
    source = open_image(encode(img, "PNG"))
    assert source.low_res(ViewSpec()).size == (5000, 1)
    assert source.low_res(ViewSpec(longest_side=100)).size == (100, 1)
    assert source.crop((9990, 0, 10000, 3)).size == (10, 3)
    tall = open_image(encode(img.transpose(Image.Transpose.ROTATE_90), "JPEG"))
    assert tall.low_res(ViewSpec()).size == (1, 5000)


# --- crops ---------------------------------------------------------------------------------------------


def test_crop_matches_the_full_image() -> None:
    img = smooth_image(200, 100)
    source = open_image(encode(img, "PNG"))
    crop = source.crop((10, 20, 110, 70))
    assert crop.size == (100, 50)
    assert crop.tobytes() == img.crop((10, 20, 110, 70)).tobytes()


@pytest.mark.parametrize(
    "box",
    [
        (0, 0, 0, 10),
        (10, 0, 5, 10),
        (-1, 0, 10, 10),
        (0, 0, 201, 10),
        (0, 0, 10, 101),
        (0, 0, 10),
        (0, 0, 1.5, 2),
    ],
)
def test_crop_box_validation(box: tuple[int, int, int, int]) -> None:
    source = open_image(encode(quadrants(200, 100), "PNG"))
    with pytest.raises(ConfigError):
        source.crop(box)
    assert not source.full_decoded


# --- EXIF orientation ----------------------------------------------------------------------------------


def test_exif_orientation_6(tmp_path: Path) -> None:
    img = quadrants(64, 48)
    exif = img.getexif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    img.save(path, quality=95, exif=exif)

    source = open_image(path)
    assert (source.width, source.height) == (48, 64)
    assert source.orientation == 6

    full = source.full()
    assert full.size == (48, 64)
    upright = img.transpose(Image.Transpose.ROTATE_270)  # what a viewer shows for orientation 6
    assert mean_abs_diff(full, upright) < 4
    assert close(full.getpixel((40, 5)), (255, 0, 0))  # red was top-left; rotated clockwise it is top-right

    view = open_image(path).low_res(ViewSpec(scale=0.25))
    assert view.size == (12, 16)
    assert mean_abs_diff(view, full.resize((12, 16), Image.Resampling.LANCZOS)) < 8


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_matches_pil(orientation: int) -> None:
    img = quadrants(64, 48)
    exif = img.getexif()
    exif[0x0112] = orientation
    data = encode(img, "JPEG", quality=95, exif=exif)
    expected = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")

    source = open_image(data)
    assert (source.width, source.height) == expected.size
    assert source.full().tobytes() == expected.tobytes()
    view = open_image(data).low_res(ViewSpec(scale=0.25))
    assert view.size == (expected.width // 4, expected.height // 4)
    assert mean_abs_diff(view, expected.resize(view.size, Image.Resampling.LANCZOS)) < 8


def test_pil_input_with_orientation() -> None:
    img = quadrants(64, 48)
    exif = img.getexif()
    exif[0x0112] = 8
    opened = Image.open(io.BytesIO(encode(img, "JPEG", exif=exif)))
    source = open_image(opened)
    assert (source.width, source.height) == (48, 64)
    assert source.full().size == (48, 64)


# --- colour modes --------------------------------------------------------------------------------------


def test_rgba_is_composited_on_white() -> None:
    img = Image.new("RGBA", (3, 1))
    img.putdata([(255, 0, 0, 0), (0, 0, 0, 128), (0, 0, 255, 255)])
    rgb = open_image(encode(img, "PNG")).full()
    assert rgb.getpixel((0, 0)) == (255, 255, 255)
    assert close(rgb.getpixel((1, 0)), (127, 127, 127), 2)
    assert rgb.getpixel((2, 0)) == (0, 0, 255)


def test_la_is_composited_on_white() -> None:
    img = Image.new("LA", (2, 1))
    img.putdata([(0, 0), (0, 255)])
    assert pixels(to_rgb(img)) == [(255, 255, 255), (0, 0, 0)]


def test_palette_and_palette_with_transparency() -> None:
    img = Image.new("P", (2, 1))
    img.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 9))
    img.putdata([1, 2])
    assert pixels(open_image(encode(img, "PNG")).full()) == [(255, 0, 0), (0, 255, 0)]

    transparent = encode(img, "PNG", transparency=1)  # index 1 (red) is transparent
    assert pixels(open_image(transparent).full()) == [(255, 255, 255), (0, 255, 0)]
    assert pixels(open_image(encode(img, "GIF", transparency=1)).full()) == [
        (255, 255, 255),
        (0, 255, 0),
    ]


def test_pa_mode() -> None:
    img = Image.new("PA", (2, 1))
    img.putpalette([0, 0, 255] * 256)
    img.putdata([(0, 0), (0, 255)])
    assert pixels(to_rgb(img)) == [(255, 255, 255), (0, 0, 255)]


def test_cmyk() -> None:
    img = Image.new("CMYK", (64, 64), (0, 255, 255, 0))  # red
    img.paste((0, 0, 0, 0), (0, 0, 32, 64))  # white
    source = open_image(encode(img, "JPEG", quality=95))
    assert source.format == "JPEG"
    full = source.full()
    assert close(full.getpixel((8, 8)), (255, 255, 255))
    assert close(full.getpixel((56, 8)), (255, 0, 0))
    fresh = open_image(encode(img, "JPEG", quality=95))
    view = fresh.low_res(ViewSpec())  # the reduced-size decode handles CMYK too
    assert view.size == (32, 32)
    assert close(view.getpixel((28, 16)), (255, 0, 0))
    assert close(view.getpixel((4, 16)), (255, 255, 255))
    assert not fresh.full_decoded
    assert to_rgb(Image.new("CMYK", (1, 1), (0, 0, 0, 255))).getpixel((0, 0)) == (0, 0, 0)


def test_sixteen_bit_gradient_stays_a_gradient() -> None:
    img = Image.new("I;16", (256, 2))
    img.putdata([x * 257 for x in range(256)] * 2)
    source = open_image(encode(img, "PNG"))
    full = source.full()
    values = [full.getpixel((x, 0))[0] for x in range(256)]
    assert values == list(range(256))
    assert full.getpixel((128, 1)) == (128, 128, 128)

    for mode in ("I;16B", "I;16L"):
        assert to_rgb(img.convert("I").convert(mode)).getpixel((200, 0)) == (200, 200, 200)


def test_sixteen_bit_with_small_values_is_kept() -> None:
    img = Image.new("I;16", (3, 1))
    img.putdata([0, 100, 255])
    assert [p[0] for p in pixels(to_rgb(img))] == [0, 100, 255]


def test_thirty_two_bit_and_float_are_stretched() -> None:
    ints = Image.new("I", (3, 1))
    ints.putdata([-1000, 0, 1_000_000])
    assert [p[0] for p in pixels(to_rgb(ints))] == [0, 0, 255]

    floats = Image.new("F", (3, 1))
    floats.putdata([-1.0, 0.0, 1.0])
    assert [p[0] for p in pixels(to_rgb(floats))] == [0, 128, 255]
    assert open_image(floats).full().getpixel((2, 0)) == (255, 255, 255)


def test_bilevel_and_greyscale() -> None:
    img = Image.new("1", (4, 1), 0)
    img.putpixel((3, 0), 1)
    assert pixels(open_image(encode(img, "PNG")).full()) == [(0, 0, 0)] * 3 + [(255, 255, 255)]
    assert to_rgb(Image.new("L", (1, 1), 77)).getpixel((0, 0)) == (77, 77, 77)


@pytest.mark.parametrize(
    "mode", ["1", "L", "LA", "P", "PA", "RGB", "RGBA", "CMYK", "YCbCr", "I", "I;16", "I;16B", "F", "HSV"]
)
def test_every_mode_converts_a_one_pixel_image(mode: str) -> None:
    rgb = to_rgb(Image.new(mode, (1, 1)))
    assert rgb.mode == "RGB"
    assert rgb.size == (1, 1)


def test_rgb_is_returned_as_is() -> None:
    img = Image.new("RGB", (2, 2))
    assert to_rgb(img) is img


def test_animated_gif_uses_the_first_frame() -> None:
    frames = [Image.new("RGB", (20, 10), color) for color in ((255, 0, 0), (0, 0, 255))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    source = open_image(data)
    assert source.format == "GIF"
    assert (source.width, source.height) == (20, 10)
    assert close(source.full().getpixel((5, 5)), (255, 0, 0), 4)
    assert close(source.low_res(ViewSpec()).getpixel((5, 2)), (255, 0, 0), 4)


def test_repr_does_not_leak_data_uri() -> None:
    uri = "data:image/png;base64," + base64.b64encode(encode(quadrants(), "PNG")).decode()
    source = open_image(uri)
    assert uri not in repr(source)
    assert "<data-uri>" in repr(source)


def test_png_exif_orientation_is_read_from_the_header() -> None:
    img = quadrants(64, 48)
    exif = img.getexif()
    exif[0x0112] = 6
    source = open_image(encode(img, "PNG", exif=exif))
    assert (source.width, source.height) == (48, 64)
    assert not source.full_decoded
    assert source.full().tobytes() == img.transpose(Image.Transpose.ROTATE_270).tobytes()


def test_an_endless_or_oversized_file_is_read_only_up_to_the_cap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import awares_agent.images as images

    monkeypatch.setattr(images, "MAX_IMAGE_FILE_BYTES", 4096)
    path = tmp_path / "big.png"
    path.write_bytes(encode(Image.new("RGB", (64, 64)), "PNG") + b"\0" * 8192)
    with pytest.raises(ImageTooLargeError, match="larger than"):
        open_image(path)
    with pytest.raises(ImageTooLargeError):
        open_image("/dev/zero")  # endless: only cap + 1 bytes are read


# --- PNG pixel data against its header -----------------------------------------------------------------


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def _adam7_rgb_png(image: Image.Image, passes: int = 7) -> bytes:
    """An interlaced (Adam7) 8-bit RGB PNG of ``image``, written by hand: PIL writes no interlaced PNG.

    ``passes`` < 7 writes only the first passes' data, in a complete zlib stream: a file cut at a clean
    boundary.
    """
    import numpy as np

    pixels = np.asarray(image.convert("RGB"))
    h, w = pixels.shape[:2]
    raw = b""
    for x0, y0, dx, dy in ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
                           (0, 1, 1, 2))[:passes]:  # fmt: skip
        part = pixels[y0::dy, x0::dx]
        if part.size:
            raw += b"".join(b"\x00" + row.tobytes() for row in part)
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 1)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(raw))
        + _chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "RGB", "RGBA", "I;16"])
@pytest.mark.parametrize("size", [(1, 1), (13, 7), (64, 48)])
def test_png_pixel_data_matches_its_header_for_every_mode(mode: str, size: tuple[int, int]) -> None:
    data = encode(quadrants(*size).convert(mode if mode != "I;16" else "I").convert(mode), "PNG")
    have, want = png_pixel_bytes(data)
    assert have == want
    assert open_image(data).full().size == size


@pytest.mark.parametrize("size", [(1, 1), (5, 3), (9, 9), (33, 17)])
def test_an_interlaced_png_is_read_whole(size: tuple[int, int]) -> None:
    image = quadrants(*size)
    data = _adam7_rgb_png(image)
    have, want = png_pixel_bytes(data)
    assert have == want
    assert ImageChops.difference(open_image(data).full(), image.convert("RGB")).getbbox() is None


def test_a_png_whose_header_claims_more_rows_than_it_holds_is_refused() -> None:
    data = bytearray(encode(quadrants(40, 30), "PNG"))
    struct.pack_into(">I", data, 20, 60)  # IHDR height: 30 -> 60 rows claimed
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    with pytest.raises(ImageDecodeError, match=r"where its header \(40x60\) promises"):
        open_image(bytes(data)).full()


def _lying_png() -> bytes:
    """A 40x30 PNG whose IHDR claims 60 rows: PIL decodes it without an error, rows 30 to 59 left black."""
    data = bytearray(encode(quadrants(40, 30), "PNG"))
    struct.pack_into(">I", data, 20, 60)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    return bytes(data)


def test_a_short_png_is_refused_when_pil_decodes_into_reused_memory() -> None:
    # The check trusts that rows PIL did not decode are zero bytes; PIL zeroes even the blocks it recycles.
    blocks_max = Image.core.get_blocks_max()
    Image.core.set_blocks_max(64)
    try:
        for _ in range(4):  # leave freed, non-zero blocks of this size in PIL's cache
            open_image(encode(Image.new("RGB", (40, 60), (200, 180, 160)), "PNG")).full()
        with pytest.raises(ImageDecodeError, match=r"where its header \(40x60\) promises"):
            open_image(_lying_png()).full()
    finally:
        Image.core.set_blocks_max(blocks_max)


@pytest.mark.parametrize(
    ("size", "passes"),
    [((9, 9), 6), ((8, 8), 5), ((33, 17), 6), ((9, 1), 5)],
    ids=["odd-rows-missing", "two-passes-missing", "wide", "one-row"],
)
def test_an_interlaced_png_missing_its_last_passes_is_refused(size: tuple[int, int], passes: int) -> None:
    # PIL stops silently at the end of the stream; the bottom row (filled by earlier passes) is not black.
    data = _adam7_rgb_png(quadrants(*size), passes=passes)
    with pytest.raises(ImageDecodeError, match=rf"where its header \({size[0]}x{size[1]}\) promises"):
        open_image(data).full()


def test_a_whole_png_is_inflated_once_unless_its_last_row_is_black(monkeypatch: pytest.MonkeyPatch) -> None:
    # The pixel data is counted (a second inflate, as long as PIL's decode) only when PIL's result leaves the
    # question open: every query decodes its PNG, so a count for every PNG costs the agent several percent.
    import awares_agent.images as images

    counted: list[bytes] = []

    def counting(data: bytes) -> tuple[int, int] | None:
        counted.append(data)
        return png_pixel_bytes(data)

    monkeypatch.setattr(images, "png_pixel_bytes", counting)
    coloured = encode(quadrants(64, 48), "PNG")
    assert open_image(coloured).full().size == (64, 48)
    assert open_image(_adam7_rgb_png(quadrants(33, 17))).full().size == (33, 17)
    assert counted == []

    black_bottom = quadrants(64, 48)
    black_bottom.paste((0, 0, 0), (0, 47, 64, 48))
    data = encode(black_bottom, "PNG")
    assert ImageChops.difference(open_image(data).full(), black_bottom).getbbox() is None
    assert counted == [data]
