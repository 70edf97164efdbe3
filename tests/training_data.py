"""Real ``awares collect`` exports for the training tests, made quickly.

The labelling pipeline runs as in production (:class:`~awares_agent.collect.pipeline.Labeler`, the metric
judge, the dataset grounder, the export); only the teacher's replies are scripted, as a remote model's would
be: it reads the page's code on the full image always, and on the low-res view only where the code is
printed large. So the export holds direct and tool trajectories of the protocol asked for.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from PIL import Image, ImageDraw
from scripted_backend import Request, ScriptedBackend

from awares_agent.collect.export import ExportStats, export_dataset
from awares_agent.collect.grounders import DatasetGrounder
from awares_agent.collect.judges import MetricJudge
from awares_agent.collect.pipeline import Labeler
from awares_agent.config import AgentConfig
from awares_agent.evals.schema import EvalSample
from awares_agent.image_store import ImageStore

WIDTH, HEIGHT = 448, 336
# Quadrant boxes of the tool samples' evidence, inside crops 0-3 of the paper set.
BOXES = [(40, 40, 120, 80), (320, 40, 400, 80), (40, 250, 120, 290), (320, 250, 400, 290)]


def page(code: str, *, large: bool, where: int) -> Image.Image:
    """A white page with ``code`` printed large in the middle, or small in quadrant ``where``."""
    img = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(img)
    if large:
        draw.rectangle((150, 130, 300, 200), fill="black")
        draw.text((200, 160), code, fill="white")
    else:
        draw.text(BOXES[where][:2], code, fill="black")
    return img


def samples(n: int) -> list[EvalSample]:
    """``n`` samples, alternating direct (large code) and tool (small code in a rotating quadrant)."""
    out = []
    for i in range(n):
        large = i % 2 == 0
        code = f"C{i:02d}"
        out.append(
            EvalSample(
                id=f"s{i:02d}",
                image=page(code, large=large, where=(i // 2) % 4),
                question=f"What is the code on page {i}?",
                answers=[code],
                evidence=None if large else BOXES[(i // 2) % 4],
                needs_crop=not large,
            )
        )
    return out


def teacher(batch: list[EvalSample]) -> ScriptedBackend:
    """A teacher that reads every code on the full image, and on the view only the large ones."""
    by_question = {s.question: s for s in batch}

    def reply(request: Request) -> str:
        text = " ".join(m.text for m in request.messages)
        sample = next(s for q, s in by_question.items() if q in text)
        view = request.image_parts[0]
        low_res = view.width < WIDTH
        return sample.answers[0] if (sample.needs_crop is False or not low_res) else "unreadable"

    return ScriptedBackend(*([reply] * (2 * len(batch))))


def collect_export(out: Path, *, protocol: str = "json", n: int = 8) -> ExportStats:
    """Label ``n`` samples with the scripted teacher and export them to ``out`` (``dataset/`` + JSONL)."""
    batch = samples(n)
    store = ImageStore(root=out / "images")
    labeler = Labeler(
        teacher(batch), MetricJudge(), DatasetGrounder(), config=AgentConfig(protocol=protocol), store=store
    )

    async def run() -> list[dict]:
        return [await labeler(s) for s in batch]

    rows = asyncio.run(run())
    return export_dataset(rows, store, out / "export")
