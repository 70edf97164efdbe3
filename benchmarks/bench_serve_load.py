"""A load test of ``awares serve``: 10,000 requests with upstream failures and clients that hang up.

The same three processes as :mod:`bench_serve_overhead`: the loopback upstream (uvicorn, answering after
``--delay-ms``), a real ``awares serve`` over it (``--max-retries 0``: a failure is the request's, not retried
away), and this script sending ``--requests`` requests from ``--clients`` concurrent ``httpx`` clients. Each
request is drawn with a seeded generator (``--seed``):

* AwaRes (``--awares-share`` of them: a small page drawn from a pool of different ones, and a question; a
  third of them make the model ask for a crop first, two upstream calls) or passed through (text only);
* whole or streamed (``stream: true``, half of them);
* ``--error-rate`` of them meet an upstream failure on their first upstream call: HTTP 500, HTTP 429, or a
  connection dropped after the headers and a few bytes (a third each);
* ``--disconnect-rate`` of them are hung up on by their client: half-way through sending the body, or once
  it is sent, while the upstream holds the call (streamed: after the first event). The upstream holds such a
  call (after the headers and a first event when streaming) until the server hangs up on it; a call still
  held at the end is a leak.

A request's text carries its fate (``[[fault:...]]``, read by the upstream), so each reply is checked against
what it should be: the answer; an OpenAI-style error (``{"error": {"type", "code"}}``, in a stream an
``error`` event) for an AwaRes query the upstream failed (``upstream_error``, ``upstream_rate_limited``,
``upstream_unavailable``/``upstream_invalid_reply``); the upstream's own status and error body for a request
passed through; and for a passed-through reply the upstream broke off after its headers, a connection closed
before the reply's end (``broken_off``: the client's HTTP library raises; once a 200 is sent there is no
honest way to say more). The run fails (exit 1) unless:

* every request got what was planned: none untyped (a body that is not JSON, a reply cut short but ended as
  if whole, a stream without ``[DONE]``), no 500 from the server itself, no traceback in its output;
* nothing leaks: ``/metrics``' in-flight gauge back to 0; no upstream call in progress; every held one let go
  by a hang-up; the server's sockets from clients back to 0 and to the upstream within its pools' keep-alive
  limit (``/proc/PID/fd`` against ``/proc/PID/net/tcp``); no other descriptor left open;
* memory is flat: the server's RSS (``/proc``, sampled after a warm-up and every tenth of the run) grows by
  less than ``max(20 MiB, 10%)`` from the middle of the run to its end;
* the counts add up: ``/metrics``' RTR histogram (count and sum), visual tokens sent and saved and model calls
  equal the sums over the ``awares`` fields of the AwaRes answers received; its requests by route add up to
  the requests sent, and its ``client_disconnected`` errors to the hang-ups.

    python benchmarks/bench_serve_load.py [--requests 10000] [--clients 32] [--delay-ms 20] [--seed 0]

``--requests 2000`` is the quick run. Linux only (``/proc``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_serve_overhead import (
    ANSWER,
    QUESTION,
    ServeProcess,
    image_body,
    make_pages,
    text_body,
    upstream_process,
)

MIB = 1 << 20
#: The keep-alive connections the server's two upstream pools keep at most (awares_agent.serve.proxy and
#: awares_agent.backends.http_deadline: 100 each).
POOLS_KEEPALIVE = 200
_TCP_LISTEN = "0A"


# --- the plan ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """One request: its route, whether streamed, its upstream fault and whether its client hangs up."""

    index: int
    awares: bool
    stream: bool
    crop: bool = False
    fault: str | None = None  # "500", "429", "hangup"
    drop: str | None = None  # "upload": mid-body; "reply": awaiting the reply, or after its first event

    @property
    def kind(self) -> str:
        """``awares``/``passthrough`` and ``whole``/``stream``."""
        return f"{'awares' if self.awares else 'passthrough'} {'stream' if self.stream else 'whole'}"


def plan(count: int, seed: int, awares_share: float, error_rate: float, disconnect_rate: float) -> list[Plan]:
    """``count`` seeded requests (see the module docstring)."""
    rng = random.Random(seed)
    plans = []
    for i in range(count):
        awares = rng.random() < awares_share
        stream = rng.random() < 0.5
        crop = awares and rng.random() < 1 / 3
        draw = rng.random()
        fault = rng.choice(("500", "429", "hangup")) if draw < error_rate else None
        hangs_up = error_rate <= draw < error_rate + disconnect_rate
        drop = rng.choice(("upload", "reply")) if hangs_up else None
        plans.append(Plan(i, awares, stream, crop, fault, drop))
    return plans


def body_of(p: Plan, page: str) -> dict[str, Any]:
    """The request's body: its fate in its text (read by the upstream)."""
    marks = f" [[fault:{p.fault}]]" if p.fault else ""
    marks += " [[fault:hold]]" if p.drop else ""
    marks += " [[crop]]" if p.crop else ""
    extra: dict[str, Any] = {"stream": True, "stream_options": {"include_usage": True}} if p.stream else {}
    if p.awares:
        return image_body(page, f"{QUESTION} (#{p.index}){marks}", **extra)
    return text_body(f"Say hello (#{p.index}){marks}", **extra)


# --- outcomes ---------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What a request got: ``answered``, ``error:<code>``, ``broken_off``, ``dropped``, ``untyped:<why>``."""

    what: str
    status: int = 0
    awares: dict[str, Any] | None = None
    detail: str = ""


def expected(p: Plan) -> set[str]:
    """The outcomes a plan may get."""
    if p.drop:
        return {"dropped"}
    if p.fault is None:
        return {"answered"}
    if not p.awares:  # the upstream's own reply passed on: its status and error body, or its break
        return {f"error:scripted_fault:{p.fault}"} if p.fault != "hangup" else {"broken_off"}
    if p.fault == "500":
        return {"error:upstream_error"}
    if p.fault == "429":
        return {"error:upstream_rate_limited"}
    return {"error:upstream_unavailable", "error:upstream_invalid_reply"}


def _typed(body: Any) -> dict[str, Any] | None:
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("type"), str) and isinstance(error.get("code"), str):
        return error
    return None


def _error_outcome(error: dict[str, Any], status: int) -> Outcome:
    code = error["code"]
    if code == "scripted_fault":  # the upstream's own error, passed through: which status it kept
        code = f"scripted_fault:{status}"
    return Outcome(f"error:{code}", status, detail=error.get("message", "")[:200])


def judge_whole(status: int, text: str, route: str | None) -> Outcome:
    """A whole reply's outcome."""
    try:
        body = json.loads(text)
    except ValueError:
        return Outcome("untyped:not_json", status, detail=text[:200])
    if status == 200:
        choices = body.get("choices") if isinstance(body, dict) else None
        if choices and choices[0]["message"]["content"] == ANSWER:
            return Outcome("answered", status, awares=body.get("awares") if route == "awares" else None)
        return Outcome("untyped:wrong_answer", status, detail=text[:200])
    error = _typed(body)
    if error is None:
        return Outcome("untyped:error_without_type", status, detail=text[:200])
    return _error_outcome(error, status)


def judge_stream(status: int, events: list[str], route: str | None) -> Outcome:
    """A streamed reply's outcome, from its ``data:`` payloads."""
    if status != 200:
        return judge_whole(status, "".join(events), route)
    if not events or events[-1] != "[DONE]":
        return Outcome("untyped:no_done", status, detail=" | ".join(events[-3:])[:200])
    text, awares = "", None
    for data in events[:-1]:
        try:
            chunk = json.loads(data)
        except ValueError:
            return Outcome("untyped:bad_event", status, detail=data[:200])
        if (error := _typed(chunk)) is not None:
            return _error_outcome(error, status)
        for choice in chunk.get("choices") or []:
            text += choice.get("delta", {}).get("content") or ""
        awares = chunk.get("awares", awares)
    if text != ANSWER:
        return Outcome("untyped:wrong_answer", status, detail=text[:200])
    return Outcome("answered", status, awares=awares if route == "awares" else None)


async def send(client: httpx.AsyncClient, url: str, p: Plan, page: str, rng: random.Random) -> Outcome:
    """Send one planned request and judge its reply (a planned hang-up: drop the connection mid-request)."""
    body = json.dumps(body_of(p, page)).encode()
    headers = {"content-type": "application/json"}
    if p.drop == "upload" or (p.drop == "reply" and not p.stream):
        return await _hang_up(client, url, body, headers, p.drop, rng)
    events: list[str] = []
    try:
        if not p.stream:
            reply = await client.post(url, content=body, headers=headers)
            return judge_whole(reply.status_code, reply.text, reply.headers.get("x-awares-route"))
        async with client.stream("POST", url, content=body, headers=headers) as reply:
            route = reply.headers.get("x-awares-route")
            if reply.status_code != 200:
                return judge_whole(reply.status_code, (await reply.aread()).decode(), route)
            async for line in reply.aiter_lines():
                if line.startswith("data: "):
                    events.append(line[6:])
                    if p.drop:
                        await asyncio.sleep(rng.uniform(0.0, 0.05))
                        return Outcome("dropped")  # leaving the block closes the connection mid-stream
        return judge_stream(200, events, route)
    except httpx.RemoteProtocolError as exc:
        # The server closed the connection before the reply's end: a reply the upstream broke off, passed on
        # broken off (the client's library raises), never as if it were whole.
        return Outcome("broken_off", 200, detail=str(exc)[:200])
    except httpx.HTTPError as exc:
        return Outcome(f"untyped:{type(exc).__name__}", detail=str(exc)[:200])


async def _hang_up(
    client: httpx.AsyncClient,
    url: str,
    body: bytes,
    headers: dict[str, str],
    when: str,
    rng: random.Random,
) -> Outcome:
    """Drop the connection half-way through sending the body (``upload``), or once the body is sent, while
    the upstream holds the call (``reply``); the request is on the wire before the hang-up, so the server
    always has it to count."""
    on_wire = asyncio.Event()

    async def trace(name: str, info: dict[str, Any]) -> None:
        if name == "http11.send_request_body.complete":
            on_wire.set()

    async def half_then_stall() -> AsyncIterator[bytes]:
        yield body[: len(body) // 2]
        on_wire.set()  # asked for more: the first half is written
        await asyncio.Event().wait()
        yield b""

    if when == "upload":
        headers = {**headers, "content-length": str(len(body))}
        work = client.post(url, content=half_then_stall(), headers=headers)
    else:
        work = client.post(url, content=body, headers=headers, extensions={"trace": trace})
    task = asyncio.ensure_future(work)
    waiting = asyncio.ensure_future(on_wire.wait())
    await asyncio.wait({task, waiting}, return_when=asyncio.FIRST_COMPLETED)
    if not task.done():
        await asyncio.sleep(rng.uniform(0.0, 0.1))
    if task.done():  # the call is held upstream: no reply can come before the hang-up
        waiting.cancel()
        error = task.exception()
        return Outcome(
            f"untyped:answered_a_held_call ({error!r})" if error else "untyped:answered_a_held_call"
        )
    task.cancel()
    waiting.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return Outcome("dropped")


# --- the server's state, from /metrics and /proc ----------------------------------------------------------

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$")


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text as ``{'name{labels}': value}``."""
    out = {}
    for line in text.splitlines():
        if (match := _SAMPLE.match(line)) is not None:
            out[match.group(1) + (match.group(2) or "")] = float(match.group(3))
    return out


def rss_bytes(pid: int) -> int:
    """A process's resident set size, from ``/proc/PID/status``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise SystemExit(f"no VmRSS for process {pid}")


@dataclass
class Sockets:
    """A process's open descriptors, its TCP sockets sorted by the other end."""

    descriptors: int = 0
    from_clients: int = 0
    to_upstream: Counter[str] = field(default_factory=Counter)  # by TCP state
    listening: int = 0
    other: int = 0

    @property
    def upstream_total(self) -> int:
        return sum(self.to_upstream.values())


#: Linux's TCP states, as /proc/net/tcp writes them (LISTEN, 0A, is counted apart).
_STATES = {"01": "ESTABLISHED", "02": "SYN_SENT", "04": "FIN_WAIT1", "05": "FIN_WAIT2", "06": "TIME_WAIT"}
_STATES |= {"07": "CLOSE", "08": "CLOSE_WAIT", "09": "LAST_ACK", "0B": "CLOSING"}


def sockets(pid: int, server_port: int, upstream_port: int) -> Sockets:
    """``pid``'s descriptors and TCP sockets (``/proc/PID/fd`` against ``/proc/PID/net/tcp``)."""
    inodes = set()
    fds = list(Path(f"/proc/{pid}/fd").iterdir())
    for fd in fds:
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = Sockets(descriptors=len(fds))
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            cols = line.split()
            if cols[9] not in inodes:
                continue
            local, remote, state = int(cols[1].split(":")[1], 16), int(cols[2].split(":")[1], 16), cols[3]
            if state == _TCP_LISTEN:
                found.listening += 1
            elif local == server_port:
                found.from_clients += 1
            elif remote == upstream_port:
                found.to_upstream[_STATES.get(state, state)] += 1
            else:
                found.other += 1
    return found


# --- the run ----------------------------------------------------------------------------------------------


@dataclass
class Run:
    """What a run saw."""

    plans: list[Plan]
    outcomes: list[Outcome]
    rss: list[tuple[int, int]]  # (requests done, bytes)
    before: dict[str, float]
    after: dict[str, float]
    sockets_before: Sockets
    sockets_after: Sockets
    upstream_stats: dict[str, Any]
    seconds: float


async def run_load(args: argparse.Namespace, upstream: str, server: ServeProcess) -> Run:
    """Warm up, then send the plan from ``args.clients`` clients, sampling the server as it goes."""
    plans = plan(args.requests, args.seed, args.awares_share, args.error_rate, args.disconnect_rate)
    pages = make_pages(args.pages, tuple(int(v) for v in args.size.lower().split("x")), seed=args.seed)
    rng = random.Random(args.seed + 1)
    url = f"{server.url}/v1/chat/completions"
    server_port, upstream_port = int(server.url.rsplit(":", 1)[1]), int(upstream.rsplit(":", 1)[1])
    limits = httpx.Limits(max_connections=args.clients + 8, max_keepalive_connections=args.clients + 8)
    timeout = httpx.Timeout(60.0)
    rss: list[tuple[int, int]] = []
    async with httpx.AsyncClient(timeout=timeout) as probe:

        async def metrics() -> dict[str, float]:
            return parse_metrics((await probe.get(f"{server.url}/metrics")).text)

        async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
            warm = plan(args.clients * 4, args.seed + 2, args.awares_share, 0.0, 0.0)
            await asyncio.gather(*(send(client, url, p, rng.choice(pages), rng) for p in warm))
        await asyncio.sleep(1.0)
        sockets_before = sockets(server.pid, server_port, upstream_port)
        rss.append((0, rss_bytes(server.pid)))
        before = await metrics()

        outcomes: list[Outcome | None] = [None] * len(plans)
        pending = iter(plans)
        done = 0
        started = time.perf_counter()
        async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:

            async def one_client(seed: int) -> None:
                nonlocal done
                own = random.Random(seed)
                for p in pending:
                    outcomes[p.index] = await send(client, url, p, pages[own.randrange(len(pages))], own)
                    done += 1
                    if done % max(1, len(plans) // 10) == 0 and done < len(plans):
                        rss.append((done, rss_bytes(server.pid)))
                    if done % args.progress == 0:
                        rate = done / (time.perf_counter() - started)
                        print(f"  {done} requests, {rate:.0f}/s", file=sys.stderr, flush=True)

            await asyncio.gather(*(one_client(args.seed * 1000 + c) for c in range(args.clients)))
        seconds = time.perf_counter() - started

        # Settled: the in-flight gauge back to 0, the clients' connections closed (a few seconds at most).
        deadline = time.monotonic() + 15
        while True:
            after = await metrics()
            now = sockets(server.pid, server_port, upstream_port)
            settled = after.get("awares_serve_in_flight", 0) == 0 and now.from_clients <= 1  # the probe's
            if settled or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        stats = (await probe.get(f"{upstream}/bench/stats")).json()
    await asyncio.sleep(0.5)  # the probe's connection closed too
    sockets_after = sockets(server.pid, server_port, upstream_port)
    rss.append((len(plans), rss_bytes(server.pid)))
    return Run(plans, outcomes, rss, before, after, sockets_before, sockets_after, stats, seconds)  # type: ignore[arg-type]


def check(run: Run) -> tuple[list[tuple[str, str, bool]], Counter[str], list[str]]:
    """The invariants as ``(name, figures, held)`` rows, the outcomes by kind, and the first mismatches."""
    rows: list[tuple[str, str, bool]] = []
    counts: Counter[str] = Counter()
    wrong: list[str] = []
    for p, o in zip(run.plans, run.outcomes, strict=True):
        counts[f"{p.kind}: {o.what}"] += 1
        if o.what not in expected(p):
            wrong.append(f"#{p.index} {p.kind} fault={p.fault} drop={p.drop}: {o.what} {o.status} {o.detail}")
    untyped = sum(1 for o in run.outcomes if o.what.startswith("untyped"))
    own_500 = sum(1 for o in run.outcomes if o.status == 500 and not o.what.startswith("error:scripted"))
    rows.append(
        (
            "every reply as planned (answer, typed error, ...)",
            f"{len(run.plans) - len(wrong)} of {len(run.plans)} as planned; {untyped} untyped; "
            f"{own_500} 500s from the server itself",
            not wrong and untyped == 0 and own_500 == 0,
        )
    )

    def delta(name: str) -> float:
        return run.after.get(name, 0.0) - run.before.get(name, 0.0)

    in_flight = run.after.get("awares_serve_in_flight", -1)
    rows.append(("in-flight gauge back to 0", f"{in_flight:g}", in_flight == 0))
    stats = run.upstream_stats
    rows.append(
        (
            "no upstream call left in progress",
            f"{stats['in_progress']} in progress; {stats['held']} held, {stats['held_hung_up']} let go by a "
            f"hang-up, {stats['held_to_limit']} held to the limit {stats['held_to_limit_tags'] or ''}",
            stats["in_progress"] == 0 and stats["held"] == stats["held_hung_up"],
        )
    )
    s0, s1 = run.sockets_before, run.sockets_after
    rows.append(
        ("client sockets closed", f"{s1.from_clients} open (before: {s0.from_clients})", s1.from_clients == 0)
    )
    states = ", ".join(f"{k} {v}" for k, v in sorted(s1.to_upstream.items())) or "none"
    rows.append(
        (
            "upstream sockets within the pools",
            f"{s1.upstream_total} open ({states}); after the warm-up {s0.upstream_total}; the pools keep "
            f"{POOLS_KEEPALIVE}",
            s1.upstream_total <= POOLS_KEEPALIVE,
        )
    )
    others0, others1 = s0.descriptors - s0.upstream_total, s1.descriptors - s1.upstream_total
    rows.append(
        ("no other descriptor left open", f"{others1} (after the warm-up: {others0})", others1 <= others0)
    )
    middle = min(run.rss, key=lambda sample: abs(sample[0] - len(run.plans) // 2))[1]
    end = run.rss[-1][1]
    growth = end - middle
    series = " ".join(f"{b / MIB:.0f}" for _, b in run.rss)
    rows.append(
        (
            "memory flat",
            f"RSS (MiB) after the warm-up, then every tenth: {series}; middle to end {growth / MIB:+.1f} MiB "
            f"({growth / max(1, len(run.plans) // 2):+.0f} B per request)",
            growth <= max(20 * MIB, middle // 10),
        )
    )

    answers = [o.awares for o in run.outcomes if o.what == "answered" and o.awares is not None]
    # The histogram sums exact ratios, an answer's rtr is rounded to 4 places: the sum is checked against the
    # exact ratios (visual / full tokens), each answer's rounded rtr against its exact one.
    exact = [a["visual_tokens"] / a["full_tokens"] for a in answers]
    rounded_ok = all(abs(a["rtr"] - r) <= 5e-5 for a, r in zip(answers, exact, strict=True))
    m_count, m_rtr = delta("awares_serve_rtr_count"), delta("awares_serve_rtr_sum")
    rows.append(
        (
            "RTR in /metrics = sum of the answers'",
            f"count {m_count:g} vs {len(answers)} answers; sum {m_rtr:.6f} vs {sum(exact):.6f} (the answers' "
            f"visual / full tokens; their rounded rtr fields {'agree' if rounded_ok else 'DISAGREE'})",
            m_count == len(answers) and abs(m_rtr - sum(exact)) <= 1e-9 * max(1.0, m_rtr) and rounded_ok,
        )
    )
    sent = sum(a["visual_tokens"] for a in answers)
    saved = sum(max(0, a["full_tokens"] - a["visual_tokens"]) for a in answers)
    calls = sum(a["model_calls"] for a in answers)
    m_sent = delta("awares_serve_visual_tokens_sent_total")
    m_saved = delta("awares_serve_visual_tokens_saved_total")
    m_calls = delta("awares_serve_model_calls_total")
    rows.append(
        (
            "visual tokens in /metrics = sums of the answers'",
            f"sent {m_sent:g} vs {sent}; saved {m_saved:g} vs {saved}; model calls {m_calls:g} vs {calls}",
            m_sent == sent and m_saved == saved and m_calls == calls,
        )
    )

    # A request is counted under its route once its body is read; one whose client hung up first, under other.
    counted = {
        r: delta(f'awares_serve_requests_total{{route="{r}"}}') for r in ("awares", "passthrough", "other")
    }
    every_route = sum(delta(name) for name in run.after if name.startswith("awares_serve_requests_total"))
    routes_ok = sum(counted.values()) == every_route == len(run.plans)
    figures = []
    for route, is_awares in (("awares", True), ("passthrough", False)):
        mine = [p for p in run.plans if p.awares == is_awares]
        least = sum(1 for p in mine if not p.drop)
        most = sum(1 for p in mine if p.drop != "upload")
        routes_ok = routes_ok and least <= counted[route] <= most
        figures.append(
            f"{route} {counted[route]:g} (sent {len(mine)}, {len(mine) - most} hung up mid-upload)"
        )
    figures.append(f"other {counted['other']:g}")
    rows.append(("requests by route in /metrics", "; ".join(figures), routes_ok))
    dropped = sum(1 for p in run.plans if p.drop)
    m_dropped = delta('awares_serve_errors_total{code="client_disconnected"}')
    rows.append(
        ("client_disconnected in /metrics = hang-ups", f"{m_dropped:g} vs {dropped}", m_dropped == dropped)
    )
    return rows, counts, wrong[:10]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=10_000, help="requests (default 10000; quick: 2000)")
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients (default 32)")
    parser.add_argument("--delay-ms", type=float, default=20.0, help="upstream reply delay (default 20)")
    parser.add_argument("--awares-share", type=float, default=0.7, help="share of AwaRes requests (0.7)")
    parser.add_argument("--error-rate", type=float, default=0.10, help="upstream failures (default 0.10)")
    parser.add_argument("--disconnect-rate", type=float, default=0.05, help="client hang-ups (default 0.05)")
    parser.add_argument("--pages", type=int, default=300, help="different pages the requests draw from (300)")
    parser.add_argument("--size", default="320x240", help="page size WxH (default 320x240)")
    parser.add_argument("--seed", type=int, default=0, help="the plan's seed (default 0)")
    parser.add_argument("--progress", type=int, default=1000, help="report progress every N requests")
    args = parser.parse_args()
    console = Console(width=max(Console().width, 120))

    load_before = os.getloadavg()
    with (
        upstream_process(args.delay_ms / 1000) as upstream,
        ServeProcess(f"{upstream}/v1", flags=["--max-retries", "0"]) as server,
    ):
        run = asyncio.run(run_load(args, upstream, server))
    rows, counts, wrong = check(run)
    traceback = "Traceback" in server.output
    levels = Counter(
        line.split(None, 1)[0].rstrip(":") for line in server.output.splitlines() if line.strip()
    )
    rows.append(
        (
            "no traceback in the server's output",
            f"{'found' if traceback else 'none'}; it logged {levels['WARNING']} warnings, {levels['ERROR']} "
            "errors",
            not traceback,
        )
    )

    table = Table(title=f"outcomes of {len(run.plans)} requests ({args.clients} clients, seed {args.seed})")
    table.add_column("kind: outcome")
    table.add_column("requests", justify="right")
    for name, n in sorted(counts.items()):
        table.add_row(name, str(n))
    console.print(table)
    invariants = Table(title="invariants")
    for column in ("invariant", "figures", "held"):
        invariants.add_column(column)
    for name, figures, held in rows:
        invariants.add_row(name, figures, "yes" if held else "[bold red]NO[/]")
    console.print(invariants)
    moved = {
        name: run.after.get(name, 0.0) - run.before.get(name, 0.0)
        for name in sorted(set(run.after) | set(run.before))
        if name.startswith(("awares_serve_requests_total", "awares_serve_errors_total"))
    }
    console.print(
        "the server's counts over the run: "
        + "; ".join(
            f"{name.removeprefix('awares_serve_')} {value:g}" for name, value in moved.items() if value
        ),
        highlight=False,
        soft_wrap=True,
    )
    for tag in run.upstream_stats["held_to_limit_tags"]:
        if tag is not None and tag < len(run.plans):
            console.print(f"  held to the limit: {run.plans[tag]}: {run.outcomes[tag]}", highlight=False)
    for line in wrong:
        console.print(f"  not as planned: {line}", highlight=False, soft_wrap=True)
    if traceback:
        console.print(server.output[-4000:], highlight=False)
    load = os.getloadavg()
    console.print(
        f"{len(run.plans)} requests in {run.seconds:.0f} s ({len(run.plans) / run.seconds:.0f}/s), upstream "
        f"replies after {args.delay_ms:g} ms; {os.cpu_count()} CPUs, load average {load_before[0]:.2f} "
        f"before, {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} after",
        highlight=False,
    )
    return 0 if all(held for _, _, held in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
