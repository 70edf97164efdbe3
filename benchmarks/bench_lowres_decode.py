"""Benchmark: a JPEG's low-resolution view by reduced-size (DCT-scaled) decoding vs. full decode + resize.

Synthesises a realistic photo-like JPEG (smooth gradients plus fine detail and noise, quality 90), then times,
interleaved in one run so that both see the same machine state, the median of ``--repeats`` runs of:

(a) ``SourceImage.low_res(ViewSpec())``: libjpeg decodes at 1/2 scale, then LANCZOS to the exact size
    (a fresh ``SourceImage`` per repeat, so nothing is cached);
(b) a full decode followed by a LANCZOS resize to half size (what a naive implementation does).

Run: ``.venv/bin/python benchmarks/bench_lowres_decode.py [--megapixels 12] [--repeats 7]``
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageStat

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from awares_agent.images import ViewSpec, open_image


def synthesize_photo(width: int, height: int, seed: int = 0) -> Image.Image:
    """A photo-like RGB image: colour gradients, sharp shapes and text-like strokes, and sensor noise."""
    rng = random.Random(seed)
    base = Image.merge(
        "RGB",
        (
            Image.linear_gradient("L").rotate(90).resize((width, height)),
            Image.radial_gradient("L").resize((width, height)),
            Image.linear_gradient("L").resize((width, height)),
        ),
    )
    draw = ImageDraw.Draw(base)
    for _ in range(400):
        x, y = rng.randrange(width), rng.randrange(height)
        size = rng.randrange(10, max(11, width // 10))
        color = tuple(rng.randrange(256) for _ in range(3))
        if rng.random() < 0.5:
            draw.ellipse((x, y, x + size, y + size), fill=color)
        else:
            draw.rectangle((x, y, x + size, y + size // 3), outline=color, width=rng.randrange(1, 6))
    for _ in range(300):  # small "text" strokes: the high-frequency detail crops exist for
        x, y = rng.randrange(width), rng.randrange(height)
        draw.text((x, y), "AwaRes 0123456789", fill=(0, 0, 0))
    noise = Image.merge("RGB", [Image.effect_noise((width, height), 24) for _ in range(3)])
    # Noise centred on 128 added with offset -128 keeps the mean brightness.
    noisy = ImageChops.add(base, noise, scale=1.0, offset=-128)
    return noisy.filter(ImageFilter.GaussianBlur(0.6))


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the medians and the speed-up."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megapixels", type=float, default=12.0, help="image size in megapixels (4:3)")
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats of each variant")
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality of the synthetic image")
    args = parser.parse_args(argv)

    width = round(math.sqrt(args.megapixels * 1e6 * 4 / 3))
    height = round(width * 3 / 4)
    spec = ViewSpec()
    target = spec.size(width, height)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "photo.jpg"
        synthesize_photo(width, height).save(path, "JPEG", quality=args.quality)
        size_mb = path.stat().st_size / 1e6
        print(
            f"image: {width}x{height} ({width * height / 1e6:.1f} MP) JPEG q{args.quality}, {size_mb:.1f} MB"
        )
        print(f"view:  {target[0]}x{target[1]} ({spec.key()}), {args.repeats} repeats, interleaved\n")

        def reduced() -> Image.Image:
            return open_image(path).low_res(spec)

        def naive() -> Image.Image:
            with Image.open(path) as im:
                return im.convert("RGB").resize(target, Image.Resampling.LANCZOS)

        # Warm up (file cache, plugin imports), and check that both give the same picture.
        a, b = reduced(), naive()
        diff = sum(ImageStat.Stat(ImageChops.difference(a, b)).mean) / 3
        assert a.size == b.size == target, (a.size, b.size, target)

        times: dict[str, list[float]] = {"reduced": [], "naive": []}
        for _ in range(args.repeats):
            for name, fn in (("reduced", reduced), ("naive", naive)):
                started = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - started)

    reduced_ms = statistics.median(times["reduced"]) * 1e3
    naive_ms = statistics.median(times["naive"]) * 1e3
    print(f"(a) reduced-size decode + LANCZOS  median {reduced_ms:8.1f} ms")
    print(f"(b) full decode + LANCZOS          median {naive_ms:8.1f} ms")
    print(f"speed-up: {naive_ms / reduced_ms:.2f}x   (mean abs pixel difference a vs b: {diff:.2f} / 255)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
