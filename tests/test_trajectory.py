"""The one record: a trajectory carries its settings and labels through collection, export, training, evals.

``tests/fixtures/trajectory_v1`` holds records written by the v1 code (``awares.trajectory.v1``, commit
b71df44), as they are on disk, so that reading them is checked against what v1 really wrote, not against a
reconstruction: a collection's rows (``rows.jsonl``: a direct, a tool and a dropped row, json protocol;
``rows-awares-text.jsonl``: the same for awares-text) with the image store they reference (``images/``),
those json rows exported (``export/``: the ``datasets`` folder, whose trajectories were JSON text, and the
JSONL with its images), and two evaluation results (``eval-rows.jsonl``). They were made with
``tests/training_data.py``'s scripted teacher and the labeller, exporter and evaluator of that commit.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from scripted_backend import ScriptedBackend
from training_data import samples, teacher

from awares_agent.agent import AwaResAgent
from awares_agent.collect.export import export_dataset, features
from awares_agent.collect.grounders import DatasetGrounder
from awares_agent.collect.judges import MetricJudge
from awares_agent.collect.pipeline import CollectedRow, Labeler, Rollout
from awares_agent.config import AgentConfig
from awares_agent.evals.dataset import sample_from_row
from awares_agent.evals.runner import SampleResult, Summary
from awares_agent.evals.schema import EvalSample
from awares_agent.image_store import ImageStore
from awares_agent.messages import ChatReply, ToolCall
from awares_agent.tokens import backend_token_rule, token_cost
from awares_agent.tools.prompts import RELEASED_MODEL
from awares_agent.training.data import load_training_data, policy_samples
from awares_agent.trajectory import SCHEMA_V1, SCHEMA_VERSION, AgentSettings, Trajectory, TrajectoryLabels

V1 = Path(__file__).parent / "fixtures" / "trajectory_v1"
#: The export's flat columns: labels and figures of the trajectory, for filtering without reading the struct.
FLAT_COLUMNS = (
    "label",
    "needs_crop",
    "crops",
    "evidence",
    "rtr",
    "correct",
    "verdict_score",
    "verdict_reason",
    "judge",
    "teacher",
    "mode",
)


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture
def v1_copy(tmp_path: Path) -> Path:
    """The v1 fixtures, copied (an image store and a dataset folder are written to as they are read)."""
    return Path(shutil.copytree(V1, tmp_path / "v1"))


# --- what the agent records --------------------------------------------------------------------------------


def test_the_agent_records_its_settings_and_the_graphs_token_counts(tmp_path: Path) -> None:
    from PIL import Image

    photo = tmp_path / "page.png"
    Image.new("RGB", (900, 600), "white").save(photo)
    json_call = ChatReply(tool_calls=[ToolCall(id="c1", name="get_crops", arguments='{"crops": ["3"]}')])
    text_call = ChatReply(text="GET_CROPS: ['3']")
    cases = [
        (AgentConfig(), "some-vlm", json_call, AgentSettings(protocol="json", crop_set="paper")),
        # "auto" stands for the released prompt with the released model: the one it stood for is recorded.
        (
            AgentConfig(protocol="awares-text", keep_tools=True),
            RELEASED_MODEL,
            text_call,
            AgentSettings(
                protocol="awares-text", crop_set="paper", system_prompt_preset="released", keep_tools=True
            ),
        ),
        (
            AgentConfig(crop_set="grid-2x2", system_prompt="Look closely."),
            "some-vlm",
            json_call,
            AgentSettings(
                protocol="json", crop_set="grid-2x2", system_prompt_preset=None, system_prompt="Look closely."
            ),
        ),
    ]
    for config, model, call, settings in cases:
        backend = ScriptedBackend(call, ChatReply(text="12"), model=model)
        t = AwaResAgent(backend, config).ask(photo, "q").trajectory
        assert t.settings == settings and t.schema_version == SCHEMA_VERSION and t.labels is None
        assert t.backend == "ScriptedBackend"  # the backend's class name, as the docstring says
        assert len(t.crops) == 1
        # Counted once, in the graph: the figures are the ones the sizes give under the backend's rule.
        rule = backend_token_rule(config.token_rule, backend)
        sizes = [(c.width, c.height) for c in t.crops]
        expected = token_cost(rule, (t.image.width, t.image.height), (t.view.width, t.view.height), sizes)
        assert t.cost == expected
        assert [c.tokens for c in t.crops] == expected.crop_tokens


# --- v1 records ------------------------------------------------------------------------------------------


def test_a_v1_trajectory_is_upgraded_as_it_is_read() -> None:
    for line in _lines(V1 / "export" / "trajectories.jsonl") + [
        row["trajectory"] for row in _lines(V1 / "rows-awares-text.jsonl") if row["trajectory"]
    ]:
        raw = line.get("trajectory", line)
        assert raw["schema_version"] == SCHEMA_V1 and "settings" not in raw
        t = Trajectory.model_validate(raw)
        assert t == Trajectory.model_validate_json(json.dumps(raw))
        assert t.schema_version == SCHEMA_VERSION and t.labels is None
        # What v1 recorded moves in; what it did not record is the agent's default.
        assert t.settings == AgentSettings(protocol=raw["protocol"], crop_set=raw["crop_set"])
        assert (t.id, t.answer, t.messages[0].text) == (
            raw["id"],
            raw["answer"],
            raw["messages"][0]["content"][0]["text"],
        )
        assert Trajectory.model_validate_json(t.model_dump_json()) == t  # and it is written as v2


def test_v1_collection_rows_keep_their_labels_in_the_trajectory() -> None:
    for raw in _lines(V1 / "rows.jsonl") + _lines(V1 / "rows-awares-text.jsonl"):
        row = CollectedRow.model_validate(raw)
        # Every figure v1 wrote beside the trajectory is read back, now from the trajectory.
        for name in ("needs_crop", "label", "crops", "rtr", "verdict"):
            assert row.model_dump(mode="json")[name] == raw.get(name), name
        if raw["status"] == "dropped":
            assert row.trajectory is None and row.needs_crop is True  # no_evidence_box: a needed sample
            continue
        labels = row.trajectory.labels
        assert labels is not None and labels.teacher == raw["teacher"] == "scripted-model"
        assert labels.evidence == (tuple(raw["grounding"]["box"]) if raw["grounding"] else None)
        assert labels.verdict is not None and labels.verdict.judge == "ground-truth"


def test_v1_collection_rows_export_to_what_v1_exported(v1_copy: Path, tmp_path: Path) -> None:
    from datasets import load_from_disk

    rows = _lines(v1_copy / "rows.jsonl")
    stats = export_dataset(rows, ImageStore(root=v1_copy / "images"), tmp_path / "export")
    assert (stats.rows, stats.reasons) == (2, {"dropped (no_evidence_box)": 1})
    v1_lines = {line["id"]: line for line in _lines(v1_copy / "export" / "trajectories.jsonl")}
    dataset = load_from_disk(stats.dataset)
    assert dataset.features == features()
    for record, line in zip(dataset, _lines(tmp_path / "export" / "trajectories.jsonl"), strict=True):
        old = v1_lines[record["id"]]
        # The training conversation and every flat column are what v1 exported...
        assert record["messages"] == line["messages"] == old["messages"]
        for column in FLAT_COLUMNS:
            assert record[column] == line[column] == old[column], column
        # ...and the trajectory, now a struct, carries the labels and settings v1 kept elsewhere or nowhere.
        t = Trajectory.model_validate(record["trajectory"])
        assert t == Trajectory.model_validate(line["trajectory"])
        assert t.settings.protocol == old["trajectory"]["protocol"]
        assert t.labels is not None and t.labels.needs_crop == old["needs_crop"]


def test_a_v1_export_trains_as_its_settings_say(v1_copy: Path) -> None:
    export = v1_copy / "export"
    for form in (export, export / "dataset", export / "trajectories.jsonl"):
        data = load_training_data(form)
        assert data.settings == AgentSettings(protocol="json", crop_set="paper")
        assert (data.protocol, data.crop_set, data.labels) == ("json", "paper", {"direct": 1, "tool": 1})
        agent = data.agent_config()
        # v1 did not record the preset: the default one; the export's tools block on every turn: keep_tools.
        assert (agent.protocol, agent.system_prompt_preset, agent.system_prompt) == ("json", "awares", None)
        assert agent.keep_tools
    samples_ = policy_samples(export)
    assert [(s.id, s.needs_crop, s.evidence, s.category) for s in samples_] == [
        ("s00", False, None, "direct"),
        ("s01", True, (40.0, 40.0, 120.0, 80.0), "tool"),
    ]


def test_v1_evaluation_results_are_read_from_their_trajectory() -> None:
    for raw in _lines(V1 / "eval-rows.jsonl"):
        result = SampleResult.model_validate(raw)
        dumped = result.model_dump(mode="json")
        for name in ("crops", "rtr", "pixel_rtr", "visual_tokens", "full_tokens", "latency_s"):
            assert dumped[name] == raw[name], name
        assert result.needs_crop is raw["needs_hr"] and dumped["needs_crop"] is raw["needs_hr"]
        assert result.trajectory is not None and result.trajectory.settings.protocol == "awares-text"
    figures = dict.fromkeys(("samples", "scored", "skipped", "failed", "accuracy", "rtr", "pixel_rtr"), 1)
    figures |= dict.fromkeys(("tool_call_rate", "mean_crops", "latency_p50", "latency_p95"), 1.0)
    names = {"benchmark": "b", "policy": "awares", "model": "m", "backend": "b", "crop_histogram": {}}
    old = {**names, **figures, "by_needs_hr": {"true": 100.0}}  # a summary.json written before the rename
    assert Summary.model_validate(old).by_needs_crop == {"true": 100.0}


# --- the acceptance: an exported row's trajectory carries its labels and settings --------------------------


def _collect(root: Path, protocol: str) -> list[dict[str, Any]]:
    batch = samples(4)
    store = ImageStore(root=root / "images")
    config = AgentConfig(protocol=protocol)
    labeler = Labeler(teacher(batch), MetricJudge(), DatasetGrounder(), config=config, store=store)

    async def run() -> list[dict[str, Any]]:
        return [await labeler(s) for s in batch]

    return asyncio.run(run())


@pytest.mark.parametrize("protocol", ["json", "awares-text"])
def test_an_exported_rows_trajectory_carries_its_labels_and_settings(tmp_path: Path, protocol: str) -> None:
    from datasets import load_from_disk

    rows = _collect(tmp_path, protocol)
    truth = {s.id: s for s in samples(4)}
    stats = export_dataset(rows, ImageStore(root=tmp_path / "images"), tmp_path / "export")
    collected = {r["id"]: CollectedRow.model_validate(r) for r in rows}
    lines = _lines(tmp_path / "export" / "trajectories.jsonl")
    for record, line in zip(load_from_disk(stats.dataset), lines, strict=True):
        t = Trajectory.model_validate(record["trajectory"])
        assert t == Trajectory.model_validate(line["trajectory"]) == collected[record["id"]].trajectory
        assert t.settings == AgentSettings(protocol=protocol, crop_set="paper")
        sample = truth[record["id"]]
        assert t.labels == TrajectoryLabels(
            needs_crop=sample.needs_crop,
            evidence=sample.evidence,  # the dataset grounder's box: the sample's own
            verdict=collected[record["id"]].verdict,
            teacher="scripted-model",
        )
        assert t.labels.verdict is not None and t.labels.verdict.correct
        # The flat columns are the labels, read off the trajectory.
        evidence = list(t.labels.evidence) if t.labels.evidence else None
        assert (record["needs_crop"], record["evidence"]) == (t.labels.needs_crop, evidence)
        assert record["label"] == ("tool" if t.crops else "direct") == collected[record["id"]].label
    # Training reads the settings from there.
    assert load_training_data(tmp_path / "export").settings == AgentSettings(
        protocol=protocol, crop_set="paper"
    )


def test_a_rollout_row_labels_its_trajectory_with_the_verdict_and_teacher(tmp_path: Path) -> None:
    batch = samples(2)
    rollout = Rollout(teacher(batch), MetricJudge(), store=ImageStore(root=tmp_path / "images"))
    row = CollectedRow.model_validate(asyncio.run(rollout(batch[0])))
    assert row.trajectory is not None and row.trajectory.labels is not None
    assert row.trajectory.labels.teacher == "scripted-model" and row.verdict == row.trajectory.labels.verdict
    assert row.needs_crop is None  # a rollout does not decide whether crops were needed


# --- one sample validation ----------------------------------------------------------------------------------


def test_a_sample_is_checked_in_one_place_whatever_it_comes_from() -> None:
    base = {"id": 7, "image": "x.png", "question": "Q?", "answers": "a"}
    sample = EvalSample.model_validate({**base, "evidence": [1, 2, 3, 4], "needs_crop": True})
    assert (sample.id, sample.answers, sample.needs_crop) == ("7", ["a"], True)
    assert sample.evidence == (1.0, 2.0, 3.0, 4.0)
    # The older keys of sample files are read as the fields they became.
    assert EvalSample.model_validate({**base, "bbox": [1, 2, 3, 4], "needs_hr": True}) == sample
    # The same refusal from the constructor and from a file's row, naming the key as it was written.
    for bad, expected in [
        ({"evidence": [3, 2, 1, 4]}, "evidence must satisfy 0 <= x0 < x1"),
        ({"bbox": [3, 2, 1, 4]}, "bbox must satisfy 0 <= x0 < x1"),
        ({"needs_hr": "yes"}, "needs_hr must be true, false or null"),
        ({"needs_crop": 1}, "needs_crop must be true, false or null"),
        ({"answers": ["  "]}, "answers is empty"),
        ({"question": None}, "missing required field(s): question"),
        ({"metric": "bleu"}, "unknown metric 'bleu'"),
    ]:
        with pytest.raises(ValueError, match=re.escape(expected)):
            EvalSample.model_validate({**base, **bad})
        with pytest.raises(ValueError, match=re.escape(expected)):
            sample_from_row({**base, **bad}, 0)
