"""Reading ``awares collect`` exports for training, as they are, with clear errors for what cannot train.

:func:`load_training_data` takes what ``awares collect`` writes:

* an export folder (``RUN/export``, holding ``dataset/`` and ``trajectories.jsonl``), or a collection run
  folder (its ``export/`` is used);
* the ``dataset/`` folder itself (``datasets.load_from_disk``);
* a ``trajectories.jsonl`` (images as files beside it, by relative path).

Both tool-call protocols and both kinds of trajectory (direct and tool) are read. How the rows were made
(protocol, crop set, system prompt, ``keep_tools``) is read from each row's trajectory, with its schema
(``trajectory.settings``, :class:`~awares_agent.trajectory.AgentSettings`): never guessed from the text. An
export written before the trajectory recorded its settings (``awares.trajectory.v1``) is read too; its
trajectories record only the protocol and crop set, and the rest is taken as the agent's defaults (see
:func:`~awares_agent.trajectory.upgrade_v1`).

Every row is checked before any training starts: it has a valid trajectory, its conversation has an
assistant turn and ends on an answer, its image parts match its images, every image decodes, and all rows
share one protocol, crop set and system prompt (a model is trained on one). Rows whose conversation holds a
malformed crop call (on-policy rollouts with a correction) are left out and counted: training on them would
teach the malformed call.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from awares_agent.config import AgentConfig
from awares_agent.errors import AwaresError
from awares_agent.tools.crop_sets import crop_set as make_crop_set
from awares_agent.tools.protocols import ToolProtocol, make_protocol
from awares_agent.training.turns import assistant_turn_kinds
from awares_agent.trajectory import AgentSettings, Trajectory

__all__ = ["TrainingData", "TrainingDataError", "load_training_data", "policy_samples"]

logger = logging.getLogger(__name__)

DATASET = "dataset"
JSONL = "trajectories.jsonl"
EXPORT = "export"


class TrainingDataError(AwaresError):
    """Trajectories that cannot be trained on; the message names the rows and what to do."""


@dataclass
class TrainingData:
    """Checked training rows and what they hold.

    Attributes:
        dataset: the rows (a ``datasets.Dataset`` in TRL's conversational vision format).
        settings: the agent settings their trajectories were made under (one for all rows).
        source: the path read.
        labels: rows per label (``direct`` / ``tool``).
        skipped: rows left out, by reason.
    """

    dataset: Any
    settings: AgentSettings
    source: str
    labels: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def protocol(self) -> str:
        """The rows' tool-call protocol (``"json"`` or ``"awares-text"``)."""
        return self.settings.protocol

    @property
    def crop_set(self) -> str:
        """The rows' crop set."""
        return self.settings.crop_set

    def agent_config(self) -> AgentConfig:
        """How a model trained on these rows must be run: the settings their trajectories record.

        The system prompt is the preset the trajectories name, or their own prompt's text. ``keep_tools`` is
        on where the trajectories had it, and always for the json protocol: the export renders the tools
        block into the system message, so every turn of a json-protocol training conversation offers the
        tool, and the model is run as it was trained.
        """
        settings = self.settings
        options: dict[str, Any] = {
            "protocol": settings.protocol,
            "crop_set": settings.crop_set,
            "keep_tools": settings.keep_tools or settings.protocol == "json",
        }
        if settings.system_prompt is not None:
            return AgentConfig(**options, system_prompt=settings.system_prompt)
        return AgentConfig(**options, system_prompt_preset=settings.system_prompt_preset or "auto")

    def describe(self) -> str:
        """One line: how many rows of which kind, and what was left out."""
        kinds = ", ".join(f"{n} {label}" for label, n in sorted(self.labels.items()))
        text = f"{len(self)} rows ({kinds}; protocol {self.protocol}, crop set {self.crop_set})"
        text += f" from {self.source}"
        if self.skipped:
            text += "; left out: " + ", ".join(f"{n} {why}" for why, n in sorted(self.skipped.items()))
        return text


def _resolve(path: Path) -> Path:
    """The dataset folder or JSONL file that ``path`` stands for."""
    if not path.exists():
        raise TrainingDataError(
            f"training data {str(path)!r} does not exist; pass an `awares collect` export"
        )
    if path.is_file():
        return path
    for candidate in (path, path / DATASET, path / EXPORT / DATASET):
        if (candidate / "dataset_info.json").is_file() or (candidate / "state.json").is_file():
            return candidate
    for candidate in (path / JSONL, path / EXPORT / JSONL):
        if candidate.is_file():
            return candidate
    raise TrainingDataError(
        f"{str(path)!r} holds no training data: expected an `awares collect` export (a folder with "
        f"{DATASET}/ or {JSONL}), a run folder with {EXPORT}/, or a JSONL file. Run `awares collect export "
        "RUN` to write one"
    )


def _from_jsonl(path: Path) -> Any:
    """The JSONL export as a dataset with the export's features, image paths checked first."""
    from datasets import Dataset

    from awares_agent.collect.export import features

    rows = []
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise TrainingDataError(f"{path}:{number}: not a JSON object ({exc.msg})") from None
            if not isinstance(row, dict):
                raise TrainingDataError(f"{path}:{number}: not a JSON object")
            images = []
            for ref in [*(row.get("images") or []), *([row["original"]] if row.get("original") else [])]:
                file = (path.parent / ref) if not Path(ref).is_absolute() else Path(ref)
                if not file.is_file():
                    raise TrainingDataError(
                        f"{path}:{number} (row {row.get('id')!r}): image {ref!r} is missing; the images "
                        "folder must stay beside the JSONL"
                    )
                images.append(str(file))
            originals = images[len(row.get("images") or []) :]
            row["images"] = images[: len(row.get("images") or [])]
            row["original"] = originals[0] if originals else None
            try:  # a record of any version, as the export's struct holds it (the current one)
                row["trajectory"] = _trajectory(row.get("trajectory")).model_dump(mode="json")
            except TrainingDataError as exc:
                raise TrainingDataError(f"{path}:{number} (row {row.get('id')!r}): {exc}") from None
            rows.append({name: row.get(name) for name in features()})
    if not rows:
        raise TrainingDataError(f"{path} has no rows")
    try:
        return Dataset.from_list(rows, features=features())
    except (TypeError, ValueError) as exc:
        raise TrainingDataError(f"{path}: rows do not match the export's schema ({exc})") from None


def _trajectory(value: Any) -> Trajectory:
    """A row's trajectory: the export's struct (a dict) or, in an export written before it was one, its JSON
    text; either way read with the schema, older versions upgraded.

    Raises:
        TrainingDataError: no trajectory, or one that is not a valid record.
    """
    if value is None:
        raise TrainingDataError(
            "no trajectory: training reads how the rows were made from it; re-export the collection "
            "(awares collect export RUN)"
        )
    try:
        if isinstance(value, str | bytes):
            return Trajectory.model_validate_json(value)
        return Trajectory.model_validate(value)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"])) or "trajectory"
        raise TrainingDataError(
            f"the trajectory is not a valid record ({exc.error_count()} problem(s); first: {where}: "
            f"{first['msg']})"
        ) from None


def _check_images(rows: Any) -> None:
    """Every image of ``rows`` (``id`` and undecoded ``images``) decodes; the pixels are not kept."""
    import io

    from PIL import Image as PILImage

    for index, row in enumerate(rows):
        for number, image in enumerate(row["images"], 1):
            try:
                source = io.BytesIO(image["bytes"]) if image.get("bytes") else image.get("path")
                if source is None:
                    raise ValueError("no bytes and no path")
                with PILImage.open(source) as img:
                    img.verify()
            except Exception as exc:  # PIL raises many kinds for a corrupt file
                raise TrainingDataError(
                    f"row {row.get('id', index)!r}: image {number} cannot be decoded "
                    f"({type(exc).__name__}: {exc}); re-export the collection or drop the row"
                ) from None


def load_training_data(path: str | Path, *, check_images: bool = True) -> TrainingData:
    """Read and check an ``awares collect`` export for training.

    Args:
        path: an export folder, a collection run folder, a ``dataset`` folder or a JSONL file.
        check_images: decode every image once before training (a corrupt one fails here, not mid-run).

    Returns:
        The checked rows, their protocol and crop set.

    Raises:
        TrainingDataError: nothing readable at ``path``; a row without an assistant turn, not ending on an
            answer, or whose image parts do not match its images; rows of more than one protocol or crop
            set; an image that does not decode; no trainable row at all.
    """
    from datasets import load_from_disk

    source = _resolve(Path(path).expanduser())
    if source.is_file():
        dataset = _from_jsonl(source)
    else:
        try:
            dataset = load_from_disk(str(source))
        except (OSError, ValueError) as exc:
            raise TrainingDataError(f"cannot read {source} as a datasets folder: {exc}") from None
        if hasattr(dataset, "keys"):  # a DatasetDict: the training split
            if "train" not in dataset:
                raise TrainingDataError(f"{source} is a DatasetDict without a 'train' split: {list(dataset)}")
            dataset = dataset["train"]
    missing = [c for c in ("messages", "images", "trajectory") if c not in dataset.column_names]
    if missing:
        raise TrainingDataError(
            f"{source}: no {' or '.join(missing)} column; is it an `awares collect` export?"
        )

    columns = [c for c in ("id", "messages", "trajectory", "label") if c in dataset.column_names]
    # Read without decoding images: here only the texts, the image count and (below) the encoded bytes count.
    texts = dataset.select_columns(columns)
    encoded = dataset.cast_column("images", _undecoded()).select_columns(
        [c for c in ("id", "images") if c in dataset.column_names]
    )
    parsers: dict[tuple[str, str], ToolProtocol] = {}
    settings_seen: Counter[AgentSettings] = Counter()
    labels: Counter[str] = Counter()
    skipped: Counter[str] = Counter()
    keep: list[int] = []
    problems: list[str] = []
    for index, (row, images) in enumerate(zip(texts, encoded, strict=True)):
        row_id = row.get("id", index)
        messages = row["messages"] or []
        try:
            settings = _trajectory(row["trajectory"]).settings
        except TrainingDataError as exc:
            problems.append(f"row {row_id!r}: {exc}")
            continue
        parts = sum(p.get("type") == "image" for m in messages for p in (m.get("content") or []))
        if parts != len(images["images"] or []):
            problems.append(f"row {row_id!r}: {parts} image parts but {len(images['images'] or [])} images")
            continue
        key = (settings.protocol, settings.crop_set)
        if key not in parsers:
            parsers[key] = make_protocol(settings.protocol, make_crop_set(settings.crop_set))
        kinds = assistant_turn_kinds(messages, parsers[key])
        if not kinds:
            problems.append(f"row {row_id!r}: no assistant turn (nothing to learn)")
            continue
        if kinds[-1] != "answer":
            problems.append(f"row {row_id!r}: the conversation ends on a {kinds[-1]} turn, not an answer")
            continue
        if "invalid" in kinds:
            skipped["with a malformed crop call"] += 1
            continue
        settings_seen[settings] += 1
        labels["tool" if "call" in kinds else "direct"] += 1
        keep.append(index)
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise TrainingDataError(
            f"{source}: {len(problems)} row(s) cannot train: " + "; ".join(problems[:5]) + more
        )
    if len(settings_seen) > 1:
        found = ", ".join(f"{_describe(s)}: {n} rows" for s, n in settings_seen.most_common())
        raise TrainingDataError(
            f"{source} mixes tool-call protocols, crop sets or system prompts ({found}); a model is trained "
            "on one: export one collection per agent setting (awares collect label --protocol ...)"
        )
    if not keep:
        raise TrainingDataError(f"{source}: no trainable row ({dict(skipped) or 'empty'})")
    if skipped:
        logger.warning("left out of training: %s", dict(skipped))
    if len(keep) < len(dataset):
        dataset, encoded = dataset.select(keep), encoded.select(keep)
    if check_images:
        _check_images(encoded)
    ((settings, _),) = settings_seen.most_common(1)
    return TrainingData(
        dataset=dataset,
        settings=settings,
        source=str(source),
        labels=dict(labels),
        skipped=dict(skipped),
    )


def _describe(settings: AgentSettings) -> str:
    preset = settings.system_prompt_preset
    prompt = f"{preset} prompt" if preset else "own prompt"
    tools = ", keep_tools" if settings.keep_tools else ""
    return f"{settings.protocol}/{settings.crop_set} ({prompt}{tools})"


def _undecoded() -> Any:
    from datasets import Image, List

    return List(Image(decode=False))


def policy_samples(path: str | Path, *, limit: int | None = None) -> list[Any]:
    """Held-out export rows as evaluation samples: the original image, the question and the labels.

    Each row's labels (``needs_crop`` and the ``evidence`` box) become the sample's, so
    :func:`~awares_agent.evals.decisions.score_decisions` can score a policy's decisions and regions. The
    label (``direct`` / ``tool``) is the sample's category.

    Args:
        path: an export as :func:`load_training_data` reads it.
        limit: the first N rows only.

    Raises:
        TrainingDataError: as :func:`load_training_data`, or rows without their original image (exports
            written before the original was kept: run ``awares collect export RUN`` again).
    """
    from awares_agent.evals.schema import EvalSample

    data = load_training_data(path, check_images=False)
    dataset = data.dataset
    if "original" not in dataset.column_names:
        raise TrainingDataError(
            f"{data.source} has no original images; re-export it (awares collect export RUN)"
        )
    if limit is not None:
        dataset = dataset.select(range(min(limit, len(dataset))))
    samples = []
    for row in dataset:
        if row["original"] is None:
            raise TrainingDataError(f"row {row['id']!r} has no original image; re-export the collection")
        evidence = row.get("evidence")
        samples.append(
            EvalSample(
                id=str(row["id"]),
                image=row["original"],
                question=row["question"],
                answers=row["answers"],
                metric=row.get("metric") or "exact",
                needs_crop=row.get("needs_crop"),
                evidence=tuple(evidence) if evidence else None,
                category=row.get("label"),
            )
        )
    return samples
