"""Benchmark: the transformers backend's KV-cache reuse and batching, on the tiny Qwen2.5-VL (random weights).

Builds the tiny model in a temporary directory, then measures, side by side in one run:

(1) **Second-turn latency with and without KV reuse.** A 2-turn AwaRes conversation: the system prompt, a
    1024x768 low-res view (999 visual tokens) and a question; the model's first answer; then a user turn
    with one high-resolution crop. With reuse the second turn continues from the first turn's cache and
    prefills only the new tokens; without, it encodes the view and prefills the whole prompt again. The two
    are interleaved, and the median of ``--repeats`` second turns is reported, with the tokens not prefilled.
(2) **Throughput for 8 queries**: one ``complete_batch`` call (left-padded batch of 8), 8 concurrent
    ``complete`` calls from threads (gathered by the micro-batcher), and 8 sequential calls; queries/s, for
    short (16 tokens) and longer (64 tokens) answers.

The tiny model's layers are small, so these figures measure the backend's own work (vision encoding,
prefill length, per-step overhead) more than a 7B model's arithmetic; the ratios are what carry over.

Run: ``.venv/bin/python benchmarks/bench_transformers_backend.py [--repeats 7]``
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PIL import Image
from rich.console import Console
from rich.table import Table

from awares_agent.backends.hf_processors import load_processor
from awares_agent.backends.transformers_backend import TransformersBackend
from awares_agent.image_store import ImageStore
from awares_agent.images import ViewSpec
from awares_agent.messages import ChatMessage, TextPart
from awares_agent.testing import build_tiny_vlm
from awares_agent.tools.crop_sets import PaperCropSet
from awares_agent.tools.protocols import AwaresTextProtocol


def noise(seed: int, width: int, height: int) -> Image.Image:
    """A random RGB image (content does not matter to the cost, only its size)."""
    return Image.frombytes("RGB", (width, height), random.Random(seed).randbytes(width * height * 3))


def opening(store: ImageStore, seed: int, size: tuple[int, int]) -> tuple[str, list[ChatMessage]]:
    """The agent's first-turn messages for a fresh source image of ``size`` (view at half size)."""
    source = store.add(noise(seed, *size))
    view = store.view(source.id, ViewSpec())
    system = AwaresTextProtocol(PaperCropSet()).system_prompt()
    return source.id, [
        ChatMessage.text_message("system", system),
        ChatMessage(role="user", content=[view, TextPart(text="What is the total on this invoice?")]),
    ]


def bench_reuse(path: Path, repeats: int, max_new_tokens: int) -> Table:
    model_backend = TransformersBackend(path, local_files_only=True, max_batch_size=1, max_new_tokens=1)
    model, processor = model_backend.model, model_backend.processor
    reusing = TransformersBackend(model, processor, max_batch_size=1, max_new_tokens=max_new_tokens)
    fresh = TransformersBackend(
        model, processor, max_batch_size=1, max_new_tokens=max_new_tokens, kv_reuse=False
    )
    store = ImageStore()
    with_reuse: list[float] = []
    without: list[float] = []
    prompt = reused = first_prompt = 0
    for r in range(repeats + 1):  # the first round warms up and is not counted
        source_id, messages = opening(store, r, (2048, 1536))
        reusing.clear_cache()
        first = reusing.complete(messages, images=store)
        crop = store.crop(source_id, (0, 0, 512, 384), label="crop 0 (top-left)")
        conversation = [
            *messages,
            ChatMessage(role="assistant", content=[TextPart(text=first.text)]),
            ChatMessage(role="user", content=[crop]),
        ]
        before = reusing.stats
        fresh_before = fresh.stats["preprocessed_images"]
        order = [(reusing, with_reuse), (fresh, without)]
        for backend, times in order if r % 2 else order[::-1]:
            t0 = time.perf_counter()
            reply = backend.complete(conversation, images=store)
            if r:
                times.append(time.perf_counter() - t0)
        after = reusing.stats
        prompt, first_prompt = reply.usage.prompt_tokens, first.usage.prompt_tokens
        reused = after["reused_tokens"] - before["reused_tokens"]
        images_reuse = after["preprocessed_images"] - before["preprocessed_images"]
        images_fresh = fresh.stats["preprocessed_images"] - fresh_before
    t_reuse, t_fresh = statistics.median(with_reuse), statistics.median(without)
    table = Table(title=f"(1) Second turn, median of {repeats} (view 1024x768, one 512x384 crop)")
    table.add_column("second turn")
    table.add_column("prompt tokens", justify="right")
    table.add_column("prefilled", justify="right")
    table.add_column("images preprocessed", justify="right")
    table.add_column("median latency", justify="right")
    table.add_row("no KV reuse", str(prompt), str(prompt), str(images_fresh), f"{t_fresh * 1000:.1f} ms")
    table.add_row(
        "KV reuse", str(prompt), str(prompt - reused), str(images_reuse), f"{t_reuse * 1000:.1f} ms"
    )
    table.caption = (
        f"first prompt {first_prompt} tokens; reuse skips {reused} of {prompt} prompt tokens "
        f"({reused / prompt:.0%}) and is {t_fresh / t_reuse:.2f}x faster"
    )
    return table


def bench_batching(path: Path, repeats: int, lengths: list[int], queries: int) -> Table:
    base = TransformersBackend(path, local_files_only=True, max_batch_size=1, max_new_tokens=1)
    model, processor = base.model, base.processor
    store = ImageStore()
    conversations = [opening(store, 100 + i, (1280 + 32 * i, 960))[1] for i in range(queries)]
    table = Table(title=f"(2) {queries} queries (640x480 views), median of {repeats}")
    for column in ("variant", "new tokens", "median time", "queries/s", "vs sequential"):
        table.add_column(column, justify="left" if column == "variant" else "right")
    batch_sizes: dict[int, int] = {}
    for max_new_tokens in lengths:
        options = {"max_new_tokens": max_new_tokens, "kv_reuse": False}
        batched = TransformersBackend(model, processor, max_batch_size=queries, **options)
        threaded = TransformersBackend(model, processor, max_batch_size=queries, batch_wait_ms=50, **options)
        sequential = TransformersBackend(model, processor, max_batch_size=1, **options)

        def run_batched(b: TransformersBackend = batched) -> None:
            b.complete_batch([(c, None) for c in conversations], images=store)

        def run_threads(b: TransformersBackend = threaded) -> None:
            with ThreadPoolExecutor(max_workers=queries) as pool:
                list(pool.map(lambda c: b.complete(c, images=store), conversations))

        def run_sequential(b: TransformersBackend = sequential) -> None:
            for c in conversations:
                b.complete(c, images=store)

        variants = {
            "batched (complete_batch)": run_batched,
            "threads + micro-batcher": run_threads,
            "sequential": run_sequential,
        }
        times: dict[str, list[float]] = {name: [] for name in variants}
        for r in range(repeats + 1):  # the first round warms up and is not counted
            for name in list(variants) if r % 2 else list(variants)[::-1]:
                t0 = time.perf_counter()
                variants[name]()
                if r:
                    times[name].append(time.perf_counter() - t0)
        seq = statistics.median(times["sequential"])
        for name, values in times.items():
            t = statistics.median(values)
            table.add_row(
                name, str(max_new_tokens), f"{t * 1000:.0f} ms", f"{queries / t:.1f}", f"{seq / t:.2f}x"
            )
        for size, count in threaded.stats["batch_sizes"].items():
            batch_sizes[size] = batch_sizes.get(size, 0) + count
    table.caption = f"micro-batcher batch sizes seen (size: count): {dict(sorted(batch_sizes.items()))}"
    return table


def main(argv: list[str] | None = None) -> int:
    """Build the tiny model, run both measurements, print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats of each variant")
    parser.add_argument("--max-new-tokens", type=int, default=16, help="tokens generated per turn in (1)")
    parser.add_argument(
        "--lengths", type=int, nargs="+", default=[16, 64], help="tokens generated per query in (2)"
    )
    parser.add_argument("--queries", type=int, default=8, help="queries in the throughput measurement")
    args = parser.parse_args(argv)
    console = Console()
    with tempfile.TemporaryDirectory() as tmp:
        path = build_tiny_vlm(Path(tmp) / "tiny-qwen2.5-vl")
        load_processor(str(path), local_files_only=True)  # fail early if the processor cannot load
        console.print(bench_reuse(path, args.repeats, args.max_new_tokens))
        console.print(bench_batching(path, args.repeats, args.lengths, args.queries))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
