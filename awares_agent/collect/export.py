"""Collected rows as a training dataset: TRL's conversational vision format, and a JSONL export.

Each ``ok`` row becomes one training example, the whole multi-turn interaction as one sample:

* ``messages``: the conversation as Hugging Face chat-template dicts whose ``content`` is always a list of
  typed parts (``{"type": "text", "text": ...}`` / ``{"type": "image", "text": None}``), the i-th image part
  standing for ``images[i]`` (the low-res view first, then the crops in the order they were sent).
* ``images``: the images, as :class:`datasets.Image` (PNG bytes on disk).
* ``original``: the sample's original full-resolution image (the prompt of on-policy training, where the
  agent makes its own view and crops; the held-out input of a policy evaluation). Not named ``image``:
  TRL's collator would take a column of that name as the training image.
* ``trajectory``: the whole :class:`~awares_agent.trajectory.Trajectory` as a nested Arrow struct (its JSON
  form, field for field: :func:`trajectory_features`), with its settings (protocol, crop set, system prompt,
  ``keep_tools``) and its labels. Read it back with ``Trajectory.model_validate(row["trajectory"])``.
* metadata columns, flat copies of the trajectory's labels and figures for filtering a dataset without
  reading the struct: ``id``, ``question``, ``answers``, ``metric``, ``label`` (``direct`` / ``tool``),
  ``needs_crop``, ``crops``, ``evidence`` (the evidence box in original pixels, for a sample that needs
  crops), ``rtr``, ``correct`` / ``verdict_score`` / ``verdict_reason`` / ``judge`` (the verdict on the
  trajectory's answer), ``teacher`` and ``mode``.

Tool calls are written as text in Qwen's hermes format (``<tool_call>{...}</tool_call>``; tool results as a
user turn of ``<tool_response>``), and the tool's signature is appended to the system prompt as Qwen's tools
block. That is exactly what :class:`~awares_agent.backends.transformers_backend.TransformersBackend` renders
for a model whose chat template has no tool support (Qwen2.5-VL's), and the same text Qwen's tool-aware
templates render, so a model is trained on the prompts it later sees. TRL's vision collator does not pass a
``tools`` column to the template, which is why the block is in the system message. The features are declared
explicitly (:func:`features`): Arrow cannot infer PIL images nested in messages, nor one struct for the
trajectory's message parts (text or image).

``trl.SFTTrainer`` loads the result as it is: ``SFTTrainer(model, train_dataset=load_from_disk(path),
processing_class=processor)``.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from awares_agent.backends.hf_chat import hermes_history, to_hf_messages, with_tools_block
from awares_agent.collect.pipeline import CollectedRow
from awares_agent.errors import ConfigError
from awares_agent.image_store import ImageStore
from awares_agent.tools.crop_sets import crop_set
from awares_agent.tools.protocols import make_protocol
from awares_agent.trajectory import Trajectory

__all__ = ["ExportStats", "export_dataset", "features", "training_messages", "trajectory_features"]


def trajectory_features() -> Any:
    """The Arrow type of the ``trajectory`` column, made from :class:`Trajectory`'s JSON schema.

    Each record of the schema is a struct and each list a list, so the column holds the trajectory's JSON
    form (``model_dump(mode="json")``) as it is. A union of records (a message part is text or an image) is
    one struct with every member's fields, those of the other members left null.

    Raises:
        TypeError: the schema holds something Arrow cannot declare (a free-form mapping).
    """
    schema = Trajectory.model_json_schema()
    return _feature(schema, schema.get("$defs", {}), "trajectory")


def _feature(schema: dict[str, Any], defs: dict[str, Any], where: str) -> Any:
    """The ``datasets`` feature of one JSON-schema node (``where`` names it in errors)."""
    from datasets import List, Value

    if "$ref" in schema:
        return _feature(defs[schema["$ref"].rsplit("/", 1)[-1]], defs, where)
    options = [o for o in schema.get("anyOf") or schema.get("oneOf") or [] if o.get("type") != "null"]
    if len(options) == 1:
        return _feature(options[0], defs, where)
    if options:
        members = [_feature(o, defs, where) for o in options]
        if all(m == members[0] for m in members):  # a tuple's items, all of one type
            return members[0]
        if not all(isinstance(m, dict) for m in members):
            raise TypeError(f"{where}: a union of {options} has no Arrow type")
        merged: dict[str, Any] = {}
        for member in members:
            for name, feature in member.items():
                if merged.setdefault(name, feature) != feature:
                    raise TypeError(f"{where}.{name}: the union's members disagree on its type")
        return merged
    kind = schema.get("type")
    if kind == "object":
        if "properties" not in schema:
            raise TypeError(f"{where}: a free-form mapping has no Arrow struct type")
        return {name: _feature(p, defs, f"{where}.{name}") for name, p in schema["properties"].items()}
    if kind == "array":
        items = schema.get("items") or {"anyOf": schema.get("prefixItems", [])}
        return List(_feature(items, defs, f"{where}[]"))
    scalars = {"string": "string", "integer": "int64", "number": "float64", "boolean": "bool"}
    if kind in scalars:
        return Value(scalars[kind])
    raise TypeError(f"{where}: JSON-schema type {kind!r} has no Arrow type")


def features() -> Any:
    """The dataset's :class:`datasets.Features` (declared, never inferred)."""
    from datasets import Features, Image, List, Value

    part = {"type": Value("string"), "text": Value("string")}
    return Features(
        {
            "id": Value("string"),
            "messages": List({"role": Value("string"), "content": List(part)}),
            "images": List(Image()),
            "original": Image(),
            "question": Value("string"),
            "answers": List(Value("string")),
            "metric": Value("string"),
            "label": Value("string"),
            "needs_crop": Value("bool"),
            "crops": List(Value("string")),
            "evidence": List(Value("float64")),
            "rtr": Value("float64"),
            "correct": Value("bool"),
            "verdict_score": Value("float64"),
            "verdict_reason": Value("string"),
            "judge": Value("string"),
            "teacher": Value("string"),
            "mode": Value("string"),
            "trajectory": trajectory_features(),
        }
    )


def training_messages(trajectory: Trajectory, store: ImageStore) -> tuple[list[dict[str, Any]], list[Any]]:
    """A trajectory's conversation as TRL training messages, and its images in order.

    Args:
        trajectory: the trajectory.
        store: the image store that holds its view and crops (the collection's ``images`` folder).

    Raises:
        UnknownImageError: an image of the trajectory is not in the store.
    """
    hf, images = to_hf_messages(trajectory.messages, store)
    hf = hermes_history(hf)
    settings = trajectory.settings
    tools = make_protocol(settings.protocol, crop_set(settings.crop_set)).tools()
    if tools:
        hf = with_tools_block(hf, [t.to_openai() for t in tools])
    out = []
    for msg in hf:
        content = msg.get("content")
        if isinstance(content, str):
            parts = [{"type": "text", "text": content}]
        else:
            parts = [
                {"type": p["type"], "text": p.get("text") if p["type"] == "text" else None}
                for p in content or []
            ]
        out.append({"role": msg["role"], "content": parts})
    return out, images


class ExportStats(BaseModel):
    """What an export wrote.

    Attributes:
        rows: training rows written.
        skipped: rows left out (dropped samples, wrong answers with ``correct_only``, missing images).
        reasons: why rows were left out, counted.
        dataset: the ``datasets`` directory (``load_from_disk``).
        jsonl: the JSONL file (images as PNG files beside it, referenced by relative path).
    """

    rows: int
    skipped: int
    reasons: dict[str, int]
    dataset: str
    jsonl: str | None


def export_dataset(
    rows: Iterable[dict[str, Any]],
    store: ImageStore,
    out_dir: str | os.PathLike[str],
    *,
    correct_only: bool = False,
    jsonl: bool = True,
    chunk_rows: int = 256,
) -> ExportStats:
    """Write collected rows as a TRL-ready ``datasets`` dataset (``out_dir/dataset``) and a JSONL export.

    Args:
        rows: collected rows (dicts as the collector stores them); dropped rows are left out.
        store: the image store holding the trajectories' images (``ImageStore(root=COLLECTION/images)``).
        out_dir: the export folder.
        correct_only: leave out rows whose answer the judge rejected (for on-policy rollouts).
        jsonl: also write ``out_dir/trajectories.jsonl`` with images as PNG files under ``out_dir/images``.
        chunk_rows: rows held in memory at once while writing.

    Returns:
        What was written.

    Raises:
        ConfigError: no row could be exported (an empty dataset trains nothing).
    """
    from datasets import concatenate_datasets, load_from_disk

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    reasons: dict[str, int] = {}
    image_dir = out / "images"
    jsonl_path = out / "trajectories.jsonl"

    def skip(reason: str) -> None:
        reasons[reason] = reasons.get(reason, 0) + 1

    def generate() -> Iterable[dict[str, Any]]:
        fh = jsonl_path.open("w", encoding="utf-8") if jsonl else None
        try:
            for raw in rows:
                row = CollectedRow.model_validate(raw)
                if row.status != "ok" or row.trajectory is None:
                    skip(f"dropped ({(row.reason or 'unknown').split(':')[0]})")
                    continue
                verdict = row.verdict
                if correct_only and not (verdict and verdict.correct):
                    skip("judged wrong")
                    continue
                try:
                    messages, images = training_messages(row.trajectory, store)
                    original = store.get(row.trajectory.image.id)
                except KeyError:  # UnknownImageError: the collection's images folder is incomplete
                    skip("image missing from the store")
                    continue
                box = row.labels.evidence if row.labels is not None else None
                record = {
                    "id": row.id,
                    "question": row.question,
                    "answers": row.answers,
                    "metric": row.metric,
                    "label": row.label,
                    "needs_crop": row.needs_crop,
                    "crops": row.crops,
                    "evidence": list(box) if box is not None else None,
                    "rtr": row.rtr,
                    "correct": verdict.correct if verdict else None,
                    "verdict_score": verdict.score if verdict else None,
                    "verdict_reason": verdict.reason if verdict else None,
                    "judge": verdict.judge if verdict else None,
                    "teacher": row.teacher,
                    "mode": row.mode,
                    "trajectory": row.trajectory.model_dump(mode="json"),
                }
                if fh is not None:
                    ids = [p.image_id for m in row.trajectory.messages for p in m.images]
                    image_dir.mkdir(exist_ok=True)
                    source_id = row.trajectory.image.id
                    for image_id, image in [*zip(ids, images, strict=True), (source_id, original)]:
                        path = image_dir / f"{image_id}.png"
                        if not path.exists():
                            image.save(path)
                    line = {
                        **record,
                        "messages": messages,
                        "images": [f"images/{i}.png" for i in ids],
                        "original": f"images/{source_id}.png",
                    }
                    fh.write(json.dumps(line, ensure_ascii=False) + "\n")
                yield {**record, "messages": messages, "images": images, "original": original}
        finally:
            if fh is not None:
                fh.close()

    # Written in memory-mapped parts, so the rows (and their images) never all sit in memory at once.
    parts = out / ".parts"
    shutil.rmtree(parts, ignore_errors=True)
    paths: list[str] = []
    chunk: list[dict[str, Any]] = []
    count = 0
    for record in generate():
        chunk.append(record)
        if len(chunk) == chunk_rows:
            paths.append(_save_part(chunk, parts / f"{len(paths):05d}"))
            count += len(chunk)
            chunk = []
    if chunk:
        paths.append(_save_part(chunk, parts / f"{len(paths):05d}"))
        count += len(chunk)
    if not count:
        shutil.rmtree(parts, ignore_errors=True)
        raise ConfigError(f"nothing to export: no usable row ({reasons or 'no rows at all'})")
    final = out / "dataset"
    shutil.rmtree(final, ignore_errors=True)
    with _quiet_datasets():
        concatenate_datasets([load_from_disk(p) for p in paths]).save_to_disk(str(final))
    shutil.rmtree(parts, ignore_errors=True)
    return ExportStats(
        rows=count,
        skipped=sum(reasons.values()),
        reasons=reasons,
        dataset=str(out / "dataset"),
        jsonl=str(jsonl_path) if jsonl else None,
    )


def _save_part(records: list[dict[str, Any]], path: Path) -> str:
    from datasets import Dataset

    with _quiet_datasets():
        Dataset.from_list(records, features=features()).save_to_disk(str(path))
    return str(path)


@contextmanager
def _quiet_datasets() -> Iterator[None]:
    """Without ``datasets``' own per-save progress bars (the caller shows progress)."""
    from datasets.utils.logging import disable_progress_bar, enable_progress_bar, is_progress_bar_enabled

    enabled = is_progress_bar_enabled()
    disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            enable_progress_bar()
