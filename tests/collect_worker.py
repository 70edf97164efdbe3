"""A collection process for the kill-and-resume test in ``test_collect_runtime.py``.

    python tests/collect_worker.py OUT COUNT [CONCURRENCY]

Collects ``COUNT`` samples (ids ``s0000``, ``s0001``...) into ``OUT`` with a work function that sleeps
20-60 ms and returns a row of a few hundred bytes to a few KB, so a kill can land between, or inside, any of
the writes. Exits 0 when the run is complete.
"""

from __future__ import annotations

import asyncio
import random
import signal
import sys

from awares_agent.engine import collect_sync


async def work(n: int) -> dict[str, object]:
    await asyncio.sleep(random.uniform(0.02, 0.06))
    return {"id": f"s{n:04d}", "n": n, "payload": "x" * (200 + (n * 397) % 4000)}


def main() -> int:
    # Ctrl-C must reach the run as a KeyboardInterrupt even when this process inherits SIGINT as ignored (a
    # parent that ignores it, or a job started in the background by a non-interactive shell, passes that on).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    out, count = sys.argv[1], int(sys.argv[2])
    concurrency = int(sys.argv[3]) if len(sys.argv) > 3 else 8
    stats = collect_sync(
        list(range(count)), work, out, id_of=lambda n: f"s{n:04d}", concurrency=concurrency, progress=False
    )
    return 0 if stats.complete else 1


if __name__ == "__main__":
    sys.exit(main())
