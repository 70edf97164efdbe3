"""Benchmark: what streaming a turn's text costs on the transformers backend, and how soon text first shows.

Builds the tiny Qwen2.5-VL (random weights) in a temporary directory and runs, side by side in one run and
interleaved, the same first AwaRes turn (system prompt, a 640x480 view, a question) through ``complete`` and
through ``complete_stream`` (the demo's and ``AwaResAgent.stream``'s path: the row's tokens decoded to text as
each is picked, only the new piece handed on), for several reply lengths. The random model does not stop
early, so each reply is ``max_new_tokens`` long. Reported, as medians of ``--repeats``: the whole turn's
latency both ways, their ratio (the overhead of streaming), and the time to the first piece of text.

The incremental detokenizer decodes the row's whole token list at each step, so its cost grows with the
square of the reply's length; the longest row shows where that starts to matter. The KV cache is cleared
before every turn so that both paths prefill the same prompt.

Run: ``.venv/bin/python benchmarks/bench_streaming.py [--repeats 5] [--lengths 32,128,512]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PIL import Image, ImageDraw
from rich.console import Console
from rich.table import Table

from awares_agent.backends.transformers_backend import TransformersBackend
from awares_agent.image_store import ImageStore
from awares_agent.images import ViewSpec
from awares_agent.messages import ChatMessage, TextPart
from awares_agent.testing import build_tiny_vlm
from awares_agent.tools.crop_sets import PaperCropSet
from awares_agent.tools.protocols import JsonProtocol


def conversation(store: ImageStore) -> list[ChatMessage]:
    """The first turn of a query: the json protocol's system prompt, a 640x480 view and a question."""
    page = Image.new("RGB", (1280, 960), "white")
    ImageDraw.Draw(page).text((900, 800), "TOTAL 17.50", fill="black")
    view = store.view(store.add(page).id, ViewSpec())
    protocol = JsonProtocol(PaperCropSet())
    return [
        ChatMessage.text_message("system", protocol.system_prompt()),
        ChatMessage(role="user", content=[view, TextPart(text="What is the total?")]),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--lengths", default="32,128,512", help="reply lengths (max_new_tokens), comma-separated"
    )
    args = parser.parse_args()
    lengths = [int(n) for n in args.lengths.split(",")]
    console = Console()
    with tempfile.TemporaryDirectory() as tmp:
        backend = TransformersBackend(build_tiny_vlm(Path(tmp) / "tiny"), local_files_only=True)
        store = ImageStore()
        messages = conversation(store)
        rows = []
        for length in lengths:
            backend.max_new_tokens = length
            whole, streamed, first, pieces = [], [], [], []
            backend.complete(messages, images=store)  # warm-up
            for _ in range(args.repeats):
                backend.clear_cache()
                t0 = time.perf_counter()
                reply = backend.complete(messages, images=store)
                whole.append(time.perf_counter() - t0)

                backend.clear_cache()
                got: list[float] = []
                t0 = time.perf_counter()
                streamed_reply = backend.complete_stream(
                    messages, images=store, on_text=lambda _piece, got=got: got.append(time.perf_counter())
                )
                streamed.append(time.perf_counter() - t0)
                first.append((got[0] - t0) if got else float("nan"))
                pieces.append(len(got))
                assert streamed_reply.text == reply.text, "the streamed reply differs from the whole one"
            rows.append((length, reply.usage.completion_tokens, whole, streamed, first, pieces))

    table = Table(title=f"streaming on the tiny Qwen2.5-VL (CPU), medians of {args.repeats}")
    for column in ("max tokens", "generated", "complete s", "complete_stream s", "ratio", "first text s",
                   "pieces"):  # fmt: skip
        table.add_column(column, justify="right")
    for length, generated, whole, streamed, first, pieces in rows:
        w, s = statistics.median(whole), statistics.median(streamed)
        table.add_row(
            str(length),
            str(generated),
            f"{w:.3f}",
            f"{s:.3f}",
            f"{s / w:.2f}x",
            f"{statistics.median(first):.3f}",
            str(int(statistics.median(pieces))),
        )
    console.print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
