"""An evaluation process for the kill-and-resume test in ``test_eval_runner.py`` and the figures in
``benchmarks/bench_reliability.py``.

    python tests/eval_worker.py OUT COUNT [CONCURRENCY]

Runs the ``awares`` policy (:func:`awares_agent.evals.runner.run_policy`, on the run engine) over ``COUNT``
samples (ids ``e0000``, ``e0001``...) into ``OUT``, with :class:`bad_images.OkBackend` standing in for the
model and sleeping 2-8 ms per call, so a kill can land between, or inside, any of the writes. Every tenth
sample's image is corrupt, so skipped records are killed and resumed too. Prints, as its last line, the JSON
list of the sample ids this process evaluated (a resumed run must not evaluate one already done). Exits 0
when the run is complete.
"""

from __future__ import annotations

import io
import json
import random
import sys
import time

from bad_images import OkBackend
from PIL import Image, ImageDraw

from awares_agent.evals.runner import run_policy
from awares_agent.evals.schema import EvalSample


class JitteryBackend(OkBackend):
    """:class:`OkBackend` whose every call first sleeps 2-8 ms, as a fast model server would take."""

    def complete(self, messages, *, images, tools=None):  # type: ignore[no-untyped-def]
        time.sleep(random.uniform(0.002, 0.008))
        return super().complete(messages, images=images, tools=tools)


def page(n: int) -> bytes:
    img = Image.new("RGB", (320, 240), (255, 255 - 20 * n, 255))
    ImageDraw.Draw(img).text((20, 20), f"PAGE {n}", fill="black")
    buffer = io.BytesIO()
    img.save(buffer, "PNG")
    return buffer.getvalue()


def main() -> int:
    out, count = sys.argv[1], int(sys.argv[2])
    concurrency = int(sys.argv[3]) if len(sys.argv) > 3 else 4
    pages = [page(n) for n in range(8)]
    corrupt = b"\x89PNG\r\n\x1a\n" + bytes(range(256))  # recorded as skipped
    samples = [
        EvalSample(
            id=f"e{n:04d}",
            image=corrupt if n % 10 == 9 else pages[n % len(pages)],
            question=f"What is on page {n}?",
            answers=["ok"],
        )
        for n in range(count)
    ]
    evaluated: list[str] = []
    summary = run_policy(
        samples,
        JitteryBackend(),
        "awares",
        out,
        concurrency=concurrency,
        on_result=lambda result: evaluated.append(result.id),
    )
    print(json.dumps(evaluated))
    return 0 if summary.samples == count and summary.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
