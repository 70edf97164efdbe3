"""The labelling pipeline with the offline reader as teacher on synthetic data, and its TRL-ready export."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from awares_agent.baselines.reader import ReaderBackend
from awares_agent.collect.export import export_dataset, features
from awares_agent.collect.grounders import ChainGrounder, DatasetGrounder, OCRGrounder
from awares_agent.collect.judges import MetricJudge
from awares_agent.collect.pipeline import CollectedRow, Labeler, Rollout, summarize_rows
from awares_agent.config import AgentConfig
from awares_agent.errors import ConfigError
from awares_agent.evals.schema import EvalSample
from awares_agent.evals.synthetic import generate
from awares_agent.image_store import ImageStore
from awares_agent.tools.box_mapping import crops_covering
from awares_agent.tools.crop_sets import crop_set
from awares_agent.trajectory import Trajectory

# Small pages keep the OCR quick; the text sizes (relative to the half-size view) are the benchmark's own.
SIZES = ((800, 600), (960, 720))


@pytest.fixture(scope="module")
def samples() -> list[EvalSample]:
    return generate(8, seed=11, size_range=SIZES)


@pytest.fixture(scope="module")
def collection(samples: list[EvalSample], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("collect")
    store = ImageStore(root=root / "images")
    labeler = Labeler(
        ReaderBackend(), MetricJudge(), ChainGrounder([DatasetGrounder(), OCRGrounder()]), store=store
    )

    async def run() -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(labeler(s) for s in samples)))

    return {"rows": asyncio.run(run()), "root": root, "store": store}


def by_id(rows: list[dict[str, Any]]) -> dict[str, CollectedRow]:
    return {r["id"]: CollectedRow.model_validate(r) for r in rows}


def test_every_sample_is_labelled_direct_tool_or_dropped_by_the_rule(
    samples: list[EvalSample], collection: dict[str, Any]
) -> None:
    rows = by_id(collection["rows"])
    assert set(rows) == {s.id for s in samples}
    for sample in samples:
        row = rows[sample.id]
        assert row.low_res is not None and row.full_res is not None
        low_ok, full_ok = row.low_res.verdict.correct, row.full_res.verdict.correct
        if not low_ok and not full_ok:
            assert (row.status, row.reason) == ("dropped", "both_wrong")
            continue
        assert row.status == "ok", row.reason
        assert row.needs_crop is (not low_ok)
        assert row.label == ("tool" if row.needs_crop else "direct")
        t = row.trajectory
        assert t is not None and t.answer == sample.answers[0]
        assert row.verdict is not None and row.verdict.correct
        # Written by the teacher's own agent, with its turns scripted: no model was called for the label.
        assert (t.backend, t.calls, t.usage.prompt_tokens) == ("ReaderBackend", 0, 0)
        if row.label == "direct":
            assert t.crops == [] and row.rtr == pytest.approx(t.cost.rtr)
            assert [m.role for m in t.messages] == ["system", "user", "assistant"]
        else:
            # The dataset's box comes first, mapped to the cheapest covering crops.
            assert row.grounding is not None and row.grounding.source == "dataset"
            w, h = sample.image.size
            assert row.crops == crops_covering(sample.evidence, crop_set("paper"), w, h)
            assert [c.region_id for c in t.crops] == row.crops
            assert t.messages[2].tool_calls and json.loads(t.messages[2].tool_calls[0].arguments) == {
                "crops": row.crops
            }
            assert row.rtr is not None and row.rtr > 0.25


def test_the_labels_hold_both_kinds(collection: dict[str, Any]) -> None:
    summary = summarize_rows(collection["rows"])
    assert summary.rows == 8
    assert summary.direct >= 1 and summary.tool >= 1, summary
    assert summary.ok + sum(summary.dropped.values()) == 8
    assert sum(summary.crops.values()) >= summary.tool
    # What the line above cannot check (summarize_rows counts every row as ok or dropped): every kept row is
    # labelled one way or the other, and good images are dropped only for the labelling rule's reasons.
    assert summary.ok == summary.direct + summary.tool == sum(r["status"] == "ok" for r in collection["rows"])
    assert set(summary.dropped) <= {"both_wrong", "no_evidence_box"}
    assert summary.correct == summary.ok  # a label's answer is an accepted one


def test_needed_samples_without_a_dataset_box_are_grounded_by_ocr(
    samples: list[EvalSample], collection: dict[str, Any]
) -> None:
    rows = by_id(collection["rows"])
    needed = [s for s in samples if rows[s.id].label == "tool"]
    sample = needed[0]
    unboxed = sample.model_copy(update={"evidence": None})
    labeler = Labeler(
        ReaderBackend(),
        MetricJudge(),
        ChainGrounder([DatasetGrounder(), OCRGrounder()]),
        store=collection["store"],
    )
    row = asyncio.run(labeler.label(unboxed))
    assert row.status == "ok" and row.grounding is not None and row.grounding.source == "ocr"
    box, truth = row.grounding.box, sample.evidence
    assert box is not None
    ix = max(0.0, min(box[2], truth[2]) - max(box[0], truth[0]))
    iy = max(0.0, min(box[3], truth[3]) - max(box[1], truth[1]))
    assert ix * iy > 0  # the OCR box lies on the printed answer
    w, h = sample.image.size
    # The label requests exactly the cheapest crops covering the box OCR found (not the dataset's box).
    assert row.crops and row.crops == crops_covering(box, crop_set("paper"), w, h)
    assert row.trajectory is not None and [c.region_id for c in row.trajectory.crops] == row.crops
    # With only the dataset grounder and no box, a needed sample is dropped, with its reason.
    only_dataset = Labeler(ReaderBackend(), MetricJudge(), DatasetGrounder(), store=collection["store"])
    dropped = asyncio.run(only_dataset.label(unboxed))
    assert (dropped.status, dropped.reason, dropped.needs_crop) == ("dropped", "no_evidence_box", True)


def test_a_bad_image_is_a_dropped_row_not_a_crash(collection: dict[str, Any]) -> None:
    labeler = Labeler(ReaderBackend(), MetricJudge(), DatasetGrounder(), store=collection["store"])
    sample = EvalSample(id="broken", image=b"\x89PNG\r\n\x1a\n not really", question="q?", answers=["a"])
    row = asyncio.run(labeler.label(sample))
    assert row.status == "dropped" and row.reason is not None and row.reason.startswith("bad_image")


def test_labelling_needs_a_crop_round() -> None:
    with pytest.raises(ConfigError, match="max_rounds"):
        Labeler(ReaderBackend(), MetricJudge(), DatasetGrounder(), config=AgentConfig(max_rounds=0))
    with pytest.raises(ConfigError, match="answer_source"):
        Labeler(ReaderBackend(), MetricJudge(), DatasetGrounder(), answer_source="oracle")  # type: ignore[arg-type]


def test_rollout_keeps_the_agents_own_trajectory_and_the_verdict(
    samples: list[EvalSample], collection: dict[str, Any]
) -> None:
    rollout = Rollout(ReaderBackend(), MetricJudge(), store=collection["store"])
    rows = [CollectedRow.model_validate(asyncio.run(rollout(s))) for s in samples[:3]]
    for sample, row in zip(samples, rows, strict=False):
        assert row.mode == "rollout" and row.status == "ok" and row.trajectory is not None
        assert row.verdict is not None
        assert row.verdict.correct == (row.trajectory.answer == sample.answers[0])
        assert row.label == ("tool" if row.trajectory.crops else "direct")


def test_export_is_a_trl_vision_dataset_and_a_jsonl(collection: dict[str, Any], tmp_path: Path) -> None:
    from datasets import load_from_disk

    rows = collection["rows"]
    ok = [r for r in rows if r["status"] == "ok"]
    stats = export_dataset(rows, ImageStore(root=collection["root"] / "images"), tmp_path, chunk_rows=3)
    assert stats.rows == len(ok) and stats.skipped == len(rows) - len(ok)
    dataset = load_from_disk(stats.dataset)
    assert dataset.features == features() and len(dataset) == len(ok)
    for record in dataset:
        messages = record["messages"]
        assert all(isinstance(m["content"], list) for m in messages)
        image_parts = sum(p["type"] == "image" for m in messages for p in m["content"])
        assert image_parts == len(record["images"]) >= 1
        trajectory = Trajectory.model_validate(record["trajectory"])
        assert trajectory.answer == messages[-1]["content"][0]["text"]
        system = messages[0]["content"][0]["text"]
        assert "<tools>" in system and '"get_crops"' in system  # the tool signature, as at inference
        said = [p["text"] or "" for m in messages if m["role"] == "assistant" for p in m["content"]]
        assistant = " ".join(said)
        assert ("<tool_call>" in assistant) == (record["label"] == "tool")
        if record["label"] == "tool":
            crops = [m for m in messages if m["role"] == "user"][-1]
            assert sum(p["type"] == "image" for p in crops["content"]) == len(record["crops"])
            assert record["evidence"] is not None and len(record["evidence"]) == 4
        # The original, full-resolution image is kept (on-policy training and policy evaluation start there).
        assert record["original"].size == (trajectory.image.width, trajectory.image.height)
        assert record["metric"] == next(r for r in ok if r["id"] == record["id"])["metric"]
    lines = [json.loads(line) for line in Path(stats.jsonl or "").read_text().splitlines()]
    assert [line["id"] for line in lines] == list(dataset["id"])
    for line in lines:
        assert all((tmp_path / p).is_file() for p in [*line["images"], line["original"]])


def test_export_of_nothing_usable_is_a_clear_error(tmp_path: Path) -> None:
    dropped = {
        "id": "a",
        "mode": "label",
        "status": "dropped",
        "reason": "both_wrong",
        "question": "q",
        "answers": ["x"],
        "metric": "exact",
        "teacher": "t",
    }
    with pytest.raises(ConfigError, match="nothing to export"):
        export_dataset([dropped], ImageStore(), tmp_path)


@pytest.mark.slow
def test_sft_trainer_takes_a_step_on_the_exported_dataset(
    collection: dict[str, Any], tiny_vlm_dir: Path, tmp_path: Path
) -> None:
    from datasets import load_from_disk
    from transformers import AutoModelForImageTextToText
    from trl import SFTConfig, SFTTrainer

    from awares_agent.backends.hf_processors import load_processor

    stats = export_dataset(collection["rows"], ImageStore(root=collection["root"] / "images"), tmp_path / "x")
    dataset = load_from_disk(stats.dataset)
    processor = load_processor(str(tiny_vlm_dir), local_files_only=True)
    model = AutoModelForImageTextToText.from_pretrained(tiny_vlm_dir)
    args = SFTConfig(
        output_dir=str(tmp_path / "sft"),
        max_steps=1,
        per_device_train_batch_size=2,
        learning_rate=1e-3,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        max_length=None,
    )
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=processor)
    result = trainer.train()
    assert result.global_step == 1 and result.training_loss > 0
