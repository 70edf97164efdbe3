"""The agent's own overhead per query, against calling the same backend directly.

A loopback OpenAI-compatible server answers every request after a fixed delay (50 ms by default). Two ways
of asking the same question about the same kind of image are timed side by side, interleaved, in one run:

* direct: what a user writes without awares: open the image, make the half-size view, encode it as a PNG
  data URI, call ``client.chat.completions.create`` with the same prompt and tool, read the reply;
* agent: ``AwaResAgent.ask(path, question)``: the same requests through the LangGraph graph, image store,
  protocol parser, token accounting and trajectory.

Both a direct answer (one model call) and a one-crop query (two calls; the direct path crops and encodes the
region itself) are measured. Every query uses a fresh image so no cache helps either side.

    python benchmarks/bench_agent_overhead.py [--queries 30] [--delay-ms 50] [--size 1024x768] [--check]

With ``--check`` the script exits with status 1 when either overhead is above the target (+5%), so a change
can be held to it: the agent's per-query work (image checks and decodes included) must stay within noise of
what the direct path does anyway.
"""

from __future__ import annotations

import argparse
import base64
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from chat_server import Completion, Delay, ScriptedChatServer
from openai import OpenAI
from rich.console import Console
from rich.table import Table

from awares_agent import AwaResAgent, OpenAIBackend
from awares_agent.tools.crop_sets import PaperCropSet
from awares_agent.tools.protocols import JsonProtocol

QUESTION = "What is written in the bottom-right corner?"
TARGET_OVERHEAD = 5.0
"""The most the agent may add to a query, in percent of the direct path's median time."""


def make_images(folder: Path, count: int, size: tuple[int, int]) -> list[Path]:
    paths = []
    for i in range(count):
        img = Image.new("RGB", size, (255 - i % 50, 250, 245))
        draw = ImageDraw.Draw(img)
        for y in range(0, size[1], 40):
            draw.text((20 + i % 7, y), f"line {y} of page {i}: the quick brown fox", fill="black")
        path = folder / f"page{i}.png"
        img.save(path)
        paths.append(path)
    return paths


def data_uri(img: Image.Image) -> str:
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def direct(client: OpenAI, model: str, path: Path, crop: bool) -> str:
    """The same conversation, written by hand against the openai client."""
    protocol = JsonProtocol(PaperCropSet())
    img = Image.open(path).convert("RGB")
    view = img.resize((img.width // 2, img.height // 2), Image.Resampling.LANCZOS)
    messages: list[dict] = [
        {"role": "system", "content": protocol.system_prompt()},
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": data_uri(view)}},
                {"type": "text", "text": QUESTION},
            ],
        },
    ]
    tools = [t.to_openai() for t in protocol.tools() or []]
    reply = client.chat.completions.create(model=model, messages=messages, tools=tools, temperature=0)
    message = reply.choices[0].message
    if not crop:
        return message.content or ""
    call = message.tool_calls[0]
    box = PaperCropSet().region("3", img.width, img.height).box
    messages += [
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "Returned crops: 3 (bottom-right)."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Crop 3 (bottom-right):"},
                {"type": "image_url", "image_url": {"url": data_uri(img.crop(box))}},
            ],
        },
    ]
    reply = client.chat.completions.create(model=model, messages=messages, temperature=0)
    return reply.choices[0].message.content or ""


def measure(queries: int, delay: float, size: tuple[int, int]) -> dict[tuple[str, bool], list[float]]:
    """Seconds per query of each method ("direct", "agent") and path (crop round or not), interleaved."""
    model = "Qwen/Qwen2.5-VL-7B-Instruct"
    with tempfile.TemporaryDirectory() as tmp, ScriptedChatServer() as server:
        images = make_images(Path(tmp), 4 * queries + 4, size)  # a fresh image for every query
        client = OpenAI(base_url=server.base_url, api_key="EMPTY", max_retries=0)
        agent = AwaResAgent(OpenAIBackend(model, base_url=server.base_url, max_retries=0))
        answer = Completion(text="the quick brown fox")
        call = Completion(tool_calls=[("get_crops", {"crops": ["3"]})])

        def run_direct(path: Path, crop: bool) -> None:
            server.enqueue(*([Delay(delay, call)] if crop else []), Delay(delay, answer))
            direct(client, model, path, crop)

        def run_agent(path: Path, crop: bool) -> None:
            server.enqueue(*([Delay(delay, call)] if crop else []), Delay(delay, answer))
            result = agent.ask(path, QUESTION)
            assert result.answer == "the quick brown fox" and len(result.crops) == int(crop)

        timings: dict[tuple[str, bool], list[float]] = {
            (m, c): [] for m in ("direct", "agent") for c in (False, True)
        }
        pool = iter(images)
        for crop in (False, True):  # warm-up: imports, connection pools, first graph run
            run_direct(next(pool), crop)
            run_agent(next(pool), crop)
        for _ in range(queries):
            for crop in (False, True):
                for method, fn in (("direct", run_direct), ("agent", run_agent)):
                    t0 = time.perf_counter()
                    fn(next(pool), crop)
                    timings[(method, crop)].append(time.perf_counter() - t0)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--queries", type=int, default=30, help="queries per method and path (default 30)")
    parser.add_argument("--delay-ms", type=float, default=50.0, help="server reply delay (default 50)")
    parser.add_argument("--size", default="1024x768", help="image size WxH (default 1024x768)")
    parser.add_argument(
        "--check",
        action="store_true",
        help=f"exit with status 1 if either overhead is above {TARGET_OVERHEAD:g}%%",
    )
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    timings = measure(args.queries, args.delay_ms / 1000, (width, height))

    console = Console()
    table = Table(
        title=f"Agent overhead per query ({width}x{height} PNG, server replies in {args.delay_ms:g} ms)"
    )
    for column in ("path", "direct (ms, median)", "agent (ms, median)", "overhead"):
        table.add_column(column, justify="right")
    over: list[str] = []
    for crop, label in ((False, "direct answer (1 call)"), (True, "one crop round (2 calls)")):
        d = statistics.median(timings[("direct", crop)]) * 1000
        a = statistics.median(timings[("agent", crop)]) * 1000
        overhead = (a - d) / d * 100
        table.add_row(label, f"{d:.1f}", f"{a:.1f}", f"{overhead:+.1f}%")
        if overhead > TARGET_OVERHEAD:
            over.append(f"{label}: {overhead:+.1f}%")
    console.print(table)
    console.print(
        f"{args.queries} queries per cell, interleaved; target: overhead under {TARGET_OVERHEAD:g}%."
    )
    if args.check and over:
        console.print(
            f"[red]over the {TARGET_OVERHEAD:g}% target[/red] ({'; '.join(over)}): profile a query "
            "(python -m cProfile) for work the direct path does not do, or rerun on a quieter machine"
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
