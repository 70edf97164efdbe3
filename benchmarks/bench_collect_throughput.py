"""Collection throughput: samples per second at 1, 8 and 32 requests in flight, side by side in one run.

A minimal loopback OpenAI-compatible server (in its own process, one thread per connection, so its threads do
not take the collector's interpreter lock; a real model server is another process too) answers every request
after a fixed delay, 100 ms by default. The real collector (:func:`awares_agent.engine.runner.collect`),
writing durable shards (fsync per group, as in production) to a temporary folder, runs three kinds of work
over the same small PNG pages at each concurrency:

* ``agent``: the real thing, ``AwaResAgent.aask`` + ``OpenAIBackend``; the model answers directly, so a
  sample is one request, and its row holds the trajectory;
* ``client``: one ``AsyncOpenAI.chat.completions.create`` with the page as a data URI (no agent);
* ``sleep``: ``asyncio.sleep(delay)`` (the collector alone: no HTTP, no agent).

With a perfect collector, N in flight gives N times the samples per second of 1 in flight. ``CPU ms/sample``
is the collecting process's CPU time per sample at that level: one Python process cannot go faster than
1000 / that figure samples per second, whatever the concurrency, so it shows where a shortfall comes from.
Each run gets a fresh output folder; an untimed warm-up run opens the client's connections first. A last row
runs the agent at the widest level split over ``--processes`` collectors on this machine (``--shard k/N``
each, the widest level's requests shared between them): the way past one process's CPU ceiling.

    python benchmarks/bench_collect_throughput.py [--samples 128] [--delay-ms 100] [--levels 1,8,32]
        [--work agent,client,sleep]

Target: at least 80% of linear scaling up to 32 in flight (efficiency = speed-up / in-flight).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import multiprocessing as mp
import queue
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw
from rich.console import Console
from rich.table import Table

from awares_agent import AwaResAgent, OpenAIBackend
from awares_agent.engine import collect

QUESTION = "What is written on the page?"
MODEL = "Qwen/Qwen2.5-VL-7B-Instruct"


class _Handler(BaseHTTPRequestHandler):
    """Answers every ``POST /v1/chat/completions`` with a direct answer after the server's delay."""

    protocol_version = "HTTP/1.1"  # keep-alive: the client reuses its connections, as against a real server
    # The stock handler sends the headers and the body in two writes; with Nagle's algorithm on, the body then
    # waits for the client's delayed ACK (40 ms on Linux), which would add 40 ms to every request.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)))
        time.sleep(self.server.delay)
        body = json.dumps(
            {
                "id": "chatcmpl-bench",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": request.get("model", MODEL),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "the quick brown fox"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 100, "completion_tokens": 5, "total_tokens": 105},
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = (
        256  # the stock listen backlog of 5 drops connections when 32 clients connect at once
    )
    delay: float


def serve(delay: float, port_out: Any, stop: Any) -> None:
    """Child process: an OpenAI-compatible server on loopback (one thread per connection)."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.delay = delay
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port_out.send(f"http://127.0.0.1:{server.server_address[1]}/v1")
    stop.wait()
    server.shutdown()


def make_images(count: int, size: tuple[int, int]) -> list[tuple[str, bytes]]:
    """``(id, PNG bytes)`` pages, each different (so no content-addressed cache helps)."""
    pages = []
    for i in range(count):
        img = Image.new("RGB", size, (255 - i % 50, 250, 245))
        draw = ImageDraw.Draw(img)
        for y in range(0, size[1], 24):
            draw.text((8 + i % 7, y), f"line {y} of page {i}", fill="black")
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        pages.append((f"page{i:05d}", buf.getvalue()))
    return pages


def _works(kind: str, agent: AwaResAgent, base_url: str, delay: float) -> Any:
    """The work function of one kind (see the module docstring)."""
    if kind == "agent":

        async def agent_work(page: tuple[str, bytes]) -> dict[str, Any]:
            result = await agent.aask(page[1], QUESTION)
            return {"sample_id": page[0], "answer": result.answer, "trajectory": result.trajectory}

        return agent_work
    if kind == "client":
        from openai import AsyncOpenAI

        client: AsyncOpenAI | None = None

        async def client_work(page: tuple[str, bytes]) -> dict[str, Any]:
            nonlocal client
            client = client or AsyncOpenAI(base_url=base_url, api_key="EMPTY", max_retries=0)
            uri = "data:image/png;base64," + base64.b64encode(page[1]).decode()
            content = [{"type": "image_url", "image_url": {"url": uri}}, {"type": "text", "text": QUESTION}]
            reply = await client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": content}], temperature=0
            )
            return {"sample_id": page[0], "answer": reply.choices[0].message.content}

        return client_work
    if kind == "sleep":

        async def sleep_work(page: tuple[str, bytes]) -> dict[str, Any]:
            await asyncio.sleep(delay)
            return {"sample_id": page[0], "answer": "the quick brown fox"}

        return sleep_work
    raise SystemExit(f"unknown --work {kind!r}: use agent, client or sleep")


async def measure(
    work: Any, pages: list[tuple[str, bytes]], levels: list[int], root: Path
) -> dict[int, tuple[float, float]]:
    """``{in flight: (samples/s, CPU ms per sample)}`` for one kind of work."""

    def id_of(page: tuple[str, bytes]) -> str:
        return page[0]

    # Warm-up: open as many connections as the widest level will use, import and compile everything.
    warm = await collect(
        pages[: max(levels)], work, root / "warmup", id_of=id_of, concurrency=max(levels), progress=False
    )
    if not warm.complete:
        raise SystemExit(f"the warm-up run failed: {warm.failures}")
    figures = {}
    for level in levels:
        t0, cpu0 = time.perf_counter(), time.process_time()
        stats = await collect(pages, work, root / f"c{level}", id_of=id_of, concurrency=level, progress=False)
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        if not stats.complete:
            raise SystemExit(f"the run at {level} in flight did not complete: {stats.failures}")
        figures[level] = (stats.done / elapsed, cpu / stats.done * 1000)
    return figures


def _shard_process(
    base_url: str,
    pages: list[tuple[str, bytes]],
    concurrency: int,
    root: str,
    index: int,
    count: int,
    start: Any,
    results: Any,
) -> None:
    """Child process: the agent collector on shard ``index``/``count``, timed from a common start."""
    from awares_agent.engine import ShardSpec

    agent = AwaResAgent(OpenAIBackend(MODEL, base_url=base_url, max_retries=0))
    work = _works("agent", agent, base_url, 0.0)
    shard = ShardSpec(index, count)

    async def go() -> tuple[int, float, float]:
        await collect(
            pages[: concurrency * count],  # about `concurrency` of them in this shard
            work,
            Path(root) / "warmup",
            id_of=_page_id,
            concurrency=concurrency,
            shard=shard,
            progress=False,
        )
        await asyncio.to_thread(start.wait)
        t0, cpu0 = time.perf_counter(), time.process_time()
        stats = await collect(
            pages,
            work,
            Path(root) / "run",
            id_of=_page_id,
            concurrency=concurrency,
            shard=shard,
            progress=False,
        )
        if not stats.complete:
            raise SystemExit(f"shard {shard} did not complete: {stats.failures}")
        return stats.done, time.perf_counter() - t0, time.process_time() - cpu0

    results.put(asyncio.run(go()))


def _page_id(page: tuple[str, bytes]) -> str:
    return page[0]


def measure_sharded(
    ctx: Any, base_url: str, pages: list[tuple[str, bytes]], level: int, processes: int, root: Path
) -> tuple[float, float]:
    """``(samples/s, CPU ms per sample)`` of ``processes`` collectors on one machine (``--shard k/N`` each),
    ``level`` requests in flight in all."""
    start, results = ctx.Barrier(processes + 1), ctx.Queue()
    procs = [
        ctx.Process(
            target=_shard_process,
            args=(base_url, pages, max(1, level // processes), str(root), k, processes, start, results),
        )
        for k in range(1, processes + 1)
    ]
    for proc in procs:
        proc.start()
    start.wait()
    outcomes: list[tuple[int, float, float]] = []
    while len(outcomes) < processes:
        try:
            outcomes.append(results.get(timeout=1))
        except queue.Empty:
            if any(proc.exitcode not in (None, 0) for proc in procs):
                raise SystemExit("a shard's collector process failed (see its traceback above)") from None
    for proc in procs:
        proc.join()
    done = sum(o[0] for o in outcomes)
    return done / max(o[1] for o in outcomes), sum(o[2] for o in outcomes) / done * 1000


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=128, help="samples per run (default 128)")
    parser.add_argument("--delay-ms", type=float, default=100.0, help="server reply delay (default 100)")
    parser.add_argument("--levels", default="1,8,32", help="requests in flight to compare (default 1,8,32)")
    parser.add_argument("--work", default="agent,client,sleep", help="kinds of work (default: all three)")
    parser.add_argument("--size", default="256x192", help="image size WxH (default 256x192)")
    parser.add_argument(
        "--processes",
        type=int,
        default=2,
        help="also run the agent at the widest level split over this many collector processes on this "
        "machine (--shard k/N each; 0 or 1: skip; default 2)",
    )
    args = parser.parse_args()
    levels = sorted({int(v) for v in args.levels.split(",")})
    kinds = [k.strip() for k in args.work.split(",") if k.strip()]
    size = tuple(int(v) for v in args.size.lower().split("x"))
    delay = args.delay_ms / 1000
    console = Console(width=max(Console().width, 100))

    ctx = mp.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    stop = ctx.Event()
    server = ctx.Process(target=serve, args=(delay, send, stop), daemon=True)
    server.start()
    results: dict[str, dict[int, tuple[float, float]]] = {}
    sharded = (0.0, 0.0)
    try:
        base_url = receive.recv()
        pages = make_images(args.samples, size)  # type: ignore[arg-type]
        agent = AwaResAgent(OpenAIBackend(MODEL, base_url=base_url, max_retries=0))

        async def run_all(root: Path) -> None:
            for kind in kinds:
                results[kind] = await measure(
                    _works(kind, agent, base_url, delay), pages, levels, root / kind
                )

        with tempfile.TemporaryDirectory() as tmp:
            asyncio.run(run_all(Path(tmp)))
            if args.processes > 1 and "agent" in kinds:
                sharded = measure_sharded(
                    ctx, base_url, pages, levels[-1], args.processes, Path(tmp) / "shards"
                )
    finally:
        stop.set()
        server.join(timeout=10)

    table = Table(
        title=f"Collection throughput ({args.samples} samples of {args.size} PNG per run, replies after "
        f"{args.delay_ms:g} ms)"
    )
    for column in ("work", "in flight", "samples/s", "ideal", "speed-up", "efficiency", "CPU ms/sample"):
        table.add_column(column, justify="right")
    low = levels[0]
    for kind in kinds:
        figures = results[kind]
        for level in levels:
            rate, cpu_ms = figures[level]
            speedup = rate / figures[low][0]
            table.add_row(
                kind if level == low else "",
                str(level),
                f"{rate:.1f}",
                f"{1000 / args.delay_ms * level:.0f}",
                f"{speedup:.2f}x",
                f"{speedup / (level / low):.0%}",
                f"{cpu_ms:.2f}",
            )
        if kind == "agent" and args.processes > 1:
            rate, cpu_ms = sharded
            speedup = rate / figures[low][0]
            table.add_row(
                f"agent, {args.processes} processes",
                str(levels[-1]),
                f"{rate:.1f}",
                f"{1000 / args.delay_ms * levels[-1]:.0f}",
                f"{speedup:.2f}x",
                f"{speedup / (levels[-1] / low):.0%}",
                f"{cpu_ms:.2f}",
            )
        table.add_section()
    console.print(table)
    console.print(
        f"efficiency = speed-up / (in flight / {low}); target: at least 80% up to 32. One process cannot "
        "exceed 1000 / (CPU ms per sample) samples/s."
    )


if __name__ == "__main__":
    main()
